//! The supervisor console against the real server binary: a review and a conflict
//! resolution made in the console reach the phones on their next sync; and the same
//! console driven in real headless Chromium (Debian's `chromium` + `chromium-driver`,
//! installed by `scripts/install-browser.sh` when missing) over the W3C WebDriver
//! protocol, spoken here directly with reqwest. Screenshots go to `tests/artifacts/`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ohassist_core::model::{ReviewState, Visit};
use ohassist_tests::*;
use serde_json::{json, Value};

const CITY: &str = "210100";
const HEPING: &str = "210102";
const SHENHE: &str = "210103";

/// A browser-less console client: cookies kept by hand, redirects not followed.
pub(crate) struct Console {
    base: String,
    cookies: Vec<String>,
    csrf: String,
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl Console {
    pub(crate) fn login(base: &str, username: &str) -> Console {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let mut c = Console { base: base.to_string(), cookies: Vec::new(), csrf: String::new(), rt, client };
        let (_, page) = c.get("/login");
        c.csrf = csrf_of(&page);
        let (status, _) = c.post("/login", &[("username", username), ("password", PASSWORD)]);
        assert_eq!(status, 303, "console login of {username}");
        let (_, page) = c.get("/dashboard?year=2025");
        c.csrf = csrf_of(&page);
        c
    }

    fn absorb(&mut self, resp: &reqwest::Response) {
        for v in resp.headers().get_all("set-cookie") {
            let pair = v.to_str().unwrap().split(';').next().unwrap().to_string();
            let name = pair.split('=').next().unwrap().to_string();
            self.cookies.retain(|c| !c.starts_with(&format!("{name}=")));
            self.cookies.push(pair);
        }
    }

    pub(crate) fn get(&mut self, path: &str) -> (u16, String) {
        let req = self.client.get(format!("{}{path}", self.base)).header("cookie", self.cookies.join("; "));
        let resp = self.rt.block_on(req.send()).unwrap();
        self.absorb(&resp);
        let status = resp.status().as_u16();
        (status, self.rt.block_on(resp.text()).unwrap())
    }

    pub(crate) fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> (u16, String) {
        let mut body: Vec<String> = fields.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect();
        body.push(format!("csrf={}", self.csrf));
        let req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookies.join("; "))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.join("&"));
        let resp = self.rt.block_on(req.send()).unwrap();
        self.absorb(&resp);
        let status = resp.status().as_u16();
        (status, self.rt.block_on(resp.text()).unwrap())
    }
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn csrf_of(html: &str) -> String {
    let key = "name=\"csrf\" value=\"";
    let at = html.find(key).expect("a form with a CSRF token") + key.len();
    html[at..at + html[at..].find('"').unwrap()].to_string()
}

/// A city with two counties, a submitted visit and a visit whose notes two phones edited
/// offline (a conflict). Returns the server, the two phones and the two visit ids.
fn city(dir: &Path) -> (Server, Phone, Phone, String, String) {
    let server = Server::start(dir, None);
    server.add_user("zhang", "inspector", CITY, PASSWORD);
    server.add_user("li", "inspector", CITY, PASSWORD);
    server.add_user("city", "supervisor", CITY, PASSWORD);
    server.add_user("heping", "supervisor", HEPING, PASSWORD);
    let a = Phone::new(&server.url());
    let b = Phone::new(&server.url());
    a.login("zhang", PASSWORD);
    b.login("li", PASSWORD);
    for i in 0..6 {
        a.store.create_enterprise(enterprise(i, if i % 2 == 0 { HEPING } else { SHENHE })).unwrap();
    }
    let submitted = a.store.create_visit(visit(0)).unwrap();
    a.store.edit_visit(&submitted, |v| v.review.state = ReviewState::Submitted).unwrap();
    let conflicted = a.store.create_visit(visit(1)).unwrap();
    a.sync();
    b.sync();
    a.store.edit_visit(&conflicted, |v| v.notes = "张：已整改".into()).unwrap();
    b.store.edit_visit(&conflicted, |v| v.notes = "李：未整改".into()).unwrap();
    a.sync();
    b.sync();
    a.sync();
    assert!(!a.store.conflicts(&conflicted).unwrap().is_empty(), "a conflict on the phones");
    (server, a, b, submitted, conflicted)
}

