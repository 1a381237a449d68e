//! The end-to-end harness: the real `ohassist` binary on a loopback port with a real
//! database file, phones that are real stores with the real sync client, and a proxy that
//! cuts connections.

pub mod backup;
pub mod console;
pub mod pg;
pub mod proxy;
pub mod seed;

pub use console::Console;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use ohassist_core::model::{County, Enterprise, Industry, Visit};
use ohassist_core::store::{Store, StoreKey};
use ohassist_core::sync::{self, CancelToken, SyncConfig, SyncError, SyncReport};

/// The `ohassist` binary, built once per process (a no-op when `cargo test --workspace`
/// built it already). Benchmarks set `OHASSIST_SERVER_PROFILE=release`.
pub fn server_binary() -> PathBuf {
    let release = std::env::var("OHASSIST_SERVER_PROFILE").as_deref() == Ok("release");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let bin = target.join(if release { "release/ohassist" } else { "debug/ohassist" });
    static BUILD: std::sync::Once = std::sync::Once::new();
    BUILD.call_once(|| {
        // Debug: the build `cargo test --workspace` made, so a no-op after it. Building the
        // server package alone would unify its dependencies' features differently and
        // rebuild most of them (minutes on a fresh machine).
        let args: &[&str] = if release {
            &["build", "-p", "ohassist-server", "--bin", "ohassist", "--release"]
        } else {
            &["test", "--workspace", "--no-run", "--locked"]
        };
        let mut cargo = Command::new(env!("CARGO"));
        // The variables cargo set for this test (CARGO_MANIFEST_DIR, CARGO_PKG_NAME, …) would
        // differ from the outer build's, and build scripts that watch them (ring's) would run
        // again and rebuild their crates and everything above them.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            let set_for_the_test = name.starts_with("CARGO_PKG_")
                || name.starts_with("CARGO_BIN_")
                || name.starts_with("CARGO_MANIFEST_")
                || [
                    "CARGO_CRATE_NAME",
                    "CARGO_PRIMARY_PACKAGE",
                    "CARGO_TARGET_TMPDIR",
                    "CARGO_RUSTC_CURRENT_DIR",
                    "OUT_DIR",
                ]
                .contains(&name.as_ref());
            if set_for_the_test {
                cargo.env_remove(name.as_ref());
            }
        }
        let status = cargo.args(args).current_dir(env!("CARGO_MANIFEST_DIR")).status().expect("cargo runs");
        assert!(status.success(), "building the server failed");
    });
    bin
}

/// A running `ohassist serve` on 127.0.0.1.
pub struct Server {
    pub data: PathBuf,
    pub addr: String,
    child: Child,
}

impl Server {
    /// Starts the server on `data`, on a free port, or on `addr` (a restart).
    pub fn start(data: &Path, addr: Option<&str>) -> Server {
        Server::start_with(data, addr, &[])
    }

