//! A shared informer: one list+watch of one resource (in one namespace or
//! across all), feeding a [`Store`] and broadcasting every change.
//!
//! Reflector behaviour as in client-go: list (paged), then watch from the
//! list's resourceVersion with bookmarks; a watch that ends is resumed from
//! the last resourceVersion seen; `410 Gone` (as an HTTP status or as an
//! ERROR event) means the history is gone, so it relists and reports what
//! the relist changed; other errors back off exponentially with jitter
//! ([`Backoff::informer`]).
//!
//! Its [`InformerHealth`] says whether it has listed once and whether its
//! latest list or watch request reached the API server, with the failure
//! (credentials, TLS, no connection, forbidden, gone) when it did not: what
//! `/readyz` and `/status` report. A 404 means the kind is no longer served
//! at its URL: discovery is told to forget it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::{AsyncBufReadExt, StreamExt};
use kube::Client;
use kube::api::{ListParams, WatchParams};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::{broadcast, mpsc, watch};

use super::discovery::{Discovery, Resource};
use super::store::{Changes, Store, StoredObject};
use super::{ClusterError, error_chain};
use crate::retry::Backoff;

/// How many events a slow [`SharedInformer::subscribe`] subscriber may fall
/// behind before it is told it lagged (and must re-read the store).
const EVENT_BUFFER: usize = 16 * 1024;

/// The subscribers that get every event ([`SharedInformer::subscribe_all`]).
type Subscribers = Arc<std::sync::Mutex<Vec<mpsc::UnboundedSender<InformerEvent>>>>;

/// Page size of lists.
const LIST_PAGE: u32 = 500;

/// How long one watch request lasts before it is renewed.
const WATCH_TIMEOUT_SECONDS: u32 = 290;

/// A change seen by an informer.
#[derive(Debug, Clone)]
pub enum InformerEvent {
    /// The object was created or changed (or found by a relist).
    Applied(Arc<StoredObject>),
    /// The object was deleted; its last known state.
    Deleted(Arc<StoredObject>),
}

/// Counters of one informer.
#[derive(Debug, Default)]
pub struct InformerStats {
    /// Lists performed (1 + relists).
    pub lists: AtomicU64,
    /// Watch requests opened.
    pub watches: AtomicU64,
    /// Times the informer had to recover from an error or a 410.
    pub restarts: AtomicU64,
    /// Events applied to the store.
    pub events: AtomicU64,
    /// Objects skipped because they could not be read (each is logged once
    /// with its key; the informer carries on).
    pub unparsed: AtomicU64,
}

/// How an informer stands with the API server.
#[derive(Debug, Clone, Default)]
pub struct InformerHealth {
    /// Whether a list has completed: the store holds the cluster's objects.
    pub synced: bool,
    /// Why its latest list or watch request failed; `None` once one
    /// succeeds again.
    pub failure: Option<Arc<ClusterError>>,
}

impl InformerHealth {
    /// Whether it has listed and its latest request reached the API server.
    pub fn is_ready(&self) -> bool {
        self.synced && self.failure.is_none()
    }
}

