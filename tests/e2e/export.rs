//! The records export through the real server: paging yields every record of the caller's
//! unit exactly once, the cursor resumes with what changed since, CSV per kind, scope, the
//! read-only API client token (no push, no pull, no admin), revocation, and bad cursors.

use std::collections::HashMap;

use ohassist_tests::*;

const A: &str = "350121";
const B: &str = "350122";

/// Every record line of the pages after `cursor` (page size `limit`), and the final cursor.
fn walk(url: &str, token: &str, cursor: &str, limit: usize) -> (Vec<serde_json::Value>, String, usize) {
    let mut cursor = cursor.to_string();
    let mut records = Vec::new();
    let mut pages = 0;
    loop {
        let a = get(&format!("{url}/api/v1/export?cursor={cursor}&limit={limit}"), Some(token));
        assert_eq!(a.status, 200, "{}", a.text());
        assert!(a.header("content-type").starts_with("application/jsonl"), "{}", a.header("content-type"));
        pages += 1;
        let text = a.text();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let (tail, body) = lines.split_last().expect("a cursor line");
        assert!(body.len() <= limit);
        assert_eq!(tail["count"], body.len());
        assert_eq!(tail["next_cursor"].as_str().unwrap(), a.header("x-ohassist-next-cursor"), "header = last line");
        assert_eq!(tail["more"].as_bool().unwrap().to_string(), a.header("x-ohassist-more"));
        records.extend(body.iter().cloned());
        cursor = tail["next_cursor"].as_str().unwrap().to_string();
        if !tail["more"].as_bool().unwrap() {
            return (records, cursor, pages);
        }
        assert!(pages < 1_000, "the pages end");
    }
}

fn client_add(server: &Server, name: &str, unit: &str) -> (String, String) {
    let out = server.cli(&["client", "add", "--name", name, "--org-unit", unit], "");
    let token = out.lines().find_map(|l| l.strip_prefix("token: ")).expect("a token line").to_string();
    let id = out.lines().find_map(|l| l.rsplit_once(", id ").map(|(_, id)| id.to_string())).expect("an id");
    (id, token)
}

