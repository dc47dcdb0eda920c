//! Watch: the chunked stream of ADDED/MODIFIED/DELETED/BOOKMARK/ERROR events of one resource.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::{BufMut, Bytes, BytesMut};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::core::{Query, Target};
use crate::json::{decode, encode_body, meta_mut};
use crate::list::selectors;
use crate::protobuf::Encoding;
use crate::selector::{FieldSelector, LabelSelector};
use crate::shared::Shared;
use crate::status::{ApiError, Cause};
use crate::store::{Change, EventType};

/// The longest a watch stays open when the client sets no `timeoutSeconds`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

/// The longest `timeoutSeconds` honoured (larger values are clamped).
const MAX_TIMEOUT_SECS: u64 = 7 * 24 * 3600;

/// How long before its timeout a watch sends its last bookmark.
const FINAL_BOOKMARK_LEAD: Duration = Duration::from_secs(2);

/// Where a watch starts.
#[derive(Debug, Clone, Copy)]
enum Start {
    /// ADDED for every existing object first (optionally then an initial-events-end bookmark).
    Initial { end_bookmark: bool },
    /// Changes after this resourceVersion.
    From(u64),
    /// Changes from now on.
    Now,
}

/// A validated watch request.
#[derive(Debug)]
pub(crate) struct WatchRequest {
    target: Target,
    labels: LabelSelector,
    fields: FieldSelector,
    start: Start,
    bookmarks: bool,
    timeout: Duration,
}

fn forbidden(field: &str, message: &str) -> ApiError {
    ApiError::invalid(
        "ListOptions",
        "meta.k8s.io",
        "",
        vec![Cause::new(
            "FieldValueForbidden",
            format!("Forbidden: {message}"),
            field,
        )],
    )
}

