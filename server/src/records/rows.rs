//! Step 7 of a push, the writes: the document, its relational row (`enterprises`, `visits`),
//! and the change feed (the genesis of a new record first, a record that moved fed whole,
//! then the changes as pushed). A moved enterprise takes its visits along. Everything runs
//! in the push's transaction.

use crate::sql::{params, Insert, OptionalExtension, Transaction};
use automerge::{Change, ChangeHash};
use ohassist_core::model::{ChecklistItem, Enterprise, RecordKind, TrainingAudience, Visit};

use crate::accounts::Caller;

/// A document that passed every check, to be written.
pub(super) struct Write<'a> {
    pub doc_id: &'a str,
    pub kind: RecordKind,
    /// Its heads once written.
    pub heads: &'a [ChangeHash],
    pub saved: &'a [u8],
    pub has_conflicts: bool,
    pub row: &'a Row,
    /// The county it is in now, and the one the server held it in (`None`: new).
    pub county: &'a str,
    /// A visit's enterprise's registered location (latitude, longitude), as scope read it.
    pub registered: Option<(Option<f64>, Option<f64>)>,
    pub old_county: Option<&'a str>,
    pub genesis: Option<Change>,
    /// The pushed changes, by hash, as pushed.
    pub raw: &'a [(String, Vec<u8>)],
}

/// Writes the document, its row and its feed entries; returns the credit codes of the
/// enterprises whose computed status it feeds (a visit may have moved from one enterprise
/// to another).
pub(super) fn store(tx: &Transaction<'_>, caller: &Caller, w: Write<'_>, now: i64) -> crate::sql::Result<Vec<String>> {
    let Write { doc_id, kind, heads, saved, has_conflicts, row, county, registered, old_county, genesis, raw } = w;
    let heads: Vec<String> = heads.iter().map(|h| h.to_string()).collect();
    let document = || -> crate::sql::Result<()> {
        tx.insert_later(
            &INSERT_DOCUMENT,
            params![
                doc_id,
                kind.as_str(),
                saved,
                serde_json::to_string(&heads).unwrap_or_else(|_| "[]".into()),
                county,
                has_conflicts,
                now
            ],
        )
    };
    // The reads first, then the writes, which PostgreSQL takes in multi-row statements
    // (`insert_later`): any error of theirs fails the push's transaction.
    let affected = match row {
        Row::Enterprise(e) => {
            document()?;
            write_enterprise_row(tx, e, has_conflicts, old_county.is_some())?;
            if old_county.is_some_and(|c| c != county) {
                move_visits(tx, doc_id, county, now)?;
            }
            vec![e.credit_code.clone()]
        }
        Row::Visit(v) => {
            let mut affected = vec![v.enterprise_id.clone()];
            // A record new to the server has no row yet (`old_county` is the stored document's).
            let stored = old_county.is_some();
            if stored {
                let before: Option<String> = tx
                    .prepare_cached("SELECT enterprise_id FROM visits WHERE id = ?1")?
                    .query_row([doc_id], |r| r.get("enterprise_id"))
                    .optional()?;
                affected.extend(before.filter(|b| *b != v.enterprise_id));
            }
            let flags = crate::attachments::visit_flags(tx, doc_id, v, registered, stored, caller.synced_at, now)?;
            document()?;
            write_visit_row(tx, doc_id, v, county, has_conflicts, &flags)?;
            affected
        }
    };
    // The genesis goes into the feed too, first, so that a device pulling changes of a
    // record it never saw receives everything the record's changes depend on.
    if let Some(mut g) = genesis {
        let hash = g.hash().to_string();
        tx.insert_later(
            &INSERT_CHANGE,
            params![hash, doc_id, kind.as_str(), g.bytes().as_ref(), caller.user_id, caller.device_id, now],
        )?;
    }
    // A record that moved is fed whole before its changes: a device of the new county gets
    // the document the changes depend on first (the whole document is read at pull time, so
    // it holds them too).
    if let Some(old) = old_county.filter(|c| *c != county) {
        feed_moved(tx, doc_id, kind, old, saved, now)?;
    }
    for (hash, bytes) in raw {
        tx.insert_later(
            &INSERT_CHANGE,
            params![hash, doc_id, kind.as_str(), bytes, caller.user_id, caller.device_id, now],
        )?;
    }
    Ok(affected)
}

