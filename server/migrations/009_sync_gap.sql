-- The clock flag measures a capture against the device's own sync gap (issue 12): when the
-- device last finished a pull, and, per visit, how long before the receipt of its capture
-- that was. A capture inside [previous sync, receipt] is a normal offline trip.
ALTER TABLE devices ADD COLUMN synced_at INTEGER;           -- the device's last completed pull
ALTER TABLE visits ADD COLUMN sync_gap_s INTEGER;           -- receipt - previous sync; NULL: none known
