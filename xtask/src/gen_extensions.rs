//! `cargo xtask gen-extensions KUBERNETES_DIR`: writes the tables that drive field ownership,
//! merging and storage of built-in kinds, from a Kubernetes source tree.
//!
//! k8s-openapi's schemas, from which devcluster serves its OpenAPI documents and types its
//! objects, carry no `x-kubernetes-*` extensions. A Kubernetes source tree's
//! `api/openapi-spec/v3` documents (what a real kube-apiserver serves at `/openapi/v3`) do: this
//! reads their `components.schemas` and keeps, per definition, the extensions of the definition
//! itself (key `.`) and of each property (`x-kubernetes-list-type`,
//! `x-kubernetes-list-map-keys`, `x-kubernetes-map-type`, `x-kubernetes-patch-merge-key`,
//! `x-kubernetes-patch-strategy`), and each property's `default`. Those defaults are of two
//! kinds: a few are real defaults (a port's `protocol`, which server-side apply fills in
//! before it keys an item), most are the zero value Go writes for a field it never omits (`{}`
//! for a struct held by value, `""` for a string without `omitempty`), which field ownership
//! needs to tell a field a writer added from one every object has. The table is data about
//! the API, written sorted so that a regeneration diffs line by line.
//!
//! A second table, `go_zero.json`, says per definition how Go's JSON encoding writes each
//! field of a zero value, read from the Go types: `omitempty` lists the fields left out when
//! they hold their zero value (tagged `omitempty`, of a string, number, boolean, slice or map
//! type; a pointer is left out only when nil, a struct never), and `zero` gives what is
//! written for the others (`{}` for a struct held by value, `null` for a nil slice, map or
//! pointer or a zero time, `""`, `0` or `false`). A real server decodes every body into its Go
//! type and stores it re-encoded, so `paused: false` or `minReadySeconds: 0` (which protobuf
//! bodies always carry) is never stored, and field ownership compares objects as Go holds
//! them. The OpenAPI documents cannot tell `minReadySeconds int32` from `replicas *int32`;
//! the Go source can.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use serde_json::{Map, Value};

/// Where the tables are written, relative to the workspace root.
const OUTPUT: &str = "devcluster/src/openapi/extensions.json";
const GO_ZERO: &str = "devcluster/src/openapi/go_zero.json";

/// The OpenAPI documents, relative to a Kubernetes source tree.
const SPEC_DIR: &str = "api/openapi-spec/v3";

/// The Go packages of the served types, relative to a Kubernetes source tree: each holds
/// `<group>/<version>` folders (or is one), named in definitions as `io.k8s.<path>`.
const GO_PACKAGES: [&str; 4] = [
    "staging/src/k8s.io/api",
    "staging/src/k8s.io/apimachinery/pkg/apis/meta/v1",
    "staging/src/k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1",
    "staging/src/k8s.io/kube-aggregator/pkg/apis/apiregistration/v1",
];

/// The extensions kept.
const KEPT: [&str; 5] = [
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
    "x-kubernetes-patch-merge-key",
    "x-kubernetes-patch-strategy",
];

pub fn run(root: &Path, kubernetes_dir: &Path) -> anyhow::Result<()> {
    let spec_dir = kubernetes_dir.join(SPEC_DIR);
    let spec_dir = spec_dir.as_path();
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
            "no component schemas under {}: pass the root of a Kubernetes source tree",
            spec_dir.display()
        );
    }
    let mut table: BTreeMap<String, BTreeMap<String, Map<String, Value>>> = BTreeMap::new();
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
            let mut extensions = kept(value);
            if let Some(default) = value.get("default") {
                extensions.insert("default".into(), default.clone());
            }
            if !extensions.is_empty() {
                table
                    .entry(name.clone())
                    .or_default()
                    .insert(property.clone(), extensions);
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

    let zeros = go_zero_values(kubernetes_dir)?;
    let zeros: BTreeMap<&String, &Map<String, Value>> = zeros
        .iter()
        .filter(|(definition, _)| schemas.contains_key(*definition))
        .collect();
    let mut text = serde_json::to_string_pretty(&zeros)?;
    text.push('\n');
    let out = root.join(GO_ZERO);
    std::fs::write(&out, text).with_context(|| format!("writing {}", out.display()))?;
    println!(
        "{}: Go zero values of {} definitions",
        out.display(),
        zeros.len()
    );
    Ok(())
}

/// A struct field as its Go source declares it.
struct GoField {
    json: String,
    ty: String,
    omitempty: bool,
}

