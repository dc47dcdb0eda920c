//! An embedded, in-process Kubernetes-compatible API server.
//!
//! `devcluster` serves the Kubernetes REST API from memory on 127.0.0.1, as a 1.36
//! kube-apiserver with its default feature gates does: every built-in resource (67 in 22
//! group-versions, taken from k8s-openapi's types) and CRDs, with APIService objects for each
//! group-version; discovery (legacy and aggregated), CRUD, list with selectors and pagination,
//! watch with resume, bookmarks and 410, merge/JSON/strategic patches (with their directives)
//! and server-side apply, the status, scale, binding, eviction, approval, finalize,
//! ephemeralcontainers and resize subresources (log, exec, attach, portforward and proxy answer
//! as a cluster without kubelets), autoscaling v1/v2 conversion, the validation and defaults
//! clients trip over most, CRD schema defaults, bounds and CEL rules, server-side tables with
//! each kind's printer columns, finalizers, garbage collection and namespace deletion. It is
//! the cluster `paddock dev` starts and the one every test runs against. Bodies are JSON, YAML or, for every built-in
//! kind, Kubernetes protobuf (requests, answers and watch streams, as kubectl and client-go
//! send and ask for them).
//!
//! It speaks HTTPS (a CA made at start, or kept in the data directory; its certificate is in the
//! generated kubeconfig) and knows who is calling, as a real kube-apiserver does:
//!
//! - **Authentication**: the admin bearer token of [`DevCluster::kubeconfig_yaml`] (user
//!   `kubernetes-admin`, group `system:masters`); client certificates signed by the cluster CA
//!   (user from the CommonName, groups from the Organizations, see
//!   [`DevCluster::kubeconfig_yaml_for_user`]); ServiceAccount tokens from TokenRequest
//!   (`kubectl create token`, signed JWTs, checked against the ServiceAccount's uid) and
//!   TokenReview; anything else is `system:anonymous`, and a bad token is 401.
//! - **RBAC** on every request (Roles, ClusterRoles with aggregation, bindings, subresources,
//!   resourceNames, non-resource paths), with the default roles (`cluster-admin`, `admin`,
//!   `edit`, `view`, `system:basic-user`, `system:discovery`, `system:public-info-viewer`) and
//!   the escalation check; `system:masters` bypasses it. 403s read as a real server's.
//! - **Impersonation** headers (`kubectl --as`, `--as-group`), each authorised by `impersonate`.
//! - **Access reviews**: SubjectAccessReview, LocalSubjectAccessReview, SelfSubjectAccessReview
//!   (`kubectl auth can-i`), SelfSubjectRulesReview (`auth can-i --list`), SelfSubjectReview
//!   (`auth whoami`).
//! - A `default` ServiceAccount and the `kube-root-ca.crt` ConfigMap in every namespace, and
//!   the projected token volume on Pods.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use devcluster::{DevCluster, FaultRule, Options};
//!
//! let cluster = DevCluster::start(Options::new().workload_simulator(true)).await?;
//! // A kube-rs client (kube is not a dependency of this crate):
//! //   let kc = kube::config::Kubeconfig::from_yaml(&cluster.kubeconfig_yaml())?;
//! //   let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
//! //   let client = kube::Client::try_from(config)?;
//! cluster.write_kubeconfig("kubeconfig")?; // for kubectl
//! cluster.inject(FaultRule::too_many_requests().verb("list").resource("apps", "deployments").times(2));
//! assert_eq!(cluster.watches_open("apps", "deployments"), 0);
//! cluster.close_watches();
//! cluster.expire_watch_history();
//! cluster.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! The same faults are reachable over HTTP for `paddock dev`, under `/devcluster/v1/`, for the
//! admin (or anyone RBAC allows those paths, such as a `cluster-admin`): `POST close-watches`, `POST expire-history`, `POST faults` (a [`FaultRule`] as
//! JSON), `DELETE faults`, `PUT latency` (`{"millis": 50}`), `PUT simulator`
//! (`{"enabled": true}`) and `GET counters`.
//!
//! Beside the API server, [`Options::oci_registry`] starts an [`OciRegistry`]: an in-memory OCI
//! distribution registry over plain HTTP on its own port, to push and pull WebAssembly
//! components offline. It also runs alone ([`OciRegistry::start`]).

mod admin;
mod apiservices;
mod apply;
mod audit;
mod auth;
mod cluster;
mod convert;
mod core;
mod crd;
mod defaults;
mod delete;
mod discovery;
mod events;
mod faults;
mod formats;
#[doc(hidden)]
pub mod fuzzing;
mod gc;
mod json;
mod kubeconfig;
mod list;
mod oci;
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
mod subresources;
mod table;
mod tls;
mod validation;
mod watch;
mod write;

pub use cluster::{DevCluster, Error, Options};
pub use faults::{FaultKind, FaultRule};
pub use kubeconfig::CONTEXT_NAME;
pub use oci::{OciError, OciOptions, OciRegistry};
pub use persist::PersistError;
pub use registry::{BuiltinKind, builtin_kinds};
pub use selector::{LabelSelector, SelectorError};
pub use tls::TlsError;
