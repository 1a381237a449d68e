//! Whole documents of a pulled page that the store does not hold yet (every document of a
//! first sync), applied in bulk (ADR 0005): each is checked within the limits, loaded once and
//! read once — its heads, conflicts and index row computed from that one load — off the
//! writer's work, on as many threads as pay, and then stored as the server saved it (no merge,
//! no second save) with two cached statements. One that fails a check is quarantined as before.

use std::panic::{catch_unwind, AssertUnwindSafe};

use rusqlite::{params, Transaction};

use super::index::{self, IndexRow};
use super::{heads_string, now_ms};
use crate::doc::Document;
use crate::error::{Error, Result};
use crate::limits::{self, Limits};
use crate::model::RecordKind;

/// What a new document's rows need, computed from one load of it.
pub(super) struct Prepared {
    heads: String,
    has_conflicts: bool,
    row: IndexRow,
}

/// Below this many documents a page is prepared on the calling thread: threads cost more
/// than they save.
const PARALLEL_FROM: usize = 64;
/// At most this many threads prepare a page (a phone has 4–8 cores; the writer waits).
const MAX_THREADS: usize = 4;

/// Checks and reads one document from outside, as [`super::apply_one_document`] does for a
/// new one: the limits before automerge reads it, its identity, the iterative walk before any
/// recursive read. A panic inside automerge is this document's error.
pub(super) fn prepare(kind: RecordKind, id: &str, bytes: &[u8]) -> Result<Prepared> {
    let corrupt = |reason: String| Error::CorruptDocument { id: id.to_string(), reason };
    catch_unwind(AssertUnwindSafe(|| {
        let limits = Limits::default();
        limits::check_document(bytes, &limits).map_err(|r| corrupt(r.to_string()))?;
        let doc = Document::load(kind, id, bytes)?;
        let concurrent = doc.check_limits_noting_conflicts(&limits).map_err(|r| corrupt(r.to_string()))?;
        Ok(Prepared {
            heads: heads_string(&doc.heads()),
            // The walk for the limits saw every key: most documents need no walk for conflicts.
            has_conflicts: concurrent && doc.has_conflicts(),
            row: index::row_of(&doc)?,
        })
    }))
    .unwrap_or_else(|_| Err(corrupt("automerge could not read it".into())))
}

/// [`prepare`] for every `(kind, id, bytes)`, in order, spread over the machine's cores.
pub(super) fn prepare_all(items: &[(RecordKind, &str, &[u8])]) -> Vec<Result<Prepared>> {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(MAX_THREADS);
    if items.len() < PARALLEL_FROM || threads < 2 {
        return items.iter().map(|(k, id, b)| prepare(*k, id, b)).collect();
    }
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|s| {
        let workers: Vec<_> = items
            .chunks(chunk)
            .map(|part| (part, s.spawn(move || part.iter().map(|(k, id, b)| prepare(*k, id, b)).collect::<Vec<_>>())))
            .collect();
        workers
            .into_iter()
            .flat_map(|(part, w)| {
                // `prepare` catches automerge's panics; a worker that died anyway refuses its part.
                w.join().unwrap_or_else(|_| {
                    part.iter()
                        .map(|(_, id, _)| {
                            Err(Error::CorruptDocument { id: id.to_string(), reason: "could not be read".into() })
                        })
                        .collect()
                })
            })
            .collect()
    })
}

/// Stores a prepared new document as the server saved it, and its index row.
pub(super) fn insert(tx: &Transaction<'_>, kind: RecordKind, id: &str, bytes: &[u8], p: &Prepared) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO documents (id, kind, bytes, heads, has_conflicts, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![id, kind.as_str(), bytes, p.heads, p.has_conflicts, now_ms()])?;
    index::write_row(tx, id, &p.row)
}