#[test]
fn review_and_conflict_resolution_made_in_the_console_reach_the_phones() {
    let dir = tempfile::tempdir().unwrap();
    let (server, a, b, submitted, conflicted) = city(dir.path());
    let mut console = Console::login(&server.url(), "city");

    let (status, _) =
        console.post(&format!("/visits/{submitted}/review"), &[("action", "return"), ("comment", "缺少签到表")]);
    assert_eq!(status, 303);
    let (_, queue) = console.get("/conflicts");
    assert!(queue.contains("张：已整改") && queue.contains("李：未整改"));
    let (status, _) = console.post(
        "/conflicts/resolve",
        &[
            ("doc_id", &conflicted),
            ("kind", "visit"),
            ("path", "[\"notes\"]"),
            ("choice", "custom"),
            ("custom_value", "已整改，待复查"),
        ],
    );
    assert_eq!(status, 303);

    for phone in [&a, &b] {
        phone.sync();
        let v: Visit = phone.store.get_visit(&submitted).unwrap().record;
        assert_eq!(v.review.state, ReviewState::Returned, "the return reaches the phone");
        assert_eq!(v.review.comment, "缺少签到表");
        let v: Visit = phone.store.get_visit(&conflicted).unwrap().record;
        assert_eq!(v.notes, "已整改，待复查");
        assert!(phone.store.conflicts(&conflicted).unwrap().is_empty(), "settled on the phone too");
    }
    // A forged form changes nothing.
    let before: i64 = server.db().query_row("SELECT count(*) FROM changes", [], |r| r.get(0)).unwrap();
    console.csrf = "f".repeat(64);
    let (status, _) = console.post(&format!("/visits/{submitted}/review"), &[("action", "approve")]);
    assert_eq!(status, 403);
    let after: i64 = server.db().query_row("SELECT count(*) FROM changes", [], |r| r.get(0)).unwrap();
    assert_eq!(before, after);
}

// ---- the browser ----

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Debian's chromium and chromedriver, installed by the script when missing.
fn ensure_browser() {
    let present = |bin: &str| {
        Command::new("sh").args(["-c", &format!("command -v {bin}")]).output().is_ok_and(|o| o.status.success())
    };
    if present("chromium") && present("chromedriver") {
        return;
    }
    let status = Command::new("sh")
        .arg(repo_root().join("scripts/install-browser.sh"))
        .status()
        .expect("install-browser.sh runs");
    assert!(status.success() && present("chromedriver"), "could not install chromium and chromium-driver");
}

