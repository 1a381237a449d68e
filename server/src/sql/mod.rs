//! The storage contract: one connection type over two engines, SQLite (rusqlite, the
//! embedded default) and PostgreSQL (tokio-postgres), with the small part of rusqlite's API
//! the domain uses — `execute`, `prepare_cached`, `query_row`, `query_map`, rows read by
//! column name, transactions, `params!`, `.optional()`.
//!
//! The domain's SQL is written once, in the dialect both engines share (numbered `?1`
//! parameters, `ON CONFLICT … DO UPDATE`, `substr`, integers for flags); this module
//! rewrites the parameters to `$1` for PostgreSQL and converts values both ways, so that a
//! query reads the same Rust types from either engine. ADR 0008 says why the contract is a
//! connection and a shared dialect, not a trait per concern with the SQL written twice.
//!
//! Engine-specific work (pragmas, `VACUUM INTO` for the backup, the feed's positions on
//! PostgreSQL) asks [`Connection::engine`] or [`Connection::sqlite`].

mod pg;
mod value;

use std::fmt;

pub use pg::PgUrl;
pub use value::{FromValue, OwnedValue, ToValue, Value, ValueRef};

/// The engine behind a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// What a statement can fail with, from either engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Sqlite(rusqlite::Error),
    #[error("PostgreSQL: {}", pg_message(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("the query returned no rows")]
    QueryReturnedNoRows,
    #[error("column {column}: a {found} value cannot be read as {wanted}")]
    FromValue { column: String, found: &'static str, wanted: &'static str },
    #[error("{0}")]
    Other(String),
}

/// The server's message and where, not only "db error".
fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => {
            format!("{} ({}){}", d.message(), d.code().code(), d.detail().map(|x| format!(": {x}")).unwrap_or_default())
        }
        None => e.to_string(),
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::QueryReturnedNoRows => Error::QueryReturnedNoRows,
            e => Error::Sqlite(e),
        }
    }
}

impl Error {
    /// A UNIQUE or PRIMARY KEY constraint refused the write, on either engine.
    pub fn is_unique_violation(&self) -> bool {
        match self {
            Error::Sqlite(rusqlite::Error::SqliteFailure(f, _)) => {
                matches!(
                    f.extended_code,
                    rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                )
            }
            Error::Postgres(e) => e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION),
            _ => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `query_row(…).optional()`: no row is `None`, as with rusqlite.
pub trait OptionalExtension<T> {
    fn optional(self) -> Result<Option<T>>;
}

impl<T> OptionalExtension<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(Error::QueryReturnedNoRows) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Positional parameters: `[a, b]`, `params![a, b]`, or `[]`.
pub trait Params {
    fn with<R>(self, f: impl FnOnce(&[&dyn ToValue]) -> R) -> R;
}

impl Params for &[&dyn ToValue] {
    fn with<R>(self, f: impl FnOnce(&[&dyn ToValue]) -> R) -> R {
        f(self)
    }
}

impl Params for [&dyn ToValue; 0] {
    fn with<R>(self, f: impl FnOnce(&[&dyn ToValue]) -> R) -> R {
        f(&[])
    }
}

impl Params for () {
    fn with<R>(self, f: impl FnOnce(&[&dyn ToValue]) -> R) -> R {
        f(&[])
    }
}

macro_rules! array_params {
    ($($n:literal)*) => {$(
        impl<T: ToValue> Params for [T; $n] {
            fn with<R>(self, f: impl FnOnce(&[&dyn ToValue]) -> R) -> R {
                let refs: [&dyn ToValue; $n] = std::array::from_fn(|i| &self[i] as &dyn ToValue);
                f(&refs)
            }
        }
        impl<T: ToValue> Params for &[T; $n] {
            fn with<R>(self, f: impl FnOnce(&[&dyn ToValue]) -> R) -> R {
                let refs: [&dyn ToValue; $n] = std::array::from_fn(|i| &self[i] as &dyn ToValue);
                f(&refs)
            }
        }
    )*};
}
array_params!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16);

/// `params![a, b, c]`: parameters of different types, by reference.
#[macro_export]
macro_rules! sql_params {
    () => { &[] as &[&dyn $crate::sql::ToValue] };
    ($($p:expr),+ $(,)?) => { &[$(&$p as &dyn $crate::sql::ToValue),+] as &[&dyn $crate::sql::ToValue] };
}
pub use crate::sql_params as params;

/// A row insert that may travel with others of its kind ([`Connection::insert_later`]):
/// `INSERT INTO {into} VALUES (?1, …) {tail}`, `columns` parameters a row, of which the first
/// `key` identify the row for an `ON CONFLICT … DO UPDATE` tail (0 for `DO NOTHING` or none).
pub struct Insert {
    into: &'static str,
    columns: usize,
    key: usize,
    tail: &'static str,
    one_row: std::sync::OnceLock<String>,
}

impl Insert {
    pub const fn new(into: &'static str, columns: usize, key: usize, tail: &'static str) -> Insert {
        Insert { into, columns, key, tail, one_row: std::sync::OnceLock::new() }
    }