/// Per definition name, how Go writes the fields of a zero value: `omitempty` (the fields
/// left out when zero) and `zero` (what is written for each field that is not).
fn go_zero_values(kubernetes_dir: &Path) -> anyhow::Result<BTreeMap<String, Map<String, Value>>> {
    // Every struct's fields, and every named non-struct type's underlying type.
    let mut structs: BTreeMap<String, Vec<GoField>> = BTreeMap::new();
    let mut named: BTreeMap<String, String> = BTreeMap::new();
    for package in GO_PACKAGES {
        let dir = kubernetes_dir.join(package);
        let mut files = Vec::new();
        go_files(&dir, &mut files)
            .with_context(|| format!("reading {} (Go types of the API)", dir.display()))?;
        for file in files {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let folder = file.parent().unwrap_or(&dir);
            let relative = folder
                .strip_prefix(kubernetes_dir.join("staging/src"))
                .with_context(|| format!("{} is outside staging/src", folder.display()))?;
            let prefix = format!(
                "io.k8s.{}",
                relative
                    .to_string_lossy()
                    .trim_start_matches("k8s.io/")
                    .replace('/', ".")
            );
            read_go_types(&text, &prefix, &mut structs, &mut named);
        }
    }
    if structs.is_empty() {
        bail!(
            "no Go types under {}/staging/src/k8s.io: pass the root of a Kubernetes source tree",
            kubernetes_dir.display()
        );
    }
    let struct_names: std::collections::BTreeSet<String> = structs
        .keys()
        .filter_map(|d| d.rsplit('.').next().map(str::to_owned))
        .collect();
    let underlying = |ty: &str| -> String {
        let mut ty = ty.to_owned();
        for _ in 0..4 {
            let bare = ty.rsplit('.').next().unwrap_or(&ty).to_owned();
            match named.get(&bare) {
                Some(next) if !ty.starts_with('*') => ty = next.clone(),
                _ => break,
            }
        }
        ty
    };
    let mut out = BTreeMap::new();
    for (definition, fields) in &structs {
        let mut omitted = Vec::new();
        let mut zero = Map::new();
        for field in fields {
            let ty = underlying(&field.ty);
            let collection = ty.starts_with('*') || ty.starts_with("[]") || ty.starts_with("map[");
            if field.omitempty && (collection || scalar_zero(&ty).is_some()) {
                if !ty.starts_with('*') {
                    omitted.push(Value::from(field.json.clone()));
                }
                continue;
            }
            let bare = ty.rsplit('.').next().unwrap_or(&ty);
            let value = if collection {
                Some(Value::Null)
            } else if let Some(scalar) = scalar_zero(&ty) {
                Some(scalar)
            } else {
                match bare {
                    "Time" | "MicroTime" | "RawExtension" | "FieldsV1" | "JSON" => {
                        Some(Value::Null)
                    }
                    "Quantity" => Some(Value::from("0")),
                    "IntOrString" => Some(Value::from(0)),
                    "Duration" => Some(Value::from("0s")),
                    _ if struct_names.contains(bare) => Some(Value::Object(Map::new())),
                    // A type this reader does not know: nothing is claimed for it.
                    _ => None,
                }
            };
            if let Some(value) = value {
                zero.insert(field.json.clone(), value);
            }
        }
        let mut entry = Map::new();
        if !omitted.is_empty() {
            entry.insert("omitempty".into(), Value::Array(omitted));
        }
        if !zero.is_empty() {
            entry.insert("zero".into(), Value::Object(zero));
        }
        if !entry.is_empty() {
            out.insert(definition.clone(), entry);
        }
    }
    Ok(out)
}

/// The JSON of a Go scalar type's zero value.
fn scalar_zero(ty: &str) -> Option<Value> {
    match ty {
        "string" => Some(Value::from("")),
        "bool" => Some(Value::from(false)),
        "int" | "int8" | "int16" | "int32" | "int64" | "uint" | "uint8" | "uint16" | "uint32"
        | "uint64" | "float32" | "float64" | "byte" => Some(Value::from(0)),
        _ => None,
    }
}

/// The non-test Go files in a folder and the folders under it.
fn go_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            go_files(&path, out)?;
        } else if path.extension().and_then(|e| e.to_str()) == Some("go")
            && !path.to_string_lossy().ends_with("_test.go")
            && !path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("zz_generated"))
        {
            out.push(path);
        }
    }
    Ok(())
}

/// Reads the top-level `type X struct { ... }` and `type X Y` declarations of a Go file.
fn read_go_types(
    text: &str,
    prefix: &str,
    structs: &mut BTreeMap<String, Vec<GoField>>,
    named: &mut BTreeMap<String, String>,
) {
    let mut current: Option<String> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("type ") {
            let mut words = rest.split_whitespace();
            let (Some(name), Some(ty)) = (words.next(), words.next()) else {
                continue;
            };
            if ty == "struct" && rest.trim_end().ends_with('{') {
                current = Some(format!("{prefix}.{name}"));
                structs.entry(format!("{prefix}.{name}")).or_default();
            } else if ty != "struct" && ty != "interface" && ty != "=" {
                named.insert(name.to_owned(), ty.to_owned());
            }
            continue;
        }
        let Some(definition) = &current else {
            continue;
        };
        if line.starts_with('}') {
            current = None;
            continue;
        }
        // One field per line, tab-indented once: `Name Type `json:"name,omitempty" ...``.
        let Some(field) = line
            .strip_prefix('\t')
            .filter(|l| !l.starts_with(['\t', '/']))
        else {
            continue;
        };
        let mut words = field.split_whitespace();
        let (Some(first), Some(second)) = (words.next(), words.next()) else {
            continue;
        };
        // `Name Type `json:...``, or an embedded `Type `json:...`` named by its tag.
        let ty = if second.starts_with('`') {
            first
        } else {
            second
        };
        let Some(tag) = field
            .split("json:\"")
            .nth(1)
            .and_then(|t| t.split('"').next())
        else {
            continue;
        };
        let mut parts = tag.split(',');
        let json = parts.next().unwrap_or_default();
        if json.is_empty() || json == "-" {
            continue;
        }
        let omitempty = parts.any(|p| p == "omitempty");
        if let Some(fields) = structs.get_mut(definition) {
            fields.push(GoField {
                json: json.to_owned(),
                ty: ty.to_owned(),
                omitempty,
            });
        }
    }
}

/// The kept extensions of one schema.
fn kept(schema: &Value) -> Map<String, Value> {
    KEPT.iter()
        .filter_map(|name| Some(((*name).to_owned(), schema.get(*name)?.clone())))
        .collect()
}
