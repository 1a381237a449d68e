//! The sync wire format, shared by the phone's client and the county server. These are
//! the only serialised public types of the protocol; `docs/sync-protocol.md` describes
//! them and `docs/adr/0002-sync-wire-format.md` says why they look like this.
//!
//! Bodies are CBOR (change bytes travel as byte strings, not base64), gzip-compressed
//! (`Content-Encoding: gzip`), with the protocol version in every request body and in
//! the `X-Ohassist-Protocol` header.

use serde::{Deserialize, Serialize};

use crate::model::RecordKind;

/// The protocol version this code speaks. The server refuses other versions with
/// `protocol_version` (HTTP 426). Version 2: per-document results of a push
/// ([`PushResponse::refused`]) and whole documents in incremental pulls.
pub const PROTOCOL_VERSION: u32 = 2;
pub const PROTOCOL_HEADER: &str = "x-ohassist-protocol";
pub const CONTENT_TYPE: &str = "application/cbor";

/// Largest request body the server accepts, compressed and uncompressed.
pub const MAX_PUSH_BYTES: usize = 8 * 1024 * 1024;
/// Most changes in one push.
pub const MAX_PUSH_CHANGES: usize = 5_000;
/// Largest single change.
pub const MAX_CHANGE_BYTES: usize = 1024 * 1024;
/// The byte budget of one pull page (the server may send one item over it).
pub const PULL_PAGE_BYTES: usize = 4 * 1024 * 1024;

/// One Automerge change of one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WireChange {
    /// 1 to 128 characters, no control characters.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[^\u0000-\u001f\u007f-\u009f]{1,128}$"))]
    pub doc_id: String,
    pub kind: RecordKind,
    /// The Automerge bytes, a CBOR byte string.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Binary))]
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

/// A whole saved document (first sync): smaller than its changes one by one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WireDocument {
    pub doc_id: String,
    pub kind: RecordKind,
    /// The Automerge bytes, a CBOR byte string.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Binary))]
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

/// `POST /api/v1/sync/push`: a batch of the outbox, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PushRequest {
    /// [`PROTOCOL_VERSION`].
    #[cfg_attr(feature = "openapi", schema(minimum = 2, maximum = 2))]
    pub protocol: u32,
    #[cfg_attr(feature = "openapi", schema(max_items = 5000))]
    pub changes: Vec<WireChange>,
    /// Who wrote the changes, when the caller is a lower server relaying its feed (role
    /// `relay`): the original user and device of each change, by hash, as the lower server
    /// recorded them. Only a relay may send it (anyone else: 422 `invalid_input`, field
    /// `authors`); a change it does not name is the relay account's own. Absent from phones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(max_items = 5000))]
    pub authors: Vec<ChangeAuthor>,
}

/// The original author of one relayed change: what the lower server recorded for it (its
/// own `change_origins` when it relays in turn, else the account and device that pushed it
/// there). The upstream checks field authority against this author and shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChangeAuthor {
    /// The change's hash (64 hex digits), one of the push's changes.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[0-9a-f]{64}$"))]
    pub hash: String,
    #[cfg_attr(feature = "openapi", schema(max_length = 128))]
    pub user_id: String,
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9._-]{1,64}$"))]
    pub username: String,
    #[cfg_attr(feature = "openapi", schema(max_length = 100))]
    pub display_name: String,
    /// `inspector`, `supervisor` or `admin` (a relay reports the people behind it).
    pub role: String,
    /// The phone's device id, or `web` for the lower server's console.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9._-]{1,128}$"))]
    pub device_id: String,
}

/// A push is applied document by document: the server now holds every acknowledged change
/// (the client may drop them from its outbox); each refused document had none of its pushed
/// changes applied, and the client keeps it, held, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PushResponse {
    /// Hashes (hex) of the request's changes that the server now holds.
    pub acknowledged: Vec<String>,
    /// How many of them were new to the server.
    pub new: u32,
    /// The documents refused, with why.
    #[serde(default)]
    pub refused: Vec<RefusedDocument>,
}

/// One document of a push that the server refused: nothing of it was stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RefusedDocument {
    pub doc_id: String,
    pub kind: RecordKind,
    /// Machine-readable: `out_of_scope`, `unknown_enterprise`, `invalid_record`,
    /// `invalid_change`, `too_large`, `too_deep`, `checksum_mismatch`,
    /// `non_canonical_genesis`, `field_authority`, `kind_mismatch`, `missing_dependencies`.
    pub code: String,
    /// For a person, in Chinese.
    pub message: String,
    /// The same in English.
    pub message_en: String,
}

