//! `POST /api/v1/sync/exchange`: a push and the pull page after it in one request, with the
//! refusals of both (per document inside the push; the whole request only for what would
//! refuse a push or a pull as a whole, before anything is applied). And the phone's client
//! against a server without the endpoint, over real loopback HTTP: it pushes and pulls apart.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::http::StatusCode;
use ohassist_core::model::RecordKind;
use ohassist_core::sync::wire::{self, ExchangeRequest, ExchangeResponse, PullRequest, PushRequest, WireChange};
use ohassist_server::accounts::{self, DeviceStatus, Role};
use ohassist_server::db::now;

use crate::common::*;

fn request(changes: Vec<WireChange>, cursor: u64) -> ExchangeRequest {
    ExchangeRequest {
        protocol: wire::PROTOCOL_VERSION,
        push: PushRequest { protocol: wire::PROTOCOL_VERSION, changes, authors: Vec::new() },
        pull: PullRequest { protocol: wire::PROTOCOL_VERSION, cursor, page_token: None, pending: None },
    }
}

async fn exchange(f: &Fixture, token: &str, req: &ExchangeRequest) -> Reply {
    f.post_wire("/api/v1/sync/exchange", token, wire::encode(req)).await
}

fn hash(c: &WireChange) -> String {
    ohassist_core::limits::decode_change(&c.bytes, &Default::default()).unwrap().hash().to_string()
}

#[tokio::test]
async fn the_push_is_applied_first_and_the_page_is_read_after_it() {
    let f = Fixture::new();
    let a = f.user_token("zhang", Role::Inspector, "210102", "phone-a").await;
    let b = f.user_token("li", Role::Inspector, "210102", "phone-b").await;
    // B registered an enterprise; A comes back with one of its own and a visit of B's.
    let (theirs, c1) = new_enterprise("210102", 1, "甲矿业");
    f.push(&b, &[c1]).await.wire::<wire::PushResponse>();
    let (mine, c2) = new_enterprise("210102", 2, "乙矿业");
    let (_, c3) = new_visit(theirs.doc.id(), "210102");
    let answer: ExchangeResponse = exchange(&f, &a, &request(vec![c2.clone(), c3.clone()], 0)).await.wire();
    assert_eq!(answer.push.new, 2);
    assert_eq!(answer.push.acknowledged, vec![hash(&c2), hash(&c3)]);
    assert!(answer.push.refused.is_empty());
    // A first sync: B's enterprise whole; A's own records are not echoed.
    let ids: Vec<&str> = answer.pull.documents.iter().map(|d| d.doc_id.as_str()).collect();
    assert_eq!(ids, vec![theirs.doc.id()]);
    assert!(!answer.pull.more && answer.pull.cursor > 0);
    // The page was read after the push: its cursor is past A's changes, and an incremental
    // pull from it has nothing more.
    let after = f.pull(&a, answer.pull.cursor, None).await;
    assert!(after.changes.is_empty() && after.documents.is_empty() && !after.more);
    assert_eq!(f.count("documents"), 3);
    // B's next exchange (nothing to push) gets A's changes.
    let seen = f.pull(&b, 0, None).await;
    assert!(seen.documents.iter().any(|d| d.doc_id == mine.doc.id()));
}

#[tokio::test]
async fn a_hostile_document_is_refused_alone_and_the_pull_is_still_answered() {
    let f = Fixture::new();
    let a = f.user_token("zhang", Role::Inspector, "210102", "phone-a").await;
    let b = f.user_token("li", Role::Inspector, "210102", "phone-b").await;
    let (theirs, c0) = new_enterprise("210102", 9, "丙矿业");
    f.push(&b, &[c0]).await.wire::<wire::PushResponse>();
    let (_, good) = new_enterprise("210102", 1, "甲矿业");
    let (far, outside) = new_enterprise("210103", 2, "乙矿业");
    let garbage =
        WireChange { doc_id: "garbage".into(), kind: RecordKind::Visit, bytes: vec![0x85, 0x6f, 0x4a, 0x83, 1, 2, 3] };
    let answer: ExchangeResponse = exchange(&f, &a, &request(vec![good.clone(), outside, garbage], 0)).await.wire();
    assert_eq!(answer.push.acknowledged, vec![hash(&good)]);
    let mut refused: Vec<(&str, &str)> =
        answer.push.refused.iter().map(|r| (r.doc_id.as_str(), r.code.as_str())).collect();
    refused.sort();
    assert_eq!(refused, vec![(far.doc.id(), "out_of_scope"), ("garbage", "invalid_change")]);
    assert!(answer.push.refused.iter().all(|r| !r.message.is_empty() && !r.message_en.is_empty()));
    assert_eq!(answer.pull.documents.len(), 1, "the pull is answered: {:?}", answer.pull.documents);
    assert_eq!(answer.pull.documents[0].doc_id, theirs.doc.id());
    assert_eq!(f.count("documents"), 2);
    assert_eq!(f.count("refused_uploads"), 2, "kept for the console, as a push keeps them");
}

