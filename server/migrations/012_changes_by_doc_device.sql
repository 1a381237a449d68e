-- A first sync leaves out a document whose every change was pushed by the caller's own
-- device (ADR 0005): two probes per document in scope, on (doc_id, device_id), answered from
-- this index alone instead of reading every change row of the document. It serves the lookups
-- by document that `changes_by_doc` served.
CREATE INDEX changes_by_doc_device ON changes (doc_id, device_id);
DROP INDEX changes_by_doc;
