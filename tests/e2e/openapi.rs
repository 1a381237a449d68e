//! Every operation of the served OpenAPI document answers on the real binary, over a seeded
//! county: never the router's 404 or 405, whatever the documented method and path.

use ohassist_core::sync::wire;
use ohassist_tests::seed::seed;

fn send(method: &str, url: &str, token: &str, path: &str) -> (u16, Vec<u8>) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let mut req = client.request(m, url).bearer_auth(token);
        req = match path {
            "/api/v1/login" => req.body(
                serde_json::json!({"username": "city", "password": ohassist_tests::PASSWORD, "device_id": "probe"})
                    .to_string(),
            ),
            "/api/v1/device/report" => req.body(r#"{"pending_changes":0,"pending_attachments":0}"#),
            "/api/v1/admin/users" if method == "post" => {
                req.body(r#"{"username":"probe","display_name":"探查","role":"inspector","org_unit":"210102"}"#)
            }
            "/api/v1/sync/push" => {
                req.header(wire::PROTOCOL_HEADER, wire::PROTOCOL_VERSION).body(wire::encode(&wire::PushRequest {
                    protocol: wire::PROTOCOL_VERSION,
                    changes: vec![],
                    authors: Vec::new(),
                }))
            }
            "/api/v1/sync/exchange" => {
                req.header(wire::PROTOCOL_HEADER, wire::PROTOCOL_VERSION).body(wire::encode(&wire::ExchangeRequest {
                    protocol: wire::PROTOCOL_VERSION,
                    push: wire::PushRequest { protocol: wire::PROTOCOL_VERSION, changes: vec![], authors: Vec::new() },
                    pull: wire::PullRequest {
                        protocol: wire::PROTOCOL_VERSION,
                        cursor: 0,
                        page_token: None,
                        pending: None,
                    },
                }))
            }
            "/api/v1/sync/pull" => {
                req.header(wire::PROTOCOL_HEADER, wire::PROTOCOL_VERSION).body(wire::encode(&wire::PullRequest {
                    protocol: wire::PROTOCOL_VERSION,
                    cursor: 0,
                    page_token: None,
                    pending: None,
                }))
            }
            _ => req,
        };
        let resp = req.send().await.expect("request sent");
        (resp.status().as_u16(), resp.bytes().await.unwrap().to_vec())
    })
}

#[test]
fn every_documented_operation_answers_on_the_real_server() {
    let dir = tempfile::tempdir().unwrap();
    let s = seed(dir.path());
    let base = s.server.url();
    let doc = ohassist_tests::get(&format!("{base}/api/v1/openapi.json"), None).json();
    let logout_token = ohassist_tests::token(&base, "city", ohassist_tests::PASSWORD, "logout-probe");
    let mut seen = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, _) in item.as_object().unwrap() {
            let inspector_only = path.contains("/upload");
            let token = match path.as_str() {
                p if inspector_only || p.starts_with("/api/v1/sync/") || p == "/api/v1/device/report" => {
                    &s.inspector_token
                }
                p if p.starts_with("/api/v1/admin/") => &s.admin_token,
                "/api/v1/logout" => &logout_token,
                _ => &s.supervisor_token,
            };
            let mut uri = path
                .replace("{sha256}", &s.attachment)
                .replace("{code}", &s.enterprise)
                .replace("{id}", if path.contains("/devices/") { &s.spare_device } else { &s.visit });
            if path.contains("/attachments/") {
                uri.push_str(&format!("?visit={}", s.visit));
            }
            if method == "patch" {
                uri.push_str("&offset=0&total=1");
            }
            let (status, body) = send(method, &format!("{base}{uri}"), token, path);
            assert!(
                status != 404 && status != 405,
                "{method} {uri} answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
            seen += 1;
        }
    }
    assert!(seen >= 22, "{seen} operations");
    // The logout ended its own token only.
    assert_eq!(ohassist_tests::get(&format!("{base}/api/v1/dashboard"), Some(&logout_token)).status, 401);
    assert_eq!(ohassist_tests::get(&format!("{base}/api/v1/dashboard"), Some(&s.supervisor_token)).status, 200);
}
