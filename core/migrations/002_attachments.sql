-- Attachment bytes held by this store (files beside the database, content-addressed).
-- state: 'local' (added here, not yet on the server), 'uploaded' (the server holds it),
-- 'cached' (downloaded from the server; may be evicted within the download budget).
CREATE TABLE attachments (
    sha256     TEXT PRIMARY KEY,
    size       INTEGER NOT NULL,
    media_type TEXT NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('local', 'uploaded', 'cached')),
    visit_id   TEXT NOT NULL,          -- the visit it was added to or fetched for
    created_at INTEGER NOT NULL,
    used_at    INTEGER NOT NULL
) STRICT;