static INSERT_DOCUMENT: Insert = Insert::new(
    "documents (id, kind, bytes, heads, county_code, has_conflicts, updated_at)",
    7,
    1,
    "ON CONFLICT (id) DO UPDATE SET bytes = excluded.bytes, heads = excluded.heads,
         county_code = excluded.county_code, has_conflicts = excluded.has_conflicts, updated_at = excluded.updated_at",
);

/// A change into the feed; one held already is left as it is.
static INSERT_CHANGE: Insert = Insert::new(
    "changes (hash, doc_id, kind, bytes, user_id, device_id, received_at)",
    7,
    0,
    "ON CONFLICT (hash) DO NOTHING",
);

/// An enterprise moved to another county: its visits follow it (their scope is the
/// enterprise's county), and each is fed whole so that the receiving county's phones get
/// every change made before the move, not only the later ones.
fn move_visits(tx: &Transaction<'_>, credit_code: &str, county: &str, now: i64) -> crate::sql::Result<()> {
    let ids: Vec<String> = tx
        .prepare_cached("SELECT id FROM visits WHERE enterprise_id = ?1")?
        .query_map([credit_code], |r| r.get("id"))?
        .collect::<crate::sql::Result<_>>()?;
    for id in ids {
        tx.execute("UPDATE documents SET county_code = ?2, updated_at = ?3 WHERE id = ?1", params![id, county, now])?;
        tx.execute("UPDATE visits SET county_code = ?2 WHERE id = ?1", params![id, county])?;
        feed_whole(tx, &id, RecordKind::Visit, now)?;
    }
    Ok(())
}

/// Puts a marker in the feed that a pull answers with the whole document as it is then.
fn feed_whole(tx: &Transaction<'_>, doc_id: &str, kind: RecordKind, now: i64) -> crate::sql::Result<()> {
    feed_moved(tx, doc_id, kind, "", &[], now)
}

/// [`feed_whole`] for a record that moved out of county `old`: the old county's phones get
/// `snapshot`, the document as it was at the move (not what the new county adds later).
fn feed_moved(
    tx: &Transaction<'_>,
    doc_id: &str,
    kind: RecordKind,
    old: &str,
    snapshot: &[u8],
    now: i64,
) -> crate::sql::Result<()> {
    tx.prepare_cached(
        "INSERT INTO changes (hash, doc_id, kind, bytes, user_id, device_id, received_at, whole, also_county)
         VALUES (?1, ?2, ?3, ?4, '', '', ?5, 1, ?6)",
    )?
    .execute(params![
        format!("whole:{}", uuid::Uuid::new_v4().simple()),
        doc_id,
        kind.as_str(),
        snapshot,
        now,
        old
    ])?;
    Ok(())
}

/// The record as typed, for its relational row.
pub(super) enum Row {
    Enterprise(Box<Enterprise>),
    Visit(Box<Visit>),
}

/// The enterprise's row; `stored`: the server held the record before this push.
fn write_enterprise_row(
    tx: &Transaction<'_>,
    e: &Enterprise,
    has_conflicts: bool,
    stored: bool,
) -> crate::sql::Result<()> {
    let years = serde_json::to_string(&e.years()).unwrap_or_else(|_| "[]".into());
    tx.insert_later(
        &INSERT_ENTERPRISE,
        params![
            e.credit_code,
            e.name,
            e.county.code,
            e.county.name,
            e.industry.map(|i| i.code()),
            e.size.map(|s| s.code()),
            years,
            e.city_level_target,
            e.special_governance,
            e.has_occupational_disease,
            e.in_surveillance_scope,
            e.deleted,
            has_conflicts,
            e.location.map(|p| p.latitude),
            e.location.map(|p| p.longitude)
        ],
    )?;
    // A record new to the server has no visits on it yet (a visit's enterprise must be
    // there before it): nothing to recompute.
    if stored {
        crate::attachments::refresh_enterprise_distances(tx, &e.credit_code, e.location)?;
    }
    Ok(())
}

