-- API clients (issue 16): read-only tokens a provincial platform or a script uses for the
-- records export. Not users: they never log in, hold no device and may not push; only the
-- SHA-256 of the token is stored. Revoked, never deleted, so that the list shows who had
-- access when.
CREATE TABLE api_clients (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL DEFAULT 'reader' CHECK (role IN ('reader')),
    org_unit   TEXT NOT NULL,                -- 6-digit division code: the scope, like a supervisor's
    token_hash TEXT NOT NULL UNIQUE,
    created_by TEXT NOT NULL,                -- the admin's username, or `cli`
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
