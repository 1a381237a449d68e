//! The console's heaviest pages for a province of 100 counties, 20,000 enterprises and
//! 100,000 visits, timed server-side through the router (`oneshot`, no socket): the
//! dashboard and Table 2 (HTML, JSON, XLSX), Table 1 and the monthly 月调度 page. Target:
//! ≤ 200 ms a page.
//!
//! The status rows are computed by `status::table1_status` from generated records (via
//! `reports::status::write_rows`, the function the push path uses); the documents table
//! holds placeholders, because none of the pages measured reads a document.
//!
//! Run: `cargo bench -p ohassist-server --bench web`.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use ohassist_core::model::*;
use ohassist_server::accounts::{self, NewUser, Role};
use ohassist_server::db::{now, Db};
use ohassist_server::reports::status::write_rows;
use ohassist_server::sql::params;
use ohassist_server::web::session;
use ohassist_server::{app, AppState};
use tower::ServiceExt;

const COUNTIES: usize = 100;
const ENTERPRISES: usize = 20_000;
const VISITS_PER_ENTERPRISE: usize = 5;
const YEAR: i32 = 2025;

fn county(i: usize) -> String {
    format!("21{:02}{:02}", i / 10 + 1, i % 10 + 1)
}

fn populate(db: &Db) -> (String, String) {
    let mut conn = db.blocking_writer();
    let admin = accounts::create_user(
        &conn,
        &NewUser {
            username: "prov",
            display_name: "省卫健委",
            role: Role::Supervisor,
            org_unit: "210000",
            password: "benchmark-password",
        },
        now(),
    )
    .unwrap();
    let tx = conn.transaction().unwrap();
    {
        let mut doc = tx.prepare("INSERT INTO documents (id, kind, bytes, heads, county_code, has_conflicts, updated_at) VALUES (?1, ?2, x'', '[]', ?3, 0, 0)").unwrap();
        let mut visit_row = tx
            .prepare(
                "INSERT INTO visits (id, enterprise_id, county_code, visit_date, review_state, inspectors, deleted, has_conflicts,
                    declaration, detection, health_examination, principal_trained, managers_trained, workers_trained)
                 VALUES (?1, ?2, ?3, ?4, 'submitted', '{}', 0, 0, NULL, NULL, NULL, 0, 0, 0)",
            )
            .unwrap();
        for i in 0..ENTERPRISES {
            let c = county(i % COUNTIES);
            let code = ohassist_core::synthetic::credit_code(&c, i as u64);
            let mut e = Enterprise {
                credit_code: code.clone(),
                name: format!("企业{i:05}"),
                county: County { code: c.clone(), name: format!("县区{}", i % COUNTIES) },
                industry: Some(Industry::ALL[i % 5]),
                special_governance: i % 7 == 0,
                city_level_target: i % 50 == 0,
                ..Default::default()
            };
            e.add_year(YEAR);
            doc.execute(params![code, "enterprise", c]).unwrap();
            let mut visits = Vec::new();
            for k in 0..VISITS_PER_ENTERPRISE {
                let mut v = Visit {
                    enterprise_id: code.clone(),
                    county_code: c.clone(),
                    visit_date: format!("{YEAR}-{:02}-10", (i + k) % 12 + 1),
                    ..Default::default()
                };
                if (i + k) % 3 == 0 {
                    v.self_inspection.set(ChecklistItem::Declaration, Compliance::Compliant, "");
                }
                if (i + k) % 4 == 0 {
                    v.self_inspection.set(ChecklistItem::HealthExamination, Compliance::Compliant, "");
                }
                if k == 2 {
                    v.training.sessions.insert(
                        new_item_id(),
                        TrainingSession {
                            audience: Some(TrainingAudience::Workers),
                            attendees: 10,
                            organised_by_authority: true,
                            ..Default::default()
                        },
                    );
                }
                let id = format!("v{i:05}{k}");
                doc.execute(params![id, "visit", c]).unwrap();
                visit_row.execute(params![id, code, c, v.visit_date]).unwrap();
                visits.push(v);
            }
            write_rows(&tx, &e, &visits).unwrap();
        }
    }
    tx.commit().unwrap();
    let (token, hash) = accounts::new_token();
    accounts::issue_token(&conn, &admin.id, "bench", "bench", &hash, now()).unwrap();
    (session::create(&conn, &admin.id, now()).unwrap(), token)
}

/// The machine, for the table's heading: CPU model and cores.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    format!("{cpu}, {cores} cores available, {}", std::env::consts::OS)
}

fn main() {
    println!("machine: {}", machine());
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open_dir(dir.path()).unwrap();
    let t = Instant::now();
    let (secret, token) = populate(&db);
    println!(
        "populated {COUNTIES} counties, {ENTERPRISES} enterprises, {} visits in {:.1} s",
        ENTERPRISES * VISITS_PER_ENTERPRISE,
        t.elapsed().as_secs_f64()
    );
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let router = app(AppState::new(db));
    let cookie = format!("{}={secret}", session::SESSION_COOKIE);
    let pages = [
        ("dashboard (HTML)", format!("/dashboard?year={YEAR}")),
        ("dashboard (JSON)", format!("/api/v1/dashboard?year={YEAR}")),
        ("Table 2 (HTML)", format!("/tables/2?year={YEAR}")),
        ("Table 2 (XLSX)", format!("/tables/2?year={YEAR}&format=xlsx")),
        ("Table 2 (CSV)", format!("/tables/2?year={YEAR}&format=csv")),
        ("Table 1 (HTML, 20,000 rows)", format!("/tables/1?year={YEAR}")),
        ("Table 1 (XLSX, 20,000 rows)", format!("/tables/1?year={YEAR}&format=xlsx")),
        ("enterprise list (first 500)", format!("/enterprises?year={YEAR}")),
        ("monthly 月调度 (HTML)", format!("/monthly?year={YEAR}&month=6")),
        ("monthly 月调度 (XLSX)", format!("/monthly?year={YEAR}&month=6&format=xlsx")),
        ("dashboard, default year", "/dashboard".to_string()),
    ];
    println!("{:<30} {:>9} {:>9} {:>9} {:>10}", "page", "min ms", "median", "max ms", "bytes");
    for (name, path) in pages {
        let mut times = Vec::new();
        let mut size = 0;
        for _ in 0..7 {
            let req = if path.starts_with("/api/") {
                Request::get(&path).header(header::AUTHORIZATION, format!("Bearer {token}"))
            } else {
                Request::get(&path).header(header::COOKIE, &cookie)
            };
            let req = req.body(Body::empty()).unwrap();
            let t = Instant::now();
            let resp = rt.block_on(router.clone().oneshot(req)).unwrap();
            let status = resp.status();
            let body = rt.block_on(axum::body::to_bytes(resp.into_body(), usize::MAX)).unwrap();
            times.push(t.elapsed());
            size = body.len();
            assert_eq!(status, StatusCode::OK, "{path}");
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!("{:<30} {:>9.1} {:>9.1} {:>9.1} {:>10}", name, ms(times[0]), ms(times[3]), ms(times[6]), size);
    }
}