/// One list+watch of one resource, shared by every controller that needs it.
#[derive(Debug)]
pub struct SharedInformer {
    resource: Arc<Resource>,
    namespace: Option<String>,
    store: Arc<Store>,
    events: broadcast::Sender<InformerEvent>,
    subscribers: Subscribers,
    health: watch::Receiver<InformerHealth>,
    stats: Arc<InformerStats>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SharedInformer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SharedInformer {
    /// Starts listing and watching `resource` (in `namespace`, or across
    /// all namespaces for `None`).
    pub fn start(client: Client, resource: Arc<Resource>, namespace: Option<String>) -> Self {
        Self::start_with_discovery(client, resource, namespace, None)
    }

    /// Like [`SharedInformer::start`]; besides, a 404 on its URL makes
    /// `discovery`, if given, forget the resource.
    pub fn start_with_discovery(
        client: Client,
        resource: Arc<Resource>,
        namespace: Option<String>,
        discovery: Option<Discovery>,
    ) -> Self {
        let store = Arc::new(Store::default());
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let subscribers = Subscribers::default();
        let (health_tx, health) = watch::channel(InformerHealth::default());
        let stats = Arc::new(InformerStats::default());
        let reflector = Reflector {
            client,
            url: resource.url(namespace.as_deref()),
            resource: Arc::clone(&resource),
            store: Arc::clone(&store),
            events: events.clone(),
            subscribers: Arc::clone(&subscribers),
            health: health_tx,
            stats: Arc::clone(&stats),
            unparsed: std::sync::Mutex::default(),
            discovery,
        };
        let task = tokio::spawn(reflector.run());
        Self {
            resource,
            namespace,
            store,
            events,
            subscribers,
            health,
            stats,
            task,
        }
    }

    /// Where it stands with the API server.
    pub fn health(&self) -> InformerHealth {
        self.health.borrow().clone()
    }

    /// What it watches, for messages: `deployments.apps/v1 in shop`,
    /// `configmaps/v1 in all namespaces`.
    pub fn describe(&self) -> String {
        let resource = if self.resource.group.is_empty() {
            format!("{}/{}", self.resource.plural, self.resource.version)
        } else {
            format!(
                "{}.{}/{}",
                self.resource.plural, self.resource.group, self.resource.version
            )
        };
        match &self.namespace {
            Some(namespace) => format!("{resource} in {namespace}"),
            None => format!("{resource} in all namespaces"),
        }
    }

    /// The resource watched.
    pub fn resource(&self) -> &Arc<Resource> {
        &self.resource
    }

    /// The namespace watched, `None` for all.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Counters.
    pub fn stats(&self) -> &InformerStats {
        &self.stats
    }

    /// Changes from now on, for a subscriber that only needs to know that
    /// something changed: one that falls behind is told it lagged and must
    /// re-read the store. Subscribe before reading the store so that no
    /// change falls between the two.
    pub fn subscribe(&self) -> broadcast::Receiver<InformerEvent> {
        self.events.subscribe()
    }

    /// Every change from now on, for a subscriber that must see each one (a
    /// controller's router: a deletion it missed would be a `deleted`
    /// reconcile lost). It never lags: events wait for it, so it must keep
    /// reading. Subscribe before reading the store so that no change falls
    /// between the two.
    pub fn subscribe_all(&self) -> mpsc::UnboundedReceiver<InformerEvent> {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.subscribers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(sender);
        receiver
    }

    /// Whether the first list has completed.
    pub fn is_synced(&self) -> bool {
        self.health.borrow().synced
    }

    /// Waits until the first list has completed.
    pub async fn wait_synced(&self) {
        let mut health = self.health.clone();
        // The sender lives as long as the reflector task; if it is gone the
        // informer is shutting down and there is nothing to wait for.
        let _ = health.wait_for(|health| health.synced).await;
    }
}

struct Reflector {
    client: Client,
    url: String,
    resource: Arc<Resource>,
    store: Arc<Store>,
    events: broadcast::Sender<InformerEvent>,
    subscribers: Subscribers,
    health: watch::Sender<InformerHealth>,
    stats: Arc<InformerStats>,
    /// Keys of unreadable objects already logged.
    unparsed: std::sync::Mutex<std::collections::HashSet<String>>,
    discovery: Option<Discovery>,
}

/// The most keys of unreadable objects remembered as logged.
const UNPARSED_REMEMBERED: usize = 4096;

/// Why a watch ended.
enum WatchEnd {
    /// The server closed it (timeout): resume from the last version.
    Closed(String),
    /// The version is too old: relist.
    Expired,
    /// Something failed: back off, then resume from the version.
    Failed(String, String),
}

#[derive(Deserialize)]
struct ListPage<'a> {
    #[serde(borrow)]
    metadata: ListMeta<'a>,
    #[serde(borrow, default)]
    items: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct ListMeta<'a> {
    #[serde(default, borrow, rename = "resourceVersion")]
    resource_version: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow, rename = "continue")]
    continue_token: Option<std::borrow::Cow<'a, str>>,
}

#[derive(Deserialize)]
struct WatchLine<'a> {
    #[serde(rename = "type")]
    kind: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    object: &'a RawValue,
}

#[derive(Deserialize)]
struct Versioned {
    #[serde(default)]
    metadata: VersionedMeta,
    #[serde(default)]
    code: Option<u16>,
}

#[derive(Deserialize, Default)]
struct VersionedMeta {
    #[serde(default, rename = "resourceVersion")]
    resource_version: Option<String>,
}

