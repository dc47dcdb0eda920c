//! The in-memory object store: objects per resource, the resourceVersion counter and the watch history.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value};
use tokio::sync::watch;

use crate::json::{self, encode_body, meta, meta_mut, meta_str};

/// `(namespace, name)`; the namespace is empty for cluster-scoped objects.
pub(crate) type ObjKey = (String, String);

/// A reference to one stored object: storage key plus `(namespace, name)`.
pub(crate) type ObjRef = (Arc<str>, ObjKey);

/// Labels as sorted pairs.
pub(crate) type Labels = Box<[(String, String)]>;

/// One stored object: its encoded body (without kind/apiVersion) and what selectors need.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    /// The object's resourceVersion.
    pub rv: u64,
    /// The object, encoded, without `kind` and `apiVersion`.
    pub body: Bytes,
    /// The object's labels.
    pub labels: Box<[(String, String)]>,
}

impl Stored {
    /// The object, parsed.
    pub(crate) fn decode(&self) -> Map<String, Value> {
        json::decode(&self.body)
    }
}

/// The type of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    /// The event type as written on the wire.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One change, kept in the watch history.
#[derive(Debug)]
pub(crate) struct Change {
    pub rv: u64,
    pub storage: Arc<str>,
    pub namespace: String,
    pub kind: EventType,
    /// The object after the change (for deletes: its last state, at the delete's resourceVersion).
    pub body: Bytes,
    pub labels: Box<[(String, String)]>,
    /// The object before a modification.
    pub prev: Option<(Bytes, Labels)>,
}

/// All objects, the resourceVersion counter and the bounded history of changes.
#[derive(Debug)]
pub(crate) struct Store {
    rv: u64,
    tables: HashMap<Arc<str>, BTreeMap<ObjKey, Stored>>,
    history: VecDeque<Arc<Change>>,
    history_cap: usize,
    /// Changes at or below this resourceVersion are no longer in the history.
    compacted: u64,
    uids: HashMap<String, ObjRef>,
    dependents: HashMap<String, BTreeSet<ObjRef>>,
    notify: watch::Sender<u64>,
    /// The resourceVersion of the last change of each storage key.
    changed: HashMap<Arc<str>, u64>,
}

