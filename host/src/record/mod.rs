//! Recording what a controller's guest sees and answers, and comparing two
//! answers to the same input.
//!
//! A recording holds, for every reconcile and map a controller runs, the
//! request (the object, whether it was deleted, the attempt), every cache
//! read with its answer, the instant the guest's clock read, and the result
//! the guest returned, one JSON line each ([`Entry`]). `paddock run
//! --record DIR` writes them ([`Recordings`]); `paddock test MODULE
//! --replay DIR` replays them against another module offline
//! ([`replay`]); shadow runs serve a candidate the cache answers the live
//! guest got ([`Snapshot`]) and compare the two results ([`compare`]).

pub mod compare;
pub mod replay;
pub(crate) mod writer;

use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use writer::{RecordOptions, RecordStats, Recorder, Recordings};

use crate::actions::{ObjectRef, Outcome};
use crate::cluster::Projections;
use crate::wasm::{CacheReader, Change, GuestError, IndexQuery, ListQuery, SharedCache};

/// The version of the recording format [`Entry`] writes.
pub const FORMAT_VERSION: u32 = 1;

/// What a redacted value reads as.
pub const REDACTED: &str = "<redacted>";

/// Which call an entry records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallKind {
    /// `reconcile`.
    #[default]
    Reconcile,
    /// `map`.
    Map,
}

/// One recorded call: one line of a recording.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// The recording format's version, [`FORMAT_VERSION`].
    pub version: u32,
    /// The instant the guest's clock read during the call, RFC 3339.
    pub at: String,
    /// The controller.
    pub controller: String,
    /// The sha256 digest of the module that answered.
    pub digest: String,
    /// `reconcile` or `map`.
    pub call: CallKind,
    /// The object reconciled, or the changed object mapped.
    pub object: Value,
    /// Whether the reconciled object exists (reconciles only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<Change>,
    /// The attempt number (reconciles only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// Every cache read, in order, with its answer.
    pub reads: Vec<Read>,
    /// What the guest answered: see [`reconcile_result`] and
    /// [`map_result`].
    pub result: Value,
    /// What was hidden: `secrets` for Secrets' values, and JSON pointers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redacted: Vec<String>,
}

impl Entry {
    /// The reference of the entry's object, for reports.
    pub fn object_ref(&self) -> String {
        ObjectRef::of(&self.object)
            .map_or_else(|| "an object without a name".to_owned(), |r| r.to_string())
    }

    /// The instant the guest's clock read.
    pub fn instant(&self) -> Result<SystemTime, String> {
        crate::harness::parse_instant(&self.at)
    }
}

/// One cache read, as a recording holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Read {
    /// `cache.get`.
    Get {
        /// What was asked for.
        target: ObjectRef,
        /// The answer: the object, or `null` if absent.
        object: Option<Value>,
    },
    /// `cache.list`.
    List {
        /// What was asked for.
        query: RecordedQuery,
        /// The answer.
        objects: Vec<Value>,
    },
    /// `cache.by-index`.
    ByIndex {
        /// What was asked for.
        query: RecordedLookup,
        /// The answer.
        objects: Vec<Value>,
    },
}

/// The arguments of one `cache.by-index`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedLookup {
    /// The index's name.
    pub index: String,
    /// The value looked up.
    pub value: String,
    /// Only this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl RecordedLookup {
    fn of(query: &IndexQuery<'_>) -> Self {
        Self {
            index: query.index.to_owned(),
            value: query.value.to_owned(),
            namespace: query.namespace.map(str::to_owned),
        }
    }

    fn is(&self, query: &IndexQuery<'_>) -> bool {
        self.index == query.index
            && self.value == query.value
            && self.namespace.as_deref() == query.namespace
    }
}

/// The arguments of one `cache.list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedQuery {
    /// `group/version`.
    pub api_version: String,
    /// The kind.
    pub kind: String,
    /// Only this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Only objects matching this label selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<String>,
}

impl RecordedQuery {
    fn of(query: &ListQuery<'_>) -> Self {
        Self {
            api_version: query.api_version.to_owned(),
            kind: query.kind.to_owned(),
            namespace: query.namespace.map(str::to_owned),
            label_selector: query.label_selector.map(str::to_owned),
        }
    }

    fn is(&self, query: &ListQuery<'_>) -> bool {
        self.api_version == query.api_version
            && self.kind == query.kind
            && self.namespace.as_deref() == query.namespace
            && self.label_selector.as_deref() == query.label_selector
    }
}

