-- The county server's database. Times are seconds since the Unix epoch.

-- One row per record: the merged Automerge document, the source of truth.
CREATE TABLE documents (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL CHECK (kind IN ('enterprise', 'visit')),
    bytes         BLOB NOT NULL,
    heads         TEXT NOT NULL,              -- JSON array of hex change hashes
    county_code   TEXT NOT NULL,              -- the record's county now: its scope
    has_conflicts INTEGER NOT NULL DEFAULT 0,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX documents_by_county ON documents (county_code, id);

-- The feed: every change the server holds, in the order it was received.
CREATE TABLE changes (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    hash        TEXT NOT NULL UNIQUE,         -- dedupe key: a change is stored once
    doc_id      TEXT NOT NULL REFERENCES documents (id),
    kind        TEXT NOT NULL,
    bytes       BLOB NOT NULL,
    user_id     TEXT NOT NULL,                -- who pushed it (from the token, not the change)
    device_id   TEXT NOT NULL,
    received_at INTEGER NOT NULL
);
CREATE INDEX changes_by_doc ON changes (doc_id);

-- Relational rows rebuilt from the merged documents in the pushing transaction, for the
-- supervisor console and the two tables. Never written otherwise.
CREATE TABLE enterprises (
    credit_code              TEXT PRIMARY KEY REFERENCES documents (id),
    name                     TEXT NOT NULL,
    county_code              TEXT NOT NULL,
    county_name              TEXT NOT NULL,
    industry                 TEXT,
    size                     TEXT,
    years                    TEXT NOT NULL,   -- JSON array of assistance years
    city_level_target        INTEGER NOT NULL,
    special_governance       INTEGER NOT NULL,
    has_occupational_disease INTEGER NOT NULL,
    in_surveillance_scope    INTEGER NOT NULL,
    deleted                  INTEGER NOT NULL,
    has_conflicts            INTEGER NOT NULL
);
CREATE INDEX enterprises_by_county ON enterprises (county_code);

CREATE TABLE visits (
    id                 TEXT PRIMARY KEY REFERENCES documents (id),
    enterprise_id      TEXT NOT NULL,
    county_code        TEXT NOT NULL,
    visit_date         TEXT NOT NULL,
    review_state       TEXT NOT NULL,
    inspectors         TEXT NOT NULL,         -- JSON object user id -> display name
    deleted            INTEGER NOT NULL,
    has_conflicts      INTEGER NOT NULL,
    -- Table 1 facts of this visit alone (self-inspection answers are compliance codes).
    declaration        TEXT,
    detection          TEXT,
    health_examination TEXT,
    principal_trained  INTEGER NOT NULL,
    managers_trained   INTEGER NOT NULL,
    workers_trained    INTEGER NOT NULL
);
CREATE INDEX visits_by_enterprise ON visits (enterprise_id);
CREATE INDEX visits_by_county ON visits (county_code, visit_date);

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE COLLATE NOCASE,
    display_name  TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('inspector', 'supervisor', 'admin')),
    org_unit      TEXT NOT NULL,              -- 6-digit administrative division code
    password_hash TEXT NOT NULL,              -- argon2id PHC string
    created_at    INTEGER NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0
);

-- A device holds at most one token; only its SHA-256 is stored.
CREATE TABLE devices (
    id         TEXT PRIMARY KEY,              -- chosen by the app at install
    user_id    TEXT NOT NULL REFERENCES users (id),
    name       TEXT NOT NULL DEFAULT '',
    token_hash TEXT UNIQUE,                   -- NULL after logout
    created_at INTEGER NOT NULL,
    last_seen  INTEGER,
    revoked_at INTEGER,                       -- set by an admin; a revoked device cannot log in again
    expires_at INTEGER
);
CREATE INDEX devices_by_user ON devices (user_id);