impl WatchRequest {
    /// Checks the watch parameters; errors are answered before the stream starts.
    pub(crate) fn parse(target: Target, q: &Query) -> Result<Self, ApiError> {
        let (labels, fields) = selectors(&target, q)?;
        let bookmarks = q.flag("allowWatchBookmarks");
        let send_initial = q.non_empty("sendInitialEvents").map(|v| v == "true");
        let rv_match = q.non_empty("resourceVersionMatch");
        let rv = q.non_empty("resourceVersion");
        match (send_initial, rv_match) {
            (Some(_), m) if m != Some("NotOlderThan") => {
                return Err(forbidden(
                    "resourceVersionMatch",
                    "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                ));
            }
            (Some(true), _) if !bookmarks => {
                return Err(forbidden(
                    "allowWatchBookmarks",
                    "sendInitialEvents requires setting allowWatchBookmarks to true",
                ));
            }
            (None, Some(_)) => {
                return Err(forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
                ));
            }
            _ => {}
        }
        let parsed_rv = match rv {
            None | Some("0") => None,
            Some(r) => Some(r.parse::<u64>().map_err(|_| {
                ApiError::invalid(
                    "ListOptions",
                    "meta.k8s.io",
                    "",
                    vec![Cause::new(
                        "FieldValueInvalid",
                        format!("Invalid value: \"{r}\": must be a number"),
                        "resourceVersion",
                    )],
                )
            })?),
        };
        let start = match (send_initial, parsed_rv) {
            (Some(true), _) => Start::Initial { end_bookmark: true },
            (Some(false), Some(rv)) => Start::From(rv),
            (Some(false), None) => Start::Now,
            (None, None) => Start::Initial {
                end_bookmark: false,
            },
            (None, Some(rv)) => Start::From(rv),
        };
        let timeout = match q.non_empty("timeoutSeconds") {
            Some(s) => Duration::from_secs(
                s.parse::<u64>()
                    .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds {s:?}")))?
                    .min(MAX_TIMEOUT_SECS),
            ),
            None => DEFAULT_TIMEOUT,
        };
        Ok(Self {
            target,
            labels,
            fields,
            start,
            bookmarks,
            timeout,
        })
    }

    fn matches(&self, labels: &[(String, String)], body: &[u8]) -> bool {
        self.labels.matches(labels)
            && (self.fields.is_empty() || self.fields.matches(&decode(body)))
    }

    fn object(&self, body: &[u8]) -> Bytes {
        self.target.render_body(body)
    }

    /// The event to send for a change, if this watch sees it.
    fn convert(&self, c: &Change) -> Option<Bytes> {
        if let Some(ns) = &self.target.namespace
            && c.namespace != *ns
        {
            return None;
        }
        let now = self.matches(&c.labels, &c.body);
        match c.kind {
            EventType::Added | EventType::Deleted => {
                now.then(|| event(c.kind.as_str(), &self.object(&c.body)))
            }
            EventType::Modified => {
                let before = c.prev.as_ref().is_some_and(|(b, l)| self.matches(l, b));
                match (before, now) {
                    (true, true) => Some(event("MODIFIED", &self.object(&c.body))),
                    (false, true) => Some(event("ADDED", &self.object(&c.body))),
                    (true, false) => {
                        let (prev, _) = c.prev.as_ref()?;
                        let mut obj = decode(prev);
                        meta_mut(&mut obj)
                            .insert("resourceVersion".into(), Value::from(c.rv.to_string()));
                        Some(event("DELETED", &self.object(&encode_body(&obj))))
                    }
                    (false, false) => None,
                }
            }
        }
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut meta = serde_json::Map::new();
        meta.insert("resourceVersion".into(), Value::from(rv.to_string()));
        if initial_end {
            meta.insert(
                "annotations".into(),
                serde_json::json!({"k8s.io/initial-events-end": "true"}),
            );
        }
        let mut body = serde_json::Map::new();
        body.insert("metadata".into(), Value::Object(meta));
        event("BOOKMARK", &self.object(&encode_body(&body)))
    }
}

fn event(ty: &str, object: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(object.len() + 32);
    out.put_slice(b"{\"type\":\"");
    out.put_slice(ty.as_bytes());
    out.put_slice(b"\",\"object\":");
    out.put_slice(object);
    out.put_slice(b"}\n");
    out.freeze()
}

fn error_event(err: &ApiError) -> Bytes {
    event("ERROR", &err.to_bytes())
}

/// Keeps the count of open watches right however the stream ends.
struct OpenWatch {
    shared: Arc<Shared>,
    group: String,
    plural: String,
}

impl Drop for OpenWatch {
    fn drop(&mut self) {
        self.shared.counters.watch_closed(&self.group, &self.plural);
    }
}

/// Starts streaming a watch; the returned body ends at the timeout, on a fault, or when the client leaves.
pub(crate) fn stream(shared: Arc<Shared>, req: WatchRequest, encoding: Encoding) -> Body {
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    shared
        .counters
        .watch_opened(&req.target.res.group, &req.target.res.plural);
    let guard = OpenWatch {
        shared: shared.clone(),
        group: req.target.res.group.clone(),
        plural: req.target.res.plural.clone(),
    };
    tokio::spawn(async move {
        let _guard = guard;
        run(shared, req, tx).await;
    });
    let encode = move |event: Bytes| match encoding {
        Encoding::Json => Some(event),
        Encoding::Protobuf => match crate::protobuf::watch_frame(&event) {
            Ok(frame) => Some(frame),
            Err(e) => {
                tracing::warn!(error = %e, "watch event cannot be written as protobuf; ending the watch");
                None
            }
        },
    };
    // Events already waiting go out in one chunk (up to CHUNK bytes): a watch from 0 over
    // thousands of objects is a few large writes, not one write per event, and the first
    // event still leaves as soon as it is ready.
    let body = futures::stream::unfold(rx, move |mut rx| async move {
        let first = encode(rx.recv().await?)?;
        if first.len() >= CHUNK {
            return Some((Ok::<_, Infallible>(first), rx));
        }
        let mut chunk = BytesMut::with_capacity(CHUNK);
        chunk.put_slice(&first);
        while chunk.len() < CHUNK {
            let Ok(next) = rx.try_recv() else {
                break;
            };
            chunk.put_slice(&encode(next)?);
        }
        Some((Ok::<_, Infallible>(chunk.freeze()), rx))
    });
    Body::from_stream(body)
}

/// The most bytes of waiting events written as one chunk.
const CHUNK: usize = 64 * 1024;

async fn run(shared: Arc<Shared>, req: WatchRequest, tx: mpsc::Sender<Bytes>) {
    let deadline = Instant::now() + req.timeout;
    let mut closing = shared.close_watches.subscribe();
    let storage = req.target.res.storage.clone();
    let opened = {
        let core = shared.core.lock();
        let notified = core.store.subscribe();
        match req.start {
            Start::From(rv) => match core.store.changes_since(rv, &storage) {
                None => Err(ApiError::expired(rv, core.store.compacted())),
                Some(changes) => {
                    let events = changes.iter().filter_map(|c| req.convert(c)).collect();
                    Ok((notified, events, rv.max(core.store.rv())))
                }
            },
            Start::Now => Ok((notified, Vec::new(), core.store.rv())),
            Start::Initial { end_bookmark } => {
                let mut events: Vec<Bytes> = core
                    .store
                    .iter(&storage, req.target.namespace.as_deref())
                    .filter(|(_, s)| req.matches(&s.labels, &s.body))
                    .map(|(_, s)| event("ADDED", &req.object(&s.body)))
                    .collect();
                let rv = core.store.rv();
                if end_bookmark {
                    events.push(req.bookmark(rv, true));
                }
                Ok((notified, events, rv))
            }
        }
    };
    let (mut notified, initial, mut last) = match opened {
        Ok(o) => o,
        Err(err) => {
            let _ = tx.send(error_event(&err)).await;
            return;
        }
    };
    let start_rv = last;
    let mut bookmarked = start_rv;
    for e in initial {
        if tx.send(e).await.is_err() {
            return;
        }
    }
    let interval = shared.bookmark_interval;
    let mut next_bookmark = Instant::now() + interval;
    let final_bookmark = deadline
        .checked_sub(FINAL_BOOKMARK_LEAD)
        .unwrap_or(deadline);
    let mut final_sent = false;
    loop {
        let bookmark_at = if final_sent {
            next_bookmark
        } else {
            next_bookmark.min(final_bookmark)
        };
        tokio::select! {
            () = tx.closed() => return,
            _ = closing.changed() => return,
            () = tokio::time::sleep_until(deadline) => return,
            () = tokio::time::sleep_until(bookmark_at), if req.bookmarks => {
                if bookmark_at == final_bookmark {
                    final_sent = true;
                } else {
                    next_bookmark = Instant::now() + interval;
                }
                if last > bookmarked && last > start_rv {
                    bookmarked = last;
                    if tx.send(req.bookmark(last, false)).await.is_err() {
                        return;
                    }
                }
            }
            changed = notified.changed() => {
                if changed.is_err() {
                    return;
                }
                let (fetched, served) = {
                    let core = shared.core.lock();
                    let res = &req.target.res;
                    let served = core.registry.find(&res.group, &req.target.version, &res.plural).is_some();
                    let fetched = core
                        .store
                        .changes_since(last, &storage)
                        .map(|c| (c, core.store.rv()))
                        .ok_or_else(|| ApiError::expired(last, core.store.compacted()));
                    (fetched, served)
                };
                match fetched {
                    Ok((changes, now)) => {
                        last = last.max(now);
                        for c in changes {
                            if let Some(e) = req.convert(&c)
                                && tx.send(e).await.is_err()
                            {
                                return;
                            }
                        }
                        // The resource stopped being served (its CRD is gone): end the watch.
                        if !served {
                            return;
                        }
                    }
                    Err(err) => {
                        let _ = tx.send(error_event(&err)).await;
                        return;
                    }
                }
            }
        }
    }
}
