//! Values, transactions and errors read the same on both engines.

use ohassist_server::sql::{params, Insert, OptionalExtension};

use crate::{fresh, ENGINES};

#[test]
fn values_come_back_as_they_went_in() {
    for engine in ENGINES {
        let f = fresh(engine);
        let conn = f.db.blocking_writer();
        conn.execute(
            "INSERT INTO units (code, name, zone, host, target, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params!["350102", "鼓楼区 ‘引号’ ?1", true, None::<String>, Some(12u32), i64::MAX],
        )
        .unwrap();
        let (name, zone, host, target, at): (String, bool, Option<String>, Option<u32>, i64) = conn
            .query_row("SELECT name, zone, host, target, updated_at FROM units WHERE code = ?1", ["350102"], |r| {
                Ok((r.get("name")?, r.get(1)?, r.get("host")?, r.get(3)?, r.get(4)?))
            })
            .unwrap();
        assert_eq!(
            (name.as_str(), zone, host, target, at),
            ("鼓楼区 ‘引号’ ?1", true, None, Some(12), i64::MAX),
            "{engine:?}"
        );

        conn.execute(
            "INSERT INTO attachments (sha256, size, media_type, complete, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params!["a".repeat(64), 5u64, "image/jpeg", 1, 7],
        )
        .unwrap();
        let sum: i64 = conn.query_row("SELECT sum(size) + count(*) FROM attachments", [], |r| r.get(0)).unwrap();
        assert_eq!(sum, 6, "{engine:?}: a sum reads as an integer");
        let exists: bool =
            conn.query_row("SELECT EXISTS (SELECT 1 FROM attachments WHERE size > ?1)", [4], |r| r.get(0)).unwrap();
        assert!(exists, "{engine:?}");
        let none: Option<String> =
            conn.query_row("SELECT name FROM units WHERE code = ?1", ["000000"], |r| r.get(0)).optional().unwrap();
        assert_eq!(none, None, "{engine:?}");
        let wrong = conn.query_row("SELECT name FROM units", [], |r| r.get::<_, i64>(0)).unwrap_err();
        assert!(wrong.to_string().contains("name") || wrong.to_string().contains('0'), "{engine:?}: {wrong}");
    }
}

#[test]
fn blobs_and_real_numbers_round_trip() {
    for engine in ENGINES {
        let f = fresh(engine);
        let conn = f.db.blocking_writer();
        let bytes: Vec<u8> = (0..=255).collect();
        conn.execute(
            "INSERT INTO documents (id, kind, bytes, heads, county_code, has_conflicts, updated_at)
             VALUES (?1, 'visit', ?2, '[]', '350102', 0, 1)",
            params!["v1", bytes],
        )
        .unwrap();
        let back: Vec<u8> = conn.query_row("SELECT bytes FROM documents WHERE id = ?1", ["v1"], |r| r.get(0)).unwrap();
        assert_eq!(back, bytes, "{engine:?}");
        conn.execute(
            "INSERT INTO documents (id, kind, bytes, heads, county_code, has_conflicts, updated_at)
             VALUES ('E1', 'enterprise', ?1, '[]', '350102', 0, 1)",
            [vec![0u8]],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO enterprises (credit_code, name, county_code, county_name, years, city_level_target,
                 special_governance, has_occupational_disease, in_surveillance_scope, deleted, has_conflicts, latitude)
             VALUES ('E1', '甲', '350102', '鼓楼区', '[]', 0, 0, 0, 0, 0, 0, ?1)",
            [26.0745_f64],
        )
        .unwrap();
        let lat: f64 = conn.query_row("SELECT latitude FROM enterprises", [], |r| r.get(0)).unwrap();
        assert_eq!(lat, 26.0745, "{engine:?}");
    }
}

