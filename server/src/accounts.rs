//! Users, devices and their tokens: the SQL behind login, the admin endpoints and the
//! `user`/`device` commands. Passwords are stored as argon2id hashes, tokens as SHA-256.
//! Nothing here knows HTTP; callers decide what a missing user means to a client.

use crate::sql::{params, Connection, OptionalExtension};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::scope;

pub use ohassist_core::sync::wire::DeviceStatus;

/// How long a device token lives.
pub const TOKEN_LIFETIME_SECS: i64 = 90 * 24 * 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Inspector,
    Supervisor,
    Admin,
    /// A lower server (a county server relaying to this city server): pushes and pulls like a
    /// device, in its unit, and reports who wrote each change it relays; never opens the console.
    Relay,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Inspector => "inspector",
            Role::Supervisor => "supervisor",
            Role::Admin => "admin",
            Role::Relay => "relay",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "inspector" => Some(Role::Inspector),
            "supervisor" => Some(Role::Supervisor),
            "admin" => Some(Role::Admin),
            "relay" => Some(Role::Relay),
            _ => None,
        }
    }

    /// Inspectors record visits; admins may too (a county often has one person for both).
    /// Supervisors only read. A relay pushes what its server's phones and console wrote.
    pub fn may_push(self) -> bool {
        matches!(self, Role::Inspector | Role::Admin | Role::Relay)
    }

    /// Supervisors and admins use the console (and its read-only JSON API); inspectors and
    /// relays do not.
    pub fn uses_console(self) -> bool {
        matches!(self, Role::Supervisor | Role::Admin)
    }

    /// The role for people, Chinese first.
    pub fn label(self) -> (&'static str, &'static str) {
        match self {
            Role::Inspector => ("检查员", "inspector"),
            Role::Supervisor => ("监管人员", "supervisor"),
            Role::Admin => ("管理员", "admin"),
            Role::Relay => ("下级服务器（中继）", "Lower server (relay)"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct User {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub org_unit: String,
    pub created_at: i64,
    pub disabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Device {
    pub id: String,
    pub user_id: String,
    pub username: String,
    pub name: String,
    pub created_at: i64,
    pub last_seen: Option<i64>,
    pub revoked_at: Option<i64>,
    pub expires_at: Option<i64>,
    /// Holds a token that is neither expired nor logged out.
    pub logged_in: bool,
    /// `active`, `lost` or `retired`, as an admin set it.
    pub status: DeviceStatus,
    pub status_changed_at: Option<i64>,
    /// What the device reported it still holds unsynced at its last sync (`None`: never reported).
    pub pending_changes: Option<i64>,
    pub pending_attachments: Option<i64>,
    pub reported_at: Option<i64>,
}

impl Device {
    /// Whether the phone last said it holds changes or attachments the server does not have.
    pub fn holds_unsynced(&self) -> bool {
        self.pending_changes.unwrap_or(0) > 0 || self.pending_attachments.unwrap_or(0) > 0
    }
}

/// The authenticated caller of a request, as the token names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: String,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub org_unit: String,
    pub device_id: String,
    pub last_seen: Option<i64>,
    /// When the device last finished a pull (`None`: never, or the console).
    pub synced_at: Option<i64>,
}

/// Why a user could not be created or changed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("the username must be 1 to 64 letters, digits, '.', '_' or '-'")]
    Username,
    #[error("the display name must be 1 to 100 characters")]
    DisplayName,
    #[error("the org unit must be a 6-digit administrative division code")]
    OrgUnit,
    #[error("the password must be at least 8 characters")]
    WeakPassword,
    #[error("a user with this username already exists")]
    UsernameTaken,
    #[error("no such user")]
    NoSuchUser,
    #[error("no such device")]
    NoSuchDevice,
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error(transparent)]
    Storage(#[from] crate::sql::Error),
}

impl AccountError {
    /// The field a refused value came in, for the form or body that sent it.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            AccountError::Username | AccountError::UsernameTaken => Some("username"),
            AccountError::DisplayName => Some("display_name"),
            AccountError::OrgUnit => Some("org_unit"),
            AccountError::WeakPassword => Some("password"),
            AccountError::NoSuchUser
            | AccountError::NoSuchDevice
            | AccountError::Hash(_)
            | AccountError::Storage(_) => None,
        }
    }

    /// What the user is told, in Chinese (the English is the `Display`).
    pub fn message_zh(&self) -> String {
        match self {
            AccountError::Username => "用户名须为 1–64 位字母、数字或 . _ -",
            AccountError::DisplayName => "姓名须为 1–100 个字符",
            AccountError::OrgUnit => "所属单位须为 6 位行政区划代码",
            AccountError::WeakPassword => "密码至少 8 位",
            AccountError::UsernameTaken => "用户名已存在",
            AccountError::NoSuchUser => "用户不存在",
            AccountError::NoSuchDevice => "设备不存在",
            AccountError::Hash(_) | AccountError::Storage(_) => "服务器内部错误，请稍后再试",
        }
        .to_string()
    }
}

