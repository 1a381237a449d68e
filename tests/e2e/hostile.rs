//! Hostile and faulty phones against the real server on loopback: every push below is a
//! few kilobytes from an ordinary inspector account. Each is refused for its document alone
//! with a code and a reason in both languages; nothing of it is stored; the server stays up,
//! every stored record still loads, and honest phones keep syncing.

use automerge::transaction::Transactable;
use automerge::{ActorId, Automerge, ObjType, ROOT};
use ohassist_core::doc::{self, Author, Document};
use ohassist_core::model::{RecordKind, ReviewState, Visit};
use ohassist_core::sync::wire::{self, PushRequest, PushResponse, WireChange};
use ohassist_tests::*;

const A: &str = "350121";
const B: &str = "350122";

/// A server with an honest phone in county A that registered enterprise 1 and a visit of
/// it, and a raw token for the hostile pushes.
struct World {
    _dir: tempfile::TempDir,
    server: Server,
    honest: Phone,
    token: String,
    visit_id: String,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    server.add_user("insp", "inspector", A, PASSWORD);
    server.add_user("insp-b", "inspector", B, PASSWORD);
    let honest = Phone::new(&server.url());
    honest.login("insp", PASSWORD);
    honest.store.create_enterprise(enterprise(1, A)).unwrap();
    let visit_id = honest.store.create_visit(visit(1)).unwrap();
    honest.sync();
    let token = token(&server.url(), "insp", PASSWORD, "hostile-device");
    World { _dir: dir, server, honest, token, visit_id }
}

impl World {
    fn push(&self, changes: Vec<WireChange>) -> PushResponse {
        let body = wire::encode(&PushRequest { protocol: wire::PROTOCOL_VERSION, changes, authors: Vec::new() });
        let answer = post(&format!("{}/api/v1/sync/push", self.server.url()), Some(&self.token), SYNC_HEADERS, body);
        assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
        wire::decode(&answer.body, 1 << 24).unwrap()
    }

    /// Pushes `changes` of `doc_id` and asserts the document was refused with `code`.
    fn assert_refused(&self, doc_id: &str, changes: Vec<WireChange>, code: &str) {
        let before = self.counts();
        let response = self.push(changes);
        let refused = response.refused.iter().find(|r| r.doc_id == doc_id).unwrap_or_else(|| {
            panic!("{doc_id} was not refused: {response:?}");
        });
        assert_eq!(refused.code, code, "{refused:?}");
        assert!(!refused.message.is_empty() && !refused.message_en.is_empty());
        assert!(response.acknowledged.is_empty(), "nothing of it acknowledged");
        assert_eq!(self.counts(), before, "nothing of it stored");
        self.assert_healthy();
    }

    fn counts(&self) -> (i64, i64) {
        let db = self.server.db();
        let c: i64 = db.query_row("SELECT count(*) FROM changes", [], |r| r.get(0)).unwrap();
        let d: i64 = db.query_row("SELECT count(*) FROM documents", [], |r| r.get(0)).unwrap();
        (c, d)
    }

    /// The server answers, every stored document loads, and the honest phone still syncs
    /// both ways (a second honest phone's first sync too).
    fn assert_healthy(&self) {
        assert_eq!(get(&format!("{}/health", self.server.url()), None).status, 200);
        let db = self.server.db();
        let mut stmt = db.prepare("SELECT id, kind, bytes FROM documents").unwrap();
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, Vec<u8>>(2)?)))
            .unwrap();
        for row in rows {
            let (id, kind, bytes) = row.unwrap();
            Document::load(RecordKind::parse(&kind).unwrap(), &id, &bytes).expect("every stored record loads");
        }
        self.honest.store.edit_visit(&self.visit_id, |v| v.notes.push('。')).unwrap();
        let report = self.honest.sync();
        assert_eq!(report.newly_held, 0);
        assert_eq!(self.honest.store.outbox_len().unwrap(), 0);
        let fresh = Phone::new(&self.server.url());
        fresh.login("insp", PASSWORD);
        fresh.sync();
        assert!(fresh.store.get_visit(&self.visit_id).is_ok());
        assert!(fresh.store.quarantined().unwrap().is_empty());
    }
}

fn wire_change(kind: RecordKind, id: &str, bytes: Vec<u8>) -> WireChange {
    WireChange { doc_id: id.to_string(), kind, bytes }
}