/// `POST /api/v1/sync/pull`: what changed in the caller's scope after `cursor`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PullRequest {
    /// [`PROTOCOL_VERSION`].
    #[cfg_attr(feature = "openapi", schema(minimum = 2, maximum = 2))]
    pub protocol: u32,
    /// The feed position the client holds everything up to; 0 for a first sync.
    #[cfg_attr(feature = "openapi", schema(maximum = 9_223_372_036_854_775_807_i64))]
    pub cursor: u64,
    /// Opaque continuation of a first sync in progress, from the previous page.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^v1\.[0-9]{1,18}\.([0-9a-fA-F]{2}){0,128}$"))]
    pub page_token: Option<String>,
    /// What the phone will still hold unacknowledged once this sync ends, when that differs
    /// from what it last reported: the server records it with the last page, so the device
    /// report needs no round trip of its own. Absent from older phones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<DeviceReport>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PullResponse {
    /// Whole documents (a first sync sends these).
    pub documents: Vec<WireDocument>,
    /// Changes after the cursor, in feed order, the caller's own pushes left out.
    pub changes: Vec<WireChange>,
    /// Store this when the page is applied; send it with the next pull.
    pub cursor: u64,
    /// Send with the next pull while a first sync is in progress.
    pub page_token: Option<String>,
    /// More pages wait: pull again at once.
    pub more: bool,
    /// Records this device pushed and the server refused that were settled since (a
    /// supervisor's transfer took them in): push them again now, they will be acknowledged.
    #[serde(default)]
    pub settled: Vec<String>,
    /// For a relay (a lower server) only: who wrote `changes`, by hash, as this server
    /// recorded them (the original author of a change relayed to it), so that the lower
    /// server's console names them too. Absent for phones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authors: Vec<ChangeAuthor>,
}

/// `POST /api/v1/sync/exchange`: a push and the pull page that follows it, in one round trip
/// (a returning phone whose outbox fits in one push). The server applies the push first, as
/// `/sync/push` would, then reads the pull page as `/sync/pull` would, after it; the answer
/// carries both. Servers older than this endpoint answer `404`: push, then pull.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExchangeRequest {
    /// [`PROTOCOL_VERSION`], as in both parts.
    #[cfg_attr(feature = "openapi", schema(minimum = 2, maximum = 2))]
    pub protocol: u32,
    pub push: PushRequest,
    pub pull: PullRequest,
}

/// The answer to an [`ExchangeRequest`]: the push's, then the pull page read after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExchangeResponse {
    pub push: PushResponse,
    pub pull: PullResponse,
}

/// `POST /api/v1/login` (JSON): a device logs in once and keeps the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginRequest {
    #[cfg_attr(feature = "openapi", schema(max_length = 64))]
    pub username: String,
    /// At most 1024 bytes.
    #[cfg_attr(feature = "openapi", schema(max_length = 256))]
    pub password: String,
    /// Chosen by the app at install: letters, digits, `-`, `_` and `.`.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9._-]{1,128}$"))]
    pub device_id: String,
    #[serde(default)]
    pub device_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginResponse {
    pub token: String,
    pub user_id: String,
    pub display_name: String,
    /// `inspector`, `supervisor` or `admin`.
    pub role: String,
    /// Administrative division code of the user's org unit (county, city or province).
    pub org_unit: String,
    /// Seconds since the epoch.
    pub expires_at: i64,
}

/// `POST /api/v1/login/renew` (JSON, with the current bearer token): a relay account (a lower
/// server) replaces its token before it expires, without its password. The caller chooses the
/// new token and keeps it before it asks, so that an answer lost on the way leaves it holding
/// the token the server now knows. The answer is a [`LoginResponse`] with that token and its
/// new expiry; the old token stops working at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RenewRequest {
    /// 64 lowercase hex digits (32 random bytes).
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[0-9a-f]{64}$"))]
    pub token: String,
}

/// Every error answer, in JSON, whatever the endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// Machine-readable: `malformed_body`, `invalid_change`, `out_of_scope`, `too_large`,
    /// `protocol_version`, `unauthorized`, `forbidden`, `invalid_record`, `rate_limited`, …
    pub code: String,
    /// For a person, in Chinese.
    pub message: String,
    /// The same in English.
    pub message_en: String,
    /// The offending field or document, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Encodes a body: CBOR, then gzip.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    use std::io::Write;
    let mut cbor = Vec::new();
    ciborium::into_writer(value, &mut cbor).expect("wire types serialise");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&cbor).expect("writing to memory");
    gz.finish().expect("writing to memory")
}

/// Why a body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("body is larger than {limit} bytes once decompressed")]
    TooLarge { limit: usize },
    #[error("body is not valid gzip: {0}")]
    Compression(std::io::Error),
    #[error("body is not valid CBOR for this message: {0}")]
    Cbor(String),
}

