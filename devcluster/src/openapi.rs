//! OpenAPI documents: `/openapi/v3` (an index and one document per group-version) and
//! `/openapi/v2`, with the schemas of every served kind, so `kubectl explain` works.
//!
//! Built-in kinds take their schemas from k8s-openapi's `JsonSchema` implementations (the
//! upstream definitions, named as upstream names them); custom resources take their CRD's
//! `openAPIV3Schema` with `apiVersion`, `kind` and `metadata` added as the apiextensions
//! server adds them. Every kind's schema carries `x-kubernetes-group-version-kind`.
//!
//! k8s-openapi generates no `x-kubernetes-*` extensions; built-in definitions gain them from
//! `openapi/extensions.json` (list types, list-map keys, map types, patch merge keys and
//! strategies, and the defaults of list-map key fields, as a real 1.36 server publishes them;
//! written by `cargo xtask gen-extensions`). The same typed schemas drive field ownership
//! ([`typed`]). No PATCH operation declares strategic merge patches: kubectl computes its
//! patches from its own built-in types.

use std::collections::BTreeMap;

use bytes::Bytes;
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha512};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::registry::{Registry, ResourceDef};

/// How a built-in kind's schema is produced: a reference to it, its definition (and those it
/// reaches) left in the generator.
pub(crate) type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// The [`SchemaFn`] of a k8s-openapi type.
pub(crate) fn schema_of<K: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<K>()
}

/// Where OpenAPI v3 documents keep their schemas.
const V3_PREFIX: &str = "#/components/schemas/";
/// Where swagger 2.0 documents keep them.
const V2_PREFIX: &str = "#/definitions/";

const API_VERSION_DESCRIPTION: &str = "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
const KIND_DESCRIPTION: &str = "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";
const METADATA_DESCRIPTION: &str = "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const EMBEDDED_API_VERSION_DESCRIPTION: &str = "apiVersion defines the versioned schema of this representation of an object. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
const EMBEDDED_KIND_DESCRIPTION: &str = "kind is a string value representing the type of this object. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";

/// The media type of a JSON document.
const JSON_MEDIA_TYPE: &str = "application/json";

/// Every OpenAPI document of one state of the registry, serialised.
#[derive(Debug)]
pub(crate) struct Documents {
    /// `/openapi/v3`: the index, each group-version with its content hash.
    root: Bytes,
    /// `/openapi/v3/{api/v1 | apis/G/V}` by path.
    group_versions: BTreeMap<String, Bytes>,
    /// `/openapi/v2`: every group-version in one swagger 2.0 document.
    v2: Bytes,
}

/// What an `/openapi/...` request is answered with.
#[derive(Debug)]
pub(crate) enum Answer {
    /// A JSON document.
    Json(Bytes),
    /// The client accepts only a media type not served here (swagger's protobuf form).
    NotAcceptable,
    /// No such document.
    NotFound,
}

impl Documents {
    /// Builds every document of `reg`.
    pub(crate) fn build(reg: &Registry) -> Self {
        let mut group_versions = BTreeMap::new();
        let mut index = Map::new();
        let mut v2_paths = Map::new();
        let mut definitions = Map::new();
        for gv in group_versions_of(reg) {
            let resources: Vec<&ResourceDef> = reg
                .all()
                .iter()
                .map(AsRef::as_ref)
                .filter(|r| r.group == gv.group && r.versions.contains(&gv.version))
                .collect();
            let schemas = component_schemas(&gv, &resources);
            let doc = json!({
                "openapi": "3.0.0",
                "info": {"title": "Kubernetes", "version": "v1.36.0"},
                "paths": paths(&gv, &resources, Dialect::V3),
                "components": {"schemas": schemas},
            });
            let bytes = Bytes::from(doc.to_string());
            let url = format!("/openapi/v3/{}?hash={}", gv.path, hash(&bytes));
            index.insert(gv.path.clone(), json!({"serverRelativeURL": url}));
            if let Value::Object(paths) = paths(&gv, &resources, Dialect::V2) {
                v2_paths.extend(paths);
            }
            for (name, schema) in v2_definitions(&resources, &gv.version, schemas) {
                merge_definition(&mut definitions, name, schema);
            }
            group_versions.insert(gv.path, bytes);
        }
        let v2 = json!({
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": "v1.36.0"},
            "paths": v2_paths,
            "definitions": definitions,
        });
        Self {
            root: Bytes::from(json!({"paths": index}).to_string()),
            group_versions,
            v2: Bytes::from(v2.to_string()),
        }
    }
}

