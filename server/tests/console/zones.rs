//! Units by name and development zones: 和平区 with two enterprises and three zone
//! enterprises registered under 和平区's code as 其他 (the old rule). Before the move the
//! zone hides in 和平区's row; after the admin creates the zone and moves them, Table 2 has
//! both rows, the zone's last before 合计, measured against the city's target.

use axum::http::StatusCode;
use ohassist_core::model::*;
use ohassist_server::accounts::Role;

use crate::common::{credit_code, Fixture, Record};
use crate::{api_get, html_rows, text, Browser};

const YEAR: i32 = 2025;
const ZONE: &str = "沈阳经济技术开发区";

async fn push_enterprise(f: &Fixture, token: &str, serial: u32, county_name: &str, declared: bool) -> String {
    let code = credit_code("210102", serial);
    let mut e = Record::new(RecordKind::Enterprise, &code);
    let mut record = Enterprise {
        credit_code: code.clone(),
        name: format!("企业{serial:02}"),
        county: County { code: "210102".into(), name: county_name.into() },
        industry: Some(Industry::Chemical),
        ..Default::default()
    };
    record.add_year(YEAR);
    let c1 = e.write(&record);
    let id = new_item_id();
    let mut v = Record::new(RecordKind::Visit, &id);
    let mut visit = Visit {
        enterprise_id: code.clone(),
        county_code: "210102".into(),
        visit_date: "2025-04-02".into(),
        ..Default::default()
    };
    let answer = if declared { Compliance::Compliant } else { Compliance::NotCompliant };
    visit.self_inspection.set(ChecklistItem::Declaration, answer, "");
    let c2 = v.write(&visit);
    assert_eq!(f.push(token, &[c1, c2]).await.status, StatusCode::OK);
    code
}

fn table2_rows(html: &str) -> Vec<Vec<String>> {
    html_rows(html, "table2")[2..].to_vec()
}

