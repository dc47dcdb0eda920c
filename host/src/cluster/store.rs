//! The informer store: the latest state of every object of one resource,
//! kept as the API server's JSON plus the few parsed fields routing and
//! cache reads need, sorted by namespace and name.
//!
//! One writer (the informer) and any number of readers; readers get cheap
//! `Arc` clones and never block the writer for long.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock, Weak};

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::index::IndexPaths;
use super::projection::{Members, Projection};
use crate::selector::LabelSelector;

/// The key of an object within one resource: namespace (`""` for
/// cluster-scoped objects) and name.
pub type ObjectKey = (String, String);

/// The controller owner reference of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerRef {
    /// The owner's `apiVersion`.
    pub api_version: Box<str>,
    /// The owner's kind.
    pub kind: Box<str>,
    /// The owner's name (same namespace as the object).
    pub name: Box<str>,
}

/// One cached object.
#[derive(Debug, PartialEq, Eq)]
pub struct StoredObject {
    /// Its JSON narrowed to guests' projections, made when first read.
    narrowed: Narrowed,
    /// The object's JSON, with `apiVersion` and `kind`.
    pub json: Box<str>,
    /// Its namespace, `""` when cluster-scoped.
    pub namespace: Box<str>,
    /// Its name.
    pub name: Box<str>,
    /// Its `metadata.resourceVersion`.
    pub resource_version: Box<str>,
    /// Its labels.
    pub labels: Box<[(Box<str>, Box<str>)]>,
    /// Its controller owner, if any.
    pub controller: Option<OwnerRef>,
}

/// An object's JSON narrowed to each projection a guest read it through:
/// made once per object version, kept as long as the version is stored.
#[derive(Default)]
struct Narrowed(std::sync::Mutex<Vec<(Arc<Projection>, Arc<str>)>>);

impl Narrowed {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Arc<Projection>, Arc<str>)>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for Narrowed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} projections", self.lock().len())
    }
}

/// Derived from the JSON: equal objects are equal whatever was narrowed.
impl PartialEq for Narrowed {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Narrowed {}

/// An object's JSON as one guest sees it: whole, or narrowed to the
/// guest's projection of its kind.
#[derive(Debug, Clone)]
pub enum SeenJson<'a> {
    /// The whole object.
    Whole(&'a str),
    /// The object narrowed, shared with every reader through the same
    /// projection.
    Narrowed(Arc<str>),
}

impl std::ops::Deref for SeenJson<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            Self::Whole(json) => json,
            Self::Narrowed(json) => json,
        }
    }
}

#[derive(Deserialize)]
struct Head<'a> {
    /// Raw, so that a present `null` is told from an absent field.
    #[serde(default, borrow, rename = "apiVersion", deserialize_with = "present")]
    api_version: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    kind: Option<&'a RawValue>,
    #[serde(borrow)]
    metadata: Object<Metadata<'a>>,
}

/// A struct read only from a JSON object: serde also reads structs from
/// arrays (`"metadata": ["web", "shop"]`), which no API server sends and a
/// guest's JSON reader would not read as metadata.
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Fields<T> {
            type Value = Object<T>;
            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Object<T>, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Object)
            }
        }
        deserializer.deserialize_map(Fields(std::marker::PhantomData))
    }
}

