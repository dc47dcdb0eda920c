//! Paddock: a Kubernetes controller host that runs each controller's
//! reconcile logic as a sandboxed WebAssembly component.
//!
//! The stages of the flow each have a module:
//! - [`wasm`]: the engine, loading and caching components, limits, and the
//!   calls into a guest (`describe`, `reconcile`, `map`);
//! - [`cluster`]: discovery, shared informers and their stores;
//! - [`queue`]: the work queue of each controller;
//! - [`controller`]: routing events to queues, and the workers;
//! - [`actions`]: the guest's answers, validated, checked against the
//!   [`grants`] and executed;
//! - [`config`]: the controllers file;
//! - [`crd`]: the `WasmController` and `ClusterWasmController` resources;
//! - [`reload`]: keeping the running controllers equal to their sources
//!   (the controllers file, `WasmController` resources), swapping new
//!   versions in live;
//! - [`ops`]: `/healthz`, `/readyz` and `/metrics`;
//! - [`retry`]: the backoff every wait on the cluster uses;
//! - [`selector`]: Kubernetes label selectors, for `cache.list`;
//! - [`identity`]: the ServiceAccount each controller acts as, and the
//!   access reviews that authorise it;
//! - [`replication`]: several hosts on one cluster: the ring's Leases and
//!   the fence that lets one host work;
//! - [`harness`]: the offline harness behind `paddock test`;
//! - [`record`]: recording what guests see and answer, replaying it
//!   offline, and comparing two answers (shadow runs, replays);
//! - [`kinds`]: which apiVersions serve a kind, and the advice for a kind
//!   named where it is not served;
//! - [`yaml`]: parsing users' YAML files, with errors that name the file.

pub mod actions;
pub mod cluster;
pub mod config;
pub mod controller;
pub mod crd;
#[doc(hidden)]
pub mod fuzzing;
pub mod grants;
pub mod harness;
pub mod identity;
pub mod kinds;
pub mod oci;
pub mod ops;
pub mod queue;
pub mod record;
pub mod reload;
pub mod replication;
pub mod retry;
pub mod selector;
pub mod wasm;
pub mod yaml;
