//! `cargo run -p uniffi-bindgen -- generate --library <lib> --language kotlin --out-dir <dir>`:
//! the generator at exactly the uniffi version `ohassist-ffi` is built with.

fn main() {
    uniffi::uniffi_bindgen_main()
}
