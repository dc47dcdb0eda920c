//! `cargo xtask gen-protobuf`: writes devcluster's protobuf message tables.
//!
//! Field numbers, wire types and the message type of every field come from the source of
//! `k8s-pb` (prost-generated from Kubernetes' `generated.proto` files); the JSON name of every
//! field comes from the source of `k8s-openapi` (its `Deserialize` impls, one file per
//! OpenAPI definition). Both crates are located with `cargo metadata` and read, never compiled.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// The crate whose source gives field numbers and wire types.
const PB_CRATE: &str = "k8s-pb";

/// The crate whose source gives JSON field names.
const OPENAPI_CRATE: &str = "k8s-openapi";

/// The `k8s-openapi` module read: the Kubernetes version devcluster emulates.
const OPENAPI_MODULE: &str = "v1_36";

/// Where the table is written, relative to the workspace root.
const OUTPUT: &str = "devcluster/src/protobuf/messages.rs";

/// `k8s-pb` modules left out: not served by kube-apiserver (metrics.k8s.io is an aggregated
/// API of metrics-server; testapigroup is apimachinery's test fixture; apidiscovery and
/// meta/v1beta1 have no OpenAPI definitions to take JSON names from).
const SKIPPED_MODULES: [&str; 4] = [
    "metrics/",
    "apimachinery/pkg/apis/testapigroup/",
    "api/apidiscovery/",
    "apimachinery/pkg/apis/meta/v1beta1/",
];

/// Messages whose JSON form is not an object of their fields, by definition name.
const SHAPES: [(&str, &str); 11] = [
    ("io.k8s.apimachinery.pkg.apis.meta.v1.Time", "Time"),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime",
        "MicroTime",
    ),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1", "RawJson"),
    ("io.k8s.apimachinery.pkg.runtime.RawExtension", "RawJson"),
    (
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
        "IntOrString",
    ),
    ("io.k8s.apimachinery.pkg.api.resource.Quantity", "Quantity"),
    (
        "io.k8s.apimachinery.pkg.api.resource.QuantityValue",
        "Quantity",
    ),
    (
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSON",
        "RawJson",
    ),
    (
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrArray",
        "SchemaOrArray",
    ),
    (
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrBool",
        "SchemaOrBool",
    ),
    (
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrStringArray",
        "SchemaOrStringArray",
    ),
];

/// Kinds of `meta.k8s.io/v1` every group version also registers and that travel as bodies
/// (watch events, errors, delete options, metadata-only answers).
const META_KINDS: [&str; 5] = [
    "Status",
    "WatchEvent",
    "DeleteOptions",
    "PartialObjectMetadata",
    "PartialObjectMetadataList",
];

/// Messages with no OpenAPI definition whose proto field names are their JSON names.
const SELF_NAMED: [&str; 1] = ["io.k8s.apimachinery.pkg.apis.meta.v1.PartialObjectMetadata"];

/// One field of a prost message.
#[derive(Debug, Clone)]
struct PbField {
    number: u32,
    rust_name: String,
    label: &'static str,
    /// `String`, `Bytes`, `Bool`, `Int32`, `Int64`, `Double`, or a message's definition name.
    ty: PbType,
}

