-- The clock flag's first measure, computed when a visit's row is written (attachments.rs,
-- `capture_days_off`) instead of in each query with SQLite's date functions: the same
-- query then runs on PostgreSQL (ADR 0008). Rows written before take it from the same
-- expression the queries used.
ALTER TABLE visits ADD COLUMN capture_days_off INTEGER;
UPDATE visits SET capture_days_off =
    CAST(round(abs(julianday(date(captured_at, '+8 hours')) - julianday(visit_date))) AS INTEGER)
    WHERE captured_at IS NOT NULL;
