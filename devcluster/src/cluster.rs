//! `DevCluster`, the handle on a running embedded API server, and its `Options`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{Notify, oneshot, watch};
use tokio::task::JoinHandle;

use crate::auth::authn::{Authenticator, PeerUser};
use crate::core::Core;
use crate::faults::{Counters, FaultRule, Faults};
use crate::oci::{OciOptions, OciRegistry};
use crate::shared::Shared;
use crate::tls::Identity;

/// Errors starting or using a `DevCluster`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The serving certificate could not be made.
    #[error("cannot set up TLS")]
    Tls(#[from] crate::tls::TlsError),
    /// The data directory could not be loaded.
    #[error("cannot load the stored cluster state")]
    Persist(#[from] crate::persist::PersistError),
    /// The audit log could not be opened.
    #[error("cannot open the audit log {}", path.display())]
    AuditLog {
        /// The file asked for.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The OCI registry asked for could not start.
    #[error("cannot start the OCI registry")]
    OciRegistry(#[from] crate::oci::OciError),
    /// The kubeconfig could not be written.
    #[error("cannot write the kubeconfig to {}", path.display())]
    WriteKubeconfig {
        /// The file asked for.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
}

/// How a `DevCluster` starts.
#[derive(Debug, Clone)]
pub struct Options {
    port: u16,
    workload_simulator: bool,
    watch_history: usize,
    bookmark_interval: Duration,
    namespace_deletion_delay: Duration,
    token: Option<String>,
    data_dir: Option<PathBuf>,
    audit_log: Option<PathBuf>,
    oci_registry: Option<OciOptions>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            port: 0,
            workload_simulator: false,
            watch_history: 10_000,
            bookmark_interval: Duration::from_secs(10),
            namespace_deletion_delay: Duration::from_millis(100),
            token: None,
            data_dir: None,
            audit_log: None,
            oci_registry: None,
        }
    }
}

impl Options {
    /// The defaults: a random port, simulator off, 10 000 changes of watch history, a bookmark
    /// every 10 s on idle watches that allow them, namespaces finalized 100 ms after their
    /// deletion, a random token.
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

    /// Whether Deployments, ReplicaSets and StatefulSets get their status set to follow
    /// `spec.replicas` (default off).
    #[must_use]
    pub fn workload_simulator(mut self, on: bool) -> Self {
        self.workload_simulator = on;
        self
    }

    /// How many changes the watch history keeps for resuming watches (default 10 000); a watch
    /// resuming from an older resourceVersion gets 410 Expired.
    #[must_use]
    pub fn watch_history(mut self, changes: usize) -> Self {
        self.watch_history = changes;
        self
    }

    /// How often a watch that allows bookmarks gets one while the cluster moves (default 10 s,
    /// kept between 10 ms and a day).
    #[must_use]
    pub fn bookmark_interval(mut self, interval: Duration) -> Self {
        self.bookmark_interval =
            interval.clamp(Duration::from_millis(10), Duration::from_secs(24 * 3600));
        self
    }

    /// How long a deleted Namespace stays `Terminating` before its contents are removed
    /// (default 100 ms; a real cluster takes seconds).
    #[must_use]
    pub fn namespace_deletion_delay(mut self, delay: Duration) -> Self {
        self.namespace_deletion_delay = delay;
        self
    }

    /// Keep the cluster's objects and identity in this directory across restarts (default:
    /// memory only). The state is loaded at start and saved shortly after every change and at
    /// shutdown; the CA, serving certificate, token-signing key and admin token are kept, so
    /// kubeconfigs and tokens issued before a restart still work after it. Watches cannot
    /// resume across a restart (410 Expired).
    #[must_use]
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Append an `audit.k8s.io/v1` Event for every request to this file, one JSON object per
    /// line, as kube-apiserver's `--audit-log-path` with a policy of `level: Metadata` for every
    /// request does (default: no audit log). Each names the user, the user it impersonated,
    /// the verb and object, the authorizer's decision and the response code.
    #[must_use]
    pub fn audit_log(mut self, path: impl Into<PathBuf>) -> Self {
        self.audit_log = Some(path.into());
        self
    }

    /// Whether an in-memory OCI registry starts beside the API server, with the defaults of
    /// [`OciOptions::new`] (default off); see [`DevCluster::oci_registry`].
    #[must_use]
    pub fn oci_registry(mut self, on: bool) -> Self {
        self.oci_registry = on.then(|| self.oci_registry.take().unwrap_or_default());
        self
    }

    /// Start an in-memory OCI registry beside the API server with these options (port, basic
    /// auth, blob size limit); see [`DevCluster::oci_registry`].
    #[must_use]
    pub fn oci_registry_options(mut self, options: OciOptions) -> Self {
        self.oci_registry = Some(options);
        self
    }

    /// The admin's bearer token (default: a random one, or the stored one with a data directory).
    #[must_use]
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }
}

/// A running embedded Kubernetes API server on 127.0.0.1: HTTPS with a certificate from the
/// cluster's CA (in the kubeconfig); callers authenticate with the admin token, ServiceAccount
/// tokens or client certificates, and every request is authorised by RBAC.
///
/// Dropping the handle stops the server.
#[derive(Debug)]
pub struct DevCluster {
    shared: Arc<Shared>,
    addr: SocketAddr,
    ca_pem: String,
    identity: Identity,
    data_dir: Option<PathBuf>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    tasks: Vec<JoinHandle<()>>,
    oci_registry: Option<OciRegistry>,
}

impl DevCluster {
    /// Starts a cluster and returns once it accepts connections.
    pub async fn start(options: Options) -> Result<Self, Error> {
        let addr = SocketAddr::from(([127, 0, 0, 1], options.port));
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| Error::Bind { addr, source })?;
        let identity = load_identity(&options)?;
        let oci_registry = match options.oci_registry.clone() {
            Some(oci_options) => Some(OciRegistry::start(oci_options).await?),
            None => None,
        };
        let authn = Authenticator::new(
            identity.admin_token.clone(),
            &identity.service_account_key_pem,
        )
        .map_err(|e| Error::Tls(crate::tls::TlsError::Certificate(e)))?;
        let mut core = Core::new(options.watch_history, options.namespace_deletion_delay);
        core.root_ca = identity.ca_pem.clone();
        if let Some(dir) = &options.data_dir
            && crate::persist::load(dir, &mut core)?
        {
            crate::auth::rbac::seed(&mut core);
        }
        crate::auth::serviceaccounts::ensure_namespace_objects(&mut core);
        let audit = match &options.audit_log {
            Some(path) => {
                Some(
                    crate::audit::AuditLog::open(path).map_err(|source| Error::AuditLog {
                        path: path.clone(),
                        source,
                    })?,
                )
            }
            None => None,
        };
        let shared = Arc::new(Shared {
            core: Mutex::new(core),
            authn,
            faults: Faults::default(),
            counters: Counters::default(),
            close_watches: watch::channel(0).0,
            gc_wake: Notify::new(),
            bookmark_interval: options.bookmark_interval,
            simulator: AtomicBool::new(options.workload_simulator),
            audit,
        });
        let tls_config = identity.server_config()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let app = crate::server::router(shared.clone());
        let server = tokio::spawn(serve(
            listener,
            tokio_rustls::TlsAcceptor::from(tls_config),
            app,
            stopped,
        ));
        let mut tasks = vec![
            tokio::spawn(collector(shared.clone())),
            tokio::spawn(crate::simulator::run(shared.clone())),
        ];
        if let Some(dir) = options.data_dir.clone() {
            tasks.push(tokio::spawn(crate::persist::run(dir, shared.clone())));
        }
        tracing::info!(%addr, "devcluster listening");
        Ok(Self {
            data_dir: options.data_dir,
            shared,
            addr,
            ca_pem: identity.ca_pem.clone(),
            identity,
            stop: Some(stop),
            server: Some(server),
            tasks,
            oci_registry,
        })
    }

    /// The socket address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server URL, e.g. `https://127.0.0.1:41234`.
    pub fn base_url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The in-memory OCI registry, when [`Options::oci_registry`] asked for one; it stops with
    /// the cluster.
    pub fn oci_registry(&self) -> Option<&OciRegistry> {
        self.oci_registry.as_ref()
    }

    /// The PEM certificate of the CA that signed the server's certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The admin's bearer token (user `kubernetes-admin` in group `system:masters`).
    pub fn token(&self) -> &str {
        self.shared.authn.admin_token()
    }

    /// A kubeconfig (YAML) for this cluster as the admin, usable by kube-rs and kubectl.
    pub fn kubeconfig_yaml(&self) -> String {
        self.kubeconfig_yaml_for_token(self.token())
    }

    /// A kubeconfig (YAML) authenticating with another bearer token, e.g. a ServiceAccount
    /// token from a TokenRequest (`kubectl create token`).
    pub fn kubeconfig_yaml_for_token(&self, token: &str) -> String {
        crate::kubeconfig::render(
            &self.base_url(),
            &self.ca_pem,
            &crate::kubeconfig::Credentials::Token(token),
        )
    }

    /// A kubeconfig (YAML) for `user` in `groups` (at most one, besides the
    /// `system:authenticated` every user has) with a client certificate signed by the cluster
    /// CA (user from the CommonName, group from the Organization), as kubeadm writes them.
    /// What the user may do is up to RBAC, unless the group is `system:masters`.
    pub fn kubeconfig_yaml_for_user(&self, user: &str, groups: &[&str]) -> Result<String, Error> {
        let (cert, key) = self.identity.client_certificate(user, groups)?;
        Ok(crate::kubeconfig::render(
            &self.base_url(),
            &self.ca_pem,
            &crate::kubeconfig::Credentials::ClientCertificate {
                cert: &cert,
                key: &key,
            },
        ))
    }

    /// Writes the admin kubeconfig to a file.
    pub fn write_kubeconfig(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        write_file(path.as_ref(), &self.kubeconfig_yaml())
    }

    /// Writes a client-certificate kubeconfig for `user` in `groups` (see
    /// [`kubeconfig_yaml_for_user`](Self::kubeconfig_yaml_for_user)) to a file only its owner
    /// may read (it holds a private key).
    pub fn write_kubeconfig_for_user(
        &self,
        path: impl AsRef<Path>,
        user: &str,
        groups: &[&str],
    ) -> Result<(), Error> {
        write_file(path.as_ref(), &self.kubeconfig_yaml_for_user(user, groups)?)
    }

    /// Ends every open watch now (clients see the stream end and re-watch).
    pub fn close_watches(&self) {
        self.shared.close_watches();
    }

    /// Forgets the watch history: resuming a watch from any resourceVersion handed out so far
    /// gets an ERROR event with 410 Expired. Combine with [`close_watches`](Self::close_watches)
    /// to make every watcher resume (and relist) now.
    pub fn expire_watch_history(&self) {
        self.shared.expire_watch_history();
    }

    /// Changes how many changes the watch history keeps.
    pub fn set_watch_history(&self, changes: usize) {
        self.shared.set_watch_history(changes);
    }

    /// Makes the next requests matching `rule` fail.
    pub fn inject(&self, rule: FaultRule) {
        self.shared.faults.add(rule);
    }

    /// Removes every injected fault and the latency.
    pub fn clear_faults(&self) {
        self.shared.faults.clear();
    }

    /// Delays every API request by `latency` (zero to stop).
    pub fn set_latency(&self, latency: Duration) {
        self.shared.faults.set_latency(latency);
    }

    /// Turns the workload simulator on or off.
    pub fn set_workload_simulator(&self, on: bool) {
        self.shared.simulator.store(on, Ordering::SeqCst);
        crate::simulator::sync(&self.shared);
    }

    /// Requests with `verb` (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`) on a resource, e.g. `requests("list", "apps", "deployments")`.
    pub fn requests(&self, verb: &str, group: &str, resource: &str) -> u64 {
        self.shared.counters.requests(verb, group, resource)
    }

    /// All API requests served so far (discovery excluded).
    pub fn total_requests(&self) -> u64 {
        self.shared.counters.total()
    }

    /// Watches opened on a resource since the start, e.g. `watches_opened("apps", "deployments")`.
    pub fn watches_opened(&self, group: &str, resource: &str) -> u64 {
        self.shared.counters.watches(group, resource).opened
    }

    /// Watches open on a resource now.
    pub fn watches_open(&self, group: &str, resource: &str) -> u64 {
        self.shared.counters.watches(group, resource).open
    }

    /// Number of objects stored for a resource, across namespaces.
    pub fn object_count(&self, group: &str, resource: &str) -> usize {
        let core = self.shared.core.lock();
        let storage = core
            .registry
            .find_any_version(group, resource)
            .map(|r| r.storage.clone());
        storage.map_or(0, |s| core.store.count(&s))
    }

    /// Bytes of encoded JSON held for all stored objects (not counting indexes and history).
    pub fn stored_bytes(&self) -> usize {
        self.shared.core.lock().store.stored_bytes()
    }

    /// Stops the server: ends watches, stops accepting connections and waits for it to finish.
    pub async fn shutdown(mut self) {
        self.shared.close_watches();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
        }
        for t in self.tasks.drain(..) {
            t.abort();
        }
        if let Some(registry) = self.oci_registry.take() {
            registry.shutdown().await;
        }
        self.save_state();
    }

    fn save_state(&mut self) {
        if let Some(dir) = self.data_dir.take()
            && let Err(e) = crate::persist::save(&dir, &self.shared)
        {
            tracing::warn!(error = %e, "saving the cluster state at shutdown failed");
        }
    }
}