pub const MIN_PASSWORD_CHARS: usize = 8;

/// An argon2id hash (PHC string) of `password`. Slow on purpose: call on a blocking thread.
pub fn hash_password(password: &str) -> Result<String, AccountError> {
    let salt =
        SaltString::encode_b64(&rand::rng().random::<[u8; 16]>()).map_err(|e| AccountError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AccountError::Hash(e.to_string()))
}

/// Checks `password` against a stored hash. Slow on purpose: call on a blocking thread.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// A hash no password matches, verified against for unknown users so that they take as
/// long to refuse as a wrong password.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&generate_password()).expect("hashing a random password"))
}

/// A random password of 16 characters without look-alikes (no 0/O, 1/l/I), for reading aloud.
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..16).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

/// A fresh bearer token (64 hex characters, 32 random bytes) and the hash to store.
pub fn new_token() -> (String, String) {
    let token = hex::encode(rand::rng().random::<[u8; 32]>());
    let hash = token_hash(&token);
    (token, hash)
}

pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn valid_username(u: &str) -> bool {
    !u.is_empty() && u.len() <= 64 && u.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

pub struct NewUser<'a> {
    pub username: &'a str,
    pub display_name: &'a str,
    pub role: Role,
    pub org_unit: &'a str,
    pub password: &'a str,
}

/// Creates a user. Hashes the password, so call on a blocking thread.
pub fn create_user(conn: &Connection, new: &NewUser<'_>, now: i64) -> Result<User, AccountError> {
    if !valid_username(new.username) {
        return Err(AccountError::Username);
    }
    let display_chars = new.display_name.trim().chars().count();
    if display_chars == 0 || display_chars > 100 {
        return Err(AccountError::DisplayName);
    }
    if !scope::is_division_code(new.org_unit) {
        return Err(AccountError::OrgUnit);
    }
    if new.password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(AccountError::WeakPassword);
    }
    if find_user(conn, new.username)?.is_some() {
        return Err(AccountError::UsernameTaken);
    }
    let hash = hash_password(new.password)?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    conn.execute(
        "INSERT INTO users (id, username, display_name, role, org_unit, password_hash, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![id, new.username, new.display_name.trim(), new.role.as_str(), new.org_unit, hash, now],
    )?;
    Ok(User {
        id,
        username: new.username.to_string(),
        display_name: new.display_name.trim().to_string(),
        role: new.role,
        org_unit: new.org_unit.to_string(),
        created_at: now,
        disabled: false,
    })
}

/// Sets a user's password and logs every device of theirs out.
pub fn set_password(conn: &mut Connection, username: &str, password: &str) -> Result<(), AccountError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(AccountError::WeakPassword);
    }
    let user = find_user(conn, username)?.ok_or(AccountError::NoSuchUser)?;
    let hash = hash_password(password)?;
    let tx = conn.transaction()?;
    tx.execute("UPDATE users SET password_hash = ?1 WHERE id = ?2", params![hash, user.0.id])?;
    tx.execute("UPDATE devices SET token_hash = NULL WHERE user_id = ?1", params![user.0.id])?;
    tx.commit()?;
    Ok(())
}

/// Moves a user to another org unit (an inspector who now works for another county). Their
/// devices stay logged in; what a phone of theirs pushes from then on is checked against the
/// new unit, and what it holds of the old one is refused and held, not lost.
pub fn set_org_unit(conn: &Connection, username: &str, org_unit: &str) -> Result<(), AccountError> {
    if !scope::is_division_code(org_unit) {
        return Err(AccountError::OrgUnit);
    }
    let n = conn.execute("UPDATE users SET org_unit = ?1 WHERE username = ?2", params![org_unit, username])?;
    if n == 0 {
        return Err(AccountError::NoSuchUser);
    }
    Ok(())
}

const USER_COLUMNS: &str = "id, username, display_name, role, org_unit, created_at, disabled";

fn user_row(r: &crate::sql::Row<'_>) -> crate::sql::Result<User> {
    let role: String = r.get("role")?;
    Ok(User {
        id: r.get("id")?,
        username: r.get("username")?,
        display_name: r.get("display_name")?,
        // The CHECK constraint makes any other value impossible.
        role: Role::parse(&role).unwrap_or(Role::Supervisor),
        org_unit: r.get("org_unit")?,
        created_at: r.get("created_at")?,
        disabled: r.get("disabled")?,
    })
}