/// Answers `GET /openapi/{rest}` from `docs`, with `accept` as the client's `Accept` header.
pub(crate) fn answer(docs: &Documents, rest: &[&str], accept: &str) -> Answer {
    match rest {
        ["v3"] => Answer::Json(docs.root.clone()),
        ["v3", gv @ ..] => match docs.group_versions.get(&gv.join("/")) {
            Some(doc) => Answer::Json(doc.clone()),
            None => Answer::NotFound,
        },
        ["v2"] if accepts_json(accept) => Answer::Json(docs.v2.clone()),
        ["v2"] => Answer::NotAcceptable,
        _ => Answer::NotFound,
    }
}

/// Whether an `Accept` header admits JSON (an absent header admits anything).
fn accepts_json(accept: &str) -> bool {
    accept.trim().is_empty()
        || accept.split(',').any(|part| {
            let media = part.split(';').next().unwrap_or_default().trim();
            matches!(media, JSON_MEDIA_TYPE | "application/*" | "*/*")
        })
}

/// A served group-version.
#[derive(Debug)]
struct GroupVersion {
    /// As OpenAPI v3 names it: `api/v1`, `apis/apps/v1`.
    path: String,
    group: String,
    version: String,
}

/// Every served group-version, in registration order.
fn group_versions_of(reg: &Registry) -> Vec<GroupVersion> {
    let mut out: Vec<GroupVersion> = Vec::new();
    for r in reg.all() {
        for v in &r.versions {
            let path = if r.group.is_empty() {
                format!("api/{v}")
            } else {
                format!("apis/{}/{v}", r.group)
            };
            if !out.iter().any(|gv| gv.path == path) {
                out.push(GroupVersion {
                    path,
                    group: r.group.clone(),
                    version: v.clone(),
                });
            }
        }
    }
    out
}

/// The hash the index names a document by: its SHA-512, upper-case hex, as a real server.
fn hash(doc: &[u8]) -> String {
    Sha512::digest(doc)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// The OpenAPI dialect a document is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    V3,
    V2,
}

/// One PATCH operation per resource, declaring the parameters clients check for
/// (`fieldValidation`) and the kind it patches.
fn paths(gv: &GroupVersion, resources: &[&ResourceDef], dialect: Dialect) -> Value {
    let mut paths = Map::new();
    let prefix = format!("/{}", gv.path);
    for r in resources {
        let item = if r.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
        } else {
            format!("{prefix}/{}/{{name}}", r.plural)
        };
        let param = |name: &str, ty: &str| match dialect {
            Dialect::V3 => {
                json!({"name": name, "in": "query", "schema": {"type": ty, "uniqueItems": true}})
            }
            Dialect::V2 => json!({"name": name, "in": "query", "type": ty, "uniqueItems": true}),
        };
        paths.insert(
            item,
            json!({
                "patch": {
                    "operationId": format!("patch{}", r.kind),
                    "parameters": [
                        param("dryRun", "string"),
                        param("fieldManager", "string"),
                        param("fieldValidation", "string"),
                        param("force", "boolean"),
                    ],
                    "responses": {"200": {"description": "OK"}},
                    "x-kubernetes-action": "patch",
                    "x-kubernetes-group-version-kind":
                        {"group": gv.group, "kind": r.kind, "version": gv.version},
                }
            }),
        );
    }
    Value::Object(paths)
}

/// `{"group", "version", "kind"}`, as `x-kubernetes-group-version-kind` lists kinds.
fn gvk(gv: &GroupVersion, kind: &str) -> Value {
    json!({"group": gv.group, "version": gv.version, "kind": kind})
}

