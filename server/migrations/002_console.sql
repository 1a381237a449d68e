-- The supervisor console: browser sessions, and each enterprise's computed Table 1 status
-- per assistance year (derived, like the relational rows of 001).

-- A browser login. The cookie holds a random secret; only its SHA-256 is stored, so a
-- leaked database does not hand out sessions. Revoked by logout, a password reset or an admin.
CREATE TABLE web_sessions (
    id_hash    TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id),
    csrf_token TEXT NOT NULL,                -- echoed by every form of this session
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX web_sessions_by_user ON web_sessions (user_id);

-- `status::table1_status` and `status::missing_six_ones` of an enterprise for one year of
-- its assistance list, recomputed in the transaction that changes the enterprise or one of
-- its visits, so that the dashboard and the tables aggregate rows instead of documents.
CREATE TABLE enterprise_status (
    credit_code                  TEXT NOT NULL REFERENCES documents (id),
    year                         INTEGER NOT NULL,
    name                         TEXT NOT NULL,
    county_code                  TEXT NOT NULL,
    county_name                  TEXT NOT NULL,
    industry                     TEXT,
    declared                     INTEGER NOT NULL,
    detection_done               INTEGER NOT NULL,
    health_examination_done      INTEGER NOT NULL,
    principal_trained            INTEGER NOT NULL,
    managers_trained             INTEGER NOT NULL,
    workers_trained              INTEGER NOT NULL,
    special_governance           INTEGER NOT NULL,
    special_governance_completed INTEGER NOT NULL,
    city_level_target            INTEGER NOT NULL,
    missing                      TEXT NOT NULL,  -- JSON array of six-ones codes not yet covered
    visit_count                  INTEGER NOT NULL,
    PRIMARY KEY (credit_code, year)
);
CREATE INDEX enterprise_status_by_year ON enterprise_status (year, county_code);

-- The dashboard's visits per month read only this index (no table rows).
CREATE INDEX visits_by_county_date ON visits (county_code, visit_date, deleted);