/// One cache read as a call made it: the answers as the guest got them.
#[derive(Debug, Clone)]
pub enum CapturedRead {
    /// `cache.get`.
    Get(ObjectRef, Option<String>),
    /// `cache.list`.
    List(RecordedQuery, Vec<String>),
    /// `cache.by-index`.
    ByIndex(RecordedLookup, Vec<String>),
}

impl CapturedRead {
    /// The read as a recording holds it.
    pub fn to_read(&self) -> Read {
        let parse = |json: &String| serde_json::from_str(json).unwrap_or(Value::Null);
        match self {
            Self::Get(target, object) => Read::Get {
                target: target.clone(),
                object: object.as_ref().map(parse),
            },
            Self::List(query, objects) => Read::List {
                query: query.clone(),
                objects: objects.iter().map(parse).collect(),
            },
            Self::ByIndex(query, objects) => Read::ByIndex {
                query: query.clone(),
                objects: objects.iter().map(parse).collect(),
            },
        }
    }

    /// The read a recording holds, as a call makes it.
    pub fn from_read(read: &Read) -> Self {
        match read {
            Read::Get { target, object } => {
                Self::Get(target.clone(), object.as_ref().map(Value::to_string))
            }
            Read::List { query, objects } => Self::List(
                query.clone(),
                objects.iter().map(Value::to_string).collect(),
            ),
            Read::ByIndex { query, objects } => Self::ByIndex(
                query.clone(),
                objects.iter().map(Value::to_string).collect(),
            ),
        }
    }
}

/// A cache that remembers every read a call makes through it, and the
/// answers.
pub struct RecordingCache {
    inner: SharedCache,
    reads: Mutex<Vec<CapturedRead>>,
}

impl std::fmt::Debug for RecordingCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingCache").finish_non_exhaustive()
    }
}

impl RecordingCache {
    /// Reads `inner`, remembering.
    pub fn new(inner: SharedCache) -> Self {
        Self {
            inner,
            reads: Mutex::default(),
        }
    }