/// The user's columns of a [`Caller`], in a query that joins `users u`: read by
/// [`caller_user`], for a token's caller and a console session's alike.
pub const CALLER_USER_COLUMNS: &str = "u.id AS user_id, u.username, u.display_name, u.role, u.org_unit";

/// The user's part of a [`Caller`] from a row with [`CALLER_USER_COLUMNS`]; the device's
/// fields are empty, for the caller of this function to fill.
pub fn caller_user(r: &crate::sql::Row<'_>) -> crate::sql::Result<Caller> {
    let role: String = r.get("role")?;
    Ok(Caller {
        user_id: r.get("user_id")?,
        username: r.get("username")?,
        display_name: r.get("display_name")?,
        // The CHECK constraint makes any other value impossible; the least privilege if not.
        role: Role::parse(&role).unwrap_or(Role::Inspector),
        org_unit: r.get("org_unit")?,
        device_id: String::new(),
        last_seen: None,
        synced_at: None,
    })
}

/// A user and their password hash, by username (case-insensitive).
pub fn find_user(conn: &Connection, username: &str) -> crate::sql::Result<Option<(User, String)>> {
    conn.query_row(&format!("SELECT {USER_COLUMNS}, password_hash FROM users WHERE username = ?1"), [username], |r| {
        Ok((user_row(r)?, r.get("password_hash")?))
    })
    .optional()
}

pub fn count_users(conn: &Connection) -> crate::sql::Result<i64> {
    conn.query_row("SELECT count(*) FROM users", [], |r| r.get(0))
}

/// Users whose org unit lies inside `org_unit`, by username.
pub fn list_users(conn: &Connection, org_unit: &str) -> crate::sql::Result<Vec<User>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE {} ORDER BY username",
        scope::sql("org_unit", "?1")
    ))?;
    let rows = stmt.query_map([scope::prefix(org_unit)], user_row)?;
    rows.collect()
}

/// Devices of users inside `org_unit`, most recently seen first.
pub fn list_devices(conn: &Connection, org_unit: &str, now: i64) -> crate::sql::Result<Vec<Device>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT d.id, d.user_id, u.username, d.name, d.created_at, d.last_seen, d.revoked_at, d.expires_at,
                d.token_hash IS NOT NULL AND d.revoked_at IS NULL AND d.expires_at > ?2,
                d.status, d.status_changed_at, d.pending_changes, d.pending_attachments, d.reported_at
         FROM devices d JOIN users u ON u.id = d.user_id
         WHERE {}
         ORDER BY d.last_seen DESC NULLS LAST, d.id",
        scope::sql("u.org_unit", "?1")
    ))?;
    let rows = stmt.query_map(params![scope::prefix(org_unit), now], |r| {
        Ok(Device {
            id: r.get(0)?,
            user_id: r.get(1)?,
            username: r.get(2)?,
            name: r.get(3)?,
            created_at: r.get(4)?,
            last_seen: r.get(5)?,
            revoked_at: r.get(6)?,
            expires_at: r.get(7)?,
            logged_in: r.get(8)?,
            status: DeviceStatus::parse(&r.get::<_, String>(9)?).unwrap_or(DeviceStatus::Active),
            status_changed_at: r.get(10)?,
            pending_changes: r.get(11)?,
            pending_attachments: r.get(12)?,
            reported_at: r.get(13)?,
        })
    })?;
    rows.collect()
}

/// The org unit of the user owning `device_id`, if the device exists.
pub fn device_owner_unit(conn: &Connection, device_id: &str) -> crate::sql::Result<Option<String>> {
    conn.query_row(
        "SELECT u.org_unit FROM devices d JOIN users u ON u.id = d.user_id WHERE d.id = ?1",
        [device_id],
        |r| r.get(0),
    )
    .optional()
}

/// Revokes a device: its token stops working at once and it cannot log in again.
pub fn revoke_device(conn: &Connection, device_id: &str, now: i64) -> Result<(), AccountError> {
    let n = conn.execute(
        "UPDATE devices SET token_hash = NULL, revoked_at = coalesce(revoked_at, ?2) WHERE id = ?1",
        params![device_id, now],
    )?;
    if n == 0 {
        return Err(AccountError::NoSuchDevice);
    }
    Ok(())
}

/// Marks a device lost or retired (or active again). A lost device keeps its token, so that
/// it is recognised and told to erase itself when it next reaches the server.
pub fn set_device_status(
    conn: &Connection,
    device_id: &str,
    status: DeviceStatus,
    now: i64,
) -> Result<(), AccountError> {
    let n = conn.execute(
        "UPDATE devices SET status = ?2, status_changed_at = ?3 WHERE id = ?1",
        params![device_id, status.as_str(), now],
    )?;
    if n == 0 {
        return Err(AccountError::NoSuchDevice);
    }
    Ok(())
}

