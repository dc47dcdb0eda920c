//! Paddock: a Kubernetes controller host that runs each controller's
//! reconcile logic as a sandboxed WebAssembly component.
//!
//! The stages of the flow each have a module:
//! - [`wasm`]: the engine, loading and caching components, limits, and the
//!   calls into a guest (`describe`, `reconcile`, `map`);
//! - [`actions`]: the guest's answers, validated;
//! - [`selector`]: Kubernetes label selectors, for `cache.list`;
//! - [`harness`]: the offline harness behind `paddock test`.

pub mod actions;
pub mod harness;
pub mod selector;
pub mod wasm;