/// A W3C WebDriver session on a chromedriver child process.
struct Browser {
    base: String,
    session: String,
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
    driver: Child,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    fn start(downloads: &Path) -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let client = reqwest::Client::new();
        let mut b = Browser { base: format!("http://127.0.0.1:{port}"), session: String::new(), rt, client, driver };
        let deadline = Instant::now() + Duration::from_secs(20);
        while b.rt.block_on(b.client.get(format!("{}/status", b.base)).send()).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,1100"],
                "prefs": {"download.default_directory": downloads.to_str().unwrap(), "download.prompt_for_download": false}
            }
        }}});
        let v = b.call("POST", "/session", Some(caps));
        b.session = v["sessionId"].as_str().expect("a WebDriver session").to_string();
        b
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = if path == "/session" {
            format!("{}/session", self.base)
        } else {
            format!("{}/session/{}{path}", self.base, self.session)
        };
        let req = match method {
            "GET" => self.client.get(url),
            "DELETE" => self.client.delete(url),
            _ => self
                .client
                .post(url)
                .header("content-type", "application/json")
                .body(body.unwrap_or(json!({})).to_string()),
        };
        let resp = self.rt.block_on(req.send()).expect("webdriver answers");
        let bytes = self.rt.block_on(resp.bytes()).unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert!(v["value"].get("error").is_none(), "webdriver {method} {path}: {}", v["value"]);
        v.get("sessionId").map(|_| v.clone()).unwrap_or_else(|| v["value"].clone())
    }

    fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    fn url(&self) -> String {
        self.call("GET", "/url", None).as_str().unwrap().to_string()
    }

    fn source(&self) -> String {
        self.call("GET", "/source", None).as_str().unwrap().to_string()
    }

    fn find(&self, css: &str) -> String {
        let v = self.call("POST", "/element", Some(json!({"using": "css selector", "value": css})));
        v[ELEMENT].as_str().unwrap().to_string()
    }

    fn count(&self, css: &str) -> usize {
        self.call("POST", "/elements", Some(json!({"using": "css selector", "value": css}))).as_array().unwrap().len()
    }

    fn click(&self, css: &str) {
        let el = self.find(css);
        self.call("POST", &format!("/element/{el}/click"), None);
    }

    fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css);
        self.call("POST", &format!("/element/{el}/value"), Some(json!({ "text": text })));
    }

    fn script(&self, js: &str) -> Value {
        self.call("POST", "/execute/sync", Some(json!({ "script": js, "args": [] })))
    }

    /// Emulates a viewport `width` CSS pixels wide (a phone at 390): the window itself
    /// cannot be made that narrow in headless Chromium.
    fn set_width(&self, width: i64) {
        let params = json!({ "width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 600 });
        self.call(
            "POST",
            "/goog/cdp/execute",
            Some(json!({ "cmd": "Emulation.setDeviceMetricsOverride", "params": params })),
        );
    }

    /// The page is no wider than its viewport: nothing scrolls sideways but the tables
    /// inside their own scroll boxes.
    fn assert_no_sideways_scroll(&self, what: &str) {
        let v = self.script("return [document.documentElement.scrollWidth, window.innerWidth]");
        let (content, viewport) = (v[0].as_i64().unwrap(), v[1].as_i64().unwrap());
        assert!(content <= viewport, "{what}: the page is {content} px wide in a {viewport} px viewport");
    }

    /// Screenshots of `path` at 1280 px and 390 px into `dir`, checking the phone width.
    fn both_widths(&self, url: &str, name: &str, dir: &Path) {
        for width in [1280, 390] {
            self.set_width(width);
            self.goto(url);
            if width == 390 {
                self.assert_no_sideways_scroll(name);
            }
            self.screenshot(&dir.join(format!("{name}-{width}.png")));
        }
        self.set_width(1280);
    }

    fn screenshot(&self, path: &Path) {
        let b64 = self.call("GET", "/screenshot", None).as_str().unwrap().to_string();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, base64_decode(&b64)).unwrap();
    }

    fn login(&self, server: &str, username: &str) {
        self.goto(&format!("{server}/login"));
        self.type_into("#username", username);
        self.type_into("#password", PASSWORD);
        self.click("#login");
        self.wait_until("the login to finish", |b| !b.url().contains("/login"));
    }

    /// Polls until `done` holds: a click that submits a form returns before the next page
    /// has loaded, and a busy machine makes that gap long.
    fn wait_until(&self, what: &str, done: impl Fn(&Browser) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.rt.block_on(self.client.delete(format!("{}/session/{}", self.base, self.session)).send());
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let clean: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=').collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, c)| acc | (value(*c) as u32) << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

#[test]
fn a_city_supervisor_works_the_console_in_headless_chromium() {
    ensure_browser();
    let dir = tempfile::tempdir().unwrap();
    let (server, _a, _b, _submitted, conflicted) = city(dir.path());
    let downloads = tempfile::tempdir().unwrap();
    let artifacts = repo_root().join("tests/artifacts");
    let browser = Browser::start(downloads.path());
    let url = server.url();

    browser.login(&url, "city");
    assert!(browser.url().ends_with("/dashboard"), "logged in: {}", browser.url());
    browser.goto(&format!("{url}/dashboard?year=2025"));
    assert_eq!(browser.count("svg.chart"), 1);
    assert_eq!(browser.count("#progress tbody tr"), 3, "two counties and the total");
    assert!(browser.source().contains("未达标"), "counties below 20 are marked");
    browser.screenshot(&artifacts.join("dashboard.png"));

    browser.goto(&format!("{url}/enterprises?year=2025"));
    assert_eq!(browser.count("#list tbody tr"), 6);
    browser.click(&format!("#county option[value='{HEPING}']"));
    browser.click("#apply");
    browser.wait_until("the filtered list", |b| b.url().contains(&format!("county={HEPING}")));
    assert_eq!(browser.count("#list tbody tr"), 3);

    // Every page a supervisor reads, as a person would see it, at a laptop's and a phone's
    // width (kept in target/artefacts).
    let shots = repo_root().join("target/artefacts");
    browser.both_widths(&format!("{url}/dashboard"), "dashboard", &shots);
    assert!(browser.source().contains("沈阳市 · 2025年度"), "the dashboard opens on the year with data, by name");
    browser.both_widths(&format!("{url}/conflicts"), "conflicts", &shots);
    let queue = browser.source();
    assert!(queue.contains("<span class=\"crumbs\">备注</span>"), "the field by its label");
    assert!(
        queue.contains("<small>zhang · ") && queue.contains("<small>li · "),
        "the inspectors by their display names"
    );
    browser.both_widths(&format!("{url}/visits/{conflicted}"), "visit-conflict", &shots);
    assert_eq!(browser.count("dd.conflicted a.resolve-link"), 1, "the disputed notes marked with a link");
    browser.both_widths(&format!("{url}/tables/2?year=2025"), "table2", &shots);
    browser.both_widths(&format!("{url}/enterprises?year=2025"), "enterprises", &shots);

    browser.goto(&format!("{url}/conflicts"));
    assert!(browser.source().contains(&conflicted));
    browser.click(".conflict input[name='choice'][value='1']");
    browser.click(".conflict .resolve");
    browser.wait_until("the queue to be empty after settling", |b| b.count("#none") == 1);

    browser.goto(&format!("{url}/tables/2?year=2025"));
    assert_eq!(browser.count("#table2 th[colspan='3']"), 1, "the grouped training header");
    assert!(browser.source().contains("合计"));
    browser.screenshot(&artifacts.join("table2.png"));
    browser.click("#xlsx");
    let deadline = Instant::now() + Duration::from_secs(20);
    let xlsx = loop {
        let done = std::fs::read_dir(downloads.path())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "xlsx"));
        if let Some(p) = done {
            break p;
        }
        assert!(Instant::now() < deadline, "Table 2 was not downloaded");
        std::thread::sleep(Duration::from_millis(200));
    };
    let bytes = std::fs::read(&xlsx).unwrap();
    assert_eq!(&bytes[..2], b"PK", "an XLSX (zip) file");
    let file = xlsx.file_name().unwrap().to_string_lossy().to_string();
    assert!(file.starts_with("沈阳市2025年度"), "the file is named after the city: {file}");

    // A county supervisor: another county's enterprise is not found.
    browser.click("header form button");
    browser.wait_until("the logout", |b| b.url().contains("/login"));
    browser.login(&url, "heping");
    browser.goto(&format!("{url}/enterprises/{}", credit_code(1)));
    assert!(browser.source().contains("data-code=\"not_found\""), "404 page for 沈河区's enterprise");
    browser.goto(&format!("{url}/enterprises/{}", credit_code(0)));
    assert!(browser.source().contains(&credit_code(0)), "their own county's enterprise opens");
}
