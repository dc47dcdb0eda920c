//! The Kubernetes side: the client, discovery, shared informers and their
//! stores.

mod client;
mod discovery;
mod informer;
mod registry;
mod store;

pub use client::{AGENT, client};
pub use discovery::{Discovery, Resource, split_api_version};
pub use informer::{InformerEvent, InformerStats, SharedInformer};
pub use registry::InformerRegistry;
pub use store::{ObjectKey, OwnerRef, Store, StoredObject};

/// An error talking to the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The API server does not serve this kind.
    #[error("the cluster does not serve kind `{kind}` of `{api_version}`")]
    UnknownKind {
        /// The apiVersion asked for.
        api_version: String,
        /// The kind asked for.
        kind: String,
        /// What discovery answered.
        #[source]
        source: Box<kube::Error>,
    },
    /// kube could not build a client from the configuration.
    #[error("cannot build a Kubernetes client from the configuration")]
    Client(#[source] Box<kube::Error>),
}