#[test]
fn a_dropped_transaction_and_a_rolled_back_savepoint_leave_nothing() {
    for engine in ENGINES {
        let f = fresh(engine);
        let mut conn = f.db.blocking_writer();
        let insert = |c: &ohassist_server::sql::Connection, code: &str| {
            c.execute("INSERT INTO units (code, name, updated_at) VALUES (?1, 'x', 0)", [code]).unwrap();
        };
        {
            let tx = conn.transaction().unwrap();
            insert(&tx, "350101");
        }
        {
            let tx = conn.transaction().unwrap();
            insert(&tx, "350102");
            tx.execute_batch("SAVEPOINT document").unwrap();
            insert(&tx, "350103");
            tx.execute_batch("ROLLBACK TO document; RELEASE document").unwrap();
            tx.commit().unwrap();
        }
        let codes: Vec<String> = conn
            .prepare("SELECT code FROM units ORDER BY code")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(codes, ["350102"], "{engine:?}");
    }
}

#[test]
fn a_duplicate_key_is_a_unique_violation_and_usernames_ignore_case() {
    for engine in ENGINES {
        let f = fresh(engine);
        let conn = f.db.blocking_writer();
        let add = |id: &str, name: &str| {
            conn.execute(
                "INSERT INTO users (id, username, display_name, role, org_unit, password_hash, created_at)
                 VALUES (?1, ?2, '张', 'inspector', '350102', 'h', 0)",
                [id, name],
            )
        };
        add("u1", "Zhang").unwrap();
        let err = add("u2", "zhang").unwrap_err();
        assert!(err.is_unique_violation(), "{engine:?}: {err}");
        let id: String = conn.query_row("SELECT id FROM users WHERE username = ?1", ["ZHANG"], |r| r.get(0)).unwrap();
        assert_eq!(id, "u1", "{engine:?}");
    }
}

/// Writes sent ahead (`execute_later`, PostgreSQL's pipeline): they land in order with the
/// statements around them; one that fails makes the next statement (or the commit) fail with
/// its error, the transaction commits nothing, and the connection is usable afterwards.
#[test]
fn writes_sent_ahead_land_in_order_and_a_failed_one_fails_the_transaction() {
    for engine in ENGINES {
        let f = fresh(engine);
        let mut conn = f.db.blocking_writer();
        let count = |c: &ohassist_server::sql::Connection| -> i64 {
            c.query_row("SELECT count(*) FROM units", [], |r| r.get(0)).unwrap()
        };
        {
            let tx = conn.transaction().unwrap();
            tx.execute_later("SAVEPOINT document", []).unwrap();
            for n in 0..600 {
                let code = format!("35{n:04}");
                tx.execute_later(
                    "INSERT INTO units (code, name, updated_at) VALUES (?1, '单位', ?2)",
                    params![code, n],
                )
                .unwrap();
            }
            tx.execute_later("RELEASE document", []).unwrap();
            // A read after them sees every one of them.
            assert_eq!(count(&tx), 600, "{engine:?}");
            tx.commit().unwrap();
        }
        let failed = (|| {
            let tx = conn.transaction()?;
            tx.execute_later("INSERT INTO units (code, name, updated_at) VALUES ('359999', 'a', 0)", [])?;
            // The same key again: a unique violation, seen at the next statement at the latest.
            tx.execute_later("INSERT INTO units (code, name, updated_at) VALUES ('350001', 'b', 0)", [])?;
            tx.commit()
        })();
        let err = failed.expect_err("the duplicate fails the transaction");
        assert!(err.is_unique_violation(), "{engine:?}: {err}");
        assert_eq!(count(&conn), 600, "{engine:?}: nothing of the failed transaction is kept");
        let tx = conn.transaction().unwrap();
        tx.execute_later("INSERT INTO units (code, name, updated_at) VALUES ('359998', 'c', 0)", []).unwrap();
        tx.commit().unwrap();
        assert_eq!(count(&conn), 601, "{engine:?}: the connection works on");
    }
}

