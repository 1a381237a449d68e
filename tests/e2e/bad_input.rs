//! Every malformed, oversized or wrong-version input gets its 4xx with a machine-readable
//! code and a message, and changes nothing on the server.

use std::io::Write;

use ohassist_core::model::RecordKind;
use ohassist_core::sync::wire::{self, PullRequest, PushRequest, WireChange};
use ohassist_tests::*;

const A: &str = "350121";

/// (what, url, token, headers, body, expected status, expected code)
type Case<'a> = (&'a str, &'a str, Option<&'a str>, &'a [(&'a str, &'a str)], Vec<u8>, u16, &'a str);

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

fn counts(server: &Server) -> (i64, i64) {
    let db = server.db();
    let c: i64 = db.query_row("SELECT count(*) FROM changes", [], |r| r.get(0)).unwrap();
    let d: i64 = db.query_row("SELECT count(*) FROM documents", [], |r| r.get(0)).unwrap();
    (c, d)
}

#[test]
fn bad_inputs_get_their_4xx_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    server.add_user("insp", "inspector", A, PASSWORD);
    let phone = Phone::new(&server.url());
    phone.login("insp", PASSWORD);
    phone.store.create_enterprise(enterprise(1, A)).unwrap();
    phone.sync();
    let token = token(&server.url(), "insp", PASSWORD, "raw-device");
    let push = format!("{}/api/v1/sync/push", server.url());
    let pull = format!("{}/api/v1/sync/pull", server.url());
    let login = format!("{}/api/v1/login", server.url());

    // A valid change, to mix with invalid ones.
    let good = phone.store.get_enterprise(&credit_code(1)).unwrap();
    assert!(!good.pending_sync);
    let p2 = Phone::new(&server.url());
    p2.login("insp", PASSWORD);
    p2.store.create_enterprise(enterprise(2, A)).unwrap();
    let fresh: Vec<WireChange> = p2
        .store
        .outbox(100)
        .unwrap()
        .into_iter()
        .map(|c| WireChange { doc_id: c.doc_id, kind: c.kind, bytes: c.bytes })
        .collect();
    let push_of = |changes: Vec<WireChange>| {
        wire::encode(&PushRequest { protocol: wire::PROTOCOL_VERSION, changes, authors: Vec::new() })
    };
    let mut mixed = fresh.clone();
    mixed.push(WireChange {
        doc_id: "v-garbage".into(),
        kind: RecordKind::Visit,
        bytes: vec![0x85, 0x6f, 0x4a, 0x83, 1, 2, 3],
    });
    let too_many: Vec<WireChange> = (0..=wire::MAX_PUSH_CHANGES)
        .map(|i| WireChange { doc_id: format!("d{i}"), kind: RecordKind::Visit, bytes: vec![0] })
        .collect();
    let huge_change = vec![WireChange {
        doc_id: "big".into(),
        kind: RecordKind::Visit,
        bytes: vec![7u8; wire::MAX_CHANGE_BYTES + 1],
    }];
    let bomb = gzip(&vec![0u8; wire::MAX_PUSH_BYTES + 1024]);
    let wrong_version = wire::encode(&PushRequest { protocol: 99, changes: fresh.clone(), authors: Vec::new() });
    let json_headers: &[(&str, &str)] = &[("content-type", "application/json")];
    let old_protocol: &[(&str, &str)] =
        &[("content-type", "application/cbor"), ("content-encoding", "gzip"), ("x-ohassist-protocol", "0")];

    let cases: Vec<Case> = vec![
        ("login: malformed JSON", &login, None, json_headers, b"{\"username\": ".to_vec(), 400, "malformed_body"),
        (
            "login: wrong password",
            &login,
            None,
            json_headers,
            br#"{"username":"insp","password":"no","device_id":"d"}"#.to_vec(),
            401,
            "invalid_credentials",
        ),
        ("push: not gzip", &push, Some(&token), SYNC_HEADERS, b"plain bytes".to_vec(), 400, "malformed_body"),
        ("push: gzip of garbage", &push, Some(&token), SYNC_HEADERS, gzip(b"\xff\xfe not cbor"), 400, "malformed_body"),
        ("push: too many changes", &push, Some(&token), SYNC_HEADERS, push_of(too_many), 413, "too_large"),
        ("push: decompression bomb", &push, Some(&token), SYNC_HEADERS, bomb, 413, "too_large"),
        ("push: wrong protocol in body", &push, Some(&token), SYNC_HEADERS, wrong_version, 426, "protocol_version"),
        (
            "push: wrong protocol header",
            &push,
            Some(&token),
            old_protocol,
            push_of(fresh.clone()),
            426,
            "protocol_version",
        ),
        ("push: unknown token", &push, Some("bogus"), SYNC_HEADERS, push_of(fresh.clone()), 401, "unauthorized"),
        ("pull: garbage", &pull, Some(&token), SYNC_HEADERS, gzip(b"[1,2"), 400, "malformed_body"),
        (
            "pull: wrong protocol",
            &pull,
            Some(&token),
            SYNC_HEADERS,
            wire::encode(&PullRequest {
                protocol: wire::PROTOCOL_VERSION - 1,
                cursor: 0,
                page_token: None,
                pending: None,
            }),
            426,
            "protocol_version",
        ),
        (
            "pull: forged page token",
            &pull,
            Some(&token),
            SYNC_HEADERS,
            wire::encode(&PullRequest {
                protocol: wire::PROTOCOL_VERSION,
                cursor: 0,
                page_token: Some("not a token".into()),
                pending: None,
            }),
            400,
            "malformed_body",
        ),
        (
            "pull: a pending count past what a count can be",
            &pull,
            Some(&token),
            SYNC_HEADERS,
            wire::encode(&PullRequest {
                protocol: wire::PROTOCOL_VERSION,
                cursor: 0,
                page_token: None,
                pending: Some(wire::DeviceReport { pending_changes: u64::MAX, pending_attachments: 0 }),
            }),
            422,
            "invalid_input",
        ),
    ];
    let before = counts(&server);
    for (what, url, tok, headers, body, status, code) in cases {
        let answer = post(url, tok, headers, body);
        assert_eq!(answer.status, status, "{what}: {}", String::from_utf8_lossy(&answer.body));
        assert_eq!(answer.code(), code, "{what}");
        let json = answer.json();
        assert!(!json["message"].as_str().unwrap_or("").is_empty(), "{what}: Chinese message");
        assert!(!json["message_en"].as_str().unwrap_or("").is_empty(), "{what}: English message");
        if code == "invalid_input" {
            assert_eq!(json["field"], "pending.pending_changes", "{what}: the field named");
        }
        assert_eq!(counts(&server), before, "{what}: nothing applied");
    }
    // A document that cannot be read is refused alone, with its reason, and nothing of it
    // is stored.
    let answer = post(&push, Some(&token), SYNC_HEADERS, push_of(huge_change));
    assert_eq!(answer.status, 200);
    let response: wire::PushResponse = wire::decode(&answer.body, 1 << 20).unwrap();
    assert_eq!(response.refused.len(), 1);
    assert_eq!((response.refused[0].doc_id.as_str(), response.refused[0].code.as_str()), ("big", "too_large"));
    assert_eq!(counts(&server), before);
    let answer = post(&push, Some(&token), SYNC_HEADERS, push_of(mixed));
    let response: wire::PushResponse = wire::decode(&answer.body, 1 << 20).unwrap();
    assert_eq!(response.refused.len(), 1);
    assert_eq!(response.refused[0].code, "invalid_change");
    assert_eq!(response.acknowledged.len(), fresh.len(), "the good document of the same push is applied");
    // The server is still healthy and the good changes still go through.
    assert_eq!(get(&format!("{}/health", server.url()), None).status, 200);
    p2.sync();
    assert!(counts(&server).0 > before.0);
}
