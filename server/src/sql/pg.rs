//! The PostgreSQL side of the contract, over tokio-postgres.
//!
//! The domain is synchronous (it runs on tokio's blocking threads, as SQLite's calls must),
//! so each call here drives its future to completion on the calling thread, while the
//! connections' socket tasks run on a small runtime of their own: the same blocking calls
//! work from a handler's blocking task and from a command-line tool without a runtime.
//!
//! **The feed's positions.** `changes.seq` is a sequence, and two server processes can
//! write at once. A pull reads the feed past a cursor, so a change that took position 7 and
//! committed after position 8 was read would be skipped for good. Every transaction of a
//! writer connection therefore takes one transaction-scoped advisory lock at `BEGIN`
//! ([`FEED_LOCK`]), and the `changes` table's statement trigger takes it too before the
//! column's default draws the position (migrations `postgres/001_init.sql`, `003`):
//! positions are handed out in the order the transactions commit, across processes (ADR 0008).
//!
//! **Writes sent ahead.** A round trip to PostgreSQL costs ~100 µs on this machine, and a
//! push writes half a dozen rows per record. [`Client::execute_later`] sends a statement and
//! leaves its answer to be read at the next call that needs the connection (any other
//! statement, `COMMIT`), so the writes of a push travel in a pipeline: measured, 16 µs a
//! statement instead of 115. The first error of the statements sent ahead is that next
//! call's error; the domain uses them only where any database error ends the whole
//! transaction (the push's writes), never where it reads an error (a unique violation).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use futures_util::StreamExt;
use tokio_postgres::{NoTls, Statement};

use super::value::{OwnedValue, PgParam};
use super::{Error, Insert, Result, ToValue};

/// Statements sent ahead and not yet answered, oldest first.
type Pending = Pin<Box<dyn Future<Output = std::result::Result<(), tokio_postgres::Error>> + Send>>;

/// Most statements sent ahead before their answers are read (a bound on what waits in memory).
const MAX_PENDING: usize = 256;

/// Most rows one multi-row insert carries ([`Client::insert_later`]); a statement is
/// prepared once per power of two up to it.
const MAX_ROWS: usize = 256;

/// Rows kept for one multi-row insert ([`Client::insert_later`]).
struct Kept {
    insert: &'static Insert,
    /// `insert.columns` values a row, rows in order.
    values: Vec<OwnedValue>,
    /// The keys of the rows kept (their first `insert.key` values).
    keys: HashSet<String>,
}

/// The advisory lock that orders the change feed (any constant; "ohfd").
pub const FEED_LOCK: i64 = 0x6f68_6664;

/// A `postgres://` (or `postgresql://`) connection URL, as given with `--database`.
#[derive(Clone, PartialEq, Eq)]
pub struct PgUrl(String);

impl PgUrl {
    /// `None` unless `s` names a PostgreSQL database.
    pub fn parse(s: &str) -> Option<PgUrl> {
        (s.starts_with("postgres://") || s.starts_with("postgresql://")).then(|| PgUrl(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Shown without its password.
impl fmt::Display for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.0;
        match (s.find("://"), s.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                let userinfo = &s[scheme + 3..at];
                let user = userinfo.split(':').next().unwrap_or("");
                write!(f, "{}{}{}", &s[..scheme + 3], user, &s[at..])
            }
            _ => f.write_str(s),
        }
    }
}

impl fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PgUrl({self})")
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("ohassist-postgres")
            .enable_all()
            .build()
            .expect("the PostgreSQL runtime starts")
    })
}

/// Runs `f` to completion here. From a thread of an async runtime (a handler that forgot
/// its blocking task) it steps out of the runtime first rather than stall a worker.
fn wait<F: Future>(f: F) -> F::Output {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| runtime().block_on(f))
        }
        _ => runtime().block_on(f),
    }
}

pub struct Client {
    client: Arc<tokio_postgres::Client>,
    writer: bool,
    /// Prepared statements by their SQLite text, as `prepare_cached` keeps them.
    cache: RefCell<HashMap<String, Statement>>,
    /// Statements sent by [`Client::execute_later`] whose answers are still to be read.
    pending: RefCell<Vec<Pending>>,
    /// Rows of [`Client::insert_later`] not sent yet, kinds in the order first used.
    kept: RefCell<Vec<Kept>>,
}