/// `text` without `metadata.managedFields`, or `None` when it has none.
///
/// The field is cut out of the text: the other fields of `metadata` are
/// kept byte for byte in their order (only the whitespace between them
/// goes), and the rest of the object is not touched. Reading the object
/// into a `serde_json::Value` and writing it again cost two thirds of the
/// informer's own CPU per watch event (profiled), and sorted every key. A
/// `metadata` that is not an object is left for the caller to refuse; a
/// key written with escapes is compared unescaped, through a `Value`.
fn without_managed_fields(text: &str) -> Result<Option<String>, serde_json::Error> {
    #[derive(Deserialize)]
    struct Top<'a> {
        #[serde(default, borrow)]
        metadata: Option<&'a RawValue>,
    }
    let Some(metadata) = serde_json::from_str::<Top<'_>>(text)?.metadata else {
        return Ok(None);
    };
    let Ok(Members(members)) = serde_json::from_str::<Members<'_>>(metadata.get()) else {
        return Ok(None);
    };
    if !members.iter().any(|(key, _)| key == "managedFields") {
        return Ok(None);
    }
    // Where a slice of `text` starts within it.
    let offset = |part: &str| part.as_ptr() as usize - text.as_ptr() as usize;
    let mut kept = Vec::with_capacity(members.len());
    for (key, value) in &members {
        match key {
            _ if key == "managedFields" => {}
            // The key's opening quote is just before its text.
            Cow::Borrowed(name) => {
                kept.push(offset(name) - 1..offset(value.get()) + value.get().len());
            }
            Cow::Owned(_) => return without_managed_fields_slowly(text).map(Some),
        }
    }
    let (start, end) = (
        offset(metadata.get()),
        offset(metadata.get()) + metadata.get().len(),
    );
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..start]);
    out.push('{');
    for (index, entry) in kept.into_iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push_str(&text[entry]);
    }
    out.push('}');
    out.push_str(&text[end..]);
    Ok(Some(out))
}

/// [`without_managed_fields`] through a `serde_json::Value`, for the rare
/// object whose `metadata` has a key written with escapes.
fn without_managed_fields_slowly(text: &str) -> Result<String, serde_json::Error> {
    let mut value: Value = serde_json::from_str(text)?;
    if let Some(metadata) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("managedFields");
    }
    serde_json::to_string(&value)
}

/// A field that is there, `null` included (`Option` alone reads `null` as absent).
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(deserializer).map(Some)
}

/// Reads every value of a JSON document and keeps none: the check that it
/// parses into a `serde_json::Value` (numbers such as `1e400` do not),
/// without building one.
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(CheckedVisitor)
    }
}

struct CheckedVisitor;

impl<'de> serde::de::Visitor<'de> for CheckedVisitor {
    type Value = Checked;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        while map
            .next_entry::<serde::de::IgnoredAny, Checked>()?
            .is_some()
        {}
        Ok(Checked)
    }
}

#[derive(Deserialize)]
struct Metadata<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(default, borrow)]
    namespace: Option<Cow<'a, str>>,
    #[serde(default, borrow, rename = "resourceVersion")]
    resource_version: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    labels: Option<BTreeMap<Cow<'a, str>, Cow<'a, str>>>,
    #[serde(default, borrow, rename = "ownerReferences")]
    owner_references: Option<Vec<Object<OwnerReference<'a>>>>,
}

#[derive(Deserialize)]
struct OwnerReference<'a> {
    #[serde(borrow, rename = "apiVersion")]
    api_version: Cow<'a, str>,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(default)]
    controller: Option<bool>,
}

