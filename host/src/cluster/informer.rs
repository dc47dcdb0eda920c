//! A shared informer: one list+watch of one resource (in one namespace or
//! across all), feeding a [`Store`] and broadcasting every change.
//!
//! As in kube-runtime, the protocol and the store are kept apart: the
//! [`Watcher`] lists and watches and decodes; the reflector here applies
//! what it delivers to the store and tells the subscribers. Reflector
//! behaviour as in client-go: list (paged), then watch from the list's
//! resourceVersion with bookmarks; a watch that ends is resumed from the
//! last resourceVersion seen; `410 Gone` (as an HTTP status or as an ERROR
//! event) means the history is gone, so it relists and reports what the
//! relist changed; other errors back off exponentially with jitter
//! ([`Backoff::informer`]).
//!
//! An informer of a [`Slice`] other than `All` keeps only the objects of
//! this host's share and follows the share as members come and go: objects
//! that left it are dropped without an event (their new owner reconciles
//! them), and when the share may have grown it relists, which reports the
//! objects it gained as changes (the hand-over's resync).
//!
//! Its [`InformerHealth`] says whether it has listed once and whether its
//! latest list or watch request reached the API server, with the failure
//! (credentials, TLS, no connection, forbidden, gone) when it did not: what
//! `/readyz` and `/status` report. A 404 means the kind is no longer served
//! at its URL: discovery is told to forget it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use kube::Client;
use tokio::sync::{broadcast, mpsc, watch};

use super::discovery::{Discovery, Resource};
use super::slice::Slice;
use super::store::{Changes, Store, StoredObject};
use super::watcher::{Refused, Step, WatchEnd, Watcher, Watching};
use super::{ClusterError, error_chain};
use crate::replication::Shard;
use crate::retry::Backoff;

/// How many events a slow [`SharedInformer::subscribe`] subscriber may fall
/// behind before it is told it lagged (and must re-read the store).
const EVENT_BUFFER: usize = 16 * 1024;

/// The subscribers that get every event ([`SharedInformer::subscribe_all`]).
type Subscribers = Arc<std::sync::Mutex<Vec<mpsc::UnboundedSender<InformerEvent>>>>;