/// A new visit's genesis plus one change made with raw automerge by `build`.
fn raw_visit(id: &str, build: impl FnOnce(&mut automerge::transaction::Transaction<'_>)) -> Vec<WireChange> {
    let genesis = Document::genesis(RecordKind::Visit, id);
    let mut am: Automerge = genesis.automerge().clone().with_actor(ActorId::random());
    let mut tx = am.transaction();
    build(&mut tx);
    tx.commit();
    let change = am.get_last_local_change().unwrap().clone();
    let g = genesis.changes_since(&[]).remove(0);
    vec![
        wire_change(RecordKind::Visit, id, g.raw_bytes().to_vec()),
        wire_change(RecordKind::Visit, id, change.raw_bytes().to_vec()),
    ]
}

#[test]
fn hostile_pushes_are_refused_alone_and_leave_the_county_healthy() {
    let w = world();

    // Maps nested 2,000 levels deep (a few KB): refused before anything reads it recursively.
    let deep = raw_visit("deep", |tx| {
        tx.put(ROOT, "enterprise_id", credit_code(1)).unwrap();
        let mut obj = ROOT;
        for _ in 0..2_000 {
            obj = tx.put_object(&obj, "n", ObjType::Map).unwrap();
        }
    });
    w.assert_refused("deep", deep, "too_deep");

    // A valid change carrying a 300 KB string (the longest text is 5,000 characters).
    let long = raw_visit("long", |tx| {
        tx.put(ROOT, "notes", "x".repeat(300_000)).unwrap();
    });
    w.assert_refused("long", long, "too_large");

    // A compressed chunk that inflates to 64 MiB of zeros.
    let mut bomb = raw_visit("bomb", |tx| tx.put(ROOT, "notes", "x").unwrap());
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut enc, &vec![0u8; 64 << 20]).unwrap();
    let deflated = enc.finish().unwrap();
    let mut chunk = bomb[1].bytes[..8].to_vec();
    chunk.push(2);
    let mut len = deflated.len() as u64;
    loop {
        let b = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            chunk.push(b);
            break;
        }
        chunk.push(b | 0x80);
    }
    chunk.extend_from_slice(&deflated);
    bomb[1].bytes = chunk;
    w.assert_refused("bomb", bomb, "too_large");

    // Two flipped bits inside a compressed change's payload: the checksum no longer matches.
    let mut flipped = raw_visit("flip", |tx| tx.put(ROOT, "notes", "字".repeat(1_000)).unwrap());
    let mut change = automerge::Change::from_bytes(flipped[1].bytes.clone()).unwrap();
    let mut compressed = change.bytes().to_vec();
    let n = compressed.len();
    compressed[n - 10] ^= 0x08;
    compressed[n - 17] ^= 0x01;
    flipped[1].bytes = compressed;
    let before = w.counts();
    let response = w.push(flipped);
    let code = &response.refused.iter().find(|r| r.doc_id == "flip").expect("refused").code;
    assert!(code == "checksum_mismatch" || code == "invalid_change", "{code}");
    assert_eq!(w.counts(), before);

    // A genesis that is not the canonical one (another skeleton) for a new visit.
    let mut forged = Automerge::new().with_actor(doc::genesis_actor(RecordKind::Visit, "forged"));
    let mut tx = forged.transaction();
    tx.put(ROOT, "kind", "visit").unwrap();
    tx.put(ROOT, "id", "forged").unwrap();
    tx.put_object(ROOT, "review", ObjType::Map).unwrap();
    tx.commit();
    let g = forged.get_last_local_change().unwrap().raw_bytes().to_vec();
    w.assert_refused("forged", vec![wire_change(RecordKind::Visit, "forged", g)], "non_canonical_genesis");

    // A second phone that synced before keeps pulling incrementally.
    let second = Phone::new(&w.server.url());
    second.login("insp", PASSWORD);
    second.sync();
    w.honest.store.edit_visit(&w.visit_id, |v| v.notes = "after".into()).unwrap();
    w.honest.sync();
    second.sync();
    assert_eq!(second.store.get_visit(&w.visit_id).unwrap().record.notes, "after");
}

