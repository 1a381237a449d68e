//! The phone store's schema: numbered migrations in `core/migrations/`.

use crate::sqlite::Schema;

pub const SCHEMA: Schema = Schema {
    name: "ohassist store",
    application_id: 0x6f68_6131, // "oha1"
    steps: &[
        include_str!("../../migrations/001_init.sql"),
        include_str!("../../migrations/002_attachments.sql"),
        include_str!("../../migrations/003_held.sql"),
        include_str!("../../migrations/004_discarded.sql"),
        include_str!("../../migrations/005_conflicted_index.sql"),
    ],
};

#[cfg(test)]
mod tests {
    use super::*;

    /// The schema as SQLite reports it, comparable between two databases.
    pub(crate) fn dump(conn: &rusqlite::Connection) -> Vec<(String, String)> {
        let mut stmt =
            conn.prepare("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY type, name").unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(|r| r.unwrap()).collect()
    }

    #[test]
    fn upgrading_each_frozen_version_equals_a_fresh_database() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = crate::sqlite::open(&dir.path().join("fresh.db"), &SCHEMA).unwrap();
        let fresh_schema = dump(&fresh);
        for version in 0..SCHEMA.steps.len() {
            let path = dir.path().join(format!("v{version}.db"));
            let frozen =
                Schema { name: SCHEMA.name, application_id: SCHEMA.application_id, steps: &SCHEMA.steps[..version] };
            drop(crate::sqlite::open(&path, &frozen).unwrap());
            let upgraded = crate::sqlite::open(&path, &SCHEMA).unwrap();
            assert_eq!(dump(&upgraded), fresh_schema, "upgrade from version {version}");
            let v: u32 = upgraded.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
            assert_eq!(v, SCHEMA.version());
        }
    }
}
