//! Extractors that turn requests into typed values or an [`ApiError`], so that axum's own
//! rejections (bad JSON, missing headers, oversized bodies) never reach a client in
//! axum's format: bodies in JSON and in the CBOR+gzip wire format, the caller by token,
//! the client's address.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ohassist_core::sync::wire::{self, DecodeError};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::ApiError;
use super::{AppState, DbCalls};
use crate::accounts::{self, Caller, DeviceStatus};
use crate::db::now;

/// Reads the whole body, answering an oversized one with `too_large`.
async fn body_bytes(req: Request, state: &AppState) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(format!("body over {} bytes", wire::MAX_PUSH_BYTES))
        } else {
            ApiError::MalformedBody(rejection.body_text())
        }
    })
}

/// A JSON body. Unlike `axum::Json`, it does not insist on a content type, and every
/// failure is a `malformed_body` [`ApiError`].
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let bytes = body_bytes(req, state).await?;
        let mut value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| ApiError::MalformedBody(e.to_string()))?;
        integral_numbers(&mut value);
        T::deserialize(value).map(JsonBody).map_err(|e| ApiError::MalformedBody(e.to_string()))
    }
}

/// JSON has one number type: `3.0` is the integer 3 (as JSON Schema reads it), so a count sent
/// by a JavaScript or Python client as a float with no fraction is read as that integer.
fn integral_numbers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            if f.fract() == 0.0 && f.abs() < 9.2e18 {
                *value = Value::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_numbers),
        Value::Object(map) => map.values_mut().for_each(integral_numbers),
        _ => {}
    }
}

/// A wire message that names its protocol version.
pub trait Versioned {
    fn protocol(&self) -> u32;
}

impl Versioned for wire::PushRequest {
    fn protocol(&self) -> u32 {
        self.protocol
    }
}

impl Versioned for wire::PullRequest {
    fn protocol(&self) -> u32 {
        self.protocol
    }
}

/// An exchange names the version three times (itself, its push, its pull): any one that is
/// not the current one is the version it claims.
impl Versioned for wire::ExchangeRequest {
    fn protocol(&self) -> u32 {
        [self.protocol, self.push.protocol, self.pull.protocol]
            .into_iter()
            .find(|v| *v != wire::PROTOCOL_VERSION)
            .unwrap_or(wire::PROTOCOL_VERSION)
    }
}

/// A sync body: CBOR, gzip-compressed, at most `MAX_PUSH_BYTES` either way, with the
/// protocol version both in the `x-ohassist-protocol` header and in the body.
pub struct Wire<T>(pub T);

impl<T: DeserializeOwned + Versioned + Send + 'static> FromRequest<AppState> for Wire<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        // Other values were refused by the middleware; here only absence is left.
        if !req.headers().contains_key(wire::PROTOCOL_HEADER) {
            return Err(ApiError::ProtocolVersion { found: None });
        }
        let bytes = body_bytes(req, state).await?;
        // Inflating up to 8 MiB is CPU work: keep it off the async threads.
        let decoded = tokio::task::spawn_blocking(move || wire::decode::<T>(&bytes, wire::MAX_PUSH_BYTES)).await?;
        let value = decoded.map_err(|e| match e {
            DecodeError::TooLarge { limit } => ApiError::TooLarge(format!("body over {limit} bytes once decompressed")),
            DecodeError::Compression(e) => ApiError::MalformedBody(format!("not gzip: {e}")),
            DecodeError::Cbor(e) => ApiError::MalformedBody(format!("not CBOR for this message: {e}")),
        })?;
        if value.protocol() != wire::PROTOCOL_VERSION {
            return Err(ApiError::ProtocolVersion { found: Some(value.protocol().to_string()) });
        }
        Ok(Wire(value))
    }
}

impl<T: Serialize> IntoResponse for Wire<T> {
    fn into_response(self) -> Response {
        let headers = [
            (header::CONTENT_TYPE, HeaderValue::from_static(wire::CONTENT_TYPE)),
            (header::CONTENT_ENCODING, HeaderValue::from_static("gzip")),
            (header::HeaderName::from_static(wire::PROTOCOL_HEADER), HeaderValue::from(wire::PROTOCOL_VERSION)),
        ];
        (headers, wire::encode(&self.0)).into_response()
    }
}

/// How often a device's `last_seen` is written: not on every request.
const TOUCH_INTERVAL_SECS: i64 = 300;

/// The caller, by bearer token, checked against the database on every request so that a
/// revocation takes effect at once. A device marked lost is refused here, on every endpoint.
impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Ok(authenticate(parts, state).await?.0)
    }
}

/// A caller whose device is active: pulls and downloads, which a retired device may no
/// longer make (it may still push what it holds).
pub struct ActiveCaller(pub Caller);

impl FromRequestParts<AppState> for ActiveCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match authenticate(parts, state).await? {
            (caller, DeviceStatus::Active) => Ok(ActiveCaller(caller)),
            _ => Err(ApiError::DeviceRetired),
        }
    }
}

/// The bearer token of a request, if it has one.
pub fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

async fn authenticate(parts: &Parts, state: &AppState) -> Result<(Caller, DeviceStatus), ApiError> {
    let token = bearer(parts).ok_or(ApiError::Unauthorized)?;
    let hash = accounts::token_hash(token);
    let now = now();
    let (caller, status) = state
        .db
        .read(move |conn| {
            Ok(match accounts::caller_by_token(conn, &hash, now)? {
                Some(found) => Ok(found),
                // An API client's token is live but read-only: only the export takes it.
                None if crate::clients::by_token_hash(conn, &hash)?.is_some() => Err(ApiError::Forbidden),
                None => Err(ApiError::Unauthorized),
            })
        })
        .await??;
    if caller.last_seen.is_none_or(|t| now - t > TOUCH_INTERVAL_SECS) || status == DeviceStatus::Lost {
        let db = state.db.clone();
        let device = caller.device_id.clone();
        tokio::spawn(async move {
            if let Err(e) = db.write(move |conn| Ok(accounts::touch_device(conn, &device, now)?)).await {
                tracing::warn!(error = %e, "could not record device last_seen");
            }
        });
    }
    if status == DeviceStatus::Lost {
        tracing::warn!(device = %caller.device_id, "a device marked lost reached the server; told to erase");
        return Err(ApiError::DeviceLost);
    }
    Ok((caller, status))
}

/// The client's IP address, when the server was started with connection info (tests
/// calling the router directly have none).
pub struct ClientIp(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())))
    }
}
