//! Replays every input committed under `fuzz/corpus/<target>/` through the
//! checks its fuzz target runs (the same function), so `cargo test` keeps
//! what the fuzzers found fixed. `fuzz/README.md` says how to fuzz.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

/// Runs `check` on every file of the target's corpus; a failure names the file.
fn replay(target: &str, check: fn(&[u8])) {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let entries = std::fs::read_dir(&folder)
        .unwrap_or_else(|error| panic!("reading {}: {error}", folder.display()));
    let mut replayed = 0;
    for entry in entries {
        let path = entry.expect("a corpus entry").path();
        let data = std::fs::read(&path)
            .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
        if catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
            panic!("{} fails {target}'s checks", path.display());
        }
        replayed += 1;
    }
    assert!(replayed > 0, "{} holds no inputs", folder.display());
}

#[test]
fn fuzz_corpus_replays() {
    replay("devcluster_request", devcluster::fuzzing::request);
    replay("devcluster_patch", devcluster::fuzzing::patch);
    replay("devcluster_protobuf", devcluster::fuzzing::protobuf);
}
