-- Every sync ends by counting the records in conflict (issue 17): without an index that is a
-- scan of every document's bytes (70 MB, decrypted, after a province's first sync). A partial
-- index holds only the conflicted ones.
CREATE INDEX documents_conflicted ON documents (updated_at) WHERE has_conflicts = 1;
