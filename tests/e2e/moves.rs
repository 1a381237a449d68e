//! Records that move into a county arrive whole on that county's phones: an enterprise moved
//! from county A to county B takes its visits along, and B's phone, already synced, receives
//! the enterprise and every visit with all their changes, not only the later ones.

use ohassist_core::store::{EnterpriseFilter, VisitFilter};
use ohassist_tests::*;

const A: &str = "350121";
const B: &str = "350122";

#[test]
fn an_enterprise_moved_to_another_county_arrives_whole_with_its_visits() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    server.add_user("insp-a", "inspector", A, PASSWORD);
    server.add_user("insp-b", "inspector", B, PASSWORD);
    server.add_user("city-admin", "admin", "350100", PASSWORD);
    let a = Phone::new(&server.url());
    a.login("insp-a", PASSWORD);
    a.store.create_enterprise(enterprise(1, A)).unwrap();
    let v1 = a.store.create_visit(visit(1)).unwrap();
    let v2 = a.store.create_visit(visit(1)).unwrap();
    a.store.edit_visit(&v1, |v| v.notes = "第一次走访".into()).unwrap();
    a.sync();

    // County B's phone syncs first: nothing of A's.
    let b = Phone::new(&server.url());
    b.login("insp-b", PASSWORD);
    b.sync();
    assert!(b.store.list_enterprises(&EnterpriseFilter::default()).unwrap().is_empty());

    // The city moves the enterprise to county B (an admin of the city may push).
    let city = Phone::new(&server.url());
    city.login("city-admin", PASSWORD);
    city.sync();
    let code = credit_code(1);
    city.store
        .edit_enterprise(&code, |e| {
            e.county.code = B.into();
            e.county.name = "县350122".into();
        })
        .unwrap();
    let report = city.sync();
    assert_eq!(report.newly_held, 0);

    // B's next (incremental) sync brings the enterprise and both visits, whole.
    let report = b.sync();
    assert!(report.documents_pulled >= 3, "{report:?}");
    assert_eq!(b.store.get_enterprise(&code).unwrap().record.county.code, B);
    assert_eq!(b.store.get_visit(&v1).unwrap().record.notes, "第一次走访", "changes from before the move");
    assert!(b.store.get_visit(&v2).is_ok());
    assert_eq!(b.store.list_visits(&VisitFilter::default()).unwrap().len(), 2);
    assert!(b.store.quarantined().unwrap().is_empty());
    // On the server the visits follow their enterprise.
    let db = server.db();
    let counties: Vec<String> = db
        .prepare("SELECT county_code FROM visits ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(counties, vec![B.to_string(), B.to_string()]);
    // And B's inspector can now edit them; A's inspector no longer can.
    b.store.edit_visit(&v2, |v| v.notes = "移交后".into()).unwrap();
    assert_eq!(b.sync().newly_held, 0);
    a.store.edit_visit(&v1, |v| v.notes = "移交后 A".into()).unwrap();
    let report = a.sync();
    assert_eq!(report.newly_held, 1, "A's edit of a visit now in B is held, not lost");
    assert_eq!(a.store.held_records().unwrap()[0].code, "out_of_scope");
}
