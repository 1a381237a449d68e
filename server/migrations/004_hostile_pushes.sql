-- Hostile and refused pushes (issues 10 and 11).

-- A feed row with `whole = 1` carries no change: a pull answers it with the whole document
-- as it is then (a record that moved into a county arrives whole on that county's phones).
ALTER TABLE changes ADD COLUMN whole INTEGER NOT NULL DEFAULT 0;

-- Documents the server refused, per pushing device: nothing of them was stored in
-- `documents` or `changes`; the phone keeps them held. Shown to the unit's admins and
-- supervisors, in words, with who, when and why.
CREATE TABLE refused_uploads (
    doc_id     TEXT NOT NULL,
    kind       TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    label      TEXT NOT NULL,                -- the record in words (name; date and enterprise), or ''
    code       TEXT NOT NULL,
    reason_zh  TEXT NOT NULL,
    reason_en  TEXT NOT NULL,
    first_at   INTEGER NOT NULL,
    last_at    INTEGER NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (doc_id, device_id)
);
CREATE INDEX refused_uploads_by_time ON refused_uploads (last_at);
