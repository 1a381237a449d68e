-- Refused uploads keep their changes (issue 11): if the phone is lost before the reason is
-- settled, the county still has what the inspector recorded, and a supervisor who settles a
-- transfer applies them at once.

-- The refused document's changes as pushed: a CBOR array of byte strings, each one
-- Automerge change. Empty when they were not decodable (a hostile or broken change keeps
-- nothing but its reason) or over the size bound (`kept = 0` then).
ALTER TABLE refused_uploads ADD COLUMN changes BLOB NOT NULL DEFAULT x'';
ALTER TABLE refused_uploads ADD COLUMN kept INTEGER NOT NULL DEFAULT 0;
-- The county the record claims (an enterprise's county; a visit's enterprise's), and a
-- visit's enterprise: what a transfer decides about.
ALTER TABLE refused_uploads ADD COLUMN county_code TEXT NOT NULL DEFAULT '';
ALTER TABLE refused_uploads ADD COLUMN enterprise_id TEXT NOT NULL DEFAULT '';
CREATE INDEX refused_uploads_by_enterprise ON refused_uploads (enterprise_id);

-- A record that moves out of a county: the feed row that sends it whole to the new county
-- also carries (in `bytes`) the document as it was at the move, for the old county's phones,
-- which learn so that it left (and stop offering edits they could not push).
ALTER TABLE changes ADD COLUMN also_county TEXT NOT NULL DEFAULT '';

-- A refused upload a supervisor's transfer took in: gone from the console's queue, and named
-- to its device on its next pull so the phone pushes it again at once (and hears it
-- acknowledged); the row goes when the device's push of it is accepted.
ALTER TABLE refused_uploads ADD COLUMN settled INTEGER NOT NULL DEFAULT 0;
-- Every push asks whether its device has refusals, and every pull which of them were
-- settled: by device, not by a scan of every device's rows.
CREATE INDEX refused_uploads_by_device ON refused_uploads (device_id, settled);
