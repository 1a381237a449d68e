//! The one error type of the HTTP API. Every failure, whatever the endpoint, becomes a
//! status code and a [`wire::ErrorBody`] in JSON; this is the only place that decides
//! which. Internal errors are logged here with their details and answered without them.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ohassist_core::sync::wire::{self, ErrorBody};

use crate::accounts::AccountError;
use crate::attachments::AttachmentError;
use crate::db::DbError;
use crate::export::CursorError;
use crate::login::LoginError;
use crate::records::RecordsError;

/// Why a request failed. Messages carry ids and field names, never record contents.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not what the endpoint reads (JSON syntax, CBOR, gzip, missing field).
    #[error("malformed body: {0}")]
    MalformedBody(String),
    /// A change of the push could not be decoded or applied.
    #[error("invalid change for {doc_id}: {detail}")]
    InvalidChange { doc_id: String, detail: String },
    /// The push names a document with another kind than the server holds.
    #[error("document {doc_id} is not a {kind}")]
    KindMismatch { doc_id: String, kind: &'static str },
    /// Applying the push leaves changes whose dependencies the server never received.
    #[error("document {doc_id} has changes with missing dependencies")]
    MissingDependencies { doc_id: String },
    /// The merged document does not read as the record it must be.
    #[error("document {doc_id} is not a valid record: {reason_en}")]
    InvalidRecord { doc_id: String, reason_zh: String, reason_en: String },
    /// An admin request with a field the server refuses (role, org unit, username).
    #[error("invalid {field}: {reason_en}")]
    InvalidInput { field: &'static str, reason_zh: String, reason_en: String },
    #[error("document {doc_id} lies outside the caller's org unit")]
    OutOfScope { doc_id: String },
    #[error("the caller's role may not do this")]
    Forbidden,
    /// A field only another role may send (a push's `authors`, from anyone but a relay).
    #[error("the caller's role may not send {field}: {reason_en}")]
    ForbiddenField { field: &'static str, reason_zh: String, reason_en: String },
    #[error("this device has been revoked")]
    DeviceRevoked,
    /// The device id is bound to another user's live login.
    #[error("this device id belongs to another user's login")]
    DeviceTaken,
    /// An admin marked the device lost: every request of it is refused with this, which tells
    /// the phone to erase its store.
    #[error("this device has been marked lost")]
    DeviceLost,
    /// An admin retired the device: it may push what it holds, not pull or download.
    #[error("this device has been retired")]
    DeviceRetired,
    /// No token, or a token that is unknown, revoked or expired.
    #[error("unauthorized")]
    Unauthorized,
    /// Login with a wrong password or an unknown user: deliberately indistinguishable.
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("too many failed logins")]
    RateLimited { retry_after_secs: u64 },
    #[error("too large: {0}")]
    TooLarge(String),
    /// A user's unfinished uploads would pass their bound (`held` bytes held now).
    #[error("unfinished uploads of {held} bytes; at most {quota}")]
    UploadQuota { held: u64, quota: u64 },
    #[error("protocol version {found:?} is not {}", wire::PROTOCOL_VERSION)]
    ProtocolVersion { found: Option<String> },
    #[error("{0} already exists")]
    AlreadyExists(&'static str),
    #[error("not found")]
    NotFound,
    /// A `Range` starting at or after the end of the file.
    #[error("range not satisfiable for {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    /// An attachment chunk sent at another offset than the bytes the server holds; the
    /// answer carries what is held (the fields of `wire::UploadStatus` beside the error's).
    #[error("upload offset mismatch: the server holds {} bytes", .0.offset)]
    OffsetMismatch(wire::UploadStatus),
    /// A complete upload whose bytes do not hash to its name; the bytes were discarded.
    #[error("attachment {expected} hashes to {actual}")]
    HashMismatch { expected: String, actual: String },
    #[error("method not allowed")]
    MethodNotAllowed,
    /// An admin's action on the device the request comes from (it would lock the admin out).
    #[error("the caller's own device")]
    OwnDevice,
    /// An export cursor beyond this server's change feed: it came from another server (or
    /// was made up); export again from 0.
    #[error("cursor {cursor} is beyond the feed, which ends at {end}")]
    CursorAhead { cursor: u64, end: u64 },
    /// Anything that is the server's fault. The detail is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn internal(e: impl std::fmt::Display) -> ApiError {
        ApiError::Internal(e.to_string())
    }

    pub fn status(&self) -> StatusCode {
        use ApiError::*;
        match self {
            MalformedBody(_) | InvalidChange { .. } | KindMismatch { .. } | MissingDependencies { .. } => {
                StatusCode::BAD_REQUEST
            }
            InvalidRecord { .. } | InvalidInput { .. } | HashMismatch { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            OffsetMismatch(_) => StatusCode::CONFLICT,
            RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            OutOfScope { .. } | Forbidden | ForbiddenField { .. } | DeviceRevoked | DeviceTaken | DeviceRetired => {
                StatusCode::FORBIDDEN
            }
            DeviceLost => StatusCode::GONE,
            Unauthorized | InvalidCredentials => StatusCode::UNAUTHORIZED,
            RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            TooLarge(_) | UploadQuota { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProtocolVersion { .. } => StatusCode::UPGRADE_REQUIRED,
            AlreadyExists(_) | OwnDevice | CursorAhead { .. } => StatusCode::CONFLICT,
            NotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The body sent to the client: Chinese first, English beside it.
    pub fn body(&self) -> ErrorBody {
        use ApiError::*;
        let (code, zh, en, field): (&str, String, String, Option<String>) = match self {
            MalformedBody(d) => {
                ("malformed_body", format!("请求格式错误：{d}"), format!("malformed request body: {d}"), None)
            }
            InvalidChange { doc_id, detail } => (
                "invalid_change",
                format!("记录 {doc_id} 的修改无法解析：{detail}"),
                format!("a change of record {doc_id} is invalid: {detail}"),
                Some(doc_id.clone()),
            ),
            KindMismatch { doc_id, kind } => (
                "kind_mismatch",
                format!("记录 {doc_id} 的类型不是 {kind}"),
                format!("record {doc_id} is not a {kind}"),
                Some(doc_id.clone()),
            ),
            MissingDependencies { doc_id } => (
                "missing_dependencies",
                format!("记录 {doc_id} 缺少先前的修改，请完整上传"),
                format!("record {doc_id} has changes whose dependencies were not sent"),
                Some(doc_id.clone()),
            ),
            InvalidRecord { doc_id, reason_zh, reason_en } => (
                "invalid_record",
                format!("记录 {doc_id} 无效：{reason_zh}"),
                format!("record {doc_id} is invalid: {reason_en}"),
                Some(doc_id.clone()),
            ),
            InvalidInput { field, reason_zh, reason_en } => {
                ("invalid_input", reason_zh.clone(), reason_en.clone(), Some(field.to_string()))
            }
            OutOfScope { doc_id } => (
                "out_of_scope",
                format!("记录 {doc_id} 不属于您所在单位的辖区，本次上传未被接受"),
                format!("record {doc_id} lies outside your org unit; nothing of this push was applied"),
                Some(doc_id.clone()),
            ),
            Forbidden => ("forbidden", "您的角色无权执行此操作".into(), "your role may not do this".into(), None),
            ForbiddenField { field, reason_zh, reason_en } => {
                ("forbidden", reason_zh.clone(), reason_en.clone(), Some(field.to_string()))
            }
            DeviceRevoked => (
                "device_revoked",
                "此设备已被管理员停用，请联系管理员".into(),
                "this device has been revoked by an administrator".into(),
                None,
            ),
            DeviceTaken => (
                "device_taken",
                "此设备编号正被其他用户使用，请该用户先退出登录".into(),
                "this device id is in use by another user's login; that user must log out first".into(),
                Some("device_id".into()),
            ),
            DeviceLost => (
                "device_lost",
                "此设备已被管理员标记为丢失，设备上的数据已清除".into(),
                "this device has been marked lost by an administrator; its data is erased".into(),
                None,
            ),
            DeviceRetired => (
                "device_retired",
                "此设备已退役：请上传尚未同步的数据，之后设备上的数据将被清除".into(),
                "this device has been retired: push what it still holds, then it is erased".into(),
                None,
            ),
            Unauthorized => (
                "unauthorized",
                "登录已失效，请重新登录".into(),
                "not logged in, or the login has expired or been revoked".into(),
                None,
            ),
            InvalidCredentials => {
                ("invalid_credentials", "用户名或密码错误".into(), "wrong username or password".into(), None)
            }
            RateLimited { retry_after_secs } => (
                "rate_limited",
                format!("登录失败次数过多，请 {retry_after_secs} 秒后再试"),
                format!("too many failed logins; try again in {retry_after_secs} seconds"),
                None,
            ),
            TooLarge(d) => ("too_large", format!("请求过大：{d}"), format!("request too large: {d}"), None),
            UploadQuota { held, quota } => (
                "upload_quota",
                format!("未完成的上传已达 {held} 字节（上限 {quota}），请先完成或等待清理"),
                format!("unfinished uploads hold {held} bytes, at most {quota}: finish them or wait for the cleanup"),
                None,
            ),
            ProtocolVersion { found } => (
                "protocol_version",
                format!("同步协议版本不符（服务器为 {}），请更新应用", wire::PROTOCOL_VERSION),
                format!(
                    "protocol version {} is not the server's {}; update the app",
                    found.as_deref().unwrap_or("(none)"),
                    wire::PROTOCOL_VERSION
                ),
                None,
            ),
            AlreadyExists(what) => {
                ("already_exists", format!("{what} 已存在"), format!("{what} already exists"), Some(what.to_string()))
            }
            NotFound => ("not_found", "未找到".into(), "not found".into(), None),
            RangeNotSatisfiable { size } => (
                "range_not_satisfiable",
                format!("请求的范围超出文件大小（{size} 字节）"),
                format!("the requested range lies beyond the file's {size} bytes"),
                None,
            ),
            OffsetMismatch(held) => (
                "offset_mismatch",
                format!("上传位置不符：服务器已收到 {} 字节，请从该处继续", held.offset),
                format!("upload offset mismatch: the server holds {} bytes; continue from there", held.offset),
                None,
            ),
            HashMismatch { expected, .. } => (
                "hash_mismatch",
                format!("附件 {expected} 的内容与其校验值不符，已丢弃，请重新上传"),
                format!(
                    "the bytes of attachment {expected} do not match its SHA-256; they were discarded, upload again"
                ),
                Some(expected.clone()),
            ),
            MethodNotAllowed => ("method_not_allowed", "不支持此请求方法".into(), "method not allowed".into(), None),
            CursorAhead { cursor, end } => (
                "cursor_ahead",
                format!("游标 {cursor} 超出了本服务器的变更记录（最新为 {end}），它不是本服务器给出的；请从 0 重新导出"),
                format!("cursor {cursor} is beyond this server's change feed (which ends at {end}): it did not come from this server; export again from 0"),
                Some("cursor".to_string()),
            ),
            OwnDevice => (
                "own_device",
                "不能对您正在使用的设备执行此操作，请在其他设备上操作".into(),
                "this is the device you are using; do it from another device".into(),
                Some("id".into()),
            ),
            Internal(_) => {
                ("internal", "服务器内部错误，请稍后再试".into(), "internal server error; try again later".into(), None)
            }
        };
        ErrorBody { code: code.to_string(), message: zh, message_en: en, field }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            ApiError::Internal(detail) => tracing::error!(%detail, "internal error"),
            other => tracing::debug!(%status, error = %other, "request refused"),
        }
        let mut response = match &self {
            // Both an ErrorBody and an UploadStatus: the client may read either.
            ApiError::OffsetMismatch(held) => {
                let mut body = serde_json::to_value(self.body()).unwrap_or_default();
                if let Some(map) = body.as_object_mut() {
                    map.insert("offset".into(), held.offset.into());
                    map.insert("complete".into(), held.complete.into());
                }
                let mut r = (status, Json(body)).into_response();
                r.headers_mut().insert("upload-offset", HeaderValue::from(held.offset));
                r
            }
            _ => (status, Json(self.body())).into_response(),
        };
        if let ApiError::RateLimited { retry_after_secs } = self {
            if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}

impl From<crate::sql::Error> for ApiError {
    fn from(e: crate::sql::Error) -> Self {
        ApiError::internal(e)
    }
}

impl From<ohassist_core::Error> for ApiError {
    fn from(e: ohassist_core::Error) -> Self {
        ApiError::internal(e)
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        ApiError::internal(e)
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        ApiError::internal(e)
    }
}

// The domain's errors, each mapped once, here: the console answers them through the same
// mapping (`web::WebError::Api`), except the account errors of its forms.

impl From<RecordsError> for ApiError {
    fn from(e: RecordsError) -> Self {
        match e {
            RecordsError::TooLarge(d) => ApiError::TooLarge(d),
            RecordsError::BadDocId { chars } => ApiError::MalformedBody(format!("document id of {chars} characters")),
            RecordsError::Refused(r) => match r.code {
                "out_of_scope" => ApiError::OutOfScope { doc_id: r.doc_id },
                "kind_mismatch" => ApiError::KindMismatch { doc_id: r.doc_id, kind: r.kind.as_str() },
                _ => ApiError::InvalidRecord { doc_id: r.doc_id, reason_zh: r.reason_zh, reason_en: r.reason_en },
            },
            RecordsError::NotFound => ApiError::NotFound,
            RecordsError::Forbidden => ApiError::Forbidden,
            RecordsError::ForbiddenField { field, zh, en } => {
                ApiError::ForbiddenField { field, reason_zh: zh, reason_en: en }
            }
            RecordsError::Invalid { field, zh, en } => ApiError::InvalidInput { field, reason_zh: zh, reason_en: en },
            RecordsError::Document(_) | RecordsError::Db(_) => ApiError::internal(e),
        }
    }
}

impl From<AttachmentError> for ApiError {
    fn from(e: AttachmentError) -> Self {
        match e {
            AttachmentError::NotFound => ApiError::NotFound,
            AttachmentError::OffsetMismatch(held) => ApiError::OffsetMismatch(held),
            AttachmentError::UploadQuota { held, quota } => ApiError::UploadQuota { held, quota },
            AttachmentError::BeyondTotal { .. } => ApiError::MalformedBody(e.to_string()),
            AttachmentError::HashMismatch { expected, actual } => ApiError::HashMismatch { expected, actual },
            AttachmentError::Io(_)
            | AttachmentError::Image(_)
            | AttachmentError::Document(_)
            | AttachmentError::Db(_) => ApiError::internal(e),
        }
    }
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::UsernameTaken => ApiError::AlreadyExists("username"),
            AccountError::NoSuchUser | AccountError::NoSuchDevice => ApiError::NotFound,
            AccountError::Hash(_) | AccountError::Storage(_) => ApiError::internal(e),
            AccountError::Username | AccountError::DisplayName | AccountError::OrgUnit | AccountError::WeakPassword => {
                ApiError::InvalidInput {
                    field: e.field().unwrap_or("input"),
                    reason_zh: e.message_zh(),
                    reason_en: e.to_string(),
                }
            }
        }
    }
}

impl From<LoginError> for ApiError {
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::TooLong { field, zh, en } => ApiError::InvalidInput { field, reason_zh: zh, reason_en: en },
            LoginError::RateLimited { retry_after_secs } => ApiError::RateLimited { retry_after_secs },
            LoginError::InvalidCredentials => ApiError::InvalidCredentials,
            LoginError::Hashing(_) | LoginError::Db(_) => ApiError::internal(e),
        }
    }
}

impl From<CursorError> for ApiError {
    fn from(e: CursorError) -> Self {
        match e {
            CursorError::Ahead { cursor, end } => ApiError::CursorAhead { cursor, end },
            CursorError::Corrupt { .. } | CursorError::Db(_) => ApiError::internal(e),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
