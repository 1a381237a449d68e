//! The change feed never lets a reader skip a change that commits after a later position
//! (ADR 0008): positions follow commit order, with several writers on one database.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ohassist_server::sql::{params, Connection, Engine, TransactionBehavior};

use crate::{fresh, Fresh, ENGINES};

fn add_change(conn: &Connection, hash: &str) {
    conn.execute(
        "INSERT INTO changes (hash, doc_id, kind, bytes, user_id, device_id, received_at)
         VALUES (?1, 'd1', 'visit', ?2, 'u', 'dev', 0)",
        params![hash, vec![1u8, 2, 3]],
    )
    .unwrap();
}

fn seq_of(conn: &Connection, hash: &str) -> i64 {
    conn.query_row("SELECT seq FROM changes WHERE hash = ?1", [hash], |r| r.get(0)).unwrap()
}

fn with_document(f: &Fresh) {
    f.db.blocking_writer()
        .execute(
            "INSERT INTO documents (id, kind, bytes, heads, county_code, has_conflicts, updated_at)
             VALUES ('d1', 'visit', ?1, '[]', '350102', 0, 0)",
            [vec![0u8]],
        )
        .unwrap();
}

/// A second writer waits for the first's transaction, and takes the later position.
#[test]
fn a_second_writer_waits_and_takes_the_later_position() {
    for engine in ENGINES {
        // `writer = false`: an autocommit insert without the lock at BEGIN still waits (the
        // trigger takes it), so no code path can slip a position in between.
        for second_is_writer in [true, false] {
            let f = fresh(engine);
            with_document(&f);
            let mut a = f.db.blocking_writer();
            let tx = a.transaction_with_behavior(TransactionBehavior::Immediate).unwrap();
            add_change(&tx, "h-first");
            let done = Arc::new(AtomicBool::new(false));
            let b = f.other_connection(second_is_writer);
            let flag = done.clone();
            let t = std::thread::spawn(move || {
                if second_is_writer {
                    let tx = b.unchecked_transaction().unwrap();
                    add_change(&tx, "h-second");
                    tx.commit().unwrap();
                } else {
                    add_change(&b, "h-second");
                }
                flag.store(true, Ordering::SeqCst);
            });
            std::thread::sleep(Duration::from_millis(400));
            assert!(!done.load(Ordering::SeqCst), "{engine:?}: the second writer went ahead of an open transaction");
            tx.commit().unwrap();
            t.join().unwrap();
            assert!(seq_of(&a, "h-first") < seq_of(&a, "h-second"), "{engine:?}");
        }
    }
}

/// Several writers commit changes in random order while a reader pulls the feed past its
/// cursor, as a phone does: the reader sees every change, none skipped and none twice.
#[test]
fn a_reader_following_the_feed_skips_nothing_under_concurrent_writers() {
    for engine in ENGINES {
        let f = fresh(engine);
        with_document(&f);
        const WRITERS: usize = 4;
        const EACH: usize = 40;
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let conn = f.other_connection(false);
            let stop = stop.clone();
            std::thread::spawn(move || {
                let (mut cursor, mut seen, mut twice) = (0i64, BTreeSet::new(), 0);
                let deadline = Instant::now() + Duration::from_secs(120);
                loop {
                    let last_round = stop.load(Ordering::SeqCst);
                    let rows: Vec<(i64, String)> = conn
                        .prepare("SELECT seq, hash FROM changes WHERE seq > ?1 ORDER BY seq")
                        .unwrap()
                        .query_map([cursor], |r| Ok((r.get(0)?, r.get(1)?)))
                        .unwrap()
                        .map(Result::unwrap)
                        .collect();
                    for (seq, hash) in rows {
                        cursor = cursor.max(seq);
                        if !seen.insert(hash) {
                            twice += 1;
                        }
                    }
                    if last_round || Instant::now() > deadline {
                        return (seen, twice);
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let conn = f.other_connection(true);
                std::thread::spawn(move || {
                    for i in 0..EACH {
                        let tx = conn.unchecked_transaction().unwrap();
                        add_change(&tx, &format!("w{w}-{i}"));
                        // Hold the transaction a little, a different while each time.
                        std::thread::sleep(Duration::from_micros(((w * 7 + i * 13) % 5) as u64 * 300));
                        tx.commit().unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        stop.store(true, Ordering::SeqCst);
        let (seen, twice) = reader.join().unwrap();
        assert_eq!(seen.len(), WRITERS * EACH, "{engine:?}: the reader skipped changes");
        assert_eq!(twice, 0, "{engine:?}");
        if engine == Engine::Postgres {
            let a = f.db.blocking_writer();
            let n: i64 = a.query_row("SELECT count(DISTINCT seq) FROM changes", [], |r| r.get(0)).unwrap();
            assert_eq!(n as usize, WRITERS * EACH);
        }
    }
}
