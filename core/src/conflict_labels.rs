//! A record's conflicts with their field labels, for the apps: the same words the console
//! shows (`危害因素辨识 › 破碎岗位 › 接触人数`), so that no app maps paths itself. Reads
//! through the store's public API; the labelling is `model::field_label`.

use crate::doc::{to_json, Conflict};
use crate::error::{Error, Result};
use crate::model::{field_label, FieldLabel, RecordKind};
use crate::store::Store;

impl Store {
    /// The conflicts of record `id`, each with its label in both languages.
    pub fn labelled_conflicts(&self, id: &str) -> Result<Vec<(Conflict, FieldLabel)>> {
        let conflicts = self.conflicts(id)?;
        if conflicts.is_empty() {
            return Ok(Vec::new());
        }
        let (kind, record) = match self.get_visit(id) {
            Ok(v) => (RecordKind::Visit, to_json(&v.record)),
            Err(Error::NotFound(_)) => (RecordKind::Enterprise, to_json(&self.get_enterprise(id)?.record)),
            Err(e) => return Err(e),
        };
        Ok(conflicts
            .into_iter()
            .map(|c| {
                let label = field_label(kind, &record, &c.path);
                (c, label)
            })
            .collect())
    }
}
