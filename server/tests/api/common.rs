//! Fixtures: a server on a temporary database, users, and records built as Automerge
//! changes the way a phone builds them.

use automerge::ActorId;
use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use ohassist_core::doc::{to_json, Author, Document};
use ohassist_core::model::{County, Enterprise, Industry, RecordKind, Visit};
use ohassist_core::sync::wire::{self, ErrorBody, LoginResponse, PullRequest, PullResponse, PushRequest, WireChange};
use ohassist_server::accounts::{self, NewUser, Role};
use ohassist_server::db::{now, Db};
use ohassist_server::{app, AppState};
use tower::ServiceExt;

pub const PASSWORD: &str = "correct horse battery";

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub state: AppState,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn error(&self) -> ErrorBody {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not an ErrorBody ({e}): {:?}", self.body))
    }

    /// Asserts the status and the error code, and that the body is a full ErrorBody.
    pub fn assert_error(&self, status: StatusCode, code: &str) -> ErrorBody {
        assert_eq!(self.status, status, "body: {}", String::from_utf8_lossy(&self.body));
        let e = self.error();
        assert_eq!(e.code, code);
        assert!(!e.message.is_empty() && !e.message_en.is_empty());
        e
    }

    /// Asserts a push answered 200 with `doc_id` refused for `code` (reason in both languages)
    /// and none of its changes acknowledged; returns the answer.
    pub fn assert_refused(&self, doc_id: &str, code: &str) -> wire::PushResponse {
        let response: wire::PushResponse = self.wire();
        let r = response
            .refused
            .iter()
            .find(|r| r.doc_id == doc_id)
            .unwrap_or_else(|| panic!("{doc_id} not refused: {response:?}"));
        assert_eq!(r.code, code, "{r:?}");
        assert!(!r.message.is_empty() && !r.message_en.is_empty());
        response
    }

    pub fn wire<T: serde::de::DeserializeOwned>(&self) -> T {
        assert_eq!(self.status, StatusCode::OK, "body: {}", String::from_utf8_lossy(&self.body));
        wire::decode(&self.body, 64 * 1024 * 1024).expect("a wire body")
    }
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture::with_page_bytes(wire::PULL_PAGE_BYTES)
    }

    pub fn with_page_bytes(pull_page_bytes: usize) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_dir(dir.path()).unwrap();
        let mut state = AppState::new(db);
        state.pull_page_bytes = pull_page_bytes;
        Fixture { dir, state }
    }

    pub fn app(&self) -> Router {
        app(self.state.clone())
    }

    pub fn add_user(&self, username: &str, role: Role, org_unit: &str) {
        let conn = self.state.db.blocking_writer();
        let new = NewUser { username, display_name: username, role, org_unit, password: PASSWORD };
        accounts::create_user(&conn, &new, now()).unwrap();
    }

    /// A reader on the database, for asserting what was (not) stored.
    pub fn count(&self, table: &str) -> i64 {
        let conn = ohassist_core::sqlite::open_reader(&self.dir.path().join("ohassist.db")).unwrap();
        conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)).unwrap()
    }

    pub fn assert_nothing_stored(&self) {
        for table in ["documents", "changes", "enterprises", "visits"] {
            assert_eq!(self.count(table), 0, "{table} should be empty");
        }
    }

    pub async fn send(&self, req: Request<Body>) -> Reply {
        let resp = self.app().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        Reply { status, headers, body }
    }

    pub async fn login_as(&self, username: &str, password: &str, device: &str) -> Reply {
        let body = serde_json::json!({ "username": username, "password": password, "device_id": device, "device_name": "test phone" });
        let req = Request::post("/api/v1/login")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        self.send(req).await
    }

    /// Creates a user and logs in on `device`; returns the token.
    pub async fn user_token(&self, username: &str, role: Role, org_unit: &str, device: &str) -> String {
        self.add_user(username, role, org_unit);
        self.login(username, device).await
    }

    pub async fn login(&self, username: &str, device: &str) -> String {
        let reply = self.login_as(username, PASSWORD, device).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", String::from_utf8_lossy(&reply.body));
        serde_json::from_slice::<LoginResponse>(&reply.body).unwrap().token
    }

    pub async fn post_wire(&self, path: &str, token: &str, body: Vec<u8>) -> Reply {
        let req = Request::post(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(wire::PROTOCOL_HEADER, wire::PROTOCOL_VERSION.to_string())
            .header(header::CONTENT_TYPE, wire::CONTENT_TYPE)
            .header(header::CONTENT_ENCODING, "gzip")
            .body(Body::from(body))
            .unwrap();
        self.send(req).await
    }

    pub async fn push(&self, token: &str, changes: &[WireChange]) -> Reply {
        let req = PushRequest { protocol: wire::PROTOCOL_VERSION, changes: changes.to_vec(), authors: Vec::new() };
        self.post_wire("/api/v1/sync/push", token, wire::encode(&req)).await
    }

    pub async fn pull(&self, token: &str, cursor: u64, page_token: Option<String>) -> PullResponse {
        let req = PullRequest { protocol: wire::PROTOCOL_VERSION, cursor, page_token, pending: None };
        self.post_wire("/api/v1/sync/pull", token, wire::encode(&req)).await.wire()
    }
}

/// A valid credit code registered in `county`, distinct per `serial`.
pub fn credit_code(county: &str, serial: u32) -> String {
    ohassist_core::synthetic::credit_code(county, serial.into())
}

pub fn author() -> Author {
    Author { user: "u".into(), device: "d".into() }
}

pub fn enterprise(code: &str, county: &str, name: &str) -> Enterprise {
    Enterprise {
        credit_code: code.to_string(),
        name: name.to_string(),
        county: County { code: county.to_string(), name: "和平区".to_string() },
        industry: Some(Industry::Mining),
        ..Enterprise::default()
    }
}

/// A record as a phone holds it: its document and the changes not yet pushed.
pub struct Record {
    pub doc: Document,
    pub actor: ActorId,
}

impl Record {
    pub fn new(kind: RecordKind, id: &str) -> Record {
        Record { doc: Document::genesis(kind, id), actor: ActorId::random() }
    }

    /// Writes `value` as one change and returns it in wire form.
    pub fn write<T: serde::Serialize + serde::de::DeserializeOwned>(&mut self, value: &T) -> WireChange {
        let old = to_json(&self.doc.read::<T>().unwrap());
        let change =
            self.doc.write_diff(&self.actor, &author(), &old, &to_json(value)).unwrap().expect("something changed");
        WireChange { doc_id: self.doc.id().to_string(), kind: self.doc.kind(), bytes: change.raw_bytes().to_vec() }
    }
}

/// A new enterprise record with one change.
pub fn new_enterprise(county: &str, serial: u32, name: &str) -> (Record, WireChange) {
    let code = credit_code(county, serial);
    let mut r = Record::new(RecordKind::Enterprise, &code);
    let c = r.write(&enterprise(&code, county, name));
    (r, c)
}

/// A new visit record of `enterprise_id` with one change.
pub fn new_visit(enterprise_id: &str, county: &str) -> (Record, WireChange) {
    let id = ohassist_core::model::new_item_id();
    let mut r = Record::new(RecordKind::Visit, &id);
    let v = Visit {
        enterprise_id: enterprise_id.to_string(),
        county_code: county.to_string(),
        visit_date: "2025-03-01".to_string(),
        ..Visit::default()
    };
    let c = r.write(&v);
    (r, c)
}
