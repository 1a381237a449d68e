//! A throwaway PostgreSQL for the tests: the cluster `OHASSIST_TEST_POSTGRES` names (a base
//! URL such as `postgres://postgres@127.0.0.1:5433`), or else one this process starts from
//! the distribution's binaries in a temporary directory, on a free loopback port, which dies
//! with the process. `scripts/test.sh` installs PostgreSQL when it is missing.
//!
//! Each data directory of a test gets a database of its own, named from the directory, so a
//! server restarted on the same directory finds its records again.

use std::collections::HashSet;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use ohassist_server::sql::{Connection, PgUrl};

/// Which engine the end-to-end servers run on: `OHASSIST_TEST_ENGINE=postgres` runs them on
/// PostgreSQL (`--database`), otherwise on their SQLite file.
pub fn on_postgres() -> bool {
    std::env::var("OHASSIST_TEST_ENGINE").is_ok_and(|e| e == "postgres")
}

pub struct Cluster {
    base: String,
    _dir: Option<tempfile::TempDir>,
    _child: Option<Mutex<Child>>,
    made: Mutex<HashSet<String>>,
}

/// The cluster of this test process.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| match std::env::var("OHASSIST_TEST_POSTGRES") {
        Ok(base) => Cluster { base, _dir: None, _child: None, made: Mutex::new(HashSet::new()) },
        Err(_) => start(),
    })
}

fn bin_dir() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(Result::ok).map(|e| e.path().join("bin")).filter(|p| p.join("initdb").exists()).collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs.pop().expect("PostgreSQL is not installed (/usr/lib/postgresql/*/bin/initdb); scripts/test.sh installs it")
}

/// The `postgres` account when the tests run as root (initdb refuses root).
fn account() -> Option<(u32, u32)> {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        return None;
    }
    let name = std::ffi::CString::new("postgres").unwrap();
    // SAFETY: getpwnam reads a static buffer; this runs once, before any other thread calls it.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(!pw.is_null(), "running as root, and there is no postgres account to run PostgreSQL as");
    // SAFETY: pw is non-null and points to getpwnam's record.
    Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

fn as_account(cmd: &mut Command, account: Option<(u32, u32)>) -> &mut Command {
    if let Some((uid, gid)) = account {
        cmd.gid(gid).uid(uid);
    }
    cmd
}

fn start() -> Cluster {
    let bin = bin_dir();
    let account = account();
    let dir = tempfile::Builder::new().prefix("ohassist-pg").tempdir().unwrap();
    if let Some((uid, gid)) = account {
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
    }
    let data = dir.path().join("data");
    let out = as_account(&mut Command::new(bin.join("initdb")), account)
        .args(["-D", data.to_str().unwrap(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"])
        .output()
        .unwrap();
    assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut cmd = Command::new(bin.join("postgres"));
    as_account(&mut cmd, account)
        .args(["-D", data.to_str().unwrap(), "-p", &port.to_string(), "-k", dir.path().to_str().unwrap()])
        .args(["-c", "listen_addresses=127.0.0.1", "-c", "max_connections=300", "-c", "shared_buffers=64MB"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: prctl only sets this child's parent-death signal (after the uid change, which
    // would clear it): the cluster quits at once when the test process ends, however it ends.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT);
            Ok(())
        });
    }
    // The parent-death signal follows the thread that spawned the child, not the process:
    // spawn it from a thread that lives as long as the process.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("test-postgres".into())
        .spawn(move || {
            tx.send(cmd.spawn()).unwrap();
            loop {
                std::thread::park();
            }
        })
        .unwrap();
    let child = rx.recv().unwrap().unwrap();
    let base = format!("postgres://postgres@127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = PgUrl::parse(&format!("{base}/postgres")).unwrap();
    while Connection::postgres(&url, false).is_err() {
        assert!(Instant::now() < deadline, "the test PostgreSQL did not accept connections in 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    Cluster { base, _dir: Some(dir), _child: Some(Mutex::new(child)), made: Mutex::new(HashSet::new()) }
}

impl Cluster {
    /// The URL of database `name`, created empty the first time it is asked for.
    pub fn database(&self, name: &str) -> String {
        let mut made = self.made.lock().unwrap();
        if made.insert(name.to_string()) {
            let admin = connect(&format!("{}/postgres", self.base), false);
            let exists: bool = admin
                .query_row("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = ?1)", [name], |r| r.get(0))
                .unwrap();
            if !exists {
                admin.execute_batch(&format!("CREATE DATABASE \"{name}\"")).unwrap();
            }
        }
        format!("{}/{name}", self.base)
    }

    /// A new, empty database of its own.
    pub fn fresh_database(&self) -> String {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.database(&format!("fresh_{}_{n}", std::process::id()))
    }

    /// The database of a test's data directory.
    pub fn database_of(&self, data: &Path) -> String {
        use std::hash::{Hash, Hasher};
        let path = data.canonicalize().unwrap_or_else(|_| data.to_path_buf());
        let mut h = std::collections::hash_map::DefaultHasher::new();
        path.hash(&mut h);
        self.database(&format!("data_{:016x}", h.finish()))
    }
}

/// A connection to the test database at `url`; a writer's transactions take the feed's lock.
pub fn connect(url: &str, writer: bool) -> Connection {
    Connection::postgres(&PgUrl::parse(url).expect("a postgres:// URL"), writer).unwrap()
}

/// The `--database` arguments for a server or command on `data`: none on SQLite.
pub fn database_args(data: &Path) -> Vec<String> {
    if on_postgres() {
        std::fs::create_dir_all(data).unwrap();
        vec!["--database".into(), cluster().database_of(data)]
    } else {
        Vec::new()
    }
}
