//! API clients: read-only bearer tokens for the records export (a provincial platform, a
//! script), each with a name and an org unit that scopes it like a supervisor. They are not
//! users: they cannot log in, push, pull or use the admin endpoints (the token is refused
//! there as a role that may not, see `api::extract`). Only the token's SHA-256 is stored;
//! the token is shown once, when the client is created. Nothing here knows HTTP.

use crate::sql::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::accounts;
use crate::scope;

/// The only role an API client has: reads the export in its unit.
pub const READER: &str = "reader";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiClient {
    pub id: String,
    pub name: String,
    pub role: String,
    pub org_unit: String,
    pub created_by: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the name must be 1 to 100 characters")]
    Name,
    #[error("the org unit must be a 6-digit administrative division code")]
    OrgUnit,
    #[error("no such API client")]
    NoSuchClient,
    #[error(transparent)]
    Storage(#[from] crate::sql::Error),
}

/// Creates a client; returns it and its token (shown once).
pub fn create(
    conn: &Connection,
    name: &str,
    org_unit: &str,
    created_by: &str,
    now: i64,
) -> Result<(ApiClient, String), ClientError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ClientError::Name);
    }
    if !scope::is_division_code(org_unit) {
        return Err(ClientError::OrgUnit);
    }
    let (token, hash) = accounts::new_token();
    let id = uuid::Uuid::new_v4().simple().to_string();
    conn.execute(
        "INSERT INTO api_clients (id, name, role, org_unit, token_hash, created_by, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![id, name, READER, org_unit, hash, created_by, now],
    )?;
    let client = ApiClient {
        id,
        name: name.to_string(),
        role: READER.to_string(),
        org_unit: org_unit.to_string(),
        created_by: created_by.to_string(),
        created_at: now,
        revoked_at: None,
    };
    Ok((client, token))
}

const COLUMNS: &str = "id, name, role, org_unit, created_by, created_at, revoked_at";

fn row(r: &crate::sql::Row<'_>) -> crate::sql::Result<ApiClient> {
    Ok(ApiClient {
        id: r.get(0)?,
        name: r.get(1)?,
        role: r.get(2)?,
        org_unit: r.get(3)?,
        created_by: r.get(4)?,
        created_at: r.get(5)?,
        revoked_at: r.get(6)?,
    })
}

/// Clients whose unit lies inside `org_unit`, newest first.
pub fn list(conn: &Connection, org_unit: &str) -> crate::sql::Result<Vec<ApiClient>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM api_clients WHERE substr(org_unit, 1, length(?1)) = ?1 ORDER BY created_at DESC, id"
    ))?;
    let rows = stmt.query_map([scope::prefix(org_unit)], row)?;
    rows.collect()
}

/// Revokes a client: its token is refused from now on. Revoking twice keeps the first time.
pub fn revoke(conn: &Connection, id: &str, now: i64) -> Result<(), ClientError> {
    let n =
        conn.execute("UPDATE api_clients SET revoked_at = coalesce(revoked_at, ?2) WHERE id = ?1", params![id, now])?;
    if n == 0 {
        return Err(ClientError::NoSuchClient);
    }
    Ok(())
}

/// The live (not revoked) client a token hash belongs to.
pub fn by_token_hash(conn: &Connection, token_hash: &str) -> crate::sql::Result<Option<ApiClient>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM api_clients WHERE token_hash = ?1 AND revoked_at IS NULL"),
        [token_hash],
        row,
    )
    .optional()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;

    #[test]
    fn a_client_is_found_by_its_token_until_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_dir(dir.path()).unwrap();
        let conn = db.blocking_writer();
        let (client, token) = create(&conn, " 省平台 ", "210000", "cli", 100).unwrap();
        assert_eq!((client.name.as_str(), client.role.as_str()), ("省平台", READER));
        assert_eq!(token.len(), 64);
        let hash = accounts::token_hash(&token);
        assert_eq!(by_token_hash(&conn, &hash).unwrap().unwrap().id, client.id);
        assert_eq!(list(&conn, "210000").unwrap().len(), 1);
        assert!(list(&conn, "220000").unwrap().is_empty(), "another province's admin does not see it");
        revoke(&conn, &client.id, 200).unwrap();
        assert!(by_token_hash(&conn, &hash).unwrap().is_none());
        assert_eq!(list(&conn, "210000").unwrap()[0].revoked_at, Some(200));
        assert!(matches!(revoke(&conn, "nope", 300), Err(ClientError::NoSuchClient)));
        assert!(matches!(create(&conn, "", "210000", "cli", 1), Err(ClientError::Name)));
        assert!(matches!(create(&conn, "x", "2100", "cli", 1), Err(ClientError::OrgUnit)));
    }
}