    /// The statement inserting `rows` rows, in the shared dialect (`?N` parameters).
    pub fn sql(&self, rows: usize) -> String {
        let mut sql = format!("INSERT INTO {} VALUES ", self.into);
        for row in 0..rows {
            sql.push_str(if row == 0 { "(" } else { ", (" });
            for column in 0..self.columns {
                if column > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("?{}", row * self.columns + column + 1));
            }
            sql.push(')');
        }
        if !self.tail.is_empty() {
            sql.push(' ');
            sql.push_str(self.tail);
        }
        sql
    }

    fn one_row(&self) -> &str {
        self.one_row.get_or_init(|| self.sql(1))
    }
}

/// How a transaction starts. `Immediate` takes the write lock at once (SQLite's `BEGIN
/// IMMEDIATE`); on PostgreSQL every transaction of a writer connection takes the feed's lock
/// at `BEGIN` (see [`pg`]), whichever is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionBehavior {
    Deferred,
    Immediate,
}

/// A connection to the county database, on either engine.
pub struct Connection {
    inner: Inner,
}

enum Inner {
    Sqlite(rusqlite::Connection),
    Postgres(pg::Client),
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Connection({:?})", self.engine())
    }
}

impl From<rusqlite::Connection> for Connection {
    fn from(c: rusqlite::Connection) -> Self {
        Connection { inner: Inner::Sqlite(c) }
    }
}

impl Connection {
    /// Opens a PostgreSQL connection; a writer's transactions take the feed's lock.
    pub fn postgres(url: &PgUrl, writer: bool) -> Result<Connection> {
        Ok(Connection { inner: Inner::Postgres(pg::Client::connect(url, writer)?) })
    }

    pub fn engine(&self) -> Engine {
        match self.inner {
            Inner::Sqlite(_) => Engine::Sqlite,
            Inner::Postgres(_) => Engine::Postgres,
        }
    }

    /// The SQLite connection, for the work only SQLite has (pragmas, the online backup).
    pub fn sqlite(&self) -> Option<&rusqlite::Connection> {
        match &self.inner {
            Inner::Sqlite(c) => Some(c),
            Inner::Postgres(_) => None,
        }
    }

    pub fn sqlite_mut(&mut self) -> Option<&mut rusqlite::Connection> {
        match &mut self.inner {
            Inner::Sqlite(c) => Some(c),
            Inner::Postgres(_) => None,
        }
    }

    pub fn execute<P: Params>(&self, sql: &str, params: P) -> Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    /// [`Statement::execute_later`] of `sql`.
    pub fn execute_later<P: Params>(&self, sql: &str, params: P) -> Result<()> {
        self.prepare_cached(sql)?.execute_later(params)
    }

    /// Inserts a row of `insert`, where any error ends the transaction (as
    /// [`Statement::execute_later`]). SQLite runs it now. PostgreSQL keeps it with the other
    /// rows of its kind and sends them as multi-row statements before the next other statement
    /// on the connection: one statement carries up to 256 rows, each of which executed alone
    /// costs PostgreSQL several times its share. A kind's rows go in the order they came, the
    /// kinds in the order they were first used since the last other statement: a row may
    /// reference a row of its own kind kept before it, or of a kind first used before its
    /// own (a document, then its feed entries), not the other way round. A row whose key a
    /// kept row of its kind already has sends those first (a statement may not update one
    /// row twice).
    pub fn insert_later<P: Params>(&self, insert: &'static Insert, params: P) -> Result<()> {
        match &self.inner {
            Inner::Sqlite(_) => self.prepare_cached(insert.one_row())?.execute(params).map(drop),
            Inner::Postgres(c) => params.with(|v| {
                if v.len() != insert.columns {
                    return Err(Error::Other(format!(
                        "{} values for an insert of {} columns into {}",
                        v.len(),
                        insert.columns,
                        insert.into
                    )));
                }
                c.insert_later(insert, v)
            }),
        }
    }

    /// Statements separated by `;`, without parameters.
    pub fn execute_batch(&self, sql: &str) -> Result<()> {
        match &self.inner {
            Inner::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Inner::Postgres(c) => c.batch(sql),
        }
    }

