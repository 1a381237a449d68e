//! The domain layer knows no HTTP: outside `server/src/api/` and `server/src/web/`, no source
//! file names a status code, a response or the HTTP layer's error types. Each domain module
//! returns its own error, which only `api/error.rs` and `web/mod.rs` map to status codes.

use std::path::{Path, PathBuf};

/// What only the HTTP layer may name.
const HTTP_ONLY: &[&str] =
    &["StatusCode", "axum::http", "IntoResponse", "api::error", "ApiError", "ApiResult", "WebError", "DbCalls"];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_file_outside_api_and_web_knows_http_status_codes_or_their_errors() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let domain: Vec<&PathBuf> =
        files.iter().filter(|p| !p.starts_with(src.join("api")) && !p.starts_with(src.join("web"))).collect();
    // The walk found the domain: a moved folder must not make this test pass vacuously.
    for expected in ["db.rs", "records.rs", "records/push.rs", "attachments.rs", "accounts.rs", "login.rs", "export.rs"]
    {
        assert!(domain.iter().any(|p| p.ends_with(expected)), "{expected} not found under {}", src.display());
    }
    let mut found = Vec::new();
    for path in domain {
        let text = std::fs::read_to_string(path).unwrap();
        for (n, line) in text.lines().enumerate() {
            for word in HTTP_ONLY {
                if line.contains(word) {
                    found.push(format!("{}:{}: {word}", path.strip_prefix(&src).unwrap().display(), n + 1));
                }
            }
        }
    }
    assert!(found.is_empty(), "HTTP outside api/ and web/:\n{}", found.join("\n"));
}

/// The storage contract (ADR 0008): outside `server/src/sql/`, only the SQLite-only work
/// (`db.rs` opening the file, `backup.rs`) and unit tests name rusqlite; every other module
/// speaks `sql::Connection`, so it runs on PostgreSQL too.
#[test]
fn only_the_storage_contract_and_the_sqlite_only_work_name_rusqlite() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    assert!(files.iter().any(|p| p.ends_with("sql/mod.rs")), "sql/mod.rs not found under {}", src.display());
    let allowed = |p: &Path| p.starts_with(src.join("sql")) || p.ends_with("db.rs") || p.ends_with("backup.rs");
    let mut found = Vec::new();
    for path in files.iter().filter(|p| !allowed(p)) {
        let text = std::fs::read_to_string(path).unwrap();
        // Unit tests may build an SQLite connection to hand to the contract.
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for (n, line) in code.lines().enumerate() {
            if line.contains("rusqlite") {
                found.push(format!("{}:{}", path.strip_prefix(&src).unwrap().display(), n + 1));
            }
        }
    }
    assert!(found.is_empty(), "rusqlite outside the storage contract:\n{}", found.join("\n"));
}
