-- Evidence on visits (issue 6): attachments held on disk, content-addressed, and the
-- location/time flags of visits.

-- One row per complete attachment file: `<data>/attachments/<first 2 hex>/<sha256>`.
-- Partial uploads have no row (only `<data>/attachments/partial/<sha256>`).
CREATE TABLE attachments (
    sha256     TEXT PRIMARY KEY,              -- 64 lowercase hex digits, verified
    size       INTEGER NOT NULL,
    media_type TEXT NOT NULL,
    complete   INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL
);

-- Which visit each upload came for: the scope of downloads and the per-visit limit.
CREATE TABLE attachment_visits (
    sha256   TEXT NOT NULL REFERENCES attachments (sha256),
    visit_id TEXT NOT NULL,
    PRIMARY KEY (sha256, visit_id)
);
CREATE INDEX attachment_visits_by_visit ON attachment_visits (visit_id);

-- An enterprise's registered location, so that its visits' distances can be computed
-- without loading its document.
ALTER TABLE enterprises ADD COLUMN latitude REAL;
ALTER TABLE enterprises ADD COLUMN longitude REAL;

-- A visit's recorded location and the two flags' measures (NULL when unknown). Flags are
-- these measures above the thresholds the server is started with: never rejections.
ALTER TABLE visits ADD COLUMN latitude REAL;
ALTER TABLE visits ADD COLUMN longitude REAL;
ALTER TABLE visits ADD COLUMN captured_at TEXT;
-- Metres between the visit's location and its enterprise's registered location.
ALTER TABLE visits ADD COLUMN far_from_enterprise_m REAL;
-- Server receive time minus the device's capture time, in seconds (first receipt of that
-- capture time).
ALTER TABLE visits ADD COLUMN clock_skew_s INTEGER;