#[test]
fn paging_cursor_scope_and_read_only_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    let url = server.url();
    server.add_user("insp_a", "inspector", A, PASSWORD);
    server.add_user("insp_b", "inspector", B, PASSWORD);
    server.add_user("sup_a", "supervisor", A, PASSWORD);
    server.add_user("admin_city", "admin", "350100", PASSWORD);

    // County A: 20 enterprises and 40 visits; county B: 5 enterprises.
    let a = Phone::new(&url);
    a.login("insp_a", PASSWORD);
    let mut visit_ids = Vec::new();
    for i in 0..20 {
        a.store.create_enterprise(enterprise(i, A)).unwrap();
        for _ in 0..2 {
            visit_ids.push(a.store.create_visit(visit(i)).unwrap());
        }
    }
    a.sync();
    let b = Phone::new(&url);
    b.login("insp_b", PASSWORD);
    for i in 100..105 {
        b.store.create_enterprise(enterprise(i, B)).unwrap();
    }
    b.sync();

    let (client_id, client) = client_add(&server, "省平台", A);

    // Every record of A exactly once, over pages of 7; none of B.
    let (records, end, pages) = walk(&url, &client, "0", 7);
    assert!(pages >= 9, "{pages} pages");
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in &records {
        *seen.entry(r["id"].as_str().unwrap().to_string()).or_default() += 1;
    }
    assert_eq!(records.len(), 60, "20 enterprises and 40 visits");
    assert!(seen.values().all(|n| *n == 1), "each record once");
    for id in &visit_ids {
        assert!(seen.contains_key(id), "visit {id} exported");
    }
    assert!(!seen.contains_key(&credit_code(100)), "another county's enterprise is not exported");
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "ordered by feed position");
    let e0 = records.iter().find(|r| r["id"] == credit_code(0)).unwrap();
    assert_eq!(e0["kind"], "enterprise");
    assert_eq!(e0["record"]["name"], "测试企业0");
    assert_eq!(e0["record"]["county"]["code"], A);

    // A supervisor of A sees the same; the city's admin sees both counties.
    let sup = token(&url, "sup_a", PASSWORD, "sup-a-laptop");
    assert_eq!(walk(&url, &sup, "0", 500).0.len(), 60);
    let city = token(&url, "admin_city", PASSWORD, "admin-laptop");
    assert_eq!(walk(&url, &city, "0", 500).0.len(), 65);

    // Nothing changed: the cursor returns nothing. Then three visits change and one
    // enterprise is added: exactly those four come after the cursor, as they are now.
    let (none, same, _) = walk(&url, &client, &end, 7);
    assert!(none.is_empty() && same == end, "{none:?}");
    for id in &visit_ids[..3] {
        a.store.edit_visit(id, |v| v.notes = "复查完成".into()).unwrap();
    }
    a.store.create_enterprise(enterprise(50, A)).unwrap();
    b.store.edit_enterprise(&credit_code(100), |e| e.address = "另一县".into()).unwrap();
    a.sync();
    b.sync();
    let (changed, _, _) = walk(&url, &client, &end, 2);
    let ids: Vec<&str> = changed.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(changed.len(), 4, "{ids:?}");
    for id in &visit_ids[..3] {
        let r = changed.iter().find(|r| r["id"] == id.as_str()).unwrap();
        assert_eq!(r["record"]["notes"], "复查完成");
    }
    assert!(ids.contains(&credit_code(50).as_str()));

    // CSV of one kind: a header of the record's columns, one row per enterprise.
    let csv = get(&format!("{url}/api/v1/export?format=csv&kind=enterprise&limit=100"), Some(&client));
    assert_eq!(csv.status, 200, "{}", csv.text());
    assert!(csv.header("content-type").starts_with("text/csv"));
    assert_eq!(csv.header("x-ohassist-more"), "false");
    let text = csv.text();
    let mut lines = text.lines();
    let header = lines.next().unwrap().trim_start_matches('\u{feff}');
    assert!(header.starts_with("id,seq,updated_at,has_conflicts,"), "{header}");
    assert!(header.contains(",county.code,") && header.contains(",credit_code,"), "{header}");
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 21, "the enterprises of A, no visit");
    assert!(rows.iter().any(|r| r.starts_with(&format!("{},", credit_code(0)))));

    // The API client's token reads the export only: push, pull and admin are refused.
    let push = post(&format!("{url}/api/v1/sync/push"), Some(&client), SYNC_HEADERS, Vec::new());
    assert_eq!((push.status, push.code().as_str()), (403, "forbidden"), "{}", push.text());
    let pull = post(&format!("{url}/api/v1/sync/pull"), Some(&client), SYNC_HEADERS, Vec::new());
    assert_eq!(pull.status, 403, "{}", pull.text());
    let admin = get(&format!("{url}/api/v1/admin/users"), Some(&client));
    assert_eq!((admin.status, admin.code().as_str()), (403, "forbidden"));
    let dashboard = get(&format!("{url}/api/v1/dashboard"), Some(&client));
    assert_eq!(dashboard.status, 403);
    // An inspector may not export; no token is unauthorised.
    let insp = a.store.meta("token").unwrap().unwrap();
    assert_eq!(get(&format!("{url}/api/v1/export"), Some(&insp)).status, 403);
    assert_eq!(get(&format!("{url}/api/v1/export"), None).status, 401);

    // Bad input: 400 naming the field, in both languages.
    for (query, field) in [
        ("cursor=abc", "cursor"),
        ("cursor=-1", "cursor"),
        ("cursor=", "cursor"),
        ("kind=", "kind"),
        ("limit=0", "limit"),
        ("limit=100000", "limit"),
        ("format=xml", "format"),
        ("kind=user", "kind"),
    ] {
        let r = get(&format!("{url}/api/v1/export?{query}"), Some(&client));
        assert_eq!(r.status, 400, "{query}: {}", r.text());
        assert_eq!(r.json()["field"], field, "{query}");
        assert!(
            !r.json()["message"].as_str().unwrap().is_empty() && !r.json()["message_en"].as_str().unwrap().is_empty()
        );
    }

    // A cursor this server never gave (beyond its feed): 409, naming it.
    let r = get(&format!("{url}/api/v1/export?cursor=999999999"), Some(&client));
    assert_eq!((r.status, r.code().as_str()), (409, "cursor_ahead"), "{}", r.text());
    assert_eq!(r.json()["field"], "cursor");

    // Listed, then revoked: the token is refused from then on.
    assert!(server.cli(&["client", "list"], "").contains("省平台"));
    server.cli(&["client", "revoke", &client_id], "");
    let r = get(&format!("{url}/api/v1/export"), Some(&client));
    assert_eq!((r.status, r.code().as_str()), (401, "unauthorized"));
    assert_eq!(post(&format!("{url}/api/v1/sync/push"), Some(&client), SYNC_HEADERS, Vec::new()).status, 401);
}
