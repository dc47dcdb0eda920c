//! An embedded, in-process Kubernetes-compatible API server.
//!
//! `devcluster` serves the Kubernetes REST API (discovery, CRUD, list, watch, patch and
//! server-side apply, status and scale subresources, CRDs, finalizers and garbage collection)
//! from memory on 127.0.0.1 over HTTPS (a CA made at start, trusted by the generated kubeconfig)
//! with a bearer token. It is the cluster
//! `paddock dev` starts and the one every test runs against.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let cluster = devcluster::DevCluster::start(devcluster::Options::new()).await?;
//! std::fs::write("kubeconfig", cluster.kubeconfig_yaml())?;
//! cluster.inject(devcluster::FaultRule::too_many_requests().verb("list").times(2));
//! assert_eq!(cluster.watches_open("apps", "deployments"), 0);
//! # Ok(()) }
//! ```

mod admin;
mod apply;
mod cluster;
mod core;
mod crd;
mod defaults;
mod delete;
mod discovery;
mod events;
mod faults;
mod gc;
mod json;
mod kubeconfig;
mod list;
mod openapi;
mod patch;
mod persist;
mod protobuf;
mod registry;
mod scale;
mod schema;
mod selector;
mod server;
mod shared;
mod simulator;
mod status;
mod store;
mod table;
mod tls;
mod watch;
mod write;

pub use cluster::{DevCluster, Error, Options};
pub use faults::{FaultKind, FaultRule};
pub use kubeconfig::CONTEXT_NAME;
pub use persist::PersistError;
pub use tls::TlsError;
