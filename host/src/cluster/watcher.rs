//! The list+watch protocol of one resource, as client-go's ListWatch and
//! kube-runtime's watcher speak it: lists in pages, then a watch from the
//! list's resourceVersion with bookmarks, resumed from the last version
//! seen. It decodes objects and says how a watch ended; what is kept, and
//! who is told, is the reflector's business ([`super::informer`]).

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use futures::io::Lines;
use futures::{AsyncBufRead, AsyncBufReadExt, StreamExt};
use kube::Client;
use kube::api::{ListParams, WatchParams};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::ClusterError;
use super::discovery::Resource;
use super::informer::InformerStats;
use super::store::StoredObject;

/// Page size of lists.
const LIST_PAGE: u32 = 500;

/// How long one watch request lasts before it is renewed.
const WATCH_TIMEOUT_SECONDS: u32 = 290;

/// The most keys of unreadable objects remembered as logged.
const UNPARSED_REMEMBERED: usize = 4096;

/// Lists and watches one resource in one namespace, or in all.
pub(super) struct Watcher {
    client: Client,
    url: String,
    resource: Arc<Resource>,
    stats: Arc<InformerStats>,
    /// Keys of unreadable objects already logged.
    unparsed: Mutex<HashSet<String>>,
}

/// One page of a list.
pub(super) struct Page {
    /// Its readable objects.
    pub(super) objects: Vec<StoredObject>,
    /// The token of the next page; `None` on the last.
    pub(super) next: Option<String>,
    /// The list's resourceVersion (meaningful on the last page).
    pub(super) version: String,
}

/// How opening a watch failed.
pub(super) enum Refused {
    /// `410 Gone`: the version is too old; relist.
    Expired,
    /// Any other failure.
    Failed(ClusterError),
}

/// What a watch delivered next.
pub(super) enum Step {
    /// An object was created or changed.
    Applied(StoredObject),
    /// An object was deleted; its last state.
    Deleted(StoredObject),
    /// The watch ended.
    End(WatchEnd),
}

/// Why a watch ended.
pub(super) enum WatchEnd {
    /// The server closed it (timeout): resume from the last version.
    Closed(String),
    /// The version is too old: relist.
    Expired,
    /// Something failed: back off, then resume from the version.
    Failed(String, String),
}

/// An open watch: its events, and the last resourceVersion it delivered
/// (an object's or a bookmark's), from which the next watch resumes.
pub(super) struct Watching {
    lines: Lines<Box<dyn AsyncBufRead + Send + Unpin>>,
    version: String,
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
    resource_version: Option<Cow<'a, str>>,
    #[serde(default, borrow, rename = "continue")]
    continue_token: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct WatchLine<'a> {
    #[serde(rename = "type")]
    kind: Cow<'a, str>,
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

impl Watcher {
    /// A watcher of `resource` in `namespace` (`None`: all namespaces).
    pub(super) fn new(
        client: Client,
        resource: Arc<Resource>,
        namespace: Option<&str>,
        stats: Arc<InformerStats>,
    ) -> Self {
        Self {
            client,
            url: resource.url(namespace),
            resource,
            stats,
            unparsed: Mutex::default(),
        }
    }

    /// The URL it lists and watches, for logs.
    pub(super) fn url(&self) -> &str {
        &self.url
    }

    /// One page of a list: the first for `None`, else the page the token
    /// names.
    pub(super) async fn list_page(&self, token: Option<&str>) -> Result<Page, ClusterError> {
        let mut params = ListParams::default().limit(LIST_PAGE);
        if let Some(token) = token {
            params = params.continue_token(token);
        }
        let request = kube::core::Request::new(&self.url)
            .list(&params)
            .map_err(|error| ClusterError::Request(Box::new(kube::Error::BuildRequest(error))))?;
        let text = self
            .client
            .request_text(request)
            .await
            .map_err(ClusterError::from_request)?;
        let page: ListPage<'_> = serde_json::from_str(&text)
            .map_err(|error| ClusterError::Request(Box::new(kube::Error::SerdeError(error))))?;
        let mut objects = Vec::with_capacity(page.items.len());
        for item in page.items {
            match StoredObject::parse(item, &self.resource.api_version, &self.resource.kind) {
                Ok(object) => objects.push(object),
                Err(error) => self.skip_unparsed(item, &error),
            }
        }
        Ok(Page {
            objects,
            next: page
                .metadata
                .continue_token
                .filter(|token| !token.is_empty())
                .map(Cow::into_owned),
            version: page
                .metadata
                .resource_version
                .unwrap_or_default()
                .into_owned(),
        })
    }

