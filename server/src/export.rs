//! The records export for a provincial platform: the current JSON of every record in a unit
//! changed after a cursor, a page at a time, as JSON Lines or as CSV of one record kind
//! (`docs/export.md` is the contract). No HTTP here; `web::export` serves it.
//!
//! The cursor is a position in the change feed (`changes.seq`): a record is on a page when
//! its latest change comes after the cursor, and pages are ordered by that change. Walking
//! the pages from `0` yields every record once; a record changed while a platform pages is
//! yielded again, later, in its new state. Feed positions become visible in order (one
//! writer), so a cursor never skips a change committed after it was handed out.

use crate::sql::{params, Connection};
use ohassist_core::doc::{to_json, Document};
use ohassist_core::model::{Enterprise, RecordKind, Visit};
use serde::Serialize;
use serde_json::Value;

use crate::db::DbError;
use crate::scope;

pub const DEFAULT_LIMIT: usize = 500;
pub const MAX_LIMIT: usize = 2_000;

/// One exported record.
#[derive(Debug, Clone, Serialize)]
pub struct ExportRecord {
    pub kind: RecordKind,
    pub id: String,
    /// The feed position of the record's latest change.
    pub seq: u64,
    /// When the server last changed the record (RFC 3339, UTC).
    pub updated_at: String,
    pub has_conflicts: bool,
    /// The record as the phones and the console read it (`Enterprise` or `Visit`).
    pub record: Value,
}

/// One page and where the next one starts.
#[derive(Debug, Clone)]
pub struct Page {
    pub records: Vec<ExportRecord>,
    /// Pass as `cursor` for the next page. When `more` is false it is the feed's end at the
    /// time of the page, so that the next call returns only what changed since.
    pub next_cursor: u64,
    pub more: bool,
}

/// Why a page could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CursorError {
    /// A cursor beyond the end of the feed did not come from this server's database (a
    /// restored backup would otherwise silently miss records).
    #[error("cursor {cursor} is beyond the end of the change feed ({end})")]
    Ahead { cursor: u64, end: u64 },
    /// A stored document that does not load or read: the server's fault.
    #[error("stored record {id}: {detail}")]
    Corrupt { id: String, detail: String },
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<crate::sql::Error> for CursorError {
    fn from(e: crate::sql::Error) -> Self {
        CursorError::Db(e.into())
    }
}

fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// The page after `cursor` of records in `org_unit` (of `kind`, or both), at most `limit`.
pub fn page(
    conn: &mut Connection,
    org_unit: &str,
    kind: Option<RecordKind>,
    cursor: u64,
    limit: usize,
) -> Result<Page, CursorError> {
    // One snapshot for the feed's end and the page.
    let tx = conn.transaction()?;
    let end: u64 = tx.query_row("SELECT coalesce(max(seq), 0) FROM changes", [], |r| r.get::<_, i64>(0))? as u64;
    if cursor > end {
        return Err(CursorError::Ahead { cursor, end });
    }
    let limit = limit.clamp(1, MAX_LIMIT);
    // The page's ids first, without the documents' bytes: the sort then holds small rows,
    // and only the page's documents are read.
    let rows: Vec<(String, String, bool, i64, i64)> = {
        let mut stmt = tx.prepare_cached(
            "SELECT d.id, d.kind, d.has_conflicts, d.updated_at, m.last
             FROM (SELECT doc_id, max(seq) AS last FROM changes WHERE seq > ?1 GROUP BY doc_id) m
             JOIN documents d ON d.id = m.doc_id
             WHERE substr(d.county_code, 1, length(?2)) = ?2 AND (CAST(?3 AS TEXT) IS NULL OR d.kind = ?3)
             ORDER BY m.last
             LIMIT ?4",
        )?;
        let mapped = stmt.query_map(
            params![cursor as i64, scope::prefix(org_unit), kind.map(|k| k.as_str()), (limit + 1) as i64],
            |r| Ok((r.get("id")?, r.get("kind")?, r.get("has_conflicts")?, r.get("updated_at")?, r.get("last")?)),
        )?;
        mapped.collect::<crate::sql::Result<_>>()?
    };
    let more = rows.len() > limit;
    let mut records = Vec::with_capacity(limit.min(rows.len()));
    let mut bytes_of = tx.prepare_cached("SELECT bytes FROM documents WHERE id = ?1")?;
    for (id, kind, has_conflicts, updated_at, seq) in rows.into_iter().take(limit) {
        let corrupt = |detail: String| CursorError::Corrupt { id: id.clone(), detail };
        let kind = RecordKind::parse(&kind).ok_or_else(|| corrupt(format!("unknown kind {kind:?}")))?;
        let bytes: Vec<u8> = bytes_of.query_row([&id], |r| r.get("bytes"))?;
        let doc = Document::load(kind, &id, &bytes).map_err(|e| corrupt(e.to_string()))?;
        let record = match kind {
            RecordKind::Enterprise => to_json(&doc.read::<Enterprise>().map_err(|e| corrupt(e.to_string()))?),
            RecordKind::Visit => to_json(&doc.read::<Visit>().map_err(|e| corrupt(e.to_string()))?),
        };
        records.push(ExportRecord {
            kind,
            id,
            seq: seq as u64,
            updated_at: rfc3339(updated_at),
            has_conflicts,
            record,
        });
    }
    let next_cursor = if more { records.last().map_or(cursor, |r| r.seq) } else { end };
    Ok(Page { records, next_cursor, more })
}