#[test]
fn no_push_reaches_another_county_by_reference_and_inspectors_cannot_approve() {
    let w = world();
    // County B's inspector registers an enterprise of B.
    let b = Phone::new(&w.server.url());
    b.login("insp-b", PASSWORD);
    b.store.create_enterprise(enterprise(2, B)).unwrap();
    b.sync();
    let status_before: i64 =
        w.server.db().query_row("SELECT count(*) FROM visits WHERE county_code = ?1", [B], |r| r.get(0)).unwrap();

    // County A's inspector pushes a visit that says county A for B's enterprise.
    let id = ohassist_core::model::new_item_id();
    let mut r = Document::genesis(RecordKind::Visit, &id);
    let author = Author { user: "insp".into(), device: "hostile-device".into() };
    let hostile = Visit {
        enterprise_id: credit_code(2),
        county_code: A.into(),
        visit_date: "2025-05-20".into(),
        ..Default::default()
    };
    // Diffed against the defaults, as a phone writes a new record.
    let defaults = doc::to_json(&Visit::default());
    let change = r.write_diff(&ActorId::random(), &author, &defaults, &doc::to_json(&hostile)).unwrap().unwrap();
    let g = Document::genesis(RecordKind::Visit, &id).changes_since(&[]).remove(0);
    let changes = vec![
        wire_change(RecordKind::Visit, &id, g.raw_bytes().to_vec()),
        wire_change(RecordKind::Visit, &id, change.raw_bytes().to_vec()),
    ];
    w.assert_refused(&id, changes, "out_of_scope");
    let status_after: i64 =
        w.server.db().query_row("SELECT count(*) FROM visits WHERE county_code = ?1", [B], |r| r.get(0)).unwrap();
    assert_eq!(status_after, status_before, "nothing of county B changed");

    // A visit for an enterprise the server never got is held, not applied.
    let (unknown, _) = {
        let mut v = hostile.clone();
        v.enterprise_id = credit_code(77);
        (v, ())
    };
    let id2 = ohassist_core::model::new_item_id();
    let mut r2 = Document::genesis(RecordKind::Visit, &id2);
    let c2 = r2.write_diff(&ActorId::random(), &author, &defaults, &doc::to_json(&unknown)).unwrap().unwrap();
    let g2 = Document::genesis(RecordKind::Visit, &id2).changes_since(&[]).remove(0);
    w.assert_refused(
        &id2,
        vec![
            wire_change(RecordKind::Visit, &id2, g2.raw_bytes().to_vec()),
            wire_change(RecordKind::Visit, &id2, c2.raw_bytes().to_vec()),
        ],
        "unknown_enterprise",
    );

    // The inspector approves their own visit on the phone: refused, and kept held with the
    // reason; submitting is allowed.
    w.honest
        .store
        .edit_visit(&w.visit_id, |v| {
            v.review.state = ReviewState::Approved;
            v.review.reviewer = "自己".into();
        })
        .unwrap();
    let report = w.honest.sync();
    assert_eq!(report.newly_held, 1);
    let held = w.honest.store.held_records().unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].code, "field_authority");
    assert_eq!(held[0].doc_id, w.visit_id);
    let state: String =
        w.server.db().query_row("SELECT review_state FROM visits WHERE id = ?1", [&w.visit_id], |r| r.get(0)).unwrap();
    assert_eq!(state, "draft", "the console never shows it approved");

    let other = Phone::new(&w.server.url());
    other.login("insp", PASSWORD);
    other.store.create_enterprise(enterprise(3, A)).unwrap();
    let v3 = other.store.create_visit(visit(3)).unwrap();
    other.store.edit_visit(&v3, |v| v.review.state = ReviewState::Submitted).unwrap();
    let report = other.sync();
    assert_eq!(report.newly_held, 0, "an inspector may submit");
    let state: String =
        w.server.db().query_row("SELECT review_state FROM visits WHERE id = ?1", [&v3], |r| r.get(0)).unwrap();
    assert_eq!(state, "submitted");
}

