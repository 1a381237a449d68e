-- Visits stored before a visit's scope became its enterprise's county (issue 10): each takes
-- its enterprise's county, and is fed whole so that county's phones receive it. A visit
-- whose enterprise the server does not hold keeps its row but counts in no figure (the
-- status rows are computed per enterprise).
CREATE TEMP TABLE moved_visits AS
    SELECT v.id AS id, e.county_code AS county
    FROM visits v JOIN enterprises e ON e.credit_code = v.enterprise_id
    WHERE v.county_code <> e.county_code;
UPDATE visits SET county_code = (SELECT county FROM moved_visits m WHERE m.id = visits.id)
    WHERE id IN (SELECT id FROM moved_visits);
UPDATE documents SET county_code = (SELECT county FROM moved_visits m WHERE m.id = documents.id)
    WHERE id IN (SELECT id FROM moved_visits);
INSERT INTO changes (hash, doc_id, kind, bytes, user_id, device_id, received_at, whole)
    SELECT 'whole:migration-008-' || id, id, 'visit', x'', '', '', CAST(strftime('%s', 'now') AS INTEGER), 1
    FROM moved_visits;
DROP TABLE moved_visits;
