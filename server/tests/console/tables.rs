//! The two tables and the dashboard of the synthetic city, compared cell by cell with the
//! independent count of `city.rs`, in every form the server gives them.

use axum::http::StatusCode;
use calamine::{Data, Reader, Xlsx};

use crate::city::{self, COUNTIES, YEAR};
use crate::{api_get, html_rows, text, Browser};

const TITLE1: &str = "沈阳市2025年度中小微企业职业健康帮扶对象名单";
const TITLE2: &str = "沈阳市2025年度中小微企业职业健康帮扶行动完成情况汇总表";

const HEADER1: [&str; 12] = [
    "序号",
    "企业名称",
    "企业所在县区",
    "行业类别",
    "是否申报",
    "是否开展职业病危害因素检测",
    "是否开展职业健康检查",
    "主要负责人是否参加培训",
    "职业卫生管理人员是否参加培训",
    "劳动者是否参加培训",
    "是否纳入专项治理",
    "是否为市级帮扶对象",
];
const HEADER2_TOP: [&str; 10] = [
    "县区名称",
    "帮扶企业(家)",
    "完成申报企业(家)",
    "完成职业病危害因素检测企业(家)",
    "完成职业健康检查企业(家)",
    "职业健康培训",
    "",
    "",
    "纳入专项治理企业(家)",
    "完成专项治理企业(家)",
];
const HEADER2_SUB: [&str; 10] = [
    "",
    "",
    "",
    "",
    "",
    "主要负责人参加培训企业(家)",
    "职业健康管理人员参加培训企业(家)",
    "劳动者参加培训企业(家)",
    "",
    "",
];