    /// The reads made so far, in order.
    pub fn take(&self) -> Vec<CapturedRead> {
        std::mem::take(&mut *self.reads.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn push(&self, read: CapturedRead) {
        self.reads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(read);
    }
}

/// Records whole objects, so that a replay or a shadow candidate with
/// other projections than the recorded guest's reads what it would have
/// read live; the guest gets them narrowed to its own.
impl CacheReader for RecordingCache {
    fn get(&self, target: &ObjectRef, seen: &Projections) -> Option<String> {
        let answer = self.inner.get(target, &Projections::none());
        self.push(CapturedRead::Get(target.clone(), answer.clone()));
        answer.map(|json| seen.narrow(json))
    }

    fn list(&self, query: &ListQuery<'_>, seen: &Projections) -> Vec<String> {
        let answer = self.inner.list(query, &Projections::none());
        self.push(CapturedRead::List(RecordedQuery::of(query), answer.clone()));
        seen.narrow_all(answer)
    }

    fn by_index(&self, query: &IndexQuery<'_>, seen: &Projections) -> Vec<String> {
        let answer = self.inner.by_index(query, &Projections::none());
        self.push(CapturedRead::ByIndex(
            RecordedLookup::of(query),
            answer.clone(),
        ));
        seen.narrow_all(answer)
    }
}

/// The cache as one call saw it: a read made then gets the same answer
/// again; any other read goes to `fallback` (the live cache, for a shadow
/// run) or, offline, reads as absent. Reads that were not made then are
/// counted: their answers may differ from what the first call would have
/// seen.
pub struct Snapshot {
    reads: Vec<CapturedRead>,
    fallback: Option<SharedCache>,
    unrecorded: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("reads", &self.reads.len())
            .finish_non_exhaustive()
    }
}

impl Snapshot {
    /// The answers of `reads`, then `fallback`'s.
    pub fn new(reads: Vec<CapturedRead>, fallback: Option<SharedCache>) -> Self {
        Self {
            reads,
            fallback,
            unrecorded: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// How many reads were not among the recorded ones.
    pub fn unrecorded(&self) -> u64 {
        self.unrecorded.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The recorded answer; else, counted as a read the recording does not
    /// hold, `fallback`'s answer (or nothing, offline).
    fn answer<T: Default>(
        &self,
        recorded: Option<T>,
        fallback: impl FnOnce(&SharedCache) -> T,
    ) -> T {
        if let Some(answer) = recorded {
            return answer;
        }
        self.unrecorded
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.fallback.as_ref().map(fallback).unwrap_or_default()
    }
}

/// Recorded answers are whole objects (see [`RecordingCache`]): they are
/// narrowed to the reading guest's projections.
impl CacheReader for Snapshot {
    fn get(&self, target: &ObjectRef, seen: &Projections) -> Option<String> {
        let recorded = self.reads.iter().find_map(|read| match read {
            CapturedRead::Get(asked, answer) => {
                (asked == target).then(|| answer.clone().map(|json| seen.narrow(json)))
            }
            _ => None,
        });
        self.answer(recorded, |cache| cache.get(target, seen))
    }

    fn list(&self, query: &ListQuery<'_>, seen: &Projections) -> Vec<String> {
        let recorded = self.reads.iter().find_map(|read| match read {
            CapturedRead::List(asked, answer) => {
                asked.is(query).then(|| seen.narrow_all(answer.clone()))
            }
            _ => None,
        });
        self.answer(recorded, |cache| cache.list(query, seen))
    }

    fn by_index(&self, query: &IndexQuery<'_>, seen: &Projections) -> Vec<String> {
        let recorded = self.reads.iter().find_map(|read| match read {
            CapturedRead::ByIndex(asked, answer) => {
                asked.is(query).then(|| seen.narrow_all(answer.clone()))
            }
            _ => None,
        });
        self.answer(recorded, |cache| cache.by_index(query, seen))
    }
}

/// A reconcile's result as a recording holds it: the outcome, or
/// `{"error": {KIND: MESSAGE}}`, KIND being `transient`, `permanent` or
/// the sandbox failure's kind (`trap`, `deadline_exceeded`, ...).
pub fn reconcile_result(result: &Result<Outcome, GuestError>) -> Value {
    match result {
        Ok(outcome) => serde_json::to_value(outcome).unwrap_or(Value::Null),
        Err(error) => error_value(error),
    }
}

/// A map's result as a recording holds it: `{"primaries": [...]}` or the
/// error as [`reconcile_result`] writes it.
pub fn map_result(result: &Result<Vec<ObjectRef>, GuestError>) -> Value {
    match result {
        Ok(primaries) => serde_json::json!({ "primaries": primaries }),
        Err(error) => error_value(error),
    }
}

fn error_value(error: &GuestError) -> Value {
    let message = match error {
        GuestError::Transient { message, .. } | GuestError::Permanent { message, .. } => {
            message.clone()
        }
        other => other.to_string(),
    };
    let mut kind = serde_json::Map::new();
    kind.insert(error.kind().to_owned(), Value::String(message));
    serde_json::json!({ "error": kind })
}

/// What is hidden from a recording: the values of Secrets' `data` and
/// `stringData` (unless turned off), and the fields the operator names by
/// JSON pointer, in every object, cache answer and action body.
#[derive(Debug, Clone)]
pub struct Redaction {
    /// Hide Secrets' values.
    pub secrets: bool,
    /// JSON pointers (`/spec/password`) of fields to hide in every object.
    pub pointers: Vec<String>,
}

impl Default for Redaction {
    fn default() -> Self {
        Self {
            secrets: true,
            pointers: Vec::new(),
        }
    }
}

impl Redaction {
    /// What an entry says was hidden from it, as [`Entry::redacted`]
    /// lists it.
    pub fn of_entry(entry: &Entry) -> Self {
        Self {
            secrets: entry.redacted.iter().any(|item| item == "secrets"),
            pointers: entry
                .redacted
                .iter()
                .filter(|item| item.starts_with('/'))
                .cloned()
                .collect(),
        }
    }

    /// What is hidden, as [`Entry::redacted`] lists it.
    pub fn describe(&self) -> Vec<String> {
        let secrets = self.secrets.then(|| "secrets".to_owned());
        secrets
            .into_iter()
            .chain(self.pointers.iter().cloned())
            .collect()
    }

    /// Hides what must be hidden in one object.
    pub fn object(&self, object: &mut Value) {
        let is_secret = object.get("kind").and_then(Value::as_str) == Some("Secret")
            && object.get("apiVersion").and_then(Value::as_str) == Some("v1");
        if self.secrets && is_secret {
            hide_values(object, "data");
            hide_values(object, "stringData");
        }
        for pointer in &self.pointers {
            if let Some(field) = object.pointer_mut(pointer) {
                *field = Value::String(REDACTED.to_owned());
            }
        }
    }

    /// Hides what must be hidden in a whole entry.
    pub fn entry(&self, entry: &mut Entry) {
        self.object(&mut entry.object);
        for read in &mut entry.reads {
            match read {
                Read::Get { object, .. } => {
                    if let Some(object) = object {
                        self.object(object);
                    }
                }
                Read::List { objects, .. } | Read::ByIndex { objects, .. } => {
                    objects.iter_mut().for_each(|o| self.object(o));
                }
            }
        }
        self.result(&mut entry.result);
    }

    /// Hides what must be hidden in the bodies of a result's actions.
    pub fn result(&self, result: &mut Value) {
        let Some(actions) = result.get_mut("actions").and_then(Value::as_array_mut) else {
            return;
        };
        for action in actions {
            let Some((verb, body)) = action.as_object_mut().and_then(|a| a.iter_mut().next())
            else {
                continue;
            };
            match verb.as_str() {
                "create" | "update" | "updateStatus" => {
                    if let Some(object) = body.get_mut("object") {
                        self.object(object);
                    }
                }
                "patch" => self.patch(body),
                _ => {}
            }
        }
    }

    fn patch(&self, patch: &mut Value) {
        let target_kind = patch.pointer("/target/kind").and_then(Value::as_str);
        let target_version = patch.pointer("/target/apiVersion").and_then(Value::as_str);
        let is_secret = target_kind == Some("Secret") && target_version == Some("v1");
        let Some(body) = patch.get_mut("body") else {
            return;
        };
        if let Some(operations) = body.as_array_mut() {
            // A JSON patch: hide the values its operations write.
            for operation in operations {
                let path = operation
                    .get("path")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let secret_path = is_secret
                    && self.secrets
                    && (path.starts_with("/data") || path.starts_with("/stringData"));
                let named = self
                    .pointers
                    .iter()
                    .any(|pointer| path == *pointer || path.starts_with(&format!("{pointer}/")));
                if (secret_path || named)
                    && let Some(value) = operation.get_mut("value")
                {
                    *value = Value::String(REDACTED.to_owned());
                }
            }
            return;
        }
        if is_secret && self.secrets {
            hide_values(body, "data");
            hide_values(body, "stringData");
        }
        for pointer in &self.pointers {
            if let Some(field) = body.pointer_mut(pointer) {
                *field = Value::String(REDACTED.to_owned());
            }
        }
    }
}

/// Replaces every value of the map at `object[field]`, keeping its keys.
fn hide_values(object: &mut Value, field: &str) {
    if let Some(values) = object.get_mut(field).and_then(Value::as_object_mut) {
        for value in values.values_mut() {
            *value = Value::String(REDACTED.to_owned());
        }
    }
}

/// Formats an instant as a recording holds it (RFC 3339, UTC, to the
/// nanosecond).
pub fn format_instant(instant: SystemTime) -> String {
    jiff::Timestamp::try_from(instant).map_or_else(|_| String::new(), |t| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_and_named_fields_are_hidden_everywhere() {
        let redaction = Redaction {
            secrets: true,
            pointers: vec!["/spec/token".into()],
        };
        let mut entry = Entry {
            version: FORMAT_VERSION,
            at: "2025-01-01T00:00:00Z".into(),
            controller: "c".into(),
            digest: "d".into(),
            call: CallKind::Reconcile,
            object: json!({"apiVersion": "example.com/v1", "kind": "App",
                           "metadata": {"name": "a"}, "spec": {"token": "t0p", "size": 3}}),
            change: Some(Change::Applied),
            attempt: Some(0),
            reads: vec![Read::Get {
                target: ObjectRef {
                    api_version: "v1".into(),
                    kind: "Secret".into(),
                    namespace: Some("x".into()),
                    name: "s".into(),
                },
                object: Some(json!({"apiVersion": "v1", "kind": "Secret",
                                    "metadata": {"name": "s"}, "data": {"password": "aHVudGVy"}})),
            }],
            redacted: Vec::new(),
            result: json!({"actions": [
                {"create": {"object": {"apiVersion": "v1", "kind": "Secret",
                                       "metadata": {"name": "copy"}, "stringData": {"k": "hunter"}}}},
                {"patch": {"target": {"apiVersion": "v1", "kind": "Secret", "name": "s"},
                           "kind": "json",
                           "body": [{"op": "add", "path": "/data/k", "value": "aHVudGVy"},
                                    {"op": "add", "path": "/metadata/labels/a", "value": "b"}]}},
                {"patch": {"target": {"apiVersion": "v1", "kind": "Secret", "name": "s"},
                           "kind": "merge", "body": {"data": {"k": "aHVudGVy"}}}}
            ]}),
        };
        redaction.entry(&mut entry);
        let text = serde_json::to_string(&entry).expect("json");
        assert!(
            !text.contains("hunter") && !text.contains("aHVudGVy") && !text.contains("t0p"),
            "{text}"
        );
        assert_eq!(entry.object["spec"]["size"], 3);
        assert_eq!(entry.result["actions"][1]["patch"]["body"][1]["value"], "b");
        assert_eq!(
            entry.result["actions"][0]["create"]["object"]["stringData"]["k"],
            REDACTED
        );
    }

    #[test]
    fn secrets_stay_when_redaction_is_off() {
        let redaction = Redaction {
            secrets: false,
            pointers: Vec::new(),
        };
        let mut secret = json!({"apiVersion": "v1", "kind": "Secret", "data": {"k": "dg=="}});
        redaction.object(&mut secret);
        assert_eq!(secret["data"]["k"], "dg==");
    }

    #[test]
    fn a_snapshot_answers_recorded_reads_and_counts_the_others() {
        let target = ObjectRef {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: Some("x".into()),
            name: "a".into(),
        };
        let query = RecordedQuery {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: Some("x".into()),
            label_selector: None,
        };
        let snapshot = Snapshot::new(
            vec![
                CapturedRead::Get(target.clone(), Some("{\"a\":1}".into())),
                CapturedRead::List(query, vec!["{}".into(), "{}".into()]),
                CapturedRead::ByIndex(
                    RecordedLookup {
                        index: "by-config".into(),
                        value: "web".into(),
                        namespace: None,
                    },
                    vec!["{\"b\":2}".into()],
                ),
            ],
            None,
        );
        assert_eq!(
            snapshot.get(&target, &Projections::none()).as_deref(),
            Some("{\"a\":1}")
        );
        let list = |namespace| ListQuery {
            api_version: "v1",
            kind: "ConfigMap",
            namespace,
            label_selector: None,
        };
        assert_eq!(
            snapshot.list(&list(Some("x")), &Projections::none()).len(),
            2
        );
        assert_eq!(snapshot.unrecorded(), 0);
        assert!(snapshot.list(&list(None), &Projections::none()).is_empty());
        let other = ObjectRef {
            name: "b".into(),
            ..target
        };
        assert_eq!(snapshot.get(&other, &Projections::none()), None);
        assert_eq!(snapshot.unrecorded(), 2);
        let lookup = |value| IndexQuery {
            index: "by-config",
            value,
            namespace: None,
        };
        assert_eq!(
            snapshot.by_index(&lookup("web"), &Projections::none()),
            ["{\"b\":2}"]
        );
        assert!(
            snapshot
                .by_index(&lookup("api"), &Projections::none())
                .is_empty()
        );
        assert_eq!(snapshot.unrecorded(), 3);
    }

    #[test]
    fn index_lookups_are_recorded_and_read_back() {
        let captured = CapturedRead::ByIndex(
            RecordedLookup {
                index: "by-config".into(),
                value: "web".into(),
                namespace: Some("shop".into()),
            },
            vec![r#"{"metadata":{"name":"web"}}"#.into()],
        );
        let line = serde_json::to_value(captured.to_read()).expect("serialises");
        assert_eq!(
            line,
            json!({"byIndex": {
                "query": {"index": "by-config", "value": "web", "namespace": "shop"},
                "objects": [{"metadata": {"name": "web"}}],
            }})
        );
        let read: Read = serde_json::from_value(line).expect("reads back");
        let CapturedRead::ByIndex(query, objects) = CapturedRead::from_read(&read) else {
            panic!("a lookup reads back as a lookup");
        };
        assert_eq!(query.index, "by-config");
        assert_eq!(objects, [r#"{"metadata":{"name":"web"}}"#]);
    }
}