impl StoredObject {
    /// Parses an object from the API server's JSON. List items carry no
    /// `apiVersion` and `kind`; they are added from `api_version` and `kind`
    /// without re-serialising the rest. `metadata.managedFields` (server-side
    /// apply bookkeeping, often a third of an object) is dropped, as
    /// kube-runtime users commonly do: guests have no use for it.
    pub fn parse(raw: &RawValue, api_version: &str, kind: &str) -> Result<Self, serde_json::Error> {
        let stripped;
        // No API server escapes the letters of a key, so an object whose
        // text does not hold `"managedFields"` has no such field.
        let text = if raw.get().contains("\"managedFields\"") {
            stripped = without_managed_fields(raw.get())?;
            stripped.as_deref().unwrap_or(raw.get())
        } else {
            raw.get()
        };
        serde_json::from_str::<Checked>(text)?;
        let head: Head<'_> = serde_json::from_str(text)?;
        let is_string =
            |field: Option<&RawValue>| field.is_some_and(|raw| raw.get().starts_with('"'));
        let json: Box<str> = if is_string(head.api_version) && is_string(head.kind) {
            text.into()
        } else if head.api_version.is_none() && head.kind.is_none() {
            let rest = text
                .trim_start()
                .strip_prefix('{')
                .unwrap_or("}")
                .trim_start();
            let separator = if rest.starts_with('}') { "" } else { "," };
            format!(
                "{{\"apiVersion\":{},\"kind\":{}{separator}{rest}",
                serde_json::Value::from(api_version),
                serde_json::Value::from(kind)
            )
            .into()
        } else {
            // One of them present but not a string (`null`, say): written
            // over, never written twice.
            let mut value: serde_json::Value = serde_json::from_str(text)?;
            if let Some(fields) = value.as_object_mut() {
                fields.insert("apiVersion".to_owned(), api_version.into());
                fields.insert("kind".to_owned(), kind.into());
            }
            serde_json::to_string(&value)?.into()
        };
        let metadata = head.metadata.0;
        let controller = metadata.owner_references.and_then(|owners| {
            owners
                .into_iter()
                .map(|owner| owner.0)
                .find(|owner| owner.controller == Some(true))
                .map(|owner| OwnerRef {
                    api_version: owner.api_version.into(),
                    kind: owner.kind.into(),
                    name: owner.name.into(),
                })
        });
        Ok(Self {
            narrowed: Narrowed::default(),
            json,
            namespace: metadata.namespace.unwrap_or_default().into(),
            name: metadata.name.into(),
            resource_version: metadata.resource_version.unwrap_or_default().into(),
            labels: metadata
                .labels
                .unwrap_or_default()
                .into_iter()
                .map(|(key, value)| (Box::from(key), Box::from(value)))
                .collect(),
            controller,
        })
    }

    /// Its `metadata.uid`, read from its JSON.
    pub fn uid(&self) -> Option<String> {
        #[derive(Deserialize)]
        struct Uid<'a> {
            #[serde(borrow)]
            metadata: UidMetadata<'a>,
        }
        #[derive(Deserialize)]
        struct UidMetadata<'a> {
            #[serde(default, borrow)]
            uid: Option<Cow<'a, str>>,
        }
        let parsed: Uid<'_> = serde_json::from_str(&self.json).ok()?;
        parsed.metadata.uid.map(Cow::into_owned)
    }

    /// Its JSON as a guest with `projection` of its kind (`None`: none)
    /// sees it. Narrowed once per projection, the first time it is asked
    /// for; later reads share that text.
    pub fn seen_through(&self, projection: Option<&Arc<Projection>>) -> SeenJson<'_> {
        let Some(projection) = projection else {
            return SeenJson::Whole(&self.json);
        };
        if let Some((_, json)) = self
            .narrowed
            .lock()
            .iter()
            .find(|(known, _)| Arc::ptr_eq(known, projection) || **known == **projection)
        {
            return SeenJson::Narrowed(Arc::clone(json));
        }
        // Narrowed outside the lock; a reader that raced here keeps the
        // first text stored, so every reader shares one.
        let json: Arc<str> = projection.narrow(&self.json).into();
        let mut narrowed = self.narrowed.lock();
        if let Some((_, known)) = narrowed.iter().find(|(known, _)| **known == **projection) {
            return SeenJson::Narrowed(Arc::clone(known));
        }
        narrowed.push((Arc::clone(projection), Arc::clone(&json)));
        SeenJson::Narrowed(json)
    }

    /// The object's key.
    pub fn key(&self) -> ObjectKey {
        (self.namespace.to_string(), self.name.to_string())
    }

    /// One label's value.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(label, _)| &**label == key)
            .map(|(_, value)| &**value)
    }

    /// The bytes this entry holds on the heap (JSON and parsed fields).
    pub fn heap_bytes(&self) -> usize {
        let owner = self.controller.as_ref().map_or(0, |owner| {
            owner.api_version.len() + owner.kind.len() + owner.name.len()
        });
        let narrowed: usize = self
            .narrowed
            .lock()
            .iter()
            .map(|(_, json)| json.len() + std::mem::size_of::<(Arc<Projection>, Arc<str>)>())
            .sum();
        self.json.len()
            + narrowed
            + self.namespace.len()
            + self.name.len()
            + self.resource_version.len()
            + self
                .labels
                .iter()
                .map(|(key, value)| key.len() + value.len() + 2 * std::mem::size_of::<Box<str>>())
                .sum::<usize>()
            + owner
            + std::mem::size_of::<Self>()
    }
}

