-- Held records and quarantined pulls (issues 10 and 11).

-- A record the server refused: its changes stay in the outbox, skipped by pushes until a
-- retry is due (`retry = 1`: the record was edited, the server sent something about it or
-- its enterprise, the user logged in again, or it has waited long enough). Readable and
-- editable as ever; never deleted by a sync.
CREATE TABLE held (
    doc_id    TEXT PRIMARY KEY,
    kind      TEXT NOT NULL,
    code      TEXT NOT NULL,
    reason_zh TEXT NOT NULL,
    reason_en TEXT NOT NULL,
    held_at   INTEGER NOT NULL,              -- ms since the epoch
    retry     INTEGER NOT NULL DEFAULT 0
) STRICT;

-- Something a server sent that this store could not apply (a change or a whole document
-- that does not decode, breaks the limits, or does not read as its record): kept with the
-- reason, the rest of its page applied, retried after each pull.
CREATE TABLE quarantine (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    doc_id   TEXT NOT NULL,
    kind     TEXT NOT NULL,
    whole    INTEGER NOT NULL,               -- 1: a saved document, 0: one change
    bytes    BLOB NOT NULL,
    reason   TEXT NOT NULL,
    at       INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 1
) STRICT;
CREATE INDEX quarantine_by_doc ON quarantine (doc_id);
