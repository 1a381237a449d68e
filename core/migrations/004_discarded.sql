-- Held records the inspector discarded (issue 11): a discard is explicit and confirmed, and
-- keeps an export of the record — the whole saved document and its JSON — so nothing an
-- inspector recorded is ever lost by it.
CREATE TABLE discarded (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    doc_id       TEXT NOT NULL,
    kind         TEXT NOT NULL,
    json         TEXT NOT NULL,               -- the record as it read when discarded
    bytes        BLOB NOT NULL,               -- the saved Automerge document
    code         TEXT NOT NULL,               -- the server's reason for holding it
    reason_zh    TEXT NOT NULL,
    reason_en    TEXT NOT NULL,
    discarded_at INTEGER NOT NULL             -- ms since the epoch
) STRICT;
