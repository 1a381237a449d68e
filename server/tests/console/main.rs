//! The supervisor console and its JSON API, called without a socket (`oneshot`): a
//! synthetic city whose two tables are counted independently here and compared with the
//! HTML, the JSON, the XLSX (read back with calamine) and the CSV; scope, CSRF and bad
//! input; review, conflict resolution and import as changes in the feed.

#[allow(dead_code)]
#[path = "../api/common.rs"]
mod common;

mod access;
mod admin;
mod city;
mod evidence;
mod pages;
mod refused;
mod relay;
mod render;
mod tables;
mod visit_page;
mod writes;
mod zones;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::{Fixture, Reply, PASSWORD};

/// A browser: the session cookie and the CSRF token of the last page.
pub struct Browser {
    pub cookie: String,
    pub csrf: String,
}

/// The value of `name="csrf" value="…"` in a page.
pub fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a form with a CSRF token");
    let rest = &html[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

fn set_cookie(reply: &Reply, name: &str) -> Option<String> {
    reply
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap().to_string())
}

pub fn text(reply: &Reply) -> String {
    String::from_utf8(reply.body.to_vec()).unwrap()
}

impl Browser {
    pub async fn login(f: &Fixture, username: &str) -> Browser {
        let page = f.send(Request::get("/login").body(Body::empty()).unwrap()).await;
        assert_eq!(page.status, StatusCode::OK);
        let login_cookie = set_cookie(&page, "ohs_login").expect("login CSRF cookie");
        let csrf = csrf_of(&text(&page));
        let form = format!("username={username}&password={}&csrf={csrf}", PASSWORD.replace(' ', "+"));
        let reply = f
            .send(
                Request::post("/login")
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .header(header::COOKIE, login_cookie)
                    .body(Body::from(form))
                    .unwrap(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "login of {username}: {}", text(&reply));
        let raw = reply.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap().to_string();
        assert!(raw.contains("HttpOnly") && raw.contains("SameSite=Strict"), "{raw}");
        let cookie = set_cookie(&reply, "ohs_session").unwrap();
        let mut b = Browser { cookie, csrf: String::new() };
        let dash = b.get(f, "/dashboard").await;
        assert_eq!(dash.status, StatusCode::OK, "{}", text(&dash));
        b.csrf = csrf_of(&text(&dash));
        b
    }

    pub async fn get(&self, f: &Fixture, path: &str) -> Reply {
        f.send(Request::get(path).header(header::COOKIE, &self.cookie).body(Body::empty()).unwrap()).await
    }

    /// Posts a form; `csrf` is added unless the fields carry one.
    pub async fn post(&self, f: &Fixture, path: &str, fields: &[(&str, &str)]) -> Reply {
        let mut pairs: Vec<(String, String)> = fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        if !fields.iter().any(|(k, _)| *k == "csrf") {
            pairs.push(("csrf".into(), self.csrf.clone()));
        }
        let body = pairs.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&");
        f.send(
            Request::post(path)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::COOKIE, &self.cookie)
                .body(Body::from(body))
                .unwrap(),
        )
        .await
    }
}

pub fn enc(s: &str) -> String {
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

/// A GET with a bearer token.
pub async fn api_get(f: &Fixture, path: &str, token: &str) -> Reply {
    f.send(Request::get(path).header(header::AUTHORIZATION, format!("Bearer {token}")).body(Body::empty()).unwrap())
        .await
}

/// The text of every `<td>`/`<th>` of each `<tr>` inside the element with `id`.
pub fn html_rows(html: &str, table_id: &str) -> Vec<Vec<String>> {
    let start = html.find(&format!("id=\"{table_id}\"")).unwrap_or_else(|| panic!("no #{table_id}"));
    let end = start + html[start..].find("</table>").unwrap();
    let table = &html[start..end];
    table
        .split("<tr")
        .skip(1)
        .map(|tr| {
            let mut cells = Vec::new();
            let mut rest = tr;
            while let Some(open) = rest.find("<t") {
                let after = &rest[open + 2..];
                if !(after.starts_with('d') || after.starts_with('h')) {
                    rest = after;
                    continue;
                }
                let body_start = open + rest[open..].find('>').unwrap() + 1;
                let close = body_start + rest[body_start..].find("</t").unwrap();
                cells.push(strip_tags(&rest[body_start..close]));
                rest = &rest[close + 3..];
            }
            cells
        })
        .collect()
}

fn strip_tags(s: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for c in s.chars() {
        match c {
            '<' => inside = true,
            '>' => inside = false,
            c if !inside => out.push(c),
            _ => {}
        }
    }
    out.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").trim().to_string()
}