/// What a relist changed.
#[derive(Debug, Default)]
pub struct Changes {
    /// Objects that are new or whose resourceVersion moved.
    pub applied: Vec<Arc<StoredObject>>,
    /// Objects that are gone, in their last known state.
    pub deleted: Vec<Arc<StoredObject>>,
}

/// The objects of one resource (in one namespace or all), and the indexes
/// guests declared over them.
#[derive(Debug, Default)]
pub struct Store {
    inner: RwLock<Inner>,
    /// Whether any index is kept: a write parses the object before taking
    /// the lock only then.
    indexed: AtomicBool,
}

#[derive(Debug, Default)]
struct Inner {
    objects: BTreeMap<ObjectKey, Arc<StoredObject>>,
    /// Kept while some guest holds its [`IndexPaths`]; dropped at the next
    /// write after the last one is gone.
    indexes: Vec<Indexed>,
}

/// One index of a store: which objects have which values.
#[derive(Debug)]
struct Indexed {
    paths: Weak<IndexPaths>,
    by_value: HashMap<Box<str>, BTreeSet<ObjectKey>>,
    of_object: HashMap<ObjectKey, Box<[Box<str>]>>,
}

impl Indexed {
    fn add(&mut self, paths: &IndexPaths, key: &ObjectKey, object: &Value) {
        let values = paths.values(object);
        if values.is_empty() {
            return;
        }
        for value in &values {
            self.by_value
                .entry(value.as_str().into())
                .or_default()
                .insert(key.clone());
        }
        self.of_object
            .insert(key.clone(), values.into_iter().map(Into::into).collect());
    }

    fn remove(&mut self, key: &ObjectKey) {
        let Some(values) = self.of_object.remove(key) else {
            return;
        };
        for value in values {
            if let Some(keys) = self.by_value.get_mut(&value) {
                keys.remove(key);
                if keys.is_empty() {
                    self.by_value.remove(&value);
                }
            }
        }
    }
}

impl Inner {
    /// Drops the indexes no guest holds any more.
    fn prune(&mut self) {
        self.indexes.retain(|index| index.paths.strong_count() > 0);
    }

    /// Indexes `object` (its JSON parsed as `parsed`, or parsed now).
    fn index_object(&mut self, object: &StoredObject, parsed: Option<Value>) {
        let Some(value) = parsed.or_else(|| serde_json::from_str(&object.json).ok()) else {
            return;
        };
        let key = object.key();
        for index in &mut self.indexes {
            if let Some(paths) = index.paths.upgrade() {
                index.add(&paths, &key, &value);
            }
        }
    }

    fn unindex(&mut self, key: &ObjectKey) {
        for index in &mut self.indexes {
            index.remove(key);
        }
    }
}