impl Client {
    pub fn connect(url: &PgUrl, writer: bool) -> Result<Client> {
        let (client, connection) = wait(tokio_postgres::connect(url.as_str(), NoTls))?;
        runtime().spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "PostgreSQL connection ended");
            }
        });
        let client = Client {
            client: Arc::new(client),
            writer,
            cache: RefCell::new(HashMap::new()),
            pending: RefCell::default(),
            kept: RefCell::default(),
        };
        // Integers and text behave as on SQLite: UTC, UTF-8, no surprises from the server's
        // settings.
        client.batch("SET TIME ZONE 'UTC'; SET client_encoding = 'UTF8'")?;
        Ok(client)
    }

    /// Statements separated by `;`. Sent even when a statement sent ahead failed (so that a
    /// `ROLLBACK` always reaches the server, and a `COMMIT` after a failure ends the aborted
    /// transaction), and then that failure is the answer.
    pub fn batch(&self, sql: &str) -> Result<()> {
        let earlier = self.flush();
        let this = wait(self.client.batch_execute(sql));
        earlier?;
        Ok(this?)
    }

    /// Sends `statement` now and reads its answer later, at the next call on this connection
    /// (or [`Client::flush`]), which answers with the first error of those sent ahead.
    pub fn execute_later(&self, statement: &Statement, values: &[&dyn ToValue]) -> Result<()> {
        self.send_kept(true)?;
        self.send(statement, values.iter().map(|v| OwnedValue::from(v.to_value())).collect())
    }

    /// Keeps a row of `insert` to be sent with the others of its kind, before the next other
    /// statement (see `Connection::insert_later`). The caller checked the number of values.
    pub fn insert_later(&self, insert: &'static Insert, values: &[&dyn ToValue]) -> Result<()> {
        let owned: Vec<OwnedValue> = values.iter().map(|v| OwnedValue::from(v.to_value())).collect();
        let key = (insert.key > 0).then(|| format!("{:?}", &owned[..insert.key]));
        let at = self.kept.borrow().iter().position(|k| std::ptr::eq(k.insert, insert));
        // A row whose key is kept already: what is kept goes first, then this row alone.
        let repeated = match (at, &key) {
            (Some(i), Some(key)) => self.kept.borrow()[i].keys.contains(key),
            _ => false,
        };
        if repeated {
            self.send_kept(false)?;
        }
        let full = {
            let mut kept = self.kept.borrow_mut();
            let i = match kept.iter().position(|k| std::ptr::eq(k.insert, insert)) {
                Some(i) => i,
                None => {
                    kept.push(Kept { insert, values: Vec::new(), keys: HashSet::new() });
                    kept.len() - 1
                }
            };
            let k = &mut kept[i];
            k.values.extend(owned);
            k.keys.extend(key);
            k.values.len() / insert.columns >= MAX_ROWS
        };
        if full {
            self.send_kept(false)?;
        }
        Ok(())
    }

    /// Sends every kept row, kinds in the order first used, as multi-row statements of
    /// [`MAX_ROWS`], then halves down to one. `end_run`: another statement follows, and the
    /// kinds' order starts anew after it; otherwise (a kind full, a key repeated) the run of
    /// inserts goes on in the same order of kinds, so that a row kept after this one still
    /// goes after the rows of the kinds first used before its own.
    fn send_kept(&self, end_run: bool) -> Result<()> {
        let mut kept = std::mem::take(&mut *self.kept.borrow_mut());
        let sent = (|| {
            for k in kept.iter_mut() {
                k.keys.clear();
                let mut values = std::mem::take(&mut k.values).into_iter();
                let mut rows = values.len() / k.insert.columns;
                while rows > 0 {
                    let n = MAX_ROWS.min(1 << rows.ilog2());
                    let statement = self.prepare_translated(&k.insert.sql(n))?;
                    self.send(&statement, values.by_ref().take(n * k.insert.columns).collect())?;
                    rows -= n;
                }
            }
            Ok(())
        })();
        if sent.is_ok() && !end_run {
            *self.kept.borrow_mut() = kept;
        }
        sent
    }

    /// Sends `statement` with `owned`; its answer is read later (see [`Client::execute_later`]).
    fn send(&self, statement: &Statement, owned: Vec<OwnedValue>) -> Result<()> {
        let (client, statement) = (self.client.clone(), statement.clone());
        let mut sent: Pending =
            Box::pin(async move { client.execute_raw(&statement, owned.iter().map(|v| PgParam(v))).await.map(drop) });
        // tokio-postgres encodes the request and queues it for the socket before it first
        // waits: one poll sends it, in order with everything sent before and after.
        let waker = futures_util::task::noop_waker();
        match sent.as_mut().poll(&mut Context::from_waker(&waker)) {
            Poll::Ready(result) => result?,
            Poll::Pending => self.pending.borrow_mut().push(sent),
        }
        if self.pending.borrow().len() >= MAX_PENDING {
            self.read_pending()?;
        }
        Ok(())
    }

    /// Sends the rows kept and reads the answers of every statement sent ahead; the first
    /// error is the answer.
    pub fn flush(&self) -> Result<()> {
        let sent = self.send_kept(true);
        let read = self.read_pending();
        sent.and(read)
    }

    /// Reads the answers of every statement sent ahead; the first error is the answer.
    fn read_pending(&self) -> Result<()> {
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        if pending.is_empty() {
            return Ok(());
        }
        let answers = wait(futures_util::future::join_all(pending));
        answers.into_iter().collect::<std::result::Result<Vec<()>, _>>()?;
        Ok(())
    }

    pub fn begin(&self) -> Result<()> {
        self.flush()?;
        if self.writer {
            self.batch(&format!("BEGIN; SELECT pg_advisory_xact_lock({FEED_LOCK})"))
        } else {
            // A reader's transaction is one snapshot, as an SQLite read transaction is.
            self.batch("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        }
    }

    pub fn prepare(&self, sql: &str) -> Result<Statement> {
        if let Some(s) = self.cache.borrow().get(sql) {
            return Ok(s.clone());
        }
        self.flush()?;
        self.prepare_translated(sql)
    }

    /// [`Client::prepare`] without sending the rows kept: the answers sent ahead are read
    /// first (the connection reads its answers in order, and theirs would hold up this one).
    fn prepare_translated(&self, sql: &str) -> Result<Statement> {
        if let Some(s) = self.cache.borrow().get(sql) {
            return Ok(s.clone());
        }
        self.read_pending()?;
        let statement = wait(self.client.prepare(&translate(sql)))?;
        let mut cache = self.cache.borrow_mut();
        if cache.len() > 512 {
            cache.clear();
        }
        cache.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }

    pub fn execute(&self, statement: &Statement, values: &[&dyn ToValue]) -> Result<usize> {
        self.flush()?;
        let params = values.iter().map(|v| PgParam(*v));
        let n = wait(self.client.execute_raw(statement, params))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    pub fn query(&self, statement: &Statement, values: &[&dyn ToValue]) -> Result<RowStream> {
        self.flush()?;
        let params = values.iter().map(|v| PgParam(*v));
        let stream = wait(self.client.query_raw(statement, params))?;
        Ok(RowStream(Box::pin(stream)))
    }
}

/// A query's rows as PostgreSQL sends them, read one at a time.
pub struct RowStream(Pin<Box<tokio_postgres::RowStream>>);

impl RowStream {
    pub fn next(&mut self) -> Result<Option<tokio_postgres::Row>> {
        wait(self.0.next()).transpose().map_err(Error::from)
    }
}

/// SQLite's parameters (`?1`, `?`) as PostgreSQL's (`$1`), outside quoted text and
/// identifiers. Everything else in the shared dialect is the same text on both engines.
pub fn translate(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    let mut next_bare = 0;
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                out.push(c);
                if c == q {
                    quote = None;
                }
            }
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                out.push(c);
            }
            None if c == '-' && chars.peek() == Some(&'-') => {
                // A comment runs to the end of the line.
                out.push(c);
                for c in chars.by_ref() {
                    out.push(c);
                    if c == '\n' {
                        break;
                    }
                }
            }
            None if c == '?' => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                if digits.is_empty() {
                    next_bare += 1;
                    digits = next_bare.to_string();
                }
                out.push('$');
                out.push_str(&digits);
            }
            None => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_become_dollars_outside_quotes_and_comments() {
        assert_eq!(translate("SELECT a FROM t WHERE b = ?1 AND c = ?12"), "SELECT a FROM t WHERE b = $1 AND c = $12");
        assert_eq!(translate("VALUES (?, ?, ?)"), "VALUES ($1, $2, $3)");
        assert_eq!(translate("SELECT '?1', \"a?\" FROM t WHERE x = ?2"), "SELECT '?1', \"a?\" FROM t WHERE x = $2");
        assert_eq!(translate("SELECT 1 -- why?\nFROM t WHERE x = ?1"), "SELECT 1 -- why?\nFROM t WHERE x = $1");
        assert_eq!(translate("SELECT 'it''s ?' WHERE ?1"), "SELECT 'it''s ?' WHERE $1");
    }

    #[test]
    fn a_url_shows_without_its_password() {
        let url = PgUrl::parse("postgres://ohassist:s3cret@db.example:5432/county").unwrap();
        assert_eq!(url.to_string(), "postgres://ohassist@db.example:5432/county");
        assert!(!format!("{url:?}").contains("s3cret"));
        assert!(PgUrl::parse("/var/lib/ohassist").is_none());
        assert_eq!(PgUrl::parse("postgresql://localhost/x").unwrap().to_string(), "postgresql://localhost/x");
    }
}
