-- The phone's store, version 1. See core/migrations/NOTES.md before adding a step.

-- Device identity and sync bookkeeping: device_id, user_id, server_url, token, cursor.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

-- One Automerge document per record: the whole saved document and its heads.
CREATE TABLE documents (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL CHECK (kind IN ('enterprise', 'visit')),
    bytes         BLOB NOT NULL,
    heads         TEXT NOT NULL,          -- change hashes, hex, comma-separated, sorted
    has_conflicts INTEGER NOT NULL DEFAULT 0,
    updated_at    INTEGER NOT NULL        -- ms since epoch, local clock
) STRICT;

-- Index rows rebuilt from the documents in the same transaction, for list screens.
CREATE TABLE enterprises (
    id                 TEXT PRIMARY KEY REFERENCES documents (id),
    credit_code        TEXT NOT NULL,
    name               TEXT NOT NULL,
    county_code        TEXT NOT NULL,
    county_name        TEXT NOT NULL,
    industry           TEXT,
    size               TEXT,
    years              TEXT NOT NULL,     -- ',2024,2025,' for LIKE '%,2025,%'
    city_level_target  INTEGER NOT NULL,
    special_governance INTEGER NOT NULL,
    deleted            INTEGER NOT NULL
) STRICT;
CREATE INDEX enterprises_by_county ON enterprises (county_code, name);
CREATE INDEX enterprises_by_code ON enterprises (credit_code);

CREATE TABLE visits (
    id            TEXT PRIMARY KEY REFERENCES documents (id),
    enterprise_id TEXT NOT NULL,
    county_code   TEXT NOT NULL,
    visit_date    TEXT NOT NULL,
    review_state  TEXT NOT NULL,
    inspectors    TEXT NOT NULL,          -- display names, '、'-separated
    deleted       INTEGER NOT NULL
) STRICT;
CREATE INDEX visits_by_county ON visits (county_code, visit_date);
CREATE INDEX visits_by_enterprise ON visits (enterprise_id, visit_date);

-- Local changes not yet acknowledged by a server, oldest first.
CREATE TABLE outbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    doc_id     TEXT NOT NULL REFERENCES documents (id),
    kind       TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE,
    bytes      BLOB NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX outbox_by_doc ON outbox (doc_id);
