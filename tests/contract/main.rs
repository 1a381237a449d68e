//! The storage contract (`ohassist_server::sql`, ADR 0008), the same tests on both engines:
//! an SQLite file and a throwaway PostgreSQL (`tests/src/pg.rs`).

mod engine;
mod feed;
mod migrate;
mod processes;
mod schema;

use ohassist_server::db::{Db, Location};
use ohassist_server::sql::{Connection, Engine};

/// A fresh county database on `engine`, migrated, with its data directory.
pub struct Fresh {
    pub db: Db,
    pub dir: tempfile::TempDir,
    pub url: Option<String>,
}

pub fn fresh(engine: Engine) -> Fresh {
    let dir = tempfile::tempdir().unwrap();
    let (location, url) = match engine {
        Engine::Sqlite => (Location::of(None, dir.path()).unwrap(), None),
        Engine::Postgres => {
            let url = ohassist_tests::pg::cluster().fresh_database();
            (Location::of(Some(&url), dir.path()).unwrap(), Some(url))
        }
    };
    let db = Db::open_at(&location, dir.path()).unwrap();
    Fresh { db, dir, url }
}

impl Fresh {
    /// Another connection on the same database, as a second server process has (on SQLite
    /// it waits for the file's lock rather than failing at once).
    pub fn other_connection(&self, writer: bool) -> Connection {
        match &self.url {
            Some(url) => ohassist_tests::pg::connect(url, writer),
            None => {
                let c = rusqlite::Connection::open(self.dir.path().join("ohassist.db")).unwrap();
                c.busy_timeout(std::time::Duration::from_secs(20)).unwrap();
                Connection::from(c)
            }
        }
    }
}

pub const ENGINES: [Engine; 2] = [Engine::Sqlite, Engine::Postgres];
