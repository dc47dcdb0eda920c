//! A Kubernetes object as JSON, with accessors for its metadata that read
//! the JSON text where it lies.

use std::borrow::Cow;
use std::sync::{Mutex, OnceLock, PoisonError};

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::ObjectRef;

/// One Kubernetes object: its JSON, with accessors for what every
/// controller reads.
///
/// An object the host hands the guest (the request's, a `map`'s, the
/// cache's) is kept as the host's JSON text, and the accessors
/// ([`Object::str_at`], [`Object::i64_at`], [`Object::at`],
/// [`Object::raw_at`], [`Object::name`], [`Object::annotation`], ...) find
/// the one value they are asked for in it, skipping the rest without
/// building anything: a reconcile that reads five fields of a 2 KB object
/// pays for those five. Where the members of each JSON object a lookup
/// passes through lie is noted the first time, so later lookups through
/// it (`/metadata/name`, then `/metadata/namespace`) compare keys instead
/// of skipping values again. [`Object::value`], [`Object::pointer`] and
/// [`Object::value_mut`] build a [`serde_json::Value`] of the whole
/// object the first time one is called (and [`Object::typed`] deserializes
/// from the text directly). Declaring the fields a controller reads
/// ([`Info::project`](crate::Info::project)) shrinks the text the host
/// sends in the first place.
#[derive(Clone)]
pub struct Object(Repr);

#[derive(Clone)]
enum Repr {
    /// The host's JSON text, the members of the objects in it that
    /// lookups went through, and the value of all of it once asked for.
    Text {
        text: String,
        outline: Outline,
        value: OnceLock<Value>,
    },
    /// A value built or changed by the guest.
    Value(Value),
}