    pub fn prepare(&self, sql: &str) -> Result<Statement<'_>> {
        match &self.inner {
            Inner::Sqlite(c) => Ok(Statement { inner: Stmt::SqliteOwned(c.prepare(sql)?) }),
            Inner::Postgres(c) => Ok(Statement { inner: Stmt::Postgres(c, c.prepare(sql)?) }),
        }
    }

    pub fn prepare_cached(&self, sql: &str) -> Result<Statement<'_>> {
        match &self.inner {
            Inner::Sqlite(c) => Ok(Statement { inner: Stmt::Sqlite(c.prepare_cached(sql)?) }),
            Inner::Postgres(c) => Ok(Statement { inner: Stmt::Postgres(c, c.prepare(sql)?) }),
        }
    }

    pub fn query_row<T, P: Params, F: FnOnce(&Row<'_>) -> Result<T>>(&self, sql: &str, params: P, f: F) -> Result<T> {
        self.prepare_cached(sql)?.query_row(params, f)
    }

    pub fn transaction(&mut self) -> Result<Transaction<'_>> {
        self.transaction_with_behavior(TransactionBehavior::Deferred)
    }

    pub fn transaction_with_behavior(&mut self, behavior: TransactionBehavior) -> Result<Transaction<'_>> {
        Transaction::begin(self, behavior)
    }

    /// A transaction over a shared reference (rusqlite's `unchecked_transaction`): the
    /// caller makes sure no other transaction is open on this connection.
    pub fn unchecked_transaction(&self) -> Result<Transaction<'_>> {
        Transaction::begin(self, TransactionBehavior::Deferred)
    }
}

/// An open transaction; rolled back when dropped without [`Transaction::commit`].
pub struct Transaction<'c> {
    conn: &'c Connection,
    done: bool,
}

impl<'c> Transaction<'c> {
    fn begin(conn: &'c Connection, behavior: TransactionBehavior) -> Result<Transaction<'c>> {
        match &conn.inner {
            Inner::Sqlite(c) => c.execute_batch(match behavior {
                TransactionBehavior::Deferred => "BEGIN DEFERRED",
                TransactionBehavior::Immediate => "BEGIN IMMEDIATE",
            })?,
            Inner::Postgres(c) => c.begin()?,
        }
        Ok(Transaction { conn, done: false })
    }

    pub fn commit(mut self) -> Result<()> {
        self.done = true;
        self.conn.execute_batch("COMMIT")
    }

    pub fn rollback(mut self) -> Result<()> {
        self.done = true;
        self.conn.execute_batch("ROLLBACK")
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

impl std::ops::Deref for Transaction<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
    }
}

/// A prepared statement.
pub struct Statement<'c> {
    inner: Stmt<'c>,
}

enum Stmt<'c> {
    Sqlite(rusqlite::CachedStatement<'c>),
    SqliteOwned(rusqlite::Statement<'c>),
    Postgres(&'c pg::Client, tokio_postgres::Statement),
}

fn sqlite_params<'a>(values: &'a [&'a dyn ToValue]) -> impl Iterator<Item = value::SqliteParam<'a>> + 'a {
    values.iter().map(|v| value::SqliteParam(*v))
}

impl<'c> Statement<'c> {
    fn sqlite(&mut self) -> Option<&mut rusqlite::Statement<'c>> {
        match &mut self.inner {
            Stmt::Sqlite(s) => Some(s),
            Stmt::SqliteOwned(s) => Some(s),
            Stmt::Postgres(..) => None,
        }
    }

    pub fn execute<P: Params>(&mut self, params: P) -> Result<usize> {
        if let Some(s) = self.sqlite() {
            return params.with(|v| Ok(s.execute(rusqlite::params_from_iter(sqlite_params(v)))?));
        }
        let Stmt::Postgres(c, s) = &self.inner else { unreachable!() };
        params.with(|v| c.execute(s, v))
    }

    /// A write whose row count nobody reads, where any error ends the transaction: SQLite
    /// runs it now; PostgreSQL sends it now and reads its answer at the next statement on the
    /// connection, which answers with this one's error if it failed (see `pg.rs`). Not for a
    /// statement whose error is handled (a unique violation read as "exists").
    pub fn execute_later<P: Params>(&mut self, params: P) -> Result<()> {
        if let Some(s) = self.sqlite() {
            return params.with(|v| Ok(s.execute(rusqlite::params_from_iter(sqlite_params(v))).map(drop)?));
        }
        let Stmt::Postgres(c, s) = &self.inner else { unreachable!() };
        params.with(|v| c.execute_later(s, v))
    }

    pub fn query<P: Params>(&mut self, params: P) -> Result<Rows<'_>> {
        if let Stmt::Postgres(c, s) = &self.inner {
            let (c, s) = (*c, s.clone());
            return params.with(|v| Ok(Rows { inner: RowsInner::Postgres(c.query(&s, v)?, None) }));
        }
        let s = self.sqlite().expect("a SQLite statement");
        params.with(|v| Ok(Rows { inner: RowsInner::Sqlite(s.query(rusqlite::params_from_iter(sqlite_params(v)))?) }))
    }

    pub fn query_map<T, P: Params, F: FnMut(&Row<'_>) -> Result<T>>(
        &mut self,
        params: P,
        f: F,
    ) -> Result<MappedRows<'_, F>> {
        Ok(MappedRows { rows: self.query(params)?, f })
    }

    pub fn query_row<T, P: Params, F: FnOnce(&Row<'_>) -> Result<T>>(&mut self, params: P, f: F) -> Result<T> {
        let mut rows = self.query(params)?;
        match rows.next()? {
            Some(r) => f(&r),
            None => Err(Error::QueryReturnedNoRows),
        }
    }

    pub fn exists<P: Params>(&mut self, params: P) -> Result<bool> {
        Ok(self.query(params)?.next()?.is_some())
    }
}