static INSERT_ENTERPRISE: Insert = Insert::new(
    "enterprises (credit_code, name, county_code, county_name, industry, size, years,
        city_level_target, special_governance, has_occupational_disease, in_surveillance_scope, deleted, has_conflicts,
        latitude, longitude)",
    15,
    1,
    "ON CONFLICT (credit_code) DO UPDATE SET
             name = excluded.name, county_code = excluded.county_code,
             county_name = excluded.county_name, industry = excluded.industry,
             size = excluded.size, years = excluded.years,
             city_level_target = excluded.city_level_target,
             special_governance = excluded.special_governance,
             has_occupational_disease = excluded.has_occupational_disease,
             in_surveillance_scope = excluded.in_surveillance_scope,
             deleted = excluded.deleted, has_conflicts = excluded.has_conflicts,
             latitude = excluded.latitude, longitude = excluded.longitude",
);

/// The visit's row, in its enterprise's `county`, with the flags of its capture.
fn write_visit_row(
    tx: &Transaction<'_>,
    id: &str,
    v: &Visit,
    county: &str,
    has_conflicts: bool,
    flags: &crate::attachments::VisitFlags,
) -> crate::sql::Result<()> {
    let answer = |item| v.self_inspection.get(item).and_then(|c| c.result).map(|r| r.code());
    let trained = |audience| {
        v.training
            .sessions
            .values()
            .any(|s| !s.deleted && s.organised_by_authority && s.attendees > 0 && s.audience == Some(audience))
    };
    tx.insert_later(
        &INSERT_VISIT,
        params![
            id,
            v.enterprise_id,
            county,
            v.visit_date,
            v.review.state.code(),
            serde_json::to_string(&v.inspectors).unwrap_or_else(|_| "{}".into()),
            v.deleted,
            has_conflicts,
            answer(ChecklistItem::Declaration),
            answer(ChecklistItem::Detection),
            answer(ChecklistItem::HealthExamination),
            trained(TrainingAudience::Principal),
            trained(TrainingAudience::Manager),
            trained(TrainingAudience::Workers),
            flags.latitude,
            flags.longitude,
            flags.captured_at,
            flags.far_from_enterprise_m,
            flags.clock_skew_s,
            flags.sync_gap_s,
            flags.capture_days_off
        ],
    )
}

static INSERT_VISIT: Insert = Insert::new(
    "visits (id, enterprise_id, county_code, visit_date, review_state, inspectors, deleted,
        has_conflicts, declaration, detection, health_examination, principal_trained, managers_trained, workers_trained,
        latitude, longitude, captured_at, far_from_enterprise_m, clock_skew_s, sync_gap_s, capture_days_off)",
    21,
    1,
    "ON CONFLICT (id) DO UPDATE SET
         enterprise_id = excluded.enterprise_id, county_code = excluded.county_code,
         visit_date = excluded.visit_date, review_state = excluded.review_state,
         inspectors = excluded.inspectors, deleted = excluded.deleted,
         has_conflicts = excluded.has_conflicts, declaration = excluded.declaration,
         detection = excluded.detection, health_examination = excluded.health_examination,
         principal_trained = excluded.principal_trained,
         managers_trained = excluded.managers_trained,
         workers_trained = excluded.workers_trained, latitude = excluded.latitude,
         longitude = excluded.longitude, captured_at = excluded.captured_at,
         far_from_enterprise_m = excluded.far_from_enterprise_m,
         clock_skew_s = excluded.clock_skew_s, sync_gap_s = excluded.sync_gap_s, capture_days_off = excluded.capture_days_off",
);