/// What a JSON pointer found: text in the host's JSON, or a value.
enum Found<'a> {
    Raw(&'a str),
    Value(&'a Value),
}

impl Object {
    /// Wraps a JSON value.
    pub fn new(value: Value) -> Self {
        Self(Repr::Value(value))
    }

    /// Parses an object from JSON text (checked: text that is not JSON is
    /// an error). The text is kept; values are read from it on demand.
    pub fn parse(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str::<serde::de::IgnoredAny>(json)?;
        Ok(Self::from_host(json.to_owned()))
    }

    /// Wraps JSON text the host sent: the host checks every object it
    /// stores, so it is not checked again here (a lookup in text that is
    /// not JSON finds nothing).
    pub(crate) fn from_host(json: String) -> Self {
        Self(Repr::Text {
            text: json,
            outline: Outline::default(),
            value: OnceLock::new(),
        })
    }

    /// The JSON value of the whole object, built from the text the first
    /// time it is asked for.
    pub fn value(&self) -> &Value {
        match &self.0 {
            Repr::Text { text, value, .. } => {
                value.get_or_init(|| serde_json::from_str(text).unwrap_or(Value::Null))
            }
            Repr::Value(value) => value,
        }
    }

    /// The JSON value, mutably (built from the text if it was not yet).
    pub fn value_mut(&mut self) -> &mut Value {
        if let Repr::Text { .. } = &self.0 {
            let value = std::mem::take(self).into_value();
            self.0 = Repr::Value(value);
        }
        match &mut self.0 {
            Repr::Value(value) => value,
            Repr::Text { .. } => unreachable!("made a value above"),
        }
    }

    /// Unwraps the JSON value.
    pub fn into_value(self) -> Value {
        match self.0 {
            Repr::Text { text, value, .. } => value
                .into_inner()
                .unwrap_or_else(|| serde_json::from_str(&text).unwrap_or(Value::Null)),
            Repr::Value(value) => value,
        }
    }

    /// The object's JSON text.
    pub fn to_json(&self) -> String {
        match &self.0 {
            Repr::Text { text, .. } => text.clone(),
            Repr::Value(value) => value.to_string(),
        }
    }

    /// Deserializes the object into a typed struct, e.g.
    /// `k8s_openapi::api::apps::v1::Deployment` (from the text directly
    /// when the object is the host's).
    pub fn typed<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        match &self.0 {
            Repr::Text { text, .. } => serde_json::from_str(text),
            Repr::Value(value) => T::deserialize(value),
        }
    }

    /// The value at a JSON pointer such as `/spec/replicas`. Builds the
    /// value of the whole object the first time: to read one field,
    /// [`Object::str_at`], [`Object::i64_at`] and [`Object::at`] are
    /// cheaper.
    pub fn pointer(&self, pointer: &str) -> Option<&Value> {
        self.value().pointer(pointer)
    }

    /// The JSON text of the value at a JSON pointer, as the object holds it
    /// (for an object built from a value, written out).
    pub fn raw_at(&self, pointer: &str) -> Option<String> {
        match self.find(pointer)? {
            Found::Raw(raw) => Some(raw.to_owned()),
            Found::Value(value) => Some(value.to_string()),
        }
    }

    /// The value at a JSON pointer, deserialized as `T` (`None` when it is
    /// absent or is not a `T`): `object.at::<u32>("/spec/replicas")`.
    pub fn at<T: DeserializeOwned>(&self, pointer: &str) -> Option<T> {
        match self.find(pointer)? {
            Found::Raw(raw) => serde_json::from_str(raw).ok(),
            Found::Value(value) => T::deserialize(value).ok(),
        }
    }

    /// The string at a JSON pointer.
    pub fn str_at(&self, pointer: &str) -> Option<&str> {
        match self.find(pointer)? {
            Found::Raw(raw) => match scan::plain_string(raw) {
                Some(text) => Some(text),
                // Escaped: read from the value of the whole object.
                None if raw.starts_with('"') => self.pointer(pointer)?.as_str(),
                None => None,
            },
            Found::Value(value) => value.as_str(),
        }
    }

    /// The string at the path of `tokens` (JSON pointer tokens, unescaped).
    fn str_in<const N: usize>(&self, tokens: [&str; N]) -> Option<&str> {
        match self.find_in(tokens.map(Cow::Borrowed))? {
            Found::Raw(raw) => match scan::plain_string(raw) {
                Some(text) => Some(text),
                // Escaped: read from the value of the whole object.
                None if raw.starts_with('"') => {
                    walk(self.value(), tokens.map(Cow::Borrowed))?.as_str()
                }
                None => None,
            },
            Found::Value(value) => value.as_str(),
        }
    }

    /// The integer at a JSON pointer.
    pub fn i64_at(&self, pointer: &str) -> Option<i64> {
        match self.find(pointer)? {
            Found::Raw(raw) => raw.parse().ok(),
            Found::Value(value) => value.as_i64(),
        }
    }

    /// `apiVersion`, or `""`.
    pub fn api_version(&self) -> &str {
        self.str_in(["apiVersion"]).unwrap_or_default()
    }

    /// `kind`, or `""`.
    pub fn kind(&self) -> &str {
        self.str_in(["kind"]).unwrap_or_default()
    }

    /// `metadata.name`, or `""`.
    pub fn name(&self) -> &str {
        self.str_in(["metadata", "name"]).unwrap_or_default()
    }

    /// `metadata.namespace`, `None` for cluster-scoped objects.
    pub fn namespace(&self) -> Option<&str> {
        self.str_in(["metadata", "namespace"])
    }

    /// `metadata.uid`, or `""`.
    pub fn uid(&self) -> &str {
        self.str_in(["metadata", "uid"]).unwrap_or_default()
    }

    /// `metadata.resourceVersion`, if set.
    pub fn resource_version(&self) -> Option<&str> {
        self.str_in(["metadata", "resourceVersion"])
    }

    /// `metadata.generation`, if the kind has one.
    pub fn generation(&self) -> Option<i64> {
        self.i64_at("/metadata/generation")
    }

    /// Whether `metadata.deletionTimestamp` is set: the object is being
    /// deleted and waits for its finalizers.
    pub fn is_being_deleted(&self) -> bool {
        match self.find_in(["metadata", "deletionTimestamp"].map(Cow::Borrowed)) {
            Some(Found::Raw(raw)) => raw != "null",
            Some(Found::Value(value)) => !value.is_null(),
            None => false,
        }
    }

    /// One label's value.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.map_entry("labels", key)
    }

    /// One annotation's value.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.map_entry("annotations", key)
    }

    /// All labels (empty when there are none).
    pub fn labels(&self) -> Vec<(&str, &str)> {
        self.map_entries("labels")
    }

    /// All annotations (empty when there are none).
    pub fn annotations(&self) -> Vec<(&str, &str)> {
        self.map_entries("annotations")
    }

    /// Whether `metadata.finalizers` holds `finalizer`.
    pub fn has_finalizer(&self, finalizer: &str) -> bool {
        self.at::<Vec<String>>("/metadata/finalizers")
            .is_some_and(|list| list.iter().any(|item| item == finalizer))
    }

    /// The reference to this object.
    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef {
            api_version: self.api_version().to_owned(),
            kind: self.kind().to_owned(),
            namespace: self.namespace().map(str::to_owned),
            name: self.name().to_owned(),
        }
    }

    /// An owner reference naming this object as the controller of another
    /// one (`controller: true`, `blockOwnerDeletion: true`). Objects carrying
    /// it are garbage-collected with this one and reconcile it on change.
    pub fn controller_reference(&self) -> Value {
        serde_json::json!({
            "apiVersion": self.api_version(),
            "kind": self.kind(),
            "name": self.name(),
            "uid": self.uid(),
            "controller": true,
            "blockOwnerDeletion": true,
        })
    }

    /// The object named by this object's controller owner reference
    /// (`controller: true`), if it has one, in this object's namespace (an
    /// owner reference names no namespace).
    pub fn controller_owner(&self) -> Option<ObjectRef> {
        #[derive(Deserialize)]
        struct Owner {
            #[serde(rename = "apiVersion")]
            api_version: String,
            kind: String,
            name: String,
            #[serde(default)]
            controller: Option<bool>,
        }
        let owners = self.at::<Vec<Value>>("/metadata/ownerReferences")?;
        let owner = owners
            .into_iter()
            .filter_map(|owner| Owner::deserialize(owner).ok())
            .find(|owner| owner.controller == Some(true))?;
        Some(ObjectRef {
            api_version: owner.api_version,
            kind: owner.kind,
            namespace: self.namespace().map(str::to_owned),
            name: owner.name,
        })
    }

    /// What `pointer` finds: in the text, without building a value, or in
    /// the value.
    fn find(&self, pointer: &str) -> Option<Found<'_>> {
        let Some(rest) = pointer.strip_prefix('/') else {
            return pointer
                .is_empty()
                .then(|| self.find_in(std::iter::empty()))?;
        };
        self.find_in(rest.split('/').map(scan::unescape_token))
    }

    /// What the path of `tokens` (unescaped JSON pointer tokens) finds.
    fn find_in<'t>(&self, tokens: impl IntoIterator<Item = Cow<'t, str>>) -> Option<Found<'_>> {
        match &self.0 {
            Repr::Text {
                text,
                outline,
                value,
            } => match value.get() {
                Some(value) => walk(value, tokens).map(Found::Value),
                None => outline.find(text, tokens).map(Found::Raw),
            },
            Repr::Value(value) => walk(value, tokens).map(Found::Value),
        }
    }

    /// The value of `key` in `metadata.<field>` (labels, annotations).
    fn map_entry(&self, field: &str, key: &str) -> Option<&str> {
        let path = ["metadata", field, key].map(Cow::Borrowed);
        match self.find_in(path)? {
            Found::Raw(raw) => match scan::plain_string(raw) {
                Some(plain) => Some(plain),
                None => self.string_map(field)?.get(key)?.as_str(),
            },
            Found::Value(value) => value.as_str(),
        }
    }

    /// Every string entry of `metadata.<field>`.
    fn map_entries(&self, field: &str) -> Vec<(&str, &str)> {
        let path = ["metadata", field].map(Cow::Borrowed);
        match self.find_in(path) {
            None => Vec::new(),
            Some(Found::Raw(map)) => match scan::plain_string_entries(map) {
                Some(entries) => entries,
                None => Self::pairs(self.string_map(field)),
            },
            Some(Found::Value(value)) => Self::pairs(value.as_object()),
        }
    }

    fn string_map(&self, field: &str) -> Option<&Map<String, Value>> {
        self.value().get("metadata")?.get(field)?.as_object()
    }

    fn pairs(map: Option<&Map<String, Value>>) -> Vec<(&str, &str)> {
        map.into_iter()
            .flatten()
            .filter_map(|(key, value)| Some((key.as_str(), value.as_str()?)))
            .collect()
    }
}