fn strings(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// A merged region: first row, first column, last row, last column.
type Region = (u32, u32, u32, u32);

fn xlsx_grid(bytes: &[u8]) -> (Vec<Vec<String>>, Vec<Region>) {
    let mut wb: Xlsx<_> = calamine::open_workbook_from_rs(std::io::Cursor::new(bytes.to_vec())).unwrap();
    wb.load_merged_regions().unwrap();
    let merged = wb.merged_regions().iter().map(|(_, _, d)| (d.start.0, d.start.1, d.end.0, d.end.1)).collect();
    let range = wb.worksheet_range_at(0).unwrap().unwrap();
    let grid = (0..range.height() as u32)
        .map(|r| {
            (0..range.width() as u32)
                .map(|c| match range.get_value((r, c)) {
                    Some(Data::Float(f)) => format!("{f}"),
                    Some(Data::Int(i)) => i.to_string(),
                    Some(Data::Empty) | None => String::new(),
                    Some(other) => other.to_string(),
                })
                .collect()
        })
        .collect();
    (grid, merged)
}

fn csv_grid(bytes: &[u8]) -> Vec<Vec<String>> {
    assert_eq!(&bytes[..3], b"\xEF\xBB\xBF", "CSV starts with a UTF-8 BOM");
    let mut r = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(&bytes[3..]);
    r.records().map(|rec| rec.unwrap().iter().map(str::to_string).collect()).collect()
}

fn trimmed(row: &[String]) -> Vec<String> {
    let mut r = row.to_vec();
    while r.last().is_some_and(|c| c.is_empty()) {
        r.pop();
    }
    r
}

#[tokio::test]
async fn table1_matches_an_independent_count_in_html_json_xlsx_and_csv() {
    let c = city::build().await;
    let expected = c.table1();
    assert_eq!(expected.len(), 17, "one enterprise is not on this year's list");
    let b = Browser::login(&c.f, "city").await;
    let q = format!("year={YEAR}&unit_name=%E6%B2%88%E9%98%B3%E5%B8%82&reporter=%E5%BC%A0%E4%B8%89&phone=024-1234");

    let page = b.get(&c.f, &format!("/tables/1?{q}")).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = text(&page);
    assert!(html.contains(&format!("id=\"title\">{TITLE1}</h1>")), "title");
    let rows = html_rows(&html, "table1");
    assert_eq!(rows[0], strings(&HEADER1));
    assert_eq!(rows[1..], expected[..]);
    for line in ["填报单位：沈阳市", "填报人：张三", "联系电话：024-1234"] {
        assert!(html.contains(line), "{line}");
    }

    let token = c.f.login("city", "api-city").await;
    let json = api_get(&c.f, &format!("/api/v1/tables/1?{q}"), &token).await;
    assert_eq!(json.status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
    assert_eq!(v["title"], TITLE1);
    assert_eq!(v["header"][0], serde_json::json!(HEADER1));
    assert_eq!(v["rows"], serde_json::json!(expected));
    assert_eq!(v["footer"], serde_json::json!(["填报单位：沈阳市", "填报人：张三", "联系电话：024-1234"]));
    assert_eq!(v["signature"]["reporter"], "张三");

    let x = b.get(&c.f, &format!("/tables/1?{q}&format=xlsx")).await;
    assert_eq!(x.status, StatusCode::OK);
    let (grid, merged) = xlsx_grid(&x.body);
    assert_eq!(grid[0][0], TITLE1);
    assert!(merged.contains(&(0, 0, 0, 11)), "title merged across the table: {merged:?}");
    assert_eq!(grid[1], strings(&HEADER1));
    assert_eq!(grid[2..2 + expected.len()], expected[..]);
    let sign = &grid[2 + expected.len() + 1];
    assert_eq!(
        (sign[0].as_str(), sign[3].as_str(), sign[6].as_str()),
        ("填报单位：沈阳市", "填报人：张三", "联系电话：024-1234")
    );

    let csv = b.get(&c.f, &format!("/tables/1?{q}&format=csv")).await;
    let raw = String::from_utf8(csv.body.to_vec()).unwrap();
    assert!(raw.contains("\r\n\r\n填报单位：沈阳市,"), "a truly empty line before the signature: {raw}");
    assert!(!raw.contains("\"\""), "no stray quoted empty field");
    // The reader skips the empty line.
    let grid = csv_grid(&csv.body);
    assert_eq!(grid[0], vec![TITLE1.to_string()]);
    assert_eq!(grid[1], strings(&HEADER1));
    assert_eq!(grid[2..2 + expected.len()], expected[..]);
    assert_eq!(grid[2 + expected.len()], strings(&["填报单位：沈阳市", "填报人：张三", "联系电话：024-1234"]));
}

#[tokio::test]
async fn table2_matches_an_independent_count_with_its_grouped_header_and_total() {
    let c = city::build().await;
    let expected = c.table2();
    assert_eq!(expected.len(), COUNTIES.len() + 1);
    let b = Browser::login(&c.f, "city").await;
    let q = format!("year={YEAR}&unit_name=%E6%B2%88%E9%98%B3%E5%B8%82&reporter=%E5%BC%A0%E4%B8%89&phone=024-1234");

    let html = text(&b.get(&c.f, &format!("/tables/2?{q}")).await);
    assert!(html.contains(&format!("id=\"title\">{TITLE2}</h1>")));
    assert!(html.contains("<th colspan=\"3\">职业健康培训</th>"), "grouped training header");
    assert!(html.contains("<th rowspan=\"2\">县区名称</th>"));
    let rows = html_rows(&html, "table2");
    let top: Vec<String> = HEADER2_TOP.iter().filter(|h| !h.is_empty()).map(|s| s.to_string()).collect();
    assert_eq!(rows[0], top);
    assert_eq!(rows[1], strings(&HEADER2_SUB[5..8]));
    assert_eq!(rows[2..], expected[..]);
    assert_eq!(rows.last().unwrap()[0], "合计");

    let token = c.f.login("city", "api-city").await;
    let v: serde_json::Value =
        serde_json::from_slice(&api_get(&c.f, &format!("/api/v1/tables/2?{q}"), &token).await.body).unwrap();
    assert_eq!(v["title"], TITLE2);
    assert_eq!(v["header"], serde_json::json!([HEADER2_TOP, HEADER2_SUB]));
    assert_eq!(v["rows"], serde_json::json!(expected));

    let x = b.get(&c.f, &format!("/tables/2?{q}&format=xlsx")).await;
    let (grid, merged) = xlsx_grid(&x.body);
    assert_eq!(grid[0][0], TITLE2);
    assert_eq!(grid[1], strings(&HEADER2_TOP));
    assert_eq!(grid[2], strings(&HEADER2_SUB));
    for region in [(0, 0, 0, 9), (1, 5, 1, 7), (1, 0, 2, 0), (1, 1, 2, 1), (1, 4, 2, 4), (1, 8, 2, 8), (1, 9, 2, 9)] {
        assert!(merged.contains(&region), "merged {region:?} in {merged:?}");
    }
    assert_eq!(grid[3..3 + expected.len()], expected[..]);
    assert_eq!(grid[3 + expected.len()][0], "", "an empty row before the signature");
    assert_eq!(grid[3 + expected.len() + 1][0], "填报单位：沈阳市");

    let grid = csv_grid(&b.get(&c.f, &format!("/tables/2?{q}&format=csv")).await.body);
    assert_eq!(grid[1], strings(&HEADER2_TOP));
    assert_eq!(grid[2], strings(&HEADER2_SUB));
    assert_eq!(grid[3..3 + expected.len()].iter().map(|r| trimmed(r)).collect::<Vec<_>>(), expected);
}

#[tokio::test]
async fn dashboard_counts_targets_rates_and_visits_per_month() {
    let c = city::build().await;
    let token = c.f.login("city", "api-city").await;
    let d: serde_json::Value =
        serde_json::from_slice(&api_get(&c.f, &format!("/api/v1/dashboard?year={YEAR}"), &token).await.body).unwrap();
    let counties = d["counties"].as_array().unwrap();
    assert_eq!(counties.len(), 3);
    for (k, (code, name)) in COUNTIES.iter().enumerate() {
        let mine: Vec<_> = c.expected.iter().filter(|e| e.county_code == *code).collect();
        let listed: Vec<_> = mine.iter().filter(|e| e.on_list).collect();
        let row = &counties[k];
        assert_eq!(row["county_name"], *name);
        assert_eq!(row["assisted"], listed.len());
        assert_eq!(row["below_enterprise_target"], true, "{name} has fewer than 20");
        let declared = listed.iter().filter(|e| e.declared).count() as f64 / listed.len() as f64;
        assert!((row["declaration_rate"].as_f64().unwrap() - declared).abs() < 1e-9);
        let trained =
            listed.iter().filter(|e| e.principal && e.managers && e.workers).count() as f64 / listed.len() as f64;
        assert!((row["training_rate"].as_f64().unwrap() - trained).abs() < 1e-9);
        assert_eq!(row["city_level_targets"], listed.iter().filter(|e| e.city_level).count());
        let march = mine.iter().map(|e| e.visit_months.iter().filter(|m| **m == 3).count()).sum::<usize>();
        let june = mine.iter().map(|e| e.visit_months.iter().filter(|m| **m == 6).count()).sum::<usize>();
        assert_eq!(row["visits_by_month"]["03"], march, "{name} March");
        assert_eq!(row["visits_by_month"]["06"], june, "{name} June");
        assert_eq!(row["visits_by_month"]["04"], 0, "the deleted April visit does not count");
    }
    assert_eq!(d["total"]["assisted"], 17);

    let b = Browser::login(&c.f, "city").await;
    let html = text(&b.get(&c.f, &format!("/dashboard?year={YEAR}")).await);
    assert!(html.contains("<svg class=\"chart\""), "a bar chart");
    assert!(html.contains("class=\"bar below\""), "counties below 20 drawn as such");
    assert!(html.contains("未达标"), "below target marked in Chinese");
    let en = text(&b.get(&c.f, &format!("/dashboard?year={YEAR}&lang=en")).await);
    assert!(en.contains("below target") && en.contains("Visits per month"));
}

#[tokio::test]
async fn enterprise_list_filters_and_search() {
    let c = city::build().await;
    let b = Browser::login(&c.f, "city").await;
    let codes = |html: &str| -> Vec<String> {
        html.split("data-code=\"").skip(1).map(|s| s[..s.find('"').unwrap()].to_string()).collect()
    };
    let all = codes(&text(&b.get(&c.f, &format!("/enterprises?year={YEAR}")).await));
    assert_eq!(all.len(), 17);
    let heping = codes(&text(&b.get(&c.f, &format!("/enterprises?year={YEAR}&county=210102")).await));
    assert_eq!(heping.len(), c.expected.iter().filter(|e| e.on_list && e.county_code == "210102").count());
    let mining = codes(&text(&b.get(&c.f, &format!("/enterprises?year={YEAR}&industry=mining")).await));
    let want: Vec<&String> =
        c.expected.iter().filter(|e| e.on_list && e.industry.code() == "mining").map(|e| &e.code).collect();
    assert_eq!(mining.len(), want.len());
    let city_level = codes(&text(&b.get(&c.f, &format!("/enterprises?year={YEAR}&status=city_level")).await));
    assert_eq!(city_level.len(), c.expected.iter().filter(|e| e.on_list && e.city_level).count());
    let untrained =
        codes(&text(&b.get(&c.f, &format!("/enterprises?year={YEAR}&missing=hazard_identification")).await));
    assert_eq!(untrained.len(), 17, "no visit identified hazards");
    let found = codes(&text(&b.get(&c.f, &format!("/enterprises?year={YEAR}&q=%E4%BC%81%E4%B8%9A03")).await));
    assert_eq!(found, vec![c.expected[3].code.clone()]);
}

#[tokio::test]
async fn a_provinces_table2_has_a_row_per_city_or_per_county_when_asked() {
    let c = city::build().await;
    let by_county = c.table2();
    c.f.add_user("province", ohassist_server::accounts::Role::Supervisor, "210000");
    let token = c.f.login("province", "api-province").await;
    let get = |q: String| {
        let (f, token) = (&c.f, token.clone());
        async move { api_get(f, &format!("/api/v1/tables/2?year={YEAR}&{q}"), &token).await }
    };
    let rows = |r: &crate::Reply| serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["rows"].clone();
    // By default a province's Table 2 has one row per city: the city's counties summed.
    let mut city_row = by_county.last().unwrap().clone();
    city_row[0] = "沈阳市".into();
    let total = by_county.last().unwrap().clone();
    let r = get("unit=210000".into()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(rows(&r), serde_json::json!([city_row, total]));
    // Per county when asked; per city for the city itself when asked.
    assert_eq!(rows(&get("unit=210000&by=county".into()).await), serde_json::json!(by_county));
    assert_eq!(rows(&get("unit=210100&by=city".into()).await), serde_json::json!([city_row, total]));
    let html =
        text(&Browser::login(&c.f, "province").await.get(&c.f, &format!("/tables/2?year={YEAR}&unit=210000")).await);
    assert_eq!(html_rows(&html, "table2")[2..], [city_row.clone(), total.clone()][..]);
    assert!(html.contains("<option value=\"city\" selected>"), "the rows' choice is shown");
    let bad = get("unit=210000&by=town".into()).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let body: serde_json::Value = serde_json::from_slice(&bad.body).unwrap();
    assert_eq!((body["code"].as_str(), body["field"].as_str()), (Some("invalid_filter"), Some("by")), "{body}");
}