/// Decodes a gzip-compressed CBOR body, refusing to inflate past `limit` bytes.
pub fn decode<T: serde::de::DeserializeOwned>(body: &[u8], limit: usize) -> Result<T, DecodeError> {
    use std::io::Read;
    // Sized for what gzip usually gets from these bodies (not over the limit), so that a page
    // of several MiB is not grown and copied step by step.
    let mut cbor = Vec::with_capacity(body.len().saturating_mul(4).min(limit.saturating_add(1)));
    flate2::read::GzDecoder::new(body)
        .take(limit as u64 + 1)
        .read_to_end(&mut cbor)
        .map_err(DecodeError::Compression)?;
    if cbor.len() > limit {
        return Err(DecodeError::TooLarge { limit });
    }
    ciborium::from_reader(cbor.as_slice()).map_err(|e| DecodeError::Cbor(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_bombs() {
        let req = PushRequest {
            protocol: PROTOCOL_VERSION,
            changes: vec![WireChange { doc_id: "d".into(), kind: RecordKind::Visit, bytes: vec![0u8; 100_000] }],
            authors: Vec::new(),
        };
        let body = encode(&req);
        assert!(body.len() < 2_000, "zeros compress: {}", body.len());
        assert_eq!(decode::<PushRequest>(&body, 200_000).unwrap(), req);
        assert!(matches!(decode::<PushRequest>(&body, 50_000), Err(DecodeError::TooLarge { .. })));
        assert!(matches!(decode::<PushRequest>(b"not gzip", 1000), Err(DecodeError::Compression(_))));
        let not_cbor_message = encode(&"a string");
        assert!(matches!(decode::<PushRequest>(&not_cbor_message, 1000), Err(DecodeError::Cbor(_))));
    }
}

/// Attachments (photos, signatures, PDFs) travel apart from the records, content-addressed
/// by the SHA-256 of their bytes (64 lowercase hex digits), in resumable chunks:
///
/// - `GET  /api/v1/attachments/{sha256}/upload?visit={visit_id}` → [`UploadStatus`]: how many
///   bytes of a pending upload the server holds (0 if none), or `complete` if it has the file.
/// - `PATCH /api/v1/attachments/{sha256}/upload?visit={visit_id}&offset={n}&total={size}` with
///   `Content-Type: application/offset+octet-stream` and a body of at most
///   [`MAX_ATTACHMENT_CHUNK`] bytes, appended at `offset` (which must equal the held size,
///   else 409 `offset_mismatch` with the held offset in [`UploadStatus`]) → [`UploadStatus`].
///   When `offset + body = total` the server verifies the hash: a mismatch is 422
///   `hash_mismatch` and the partial upload is discarded.
/// - `GET  /api/v1/attachments/{sha256}` → the bytes (lazy download by phones and the console).
///
/// The visit must already be on the server (records sync first) and in the caller's scope;
/// otherwise 404 `not_found` (existence is not leaked). Totals above the server's per-file
/// limit are refused with 413 `too_large` before any byte is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UploadStatus {
    pub offset: u64,
    pub complete: bool,
}

/// Largest chunk of one attachment upload request.
pub const MAX_ATTACHMENT_CHUNK: usize = 1024 * 1024;
/// Default per-file limit (the server's is configurable).
pub const DEFAULT_MAX_ATTACHMENT_BYTES: u64 = 20 * 1024 * 1024;

/// What an admin decided for a device: `active`, or `lost` (every request refused with
/// 410 `device_lost`; the phone erases its store when it hears it), or `retired` (the phone
/// pushes what it holds, then erases and logs out; pulls and downloads are refused with
/// 403 `device_retired`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    Active,
    Lost,
    Retired,
}

impl DeviceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Active => "active",
            DeviceStatus::Lost => "lost",
            DeviceStatus::Retired => "retired",
        }
    }

    pub fn parse(s: &str) -> Option<DeviceStatus> {
        match s {
            "active" => Some(DeviceStatus::Active),
            "lost" => Some(DeviceStatus::Lost),
            "retired" => Some(DeviceStatus::Retired),
            _ => None,
        }
    }
}

/// What the phone still holds that the server has not acknowledged, for the console's devices
/// page: carried by the last pull of a sync ([`PullRequest::pending`]), or sent alone as
/// `POST /api/v1/device/report` (JSON) when it changed after that pull or a device retires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceReport {
    #[cfg_attr(feature = "openapi", schema(maximum = 9_223_372_036_854_775_807_i64))]
    pub pending_changes: u64,
    #[cfg_attr(feature = "openapi", schema(maximum = 9_223_372_036_854_775_807_i64))]
    pub pending_attachments: u64,
}

impl DeviceReport {
    /// The counts as the phone remembers what it last reported (`changes,attachments`).
    pub fn counts(&self) -> String {
        format!("{},{}", self.pending_changes, self.pending_attachments)
    }
}

/// The answer to a [`DeviceReport`]: the device's status (never `lost`: that is a 410).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceReportResponse {
    pub status: DeviceStatus,
}