/// The members keys are spread over, as they change (`None`: not spread).
pub type Shards = watch::Receiver<Option<Arc<Shard>>>;

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
    /// Objects (listed, or changed by a watch event) not kept because they
    /// are not in this host's share, and stored objects dropped when they
    /// left it.
    pub dropped: AtomicU64,
    /// Relists because this host's share may have grown.
    pub reslices: AtomicU64,
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
    slice: Slice,
    store: Arc<Store>,
    events: broadcast::Sender<InformerEvent>,
    subscribers: Subscribers,
    health: watch::Receiver<InformerHealth>,
    /// The share its store holds completely (`None`: every object).
    holding: watch::Receiver<Option<Arc<Shard>>>,
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
    /// all namespaces for `None`), keeping every object.
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
        Self::start_slice(client, resource, namespace, discovery, Slice::All, None)
    }

    /// Like [`SharedInformer::start_with_discovery`], keeping only the
    /// objects of `slice` while `shards` spreads the keys.
    pub fn start_slice(
        client: Client,
        resource: Arc<Resource>,
        namespace: Option<String>,
        discovery: Option<Discovery>,
        slice: Slice,
        shards: Option<Shards>,
    ) -> Self {
        let store = Arc::new(Store::default());
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let subscribers = Subscribers::default();
        let (health_tx, health) = watch::channel(InformerHealth::default());
        let stats = Arc::new(InformerStats::default());
        let shards = shards.filter(|_| slice != Slice::All);
        let shard = shards.as_ref().and_then(|shards| shards.borrow().clone());
        let (holding_tx, holding) = watch::channel(shard.clone());
        let reflector = Reflector {
            watcher: Watcher::new(
                client,
                Arc::clone(&resource),
                namespace.as_deref(),
                Arc::clone(&stats),
            ),
            resource: Arc::clone(&resource),
            slice,
            shard,
            shards,
            holding: holding_tx,
            store: Arc::clone(&store),
            events: events.clone(),
            subscribers: Arc::clone(&subscribers),
            health: health_tx,
            stats: Arc::clone(&stats),
            discovery,
        };
        let task = tokio::spawn(reflector.run());
        Self {
            resource,
            namespace,
            slice,
            store,
            events,
            subscribers,
            health,
            holding,
            stats,
            task,
        }
    }

    /// Whether its store holds everything a reconcile of the primary
    /// object `namespace/name` needs from it: always, but while it lists
    /// again for a share that grew, not for the objects it is gaining.
    pub fn covers(&self, namespace: &str, name: &str) -> bool {
        match self.slice {
            Slice::All => true,
            Slice::Share | Slice::Children => self
                .holding
                .borrow()
                .as_ref()
                .is_none_or(|shard| shard.owns(namespace, name)),
        }
    }

    /// Where it stands with the API server.
    pub fn health(&self) -> InformerHealth {
        self.health.borrow().clone()
    }

    /// What it watches, for messages: `deployments.apps/v1 in shop`,
    /// `configmaps/v1 in all namespaces`, `deployments.apps/v1 in all
    /// namespaces, this host's share`.
    pub fn describe(&self) -> String {
        let resource = if self.resource.group.is_empty() {
            format!("{}/{}", self.resource.plural, self.resource.version)
        } else {
            format!(
                "{}.{}/{}",
                self.resource.plural, self.resource.group, self.resource.version
            )
        };
        let scope = match &self.namespace {
            Some(namespace) => format!("{resource} in {namespace}"),
            None => format!("{resource} in all namespaces"),
        };
        match self.slice {
            Slice::All => scope,
            Slice::Share => format!("{scope}, this host's share"),
            Slice::Children => format!("{scope}, children of this host's share"),
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

    /// Which objects it holds.
    pub fn slice(&self) -> Slice {
        self.slice
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

/// Applies what the watcher delivers to the store, and tells the
/// subscribers.
struct Reflector {
    watcher: Watcher,
    resource: Arc<Resource>,
    slice: Slice,
    /// The share the store holds (`None`: every object).
    shard: Option<Arc<Shard>>,
    /// Where the share's changes come from, for a slice other than `All`.
    shards: Option<Shards>,
    /// The share the store holds completely: the one it holds, unless it
    /// grew and the relist that fills it in has not finished.
    holding: watch::Sender<Option<Arc<Shard>>>,
    store: Arc<Store>,
    events: broadcast::Sender<InformerEvent>,
    subscribers: Subscribers,
    health: watch::Sender<InformerHealth>,
    stats: Arc<InformerStats>,
    discovery: Option<Discovery>,
}

/// Why the reflector stopped watching.
enum Stopped {
    /// The watch ended.
    Ended(WatchEnd),
    /// The share may have grown: relist to hold the objects it gained.
    Grew,
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

    /// Whether the store holds `object`, as the share stands.
    fn keeps(&self, object: &StoredObject) -> bool {
        self.slice.keeps(self.shard.as_deref(), object)
    }

    async fn run(mut self) {
        let mut backoff = Backoff::informer();
        loop {
            let version = match self.list().await {
                Ok(version) => version,
                Err(error) => {
                    self.stats.restarts.fetch_add(1, Ordering::Relaxed);
                    let delay = backoff.next_delay();
                    tracing::warn!(resource = %self.watcher.url(), error = %error_chain(&error), ?delay, "list failed; retrying");
                    self.failed(error);
                    tokio::time::sleep(delay).await;
                    continue;
                }
            };
            backoff.reset();
            let mut version = version;
            loop {
                match self.watch(&version).await {
                    Stopped::Ended(WatchEnd::Closed(last)) => {
                        version = last;
                        backoff.reset();
                    }
                    Stopped::Ended(WatchEnd::Expired) => {
                        self.stats.restarts.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(resource = %self.watcher.url(), "watch history expired (410); relisting");
                        break;
                    }
                    Stopped::Ended(WatchEnd::Failed(last, error)) => {
                        self.stats.restarts.fetch_add(1, Ordering::Relaxed);
                        version = last;
                        let delay = backoff.next_delay();
                        tracing::warn!(resource = %self.watcher.url(), %error, ?delay, "watch failed; resuming");
                        tokio::time::sleep(delay).await;
                    }
                    Stopped::Grew => {
                        self.stats.reslices.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(resource = %self.watcher.url(), "this host's share may have grown; relisting");
                        break;
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

    /// Takes the share as it stands now. Objects that left it are dropped
    /// from the store, without an event: they are another member's now.
    /// Whether the share may have grown, so that objects this store lacks
    /// are now its own.
    fn follow_share(&mut self) -> bool {
        let Some(shards) = &mut self.shards else {
            return false;
        };
        let next = shards.borrow_and_update().clone();
        let grew = match (&self.shard, &next) {
            (_, None) => self.shard.is_some(),
            (None, Some(_)) => false,
            (Some(current), Some(next)) => !current.only_loses_to(next),
        };
        self.shard = next;
        let slice = self.slice;
        let shard = self.shard.clone();
        let dropped = self
            .store
            .retain(|object| slice.keeps(shard.as_deref(), object));
        self.stats
            .dropped
            .fetch_add(dropped as u64, Ordering::Relaxed);
        grew
    }

    /// Lists every page, keeps what the share needs, replaces the store
    /// and publishes what changed; the list's resourceVersion.
    async fn list(&mut self) -> Result<String, ClusterError> {
        self.stats.lists.fetch_add(1, Ordering::Relaxed);
        // The share as it stands when the list starts; a change during the
        // list is followed once it is stored.
        self.follow_share();
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        let version = loop {
            let page = self.watcher.list_page(token.as_deref()).await?;
            for object in page.objects {
                if self.keeps(&object) {
                    objects.push(Arc::new(object));
                } else {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            match page.next {
                Some(next) => token = Some(next),
                None => break page.version,
            }
        };
        let Changes { applied, deleted } = self.store.replace(objects);
        self.holding.send_replace(self.shard.clone());
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

    /// Watches from `version` until the watch ends or the share grows.
    async fn watch(&mut self, version: &str) -> Stopped {
        let mut watching = match self.watcher.watch(version).await {
            Ok(watching) => watching,
            Err(Refused::Expired) => {
                self.reached();
                return Stopped::Ended(WatchEnd::Expired);
            }
            Err(Refused::Failed(error)) => {
                let message = error_chain(&error);
                self.failed(error);
                return Stopped::Ended(WatchEnd::Failed(version.to_owned(), message));
            }
        };
        self.reached();
        loop {
            let step = match self.share_changed(&mut watching).await {
                Some(step) => step,
                None if self.follow_share() => return Stopped::Grew,
                None => {
                    // It only shrank: what is held is complete.
                    self.holding.send_replace(self.shard.clone());
                    continue;
                }
            };
            match step {
                Step::Applied(object) if self.keeps(&object) => {
                    let object = Arc::new(object);
                    self.store.apply(Arc::clone(&object));
                    self.publish(InformerEvent::Applied(object));
                }
                Step::Deleted(object) if self.keeps(&object) => {
                    let object = Arc::new(object);
                    self.store.remove(&object.key());
                    self.publish(InformerEvent::Deleted(object));
                }
                // Not this host's (or no longer: a child whose controller
                // changed): dropped without an event; its owner is told.
                Step::Applied(object) | Step::Deleted(object) => {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    self.store.remove(&object.key());
                }
                Step::End(end) => return Stopped::Ended(end),
            }
        }
    }

    /// The watch's next step; `None` when the share changed first.
    async fn share_changed(&mut self, watching: &mut Watching) -> Option<Step> {
        match &mut self.shards {
            None => Some(self.watcher.next(watching).await),
            Some(shards) => tokio::select! {
                step = self.watcher.next(watching) => Some(step),
                changed = shards.changed() => match changed {
                    Ok(()) => None,
                    // The ring is gone: the share stays as it was.
                    Err(_) => {
                        self.shards = None;
                        Some(self.watcher.next(watching).await)
                    }
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use axum::extract::Query;
    use axum::response::IntoResponse;
    use futures::StreamExt;

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
        sliced_informer_of(handler, Slice::All, None).await
    }

    /// Like [`informer_of`], holding `slice` of the objects as `shards`
    /// spreads them.
    async fn sliced_informer_of<H, T>(
        handler: H,
        slice: Slice,
        shards: Option<Shards>,
    ) -> (SharedInformer, tokio::task::JoinHandle<()>)
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
        let informer = SharedInformer::start_slice(client, resource, None, None, slice, shards);
        (informer, server)
    }

    /// Lists `c0`..`c299`, and `w0`..`w99` once the first watch has sent
    /// them (they are created during it); the watch stays open. Every list
    /// but the first answers only once `relists` has a permit.
    fn share_server(
        relists: Arc<tokio::sync::Semaphore>,
    ) -> impl Fn(
        Query<std::collections::HashMap<String, String>>,
    ) -> futures::future::BoxFuture<'static, axum::response::Response>
    + Clone
    + Send
    + 'static {
        let watched = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let listed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        move |Query(query): Query<std::collections::HashMap<String, String>>| {
            let relists = Arc::clone(&relists);
            let again = listed.swap(true, Ordering::SeqCst);
            let is_watch = query.get("watch").is_some_and(|watch| watch == "true");
            let object = |name: String, version: usize| {
                serde_json::json!({
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": name, "namespace": "default", "resourceVersion": version.to_string()},
                })
            };
            let response = if is_watch {
                let lines: String = if watched.swap(true, Ordering::SeqCst) {
                    String::new()
                } else {
                    (0..100)
                        .map(|index| {
                            let event = serde_json::json!({
                                "type": "ADDED",
                                "object": object(format!("w{index}"), 1000 + index),
                            });
                            format!("{event}\n")
                        })
                        .collect()
                };
                let stream = futures::stream::iter([Ok::<_, std::io::Error>(lines)])
                    .chain(futures::stream::pending());
                axum::body::Body::from_stream(stream).into_response()
            } else {
                let mut items: Vec<serde_json::Value> = (0..300)
                    .map(|index| object(format!("c{index}"), index + 1))
                    .collect();
                if watched.load(Ordering::SeqCst) {
                    items.extend((0..100).map(|index| object(format!("w{index}"), 1000 + index)));
                }
                axum::Json(serde_json::json!({
                    "apiVersion": "v1", "kind": "ConfigMapList",
                    "metadata": {"resourceVersion": "2000"}, "items": items,
                }))
                .into_response()
            };
            Box::pin(async move {
                if again && !is_watch {
                    relists.acquire().await.expect("open").forget();
                }
                response
            })
        }
    }

    /// The names of `c0`..`c299` and `w0`..`w99` that `me` owns among
    /// `members`.
    fn owned(me: &str, members: &[&str]) -> std::collections::BTreeSet<String> {
        let shard = Shard::new(me, members.iter().map(|member| (*member).to_owned()));
        (0..300)
            .map(|index| format!("c{index}"))
            .chain((0..100).map(|index| format!("w{index}")))
            .filter(|name| shard.owns("default", name))
            .collect()
    }

    fn shard(me: &str, members: &[&str]) -> Option<Arc<Shard>> {
        Some(Arc::new(Shard::new(
            me,
            members.iter().map(|member| (*member).to_owned()),
        )))
    }

    async fn wait_holding(
        informer: &SharedInformer,
        expected: &std::collections::BTreeSet<String>,
    ) {
        let held = || -> std::collections::BTreeSet<String> {
            informer
                .store()
                .list(None, None)
                .iter()
                .map(|object| object.name.to_string())
                .collect()
        };
        let waited = tokio::time::timeout(Duration::from_secs(10), async {
            while held() != *expected {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(
            waited.is_ok(),
            "the store holds {} objects, the share {}",
            held().len(),
            expected.len()
        );
    }

    #[tokio::test]
    async fn a_share_informer_holds_only_its_share_and_follows_it() {
        let (shards, follows) = watch::channel(shard("a", &["a", "b", "c"]));
        let relists = Arc::new(tokio::sync::Semaphore::new(0));
        let (informer, server) = sliced_informer_of(
            share_server(Arc::clone(&relists)),
            Slice::Share,
            Some(follows),
        )
        .await;
        let mut events = informer.subscribe_all();
        // Listed and watched: only the share is kept.
        let third = owned("a", &["a", "b", "c"]);
        assert!((80..200).contains(&third.len()), "{}", third.len());
        wait_holding(&informer, &third).await;
        let stats = informer.stats();
        assert_eq!(stats.lists.load(Ordering::Relaxed), 1);
        assert_eq!(
            stats.dropped.load(Ordering::Relaxed),
            400 - third.len() as u64
        );
        while events.try_recv().is_ok() {}

        // A member joins: the share only shrinks, so nothing is listed
        // again, and the objects that left go without an event.
        shards.send_replace(shard("a", &["a", "b", "c", "d"]));
        let quarter = owned("a", &["a", "b", "c", "d"]);
        assert!(quarter.is_subset(&third) && quarter.len() < third.len());
        wait_holding(&informer, &quarter).await;
        assert_eq!(stats.lists.load(Ordering::Relaxed), 1, "no relist");
        assert!(events.try_recv().is_err(), "no event for a shrinking share");
        let covered = |names: &std::collections::BTreeSet<String>| {
            names
                .iter()
                .filter(|name| informer.covers("default", name))
                .count()
        };
        assert_eq!(covered(&quarter), quarter.len());

        // Two leave: the share grows, the informer lists again and reports
        // each object it gained as applied, and nothing as deleted.
        shards.send_replace(shard("a", &["a", "b"]));
        let half = owned("a", &["a", "b"]);
        let gaining: std::collections::BTreeSet<String> =
            half.difference(&quarter).cloned().collect();
        // While the relist is held up, the objects kept are covered and
        // those being gained are not: their keys wait.
        tokio::time::timeout(Duration::from_secs(10), async {
            while stats.lists.load(Ordering::Relaxed) < 2 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the informer lists again");
        assert_eq!(covered(&quarter), quarter.len(), "kept objects are covered");
        assert_eq!(covered(&gaining), 0, "objects being gained are not");
        relists.add_permits(1);
        wait_holding(&informer, &half).await;
        assert_eq!(covered(&half), half.len(), "once listed, all are");
        assert_eq!(stats.lists.load(Ordering::Relaxed), 2, "one relist");
        assert_eq!(stats.reslices.load(Ordering::Relaxed), 1);
        let mut gained = std::collections::BTreeSet::new();
        while let Ok(event) = events.try_recv() {
            match event {
                InformerEvent::Applied(object) => {
                    gained.insert(object.name.to_string());
                }
                InformerEvent::Deleted(object) => panic!("{} reported deleted", object.name),
            }
        }
        assert_eq!(gained, gaining, "exactly the objects gained are applied");

        // Keys no longer spread: every object.
        relists.add_permits(1);
        shards.send_replace(None);
        wait_holding(&informer, &owned("a", &["a"])).await;
        server.abort();
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