#[tokio::test]
async fn a_zone_is_a_row_of_its_own_after_the_counties_with_the_citys_target() {
    let f = Fixture::new();
    f.add_user("admin", Role::Admin, "210100");
    f.add_user("zoneboss", Role::Supervisor, "210100");
    let t = f.user_token("insp", Role::Inspector, "210100", "phone").await;
    for (serial, declared) in [(1, true), (2, false)] {
        push_enterprise(&f, &t, serial, "和平区", declared).await;
    }
    let mut zone_codes = Vec::new();
    for (serial, declared) in [(3, true), (4, true), (5, false)] {
        zone_codes.push(push_enterprise(&f, &t, serial, "其他", declared).await);
    }
    // Another county, so that the zone has to sort after it.
    {
        let code = credit_code("210104", 9);
        let mut e = Record::new(RecordKind::Enterprise, &code);
        let mut record = Enterprise {
            credit_code: code.clone(),
            name: "大东企业".into(),
            county: County { code: "210104".into(), name: "大东区".into() },
            industry: Some(Industry::Mining),
            ..Default::default()
        };
        record.add_year(YEAR);
        let c = e.write(&record);
        assert_eq!(f.push(&t, &[c]).await.status, StatusCode::OK);
    }

    let admin = Browser::login(&f, "admin").await;
    // Names, not codes: the header, the title, 填报单位 and the file name.
    let page = text(&admin.get(&f, &format!("/tables/2?year={YEAR}")).await);
    assert!(page.contains("admin · 沈阳市"), "the header names the unit");
    assert!(page.contains(&format!("id=\"title\">沈阳市{YEAR}年度中小微企业职业健康帮扶行动完成情况汇总表</h1>")));
    assert!(page.contains("填报单位：沈阳市"));
    let rows = table2_rows(&page);
    assert_eq!(rows[0][..3], ["和平区", "5", "3"], "before the move the zone is folded into its host");

    // The admin sets up the zone under the city with its target, and moves 其他 in.
    let r = admin.post(&f, "/admin/zones", &[("parent", "210100"), ("name", ZONE), ("target", "4")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", text(&r));
    let units = text(&admin.get(&f, "/admin/units").await);
    assert!(units.contains(ZONE) && units.contains("data-code=\"210171\""), "the first free zone code: {units}");
    let r = admin.post(&f, "/admin/zones/210171/move", &[("from", "210102")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", text(&r));
    assert_eq!(r.headers["location"], "/admin/units?moved=3");

    let page = text(&admin.get(&f, &format!("/tables/2?year={YEAR}")).await);
    let rows = table2_rows(&page);
    let names: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(names, ["和平区", "大东区", &format!("其他（{ZONE}）"), "合计"], "the zone last before 合计");
    assert_eq!(rows[0][1..3], ["2", "1"], "和平区 keeps its own two");
    assert_eq!(rows[2][1..3], ["3", "2"], "the zone's three");
    assert_eq!(rows[3][1..3], ["6", "3"]);

    // Table 1 reads 其他 for the zone's enterprises, the county's name for the others.
    let t1 = html_rows(&text(&admin.get(&f, &format!("/tables/1?year={YEAR}")).await), "table1");
    let county_of = |name: &str| t1.iter().find(|r| r[1] == name).map(|r| r[2].clone()).unwrap();
    assert_eq!(county_of("企业03"), "其他");
    assert_eq!(county_of("企业01"), "和平区");
    assert_eq!(t1.last().unwrap()[1], "企业05", "zone enterprises after the counties'");

    // The XLSX carries the name in its file name and title.
    let x = admin.get(&f, &format!("/tables/2?year={YEAR}&format=xlsx")).await;
    let disposition = x.headers["content-disposition"].to_str().unwrap().to_string();
    assert!(disposition.contains("%E6%B2%88%E9%98%B3%E5%B8%82"), "沈阳市 in the file name: {disposition}");

    // The dashboard: the zone against its target of 4 (3 → below), 和平区 against 20, and the
    // zone's visits moved with it.
    let token = f.login("zoneboss", "api-zoneboss").await;
    let d: serde_json::Value =
        serde_json::from_slice(&api_get(&f, &format!("/api/v1/dashboard?year={YEAR}"), &token).await.body).unwrap();
    let counties = d["counties"].as_array().unwrap();
    let zone = counties.last().unwrap();
    assert_eq!((zone["county_name"].as_str(), zone["zone"].as_bool()), (Some(&*format!("其他（{ZONE}）")), Some(true)));
    assert_eq!((zone["assisted"].as_u64(), zone["target"].as_u64()), (Some(3), Some(4)));
    assert_eq!(zone["below_enterprise_target"], true);
    assert_eq!(zone["visits_by_month"]["04"], 3, "the zone's visits moved with its enterprises");
    assert_eq!(counties[0]["visits_by_month"]["04"], 2);
    assert_eq!(d["total"]["target"], 20 + 20 + 4);

    // The city raises nothing for a zone: set to 3, the zone meets it.
    let r = admin.post(&f, "/admin/zones/210171/target", &[("target", "3")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let d: serde_json::Value =
        serde_json::from_slice(&api_get(&f, &format!("/api/v1/dashboard?year={YEAR}"), &token).await.body).unwrap();
    assert_eq!(d["counties"].as_array().unwrap().last().unwrap()["below_enterprise_target"], false);

    // A supervisor scoped to the zone sees exactly the zone.
    f.add_user("zonesup", Role::Supervisor, "210171");
    let zs = f.login("zonesup", "api-zonesup").await;
    let t2: serde_json::Value =
        serde_json::from_slice(&api_get(&f, &format!("/api/v1/tables/2?year={YEAR}"), &zs).await.body).unwrap();
    assert_eq!(t2["title"], format!("{ZONE}{YEAR}年度中小微企业职业健康帮扶行动完成情况汇总表"), "not 沈阳市沈阳…");
    assert_eq!(t2["rows"][0][0], format!("其他（{ZONE}）"));
    assert_eq!(t2["rows"][0][1], "3");
}

#[tokio::test]
async fn admins_rename_units_add_missing_ones_and_bad_input_names_the_field() {
    let f = Fixture::new();
    f.add_user("admin", Role::Admin, "210100");
    f.add_user("county", Role::Admin, "210102");
    let admin = Browser::login(&f, "admin").await;
    let r = admin.post(&f, "/admin/units", &[("code", "210102"), ("name", "和平新区")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = admin.post(&f, "/admin/units", &[("code", "210199"), ("name", "试验区县")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let page = text(&admin.get(&f, "/admin/units").await);
    assert!(page.contains("和平新区") && page.contains("试验区县"));
    // Back to the data set's name.
    let r = admin.post(&f, "/admin/units", &[("code", "210102"), ("name", "")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(!text(&admin.get(&f, "/admin/units").await).contains("和平新区"));

    for (path, fields, field) in [
        ("/admin/units", vec![("code", "21010"), ("name", "x")], "code"),
        ("/admin/zones", vec![("parent", "210100"), ("name", "")], "name"),
        ("/admin/zones", vec![("parent", "210100"), ("name", "区"), ("target", "-3")], "target"),
        ("/admin/zones", vec![("parent", "210100"), ("name", "区"), ("code", "210102")], "code"),
    ] {
        let r = admin.post(&f, path, &fields).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path} {fields:?}");
        assert!(text(&r).contains(&format!("data-field=\"{field}\"")), "{path}: {}", text(&r));
    }
    // Deadlines are the province's: its admin sets them, a bad day names the field.
    f.add_user("province", Role::Admin, "210000");
    let province = Browser::login(&f, "province").await;
    let r = province
        .post(&f, "/admin/deadlines", &[("province", "210000"), ("list_due", "07-32"), ("summary_due", "11-15")])
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(text(&r).contains("data-field=\"list_due\""));
    let r = province
        .post(&f, "/admin/deadlines", &[("province", "210000"), ("list_due", "07-15"), ("summary_due", "11-30")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let dash = text(&province.get(&f, "/dashboard?year=2025").await);
    assert!(dash.contains("2025-07-15") && dash.contains("2025-11-30"), "the province's own deadlines");
    let r = admin
        .post(&f, "/admin/deadlines", &[("province", "210000"), ("list_due", "07-01"), ("summary_due", "11-30")])
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "a city does not set the province's deadlines");
    // Outside the admin's unit: refused, nothing written.
    let r = admin.post(&f, "/admin/units", &[("code", "220102"), ("name", "别处")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    // A county admin cannot set up a zone: its code lies in the city's range, and the city
    // decides its target.
    let county = Browser::login(&f, "county").await;
    let r = county.post(&f, "/admin/zones", &[("parent", "210102"), ("name", "和平园区")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    // A supervisor has no units page.
    f.add_user("sup", Role::Supervisor, "210100");
    let sup = Browser::login(&f, "sup").await;
    assert_eq!(sup.get(&f, "/admin/units").await.status, StatusCode::NOT_FOUND);
}