/// Every schema the group-version's kinds reach, by upstream name, each kind's carrying its
/// group-version-kind.
fn component_schemas(gv: &GroupVersion, resources: &[&ResourceDef]) -> Map<String, Value> {
    let mut generator = SchemaGenerator::new(SchemaSettings::openapi3());
    let mut kinds: Vec<(String, Value)> = Vec::new();
    let mut custom: Vec<(String, Value)> = Vec::new();
    for r in resources {
        if let Some((_, schema_fn)) = r.type_schemas.iter().find(|(v, _)| *v == gv.version) {
            let reference = schema_fn(&mut generator);
            if let Some(name) = reference
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix(V3_PREFIX))
            {
                kinds.push((name.to_owned(), gvk(gv, &r.kind)));
            }
        } else if let Some((_, schema)) = r.schemas.iter().find(|(v, _)| *v == gv.version) {
            let name = model_name(&r.group, &gv.version, &r.kind);
            let mut schema = custom_kind_schema(schema);
            if let Value::Object(obj) = &mut schema {
                obj.insert(
                    "x-kubernetes-group-version-kind".into(),
                    json!([gvk(gv, &r.kind)]),
                );
            }
            custom.push((name, schema));
        }
    }
    if !custom.is_empty() {
        generator.subschema_for::<ObjectMeta>();
    }
    let mut schemas: Map<String, Value> = generator.take_definitions(true).into_iter().collect();
    schemas.values_mut().for_each(metadata_optional);
    add_extensions(&mut schemas);
    for (name, kind) in kinds {
        if let Some(Value::Object(schema)) = schemas.get_mut(&name) {
            let list = schema
                .entry("x-kubernetes-group-version-kind")
                .or_insert_with(|| json!([]));
            if let Value::Array(list) = list {
                list.push(kind);
            }
        }
    }
    schemas.extend(custom);
    schemas
}

/// The upstream extensions of built-in definitions, by definition and property (`.`: the
/// definition itself).
fn extensions() -> &'static Map<String, Value> {
    static TABLE: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        serde_json::from_str(include_str!("openapi/extensions.json"))
            .expect("openapi/extensions.json is a JSON object")
    })
}

/// Adds the upstream extensions to generated built-in definitions.
fn add_extensions(definitions: &mut Map<String, Value>) {
    for (name, schema) in definitions.iter_mut() {
        let Some(Value::Object(table)) = extensions().get(name) else {
            continue;
        };
        for (property, added) in table {
            let target = if property == "." {
                Some(&mut *schema)
            } else {
                schema
                    .get_mut("properties")
                    .and_then(|properties| properties.get_mut(property))
            };
            if let (Some(Value::Object(target)), Value::Object(added)) = (target, added) {
                target.extend(added.clone());
            }
        }
    }
}

/// Where a typed definition lists the fields Go's JSON leaves out when they hold their zero
/// value (never served).
pub(crate) const OMITEMPTY: &str = "x-devcluster-omitempty";
/// Where a typed definition gives, per field Go always writes, what it writes for a zero value
/// (never served).
pub(crate) const GO_ZERO: &str = "x-devcluster-zero";

/// Marks each definition with how Go writes its fields when they hold their zero value, from
/// `openapi/go_zero.json` (written by `cargo xtask gen-extensions` from the Go types).
fn mark_go_zero(definitions: &mut Map<String, Value>) {
    static TABLE: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        serde_json::from_str(include_str!("openapi/go_zero.json"))
            .expect("openapi/go_zero.json is a JSON object")
    });
    for (name, schema) in definitions.iter_mut() {
        if let (Some(entry), Some(schema)) = (table.get(name), schema.as_object_mut()) {
            for (key, marker) in [("omitempty", OMITEMPTY), ("zero", GO_ZERO)] {
                if let Some(value) = entry.get(key) {
                    schema.insert(marker.into(), value.clone());
                }
            }
        }
    }
}

/// A built-in kind's schema as field ownership reads it: the kind's definition and every
/// definition it reaches, with the upstream extensions.
#[derive(Debug)]
pub(crate) struct TypedSchema {
    /// A reference to the kind's definition.
    pub root: Value,
    /// Definitions by name.
    pub definitions: Map<String, Value>,
}

impl TypedSchema {
    /// The definition a `$ref` names.
    pub(crate) fn resolve<'a>(&'a self, reference: &str) -> Option<&'a Value> {
        self.definitions.get(reference.strip_prefix(V3_PREFIX)?)
    }
}

/// The typed schema of a built-in kind, built once per type and kept for the process. Every
/// write reads it, so a lookup takes a shared lock; only the first use of a type writes.
pub(crate) fn typed(schema_fn: SchemaFn) -> &'static TypedSchema {
    type Table = parking_lot::RwLock<std::collections::HashMap<usize, &'static TypedSchema>>;
    static TYPED: std::sync::OnceLock<Table> = std::sync::OnceLock::new();
    let table = TYPED.get_or_init(Default::default);
    let key = schema_fn as usize;
    if let Some(found) = table.read().get(&key) {
        return found;
    }
    table.write().entry(key).or_insert_with(|| {
        let mut generator = SchemaGenerator::new(SchemaSettings::openapi3());
        let root = schema_fn(&mut generator).to_value();
        let mut definitions: Map<String, Value> =
            generator.take_definitions(true).into_iter().collect();
        add_extensions(&mut definitions);
        mark_go_zero(&mut definitions);
        // One leaked schema per built-in type: a bounded set, read by every write.
        Box::leak(Box::new(TypedSchema { root, definitions }))
    })
}

