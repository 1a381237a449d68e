//! Both engines hold the same tables, columns and indexes (`server/migrations/` and
//! `server/migrations/postgres/`).

use std::collections::BTreeSet;

use ohassist_server::sql::{Connection, Engine};

use crate::fresh;

fn strings(conn: &Connection, sql: &str) -> BTreeSet<String> {
    conn.prepare(sql).unwrap().query_map([], |r| r.get::<_, String>(0)).unwrap().map(Result::unwrap).collect()
}

fn columns(engine: Engine) -> (BTreeSet<String>, BTreeSet<String>) {
    let f = fresh(engine);
    let conn = f.db.blocking_writer();
    match engine {
        Engine::Sqlite => (
            strings(
                &conn,
                "SELECT m.name || '.' || p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p
                 WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'",
            ),
            strings(&conn, "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"),
        ),
        Engine::Postgres => (
            strings(
                &conn,
                "SELECT table_name || '.' || column_name FROM information_schema.columns
                 WHERE table_schema = current_schema() AND table_name <> 'ohassist_schema'",
            ),
            strings(
                &conn,
                "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()
                 AND indexname NOT LIKE '%\\_pkey' AND indexname NOT LIKE '%\\_key'",
            ),
        ),
    }
}

#[test]
fn both_engines_have_the_same_tables_columns_and_indexes() {
    let (sqlite_columns, sqlite_indexes) = columns(Engine::Sqlite);
    let (pg_columns, pg_indexes) = columns(Engine::Postgres);
    assert!(sqlite_columns.len() > 150, "{}", sqlite_columns.len());
    assert_eq!(
        sqlite_columns.difference(&pg_columns).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "columns SQLite has and PostgreSQL lacks"
    );
    assert_eq!(
        pg_columns.difference(&sqlite_columns).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "columns PostgreSQL has and SQLite lacks"
    );
    assert_eq!(sqlite_indexes, pg_indexes);
}

#[test]
fn a_postgres_database_of_other_tables_or_a_newer_schema_is_refused_untouched() {
    let url = ohassist_tests::pg::cluster().fresh_database();
    let conn = ohassist_tests::pg::connect(&url, false);
    conn.execute_batch("CREATE TABLE payroll (id BIGINT)").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let location = ohassist_server::db::Location::of(Some(&url), dir.path()).unwrap();
    let err = ohassist_server::db::Db::open_at(&location, dir.path()).err().expect("refused");
    assert!(err.to_string().contains("not an ohassist database"), "{err}");
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(tables, 1, "nothing created beside the foreign table");

    let url = ohassist_tests::pg::cluster().fresh_database();
    let location = ohassist_server::db::Location::of(Some(&url), dir.path()).unwrap();
    drop(ohassist_server::db::Db::open_at(&location, dir.path()).unwrap());
    let conn = ohassist_tests::pg::connect(&url, false);
    conn.execute_batch("UPDATE ohassist_schema SET version = version + 1").unwrap();
    let err = ohassist_server::db::Db::open_at(&location, dir.path()).err().expect("refused");
    assert!(err.to_string().contains("newer than this ohassist"), "{err}");
}
