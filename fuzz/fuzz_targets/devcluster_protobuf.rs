//! Fuzzes devcluster_protobuf; the checks live in `devcluster::fuzzing` so the corpus replay test runs the same ones.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| devcluster::fuzzing::protobuf(data));