impl Store {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        let mut guard = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        guard.prune();
        self.indexed
            .store(!guard.indexes.is_empty(), Ordering::Relaxed);
        guard
    }

    /// `object`'s JSON parsed for its indexes, outside the lock; `None`
    /// when the store keeps none (or the JSON does not parse).
    fn parse_for_indexes(&self, object: &StoredObject) -> Option<Value> {
        if !self.indexed.load(Ordering::Relaxed) {
            return None;
        }
        serde_json::from_str(&object.json).ok()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores an object; the previous state, if any.
    pub(crate) fn apply(&self, object: Arc<StoredObject>) -> Option<Arc<StoredObject>> {
        let parsed = self.parse_for_indexes(&object);
        let mut guard = self.write();
        let key = object.key();
        if !guard.indexes.is_empty() {
            guard.unindex(&key);
            guard.index_object(&object, parsed);
        }
        guard.objects.insert(key, object)
    }

    /// Removes an object; its last stored state, if any.
    pub(crate) fn remove(&self, key: &ObjectKey) -> Option<Arc<StoredObject>> {
        let mut guard = self.write();
        guard.unindex(key);
        guard.objects.remove(key)
    }

    /// Keeps only the objects `keep` accepts; how many it dropped.
    pub(crate) fn retain(&self, mut keep: impl FnMut(&StoredObject) -> bool) -> usize {
        let mut guard = self.write();
        let dropped: Vec<ObjectKey> = guard
            .objects
            .iter()
            .filter(|(_, object)| !keep(object))
            .map(|(key, _)| key.clone())
            .collect();
        for key in &dropped {
            guard.unindex(key);
            guard.objects.remove(key);
        }
        dropped.len()
    }

    /// Replaces the whole content after a (re)list, and says what changed.
    pub(crate) fn replace(&self, objects: Vec<Arc<StoredObject>>) -> Changes {
        let mut fresh: BTreeMap<ObjectKey, Arc<StoredObject>> = objects
            .into_iter()
            .map(|object| (object.key(), object))
            .collect();
        let mut guard = self.write();
        let mut changes = Changes::default();
        for (key, old) in &guard.objects {
            match fresh.get(key) {
                None => changes.deleted.push(Arc::clone(old)),
                Some(new) if new.resource_version == old.resource_version => {
                    // Unchanged: keep the very same entry.
                    fresh.insert(key.clone(), Arc::clone(old));
                }
                Some(_) => {}
            }
        }
        for (key, new) in &fresh {
            let unchanged = guard
                .objects
                .get(key)
                .is_some_and(|old| Arc::ptr_eq(old, new));
            if !unchanged {
                changes.applied.push(Arc::clone(new));
            }
        }
        for gone in &changes.deleted {
            guard.unindex(&gone.key());
        }
        if !guard.indexes.is_empty() {
            for object in &changes.applied {
                guard.unindex(&object.key());
                guard.index_object(object, None);
            }
        }
        guard.objects = fresh;
        changes
    }

    /// Keeps an index of the stored objects by the values `paths` select,
    /// for as long as the returned handle (or a clone) lives: the same
    /// handle as an earlier call with the same expressions whose handle
    /// still lives. Evaluated now over what is stored, then whenever an
    /// object is stored.
    pub fn index(&self, paths: IndexPaths) -> Arc<IndexPaths> {
        let mut guard = self.write();
        if let Some(shared) = guard
            .indexes
            .iter()
            .filter_map(|index| index.paths.upgrade())
            .find(|shared| **shared == paths)
        {
            return shared;
        }
        let paths = Arc::new(paths);
        let mut index = Indexed {
            paths: Arc::downgrade(&paths),
            by_value: HashMap::new(),
            of_object: HashMap::new(),
        };
        for (key, object) in &guard.objects {
            if let Ok(value) = serde_json::from_str::<Value>(&object.json) {
                index.add(&paths, key, &value);
            }
        }
        guard.indexes.push(index);
        self.indexed.store(true, Ordering::Relaxed);
        paths
    }

    /// The objects whose values for the index `paths` (a handle
    /// [`Self::index`] returned) include `value`, sorted by namespace and
    /// name, optionally only in one namespace. Nothing for an index this
    /// store does not keep.
    pub fn by_index(
        &self,
        paths: &Arc<IndexPaths>,
        value: &str,
        namespace: Option<&str>,
    ) -> Vec<Arc<StoredObject>> {
        let guard = self.read();
        let Some(keys) = guard
            .indexes
            .iter()
            .find(|index| std::ptr::eq(index.paths.as_ptr(), Arc::as_ptr(paths)))
            .and_then(|index| index.by_value.get(value))
        else {
            return Vec::new();
        };
        keys.iter()
            .filter(|(ns, _)| namespace.is_none_or(|namespace| ns == namespace))
            .filter_map(|key| guard.objects.get(key).cloned())
            .collect()
    }

    /// One object.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<StoredObject>> {
        self.read()
            .objects
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Objects sorted by namespace and name, optionally in one namespace
    /// and matching a selector.
    pub fn list(
        &self,
        namespace: Option<&str>,
        selector: Option<&LabelSelector>,
    ) -> Vec<Arc<StoredObject>> {
        let guard = self.read();
        let matches = |object: &&Arc<StoredObject>| {
            selector.is_none_or(|selector| selector.matches(|key| object.label(key)))
        };
        match namespace {
            Some(namespace) => guard
                .objects
                .range((namespace.to_owned(), String::new())..)
                .take_while(|((ns, _), _)| ns == namespace)
                .map(|(_, object)| object)
                .filter(matches)
                .cloned()
                .collect(),
            None => guard.objects.values().filter(matches).cloned().collect(),
        }
    }

    /// How many objects are stored.
    pub fn len(&self) -> usize {
        self.read().objects.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap bytes held by the stored objects and their keys.
    pub fn heap_bytes(&self) -> usize {
        self.read()
            .objects
            .iter()
            .map(|((namespace, name), object)| namespace.len() + name.len() + object.heap_bytes())
            .sum()
    }

    /// Objects grouped by their controller owner's name, within one
    /// namespace: for tests and diagnostics.
    pub fn by_owner(&self, namespace: &str) -> HashMap<String, Vec<Arc<StoredObject>>> {
        let mut owners: HashMap<String, Vec<Arc<StoredObject>>> = HashMap::new();
        for object in self.list(Some(namespace), None) {
            if let Some(owner) = &object.controller {
                owners
                    .entry(owner.name.to_string())
                    .or_default()
                    .push(object);
            }
        }
        owners
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Arc<StoredObject> {
        let raw: Box<RawValue> = serde_json::from_str(json).expect("json");
        Arc::new(StoredObject::parse(&raw, "apps/v1", "Deployment").expect("object"))
    }

    #[test]
    fn list_items_gain_api_version_and_kind() {
        let object = parse(
            r#"{"metadata":{"name":"web","namespace":"shop","resourceVersion":"7","labels":{"app":"web"},
            "ownerReferences":[{"apiVersion":"x/v1","kind":"App","name":"shop","uid":"u","controller":true}]},"spec":{}}"#,
        );
        let value: serde_json::Value = serde_json::from_str(&object.json).expect("still JSON");
        assert_eq!(value["apiVersion"], "apps/v1");
        assert_eq!(value["kind"], "Deployment");
        assert_eq!(value["spec"], serde_json::json!({}));
        assert_eq!(object.key(), ("shop".to_owned(), "web".to_owned()));
        assert_eq!(object.label("app"), Some("web"));
        assert_eq!(
            object.controller.as_ref().map(|owner| &*owner.name),
            Some("shop")
        );
        assert!(object.heap_bytes() >= object.json.len());
    }

    #[test]
    fn an_object_is_narrowed_once_per_projection() {
        let object = parse(
            r#"{"metadata":{"name":"web","namespace":"shop","resourceVersion":"7"},"spec":{"replicas":2,"paused":true}}"#,
        );
        let paths = vec![".spec.replicas".to_owned()];
        let projection = Arc::new(Projection::parse(&paths).expect("parses"));
        let SeenJson::Narrowed(first) = object.seen_through(Some(&projection)) else {
            panic!("a projection narrows");
        };
        assert!(
            first.contains(r#""replicas":2"#) && !first.contains("paused"),
            "{first}"
        );
        // The same text again, and for an equal projection of another guest.
        let twin = Arc::new(Projection::parse(&paths).expect("parses"));
        for again in [&projection, &twin] {
            let SeenJson::Narrowed(second) = object.seen_through(Some(again)) else {
                panic!("a projection narrows");
            };
            assert!(Arc::ptr_eq(&first, &second), "narrowed once");
        }
        assert!(object.heap_bytes() >= object.json.len() + first.len());
        assert!(
            matches!(object.seen_through(None), SeenJson::Whole(json) if json == &*object.json)
        );
    }

    #[test]
    fn managed_fields_are_dropped() {
        let object = parse(
            r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"a","managedFields":[{"manager":"m"}]},"spec":{}}"#,
        );
        assert!(!object.json.contains("managedFields"), "{}", object.json);
        assert!(object.json.contains("\"spec\""));
    }

    #[test]
    fn managed_fields_are_cut_out_and_the_rest_kept_as_it_was() {
        for (text, expected) in [
            (
                r#"{"kind":"Deployment","apiVersion":"apps/v1","metadata":{"name":"a","managedFields":[{"manager":"m"}],"labels":{"z":"1","a":"2"}},"spec":{"b":1,"a":2}}"#,
                r#"{"kind":"Deployment","apiVersion":"apps/v1","metadata":{"name":"a","labels":{"z":"1","a":"2"}},"spec":{"b":1,"a":2}}"#,
            ),
            (
                r#"{"apiVersion":"v1","kind":"Pod","metadata": { "managedFields" : [] , "name" : "a" } }"#,
                r#"{"apiVersion":"v1","kind":"Pod","metadata": {"name" : "a"} }"#,
            ),
            (
                r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","managedFields":[],"managedFields":{}}}"#,
                r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"}}"#,
            ),
            (
                r#"{"apiVersion":"v1","kind":"Pod","spec":{"managedFields":1},"metadata":{"name":"a"}}"#,
                r#"{"apiVersion":"v1","kind":"Pod","spec":{"managedFields":1},"metadata":{"name":"a"}}"#,
            ),
        ] {
            assert_eq!(&*parse(text).json, expected);
        }
    }

    #[test]
    fn a_metadata_key_with_escapes_is_read_unescaped() {
        let object = parse(
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"na\u006de":"a","managedFields":[],"managed\u0046ields":[]}}"#,
        );
        assert_eq!(
            &*object.json,
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"}}"#
        );
        assert_eq!(&*object.name, "a");
    }

    #[test]
    fn a_null_kind_is_written_over_once() {
        let object = parse(r#"{"kind":null,"metadata":{"name":"a"},"spec":{}}"#);
        assert_eq!(
            object.json.matches("\"kind\"").count(),
            1,
            "{}",
            object.json
        );
        let value: serde_json::Value = serde_json::from_str(&object.json).expect("still JSON");
        assert_eq!(value["kind"], "Deployment");
        assert_eq!(value["apiVersion"], "apps/v1");
    }

    #[test]
    fn numbers_no_json_reader_can_hold_are_refused() {
        for text in [
            r#"{"metadata":{"name":"a"},"spec":{"size":1e400}}"#,
            r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"a"},"spec":[-1e999]}"#,
        ] {
            let raw: Box<RawValue> = serde_json::from_str(text).expect("well-formed JSON text");
            let error = StoredObject::parse(&raw, "apps/v1", "Deployment")
                .expect_err("a number out of range is refused");
            assert!(error.to_string().contains("out of range"), "{error}");
        }
    }

    #[test]
    fn metadata_and_owners_are_objects_never_arrays() {
        for text in [
            r#"{"metadata":["web","shop"]}"#,
            r#"{"metadata":{"name":"web","ownerReferences":[["v1","App","shop","u",true]]}}"#,
        ] {
            let raw: Box<RawValue> = serde_json::from_str(text).expect("well-formed JSON text");
            let error = StoredObject::parse(&raw, "apps/v1", "Deployment")
                .expect_err("an array where an object belongs is refused");
            assert!(error.to_string().contains("a JSON object"), "{error}");
        }
    }

    #[test]
    fn objects_with_kind_are_kept_verbatim() {
        let text = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"a"}}"#;
        assert_eq!(&*parse(text).json, text);
    }

    #[test]
    fn replace_reports_what_changed() {
        let store = Store::default();
        let a1 = parse(r#"{"metadata":{"name":"a","namespace":"n","resourceVersion":"1"}}"#);
        let b1 = parse(r#"{"metadata":{"name":"b","namespace":"n","resourceVersion":"1"}}"#);
        store.replace(vec![a1.clone(), b1]);
        let a1_again = parse(r#"{"metadata":{"name":"a","namespace":"n","resourceVersion":"1"}}"#);
        let c1 = parse(r#"{"metadata":{"name":"c","namespace":"m","resourceVersion":"3"}}"#);
        let changes = store.replace(vec![a1_again, c1]);
        let names = |list: &[Arc<StoredObject>]| {
            list.iter().map(|o| o.name.to_string()).collect::<Vec<_>>()
        };
        assert_eq!(names(&changes.applied), ["c"]);
        assert_eq!(names(&changes.deleted), ["b"]);
        assert!(Arc::ptr_eq(&store.get("n", "a").expect("kept"), &a1));
    }

    #[test]
    fn lists_by_namespace_and_selector() {
        let store = Store::default();
        for (ns, name, app) in [
            ("a", "x", "web"),
            ("b", "y", "web"),
            ("b", "z", "db"),
            ("c", "w", "web"),
        ] {
            store.apply(parse(&format!(
                r#"{{"metadata":{{"name":"{name}","namespace":"{ns}","labels":{{"app":"{app}"}}}}}}"#
            )));
        }
        let names = |list: Vec<Arc<StoredObject>>| {
            list.iter().map(|o| o.name.to_string()).collect::<Vec<_>>()
        };
        assert_eq!(names(store.list(Some("b"), None)), ["y", "z"]);
        let web = LabelSelector::parse("app=web").expect("selector");
        assert_eq!(names(store.list(None, Some(&web))), ["x", "y", "w"]);
        assert_eq!(names(store.list(Some("b"), Some(&web))), ["y"]);
        assert!(store.list(Some("nope"), None).is_empty());
    }

    fn configured(ns: &str, name: &str, rv: u32, configs: &[&str]) -> Arc<StoredObject> {
        let volumes: Vec<String> = configs
            .iter()
            .map(|config| format!(r#"{{"configMap":{{"name":"{config}"}}}}"#))
            .collect();
        parse(&format!(
            r#"{{"metadata":{{"name":"{name}","namespace":"{ns}","resourceVersion":"{rv}"}},
                "spec":{{"volumes":[{}]}}}}"#,
            volumes.join(",")
        ))
    }

    #[test]
    fn indexes_follow_every_write_and_go_with_their_last_holder() {
        let store = Store::default();
        store.apply(configured("a", "before", 1, &["shared"]));
        let paths = || IndexPaths::parse(&[".spec.volumes[*].configMap.name".to_owned()]).unwrap();
        let index = store.index(paths());
        // The same expressions share one index.
        let again = store.index(paths());
        assert!(Arc::ptr_eq(&index, &again));
        let names = |value: &str, namespace: Option<&str>| {
            store
                .by_index(&index, value, namespace)
                .iter()
                .map(|o| format!("{}/{}", o.namespace, o.name))
                .collect::<Vec<_>>()
        };
        // Evaluated over what was stored before the index.
        assert_eq!(names("shared", None), ["a/before"]);
        store.apply(configured("b", "web", 1, &["shared", "web"]));
        store.apply(configured("a", "db", 1, &["db"]));
        assert_eq!(names("shared", None), ["a/before", "b/web"]);
        assert_eq!(names("shared", Some("b")), ["b/web"]);
        // An update moves the object between values.
        store.apply(configured("b", "web", 2, &["web"]));
        assert_eq!(names("shared", None), ["a/before"]);
        assert_eq!(names("web", None), ["b/web"]);
        store.remove(&("a".to_owned(), "before".to_owned()));
        assert!(names("shared", None).is_empty());
        // A relist keeps unchanged objects and reindexes changed ones.
        store.replace(vec![
            configured("a", "db", 1, &["db"]),
            configured("b", "web", 3, &["shared"]),
        ]);
        assert_eq!(names("shared", None), ["b/web"]);
        assert_eq!(names("db", None), ["a/db"]);
        assert!(names("web", None).is_empty());
        assert_eq!(store.retain(|object| &*object.namespace != "a"), 1);
        assert!(names("db", None).is_empty());
        // Once no handle is held, the next write drops the index.
        drop((index, again));
        store.apply(configured("c", "late", 1, &["shared"]));
        assert!(store.read().indexes.is_empty());
    }
}
