//! `ohassist demo`: the real binary into a fresh directory; once it says it is ready, the
//! dashboard has figures for every county of 沈阳市, Table 2 has every county and the zone,
//! the conflicts queue has entries, visits are in every review state, and every printed
//! password (and the API client's token) works. Then a second demo over the same directory
//! is refused, in both languages.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use ohassist_tests::*;

/// The counties of 沈阳市 in the embedded division data.
const COUNTIES: [(&str, &str); 13] = [
    ("210102", "和平区"),
    ("210103", "沈河区"),
    ("210104", "大东区"),
    ("210105", "皇姑区"),
    ("210106", "铁西区"),
    ("210111", "苏家屯区"),
    ("210112", "浑南区"),
    ("210113", "沈北新区"),
    ("210114", "于洪区"),
    ("210115", "辽中区"),
    ("210123", "康平县"),
    ("210124", "法库县"),
    ("210181", "新民市"),
];

struct Demo {
    child: Child,
    lines: Vec<String>,
    addr: String,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_demo(data: &std::path::Path) -> Demo {
    let (mut child, rx) = spawn_with_lines(&["--data", data.to_str().unwrap(), "demo", "--listen", "127.0.0.1:0"]);
    let started = Instant::now();
    let mut lines = Vec::new();
    let mut addr = String::new();
    // A debug build on a busy machine: generous, the release figure is the benchmark's.
    while started.elapsed() < Duration::from_secs(300) {
        let Ok(line) = rx.recv_timeout(Duration::from_secs(1)) else {
            assert!(child.try_wait().unwrap().is_none(), "the demo exited early: {lines:#?}");
            continue;
        };
        if let Some(a) = line.strip_prefix("listening on http://") {
            addr = a.to_string();
        }
        let ready = line.contains("demo ready in");
        lines.push(line);
        if ready {
            return Demo { child, lines, addr };
        }
    }
    panic!("the demo was not ready in time: {lines:#?}");
}

/// `(role, username, unit, password)` of each printed account.
fn accounts(lines: &[String]) -> Vec<(String, String, String, String)> {
    lines
        .iter()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                [role, user, unit, password, ..] if ["admin", "supervisor", "inspector"].contains(role) => {
                    Some((role.to_string(), user.to_string(), unit.to_string(), password.to_string()))
                }
                _ => None,
            }
        })
        .collect()
}