impl Drop for DevCluster {
    fn drop(&mut self) {
        self.save_state();
        self.shared.close_watches();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

fn write_file(path: &Path, text: &str) -> Result<(), Error> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()))
        .map_err(|source| Error::WriteKubeconfig {
            path: path.to_owned(),
            source,
        })
}

/// The stored identity with `--data-dir` (made and stored on first start), else a new one; an
/// explicit token replaces the stored admin token.
fn load_identity(options: &Options) -> Result<Identity, Error> {
    let Some(dir) = &options.data_dir else {
        return Ok(Identity::generate(options.token.clone())?);
    };
    let identity = match crate::persist::load_identity(dir)? {
        Some(stored)
            if options
                .token
                .as_ref()
                .is_none_or(|t| *t == stored.admin_token) =>
        {
            return Ok(stored);
        }
        Some(mut stored) => {
            stored.admin_token = options.token.clone().unwrap_or_default();
            stored
        }
        None => Identity::generate(options.token.clone())?,
    };
    crate::persist::save_identity(dir, &identity)?;
    Ok(identity)
}

/// The user a connection's verified client certificate names.
fn peer_user(tls: &tokio_rustls::server::TlsStream<tokio::net::TcpStream>) -> PeerUser {
    let user = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(|der| crate::tls::certificate_user(der))
        .map(|(name, groups)| {
            let mut groups: Vec<&str> = groups.iter().map(String::as_str).collect();
            if !groups.contains(&crate::auth::AUTHENTICATED) {
                groups.push(crate::auth::AUTHENTICATED);
            }
            Arc::new(crate::auth::UserInfo::named(&name, &groups))
        });
    PeerUser(user)
}

/// Accepts TLS connections and serves HTTP/1.1 on each until `stopped` fires.
async fn serve(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: axum::Router,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let app = app.clone();
                connections.spawn(async move {
                    let tls = match acceptor.accept(tcp).await {
                        Ok(t) => t,
                        Err(e) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                    };
                    let app = app.layer(axum::Extension(peer_user(&tls)));
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service);
                    if let Err(e) = conn.await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.abort_all();
}

/// Runs delayed collector work (namespace finalization, CRD cleanup re-checks) when due.
async fn collector(shared: Arc<Shared>) {
    loop {
        let next = {
            let mut core = shared.core.lock();
            crate::gc::run_due(&mut core, std::time::Instant::now())
        };
        match next {
            Some(due) => {
                let due = tokio::time::Instant::from_std(due);
                tokio::select! {
                    () = shared.gc_wake.notified() => {}
                    () = tokio::time::sleep_until(due) => {}
                }
            }
            None => shared.gc_wake.notified().await,
        }
    }
}