/// The value `tokens` lead to from `value`.
fn walk<'v, 't>(
    value: &'v Value,
    tokens: impl IntoIterator<Item = Cow<'t, str>>,
) -> Option<&'v Value> {
    tokens
        .into_iter()
        .try_fold(value, |value, token| match value {
            Value::Object(map) => map.get(token.as_ref()),
            Value::Array(list) => list.get(scan::index(&token)?),
            _ => None,
        })
}

/// Where the members of each object of a text lie, for the objects that
/// lookups have gone through: a lookup that passes through an object
/// skips its members once, and later lookups compare keys only.
#[derive(Default)]
struct Outline(Mutex<Vec<scan::Members>>);

impl Outline {
    /// The text of the value the path of `tokens` leads to in `text`.
    fn find<'a, 't>(
        &self,
        text: &'a str,
        tokens: impl IntoIterator<Item = Cow<'t, str>>,
    ) -> Option<&'a str> {
        let mut outlined = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut value = scan::whole(text);
        for token in tokens {
            value = match text.as_bytes().get(value.start)? {
                b'{' => {
                    let members = match outlined
                        .iter()
                        .position(|members| members.start() == value.start)
                    {
                        Some(at) => &outlined[at],
                        None => {
                            outlined.push(scan::Members::of(text, value.start));
                            outlined.last()?
                        }
                    };
                    members.get(text, &token)?
                }
                b'[' => scan::element(text, value, scan::index(&token)?)?,
                _ => return None,
            };
        }
        text.get(value)
    }
}