/// The status of `device_id`, if the device exists.
pub fn device_status(conn: &Connection, device_id: &str) -> crate::sql::Result<Option<DeviceStatus>> {
    Ok(conn
        .query_row("SELECT status FROM devices WHERE id = ?1", [device_id], |r| r.get::<_, String>(0))
        .optional()?
        .and_then(|s| DeviceStatus::parse(&s)))
}

/// Records what a device reports it still holds unsynced (also its last contact).
pub fn record_report(
    conn: &Connection,
    device_id: &str,
    pending_changes: u64,
    pending_attachments: u64,
    now: i64,
) -> crate::sql::Result<()> {
    conn.execute(
        "UPDATE devices SET pending_changes = ?2, pending_attachments = ?3, reported_at = ?4, last_seen = ?4
         WHERE id = ?1",
        params![device_id, pending_changes as i64, pending_attachments as i64, now],
    )?;
    Ok(())
}

/// True when `device_id` exists and has been revoked.
pub fn is_revoked(conn: &Connection, device_id: &str) -> crate::sql::Result<bool> {
    Ok(conn
        .query_row("SELECT revoked_at IS NOT NULL FROM devices WHERE id = ?1", [device_id], |r| r.get(0))
        .optional()?
        .unwrap_or(false))
}

/// The user a device is bound to by a live login (a token not logged out, not expired).
pub fn device_binding(conn: &Connection, device_id: &str) -> crate::sql::Result<Option<String>> {
    conn.query_row(
        "SELECT user_id FROM devices WHERE id = ?1 AND token_hash IS NOT NULL AND expires_at > ?2",
        params![device_id, crate::db::now()],
        |r| r.get(0),
    )
    .optional()
}

/// Binds a new token to `(user, device)`, replacing the device's previous token (and its
/// previous user, when somebody else logs in on the same phone after the first logged out).
pub fn issue_token(
    conn: &Connection,
    user_id: &str,
    device_id: &str,
    device_name: &str,
    token_hash: &str,
    now: i64,
) -> crate::sql::Result<i64> {
    let expires_at = now + TOKEN_LIFETIME_SECS;
    conn.execute(
        "INSERT INTO devices (id, user_id, name, token_hash, created_at, last_seen, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6)
         ON CONFLICT (id) DO UPDATE SET user_id = ?2, name = ?3, token_hash = ?4, last_seen = ?5, expires_at = ?6",
        params![device_id, user_id, device_name, token_hash, now, expires_at],
    )?;
    Ok(expires_at)
}

/// The caller a token belongs to, if it is live: known, not logged out, not revoked, not
/// expired, and its user not disabled; with the status of its device, which the caller of
/// this function must act on (a lost device is still found, so that it can be told).
pub fn caller_by_token(
    conn: &Connection,
    token_hash: &str,
    now: i64,
) -> crate::sql::Result<Option<(Caller, DeviceStatus)>> {
    conn.query_row(
        &format!(
            "SELECT {CALLER_USER_COLUMNS}, d.id AS device_id, d.last_seen, d.status, d.synced_at
             FROM devices d JOIN users u ON u.id = d.user_id
             WHERE d.token_hash = ?1 AND d.revoked_at IS NULL AND d.expires_at > ?2 AND u.disabled = 0"
        ),
        params![token_hash, now],
        |r| {
            let caller = Caller {
                device_id: r.get("device_id")?,
                last_seen: r.get("last_seen")?,
                synced_at: r.get("synced_at")?,
                ..caller_user(r)?
            };
            let status: String = r.get("status")?;
            Ok((caller, DeviceStatus::parse(&status).unwrap_or(DeviceStatus::Active)))
        },
    )
    .optional()
}

/// Records that the device finished a pull at `now`: the start of its next offline gap.
pub fn mark_synced(conn: &Connection, device_id: &str, now: i64) -> crate::sql::Result<()> {
    conn.execute("UPDATE devices SET synced_at = ?2 WHERE id = ?1", params![device_id, now])?;
    Ok(())
}

pub fn touch_device(conn: &Connection, device_id: &str, now: i64) -> crate::sql::Result<()> {
    conn.execute("UPDATE devices SET last_seen = ?2 WHERE id = ?1", params![device_id, now])?;
    Ok(())
}

/// Logs a device out: forgets its token.
pub fn clear_token(conn: &Connection, device_id: &str) -> crate::sql::Result<()> {
    conn.execute("UPDATE devices SET token_hash = NULL WHERE id = ?1", [device_id])?;
    Ok(())
}
