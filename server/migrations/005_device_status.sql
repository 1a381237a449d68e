-- Lost and retired devices (an admin's decision) and what each device reported it still holds
-- unsynced at its last sync, for the console's devices page.
ALTER TABLE devices ADD COLUMN status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'lost', 'retired'));
ALTER TABLE devices ADD COLUMN status_changed_at INTEGER;
ALTER TABLE devices ADD COLUMN pending_changes INTEGER;       -- NULL until the device first reports
ALTER TABLE devices ADD COLUMN pending_attachments INTEGER;
ALTER TABLE devices ADD COLUMN reported_at INTEGER;
