//! Fuzzes wasm_controller_spec; the checks live in `paddock::fuzzing` so the corpus replay test runs the same ones.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| paddock::fuzzing::wasm_controller_spec(data));
