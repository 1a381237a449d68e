-- The county database on PostgreSQL: the same tables, columns and indexes as SQLite's after
-- its step 014 (`server/migrations/0*.sql`), in PostgreSQL's types. Flags stay integers 0/1
-- and times Unix seconds, so the domain's SQL reads the same on both (ADR 0008).
-- `tests/contract` checks that every table and column here is one SQLite has, and back.

-- Usernames compare without case, as SQLite's COLLATE NOCASE (a trusted extension).
CREATE EXTENSION IF NOT EXISTS citext;

CREATE TABLE documents (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL CHECK (kind IN ('enterprise', 'visit')),
    bytes         BYTEA NOT NULL,
    heads         TEXT NOT NULL,
    county_code   TEXT NOT NULL,
    has_conflicts BIGINT NOT NULL DEFAULT 0,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX documents_by_county ON documents (county_code, id);

-- The change feed. `seq` is drawn by the trigger below, under the feed's lock, so positions
-- follow commit order across server processes.
CREATE SEQUENCE changes_seq;
CREATE TABLE changes (
    seq         BIGINT PRIMARY KEY,
    hash        TEXT NOT NULL UNIQUE,
    doc_id      TEXT NOT NULL REFERENCES documents (id),
    kind        TEXT NOT NULL,
    bytes       BYTEA NOT NULL,
    user_id     TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    whole       BIGINT NOT NULL DEFAULT 0,
    also_county TEXT NOT NULL DEFAULT ''
);
CREATE INDEX changes_by_doc_device ON changes (doc_id, device_id);

CREATE FUNCTION changes_position() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- 0x6f686664, "ohfd": the lock every writer transaction takes at BEGIN (sql/pg.rs).
    PERFORM pg_advisory_xact_lock(1869112932);
    IF NEW.seq IS NULL THEN
        NEW.seq := nextval('changes_seq');
    ELSIF NEW.seq > (SELECT last_value FROM changes_seq) THEN
        -- A copied feed (`ohassist migrate`) keeps its positions; new ones come after.
        PERFORM setval('changes_seq', NEW.seq);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER changes_position BEFORE INSERT ON changes FOR EACH ROW EXECUTE FUNCTION changes_position();

CREATE TABLE enterprises (
    credit_code              TEXT PRIMARY KEY REFERENCES documents (id),
    name                     TEXT NOT NULL,
    county_code              TEXT NOT NULL,
    county_name              TEXT NOT NULL,
    industry                 TEXT,
    size                     TEXT,
    years                    TEXT NOT NULL,
    city_level_target        BIGINT NOT NULL,
    special_governance       BIGINT NOT NULL,
    has_occupational_disease BIGINT NOT NULL,
    in_surveillance_scope    BIGINT NOT NULL,
    deleted                  BIGINT NOT NULL,
    has_conflicts            BIGINT NOT NULL,
    latitude                 DOUBLE PRECISION,
    longitude                DOUBLE PRECISION
);
CREATE INDEX enterprises_by_county ON enterprises (county_code);

CREATE TABLE visits (
    id                    TEXT PRIMARY KEY REFERENCES documents (id),
    enterprise_id         TEXT NOT NULL,
    county_code           TEXT NOT NULL,
    visit_date            TEXT NOT NULL,
    review_state          TEXT NOT NULL,
    inspectors            TEXT NOT NULL,
    deleted               BIGINT NOT NULL,
    has_conflicts         BIGINT NOT NULL,
    declaration           TEXT,
    detection             TEXT,
    health_examination    TEXT,
    principal_trained     BIGINT NOT NULL,
    managers_trained      BIGINT NOT NULL,
    workers_trained       BIGINT NOT NULL,
    latitude              DOUBLE PRECISION,
    longitude             DOUBLE PRECISION,
    captured_at           TEXT,
    far_from_enterprise_m DOUBLE PRECISION,
    clock_skew_s          BIGINT,
    sync_gap_s            BIGINT,
    capture_days_off      BIGINT
);
CREATE INDEX visits_by_enterprise ON visits (enterprise_id);
CREATE INDEX visits_by_county ON visits (county_code, visit_date);
CREATE INDEX visits_by_county_date ON visits (county_code, visit_date, deleted);

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username      CITEXT NOT NULL UNIQUE,
    display_name  TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('inspector', 'supervisor', 'admin', 'relay')),
    org_unit      TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    disabled      BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE devices (
    id                  TEXT PRIMARY KEY,
    user_id             TEXT NOT NULL REFERENCES users (id),
    name                TEXT NOT NULL DEFAULT '',
    token_hash          TEXT UNIQUE,
    created_at          BIGINT NOT NULL,
    last_seen           BIGINT,
    revoked_at          BIGINT,
    expires_at          BIGINT,
    status              TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'lost', 'retired')),
    status_changed_at   BIGINT,
    pending_changes     BIGINT,
    pending_attachments BIGINT,
    reported_at         BIGINT,
    synced_at           BIGINT
);
CREATE INDEX devices_by_user ON devices (user_id);

CREATE TABLE web_sessions (
    id_hash    TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id),
    csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX web_sessions_by_user ON web_sessions (user_id);

