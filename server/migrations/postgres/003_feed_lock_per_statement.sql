-- The feed's lock taken once per statement, its position drawn by the column's default
-- (issue 14). Step 001's row trigger ran a PL/pgSQL function for every change inserted
-- (the lock, a look at the sequence, `nextval`): with several rows a statement, as the
-- push now writes them, that was most of each row's cost.
--
-- Why this keeps positions in commit order (ADR 0008 §5): a BEFORE STATEMENT trigger
-- fires before the statement computes its first row, so the lock is held before any
-- default `nextval` is drawn, and it is held to the end of the transaction. Writer
-- connections take it at BEGIN already; the trigger is for anything else that inserts
-- into the feed. A copied feed (`ohassist migrate`) gives its positions explicitly and
-- moves the sequence past them at the end (`setval`).
DROP TRIGGER changes_position ON changes;
DROP FUNCTION changes_position();
ALTER TABLE changes ALTER COLUMN seq SET DEFAULT nextval('changes_seq');
ALTER SEQUENCE changes_seq OWNED BY changes.seq;

CREATE FUNCTION changes_lock() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- 0x6f686664, "ohfd": the lock every writer transaction takes at BEGIN (sql/pg.rs).
    PERFORM pg_advisory_xact_lock(1869112932);
    RETURN NULL;
END $$;
CREATE TRIGGER changes_lock BEFORE INSERT ON changes FOR EACH STATEMENT EXECUTE FUNCTION changes_lock();