impl Clone for Outline {
    fn clone(&self) -> Self {
        Self(Mutex::new(
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        ))
    }
}

impl Default for Object {
    fn default() -> Self {
        Self::new(Value::Object(Map::new()))
    }
}

impl std::fmt::Debug for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Repr::Text { text, .. } => f.debug_tuple("Object").field(text).finish(),
            Repr::Value(value) => f.debug_tuple("Object").field(value).finish(),
        }
    }
}

/// Objects are equal when their JSON values are.
impl PartialEq for Object {
    fn eq(&self, other: &Self) -> bool {
        self.value() == other.value()
    }
}

impl serde::Serialize for Object {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Object {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Value::deserialize(deserializer).map(Self::new)
    }
}

impl From<Value> for Object {
    fn from(value: Value) -> Self {
        Self::new(value)
    }
}

impl From<Object> for Value {
    fn from(object: Object) -> Self {
        object.into_value()
    }
}

/// Finding values in JSON text without parsing what lies around them.
///
/// The text is the host's, which checks every object it stores; these
/// functions read valid JSON correctly and, given anything else, find
/// nothing rather than panic. Hand-written rather than a crate's: a
/// lookup here skips values by their brackets and quotes alone, where the
/// JSON parsers at hand (serde_json's `IgnoredAny` and `RawValue`) check
/// every number and string of what they skip, which costs a guest as much
/// as the lookup itself.
mod scan {
    use std::ops::Range;

    /// The members of one object in a text: where each key and value lie.
    #[derive(Clone)]
    pub(super) struct Members {
        start: usize,
        /// Empty when the object is not well-formed (nothing is found in it).
        members: Vec<Member>,
    }

    #[derive(Clone)]
    struct Member {
        /// The key's text between its quotes.
        key: Range<usize>,
        /// Whether the key holds an escape (and must be decoded to compare).
        escaped: bool,
        value: Range<usize>,
    }

    impl Members {
        /// The members of the object whose `{` is at `start` in `text`.
        pub(super) fn of(text: &str, start: usize) -> Self {
            let members = (|| {
                let bytes = text.as_bytes();
                let mut members = Vec::new();
                let mut at = skip_space(bytes, start + 1);
                if bytes.get(at) == Some(&b'}') {
                    return Some(members);
                }
                loop {
                    (bytes.get(at) == Some(&b'"')).then_some(())?;
                    let (key_end, escaped) = skip_string(bytes, at)?;
                    let key = at + 1..key_end - 1;
                    at = skip_space(bytes, key_end);
                    (bytes.get(at) == Some(&b':')).then_some(())?;
                    let value_start = skip_space(bytes, at + 1);
                    let value_end = skip_value(bytes, value_start)?;
                    members.push(Member {
                        key,
                        escaped,
                        value: value_start..value_end,
                    });
                    at = skip_space(bytes, value_end);
                    match bytes.get(at)? {
                        b',' => at = skip_space(bytes, at + 1),
                        b'}' => return Some(members),
                        _ => return None,
                    }
                }
            })();
            Self {
                start,
                members: members.unwrap_or_default(),
            }
        }