#[tokio::test]
async fn what_refuses_a_push_or_a_pull_refuses_the_exchange_before_anything_is_applied() {
    let f = Fixture::new();
    let a = f.user_token("zhang", Role::Inspector, "210102", "phone-a").await;
    let sup = f.user_token("boss", Role::Supervisor, "210100", "phone-s").await;
    let (_, c) = new_enterprise("210102", 1, "甲矿业");
    let one = || request(vec![c.clone()], 0);

    // Another protocol, in any of the three places.
    for mutate in [
        (|r: &mut ExchangeRequest| r.protocol = 1) as fn(&mut ExchangeRequest),
        |r| r.push.protocol = 1,
        |r| r.pull.protocol = 3,
    ] {
        let mut req = one();
        mutate(&mut req);
        exchange(&f, &a, &req).await.assert_error(StatusCode::UPGRADE_REQUIRED, "protocol_version");
    }
    // A supervisor may pull, not push.
    exchange(&f, &sup, &one()).await.assert_error(StatusCode::FORBIDDEN, "forbidden");
    // A cursor this server never gave.
    exchange(&f, &a, &request(vec![c.clone()], 12_345)).await.assert_error(StatusCode::CONFLICT, "cursor_ahead");
    // A bad page token, an out-of-range count, a cursor past SQLite's integers.
    let mut req = one();
    req.pull.page_token = Some("v1.nonsense".into());
    exchange(&f, &a, &req).await.assert_error(StatusCode::BAD_REQUEST, "malformed_body");
    let mut req = one();
    req.pull.pending = Some(wire::DeviceReport { pending_changes: u64::MAX, pending_attachments: 0 });
    exchange(&f, &a, &req).await.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    exchange(&f, &a, &request(vec![c.clone()], u64::MAX)).await.assert_error(StatusCode::BAD_REQUEST, "malformed_body");
    // Over the push's limit of changes.
    let many = vec![c.clone(); wire::MAX_PUSH_CHANGES + 1];
    exchange(&f, &a, &request(many, 0)).await.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "too_large");
    // Not the wire format.
    f.post_wire("/api/v1/sync/exchange", &a, b"not gzip".to_vec())
        .await
        .assert_error(StatusCode::BAD_REQUEST, "malformed_body");
    // A retired device: the phone pushes alone, then uploads and reports.
    {
        let conn = f.state.db.blocking_writer();
        accounts::set_device_status(&conn, "phone-a", DeviceStatus::Retired, now()).unwrap();
    }
    exchange(&f, &a, &one()).await.assert_error(StatusCode::FORBIDDEN, "device_retired");
    f.assert_nothing_stored();
    assert_eq!(f.count("refused_uploads"), 0);
}

/// The phone's client against a server that has no `/sync/exchange` (its router answers 404
/// there, as an older server does): the sync pushes and pulls apart, and the next one does
/// not ask again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_falls_back_to_push_and_pull_on_a_server_without_exchange() {
    use ohassist_core::store::{Store, StoreKey};
    use ohassist_core::sync::{self, CancelToken, SyncConfig, SyncProgress};

    let f = Fixture::new();
    f.add_user("zhang", Role::Inspector, "210102");
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    let older =
        f.app().layer(axum::middleware::from_fn(move |req: axum::extract::Request, next: axum::middleware::Next| {
            let counter = counter.clone();
            async move {
                if req.uri().path() == "/api/v1/sync/exchange" {
                    counter.fetch_add(1, Ordering::SeqCst);
                    return axum::response::IntoResponse::into_response(
                        ohassist_server::api::error::ApiError::NotFound,
                    );
                }
                next.run(req).await
            }
        }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, older).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("phone.db"), &StoreKey::new([7; 32])).unwrap();
    let mut config = SyncConfig::new(format!("http://{addr}"));
    config.allow_http = true;
    sync::login(&store, &config, "zhang", PASSWORD, "").await.unwrap();
    let code = credit_code("210102", 1);
    store.create_enterprise(enterprise(&code, "210102", "甲矿业")).unwrap();
    let quiet = |_: &SyncProgress| {};
    let first = sync::sync(&store, &config, &quiet, &CancelToken::new()).await.unwrap();
    assert_eq!(asked.load(Ordering::SeqCst), 1, "the exchange was tried once");
    assert_eq!(first.changes_pushed, 2, "{first:?}");
    assert_eq!(first.progress.round_trips, 3, "the exchange's 404, the push, the pull: {first:?}");
    assert_eq!(store.outbox_len().unwrap(), 0);
    assert_eq!(f.count("documents"), 1, "the server holds the record");
    // The next sync pushes and pulls apart at once.
    store.edit_enterprise(&code, |e| e.name = "甲矿业有限公司".into()).unwrap();
    let second = sync::sync(&store, &config, &quiet, &CancelToken::new()).await.unwrap();
    assert_eq!(asked.load(Ordering::SeqCst), 1, "not asked again");
    assert_eq!((second.changes_pushed, second.progress.round_trips), (1, 2), "{second:?}");
    assert_eq!(store.outbox_len().unwrap(), 0);
}