fn owner_uids(obj: &Map<String, Value>) -> Vec<String> {
    meta(obj)
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter_map(|r| r.get("uid").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

impl Store {
    /// An empty store keeping `history_cap` changes for watch resumption.
    pub(crate) fn new(history_cap: usize) -> Self {
        Self {
            rv: 1,
            tables: HashMap::new(),
            history: VecDeque::new(),
            history_cap: history_cap.max(1),
            compacted: 1,
            uids: HashMap::new(),
            dependents: HashMap::new(),
            notify: watch::channel(1).0,
            changed: HashMap::new(),
        }
    }

    /// Every stored object as `(storage, encoded body)`, for a snapshot.
    pub(crate) fn snapshot(&self) -> Vec<(Arc<str>, Bytes)> {
        self.tables
            .iter()
            .flat_map(|(storage, t)| t.values().map(move |s| (storage.clone(), s.body.clone())))
            .collect()
    }

    /// Empties the store and loads objects as they were, at their own resourceVersions, with no
    /// history: resuming a watch from before the load gets 410 Expired.
    pub(crate) fn restore(&mut self, rv: u64, objects: Vec<(Arc<str>, Map<String, Value>)>) {
        self.tables.clear();
        self.uids.clear();
        self.dependents.clear();
        self.history.clear();
        for (storage, obj) in objects {
            let key: ObjKey = (
                meta_str(&obj, "namespace").unwrap_or_default().to_owned(),
                meta_str(&obj, "name").unwrap_or_default().to_owned(),
            );
            let obj_rv = meta_str(&obj, "resourceVersion")
                .and_then(|r| r.parse().ok())
                .unwrap_or(rv);
            let stored = Stored {
                rv: obj_rv,
                body: encode_body(&obj),
                labels: json::labels(&obj).into_boxed_slice(),
            };
            self.index(&storage, &key, &obj);
            self.tables.entry(storage).or_default().insert(key, stored);
        }
        self.rv = rv;
        self.compacted = rv;
        self.changed = self.tables.keys().map(|k| (k.clone(), rv)).collect();
        self.notify.send_replace(rv);
    }

    /// A receiver told the latest resourceVersion after every change.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.notify.subscribe()
    }

    /// The latest resourceVersion.
    pub(crate) fn rv(&self) -> u64 {
        self.rv
    }

    /// The resourceVersion of the last change to a storage key (0 if never changed).
    pub(crate) fn changed_at(&self, storage: &str) -> u64 {
        self.changed.get(storage).copied().unwrap_or(0)
    }

    /// The highest resourceVersion no longer covered by the history.
    pub(crate) fn compacted(&self) -> u64 {
        self.compacted
    }

    /// One object.
    pub(crate) fn get(&self, storage: &str, ns: &str, name: &str) -> Option<&Stored> {
        self.tables
            .get(storage)?
            .get(&(ns.to_owned(), name.to_owned()))
    }

    /// Objects of a resource, sorted by namespace then name; all namespaces when `ns` is `None`.
    pub(crate) fn iter<'a>(
        &'a self,
        storage: &str,
        ns: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a ObjKey, &'a Stored)> + 'a {
        self.tables
            .get(storage)
            .into_iter()
            .flat_map(|t| t.iter())
            .filter(move |(k, _)| ns.is_none_or(|n| k.0 == n))
    }

    /// Bytes of encoded objects held, across all resources.
    pub(crate) fn stored_bytes(&self) -> usize {
        self.tables
            .values()
            .flat_map(|t| t.values())
            .map(|s| s.body.len())
            .sum()
    }

    /// Number of objects of a resource.
    pub(crate) fn count(&self, storage: &str) -> usize {
        self.tables.get(storage).map_or(0, BTreeMap::len)
    }

    /// Finds an object by uid.
    pub(crate) fn by_uid(&self, uid: &str) -> Option<&ObjRef> {
        self.uids.get(uid)
    }

    /// Objects whose ownerReferences name this uid.
    pub(crate) fn dependents_of(&self, uid: &str) -> Vec<ObjRef> {
        self.dependents
            .get(uid)
            .map(|d| d.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Storage keys of every table.
    pub(crate) fn storages(&self) -> Vec<Arc<str>> {
        self.tables.keys().cloned().collect()
    }

    fn unindex(&mut self, storage: &Arc<str>, key: &ObjKey, obj: &Map<String, Value>) {
        let r: ObjRef = (storage.clone(), key.clone());
        if let Some(uid) = meta_str(obj, "uid") {
            self.uids.remove(uid);
        }
        for owner in owner_uids(obj) {
            if let Some(set) = self.dependents.get_mut(&owner) {
                set.remove(&r);
                if set.is_empty() {
                    self.dependents.remove(&owner);
                }
            }
        }
    }

    fn index(&mut self, storage: &Arc<str>, key: &ObjKey, obj: &Map<String, Value>) {
        let r: ObjRef = (storage.clone(), key.clone());
        if let Some(uid) = meta_str(obj, "uid") {
            self.uids.insert(uid.to_owned(), r.clone());
        }
        for owner in owner_uids(obj) {
            self.dependents.entry(owner).or_default().insert(r.clone());
        }
    }

    fn record(&mut self, change: Change) {
        match self.changed.get_mut(&change.storage) {
            Some(rv) => *rv = change.rv,
            None => drop(self.changed.insert(change.storage.clone(), change.rv)),
        }
        self.history.push_back(Arc::new(change));
        while self.history.len() > self.history_cap {
            if let Some(old) = self.history.pop_front() {
                self.compacted = old.rv;
            }
        }
        self.notify.send_replace(self.rv);
    }

    /// Writes an object at a new resourceVersion and records the change; returns what was stored.
    pub(crate) fn put(&mut self, storage: &Arc<str>, mut obj: Map<String, Value>) -> Stored {
        self.rv += 1;
        let rv = self.rv;
        meta_mut(&mut obj).insert("resourceVersion".into(), Value::from(rv.to_string()));
        let key: ObjKey = (
            meta_str(&obj, "namespace").unwrap_or_default().to_owned(),
            meta_str(&obj, "name").unwrap_or_default().to_owned(),
        );
        let labels: Box<[(String, String)]> = json::labels(&obj).into_boxed_slice();
        let stored = Stored {
            rv,
            body: encode_body(&obj),
            labels: labels.clone(),
        };
        let previous = self
            .tables
            .entry(storage.clone())
            .or_default()
            .insert(key.clone(), stored.clone());
        if let Some(prev) = &previous {
            self.unindex(storage, &key, &prev.decode());
        }
        self.index(storage, &key, &obj);
        self.record(Change {
            rv,
            storage: storage.clone(),
            namespace: key.0,
            kind: if previous.is_some() {
                EventType::Modified
            } else {
                EventType::Added
            },
            body: stored.body.clone(),
            labels,
            prev: previous.map(|p| (p.body, p.labels)),
        });
        stored
    }

    /// Removes an object and records its deletion; returns its last state at the delete's resourceVersion.
    pub(crate) fn remove(
        &mut self,
        storage: &Arc<str>,
        ns: &str,
        name: &str,
    ) -> Option<Map<String, Value>> {
        let key: ObjKey = (ns.to_owned(), name.to_owned());
        let old = self.tables.get_mut(storage)?.remove(&key)?;
        let mut obj = old.decode();
        self.unindex(storage, &key, &obj);
        self.rv += 1;
        meta_mut(&mut obj).insert("resourceVersion".into(), Value::from(self.rv.to_string()));
        self.record(Change {
            rv: self.rv,
            storage: storage.clone(),
            namespace: key.0,
            kind: EventType::Deleted,
            body: encode_body(&obj),
            labels: old.labels,
            prev: None,
        });
        Some(obj)
    }

    /// Drops a whole table without recording events (its resource is gone).
    pub(crate) fn drop_table(&mut self, storage: &str) {
        if let Some(table) = self.tables.remove(storage) {
            let storage: Arc<str> = Arc::from(storage);
            self.changed.insert(storage.clone(), self.rv);
            for (key, stored) in table {
                self.unindex(&storage, &key, &stored.decode());
            }
        }
    }

    /// Changes after `rv` for a storage key; `None` when `rv` is older than the history.
    pub(crate) fn changes_since(&self, rv: u64, storage: &str) -> Option<Vec<Arc<Change>>> {
        if rv < self.compacted {
            return None;
        }
        let start = self.history.partition_point(|c| c.rv <= rv);
        Some(
            self.history
                .range(start..)
                .filter(|c| &*c.storage == storage)
                .cloned()
                .collect(),
        )
    }

    /// Forgets the history: every resourceVersion handed out so far becomes too old to resume from.
    pub(crate) fn expire_history(&mut self) {
        self.history.clear();
        self.rv += 1;
        self.compacted = self.rv;
        self.notify.send_replace(self.rv);
    }

    /// Changes how many changes the history keeps.
    pub(crate) fn set_history_cap(&mut self, cap: usize) {
        self.history_cap = cap.max(1);
        while self.history.len() > self.history_cap {
            if let Some(old) = self.history.pop_front() {
                self.compacted = old.rv;
            }
        }
    }
}