static DOCUMENT: Insert = Insert::new(
    "documents (id, kind, bytes, heads, county_code, has_conflicts, updated_at)",
    7,
    1,
    "ON CONFLICT (id) DO UPDATE SET heads = excluded.heads, updated_at = excluded.updated_at",
);
static CHANGE: Insert = Insert::new(
    "changes (hash, doc_id, kind, bytes, user_id, device_id, received_at)",
    7,
    0,
    "ON CONFLICT (hash) DO NOTHING",
);

/// Rows kept for multi-row inserts (`insert_later`, PostgreSQL): more than one statement
/// holds, two kinds interleaved, a row referencing one kept before it, a key repeated
/// (updated, the last one wins), a change already held skipped; a read sees them all, the
/// feed's positions follow the order they came in; one that fails fails the transaction,
/// which keeps nothing, and the connection works on.
#[test]
fn rows_kept_for_multi_row_inserts_land_in_order_and_a_failed_one_fails_the_transaction() {
    for engine in ENGINES {
        let f = fresh(engine);
        let mut conn = f.db.blocking_writer();
        let count = |c: &ohassist_server::sql::Connection, table: &str| -> i64 {
            c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)).unwrap()
        };
        {
            let tx = conn.transaction().unwrap();
            for n in 0..600 {
                let id = format!("d{n:03}");
                tx.insert_later(&DOCUMENT, params![id, "visit", vec![0u8], "[]", "350102", 0, n]).unwrap();
                tx.insert_later(&CHANGE, params![format!("h{n:03}"), id, "visit", vec![1u8], "u", "dev", n]).unwrap();
            }
            tx.insert_later(&DOCUMENT, params!["d005", "visit", vec![0u8], "[\"again\"]", "350102", 0, 7]).unwrap();
            tx.insert_later(&CHANGE, params!["h005", "d005", "visit", vec![9u8], "u", "dev", 9]).unwrap();
            tx.insert_later(&DOCUMENT, params!["d005", "visit", vec![0u8], "[\"last\"]", "350102", 0, 8]).unwrap();
            assert_eq!(count(&tx, "documents"), 600, "{engine:?}");
            assert_eq!(count(&tx, "changes"), 600, "{engine:?}");
            tx.commit().unwrap();
        }
        let heads: String = conn.query_row("SELECT heads FROM documents WHERE id = 'd005'", [], |r| r.get(0)).unwrap();
        assert_eq!(heads, "[\"last\"]", "{engine:?}: the last row of a key wins");
        let bytes: Vec<u8> = conn.query_row("SELECT bytes FROM changes WHERE hash = 'h005'", [], |r| r.get(0)).unwrap();
        assert_eq!(bytes, vec![1u8], "{engine:?}: a change held is left as it is");
        let feed: Vec<String> = conn
            .prepare("SELECT hash FROM changes ORDER BY seq")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let expected: Vec<String> = (0..600).map(|n| format!("h{n:03}")).collect();
        assert_eq!(feed, expected, "{engine:?}: positions in the order the rows came");

        let failed = (|| {
            let tx = conn.transaction()?;
            tx.insert_later(&DOCUMENT, params!["e1", "visit", vec![0u8], "[]", "350102", 0, 0])?;
            // A change of a document nobody stored: the foreign key refuses it, at the commit
            // at the latest.
            tx.insert_later(&CHANGE, params!["x1", "nowhere", "visit", vec![1u8], "u", "dev", 0])?;
            tx.commit()
        })();
        assert!(failed.is_err(), "{engine:?}: the row that fails fails the transaction");
        assert_eq!(count(&conn, "documents"), 600, "{engine:?}: nothing of the failed transaction is kept");
        let short = conn.insert_later(&CHANGE, params!["x2", "d001"]);
        assert!(short.is_err(), "{engine:?}: a row of too few values is refused");
        let tx = conn.transaction().unwrap();
        tx.insert_later(&CHANGE, params!["h600", "d001", "visit", vec![1u8], "u", "dev", 0]).unwrap();
        tx.commit().unwrap();
        assert_eq!(count(&conn, "changes"), 601, "{engine:?}: the connection works on");
    }
}