impl Reflector {
    /// Sends an event to every subscriber; those that went away are
    /// dropped.
    fn publish(&self, event: InformerEvent) {
        self.subscribers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|subscriber| subscriber.send(event.clone()).is_ok());
        let _ = self.events.send(event);
    }

    /// Counts an object that cannot be read, and logs it once per key:
    /// lists and watches both skip it, so one bad object neither stops the
    /// informer nor floods the log at every relist.
    fn skip_unparsed(&self, raw: &RawValue, error: &serde_json::Error) {
        self.stats.unparsed.fetch_add(1, Ordering::Relaxed);
        let value: Option<serde_json::Value> = serde_json::from_str(raw.get()).ok();
        let text = |pointer: &str| {
            value
                .as_ref()
                .and_then(|value| value.pointer(pointer))
                .and_then(serde_json::Value::as_str)
                .unwrap_or("?")
                .to_owned()
        };
        let key = format!("{}/{}", text("/metadata/namespace"), text("/metadata/name"));
        let first = {
            let mut logged = self
                .unparsed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if logged.len() >= UNPARSED_REMEMBERED {
                logged.clear();
            }
            logged.insert(key.clone())
        };
        if first {
            tracing::warn!(resource = %self.url, object = %key, %error, "skipping an object that cannot be read; it is counted in paddock_informer_unparsed_total");
        }
    }

    async fn run(self) {
        let mut backoff = Backoff::informer();
        loop {
            let version = match self.list().await {
                Ok(version) => version,
                Err(error) => {
                    self.stats.restarts.fetch_add(1, Ordering::Relaxed);
                    let delay = backoff.next_delay();
                    tracing::warn!(resource = %self.url, error = %error_chain(&error), ?delay, "list failed; retrying");
                    self.failed(error);
                    tokio::time::sleep(delay).await;
                    continue;
                }
            };
            backoff.reset();
            let mut version = version;
            loop {
                match self.watch(&version).await {
                    WatchEnd::Closed(last) => {
                        version = last;
                        backoff.reset();
                    }
                    WatchEnd::Expired => {
                        self.stats.restarts.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(resource = %self.url, "watch history expired (410); relisting");
                        break;
                    }
                    WatchEnd::Failed(last, error) => {
                        self.stats.restarts.fetch_add(1, Ordering::Relaxed);
                        version = last;
                        let delay = backoff.next_delay();
                        tracing::warn!(resource = %self.url, %error, ?delay, "watch failed; resuming");
                        tokio::time::sleep(delay).await;
                    }
                }
            }
        }
    }

    /// Records a failed request: the informer is not connected until one
    /// succeeds. A 404 means the resource is gone from its URL.
    fn failed(&self, error: ClusterError) {
        if let (ClusterError::NotFound(_), Some(discovery)) = (&error, &self.discovery) {
            discovery.forget(&self.resource.api_version, &self.resource.kind);
        }
        self.health
            .send_modify(|health| health.failure = Some(Arc::new(error)));
    }

    /// Records a request that reached the API server.
    fn reached(&self) {
        self.health
            .send_if_modified(|health| health.failure.take().is_some());
    }

    /// Lists every page, replaces the store and publishes what changed;
    /// the list's resourceVersion.
    async fn list(&self) -> Result<String, ClusterError> {
        self.stats.lists.fetch_add(1, Ordering::Relaxed);
        let mut objects = Vec::new();
        let mut continue_token: Option<String> = None;
        let version = loop {
            let mut params = ListParams::default().limit(LIST_PAGE);
            if let Some(token) = &continue_token {
                params = params.continue_token(token);
            }
            let request = kube::core::Request::new(&self.url)
                .list(&params)
                .map_err(|error| {
                    ClusterError::Request(Box::new(kube::Error::BuildRequest(error)))
                })?;
            let text = self
                .client
                .request_text(request)
                .await
                .map_err(ClusterError::from_request)?;
            let page: ListPage<'_> = serde_json::from_str(&text)
                .map_err(|error| ClusterError::Request(Box::new(kube::Error::SerdeError(error))))?;
            for item in page.items {
                match StoredObject::parse(item, &self.resource.api_version, &self.resource.kind) {
                    Ok(object) => objects.push(Arc::new(object)),
                    Err(error) => self.skip_unparsed(item, &error),
                }
            }
            match page
                .metadata
                .continue_token
                .filter(|token| !token.is_empty())
            {
                Some(token) => continue_token = Some(token.into_owned()),
                None => {
                    break page
                        .metadata
                        .resource_version
                        .unwrap_or_default()
                        .into_owned();
                }
            }
        };
        let Changes { applied, deleted } = self.store.replace(objects);
        for object in deleted {
            self.publish(InformerEvent::Deleted(object));
        }
        for object in applied {
            self.publish(InformerEvent::Applied(object));
        }
        self.health.send_replace(InformerHealth {
            synced: true,
            failure: None,
        });
        Ok(version)
    }

    /// Watches from `version` until the watch ends.
    async fn watch(&self, version: &str) -> WatchEnd {
        self.stats.watches.fetch_add(1, Ordering::Relaxed);
        let mut version = version.to_owned();
        // Bookmarks are on by default.
        let params = WatchParams::default().timeout(WATCH_TIMEOUT_SECONDS);
        let request = match kube::core::Request::new(&self.url).watch(&params, &version) {
            Ok(request) => request,
            Err(error) => return WatchEnd::Failed(version, error.to_string()),
        };
        let body = match self.client.request_stream(request).await {
            Ok(body) => body,
            Err(kube::Error::Api(status)) if status.code == 410 => {
                self.reached();
                return WatchEnd::Expired;
            }
            Err(error) => {
                let error = ClusterError::from_request(error);
                let message = error_chain(&error);
                self.failed(error);
                return WatchEnd::Failed(version, message);
            }
        };
        self.reached();
        let mut lines = body.lines();
        while let Some(line) = lines.next().await {
            let line = match line {
                Ok(line) => line,
                Err(error) => return WatchEnd::Failed(version, error.to_string()),
            };
            if line.trim().is_empty() {
                continue;
            }
            let event: WatchLine<'_> = match serde_json::from_str(&line) {
                Ok(event) => event,
                Err(error) => {
                    return WatchEnd::Failed(version, format!("bad watch event: {error}"));
                }
            };
            match event.kind.as_ref() {
                "ADDED" | "MODIFIED" | "DELETED" => {
                    let object = match StoredObject::parse(
                        event.object,
                        &self.resource.api_version,
                        &self.resource.kind,
                    ) {
                        Ok(object) => Arc::new(object),
                        Err(error) => {
                            // Skipped as a list skips it: the watch goes on
                            // from the version the event carries.
                            self.skip_unparsed(event.object, &error);
                            if let Ok(versioned) =
                                serde_json::from_str::<Versioned>(event.object.get())
                                && let Some(next) = versioned.metadata.resource_version
                            {
                                version = next;
                            }
                            continue;
                        }
                    };
                    version = object.resource_version.to_string();
                    self.stats.events.fetch_add(1, Ordering::Relaxed);
                    if event.kind == "DELETED" {
                        self.store.remove(&object.key());
                        self.publish(InformerEvent::Deleted(object));
                    } else {
                        self.store.apply(Arc::clone(&object));
                        self.publish(InformerEvent::Applied(object));
                    }
                }
                "BOOKMARK" => {
                    if let Ok(bookmark) = serde_json::from_str::<Versioned>(event.object.get())
                        && let Some(bookmarked) = bookmark.metadata.resource_version
                    {
                        version = bookmarked;
                    }
                }
                "ERROR" => {
                    let status = serde_json::from_str::<Versioned>(event.object.get()).ok();
                    return match status.and_then(|status| status.code) {
                        Some(410) => WatchEnd::Expired,
                        code => {
                            WatchEnd::Failed(version, format!("watch error event, code {code:?}"))
                        }
                    };
                }
                other => {
                    tracing::debug!(resource = %self.url, event = other, "ignoring an unknown watch event type");
                }
            }
        }
        WatchEnd::Closed(version)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use axum::extract::Query;
    use axum::response::IntoResponse;

    use super::*;

    /// An API server that lists one readable and one unreadable ConfigMap,
    /// then watches an unreadable change followed by a readable one, and
    /// holds the watch open.
    async fn serve(
        Query(query): Query<std::collections::HashMap<String, String>>,
    ) -> axum::response::Response {
        if query.get("watch").is_some_and(|watch| watch == "true") {
            let lines = concat!(
                r#"{"type":"ADDED","object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"namespace":"default","resourceVersion":"11"}}}"#,
                "\n",
                r#"{"type":"ADDED","object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"after","namespace":"default","resourceVersion":"12"}}}"#,
                "\n",
            );
            let stream = futures::stream::iter([Ok::<_, std::io::Error>(lines.to_owned())])
                .chain(futures::stream::pending());
            return axum::body::Body::from_stream(stream).into_response();
        }
        let list = serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMapList",
            "metadata": {"resourceVersion": "10"},
            "items": [
                {"metadata": {"name": "good", "namespace": "default", "resourceVersion": "9"}},
                {"metadata": {"name": 7, "namespace": "default", "resourceVersion": "8"}},
            ],
        });
        axum::Json(list).into_response()
    }

    /// An informer of ConfigMaps against an API server answering with
    /// `handler`, and the server's task.
    async fn informer_of<H, T>(handler: H) -> (SharedInformer, tokio::task::JoinHandle<()>)
    where
        H: axum::handler::Handler<T, ()>,
        T: 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let address = listener.local_addr().expect("an address");
        let app = axum::Router::new().route("/api/v1/configmaps", axum::routing::get(handler));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let uri: axum::http::Uri = format!("http://{address}").parse().expect("a URI");
        let client = Client::try_from(kube::Config::new(uri)).expect("a client");
        let resource = Arc::new(Resource {
            group: String::new(),
            version: "v1".into(),
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            plural: "configmaps".into(),
            namespaced: true,
            subresources: Vec::new(),
        });
        (SharedInformer::start(client, resource, None), server)
    }

    /// Lists nothing, then watches `BURST` creations at once.
    const BURST: usize = 20_000;

    async fn burst(
        Query(query): Query<std::collections::HashMap<String, String>>,
    ) -> axum::response::Response {
        if query.get("watch").is_some_and(|watch| watch == "true") {
            let lines: String = (0..BURST)
                .map(|index| {
                    format!(
                        "{{\"type\":\"ADDED\",\"object\":{{\"metadata\":{{\"name\":\"c{index}\",\"namespace\":\"default\",\"resourceVersion\":\"{}\"}}}}}}\n",
                        index + 2
                    )
                })
                .collect();
            let stream = futures::stream::iter([Ok::<_, std::io::Error>(lines)])
                .chain(futures::stream::pending());
            return axum::body::Body::from_stream(stream).into_response();
        }
        axum::Json(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMapList",
            "metadata": {"resourceVersion": "1"}, "items": [],
        }))
        .into_response()
    }

    #[tokio::test]
    async fn a_subscriber_of_every_event_never_falls_behind() {
        let (informer, server) = informer_of(burst).await;
        let mut every = informer.subscribe_all();
        let mut some = informer.subscribe();
        tokio::time::timeout(Duration::from_secs(30), async {
            while informer.store().len() < BURST {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the burst is stored");
        // Nobody read while the burst arrived: more events than the
        // broadcast buffer holds.
        let mut seen = 0;
        while every.try_recv().is_ok() {
            seen += 1;
        }
        assert_eq!(seen, BURST, "every event waited for the subscriber");
        assert!(
            matches!(
                some.try_recv(),
                Err(broadcast::error::TryRecvError::Lagged(_))
            ),
            "a change subscriber is told it lagged instead"
        );
        server.abort();
    }

    #[tokio::test]
    async fn unreadable_objects_are_skipped_counted_and_do_not_stop_the_watch() {
        let (informer, server) = informer_of(serve).await;
        tokio::time::timeout(Duration::from_secs(10), async {
            while informer.store().get("default", "after").is_none() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the readable change after the unreadable one arrives");
        assert!(informer.store().get("default", "good").is_some());
        let stats = informer.stats();
        assert_eq!(
            stats.unparsed.load(Ordering::Relaxed),
            2,
            "one listed, one watched"
        );
        assert_eq!(stats.lists.load(Ordering::Relaxed), 1, "no relist");
        assert_eq!(
            stats.restarts.load(Ordering::Relaxed),
            0,
            "the watch went on"
        );
        server.abort();
    }
}
