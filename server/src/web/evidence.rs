//! The evidence of a visit in the console (issue 6): its attachments with thumbnails, the
//! recorded location against the enterprise's, the signature and what changed after it,
//! and the flagged visits on the dashboard. Files are served through console routes that
//! check the session's scope like every page: out of scope is 404.

use std::collections::BTreeMap;

use crate::sql::{Connection, OptionalExtension};
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use ohassist_core::doc::Document;
use ohassist_core::model::{field_label, FieldLabel, Label, RecordKind, Visit};
use serde::Serialize;

use super::session::{Lang, Session};
use super::WebError;
use crate::api::error::{ApiError, ApiResult};
use crate::api::{AppState, DbCalls};
use crate::attachments::{self as store, Config, FlaggedVisit};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/visits/{id}/attachments/{sha}", get(full))
        .route("/visits/{id}/attachments/{sha}/thumb", get(thumb))
}

#[derive(Debug, Serialize)]
pub struct AttachmentView {
    pub sha256: String,
    pub kind: String,
    pub media_type: String,
    pub caption: String,
    pub taken_at: String,
    pub size: i64,
    /// The server holds the bytes (else the phone has not uploaded them yet).
    pub stored: bool,
    pub is_image: bool,
}

#[derive(Debug, Serialize)]
pub struct LocationView {
    pub latitude: f64,
    pub longitude: f64,
    pub accuracy_m: f64,
    pub captured_at: String,
    pub distance_m: Option<f64>,
    pub far: bool,
    pub clock_skew_s: Option<i64>,
    pub skewed: bool,
    /// Days between the capture time and the visit's date.
    pub capture_days_off: Option<i64>,
    /// Why the capture time looks wrong, when it does.
    pub clock_zh: String,
    pub clock_en: String,
}

#[derive(Debug, Serialize)]
pub struct SignatureView {
    pub signer_name: String,
    pub signed_at: String,
    /// `signed_at` in China Standard Time.
    pub signed_at_local: String,
    pub image_sha256: String,
    pub image_stored: bool,
    /// Paths changed since the signer's version; `None` when that version is unknown.
    pub changed_after: Option<Vec<String>>,
    /// The same paths as field labels (`管理自查 › 职业病危害项目申报 › 结果`).
    pub changed_after_labels: Vec<FieldLabel>,
}

#[derive(Debug, Serialize)]
pub struct Evidence {
    pub attachments: Vec<AttachmentView>,
    pub location: Option<LocationView>,
    pub signature: Option<SignatureView>,
}

fn load_visit(conn: &Connection, org_unit: &str, id: &str) -> ApiResult<(Document, Visit)> {
    let doc = crate::records::load_in_scope(conn, org_unit, RecordKind::Visit, id)?;
    let visit = doc.read()?;
    Ok((doc, visit))
}