    /// [`Server::start`] with more `serve` arguments (TLS, say).
    pub fn start_with(data: &Path, addr: Option<&str>, extra: &[&str]) -> Server {
        let listen = addr.unwrap_or("127.0.0.1:0");
        let args = [&["--data", data.to_str().unwrap(), "serve", "--listen", listen], extra].concat();
        let (child, lines) = spawn_with_lines(&args);
        let addr = loop {
            let line = lines.recv_timeout(Duration::from_secs(30)).expect("server printed its address");
            let addr = line.strip_prefix("listening on http://").or_else(|| line.strip_prefix("listening on https://"));
            if let Some(addr) = addr {
                break addr.to_string();
            }
        };
        Server { data: data.to_path_buf(), addr, child }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The server process's id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server process's peak resident memory so far, in bytes (Linux `VmHWM`).
    pub fn peak_memory(&self) -> u64 {
        peak_memory(&self.child.id().to_string())
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for a graceful exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        self.child.wait().unwrap()
    }

    /// Runs `ohassist <args>` on this server's data, feeding `stdin`; returns stdout.
    pub fn cli(&self, args: &[&str], stdin: &str) -> String {
        cli(&self.data, args, stdin)
    }

    /// Creates a user with a password.
    pub fn add_user(&self, username: &str, role: &str, org_unit: &str, password: &str) {
        add_user(&self.data, username, role, org_unit, password)
    }

    /// A look at the server's database: its SQLite file read-only, or its PostgreSQL
    /// database when the suite runs there ([`pg::on_postgres`]).
    pub fn db(&self) -> ohassist_server::sql::Connection {
        server_db(&self.data)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `ohassist <args>` (logging warnings only); its standard output arrives line by line.
pub fn spawn_with_lines(args: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut cmd = Command::new(server_binary());
    if let Some(at) = args.iter().position(|a| *a == "--data") {
        on_engine(&mut cmd, Path::new(args[at + 1]));
    }
    let mut child = cmd
        .args(args)
        .env("OHASSIST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("ohassist starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

/// The database of the server on `data`, as [`Server::db`].
pub fn server_db(data: &Path) -> ohassist_server::sql::Connection {
    if pg::on_postgres() {
        return pg::connect(&pg::cluster().database_of(data), false);
    }
    ohassist_server::sql::Connection::from(
        rusqlite::Connection::open_with_flags(data.join("ohassist.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap(),
    )
}

/// The database of the server on `data`, writable (a test that sets up a state by hand, the
/// server stopped).
pub fn server_db_writable(data: &Path) -> ohassist_server::sql::Connection {
    if pg::on_postgres() {
        return server_db(data);
    }
    ohassist_server::sql::Connection::from(rusqlite::Connection::open(data.join("ohassist.db")).unwrap())
}

/// Points `cmd` at the PostgreSQL database of `data` when the suite runs there.
fn on_engine<'c>(cmd: &'c mut Command, data: &Path) -> &'c mut Command {
    if pg::on_postgres() {
        cmd.env("OHASSIST_DATABASE", pg::cluster().database_of(data));
    }
    cmd
}

pub fn cli(data: &Path, args: &[&str], stdin: &str) -> String {
    let mut child = on_engine(&mut Command::new(server_binary()), data)
        .arg("--data")
        .arg(data)
        .args(args)
        .env("OHASSIST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "ohassist {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

pub fn add_user(data: &Path, username: &str, role: &str, org_unit: &str, password: &str) {
    add_user_on(data, None, username, role, org_unit, password)
}

/// [`add_user`] on the PostgreSQL database `database` (`--database`), or as [`add_user`] does.
pub fn add_user_on(data: &Path, database: Option<&str>, username: &str, role: &str, org_unit: &str, password: &str) {
    let db: Vec<&str> = database.map(|u| vec!["--database", u]).unwrap_or_default();
    cli(
        data,
        &[
            db.as_slice(),
            &[
                "user",
                "add",
                "--username",
                username,
                "--display-name",
                username,
                "--role",
                role,
                "--org-unit",
                org_unit,
                "--password-stdin",
            ],
        ]
        .concat(),
        &format!("{password}\n"),
    );
}

/// A phone: a real encrypted store file and the real sync client.
pub struct Phone {
    pub store: Store,
    pub config: SyncConfig,
    _dir: tempfile::TempDir,
}

/// The store key of every test phone (a real app keeps a random one in the keystore).
pub fn phone_key() -> StoreKey {
    StoreKey::new([0x42; 32])
}

/// A raw connection to a test phone's encrypted database, for tests that read its rows.
pub fn phone_db(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(&format!("PRAGMA key = \"x'{}'\";", hex_key(&phone_key()))).unwrap();
    conn
}

fn hex_key(key: &StoreKey) -> String {
    key.as_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

impl Phone {
    pub fn new(server_url: &str) -> Phone {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("phone.db"), &phone_key()).unwrap();
        let mut config = SyncConfig::new(server_url);
        config.allow_http = true;
        config.initial_backoff = Duration::from_millis(20);
        config.max_backoff = Duration::from_millis(200);
        Phone { store, config, _dir: dir }
    }

    pub fn login(&self, username: &str, password: &str) {
        self.login_named(username, password, "");
    }

    /// [`Phone::login`] with the name the app gives the device.
    pub fn login_named(&self, username: &str, password: &str, device_name: &str) {
        sync::login_blocking(&self.store, &self.config, username, password, device_name).expect("login");
    }

    pub fn try_sync(&self) -> Result<SyncReport, SyncError> {
        sync::sync_blocking(&self.store, &self.config, &|_: &sync::SyncProgress| {}, &CancelToken::new())
    }

    pub fn sync(&self) -> SyncReport {
        self.try_sync().expect("sync")
    }
}

pub const PASSWORD: &str = "correct horse battery staple";

/// A valid credit code built from a number (the check character computed).
pub fn credit_code(i: usize) -> String {
    ohassist_core::synthetic::credit_code("350100", i as u64)
}

pub fn enterprise(i: usize, county: &str) -> Enterprise {
    let mut e = Enterprise {
        credit_code: credit_code(i),
        name: format!("测试企业{i}"),
        county: County { code: county.into(), name: format!("县{county}") },
        industry: Some(Industry::ALL[i % Industry::ALL.len()]),
        ..Default::default()
    };
    e.add_year(2025);
    e
}

pub fn visit(i: usize) -> Visit {
    Visit { enterprise_id: credit_code(i), visit_date: "2025-05-20".into(), ..Default::default() }
}

/// A raw HTTP answer: status and body parsed as JSON when it is JSON.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    pub headers: reqwest::header::HeaderMap,
}

impl Answer {
    /// A response header as text ("" when absent).
    pub fn header(&self, name: &str) -> String {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The `name=value` part of a `Set-Cookie` for `name`, if any.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(|v| v.split(';').next().unwrap_or("").to_string())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
    /// The `code` of an error body.
    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or("").to_string()
    }
}

/// reqwest here is built without a default TLS crypto provider; the core's client installs
/// one, so a raw request made before any phone connected needs that done first.
fn install_tls_provider() {
    let _ = sync::Client::new(SyncConfig::new("https://127.0.0.1"));
}

/// Posts raw bytes, for tests of what a well-behaved client never sends.
pub fn post(url: &str, token: Option<&str>, headers: &[(&str, &str)], body: Vec<u8>) -> Answer {
    install_tls_provider();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut req = reqwest::Client::new().post(url).body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        answer(req.send().await.expect("request sent")).await
    })
}

async fn answer(resp: reqwest::Response) -> Answer {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    Answer { status, headers, body: resp.bytes().await.unwrap().to_vec() }
}

pub fn get(url: &str, token: Option<&str>) -> Answer {
    install_tls_provider();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut req = reqwest::Client::new().get(url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        answer(req.send().await.expect("request sent")).await
    })
}

/// A GET with these headers, redirects not followed (a console login answers 303).
pub fn get_with(url: &str, headers: &[(&str, &str)]) -> Answer {
    request(reqwest::Method::GET, url, headers, Vec::new())
}

/// A request with these headers and body; redirects are not followed.
pub fn request(method: reqwest::Method, url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Answer {
    install_tls_provider();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let mut req = client.request(method, url).body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        answer(req.send().await.expect("request sent")).await
    })
}

/// Logs in to the console as a browser does (the login form's CSRF cookie and field);
/// returns the `Cookie` header value of the session.
pub fn console_login(server_url: &str, username: &str, password: &str) -> String {
    let page = get_with(&format!("{server_url}/login"), &[]);
    assert_eq!(page.status, 200, "login page");
    let login_cookie = page.cookie("ohs_login").expect("the login form's cookie");
    let html = page.text();
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + "name=\"csrf\" value=\"".len();
    let csrf = &html[at..at + html[at..].find('"').unwrap()];
    let form = format!("username={username}&password={password}&csrf={csrf}");
    let reply = request(
        reqwest::Method::POST,
        &format!("{server_url}/login"),
        &[("content-type", "application/x-www-form-urlencoded"), ("cookie", &login_cookie)],
        form.into_bytes(),
    );
    assert_eq!(reply.status, 303, "console login of {username}: {}", reply.text());
    reply.cookie("ohs_session").expect("a session cookie")
}

/// Logs in over raw HTTP and returns the token.
pub fn token(server_url: &str, username: &str, password: &str, device: &str) -> String {
    let body =
        serde_json::json!({"username": username, "password": password, "device_id": device, "device_name": device});
    let a = post(
        &format!("{server_url}/api/v1/login"),
        None,
        &[("content-type", "application/json")],
        serde_json::to_vec(&body).unwrap(),
    );
    assert_eq!(a.status, 200, "login of {username}: {}", String::from_utf8_lossy(&a.body));
    a.json()["token"].as_str().unwrap().to_string()
}

/// The sync headers a real client sends with a CBOR body (the protocol version is checked
/// against `wire::PROTOCOL_VERSION` by `sync_headers_name_the_current_protocol`).
pub const SYNC_HEADERS: &[(&str, &str)] =
    &[("content-type", "application/cbor"), ("content-encoding", "gzip"), ("x-ohassist-protocol", "2")];

/// A process's peak resident memory in bytes (Linux `VmHWM`); `pid` may be `self`.
pub fn peak_memory(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kb * 1024
}

/// Resets a process's peak resident memory (`VmHWM`) to its current size (Linux 4.0+), so
/// that [`peak_memory`] measures from here.
pub fn reset_peak_memory(pid: &str) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

#[cfg(test)]
mod tests {
    #[test]
    fn sync_headers_name_the_current_protocol() {
        let v = super::SYNC_HEADERS.iter().find(|(k, _)| *k == "x-ohassist-protocol").unwrap().1;
        assert_eq!(v, ohassist_core::sync::wire::PROTOCOL_VERSION.to_string());
    }
}
