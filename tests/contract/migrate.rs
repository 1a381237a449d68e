//! `ohassist migrate --to postgres://…` (issue 14): a county that synced on its SQLite file
//! moves to PostgreSQL; its phones keep their tokens and cursors and go on syncing
//! incrementally, and a second copy into the now full database is refused.

use ohassist_tests::*;

const COUNTY: &str = "350121";

#[test]
fn a_county_moves_to_postgres_and_its_phones_sync_on_incrementally() {
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::start(data.path(), None);
    server.add_user("zhang", "inspector", COUNTY, PASSWORD);
    server.add_user("li", "inspector", COUNTY, PASSWORD);
    let (a, b) = (Phone::new(&server.url()), Phone::new(&server.url()));
    a.login("zhang", PASSWORD);
    b.login("li", PASSWORD);
    for i in 0..20 {
        a.store.create_enterprise(enterprise(i, COUNTY)).unwrap();
    }
    let visits: Vec<String> = (0..100).map(|n| a.store.create_visit(visit(n % 20)).unwrap()).collect();
    a.sync();
    let first = b.sync();
    assert_eq!(first.documents_pulled, 120, "b's first sync brings every record");
    let addr = server.addr.clone();
    assert!(server.terminate().success());

    let url = ohassist_tests::pg::cluster().fresh_database();
    let out = cli(data.path(), &["migrate", "--to", &url], "");
    assert!(out.contains("copied and checked: 120"), "{out}");

    let moved = Server::start_with(data.path(), Some(&addr), &["--database", &url]);
    a.store.edit_visit(&visits[7], |v| v.notes = "迁移后的记录".into()).unwrap();
    let pushed = a.sync();
    assert_eq!(pushed.changes_pushed, 1, "a keeps its token and pushes only its edit: {pushed:?}");
    let pulled = b.sync();
    assert_eq!(pulled.documents_pulled, 0, "no first sync again: {pulled:?}");
    assert_eq!(pulled.changes_pulled, 1, "b pulls the one change after its cursor: {pulled:?}");
    assert_eq!(b.store.get_visit(&visits[7]).unwrap().record.notes, "迁移后的记录");

    // The moved server answers from PostgreSQL: the SQLite file no longer takes writes.
    let on_file: i64 = rusqlite::Connection::open(data.path().join("ohassist.db"))
        .unwrap()
        .query_row("SELECT count(*) FROM changes", [], |r| r.get(0))
        .unwrap();
    let db = ohassist_tests::pg::connect(&url, false);
    let on_postgres: i64 = db.query_row("SELECT count(*) FROM changes", [], |r| r.get(0)).unwrap();
    assert_eq!(on_postgres, on_file + 1);
    drop(moved);

    // Copying again into the database that now holds the county is refused, untouched.
    let err = std::process::Command::new(server_binary())
        .args(["--data", data.path().to_str().unwrap(), "migrate", "--to", &url])
        .output()
        .unwrap();
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("not empty"), "{}", String::from_utf8_lossy(&err.stderr));
    let after: i64 = db.query_row("SELECT count(*) FROM changes", [], |r| r.get(0)).unwrap();
    assert_eq!(after, on_postgres);
}
