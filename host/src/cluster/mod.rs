//! The Kubernetes side: the client, discovery, shared informers and their
//! stores.

mod client;
mod discovery;
mod index;
mod informer;
mod projection;
mod registry;
mod slice;
mod store;
mod watcher;

pub use client::{AGENT, client};
pub use discovery::{Discovery, MAX_AGE, Resource, split_api_version};
pub use index::{IndexPaths, PathError};
pub use informer::{InformerEvent, InformerHealth, InformerStats, Shards, SharedInformer};
pub use projection::{ALWAYS_KEPT, Projection, Projections};
pub use registry::InformerRegistry;
pub use slice::Slice;
pub use store::{ObjectKey, OwnerRef, SeenJson, Store, StoredObject};

/// An error talking to the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The API server does not serve this kind.
    #[error(
        "the cluster does not serve kind `{kind}` of `{api_version}`{}",
        unknown_kind_fix(.api_version, .kind, .served_as.as_deref())
    )]
    UnknownKind {
        /// The apiVersion asked for.
        api_version: String,
        /// The kind asked for.
        kind: String,
        /// Where the cluster serves a kind of that name (its case
        /// ignored); `None` when its API groups could not be listed.
        served_as: Option<Vec<crate::kinds::ServedKind>>,
        /// What discovery answered.
        #[source]
        source: Box<kube::Error>,
    },
    /// The API server did not accept the credentials (401).
    #[error(
        "the API server rejected the credentials (401 Unauthorized); \
         check the token or client certificate of the kubeconfig"
    )]
    Unauthorized(#[source] Box<kube::Error>),
    /// The API server refused the request to the credentials' user (403).
    #[error("the API server forbids the request (403 Forbidden)")]
    Forbidden(#[source] Box<kube::Error>),
    /// The URL is not served (404): the kind, or its version, is gone.
    #[error("the API server does not serve the URL (404 Not Found)")]
    NotFound(#[source] Box<kube::Error>),
    /// The TLS handshake failed: the server's certificate is not signed by
    /// the configured authority, or does not name the server.
    #[error(
        "the TLS handshake with the API server failed; \
         check the certificate authority and server address of the kubeconfig"
    )]
    Tls(#[source] Box<kube::Error>),
    /// No connection to the API server.
    #[error("cannot reach the API server")]
    Unreachable(#[source] Box<kube::Error>),
    /// Any other failed request.
    #[error("a request to the API server failed")]
    Request(#[source] Box<kube::Error>),
    /// kube could not build a client from the configuration.
    #[error("cannot build a Kubernetes client from the configuration")]
    Client(#[source] Box<kube::Error>),
}

/// What to do about a kind the cluster does not serve, after `; `: the
/// apiVersions serving it, that the core group is written `v1`, or that
/// nothing serves it.
fn unknown_kind_fix(
    api_version: &str,
    kind: &str,
    served_as: Option<&[crate::kinds::ServedKind]>,
) -> String {
    match crate::kinds::advice(api_version, kind, served_as.unwrap_or_default()) {
        Some(advice) => format!("; {advice}"),
        None if served_as.is_some() => format!(
            "; it serves no kind `{kind}` in any API group: install the CustomResourceDefinition \
             that defines it, or check the kind's spelling"
        ),
        None => String::new(),
    }
}

impl ClusterError {
    /// A failed request, by what failed: the credentials (401), the rights
    /// (403), the URL (404), TLS, reaching the server, or something else.
    pub fn from_request(error: kube::Error) -> Self {
        let status = match &error {
            kube::Error::Api(status) => Some(status.code),
            _ => None,
        };
        let error = Box::new(error);
        match status {
            Some(401) => Self::Unauthorized(error),
            Some(403) => Self::Forbidden(error),
            Some(404) => Self::NotFound(error),
            Some(_) => Self::Request(error),
            None if caused_by_tls(&*error) => Self::Tls(error),
            None if caused_by_connection(&*error) => Self::Unreachable(error),
            None => Self::Request(error),
        }
    }

    /// Whether the API server could not be reached, or would not accept
    /// the host: the connection, TLS or the credentials failed.
    pub fn is_connection(&self) -> bool {
        matches!(
            self,
            Self::Unauthorized(_) | Self::Tls(_) | Self::Unreachable(_)
        )
    }
}

/// The causes of an error, outermost first.
fn causes<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(error), |error| error.source())
}

/// The error and what it wraps: `io::Error` does not give the error it
/// wraps as its source (only that error's source), so it is unwrapped here.
fn unwrapped<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(error), |error| {
        error
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .map(|inner| inner as &(dyn std::error::Error + 'static))
    })
}

/// Every error in the chain, io errors unwrapped.
fn every_cause<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    causes(error).flat_map(unwrapped)
}

/// Whether rustls failed somewhere in the error's causes (inside the TLS
/// stream's `io::Error`, inside hyper's connect error, inside kube's).
fn caused_by_tls(error: &(dyn std::error::Error + 'static)) -> bool {
    every_cause(error).any(|cause| cause.is::<rustls::Error>())
}

/// Whether the connection failed (refused, reset, timed out, no route).
fn caused_by_connection(error: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind;
    every_cause(error).any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                ErrorKind::ConnectionRefused
                    | ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::NotConnected
                    | ErrorKind::TimedOut
                    | ErrorKind::HostUnreachable
                    | ErrorKind::NetworkUnreachable
                    | ErrorKind::AddrNotAvailable
                    | ErrorKind::BrokenPipe
                    | ErrorKind::UnexpectedEof
            )
        })
    })
}