/// Valid push bodies mutated at random (bit flips, truncations, splices of two changes,
/// bytes of one record sent as another's): never a 5xx, never a stored record that does not
/// load, and the honest phone keeps syncing.
#[test]
fn mutated_pushes_never_answer_5xx() {
    let w = world();
    let cases: usize = std::env::var("OHASSIST_MUTATION_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000);
    let seeds: Vec<WireChange> = {
        let p = Phone::new(&w.server.url());
        p.login("insp", PASSWORD);
        p.store.create_enterprise(enterprise(9, A)).unwrap();
        let v = p.store.create_visit(visit(9)).unwrap();
        p.store.edit_visit(&v, |v| v.notes = "字".repeat(300)).unwrap();
        p.store
            .outbox(100)
            .unwrap()
            .into_iter()
            .map(|c| WireChange { doc_id: c.doc_id, kind: c.kind, bytes: c.bytes })
            .collect()
    };
    let mut rng = rand::rng();
    use rand::Rng;
    let url = format!("{}/api/v1/sync/push", w.server.url());
    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..cases {
        let mut changes = seeds.clone();
        let target = rng.random_range(0..changes.len());
        let bytes = &mut changes[target].bytes;
        match rng.random_range(0..5) {
            0 => {
                for _ in 0..rng.random_range(1..4) {
                    let at = rng.random_range(0..bytes.len());
                    bytes[at] ^= 1 << rng.random_range(0..8);
                }
            }
            1 => bytes.truncate(rng.random_range(0..bytes.len())),
            2 => {
                let other = seeds[rng.random_range(0..seeds.len())].bytes.clone();
                let cut = rng.random_range(0..bytes.len().min(other.len()));
                bytes.truncate(cut);
                bytes.extend_from_slice(&other[cut..]);
            }
            3 => {
                let at = rng.random_range(0..bytes.len());
                bytes[at] = rng.random();
            }
            _ => {
                changes[target].kind =
                    if changes[target].kind == RecordKind::Visit { RecordKind::Enterprise } else { RecordKind::Visit }
            }
        }
        // Fresh ids, so that a mutation never merely repeats an accepted push.
        let suffix = format!("-m{i}");
        if rng.random_bool(0.5) {
            for c in &mut changes {
                if c.kind == RecordKind::Visit {
                    c.doc_id.push_str(&suffix);
                }
            }
        }
        let body = wire::encode(&PushRequest { protocol: wire::PROTOCOL_VERSION, changes, authors: Vec::new() });
        let answer = post(&url, Some(&w.token), SYNC_HEADERS, body);
        *statuses.entry(answer.status).or_insert(0) += 1;
        assert!(answer.status < 500, "case {i}: {} {}", answer.status, String::from_utf8_lossy(&answer.body));
    }
    let peak = w.server.peak_memory();
    eprintln!("mutated pushes: {cases} cases, statuses {statuses:?}, server peak memory {} MB", peak >> 20);
    assert!(peak < HOSTILE_MEMORY_BOUND, "server peak memory {peak} bytes");
    w.assert_healthy();
}

/// Documented bound of the server's peak memory while it answers hostile pushes.
const HOSTILE_MEMORY_BOUND: u64 = 256 * 1024 * 1024;

/// Eight hostile pushes at once — each a full 8 MiB body of compression bombs, deep nesting
/// and long values — keep the server under its documented memory bound.
#[test]
fn eight_hostile_pushes_at_once_stay_within_the_memory_bound() {
    let w = world();
    let mut bomb_chunk = Vec::new();
    {
        let base = raw_visit("b", |tx| tx.put(ROOT, "notes", "x").unwrap());
        let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut enc, &vec![0u8; 512 << 20]).unwrap();
        let deflated = enc.finish().unwrap();
        bomb_chunk.extend_from_slice(&base[1].bytes[..8]);
        bomb_chunk.push(2);
        let mut len = deflated.len() as u64;
        loop {
            let b = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                bomb_chunk.push(b);
                break;
            }
            bomb_chunk.push(b | 0x80);
        }
        bomb_chunk.extend_from_slice(&deflated);
    }
    let deep = raw_visit("deep", |tx| {
        let mut obj = ROOT;
        for _ in 0..5_000 {
            obj = tx.put_object(&obj, "n", ObjType::Map).unwrap();
        }
    });
    let long = raw_visit("long", |tx| tx.put(ROOT, "notes", "y".repeat(900_000)).unwrap());
    let bodies: Vec<Vec<u8>> = (0..8)
        .map(|i| {
            let mut changes = Vec::new();
            let mut size = 0;
            let mut n = 0;
            while size < 7 << 20 {
                let (id, bytes) = match n % 3 {
                    0 => (format!("bomb-{i}-{n}"), bomb_chunk.clone()),
                    1 => (format!("deep-{i}-{n}"), deep[1].bytes.clone()),
                    _ => (format!("long-{i}-{n}"), long[1].bytes.clone()),
                };
                size += bytes.len();
                changes.push(wire_change(RecordKind::Visit, &id, bytes));
                n += 1;
            }
            wire::encode(&PushRequest { protocol: wire::PROTOCOL_VERSION, changes, authors: Vec::new() })
        })
        .collect();
    let url = format!("{}/api/v1/sync/push", w.server.url());
    std::thread::scope(|s| {
        for body in bodies {
            let (url, token) = (&url, &w.token);
            s.spawn(move || {
                let answer = post(url, Some(token), SYNC_HEADERS, body);
                assert!(answer.status < 500, "{}", answer.status);
            });
        }
    });
    let peak = w.server.peak_memory();
    eprintln!("server peak memory after 8 hostile pushes at once: {} MiB", peak >> 20);
    assert!(peak < HOSTILE_MEMORY_BOUND, "peak {} MiB", peak >> 20);
    w.assert_healthy();
}
