//! The informer store: the latest state of every object of one resource,
//! kept as the API server's JSON plus the few parsed fields routing and
//! cache reads need, sorted by namespace and name.
//!
//! One writer (the informer) and any number of readers; readers get cheap
//! `Arc` clones and never block the writer for long.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError, RwLock};

use serde::Deserialize;
use serde_json::value::RawValue;

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
        let text = if raw.get().contains("\"managedFields\"") {
            let mut value: serde_json::Value = serde_json::from_str(raw.get())?;
            if let Some(metadata) = value
                .get_mut("metadata")
                .and_then(serde_json::Value::as_object_mut)
            {
                metadata.remove("managedFields");
            }
            stripped = serde_json::to_string(&value)?;
            stripped.as_str()
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
        self.json.len()
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

/// The objects of one resource (in one namespace or all).
#[derive(Debug, Default)]
pub struct Store {
    objects: RwLock<BTreeMap<ObjectKey, Arc<StoredObject>>>,
}

impl Store {
    /// Stores an object; the previous state, if any.
    pub(crate) fn apply(&self, object: Arc<StoredObject>) -> Option<Arc<StoredObject>> {
        self.objects
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(object.key(), object)
    }

    /// Removes an object; its last stored state, if any.
    pub(crate) fn remove(&self, key: &ObjectKey) -> Option<Arc<StoredObject>> {
        self.objects
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key)
    }

    /// Keeps only the objects `keep` accepts; how many it dropped.
    pub(crate) fn retain(&self, mut keep: impl FnMut(&StoredObject) -> bool) -> usize {
        let mut guard = self.objects.write().unwrap_or_else(PoisonError::into_inner);
        let before = guard.len();
        guard.retain(|_, object| keep(object));
        before - guard.len()
    }

    /// Replaces the whole content after a (re)list, and says what changed.
    pub(crate) fn replace(&self, objects: Vec<Arc<StoredObject>>) -> Changes {
        let mut fresh: BTreeMap<ObjectKey, Arc<StoredObject>> = objects
            .into_iter()
            .map(|object| (object.key(), object))
            .collect();
        let mut guard = self.objects.write().unwrap_or_else(PoisonError::into_inner);
        let mut changes = Changes::default();
        for (key, old) in guard.iter() {
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
            let unchanged = guard.get(key).is_some_and(|old| Arc::ptr_eq(old, new));
            if !unchanged {
                changes.applied.push(Arc::clone(new));
            }
        }
        *guard = fresh;
        changes
    }

    /// One object.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<StoredObject>> {
        self.objects
            .read()
            .unwrap_or_else(PoisonError::into_inner)
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
        let guard = self.objects.read().unwrap_or_else(PoisonError::into_inner);
        let matches = |object: &&Arc<StoredObject>| {
            selector.is_none_or(|selector| selector.matches(|key| object.label(key)))
        };
        match namespace {
            Some(namespace) => guard
                .range((namespace.to_owned(), String::new())..)
                .take_while(|((ns, _), _)| ns == namespace)
                .map(|(_, object)| object)
                .filter(matches)
                .cloned()
                .collect(),
            None => guard.values().filter(matches).cloned().collect(),
        }
    }

    /// How many objects are stored.
    pub fn len(&self) -> usize {
        self.objects
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap bytes held by the stored objects and their keys.
    pub fn heap_bytes(&self) -> usize {
        let guard = self.objects.read().unwrap_or_else(PoisonError::into_inner);
        guard
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
    fn managed_fields_are_dropped() {
        let object = parse(
            r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"a","managedFields":[{"manager":"m"}]},"spec":{}}"#,
        );
        assert!(!object.json.contains("managedFields"), "{}", object.json);
        assert!(object.json.contains("\"spec\""));
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
}
