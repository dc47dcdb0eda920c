//! Helpers shared by the `paddock` command's tests.

use std::path::PathBuf;

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .expect("the host crate lives in the workspace")
}

/// A built guest component by file stem (`replica_floor`).
pub fn module(name: &str) -> PathBuf {
    let dir = std::env::var_os("PADDOCK_GUESTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/guests/wasm32-wasip2/release"));
    let path = dir.join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run `cargo xtask build-guests` (`cargo xtask test` does it)",
        path.display()
    );
    path
}

/// The compile cache the test suite shares.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("PADDOCK_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/paddock-cache"))
}
