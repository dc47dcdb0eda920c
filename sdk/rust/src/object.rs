//! A Kubernetes object as JSON, with typed accessors for its metadata.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::ObjectRef;

/// One Kubernetes object: a JSON value with accessors for what every
/// controller reads. Deserialize it into a typed struct (for example a
/// `k8s_openapi` type) with [`Object::typed`] when you want one.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Object(Value);

impl Object {
    /// Wraps a JSON value.
    pub fn new(value: Value) -> Self {
        Self(value)
    }

    /// Parses an object from JSON text.
    pub fn parse(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json).map(Self)
    }

    /// The JSON value.
    pub fn value(&self) -> &Value {
        &self.0
    }

    /// The JSON value, mutably.
    pub fn value_mut(&mut self) -> &mut Value {
        &mut self.0
    }

    /// Unwraps the JSON value.
    pub fn into_value(self) -> Value {
        self.0
    }

    /// Deserializes the object into a typed struct, e.g.
    /// `k8s_openapi::api::apps::v1::Deployment`.
    pub fn typed<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&self.0)
    }

    /// The value at a JSON pointer such as `/spec/replicas`.
    pub fn pointer(&self, pointer: &str) -> Option<&Value> {
        self.0.pointer(pointer)
    }

    /// The string at a JSON pointer.
    pub fn str_at(&self, pointer: &str) -> Option<&str> {
        self.pointer(pointer).and_then(Value::as_str)
    }

    /// The integer at a JSON pointer.
    pub fn i64_at(&self, pointer: &str) -> Option<i64> {
        self.pointer(pointer).and_then(Value::as_i64)
    }

    /// `apiVersion`, or `""`.
    pub fn api_version(&self) -> &str {
        self.str_at("/apiVersion").unwrap_or_default()
    }

    /// `kind`, or `""`.
    pub fn kind(&self) -> &str {
        self.str_at("/kind").unwrap_or_default()
    }

    /// `metadata.name`, or `""`.
    pub fn name(&self) -> &str {
        self.str_at("/metadata/name").unwrap_or_default()
    }

    /// `metadata.namespace`, `None` for cluster-scoped objects.
    pub fn namespace(&self) -> Option<&str> {
        self.str_at("/metadata/namespace")
    }

    /// `metadata.uid`, or `""`.
    pub fn uid(&self) -> &str {
        self.str_at("/metadata/uid").unwrap_or_default()
    }

    /// `metadata.resourceVersion`, if set.
    pub fn resource_version(&self) -> Option<&str> {
        self.str_at("/metadata/resourceVersion")
    }

    /// `metadata.generation`, if the kind has one.
    pub fn generation(&self) -> Option<i64> {
        self.i64_at("/metadata/generation")
    }

    /// Whether `metadata.deletionTimestamp` is set: the object is being
    /// deleted and waits for its finalizers.
    pub fn is_being_deleted(&self) -> bool {
        self.pointer("/metadata/deletionTimestamp")
            .is_some_and(|value| !value.is_null())
    }

    /// One label's value.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.string_map("labels")?.get(key)?.as_str()
    }

    /// One annotation's value.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.string_map("annotations")?.get(key)?.as_str()
    }

    /// All labels (empty when there are none).
    pub fn labels(&self) -> Vec<(&str, &str)> {
        Self::pairs(self.string_map("labels"))
    }

    /// All annotations (empty when there are none).
    pub fn annotations(&self) -> Vec<(&str, &str)> {
        Self::pairs(self.string_map("annotations"))
    }

    /// Whether `metadata.finalizers` holds `finalizer`.
    pub fn has_finalizer(&self, finalizer: &str) -> bool {
        self.pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|list| list.iter().any(|item| item.as_str() == Some(finalizer)))
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
        let owners = self.pointer("/metadata/ownerReferences")?.as_array()?;
        let owner = owners
            .iter()
            .find(|owner| owner.get("controller").and_then(Value::as_bool) == Some(true))?;
        Some(ObjectRef {
            api_version: owner.get("apiVersion")?.as_str()?.to_owned(),
            kind: owner.get("kind")?.as_str()?.to_owned(),
            namespace: self.namespace().map(str::to_owned),
            name: owner.get("name")?.as_str()?.to_owned(),
        })
    }

    fn string_map(&self, field: &str) -> Option<&Map<String, Value>> {
        self.0.get("metadata")?.get(field)?.as_object()
    }

    fn pairs(map: Option<&Map<String, Value>>) -> Vec<(&str, &str)> {
        map.into_iter()
            .flatten()
            .filter_map(|(key, value)| Some((key.as_str(), value.as_str()?)))
            .collect()
    }
}

impl From<Value> for Object {
    fn from(value: Value) -> Self {
        Self(value)
    }
}

impl From<Object> for Value {
    fn from(object: Object) -> Self {
        object.0
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

    #[test]
    fn missing_fields_read_as_empty() {
        let object = Object::new(json!({}));
        assert_eq!(object.name(), "");
        assert_eq!(object.namespace(), None);
        assert!(object.labels().is_empty());
        assert!(object.controller_owner().is_none());
    }
}
