-- The relay (issue 13), continued.

-- When this server's token at the upstream expires (as the upstream said at login or at the
-- last renewal; NULL: not known, renewed at the next round), and the token offered at a
-- renewal in flight: if the upstream's answer was lost, the upstream may already hold it.
ALTER TABLE upstream ADD COLUMN token_expires_at INTEGER;
ALTER TABLE upstream ADD COLUMN next_token TEXT;

-- The original authors of a relay's changes that this server refused and kept (in
-- `refused_uploads`, by the pushing relay's device): a transfer that applies the kept changes
-- records them in `change_origins`, as the push would have.
CREATE TABLE refused_origins (
    device_id    TEXT NOT NULL,              -- the relay's device that pushed (refused_uploads.device_id)
    doc_id       TEXT NOT NULL,
    hash         TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    username     TEXT NOT NULL,
    display_name TEXT NOT NULL,
    role         TEXT NOT NULL,
    origin_device TEXT NOT NULL,
    PRIMARY KEY (device_id, hash)
);
CREATE INDEX refused_origins_by_doc ON refused_origins (doc_id, device_id);
