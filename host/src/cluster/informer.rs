//! A shared informer: one list+watch of one resource (in one namespace or
//! across all), feeding a [`Store`] and broadcasting every change.
//!
//! Reflector behaviour as in client-go: list (paged), then watch from the
//! list's resourceVersion with bookmarks; a watch that ends is resumed from
//! the last resourceVersion seen; `410 Gone` (as an HTTP status or as an
//! ERROR event) means the history is gone, so it relists and reports what
//! the relist changed; other errors back off exponentially with jitter
//! ([`Backoff::informer`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::{AsyncBufReadExt, StreamExt};
use kube::Client;
use kube::api::{ListParams, WatchParams};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::{broadcast, watch};

use super::discovery::Resource;
use super::store::{Changes, Store, StoredObject};
use crate::retry::Backoff;

/// How many events a slow subscriber may fall behind before it is told it
/// lagged (and must re-read the store).
const EVENT_BUFFER: usize = 16 * 1024;

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
}

/// One list+watch of one resource, shared by every controller that needs it.
#[derive(Debug)]
pub struct SharedInformer {
    resource: Arc<Resource>,
    namespace: Option<String>,
    store: Arc<Store>,
    events: broadcast::Sender<InformerEvent>,
    synced: watch::Receiver<bool>,
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
        let store = Arc::new(Store::default());
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let (synced_tx, synced) = watch::channel(false);
        let stats = Arc::new(InformerStats::default());
        let reflector = Reflector {
            client,
            url: resource.url(namespace.as_deref()),
            resource: Arc::clone(&resource),
            store: Arc::clone(&store),
            events: events.clone(),
            synced: synced_tx,
            stats: Arc::clone(&stats),
        };
        let task = tokio::spawn(reflector.run());
        Self {
            resource,
            namespace,
            store,
            events,
            synced,
            stats,
            task,
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

    /// Changes from now on. Subscribe before reading the store so that no
    /// change falls between the two.
    pub fn subscribe(&self) -> broadcast::Receiver<InformerEvent> {
        self.events.subscribe()
    }

    /// Whether the first list has completed.
    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Waits until the first list has completed.
    pub async fn wait_synced(&self) {
        let mut synced = self.synced.clone();
        // The sender lives as long as the reflector task; if it is gone the
        // informer is shutting down and there is nothing to wait for.
        let _ = synced.wait_for(|synced| *synced).await;
    }
}

struct Reflector {
    client: Client,
    url: String,
    resource: Arc<Resource>,
    store: Arc<Store>,
    events: broadcast::Sender<InformerEvent>,
    synced: watch::Sender<bool>,
    stats: Arc<InformerStats>,
}

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
    async fn run(self) {
        let mut backoff = Backoff::informer();
        loop {
            let version = match self.list().await {
                Ok(version) => version,
                Err(error) => {
                    self.stats.restarts.fetch_add(1, Ordering::Relaxed);
                    let delay = backoff.next_delay();
                    tracing::warn!(resource = %self.url, %error, ?delay, "list failed; retrying");
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

    /// Lists every page, replaces the store and publishes what changed;
    /// the list's resourceVersion.
    async fn list(&self) -> Result<String, kube::Error> {
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
                .map_err(kube::Error::BuildRequest)?;
            let text = self.client.request_text(request).await?;
            let page: ListPage<'_> =
                serde_json::from_str(&text).map_err(kube::Error::SerdeError)?;
            for item in page.items {
                match StoredObject::parse(item, &self.resource.api_version, &self.resource.kind) {
                    Ok(object) => objects.push(Arc::new(object)),
                    Err(error) => {
                        tracing::warn!(resource = %self.url, %error, "skipping an object that does not parse")
                    }
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
            let _ = self.events.send(InformerEvent::Deleted(object));
        }
        for object in applied {
            let _ = self.events.send(InformerEvent::Applied(object));
        }
        self.synced.send_replace(true);
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
            Err(kube::Error::Api(status)) if status.code == 410 => return WatchEnd::Expired,
            Err(error) => return WatchEnd::Failed(version, error.to_string()),
        };
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
                            return WatchEnd::Failed(
                                version,
                                format!("bad watched object: {error}"),
                            );
                        }
                    };
                    version = object.resource_version.to_string();
                    self.stats.events.fetch_add(1, Ordering::Relaxed);
                    if event.kind == "DELETED" {
                        self.store.remove(&object.key());
                        let _ = self.events.send(InformerEvent::Deleted(object));
                    } else {
                        self.store.apply(Arc::clone(&object));
                        let _ = self.events.send(InformerEvent::Applied(object));
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