        /// Where the object starts in its text.
        pub(super) fn start(&self) -> usize {
            self.start
        }

        /// Where the value of the member `key` lies.
        pub(super) fn get(&self, text: &str, key: &str) -> Option<Range<usize>> {
            self.members
                .iter()
                .find(|member| {
                    let name = &text[member.key.clone()];
                    if member.escaped {
                        let quoted = &text[member.key.start - 1..member.key.end + 1];
                        serde_json::from_str::<String>(quoted).is_ok_and(|name| name == key)
                    } else {
                        name == key
                    }
                })
                .map(|member| member.value.clone())
        }
    }

    /// Where the value of a whole text lies (without the spaces around it).
    pub(super) fn whole(text: &str) -> Range<usize> {
        let bytes = text.as_bytes();
        let start = skip_space(bytes, 0);
        let end = text.trim_end_matches([' ', '\n', '\r', '\t']).len();
        start..end.max(start)
    }

    /// Where the element `index` of the array at `array` lies.
    pub(super) fn element(text: &str, array: Range<usize>, index: usize) -> Option<Range<usize>> {
        let element = elements(&text[array.clone()])?.nth(index)?;
        let start = array.start + (element.as_ptr() as usize - text[array].as_ptr() as usize);
        Some(start..start + element.len())
    }

    /// The string entries of the object `object`, when no key or string
    /// value in it is escaped (`None` otherwise).
    pub(super) fn plain_string_entries(object: &str) -> Option<Vec<(&str, &str)>> {
        if !object.starts_with('{') {
            return None;
        }
        let mut entries = Vec::new();
        for member in Members::of(object, 0).members {
            let value = &object[member.value];
            if member.escaped {
                return None;
            }
            if value.starts_with('"') {
                entries.push((&object[member.key], plain_string(value)?));
            }
        }
        Some(entries)
    }

    /// The contents of a JSON string without escapes; `None` for anything
    /// else.
    pub(super) fn plain_string(raw: &str) -> Option<&str> {
        let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
        (!inner.contains('\\')).then_some(inner)
    }

