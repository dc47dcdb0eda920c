//! An in-memory OCI distribution registry on 127.0.0.1, over plain HTTP, for pushing and
//! pulling WebAssembly components offline.
//!
//! It serves the part of the OCI Distribution Specification v1.1 that clients such as the
//! `oci-client` crate use to push and pull: `GET /v2/`; manifests by tag or digest (`GET`,
//! `HEAD`, `PUT`, stored byte for byte with the media type they were pushed with); blobs
//! (`GET`, `HEAD`); uploads in one request (`POST ?digest=`), in one `PUT` after a `POST`, or
//! in `PATCH` chunks, with cross-repository mounts; and tag lists. Digests are sha256 only.
//! Nothing is deleted. With basic auth on, every request needs the credentials.
//!
//! ```no_run
//! # async fn demo() -> Result<(), devcluster::OciError> {
//! use devcluster::{OciOptions, OciRegistry};
//!
//! let registry = OciRegistry::start(OciOptions::new().basic_auth("dev", "secret")).await?;
//! let reference = format!("{}/team/floor:v1", registry.host());
//! // push and pull `reference` with an OCI client over http://
//! assert_eq!(registry.manifest_pulls(), 0);
//! registry.shutdown().await;
//! # Ok(()) }
//! ```

mod credentials;
mod endpoints;
mod names;
mod refusal;
mod route;
mod storage;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use self::credentials::Credentials;
use self::endpoints::RegistryState;

/// Errors starting an [`OciRegistry`].
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The basic-auth user holds a `:`, which basic auth cannot carry.
    #[error("the registry user {user:?} holds a ':'; choose a user name without one")]
    UserWithColon {
        /// The user name given.
        user: String,
    },
}

/// How an [`OciRegistry`] starts.
#[derive(Debug, Clone, Default)]
pub struct OciOptions {
    port: u16,
    credentials: Option<Credentials>,
    max_blob_size: Option<u64>,
}

impl OciOptions {
    /// The defaults: any free port, no authentication, no limit on blob size (manifests are
    /// limited to 4 MiB).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The loopback port to listen on (default 0: any free port).
    #[must_use]
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Require HTTP basic auth with this user and password on every request (default: none).
    /// Requests without them get 401 with `WWW-Authenticate: Basic realm="paddock-dev"`.
    #[must_use]
    pub fn basic_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.credentials = Some(Credentials {
            user: user.into(),
            password: password.into(),
        });
        self
    }

    /// Refuse blobs larger than `bytes` with 413 `SIZE_INVALID` (default: no limit).
    #[must_use]
    pub fn max_blob_size(mut self, bytes: u64) -> Self {
        self.max_blob_size = Some(bytes);
        self
    }
}

/// A running in-memory OCI registry on 127.0.0.1, over plain HTTP. Image references name it
/// by [`host`](Self::host), e.g. `127.0.0.1:41234/team/floor:v1`.
///
/// Dropping the handle stops the server.
#[derive(Debug)]
pub struct OciRegistry {
    addr: SocketAddr,
    state: Arc<RegistryState>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

impl OciRegistry {
    /// Starts a registry and returns once it accepts connections.
    pub async fn start(options: OciOptions) -> Result<Self, OciError> {
        if let Some(credentials) = options.credentials.as_ref()
            && credentials.user.contains(':')
        {
            return Err(OciError::UserWithColon {
                user: credentials.user.clone(),
            });
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], options.port));
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| OciError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| OciError::Bind { addr, source })?;
        let state = Arc::new(RegistryState {
            credentials: options.credentials,
            max_blob_size: options.max_blob_size,
            ..RegistryState::default()
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let app = endpoints::router(state.clone());
        let server = tokio::spawn(async move {
            let serving = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = serving.await {
                tracing::warn!(error = %e, "the OCI registry stopped with an error");
            }
        });
        tracing::info!(%addr, "OCI registry listening");
        Ok(Self {
            addr,
            state,
            stop: Some(stop),
            server: Some(server),
        })
    }

    /// The socket address the registry listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The registry as image references name it: `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Blob `GET`s answered with the blob so far (`HEAD`s and refusals not counted).
    pub fn blob_pulls(&self) -> u64 {
        self.state.blob_pulls.load(Ordering::Relaxed)
    }

    /// Manifest `GET`s answered with the manifest so far (`HEAD`s and refusals not counted).
    pub fn manifest_pulls(&self) -> u64 {
        self.state.manifest_pulls.load(Ordering::Relaxed)
    }

    /// Fault injection: from now on, blob `digest` (`sha256:<hex>`) of repository `name` is
    /// served as `content`, which does not hash to it, as a corrupting or compromised
    /// registry would serve it. False when there is no such blob (or the digest is not one).
    pub fn tamper_blob(&self, name: &str, digest: &str, content: impl Into<bytes::Bytes>) -> bool {
        match names::Digest::parse(digest) {
            Ok(digest) => self
                .state
                .storage
                .tamper_blob(name, &digest, content.into()),
            Err(_) => false,
        }
    }

    /// Stops the registry: stops accepting connections, lets requests in progress finish (at
    /// most 5 s) and closes idle connections.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut server) = self.server.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut server)
                .await
                .is_err()
        {
            server.abort();
        }
    }
}

impl Drop for OciRegistry {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
