//! `cargo xtask gen-extensions SPEC_DIR`: writes the table of the OpenAPI extensions that
//! drive field ownership and merging of built-in kinds.
//!
//! k8s-openapi's schemas, from which devcluster serves its OpenAPI documents and types its
//! objects, carry no `x-kubernetes-*` extensions. A Kubernetes source tree's
//! `api/openapi-spec/v3` documents (what a real kube-apiserver serves at `/openapi/v3`) do: this
//! reads their `components.schemas` and keeps, per definition, the extensions of the definition
//! itself (key `.`) and of each property (`x-kubernetes-list-type`,
//! `x-kubernetes-list-map-keys`, `x-kubernetes-map-type`, `x-kubernetes-patch-merge-key`,
//! `x-kubernetes-patch-strategy`), and the `default` of the fields that key a list map (a
//! port's `protocol`), which server-side apply fills in before it keys an item. The table is
//! data about the API, written sorted so that a regeneration diffs line by line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, bail};
use serde_json::{Map, Value};

/// Where the table is written, relative to the workspace root.
const OUTPUT: &str = "devcluster/src/openapi/extensions.json";

/// The extensions kept.
const KEPT: [&str; 5] = [
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
    "x-kubernetes-patch-merge-key",
    "x-kubernetes-patch-strategy",
];

const PREFIX: &str = "#/components/schemas/";

pub fn run(root: &Path, spec_dir: &Path) -> anyhow::Result<()> {
    let mut schemas: BTreeMap<String, Value> = BTreeMap::new();
    let entries = std::fs::read_dir(spec_dir).with_context(|| {
        format!(
            "reading {} (api/openapi-spec/v3 of a Kubernetes source tree)",
            spec_dir.display()
        )
    })?;
    for entry in entries {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let doc: Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        if let Some(found) = doc
            .pointer("/components/schemas")
            .and_then(Value::as_object)
        {
            for (name, schema) in found {
                schemas
                    .entry(name.clone())
                    .or_insert_with(|| schema.clone());
            }
        }
    }
    if schemas.is_empty() {
        bail!(
            "no component schemas under {}: pass the api/openapi-spec/v3 folder",
            spec_dir.display()
        );
    }
    let mut table: BTreeMap<String, BTreeMap<String, Map<String, Value>>> = BTreeMap::new();
    // The definitions whose fields key a list map, and those fields.
    let mut keyed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, schema) in &schemas {
        let own = kept(schema);
        if !own.is_empty() {
            table
                .entry(name.clone())
                .or_default()
                .insert(".".into(), own);
        }
        let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
            continue;
        };
        for (property, value) in properties {
            let extensions = kept(value);
            if extensions.is_empty() {
                continue;
            }
            if let (Some(keys), Some(item)) = (
                extensions
                    .get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array),
                item_definition(value),
            ) {
                keyed
                    .entry(item)
                    .or_default()
                    .extend(keys.iter().filter_map(Value::as_str).map(str::to_owned));
            }
            table
                .entry(name.clone())
                .or_default()
                .insert(property.clone(), extensions);
        }
    }
    for (definition, keys) in keyed {
        for key in keys {
            let default = schemas
                .get(&definition)
                .and_then(|schema| schema.pointer(&format!("/properties/{key}/default")));
            if let Some(default) = default {
                table
                    .entry(definition.clone())
                    .or_default()
                    .entry(key)
                    .or_default()
                    .insert("default".into(), default.clone());
            }
        }
    }
    let mut text = serde_json::to_string_pretty(&table)?;
    text.push('\n');
    let out = root.join(OUTPUT);
    std::fs::write(&out, text).with_context(|| format!("writing {}", out.display()))?;
    println!(
        "{}: extensions of {} definitions",
        out.display(),
        table.len()
    );
    Ok(())
}

/// The kept extensions of one schema.
fn kept(schema: &Value) -> Map<String, Value> {
    KEPT.iter()
        .filter_map(|name| Some(((*name).to_owned(), schema.get(*name)?.clone())))
        .collect()
}

/// The definition a list's items refer to.
fn item_definition(list: &Value) -> Option<String> {
    let items = list.get("items")?;
    let reference = items.get("$ref").or_else(|| {
        items
            .get("allOf")
            .and_then(Value::as_array)
            .and_then(|all| all.first())
            .and_then(|first| first.get("$ref"))
    })?;
    reference.as_str()?.strip_prefix(PREFIX).map(str::to_owned)
}