/// k8s-openapi lists `metadata` as required in every object kind (its Rust types need it);
/// upstream's definitions do not, and `kubectl explain` would print it as `-required-`.
fn metadata_optional(schema: &mut Value) {
    let is_object_kind = ["apiVersion", "kind", "metadata"]
        .iter()
        .all(|field| schema["properties"].get(field).is_some());
    let Some(obj) = schema.as_object_mut().filter(|_| is_object_kind) else {
        return;
    };
    if let Some(Value::Array(required)) = obj.get_mut("required") {
        required.retain(|field| field != "metadata");
        if required.is_empty() {
            obj.remove("required");
        }
    }
}

/// The definition name the apiextensions server gives a custom kind: the group reversed, then
/// version and kind (`example.com`, `v1`, `Widget` → `com.example.v1.Widget`).
fn model_name(group: &str, version: &str, kind: &str) -> String {
    let reversed: Vec<&str> = group.rsplit('.').collect();
    format!("{}.{version}.{kind}", reversed.join("."))
}

/// A reference to another schema, with a description of its own: `allOf` holds the
/// reference, as in a real server's v3 documents.
fn described_ref(name: &str, description: &str) -> Value {
    json!({"allOf": [{"$ref": format!("{V3_PREFIX}{name}")}], "description": description})
}

/// A CRD version's schema as the kind's definition: `apiVersion`, `kind` and `metadata` set at
/// the top and in every embedded resource.
fn custom_kind_schema(schema: &Value) -> Value {
    let mut schema = schema.clone();
    add_embedded_properties(&mut schema);
    if let Value::Object(obj) = &mut schema {
        let properties = obj.entry("properties").or_insert_with(|| json!({}));
        if let Value::Object(properties) = properties {
            properties.insert(
                "apiVersion".into(),
                json!({"description": API_VERSION_DESCRIPTION, "type": "string"}),
            );
            properties.insert(
                "kind".into(),
                json!({"description": KIND_DESCRIPTION, "type": "string"}),
            );
            properties.insert("metadata".into(), object_meta_ref());
        }
    }
    schema
}

fn object_meta_ref() -> Value {
    described_ref(&ObjectMeta::schema_name(), METADATA_DESCRIPTION)
}

/// Gives every `x-kubernetes-embedded-resource` object in a CRD schema its `apiVersion`,
/// `kind` and `metadata`, both required.
fn add_embedded_properties(schema: &mut Value) {
    let Value::Object(obj) = schema else {
        return;
    };
    if let Some(Value::Object(properties)) = obj.get_mut("properties") {
        properties.values_mut().for_each(add_embedded_properties);
    }
    for key in ["items", "additionalProperties"] {
        if let Some(sub) = obj.get_mut(key) {
            add_embedded_properties(sub);
        }
    }
    if obj.get("x-kubernetes-embedded-resource") != Some(&Value::Bool(true)) {
        return;
    }
    let properties = obj.entry("properties").or_insert_with(|| json!({}));
    if let Value::Object(properties) = properties {
        properties.insert(
            "apiVersion".into(),
            json!({"description": EMBEDDED_API_VERSION_DESCRIPTION, "type": "string"}),
        );
        properties.insert(
            "kind".into(),
            json!({"description": EMBEDDED_KIND_DESCRIPTION, "type": "string"}),
        );
        properties.insert("metadata".into(), object_meta_ref());
    }
    let required = obj.entry("required").or_insert_with(|| json!([]));
    if let Value::Array(required) = required {
        for field in ["kind", "apiVersion"] {
            if !required.iter().any(|r| r == field) {
                required.push(field.into());
            }
        }
    }
}