/// The page as JSON Lines: one record object a line, then the cursor line
/// `{"next_cursor":"…","more":…,"count":…}`.
pub fn json_lines(page: &Page) -> Vec<u8> {
    let mut out = Vec::new();
    for r in &page.records {
        // Serialising a tree of serde_json values into memory cannot fail.
        let _ = serde_json::to_writer(&mut out, r);
        out.push(b'\n');
    }
    let tail = serde_json::json!({
        "next_cursor": page.next_cursor.to_string(),
        "more": page.more,
        "count": page.records.len(),
    });
    let _ = serde_json::to_writer(&mut out, &tail);
    out.push(b'\n');
    out
}

/// The CSV columns of a record kind: the leaves of its default record, dotted
/// (`county.code`); maps keyed by item ids, lists and absent optional parts are one column
/// holding JSON.
pub fn columns(kind: RecordKind) -> Vec<String> {
    fn walk(prefix: &str, v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) if !map.is_empty() => {
                for (k, child) in map {
                    let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    walk(&path, child, out);
                }
            }
            _ => out.push(prefix.to_string()),
        }
    }
    let default = match kind {
        RecordKind::Enterprise => to_json(&Enterprise::default()),
        RecordKind::Visit => to_json(&Visit::default()),
    };
    let mut out = vec!["id".to_string(), "seq".into(), "updated_at".into(), "has_conflicts".into()];
    walk("", &default, &mut out);
    out
}

fn cell(record: &Value, path: &str) -> String {
    let mut v = record;
    for part in path.split('.') {
        match v.get(part) {
            Some(child) => v = child,
            None => return String::new(),
        }
    }
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

/// The page's records of `kind` as CSV (UTF-8 with a BOM, for spreadsheets), a header line
/// of [`columns`] first. Cells a spreadsheet would run as formulas are neutralised as in the
/// tables' CSV.
pub fn csv(page: &Page, kind: RecordKind) -> Vec<u8> {
    let cols = columns(kind);
    let mut w = csv::WriterBuilder::new().terminator(csv::Terminator::CRLF).from_writer(vec![0xEF, 0xBB, 0xBF]);
    // Writing into memory cannot fail.
    let _ = w.write_record(&cols);
    for r in page.records.iter().filter(|r| r.kind == kind) {
        let line = cols.iter().map(|c| match c.as_str() {
            "id" => r.id.clone(),
            "seq" => r.seq.to_string(),
            "updated_at" => r.updated_at.clone(),
            "has_conflicts" => r.has_conflicts.to_string(),
            path => crate::reports::export::neutralise(&cell(&r.record, path)).into_owned(),
        });
        let _ = w.write_record(line);
    }
    w.into_inner().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_columns_are_the_records_leaves_with_maps_as_json() {
        let e = columns(RecordKind::Enterprise);
        for c in ["id", "seq", "credit_code", "name", "county.code", "county.name", "contact.phone", "assistance_years"]
        {
            assert!(e.contains(&c.to_string()), "{c} in {e:?}");
        }
        let v = columns(RecordKind::Visit);
        for c in ["enterprise_id", "visit_date", "review.state", "self_inspection.items", "training.sessions"] {
            assert!(v.contains(&c.to_string()), "{c} in {v:?}");
        }
        let record =
            serde_json::json!({"county": {"code": "210102"}, "assistance_years": {"2025": true}, "name": "=1+1"});
        assert_eq!(cell(&record, "county.code"), "210102");
        assert_eq!(cell(&record, "assistance_years"), r#"{"2025":true}"#);
        assert_eq!(cell(&record, "contact.phone"), "");
        let page = Page {
            records: vec![ExportRecord {
                kind: RecordKind::Enterprise,
                id: "x".into(),
                seq: 3,
                updated_at: rfc3339(0),
                has_conflicts: false,
                record,
            }],
            next_cursor: 3,
            more: false,
        };
        let text = String::from_utf8(csv(&page, RecordKind::Enterprise)).unwrap();
        assert!(text.starts_with("\u{feff}id,seq,updated_at,has_conflicts,"), "{text}");
        assert!(text.contains("'=1+1"), "a formula is neutralised: {text}");
        assert!(text.contains("1970-01-01T00:00:00Z"), "{text}");
        let lines = String::from_utf8(json_lines(&page)).unwrap();
        let last: Value = serde_json::from_str(lines.lines().last().unwrap()).unwrap();
        assert_eq!(last, serde_json::json!({"next_cursor": "3", "more": false, "count": 1}));
    }
}
