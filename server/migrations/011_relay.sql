-- The relay between servers (issue 13): county → city → province.

-- A `relay` account is a lower server's (a county server relaying to this city server): it
-- pushes and pulls like a device, scoped to its org unit, and never opens the console.
-- SQLite cannot alter a CHECK: the table is rebuilt. `devices` and `web_sessions` reference
-- users (id); with the checks deferred to the commit, the rows put back under the same ids
-- satisfy them again (no other table's schema is rewritten: no RENAME).
PRAGMA defer_foreign_keys = ON;
CREATE TABLE users_before_011 AS SELECT * FROM users;
DROP TABLE users;
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE COLLATE NOCASE,
    display_name  TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('inspector', 'supervisor', 'admin', 'relay')),
    org_unit      TEXT NOT NULL,              -- 6-digit administrative division code
    password_hash TEXT NOT NULL,              -- argon2id PHC string
    created_at    INTEGER NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0
);
INSERT INTO users (id, username, display_name, role, org_unit, password_hash, created_at, disabled)
    SELECT id, username, display_name, role, org_unit, password_hash, created_at, disabled FROM users_before_011;
DROP TABLE users_before_011;

-- Who wrote a change that a relay pushed: the original user and device of the lower
-- server's feed (the pushing account, the relay, stays in `changes.user_id`/`device_id`).
-- Field authority was checked against this author. One row per such change, never changed.
CREATE TABLE change_origins (
    hash         TEXT PRIMARY KEY REFERENCES changes (hash),
    user_id      TEXT NOT NULL,
    username     TEXT NOT NULL,
    display_name TEXT NOT NULL,
    role         TEXT NOT NULL,
    device_id    TEXT NOT NULL
);
CREATE INDEX change_origins_by_user ON change_origins (user_id);

-- The link of this server to its upstream (`ohassist serve --upstream`): one row at most.
-- `up_cursor`: the last row of the local feed pushed and acknowledged (or refused);
-- `down_cursor`/`down_page_token`: what a phone keeps of its pulls, the same way.
CREATE TABLE upstream (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    url             TEXT NOT NULL,
    username        TEXT NOT NULL,
    device_id       TEXT NOT NULL,
    token           TEXT,                     -- this server's token at the upstream (a secret)
    org_unit        TEXT NOT NULL DEFAULT '', -- the relay account's unit, as the upstream said
    up_cursor       INTEGER NOT NULL DEFAULT 0,
    down_cursor     INTEGER NOT NULL DEFAULT 0,
    down_page_token TEXT,
    last_up_at      INTEGER,                  -- the last round that reached the upstream
    last_down_at    INTEGER,
    last_error_at   INTEGER,
    last_error_zh   TEXT,
    last_error_en   TEXT,
    pushed          INTEGER NOT NULL DEFAULT 0, -- changes acknowledged by the upstream, in all
    pulled          INTEGER NOT NULL DEFAULT 0, -- changes and documents applied from it
    refused         INTEGER NOT NULL DEFAULT 0, -- documents the upstream refused, in all
    waiting_down    INTEGER NOT NULL DEFAULT 0  -- the upstream said more pages wait
);

-- Documents the upstream refused when this server relayed them (out of its relay account's
-- unit, field authority, …), by the upstream's reason: shown on the admin page; pushed again
-- when the upstream names them settled.
CREATE TABLE upstream_refused (
    doc_id    TEXT PRIMARY KEY,
    kind      TEXT NOT NULL,
    code      TEXT NOT NULL,
    reason_zh TEXT NOT NULL,
    reason_en TEXT NOT NULL,
    at        INTEGER NOT NULL
);