    /// Opens a watch from `version` (bookmarks on).
    pub(super) async fn watch(&self, version: &str) -> Result<Watching, Refused> {
        self.stats.watches.fetch_add(1, Ordering::Relaxed);
        let params = WatchParams::default().timeout(WATCH_TIMEOUT_SECONDS);
        let request = kube::core::Request::new(&self.url)
            .watch(&params, version)
            .map_err(|error| {
                Refused::Failed(ClusterError::Request(Box::new(kube::Error::BuildRequest(
                    error,
                ))))
            })?;
        match self.client.request_stream(request).await {
            Ok(body) => Ok(Watching {
                lines: (Box::new(body) as Box<dyn AsyncBufRead + Send + Unpin>).lines(),
                version: version.to_owned(),
            }),
            Err(kube::Error::Api(status)) if status.code == 410 => Err(Refused::Expired),
            Err(error) => Err(Refused::Failed(ClusterError::from_request(error))),
        }
    }

    /// The next change of an open watch, or how it ended. Cancel safe: a
    /// line half read stays in the watch's buffer.
    pub(super) async fn next(&self, watching: &mut Watching) -> Step {
        loop {
            let Some(line) = watching.lines.next().await else {
                return Step::End(WatchEnd::Closed(watching.version.clone()));
            };
            let line = match line {
                Ok(line) => line,
                Err(error) => {
                    return Step::End(WatchEnd::Failed(
                        watching.version.clone(),
                        error.to_string(),
                    ));
                }
            };
            if line.trim().is_empty() {
                continue;
            }
            let event: WatchLine<'_> = match serde_json::from_str(&line) {
                Ok(event) => event,
                Err(error) => {
                    return Step::End(WatchEnd::Failed(
                        watching.version.clone(),
                        format!("bad watch event: {error}"),
                    ));
                }
            };
            match event.kind.as_ref() {
                "ADDED" | "MODIFIED" | "DELETED" => {
                    let object = match StoredObject::parse(
                        event.object,
                        &self.resource.api_version,
                        &self.resource.kind,
                    ) {
                        Ok(object) => object,
                        Err(error) => {
                            // Skipped as a list skips it: the watch goes on
                            // from the version the event carries.
                            self.skip_unparsed(event.object, &error);
                            if let Some(next) = version_of(event.object) {
                                watching.version = next;
                            }
                            continue;
                        }
                    };
                    watching.version = object.resource_version.to_string();
                    self.stats.events.fetch_add(1, Ordering::Relaxed);
                    return if event.kind == "DELETED" {
                        Step::Deleted(object)
                    } else {
                        Step::Applied(object)
                    };
                }
                "BOOKMARK" => {
                    if let Some(bookmarked) = version_of(event.object) {
                        watching.version = bookmarked;
                    }
                }
                "ERROR" => {
                    let status = serde_json::from_str::<Versioned>(event.object.get()).ok();
                    return Step::End(match status.and_then(|status| status.code) {
                        Some(410) => WatchEnd::Expired,
                        code => WatchEnd::Failed(
                            watching.version.clone(),
                            format!("watch error event, code {code:?}"),
                        ),
                    });
                }
                other => {
                    tracing::debug!(resource = %self.url, event = other, "ignoring an unknown watch event type");
                }
            }
        }
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
            let mut logged = self.unparsed.lock().unwrap_or_else(PoisonError::into_inner);
            if logged.len() >= UNPARSED_REMEMBERED {
                logged.clear();
            }
            logged.insert(key.clone())
        };
        if first {
            tracing::warn!(resource = %self.url, object = %key, %error, "skipping an object that cannot be read; it is counted in paddock_informer_unparsed_total");
        }
    }
}

/// The resourceVersion in an object's (or a bookmark's) metadata.
fn version_of(object: &RawValue) -> Option<String> {
    serde_json::from_str::<Versioned>(object.get())
        .ok()
        .and_then(|versioned| versioned.metadata.resource_version)
}