#[test]
fn the_demo_city_is_ready_with_every_county_conflicts_reviews_and_working_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let demo = start_demo(&data);
    let url = format!("http://{}", demo.addr);
    assert!(!demo.addr.is_empty(), "{:#?}", demo.lines);

    // Every printed password logs in, with the role it was printed with.
    let accounts = accounts(&demo.lines);
    for role in ["admin", "supervisor", "inspector"] {
        assert!(accounts.iter().any(|a| a.0 == role), "a {role} account printed: {:#?}", demo.lines);
    }
    let mut city_token = String::new();
    for (role, user, unit, password) in &accounts {
        let body = serde_json::json!({"username": user, "password": password, "device_id": format!("t-{user}"), "device_name": "test"});
        let a = post(
            &format!("{url}/api/v1/login"),
            None,
            &[("content-type", "application/json")],
            serde_json::to_vec(&body).unwrap(),
        );
        assert_eq!(a.status, 200, "{user} logs in with the printed password: {}", a.text());
        assert_eq!(a.json()["role"], role.as_str());
        assert_eq!(a.json()["org_unit"], unit.as_str());
        if role == "supervisor" && unit == "210100" {
            city_token = a.json()["token"].as_str().unwrap().to_string();
        }
    }
    assert!(!city_token.is_empty(), "a city supervisor was printed");

    // The dashboard: non-zero figures for every county and the zone.
    let dash = get(&format!("{url}/api/v1/dashboard"), Some(&city_token));
    assert_eq!(dash.status, 200, "{}", dash.text());
    let rows = dash.json()["counties"].as_array().unwrap().clone();
    for (code, name) in COUNTIES {
        let row = rows.iter().find(|r| r["county_code"] == code).unwrap_or_else(|| panic!("{name} on the dashboard"));
        for figure in ["assisted", "declared", "detection_done", "health_examination_done", "trained"] {
            assert!(row[figure].as_u64().unwrap() > 0, "{name}: {figure} is 0: {row}");
        }
        let visits: u64 = row["visits_by_month"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
        assert!(visits > 0, "{name} has visits by month");
    }
    let zone = rows.iter().find(|r| r["zone"] == true).expect("the development zone on the dashboard");
    assert!(zone["assisted"].as_u64().unwrap() > 0 && zone["target"].as_u64().is_some(), "{zone}");

    // Table 2: every county's row, the zone's row (其他), the total.
    let t2 = get(&format!("{url}/api/v1/tables/2"), Some(&city_token));
    assert_eq!(t2.status, 200, "{}", t2.text());
    let t2 = t2.json();
    assert!(t2["title"].as_str().unwrap().contains("沈阳市"), "{}", t2["title"]);
    let names: Vec<String> =
        t2["rows"].as_array().unwrap().iter().map(|r| r[0].as_str().unwrap().to_string()).collect();
    for (_, name) in COUNTIES {
        assert!(names.contains(&name.to_string()), "{name} in Table 2: {names:?}");
    }
    assert!(names.iter().any(|n| n.starts_with("其他") && n.contains("开发区")), "the zone's row: {names:?}");
    assert_eq!(names.last().map(String::as_str), Some("合计"));
    assert_eq!(names.len(), COUNTIES.len() + 2);

    // The conflicts queue, as the city supervisor sees it in the console.
    let (_, user, _, password) = accounts.iter().find(|a| a.0 == "supervisor" && a.2 == "210100").unwrap();
    let cookie = console_login(&url, user, password);
    let queue = get_with(&format!("{url}/conflicts"), &[("cookie", &cookie)]);
    assert_eq!(queue.status, 200);
    let entries = queue.text().matches("action=\"/conflicts/resolve\"").count();
    assert!(entries >= 3, "the conflicts queue has entries: {entries}");

    // Reviews in every state, photos on the server, the phones' stores gone.
    let db =
        rusqlite::Connection::open_with_flags(data.join("ohassist.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    for state in ["draft", "submitted", "approved", "returned"] {
        let n: i64 =
            db.query_row("SELECT count(*) FROM visits WHERE review_state = ?1", [state], |r| r.get(0)).unwrap();
        assert!(n > 0, "visits in state {state}");
    }
    let photos: i64 =
        db.query_row("SELECT count(*) FROM attachments WHERE media_type = 'image/png'", [], |r| r.get(0)).unwrap();
    assert!(photos > 0, "photos were uploaded");
    let devices: i64 = db.query_row("SELECT count(DISTINCT device_id) FROM changes", [], |r| r.get(0)).unwrap();
    assert!(devices >= 16, "every inspector's phone pushed (and the console reviewed): {devices}");
    assert!(!data.join("demo-phones").exists(), "the phones' stores are removed");

    // The printed API client token reads the export.
    let token = demo
        .lines
        .iter()
        .find_map(|l| l.split_once(" token: ").map(|(_, t)| t.trim().to_string()))
        .expect("the API client's token printed");
    let export = get(&format!("{url}/api/v1/export?limit=5"), Some(&token));
    assert_eq!(export.status, 200, "{}", export.text());
    assert_eq!(export.header("x-ohassist-more"), "true");

    // The ready line names the time it took.
    assert!(demo.lines.iter().any(|l| l.contains("演示已就绪") && l.contains(" s: http://")), "{:#?}", demo.lines);
    drop(demo);

    // Over a directory that now holds data, the demo refuses, in both languages.
    let out = Command::new(server_binary())
        .args(["--data", data.to_str().unwrap(), "demo", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("不是空的") && err.contains("not empty") && err.contains("--force"), "{err}");
}
