//! The `ohassist` binary itself: start, first admin, health over a socket, SIGTERM, CLI.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn ohassist() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ohassist"))
}

fn http_get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[cfg(unix)]
#[test]
fn serve_creates_the_first_admin_answers_health_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = ohassist()
        .args(["serve", "--listen", "127.0.0.1:0", "--org-unit", "210100", "--data"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    let addr = loop {
        let line = lines.next().expect("the server printed its address").unwrap();
        if let Some(a) = line.strip_prefix("listening on http://") {
            break a.to_string();
        }
        printed.push(line);
    };
    assert!(printed.iter().any(|l| l.contains("username `admin`, password `")), "{printed:?}");
    assert!(!addr.ends_with(":0"));
    let reply = http_get(&addr, "/health");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("\"status\":\"ok\""));

    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the server did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");

    // A second start finds the admin and creates no other.
    let out = ohassist().args(["user", "list", "--data"]).arg(dir.path()).output().unwrap();
    let list = String::from_utf8(out.stdout).unwrap();
    assert_eq!(list.lines().filter(|l| l.starts_with("admin ")).count(), 1, "{list}");
    assert!(list.contains("210100"));
}

#[test]
fn user_add_with_password_stdin_and_device_commands() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = ohassist()
        .args([
            "user",
            "add",
            "--username",
            "zhang",
            "--display-name",
            "张三",
            "--role",
            "inspector",
            "--org-unit",
            "210102",
        ])
        .args(["--password-stdin", "--data"])
        .arg(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"a long password\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("created user zhang") && !stdout.contains("password:"), "{stdout}");

    let conn = ohassist_core::sqlite::open_reader(&dir.path().join("ohassist.db")).unwrap();
    let hash: String =
        conn.query_row("SELECT password_hash FROM users WHERE username = 'zhang'", [], |r| r.get(0)).unwrap();
    assert!(ohassist_server::accounts::verify_password("a long password", &hash));

    let bad_role = ohassist()
        .args([
            "user",
            "add",
            "--username",
            "x",
            "--display-name",
            "x",
            "--role",
            "king",
            "--org-unit",
            "210102",
            "--data",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!bad_role.status.success());
    let unknown = ohassist().args(["device", "revoke", "nope", "--data"]).arg(dir.path()).output().unwrap();
    assert!(!unknown.status.success());
}