CREATE TABLE enterprise_status (
    credit_code                  TEXT NOT NULL REFERENCES documents (id),
    year                         BIGINT NOT NULL,
    name                         TEXT NOT NULL,
    county_code                  TEXT NOT NULL,
    county_name                  TEXT NOT NULL,
    industry                     TEXT,
    declared                     BIGINT NOT NULL,
    detection_done               BIGINT NOT NULL,
    health_examination_done      BIGINT NOT NULL,
    principal_trained            BIGINT NOT NULL,
    managers_trained             BIGINT NOT NULL,
    workers_trained              BIGINT NOT NULL,
    special_governance           BIGINT NOT NULL,
    special_governance_completed BIGINT NOT NULL,
    city_level_target            BIGINT NOT NULL,
    missing                      TEXT NOT NULL,
    visit_count                  BIGINT NOT NULL,
    PRIMARY KEY (credit_code, year)
);
CREATE INDEX enterprise_status_by_year ON enterprise_status (year, county_code);

CREATE TABLE enterprise_monthly (
    credit_code             TEXT NOT NULL REFERENCES documents (id),
    year                    BIGINT NOT NULL,
    month                   BIGINT NOT NULL,
    county_code             TEXT NOT NULL,
    visits                  BIGINT NOT NULL,
    items_completed         BIGINT NOT NULL,
    declared                BIGINT NOT NULL,
    detection_done          BIGINT NOT NULL,
    health_examination_done BIGINT NOT NULL,
    trained                 BIGINT NOT NULL,
    PRIMARY KEY (credit_code, year, month)
);
CREATE INDEX enterprise_monthly_by_month ON enterprise_monthly (year, month, county_code);

CREATE TABLE attachments (
    sha256     TEXT PRIMARY KEY,
    size       BIGINT NOT NULL,
    media_type TEXT NOT NULL,
    complete   BIGINT NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL
);
CREATE TABLE attachment_visits (
    sha256   TEXT NOT NULL REFERENCES attachments (sha256),
    visit_id TEXT NOT NULL,
    PRIMARY KEY (sha256, visit_id)
);
CREATE INDEX attachment_visits_by_visit ON attachment_visits (visit_id);

CREATE TABLE refused_uploads (
    doc_id        TEXT NOT NULL,
    kind          TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    device_id     TEXT NOT NULL,
    label         TEXT NOT NULL,
    code          TEXT NOT NULL,
    reason_zh     TEXT NOT NULL,
    reason_en     TEXT NOT NULL,
    first_at      BIGINT NOT NULL,
    last_at       BIGINT NOT NULL,
    attempts      BIGINT NOT NULL DEFAULT 1,
    changes       BYTEA NOT NULL DEFAULT '\x'::bytea,
    kept          BIGINT NOT NULL DEFAULT 0,
    county_code   TEXT NOT NULL DEFAULT '',
    enterprise_id TEXT NOT NULL DEFAULT '',
    settled       BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (doc_id, device_id)
);
CREATE INDEX refused_uploads_by_time ON refused_uploads (last_at);
CREATE INDEX refused_uploads_by_enterprise ON refused_uploads (enterprise_id);
CREATE INDEX refused_uploads_by_device ON refused_uploads (device_id, settled);

CREATE TABLE units (
    code       TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    zone       BIGINT NOT NULL DEFAULT 0,
    host       TEXT,
    target     BIGINT,
    updated_at BIGINT NOT NULL
);

CREATE TABLE province_deadlines (
    province    TEXT PRIMARY KEY,
    list_due    TEXT NOT NULL,
    summary_due TEXT NOT NULL
);

CREATE TABLE api_clients (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL DEFAULT 'reader' CHECK (role IN ('reader')),
    org_unit   TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE change_origins (
    hash         TEXT PRIMARY KEY REFERENCES changes (hash),
    user_id      TEXT NOT NULL,
    username     TEXT NOT NULL,
    display_name TEXT NOT NULL,
    role         TEXT NOT NULL,
    device_id    TEXT NOT NULL
);
CREATE INDEX change_origins_by_user ON change_origins (user_id);

CREATE TABLE upstream (
    id              BIGINT PRIMARY KEY CHECK (id = 1),
    url             TEXT NOT NULL,
    username        TEXT NOT NULL,
    device_id       TEXT NOT NULL,
    token           TEXT,
    org_unit        TEXT NOT NULL DEFAULT '',
    up_cursor       BIGINT NOT NULL DEFAULT 0,
    down_cursor     BIGINT NOT NULL DEFAULT 0,
    down_page_token TEXT,
    last_up_at      BIGINT,
    last_down_at    BIGINT,
    last_error_at   BIGINT,
    last_error_zh   TEXT,
    last_error_en   TEXT,
    pushed          BIGINT NOT NULL DEFAULT 0,
    pulled          BIGINT NOT NULL DEFAULT 0,
    refused         BIGINT NOT NULL DEFAULT 0,
    waiting_down    BIGINT NOT NULL DEFAULT 0,
    token_expires_at BIGINT,
    next_token      TEXT
);
CREATE TABLE upstream_refused (
    doc_id    TEXT PRIMARY KEY,
    kind      TEXT NOT NULL,
    code      TEXT NOT NULL,
    reason_zh TEXT NOT NULL,
    reason_en TEXT NOT NULL,
    at        BIGINT NOT NULL
);


CREATE TABLE refused_origins (
    device_id     TEXT NOT NULL,
    doc_id        TEXT NOT NULL,
    hash          TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    username      TEXT NOT NULL,
    display_name  TEXT NOT NULL,
    role          TEXT NOT NULL,
    origin_device TEXT NOT NULL,
    PRIMARY KEY (device_id, hash)
);
CREATE INDEX refused_origins_by_doc ON refused_origins (doc_id, device_id);
