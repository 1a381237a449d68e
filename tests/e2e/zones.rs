//! Development zones in scope: a zone hosted by a county is inside that county's scope on
//! every path (pushes, the pull feed, the console's pages and tables), a zone's own
//! inspector sees only the zone, the city sees both, and the neighbouring county nothing.

use ohassist_core::store::{EnterpriseFilter, VisitFilter};
use ohassist_tests::*;

const CITY: &str = "210100";
const HEPING: &str = "210102";
const SHENHE: &str = "210103";
const ZONE: &str = "210171";

fn enterprises_of(phone: &Phone) -> Vec<String> {
    let mut codes: Vec<String> =
        phone.store.list_enterprises(&EnterpriseFilter::default()).unwrap().into_iter().map(|e| e.id).collect();
    codes.sort();
    codes
}

#[test]
fn a_host_county_covers_its_zone_and_a_zone_only_itself() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    server.add_user("city-admin", "admin", CITY, PASSWORD);
    for (user, role, unit) in [
        ("heping-insp", "inspector", HEPING),
        ("zone-insp", "inspector", ZONE),
        ("shenhe-insp", "inspector", SHENHE),
        ("heping-sup", "supervisor", HEPING),
        ("shenhe-sup", "supervisor", SHENHE),
        ("city-sup", "supervisor", CITY),
    ] {
        server.add_user(user, role, unit, PASSWORD);
    }
    let zone = Phone::new(&server.url());
    zone.login("zone-insp", PASSWORD);
    // The city creates the zone, hosted by 和平区.
    let mut admin = Console::login(&server.url(), "city-admin");
    let (status, body) =
        admin.post("/admin/zones", &[("parent", HEPING), ("name", "浑南高新区"), ("code", ZONE), ("target", "3")]);
    assert_eq!(status, 303, "zone created: {body}");

    // The zone's inspector registers a zone enterprise with a visit.
    zone.store.create_enterprise(enterprise(1, ZONE)).unwrap();
    let zone_visit = zone.store.create_visit(visit(1)).unwrap();
    assert_eq!(zone.sync().newly_held, 0, "a zone inspector writes in the zone");

    // The host county's inspector pulls it, edits its visit and adds one: both accepted.
    let heping = Phone::new(&server.url());
    heping.login("heping-insp", PASSWORD);
    heping.store.create_enterprise(enterprise(2, HEPING)).unwrap();
    heping.sync();
    assert_eq!(enterprises_of(&heping), [credit_code(1), credit_code(2)], "the zone's enterprise is pulled");
    assert!(heping.store.get_visit(&zone_visit).is_ok(), "with its visit");
    heping.store.edit_visit(&zone_visit, |v| v.notes = "和平区复查".into()).unwrap();
    let second = heping.store.create_visit(visit(1)).unwrap();
    let report = heping.sync();
    assert_eq!((report.newly_held, report.held_records), (0, 0), "the host county pushes to the zone: {report:?}");
    let db = server.db();
    let visits: i64 =
        db.query_row("SELECT count(*) FROM visits WHERE enterprise_id = ?1", [credit_code(1)], |r| r.get(0)).unwrap();
    assert_eq!(visits, 2, "both visits of the zone enterprise on the server");

    // The zone's phone hears the host county's edit, and sees nothing of the county itself.
    zone.sync();
    assert_eq!(zone.store.get_visit(&zone_visit).unwrap().record.notes, "和平区复查");
    assert!(zone.store.get_visit(&second).is_ok());
    assert_eq!(enterprises_of(&zone), [credit_code(1)], "a zone inspector pulls only the zone");
    // Nor may it write there: a county enterprise from the zone's phone is held.
    zone.store.create_enterprise(enterprise(3, HEPING)).unwrap();
    let report = zone.sync();
    assert_eq!(report.newly_held, 1, "{report:?}");
    assert_eq!(zone.store.held_records().unwrap()[0].code, "out_of_scope");

    // The neighbouring county sees nothing of the zone and may not write into it.
    let shenhe = Phone::new(&server.url());
    shenhe.login("shenhe-insp", PASSWORD);
    shenhe.sync();
    assert!(enterprises_of(&shenhe).is_empty());
    assert!(shenhe.store.list_visits(&VisitFilter::default()).unwrap().is_empty());
    shenhe.store.create_enterprise(enterprise(4, ZONE)).unwrap();
    assert_eq!(shenhe.sync().newly_held, 1, "a neighbour's zone enterprise is refused");

    // The console: the host county's supervisor reads the zone's enterprise, its visit and
    // its Table 2 row; the neighbour's is answered 404; the city sees all.
    let url = server.url();
    let heping_token = token(&url, "heping-sup", PASSWORD, "heping-sup-console");
    let shenhe_token = token(&url, "shenhe-sup", PASSWORD, "shenhe-sup-console");
    let city_token = token(&url, "city-sup", PASSWORD, "city-sup-console");
    let code = credit_code(1);
    assert_eq!(get(&format!("{url}/api/v1/enterprises/{code}"), Some(&heping_token)).status, 200);
    assert_eq!(get(&format!("{url}/api/v1/visits/{zone_visit}"), Some(&heping_token)).status, 200);
    assert_eq!(get(&format!("{url}/api/v1/enterprises/{code}"), Some(&shenhe_token)).status, 404);
    assert_eq!(get(&format!("{url}/api/v1/visits/{zone_visit}"), Some(&shenhe_token)).status, 404);
    let list = get(&format!("{url}/api/v1/enterprises?year=2025"), Some(&heping_token)).json();
    let listed: Vec<&str> = list.as_array().expect("a list").iter().filter_map(|e| e["credit_code"].as_str()).collect();
    assert!(listed.contains(&code.as_str()) && listed.contains(&credit_code(2).as_str()), "{list}");
    let rows = |t: &str| -> Vec<String> {
        get(&format!("{url}/api/v1/tables/2?year=2025"), Some(t)).json()["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| format!("{} {}", r[0].as_str().unwrap(), r[1].as_str().unwrap()))
            .collect()
    };
    assert_eq!(rows(&heping_token), ["和平区 1", "其他（浑南高新区） 1", "合计 2"]);
    assert_eq!(rows(&shenhe_token), ["合计 0"]);
    assert_eq!(rows(&city_token), ["和平区 1", "其他（浑南高新区） 1", "合计 2"]);
    let dashboard = get(&format!("{url}/api/v1/dashboard?year=2025"), Some(&heping_token)).json();
    assert_eq!(dashboard["total"]["assisted"], 2, "{dashboard}");
    // A zone-scoped unit parameter is inside the host county's scope, not the neighbour's.
    assert_eq!(get(&format!("{url}/api/v1/dashboard?year=2025&unit={ZONE}"), Some(&heping_token)).status, 200);
    assert_eq!(get(&format!("{url}/api/v1/dashboard?year=2025&unit={ZONE}"), Some(&shenhe_token)).status, 404);
}