/// The evidence of visit `id` as `org_unit` may see it.
pub fn evidence(conn: &Connection, org_unit: &str, id: &str, cfg: &Config, lang: Lang) -> ApiResult<Evidence> {
    let (doc, visit) = load_visit(conn, org_unit, id)?;
    let held = |sha: &str| -> ApiResult<bool> { Ok(store::stored(conn, sha)?.is_some()) };
    let mut attachments = Vec::new();
    // The signature image is shown with the signature, not again among the attachments.
    let signature_image = visit.signature.as_ref().map(|s| s.image_sha256.as_str()).unwrap_or("");
    for (sha, a) in visit.attachments.iter().filter(|(sha, a)| !a.deleted && sha.as_str() != signature_image) {
        attachments.push(AttachmentView {
            sha256: sha.clone(),
            kind: a.kind.map(|k| if lang == Lang::En { k.label_en() } else { k.label_zh() }).unwrap_or("").to_string(),
            media_type: a.media_type.clone(),
            caption: a.caption.clone(),
            taken_at: a.taken_at.clone(),
            size: a.size,
            stored: store::is_sha256(sha) && held(sha)?,
            is_image: a.media_type == "image/jpeg" || a.media_type == "image/png",
        });
    }
    let flags: Option<(Option<f64>, Option<i64>, Option<i64>)> = conn
        .query_row("SELECT far_from_enterprise_m, clock_skew_s, sync_gap_s FROM visits WHERE id = ?1", [id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    let (distance_m, clock_skew_s, sync_gap_s) = flags.unwrap_or_default();
    let (skewed, capture_days_off) = store::clock_flag(conn, id, cfg)?;
    let (clock_zh, clock_en) =
        store::clock_reason(capture_days_off, clock_skew_s, sync_gap_s, cfg.max_clock_skew_s).unwrap_or_default();
    let location = visit.location.as_ref().map(|fix| LocationView {
        latitude: fix.latitude,
        longitude: fix.longitude,
        accuracy_m: fix.accuracy_m,
        captured_at: super::views::local_rfc3339(&fix.captured_at),
        distance_m: distance_m.map(f64::round),
        far: distance_m.is_some_and(|d| d > cfg.max_visit_distance_m),
        clock_skew_s,
        skewed,
        capture_days_off,
        clock_zh,
        clock_en,
    });
    let signature = match &visit.signature {
        Some(s) => {
            let changed_after = store::changed_after_signing(&doc, &s.signed_version, &s.image_sha256);
            let record = doc.json(None);
            let changed_after_labels = changed_after
                .iter()
                .flatten()
                .map(|p| {
                    let path: Vec<String> = p.split('/').map(str::to_string).collect();
                    field_label(RecordKind::Visit, &record, &path)
                })
                .collect();
            Some(SignatureView {
                signer_name: s.signer_name.clone(),
                signed_at: s.signed_at.clone(),
                signed_at_local: super::views::local_rfc3339(&s.signed_at),
                image_sha256: s.image_sha256.clone(),
                image_stored: store::is_sha256(&s.image_sha256) && held(&s.image_sha256)?,
                changed_after,
                changed_after_labels,
            })
        }
        None => None,
    };
    Ok(Evidence { attachments, location, signature })
}

/// The flagged visits of the dashboard, and how many per county.
#[derive(Debug, Serialize)]
pub struct FlagsView {
    pub visits: Vec<FlaggedVisit>,
    /// Unit name → flagged visits.
    pub per_county: BTreeMap<String, usize>,
    /// County code → its name, for the list.
    pub names: BTreeMap<String, String>,
    pub max_distance_m: f64,
    pub max_clock_skew_h: i64,
}

/// Most flagged visits listed on the dashboard (the counts cover all).
const FLAG_LIST_LIMIT: usize = 100;

pub fn flags(conn: &Connection, org_unit: &str, year: i32, cfg: &Config) -> ApiResult<FlagsView> {
    let all = store::flagged_visits(conn, org_unit, year, cfg)?;
    let units = crate::units::Units::load(conn)?;
    let (mut per_county, mut names) = (BTreeMap::new(), BTreeMap::new());
    for v in &all {
        let name = names.entry(v.county_code.clone()).or_insert_with(|| units.row_label(&v.county_code, ""));
        *per_county.entry(name.clone()).or_insert(0) += 1;
    }
    Ok(FlagsView {
        visits: all.into_iter().take(FLAG_LIST_LIMIT).collect(),
        per_county,
        names,
        max_distance_m: cfg.max_visit_distance_m,
        max_clock_skew_h: cfg.max_clock_skew_s / 3600,
    })
}

/// Checks that the session may see attachment `sha` of visit `id`; returns its media type.
async fn permitted(state: &AppState, s: &Session, id: String, sha: &str) -> Result<String, WebError> {
    if !store::is_sha256(sha) {
        return Err(ApiError::NotFound.into());
    }
    let (unit, sha) = (s.caller.org_unit.clone(), sha.to_string());
    Ok(state
        .db
        .read(move |conn| {
            let (_, visit) = load_visit(conn, &unit, &id)?;
            let Some(a) = visit.attachments.get(&sha) else { return Err(ApiError::NotFound) };
            let (_, stored_type) = store::stored(conn, &sha)?.ok_or(ApiError::NotFound)?;
            Ok(if a.media_type.is_empty() { stored_type } else { a.media_type.clone() })
        })
        .await?)
}

fn private(mut r: Response, media_type: &str) -> Response {
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(media_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=86400"));
    // Uploaded bytes are never interpreted as a page of this origin.
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox"));
    r
}

async fn full(
    State(state): State<AppState>,
    s: Session,
    Path((id, sha)): Path<(String, String)>,
) -> Result<Response, WebError> {
    let media_type = permitted(&state, &s, id, &sha).await?;
    let path = state.attachments.complete_path(&sha);
    let bytes = tokio::task::spawn_blocking(move || std::fs::read(path)).await.map_err(ApiError::from)?;
    let bytes = bytes.map_err(ApiError::internal)?;
    Ok(private(bytes.into_response(), &media_type))
}

async fn thumb(
    State(state): State<AppState>,
    s: Session,
    Path((id, sha)): Path<(String, String)>,
) -> Result<Response, WebError> {
    permitted(&state, &s, id, &sha).await?;
    let cfg = state.attachments.clone();
    // Thumbnails are decoded two at a time: a page of large photos cannot take every core.
    static DECODES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);
    let permit = DECODES.acquire().await.map_err(ApiError::internal)?;
    let jpeg = tokio::task::spawn_blocking(move || store::thumbnail(&cfg, &sha)).await.map_err(ApiError::from)??;
    drop(permit);
    match jpeg {
        Some(bytes) => Ok(private(bytes.into_response(), "image/jpeg")),
        None => Err(ApiError::NotFound.into()),
    }
}
