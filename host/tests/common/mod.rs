//! Helpers shared by the `paddock` command's tests.

use std::path::PathBuf;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

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

/// How long a host may take to stop after it is signalled.
pub const STOP_WITHIN: Duration = Duration::from_secs(60);

/// Waits for `child` to exit, for at most [`STOP_WITHIN`]; past that it
/// kills the child and fails naming `what`, so a host that misses its
/// signal fails its test rather than hanging the suite.
pub fn exits(child: &mut Child, what: &str) -> ExitStatus {
    let deadline = Instant::now() + STOP_WITHIN;
    loop {
        if let Some(status) = child.try_wait().expect("polling a child process") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not exit within {STOP_WITHIN:?} of its signal; killed it");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