/// An error and its causes on one line, for logs and `/status`.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    causes(error)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

#[cfg(test)]
pub(crate) mod tests {
    use base64::Engine;

    use super::*;

    /// A client from a kubeconfig's text.
    pub(crate) async fn client_for(kubeconfig: &str) -> kube::Client {
        let kubeconfig =
            kube::config::Kubeconfig::from_yaml(kubeconfig).expect("the kubeconfig parses");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .expect("the kubeconfig is usable");
        client(config).expect("a client")
    }

    pub(crate) async fn devcluster() -> devcluster::DevCluster {
        devcluster::DevCluster::start(devcluster::Options::new())
            .await
            .expect("the embedded cluster starts")
    }

    async fn resolve_configmaps(client: kube::Client) -> ClusterError {
        Discovery::new(client)
            .resolve("v1", "ConfigMap")
            .await
            .expect_err("discovery fails")
    }

    #[tokio::test]
    async fn a_wrong_token_is_reported_as_401() {
        let cluster = devcluster().await;
        let client = client_for(&cluster.kubeconfig_yaml_for_token("not-the-token")).await;
        let error = resolve_configmaps(client).await;
        assert!(matches!(error, ClusterError::Unauthorized(_)), "{error:?}");
        let message = error_chain(&error);
        assert!(message.contains("401"), "{message}");
        assert!(!message.contains("does not serve"), "{message}");
    }

    #[tokio::test]
    async fn a_wrong_certificate_authority_is_reported_as_tls() {
        let cluster = devcluster().await;
        let other = devcluster().await;
        let b64 = |pem: &str| base64::engine::general_purpose::STANDARD.encode(pem);
        let kubeconfig = cluster
            .kubeconfig_yaml()
            .replace(&b64(cluster.ca_pem()), &b64(other.ca_pem()));
        assert_ne!(kubeconfig, cluster.kubeconfig_yaml(), "the CA was swapped");
        let error = resolve_configmaps(client_for(&kubeconfig).await).await;
        assert!(matches!(error, ClusterError::Tls(_)), "{error:?}");
        assert!(error.is_connection());
        let message = error_chain(&error);
        assert!(message.contains("TLS"), "{message}");
    }

    #[tokio::test]
    async fn a_closed_port_is_reported_as_unreachable() {
        let cluster = devcluster().await;
        let kubeconfig = cluster.kubeconfig_yaml();
        cluster.shutdown().await;
        let error = resolve_configmaps(client_for(&kubeconfig).await).await;
        assert!(matches!(error, ClusterError::Unreachable(_)), "{error:?}");
    }

    #[tokio::test]
    async fn an_unserved_kind_is_unknown_and_a_served_one_is_found() {
        let cluster = devcluster().await;
        let discovery = Discovery::new(client_for(&cluster.kubeconfig_yaml()).await);
        let error = discovery
            .resolve("example.com/v1", "Widget")
            .await
            .expect_err("not served");
        assert!(
            matches!(error, ClusterError::UnknownKind { .. }),
            "{error:?}"
        );
        let found = discovery.resolve("v1", "ConfigMap").await.expect("served");
        assert_eq!(found.plural, "configmaps");
    }
}