#[derive(Debug, Clone)]
enum PbType {
    Scalar(&'static str),
    Message(String),
}

/// One prost message, named by its OpenAPI definition name (`io.k8s.api.apps.v1.Deployment`).
#[derive(Debug, Clone)]
struct PbMessage {
    /// The module holding it, such as `api/apps/v1`.
    module: String,
    rust_name: String,
    fields: Vec<PbField>,
}

/// What the source of `k8s-openapi` says about one definition.
#[derive(Debug, Default)]
struct OpenApiDef {
    /// JSON names by normalised name (lower case, letters and digits only).
    json: BTreeMap<String, String>,
}

/// The crate versions read, for the table's header.
struct Sources {
    pb_dir: PathBuf,
    pb_version: String,
    openapi_dir: PathBuf,
    openapi_version: String,
}

/// Writes the table, or with `check` fails when the committed one differs.
pub(crate) fn run(root: &Path, check: bool) -> anyhow::Result<()> {
    let sources = locate(root)?;
    let text = rustfmt(&generate(&sources)?)?;
    let path = root.join(OUTPUT);
    if check {
        let committed = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if committed != text {
            bail!(
                "{OUTPUT} is not what `cargo xtask gen-protobuf` writes from {PB_CRATE} {} and {OPENAPI_CRATE} {}; run it and commit the result",
                sources.pb_version,
                sources.openapi_version
            );
        }
        println!("{OUTPUT} is up to date");
        return Ok(());
    }
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    println!("wrote {OUTPUT}");
    Ok(())
}

/// Finds both crates' sources through `cargo metadata`.
fn locate(root: &Path) -> anyhow::Result<Sources> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(root.join("Cargo.toml"))
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed");
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("cargo metadata printed no JSON")?;
    let find = |name: &str| -> anyhow::Result<(PathBuf, String)> {
        let packages = meta["packages"].as_array().context("no packages")?;
        let mut found = packages.iter().filter(|p| p["name"] == name);
        let Some(p) = found.next() else {
            bail!("{name} is not in Cargo.lock; xtask/Cargo.toml names it so cargo fetches it");
        };
        if found.next().is_some() {
            bail!("two versions of {name} in Cargo.lock; keep one");
        }
        let manifest = p["manifest_path"].as_str().context("no manifest_path")?;
        let dir = Path::new(manifest)
            .parent()
            .context("manifest has no folder")?;
        let version = p["version"].as_str().context("no version")?.to_owned();
        Ok((dir.join("src"), version))
    };
    let (pb_dir, pb_version) = find(PB_CRATE)?;
    let (openapi_dir, openapi_version) = find(OPENAPI_CRATE)?;
    Ok(Sources {
        pb_dir,
        pb_version,
        openapi_dir: openapi_dir.join(OPENAPI_MODULE),
        openapi_version,
    })
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in
            std::fs::read_dir(&d).with_context(|| format!("cannot list {}", d.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The OpenAPI definition prefix of a `k8s-pb` module: `api/apps/v1` → `io.k8s.api.apps.v1`.
fn definition_prefix(module: &str) -> String {
    let dotted = module
        .replace("apiextensions_apiserver", "apiextensions-apiserver")
        .replace("kube_aggregator", "kube-aggregator")
        .replace('/', ".");
    format!("io.k8s.{dotted}")
}

/// Reads every message of `k8s-pb`, keyed by definition name in lower case.
fn read_pb(dir: &Path) -> anyhow::Result<BTreeMap<String, PbMessage>> {
    let mut messages = BTreeMap::new();
    for file in rust_files(dir)? {
        let rel = file.strip_prefix(dir)?.to_string_lossy().replace('\\', "/");
        let Some(module) = rel.strip_suffix("/mod.rs") else {
            continue;
        };
        if SKIPPED_MODULES.iter().any(|s| rel.starts_with(s)) {
            continue;
        }
        let text = std::fs::read_to_string(&file)?;
        if !text.starts_with("// This file is @generated by prost-build.") {
            continue;
        }
        for message in
            parse_pb_module(module, &text).with_context(|| format!("reading {}", file.display()))?
        {
            let key = format!("{}.{}", definition_prefix(module), message.rust_name).to_lowercase();
            messages.insert(key, message);
        }
    }
    Ok(messages)
}

/// Parses the top-level `pub struct`s of one prost-generated module.
fn parse_pb_module(module: &str, text: &str) -> anyhow::Result<Vec<PbMessage>> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(rest) = line.strip_prefix("pub struct ") else {
            continue;
        };
        if let Some(name) = rest.strip_suffix(" {}") {
            out.push(PbMessage {
                module: module.to_owned(),
                rust_name: name.to_owned(),
                fields: Vec::new(),
            });
            continue;
        }
        let Some(name) = rest.strip_suffix(" {") else {
            continue;
        };
        let mut message = PbMessage {
            module: module.to_owned(),
            rust_name: name.to_owned(),
            fields: Vec::new(),
        };
        let mut attr: Option<String> = None;
        let mut decl = String::new();
        for line in lines.by_ref() {
            if line == "}" {
                break;
            }
            let trimmed = line.trim();
            if trimmed.starts_with("///") {
                continue;
            }
            if let Some(a) = trimmed.strip_prefix("#[prost(") {
                attr = Some(a.trim_end_matches(")]").to_owned());
                continue;
            }
            if attr.is_some() {
                decl.push_str(trimmed);
                if decl.ends_with(',') && decl.matches('<').count() == decl.matches('>').count() {
                    let a = attr.take().unwrap_or_default();
                    message.fields.push(
                        parse_pb_field(module, &a, &decl)
                            .with_context(|| format!("field {decl} of {name}"))?,
                    );
                    decl.clear();
                }
            }
        }
        out.push(message);
    }
    Ok(out)
}

/// Parses one field from its `#[prost(..)]` attribute and its declaration.
fn parse_pb_field(module: &str, attr: &str, decl: &str) -> anyhow::Result<PbField> {
    let rust_name = decl
        .strip_prefix("pub ")
        .and_then(|d| d.split(':').next())
        .context("no field name")?
        .trim_start_matches("r#")
        .to_owned();
    let tag = attr
        .split("tag = \"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .context("no tag")?;
    let number = tag.parse().context("tag is not a number")?;
    let kind = attr.split(',').next().unwrap_or_default().trim();
    let (label, ty) = if let Some(map) = attr.strip_prefix("btree_map = \"string, ") {
        let value = map.split('"').next().unwrap_or_default();
        let ty = match value {
            "string" => PbType::Scalar("String"),
            "bytes" => PbType::Scalar("Bytes"),
            "message" => PbType::Message(message_type(module, decl)?),
            other => bail!("map value type {other} is not handled"),
        };
        ("Map", ty)
    } else {
        let label = if attr.contains("repeated") {
            "Repeated"
        } else {
            "Single"
        };
        let ty = match kind {
            "string" => PbType::Scalar("String"),
            "bytes = \"vec\"" => PbType::Scalar("Bytes"),
            "bool" => PbType::Scalar("Bool"),
            "int32" => PbType::Scalar("Int32"),
            "int64" => PbType::Scalar("Int64"),
            "double" => PbType::Scalar("Double"),
            "message" => PbType::Message(message_type(module, decl)?),
            other => bail!("field type {other} is not handled"),
        };
        (label, ty)
    };
    Ok(PbField {
        number,
        rust_name,
        label,
        ty,
    })
}

/// The definition name (lower case) of a message-typed field, resolving `super::` paths.
fn message_type(module: &str, decl: &str) -> anyhow::Result<String> {
    let ty = decl.split_once(':').context("no type")?.1;
    // The innermost type: the last path before the closing angle brackets (a map's value).
    let inner = ty
        .trim_end_matches([',', '>', ' '])
        .rsplit(['<', ',', ' '])
        .next()
        .context("no type path")?;
    let mut segments: Vec<&str> = module.split('/').collect();
    let mut path = inner;
    while let Some(rest) = path.strip_prefix("super::") {
        segments.pop().context("super:: above the crate root")?;
        path = rest;
    }
    let mut parts: Vec<&str> = path.split("::").collect();
    let name = parts.pop().context("empty type path")?;
    segments.extend(parts);
    Ok(format!("{}.{name}", definition_prefix(&segments.join("/"))).to_lowercase())
}

/// The `k8s-openapi` definitions: JSON names per definition (lower-cased key), and the
/// `(apiVersion, kind)` of every resource by definition.
type OpenApi = (
    BTreeMap<String, OpenApiDef>,
    BTreeMap<String, (String, String)>,
);

fn read_openapi(dir: &Path) -> anyhow::Result<OpenApi> {
    let mut defs = BTreeMap::new();
    let mut kinds = BTreeMap::new();
    for file in rust_files(dir)? {
        let text = std::fs::read_to_string(&file)?;
        let Some(name) = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("// Generated from definition "))
        else {
            continue;
        };
        let key = name.trim().to_lowercase();
        let mut def = OpenApiDef::default();
        let (mut api_version, mut kind) = (None, None);
        for line in text.lines() {
            let t = line.trim();
            if let Some((json, rest)) = t
                .strip_prefix('"')
                .and_then(|l| l.split_once("\" => Field::Key_"))
                && rest.ends_with(',')
            {
                def.json.insert(normalise(json), json.to_owned());
            }
            if let Some(v) = t.strip_prefix("const API_VERSION: &'static str = \"") {
                api_version = v.split('"').next().map(str::to_owned);
            }
            if let Some(v) = t.strip_prefix("const KIND: &'static str = \"") {
                kind = v.split('"').next().map(str::to_owned);
            }
        }
        if let (Some(a), Some(k)) = (api_version, kind) {
            kinds.insert(key.clone(), (a, k));
        }
        defs.insert(key, def);
    }
    Ok((defs, kinds))
}

/// The `apiVersion` and kind of the resources `k8s-pb` implements `Resource` for, by
/// definition name.
fn read_pb_kinds(dir: &Path) -> anyhow::Result<BTreeMap<String, (String, String)>> {
    let mut kinds = BTreeMap::new();
    for file in rust_files(dir)? {
        let rel = file.strip_prefix(dir)?.to_string_lossy().replace('\\', "/");
        let Some(module) = rel.strip_suffix("/mod.rs") else {
            continue;
        };
        let text = std::fs::read_to_string(&file)?;
        let mut current: Option<(String, Option<String>)> = None;
        for line in text.lines() {
            if let Some(name) = line
                .strip_prefix("impl crate::Resource for ")
                .and_then(|l| l.strip_suffix(" {"))
            {
                current = Some((name.to_owned(), None));
            } else if let Some(v) = line
                .trim()
                .strip_prefix("const API_VERSION: &'static str = \"")
                && let Some((_, api)) = current.as_mut()
            {
                *api = v.split('"').next().map(str::to_owned);
            } else if let Some(v) = line.trim().strip_prefix("const KIND: &'static str = \"")
                && let Some((name, Some(api))) = current.take()
            {
                let kind = v.split('"').next().unwrap_or_default().to_owned();
                let key = format!("{}.{name}", definition_prefix(module)).to_lowercase();
                kinds.insert(key, (api, kind));
            }
        }
    }
    Ok(kinds)
}

/// Letters and digits in lower case: how a proto field name and a JSON name are matched
/// (`pod_ip` and `podIP`, `ref` and `$ref`, `x_kubernetes_list_type` and
/// `x-kubernetes-list-type`).
fn normalise(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// UPPER_SNAKE_CASE of a module and a message name, for the table's statics.
fn static_name(module: &str, rust_name: &str) -> String {
    let mut out = module.replace('/', "_").to_uppercase();
    out.push('_');
    let mut prev_lower = false;
    for c in rust_name.chars() {
        if c.is_ascii_uppercase() && prev_lower {
            out.push('_');
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// The table module's source, before rustfmt.
fn generate(sources: &Sources) -> anyhow::Result<String> {
    let mut pb = read_pb(&sources.pb_dir)?;
    let (mut defs, mut kinds) = read_openapi(&sources.openapi_dir)?;
    for (key, kind) in read_pb_kinds(&sources.pb_dir)? {
        kinds.entry(key).or_insert(kind);
    }
    let graduated = add_graduated(&mut pb, &kinds)?;
    let inline_defs = add_inline_defs(&pb, &mut defs);
    let shapes: BTreeMap<String, &str> = SHAPES
        .iter()
        .map(|(name, shape)| (name.to_lowercase(), *shape))
        .collect();

    let mut problems = Vec::new();
    let mut left_out = Vec::new();
    let mut unnumbered = Vec::new();
    let mut out = String::new();
    let included = included_messages(&pb, &defs, &shapes);
    // Kinds: resources of either crate, their lists, and the meta kinds.
    let mut table: BTreeSet<(String, String, String)> = BTreeSet::new();
    for (key, (api_version, kind)) in &kinds {
        if !included.contains(key) {
            continue;
        }
        table.insert((api_version.clone(), kind.clone(), key.clone()));
        let list_key = format!("{key}list");
        if included.contains(&list_key) {
            table.insert((api_version.clone(), format!("{kind}List"), list_key));
        }
    }
    for kind in META_KINDS {
        let key = format!("io.k8s.apimachinery.pkg.apis.meta.v1.{kind}").to_lowercase();
        if !included.contains(&key) {
            problems.push(format!("meta kind {kind} has no JSON names"));
            continue;
        }
        table.insert(("meta.k8s.io/v1".to_owned(), kind.to_owned(), key));
    }
    let reachable = reachable(&pb, &included, table.iter().map(|(_, _, key)| key));
    if reachable.iter().any(|k| k.ends_with("meta.v1.duration")) {
        problems
            .push("a kind has a meta.v1.Duration field: devcluster needs a shape for it".into());
    }
    for (key, message) in &pb {
        if !reachable.contains(key) {
            continue;
        }
        let shape = shapes.get(key).copied();
        let def = defs.get(key);
        let is_list = is_list(message);
        let is_string_list = message.fields.len() == 1
            && message.fields[0].rust_name == "items"
            && message.fields[0].label == "Repeated"
            && matches!(message.fields[0].ty, PbType::Scalar("String"))
            && def.is_none_or(|d| d.json.is_empty());
        let shape = match (shape, is_string_list) {
            (Some(s), _) => s,
            (None, true) => "StringList",
            (None, false) => "Object",
        };
        let name = static_name(&message.module, &message.rust_name);
        writeln!(
            out,
            "pub(super) static {name}: Message = Message {{ name: {:?}, shape: Shape::{shape}, fields: &[",
            message.rust_name
        )?;
        if let (Some(d), "Object", false) = (def, shape, inline_defs.contains(key)) {
            for json in d.json.values() {
                if !matches!(json.as_str(), "apiVersion" | "kind")
                    && !carries(&pb, d, message, &normalise(json))
                {
                    let module = message.module.trim_start_matches("api/");
                    unnumbered.push(format!("{module} {}.{json}", message.rust_name));
                }
            }
        }
        if let (true, Some(d)) = (graduated.contains_key(key), def) {
            let proto: BTreeSet<String> = message
                .fields
                .iter()
                .map(|f| normalise(&f.rust_name))
                .collect();
            // A kind's type meta is the envelope's, not the message's.
            let type_meta = |j: &str| kinds.contains_key(key) && matches!(j, "apiVersion" | "kind");
            for json in d
                .json
                .values()
                .filter(|j| !proto.contains(&normalise(j)) && !type_meta(j))
            {
                problems.push(format!(
                    "copied message {} lacks field {json} of the {OPENAPI_MODULE} definition",
                    message.rust_name
                ));
            }
        }
        for field in &message.fields {
            let self_named = SELF_NAMED.iter().any(|n| n.to_lowercase() == *key);
            let json = if shape != "Object" || (is_list && def.is_none()) || self_named {
                Some(field.rust_name.clone())
            } else if let Some(d) = def {
                d.json
                    .get(&normalise(&field.rust_name))
                    .cloned()
                    .or_else(|| is_inline(&pb, d, field).then(String::new))
            } else {
                None
            };
            let ty = match &field.ty {
                PbType::Scalar(s) => Some(format!("Type::{s}")),
                PbType::Message(target) => pb
                    .get(target)
                    .filter(|_| included.contains(target))
                    .map(|m| format!("Type::Message(&{})", static_name(&m.module, &m.rust_name))),
            };
            let (Some(json), Some(ty)) = (json, ty) else {
                let name = format!("{}.{}", message.rust_name, field.rust_name);
                if graduated.contains_key(key) {
                    problems.push(format!("copied message {name} has no JSON name"));
                }
                left_out.push(name);
                continue;
            };
            writeln!(
                out,
                "Field {{ number: {}, json: {json:?}, label: Label::{}, ty: {ty} }},",
                field.number, field.label
            )?;
        }
        writeln!(out, "] }};")?;
    }

    writeln!(out)?;
    writeln!(
        out,
        "/// Every kind with a message, sorted by `apiVersion` then kind."
    )?;
    writeln!(out, "pub(super) static KINDS: &[Kind] = &[")?;
    for (api_version, kind, key) in &table {
        let name = static_name(&pb[key].module, &pb[key].rust_name);
        writeln!(
            out,
            "Kind {{ api_version: {api_version:?}, kind: {kind:?}, message: &{name} }},"
        )?;
    }
    writeln!(out, "];")?;

    let graduated: Vec<String> = graduated.into_values().collect();
    let out = header(sources, &left_out, &unnumbered, &graduated) + &out;
    if !problems.is_empty() {
        bail!(
            "the table cannot be generated:\n  {}",
            problems.join("\n  ")
        );
    }
    Ok(out)
}

/// Whether a message, or a struct it embeds inline (a field with no JSON name of its own in
/// the message's definition), has a field of this normalised name.
fn carries(
    pb: &BTreeMap<String, PbMessage>,
    def: &OpenApiDef,
    message: &PbMessage,
    name: &str,
) -> bool {
    message.fields.iter().any(|f| {
        let own = normalise(&f.rust_name);
        own == name
            || (!def.json.contains_key(&own)
                && f.label == "Single"
                && matches!(&f.ty, PbType::Message(t)
                    if pb.get(t).is_some_and(|inner| carries(pb, def, inner, name))))
    })
}

/// Whether a message is a list kind: list metadata and items, nothing else.
fn is_list(message: &PbMessage) -> bool {
    message.rust_name.ends_with("List")
        && message
            .fields
            .iter()
            .map(|f| f.rust_name.as_str())
            .eq(["metadata", "items"])
}

/// The table module's doc comment and imports.
fn header(
    sources: &Sources,
    left_out: &[String],
    unnumbered: &[String],
    graduated: &[String],
) -> String {
    let paragraphs = [
        "Protobuf message tables for every built-in kind: field numbers, wire types and JSON \
         names."
            .to_owned(),
        format!(
            "Generated by `cargo xtask gen-protobuf` from {PB_CRATE} {} (field numbers and types) \
             and {OPENAPI_CRATE} {} module `{OPENAPI_MODULE}` (JSON names). Do not edit by hand; \
             `cargo xtask gen-protobuf --check` fails when this file is stale.",
            sources.pb_version, sources.openapi_version
        ),
        format!(
            "Fields of {PB_CRATE} that the `{OPENAPI_MODULE}` definitions lack are left out, so \
             they are skipped like any unknown field: {}.",
            list_or_none(left_out)
        ),
        format!(
            "Fields the `{OPENAPI_MODULE}` definitions have and {PB_CRATE}'s protos do not (added \
             after them) have no field number: they are not read from or written to protobuf \
             bodies: {}.",
            list_or_none(unnumbered)
        ),
        format!(
            "Messages of GA versions newer than {PB_CRATE}'s protos, copied from the same group's \
             newest other version (a graduating type keeps its field numbers) and checked field \
             by field against the `{OPENAPI_MODULE}` definitions: {}.",
            list_or_none(graduated)
        ),
    ];
    let mut out = String::new();
    for (i, paragraph) in paragraphs.iter().enumerate() {
        if i > 0 {
            out.push_str("//!\n");
        }
        let mut line = String::from("//!");
        for word in paragraph.split(' ') {
            if line.len() + 1 + word.len() > 100 {
                out.push_str(&line);
                out.push('\n');
                line = String::from("//!");
            }
            line.push(' ');
            line.push_str(word);
        }
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str("\nuse super::table::{Field, Kind, Label, Message, Shape, Type};\n\n");
    out
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// How new a pre-release version is: `v1beta2` > `v1beta1` > `v1alpha3`.
fn version_rank(version: &str) -> (u32, u32, u32) {
    let rest = version.trim_start_matches('v');
    let major_len = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let major = rest[..major_len].parse().unwrap_or(0);
    let (stage, minor) = match &rest[major_len..] {
        "" => (3, 0),
        r if r.starts_with("beta") => (2, r[4..].parse().unwrap_or(0)),
        r if r.starts_with("alpha") => (1, r[5..].parse().unwrap_or(0)),
        _ => (0, 0),
    };
    (major, stage, minor)
}

/// Adds the messages of kinds that graduated to a GA version after the protos `k8s-pb` was
/// generated from (MutatingAdmissionPolicy in admissionregistration.k8s.io/v1 for 1.36):
/// each is the same group's newest other version of the message, moved into the GA package
/// along with the messages it reaches in that package. Their JSON names are then matched
/// against the GA definitions like any other message, so a renamed field fails the
/// generation. Returns what was copied, for the table's header.
fn add_graduated(
    pb: &mut BTreeMap<String, PbMessage>,
    kinds: &BTreeMap<String, (String, String)>,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut copied = BTreeMap::new();
    let mut wanted: Vec<String> = kinds
        .iter()
        .filter(|(key, (api_version, _))| {
            let version = api_version.rsplit('/').next().unwrap_or_default();
            !pb.contains_key(*key) && version_rank(version).1 == 3
        })
        .flat_map(|(key, _)| [key.clone(), format!("{key}list")])
        .collect();
    while let Some(key) = wanted.pop() {
        if pb.contains_key(&key) {
            continue;
        }
        let (package, name) = key
            .rsplit_once('.')
            .context("definition without a package")?;
        let (group, _) = package
            .rsplit_once('.')
            .context("package without a version")?;
        let source = pb
            .iter()
            .filter(|(k, _)| {
                k.rsplit_once('.').is_some_and(|(p, n)| {
                    n == name && p.rsplit_once('.').is_some_and(|(g, _)| g == group)
                })
            })
            .max_by_key(|(k, _)| {
                let version = k.rsplit('.').nth(1).unwrap_or_default();
                version_rank(version)
            })
            .map(|(k, m)| (k.clone(), m.clone()));
        let Some((source_key, mut message)) = source else {
            if key.ends_with("list") {
                continue;
            }
            bail!("{key} is in {OPENAPI_CRATE} but no version of it is in {PB_CRATE}");
        };
        let source_package = source_key
            .rsplit_once('.')
            .map(|(p, _)| p)
            .unwrap_or_default();
        let target_module = pb
            .values()
            .find(|m| {
                format!("{}.", definition_prefix(&m.module)).to_lowercase() == format!("{package}.")
            })
            .map(|m| m.module.clone())
            .context("the GA package has no module in k8s-pb")?;
        message.module = target_module;
        for field in &mut message.fields {
            if let PbType::Message(t) = &mut field.ty
                && let Some(type_name) = t.strip_prefix(&format!("{source_package}."))
            {
                *t = format!("{package}.{type_name}");
                wanted.push(t.clone());
            }
        }
        copied.insert(
            key.clone(),
            format!(
                "{} from {}",
                message.rust_name,
                source_package.rsplit('.').next().unwrap_or_default()
            ),
        );
        pb.insert(key, message);
    }
    Ok(copied)
}

/// Gives the Go structs embedded inline (`ProbeHandler` in `Probe`, `Rule` in
/// `RuleWithOperations`), which have no OpenAPI definition of their own, their JSON names
/// from the definition they are flattened into.
fn add_inline_defs(
    pb: &BTreeMap<String, PbMessage>,
    defs: &mut BTreeMap<String, OpenApiDef>,
) -> BTreeSet<String> {
    let mut added = BTreeSet::new();
    loop {
        let mut found = Vec::new();
        for (key, message) in pb {
            let Some(parent) = defs.get(key) else {
                continue;
            };
            for field in &message.fields {
                if let PbType::Message(target) = &field.ty
                    && !defs.contains_key(target)
                    && !parent.json.contains_key(&normalise(&field.rust_name))
                    && is_inline(pb, parent, field)
                {
                    // The parent's names serve the embedded struct and any it embeds in turn.
                    let json = parent.json.clone();
                    found.push((target.clone(), OpenApiDef { json }));
                }
            }
        }
        if found.is_empty() {
            return added;
        }
        added.extend(found.iter().map(|(key, _)| key.clone()));
        defs.extend(found);
    }
}

/// Whether a field is a Go struct embedded inline (`json:",inline"`): its own name has no
/// JSON name, and every field of its message has one in the parent.
fn is_inline(pb: &BTreeMap<String, PbMessage>, parent: &OpenApiDef, field: &PbField) -> bool {
    let PbType::Message(target) = &field.ty else {
        return false;
    };
    field.label == "Single"
        && pb.get(target).is_some_and(|m| {
            m.fields.iter().all(|f| {
                parent.json.contains_key(&normalise(&f.rust_name)) || is_inline(pb, parent, f)
            })
        })
}

/// The messages the table holds: those with JSON names (an OpenAPI definition, a special
/// shape, a list or a string-list wrapper). Messages of API versions kube-apiserver no longer
/// serves (k8s-openapi has no definition for them) and webhook-only types (admission reviews)
/// fall out here.
fn included_messages(
    pb: &BTreeMap<String, PbMessage>,
    defs: &BTreeMap<String, OpenApiDef>,
    shapes: &BTreeMap<String, &str>,
) -> BTreeSet<String> {
    let named = |key: &String, m: &PbMessage| {
        defs.contains_key(key)
            || shapes.contains_key(key)
            || SELF_NAMED.iter().any(|n| n.to_lowercase() == *key)
            || (m.fields.len() == 1 && m.fields[0].rust_name == "items")
    };
    pb.iter()
        .filter(|(key, m)| {
            named(key, m)
                || (is_list(m)
                    && matches!(&m.fields[1].ty, PbType::Message(item)
                        if pb.get(item).is_some_and(|i| named(item, i))))
        })
        .map(|(key, _)| key.clone())
        .collect()
}

/// The messages a kind's message reaches through its fields.
fn reachable<'a>(
    pb: &BTreeMap<String, PbMessage>,
    included: &BTreeSet<String>,
    roots: impl Iterator<Item = &'a String>,
) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack: Vec<String> = roots.cloned().collect();
    while let Some(key) = stack.pop() {
        if !included.contains(&key) || !seen.insert(key.clone()) {
            continue;
        }
        for field in &pb[&key].fields {
            if let PbType::Message(target) = &field.ty {
                stack.push(target.clone());
            }
        }
    }
    seen
}

/// Formats generated source as `cargo fmt` would.
fn rustfmt(source: &str) -> anyhow::Result<String> {
    use std::io::Write as _;
    let mut child = Command::new("rustfmt")
        .args(["--edition", "2024", "--emit", "stdout"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot run rustfmt")?;
    child
        .stdin
        .take()
        .context("rustfmt has no stdin")?
        .write_all(source.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("rustfmt failed on the generated table");
    }
    Ok(String::from_utf8(out.stdout)?)
}