/// The group-version's schemas as swagger 2.0 definitions: references into `#/definitions/`,
/// and a custom kind that keeps unknown fields reduced to an object, as the apiextensions
/// server publishes it in v2.
fn v2_definitions(
    resources: &[&ResourceDef],
    version: &str,
    schemas: Map<String, Value>,
) -> Map<String, Value> {
    let mut definitions = Map::new();
    for (name, mut schema) in schemas {
        let preserves = schema.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
        let custom = resources.iter().any(|r| {
            r.custom && r.schemas.iter().any(|(v, _)| v == version) && {
                model_name(&r.group, version, &r.kind) == name
            }
        });
        if custom && preserves {
            let gvk = schema
                .get("x-kubernetes-group-version-kind")
                .cloned()
                .unwrap_or_else(|| json!([]));
            schema = json!({"type": "object", "x-kubernetes-group-version-kind": gvk});
        }
        rewrite_refs(&mut schema);
        definitions.insert(name, schema);
    }
    definitions
}

/// Points every `#/components/schemas/` reference at `#/definitions/`.
fn rewrite_refs(value: &mut Value) {
    match value {
        Value::Object(obj) => {
            for (key, v) in obj.iter_mut() {
                if key == "$ref"
                    && let Some(name) = v.as_str().and_then(|r| r.strip_prefix(V3_PREFIX))
                {
                    *v = Value::String(format!("{V2_PREFIX}{name}"));
                } else {
                    rewrite_refs(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

/// Adds a definition to the v2 document; one already there (a type several group-versions
/// reach) gains the other's group-version-kinds.
fn merge_definition(definitions: &mut Map<String, Value>, name: String, schema: Value) {
    const GVK: &str = "x-kubernetes-group-version-kind";
    match definitions.get_mut(&name) {
        Some(Value::Object(existing)) => {
            let Some(Value::Array(more)) = schema.get(GVK) else {
                return;
            };
            let list = existing.entry(GVK).or_insert_with(|| json!([]));
            if let Value::Array(list) = list {
                for kind in more {
                    if !list.contains(kind) {
                        list.push(kind.clone());
                    }
                }
            }
        }
        _ => {
            definitions.insert(name, schema);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The document at `/openapi/v3/{path}` (the index for an empty path).
    fn document(reg: &Registry, path: &str) -> Value {
        let rest: Vec<&str> = ["v3"]
            .into_iter()
            .chain(path.split('/').filter(|s| !s.is_empty()))
            .collect();
        let Answer::Json(bytes) = answer(&reg.openapi(), &rest, "") else {
            panic!("no document at {path}");
        };
        serde_json::from_slice(&bytes).unwrap()
    }

    /// Every `$ref` in `value`.
    fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
        match value {
            Value::Object(obj) => {
                for (key, v) in obj {
                    match v.as_str() {
                        Some(r) if key == "$ref" => out.push(r),
                        _ => refs(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    /// The group-version-kinds the document's schemas declare.
    fn declared_kinds(doc: &Value) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
            for kind in schema["x-kubernetes-group-version-kind"]
                .as_array()
                .into_iter()
                .flatten()
            {
                out.push((name.clone(), kind.clone()));
            }
        }
        out
    }

    fn assert_complete(reg: &Registry, gv: &str, prefix: &str) {
        let doc = document(reg, gv);
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let mut all = Vec::new();
        refs(&doc["components"], &mut all);
        assert!(!all.is_empty(), "{gv} has references");
        for r in all {
            let name = r
                .strip_prefix(prefix)
                .unwrap_or_else(|| panic!("{gv}: {r}"));
            assert!(schemas.contains_key(name), "{gv}: {r} does not resolve");
        }
    }

    #[test]
    fn every_group_version_declares_its_kinds_and_resolves_its_references() {
        let reg = Registry::builtin();
        for gv in group_versions_of(&reg) {
            let doc = document(&reg, &gv.path);
            let declared = declared_kinds(&doc);
            for r in reg
                .all()
                .iter()
                .filter(|r| r.group == gv.group && r.versions.contains(&gv.version))
            {
                let kind = gvk(&gv, &r.kind);
                assert!(
                    declared.iter().any(|(_, k)| *k == kind),
                    "{}: no schema declares {kind}",
                    gv.path
                );
            }
            assert_complete(&reg, &gv.path, V3_PREFIX);
        }
    }

    #[test]
    fn kinds_are_named_and_described_as_upstream() {
        let reg = Registry::builtin();
        let doc = document(&reg, "apis/apps/v1");
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            schemas["io.k8s.api.apps.v1.Deployment"]["x-kubernetes-group-version-kind"],
            json!([{"group": "apps", "version": "v1", "kind": "Deployment"}])
        );
        // A described reference keeps the reference in `allOf`, as kubectl explain reads it.
        assert_eq!(
            schemas["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"]["allOf"],
            json!([{"$ref": "#/components/schemas/io.k8s.api.apps.v1.DeploymentStrategy"}])
        );
        let op = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(op["x-kubernetes-group-version-kind"]["kind"], "Deployment");
        assert!(
            op["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation")
        );
        // Nothing requires metadata, as upstream.
        for kind in [
            "io.k8s.api.apps.v1.Deployment",
            "io.k8s.api.core.v1.PersistentVolumeClaim",
        ] {
            assert!(
                schemas[kind]["properties"]["metadata"].is_object(),
                "{kind}"
            );
            assert!(schemas[kind].get("required").is_none(), "{kind}");
        }
        // Both versions of autoscaling keep their own types.
        let v1 = document(&reg, "apis/autoscaling/v1");
        assert!(
            v1["components"]["schemas"]["io.k8s.api.autoscaling.v1.HorizontalPodAutoscaler"]
                ["x-kubernetes-group-version-kind"]
                .is_array()
        );
    }

    const CRD: &str = r#"{
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "description": "What the widget should be.",
                        "properties": {
                            "color": {"type": "string", "description": "The paint."},
                            "template": {"type": "object",
                                "x-kubernetes-embedded-resource": true,
                                "x-kubernetes-preserve-unknown-fields": true}
                        }}
                }}}
            }]
        }
    }"#;

    #[test]
    fn custom_kinds_gain_type_and_object_metadata_and_change_the_index() {
        let mut reg = Registry::builtin();
        let before = document(&reg, "");
        let crd: Map<String, Value> = serde_json::from_str(CRD).unwrap();
        reg.add_custom(crate::registry::from_crd(&crd).unwrap());
        let after = document(&reg, "");
        assert!(before["paths"].get("apis/example.com/v1").is_none());
        let url = after["paths"]["apis/example.com/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        assert!(url.starts_with("/openapi/v3/apis/example.com/v1?hash="));
        assert_eq!(
            before["paths"]["apis/apps/v1"], after["paths"]["apis/apps/v1"],
            "other documents keep their hash"
        );

        let doc = document(&reg, "apis/example.com/v1");
        let widget = &doc["components"]["schemas"]["com.example.v1.Widget"];
        assert_eq!(
            widget["x-kubernetes-group-version-kind"],
            json!([{"group": "example.com", "version": "v1", "kind": "Widget"}])
        );
        assert_eq!(widget["properties"]["apiVersion"]["type"], "string");
        assert_eq!(
            widget["properties"]["spec"]["properties"]["color"]["description"],
            "The paint."
        );
        let template = &widget["properties"]["spec"]["properties"]["template"];
        assert_eq!(template["required"], json!(["kind", "apiVersion"]));
        assert!(template["properties"]["metadata"]["allOf"].is_array());
        assert_complete(&reg, "apis/example.com/v1", V3_PREFIX);

        // A changed schema changes the group-version's hash.
        let mut changed = crd.clone();
        changed["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["description"] =
            json!("Something else.");
        reg.add_custom(crate::registry::from_crd(&changed).unwrap());
        let again = document(&reg, "");
        assert_ne!(
            after["paths"]["apis/example.com/v1"],
            again["paths"]["apis/example.com/v1"]
        );
    }

    #[test]
    fn swagger_holds_every_definition_with_its_references_resolved() {
        let reg = Registry::builtin();
        let docs = reg.openapi();
        let Answer::Json(bytes) = answer(&docs, &["v2"], "application/json") else {
            panic!("no swagger document");
        };
        let doc: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(doc["swagger"], "2.0");
        let definitions = doc["definitions"].as_object().unwrap();
        let mut all = Vec::new();
        refs(&doc["definitions"], &mut all);
        for r in all {
            let name = r.strip_prefix(V2_PREFIX).unwrap_or_else(|| panic!("{r}"));
            assert!(definitions.contains_key(name), "{r} does not resolve");
        }
        assert!(
            definitions["io.k8s.api.core.v1.Pod"]["x-kubernetes-group-version-kind"].is_array()
        );
        assert!(matches!(
            answer(
                &docs,
                &["v2"],
                "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
            ),
            Answer::NotAcceptable
        ));
    }
}
