//! `ohassist-seed [DIR]`: starts the real server on a seeded county (`ohassist_tests::seed`),
//! prints one JSON line with its address, tokens and ids, and serves until its standard input
//! closes. `scripts/conformance.sh` runs schemathesis against it.

use std::io::{Read, Write};

fn main() {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let dir = std::env::args_os().nth(1).map(std::path::PathBuf::from).unwrap_or_else(|| tmp.path().to_path_buf());
    let seeded = ohassist_tests::seed::seed(&dir);
    let mut out = std::io::stdout();
    writeln!(out, "{}", seeded.json()).expect("stdout");
    out.flush().expect("stdout");
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    // Dropping `seeded` stops the server.
}