/// The rows of a query, read one at a time (PostgreSQL's stream them too).
pub struct Rows<'s> {
    inner: RowsInner<'s>,
}

enum RowsInner<'s> {
    Sqlite(rusqlite::Rows<'s>),
    Postgres(pg::RowStream, Option<tokio_postgres::Row>),
}

impl Rows<'_> {
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Row<'_>>> {
        match &mut self.inner {
            RowsInner::Sqlite(rows) => Ok(rows.next()?.map(|r| Row { inner: RowInner::Sqlite(r) })),
            RowsInner::Postgres(stream, current) => {
                *current = stream.next()?;
                Ok(current.as_ref().map(|r| Row { inner: RowInner::Postgres(r) }))
            }
        }
    }
}

/// `query_map`'s rows, each through the closure.
pub struct MappedRows<'s, F> {
    rows: Rows<'s>,
    f: F,
}

impl<T, F: FnMut(&Row<'_>) -> Result<T>> Iterator for MappedRows<'_, F> {
    type Item = Result<T>;
    fn next(&mut self) -> Option<Result<T>> {
        let f = &mut self.f;
        match self.rows.next() {
            Ok(Some(r)) => Some(f(&r)),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

/// One row.
pub struct Row<'r> {
    inner: RowInner<'r>,
}

enum RowInner<'r> {
    Sqlite(&'r rusqlite::Row<'r>),
    Postgres(&'r tokio_postgres::Row),
}

/// A column by position (from 0) or by name.
pub trait ColumnIndex: Copy + fmt::Display {
    fn sqlite_value<'r>(self, row: &'r rusqlite::Row<'_>) -> rusqlite::Result<rusqlite::types::ValueRef<'r>>;
    fn pg_index(self, row: &tokio_postgres::Row) -> Option<usize>;
}

impl ColumnIndex for usize {
    fn sqlite_value<'r>(self, row: &'r rusqlite::Row<'_>) -> rusqlite::Result<rusqlite::types::ValueRef<'r>> {
        row.get_ref(self)
    }
    fn pg_index(self, row: &tokio_postgres::Row) -> Option<usize> {
        (self < row.len()).then_some(self)
    }
}

impl ColumnIndex for &str {
    fn sqlite_value<'r>(self, row: &'r rusqlite::Row<'_>) -> rusqlite::Result<rusqlite::types::ValueRef<'r>> {
        row.get_ref(self)
    }
    fn pg_index(self, row: &tokio_postgres::Row) -> Option<usize> {
        row.columns().iter().position(|c| c.name() == self)
    }
}

impl Row<'_> {
    pub fn get<I: ColumnIndex, T: FromValue>(&self, idx: I) -> Result<T> {
        let wrong = |found| Error::FromValue { column: idx.to_string(), found, wanted: std::any::type_name::<T>() };
        match &self.inner {
            RowInner::Sqlite(r) => {
                let v = ValueRef::from(idx.sqlite_value(r)?);
                T::from_value(v).map_err(wrong)
            }
            RowInner::Postgres(r) => {
                let i = idx.pg_index(r).ok_or_else(|| Error::Other(format!("no column {idx}")))?;
                let raw: value::PgRaw = r.try_get(i)?;
                let v = raw.value().map_err(|e| Error::Other(format!("column {idx}: {e}")))?;
                T::from_value(v).map_err(wrong)
            }
        }
    }
}