    /// A JSON pointer token with `~1` and `~0` unescaped.
    pub(super) fn unescape_token(token: &str) -> std::borrow::Cow<'_, str> {
        if token.contains('~') {
            token.replace("~1", "/").replace("~0", "~").into()
        } else {
            token.into()
        }
    }

    /// A JSON pointer token as an array index (no sign, no leading zero).
    pub(super) fn index(token: &str) -> Option<usize> {
        if token.starts_with('+') || (token.len() > 1 && token.starts_with('0')) {
            return None;
        }
        token.parse().ok()
    }

    /// The elements of the array `array`, as text.
    fn elements(array: &str) -> Option<impl Iterator<Item = &str>> {
        let bytes = array.as_bytes();
        (bytes.first() == Some(&b'[')).then_some(())?;
        let mut at = 1;
        let mut done = false;
        Some(std::iter::from_fn(move || {
            if done {
                return None;
            }
            let start = skip_space(bytes, at);
            if matches!(bytes.get(start), None | Some(b']')) {
                done = true;
                return None;
            }
            let end = skip_value(bytes, start)?;
            at = skip_space(bytes, end);
            match bytes.get(at) {
                Some(b',') => at += 1,
                _ => done = true,
            }
            Some(&array[start..end])
        }))
    }

    fn skip_space(bytes: &[u8], mut at: usize) -> usize {
        while matches!(bytes.get(at), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            at += 1;
        }
        at
    }

    /// The end of the string whose opening quote is at `at`, and whether
    /// it holds an escape.
    fn skip_string(bytes: &[u8], at: usize) -> Option<(usize, bool)> {
        let mut at = at + 1;
        let mut escaped = false;
        loop {
            at += bytes
                .get(at..)?
                .iter()
                .position(|&byte| byte == b'"' || byte == b'\\')?;
            if bytes[at] == b'"' {
                return Some((at + 1, escaped));
            }
            escaped = true;
            at += 2;
        }
    }

    /// The end of the value that starts at `at`.
    fn skip_value(bytes: &[u8], at: usize) -> Option<usize> {
        match *bytes.get(at)? {
            b'"' => skip_string(bytes, at).map(|(end, _)| end),
            b'{' | b'[' => {
                let mut depth = 0usize;
                let mut at = at;
                while let Some(&byte) = bytes.get(at) {
                    match byte {
                        b'"' => {
                            at = skip_string(bytes, at)?.0;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth = depth.checked_sub(1)?;
                            if depth == 0 {
                                return Some(at + 1);
                            }
                        }
                        _ => {}
                    }
                    at += 1;
                }
                None
            }
            _ => {
                let end = bytes[at..]
                    .iter()
                    .position(|byte| {
                        matches!(byte, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t')
                    })
                    .map_or(bytes.len(), |length| at + length);
                (end > at).then_some(end)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Object {
        Object::new(json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "web",
                "namespace": "shop",
                "uid": "u-1",
                "generation": 3,
                "labels": {"app": "web"},
                "annotations": {"paddock.dev/min-replicas": "3"},
                "finalizers": ["example.com/cleanup"],
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "ConfigMap", "name": "other", "uid": "u-0"},
                    {"apiVersion": "examples.paddock.dev/v1", "kind": "App", "name": "shop",
                     "uid": "u-2", "controller": true}
                ]
            },
            "spec": {"replicas": 1}
        }))
    }

    #[test]
    fn reads_metadata() {
        let object = deployment();
        assert_eq!(object.api_version(), "apps/v1");
        assert_eq!(object.kind(), "Deployment");
        assert_eq!(object.name(), "web");
        assert_eq!(object.namespace(), Some("shop"));
        assert_eq!(object.uid(), "u-1");
        assert_eq!(object.generation(), Some(3));
        assert_eq!(object.label("app"), Some("web"));
        assert_eq!(object.annotation("paddock.dev/min-replicas"), Some("3"));
        assert_eq!(object.annotation("missing"), None);
        assert_eq!(object.i64_at("/spec/replicas"), Some(1));
        assert!(object.has_finalizer("example.com/cleanup"));
        assert!(!object.is_being_deleted());
        assert_eq!(object.labels(), vec![("app", "web")]);
    }

    #[test]
    fn finds_the_controller_owner() {
        let owner = deployment()
            .controller_owner()
            .expect("has a controller owner");
        assert_eq!(
            owner,
            ObjectRef::namespaced("examples.paddock.dev/v1", "App", "shop", "shop")
        );
    }

    #[test]
    fn builds_a_controller_reference() {
        let reference = deployment().controller_reference();
        assert_eq!(reference["uid"], "u-1");
        assert_eq!(reference["controller"], true);
        assert_eq!(reference["blockOwnerDeletion"], true);
        assert_eq!(reference["kind"], "Deployment");
    }

    /// The same object as the host's JSON text, keys in the API server's
    /// order, with escapes and spaces.
    fn text() -> Object {
        Object::from_host(
            r#"{ "apiVersion": "apps/v1", "kind": "Deployment",
              "metadata": {"name": "web", "namespace": "shop", "uid": "u-1", "generation": 3,
                "labels": {"app": "web"},
                "annotations": {"paddock.dev/min-replicas": "3", "note": "a \"quoted\" [note]",
                  "a/b~c": "tilde"},
                "finalizers": ["example.com/cleanup"],
                "ownerReferences": [
                  {"apiVersion": "v1", "kind": "ConfigMap", "name": "other", "uid": "u-0"},
                  {"apiVersion": "examples.paddock.dev/v1", "kind": "App", "name": "shop",
                   "uid": "u-2", "controller": true}]},
              "spec": {"replicas": 1, "paused": false, "ports": [{"port": 80}, {"port": 443}]} }"#
                .to_owned(),
        )
    }

    #[test]
    fn text_reads_as_its_value_does() {
        let object = text();
        assert_eq!(object.api_version(), "apps/v1");
        assert_eq!(object.name(), "web");
        assert_eq!(object.namespace(), Some("shop"));
        assert_eq!(object.generation(), Some(3));
        assert_eq!(object.label("app"), Some("web"));
        assert_eq!(object.annotation("paddock.dev/min-replicas"), Some("3"));
        assert_eq!(object.annotation("note"), Some("a \"quoted\" [note]"));
        assert_eq!(
            object.str_at("/metadata/annotations/a~1b~0c"),
            Some("tilde")
        );
        assert_eq!(object.i64_at("/spec/replicas"), Some(1));
        assert_eq!(object.i64_at("/spec/ports/1/port"), Some(443));
        assert_eq!(object.at::<bool>("/spec/paused"), Some(false));
        assert_eq!(
            text().raw_at("/spec/ports/0").as_deref(),
            Some(r#"{"port": 80}"#)
        );
        assert_eq!(object.i64_at("/spec/ports/2/port"), None);
        assert_eq!(object.i64_at("/spec/ports/01/port"), None);
        assert!(object.has_finalizer("example.com/cleanup"));
        assert!(!object.is_being_deleted());
        assert_eq!(
            object.controller_owner(),
            Some(ObjectRef::namespaced(
                "examples.paddock.dev/v1",
                "App",
                "shop",
                "shop"
            ))
        );
        let mut annotations = object.annotations();
        annotations.sort_unstable();
        assert_eq!(annotations.len(), 3, "{annotations:?}");
        assert!(annotations.contains(&("note", "a \"quoted\" [note]")));
        // The text and the value it parses to answer alike.
        let value = Object::new(object.value().clone());
        for pointer in [
            "/metadata/uid",
            "/spec/ports/0/port",
            "/kind",
            "/metadata/missing",
        ] {
            assert_eq!(
                object
                    .raw_at(pointer)
                    .map(|raw| serde_json::from_str::<Value>(&raw).ok()),
                value
                    .raw_at(pointer)
                    .map(|raw| serde_json::from_str::<Value>(&raw).ok()),
                "{pointer}"
            );
        }
        assert_eq!(object, value);
        assert_eq!(object.typed::<Value>().expect("typed"), *value.value());
    }

    #[test]
    fn repeated_lookups_answer_alike() {
        let object = Object::from_host(
            r#"{"kind": "K", "metadata": {"name": "n", "namespace": "s\u0031", "l\u0061bels": {"a": "1"}},
                "spec": {"list": [{"x": 1}, {"x": 2}], "x": "\"quoted\""}, "z": {}}"#
                .to_owned(),
        );
        let copy = object.clone();
        for _ in 0..2 {
            for reading in [&object, &copy] {
                assert_eq!(reading.kind(), "K");
                assert_eq!(reading.name(), "n");
                // A key written with an escape is found by what it means.
                assert_eq!(reading.label("a"), Some("1"));
                assert_eq!(reading.labels(), vec![("a", "1")]);
                assert_eq!(reading.i64_at("/spec/list/1/x"), Some(2));
                assert_eq!(reading.raw_at("/z").as_deref(), Some("{}"));
                assert_eq!(reading.raw_at("/z/a"), None);
                assert_eq!(reading.raw_at("/metadata/name/x"), None);
            }
        }
        // An escaped string is read from the value of the whole object.
        assert_eq!(copy.namespace(), Some("s1"));
        assert_eq!(object.str_at("/spec/x"), Some("\"quoted\""));
        let whole = copy.raw_at("").expect("the whole object");
        assert_eq!(
            serde_json::from_str::<Value>(&whole).ok().as_ref(),
            Some(object.value())
        );
    }

    #[test]
    fn a_changed_text_object_is_its_value() {
        let mut object = text();
        object.value_mut()["spec"]["replicas"] = json!(5);
        assert_eq!(object.i64_at("/spec/replicas"), Some(5));
        assert_eq!(object.name(), "web");
        assert_eq!(object.into_value()["spec"]["replicas"], 5);
    }

    #[test]
    fn text_that_is_not_json_finds_nothing() {
        for broken in [
            "",
            "{",
            "{\"metadata\": {\"name\": ",
            "[1, 2",
            "{\"a\" 1}",
            "\"",
            "nul",
        ] {
            let object = Object::from_host(broken.to_owned());
            assert_eq!(object.name(), "", "{broken:?}");
            assert_eq!(object.i64_at("/a"), None, "{broken:?}");
            assert!(object.labels().is_empty(), "{broken:?}");
        }
        assert!(Object::parse("{\"a\": 1").is_err());
        assert_eq!(
            Object::parse("{\"a\": 1}").expect("parses").i64_at("/a"),
            Some(1)
        );
    }

    #[test]
    fn missing_fields_read_as_empty() {
        let object = Object::new(json!({}));
        assert_eq!(object.name(), "");
        assert_eq!(object.namespace(), None);
        assert!(object.labels().is_empty());
        assert!(object.controller_owner().is_none());
    }
}
