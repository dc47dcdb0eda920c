//! Create, update and patch: the write pipeline every change of an object goes through.

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::apply::{self, Writer};
use crate::core::{Core, Query, Target};
use crate::crd;
use crate::defaults;
use crate::json::{finalizers, get_in, meta, meta_mut, meta_str, now_rfc3339, set_path, with_type};
use crate::patch::{self, PatchType};
use crate::registry::Generation;
use crate::status::{ApiError, Cause};
use crate::store::Stored;

/// Who writes, and whether the write is a dry run.
#[derive(Debug, Clone)]
pub(crate) struct WriteCtx {
    /// The field manager recorded in `managedFields`.
    pub manager: String,
    /// `dryRun=All`: answer as if written, store nothing.
    pub dry_run: bool,
    /// `fieldValidation=Strict`: unknown fields fail the request instead of being dropped.
    pub strict: bool,
    /// `Warning`s for the response (unknown fields dropped).
    pub warnings: std::cell::RefCell<Vec<String>>,
    /// Who writes (for RBAC's escalation check).
    pub user: crate::auth::UserInfo,
}

impl WriteCtx {
    /// Reads `fieldManager` and `dryRun`, falling back to the User-Agent's product for the manager.
    pub(crate) fn from_request(
        q: &Query,
        user_agent: &str,
        user: &crate::auth::UserInfo,
    ) -> Result<Self, ApiError> {
        let dry_run = match q.get("dryRun") {
            None | Some("") => false,
            Some("All") => true,
            Some(other) => {
                return Err(ApiError::invalid(
                    "CreateOptions",
                    "meta.k8s.io",
                    "",
                    vec![Cause::new(
                        "FieldValueNotSupported",
                        format!("Unsupported value: \"{other}\": supported values: \"All\""),
                        "dryRun",
                    )],
                ));
            }
        };
        if let Some(fv) = q.non_empty("fieldValidation")
            && !matches!(fv, "Ignore" | "Warn" | "Strict")
        {
            return Err(ApiError::invalid(
                "CreateOptions",
                "meta.k8s.io",
                "",
                vec![Cause::new(
                    "FieldValueNotSupported",
                    format!(
                        "Unsupported value: \"{fv}\": supported values: \"Ignore\", \"Warn\", \"Strict\""
                    ),
                    "fieldValidation",
                )],
            ));
        }
        let manager = match q.non_empty("fieldManager") {
            Some(m) => m.to_owned(),
            None => {
                let product = user_agent.split('/').next().unwrap_or_default();
                let product: String = product.chars().take(128).collect();
                if product.is_empty() {
                    "unknown".to_owned()
                } else {
                    product
                }
            }
        };
        Ok(Self {
            manager,
            dry_run,
            strict: q.get("fieldValidation") == Some("Strict"),
            warnings: std::cell::RefCell::new(Vec::new()),
            user: user.clone(),
        })
    }
}

/// Reads a request body by its `Content-Type`; `into` is the kind the endpoint takes, `custom`
/// whether it is a custom resource (which cannot be read from protobuf).
pub(crate) fn parse_object(
    body: &[u8],
    content_type: &str,
    into: &str,
    custom: bool,
) -> Result<Map<String, Value>, ApiError> {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    let parsed = match essence {
        "" | "application/json" | "*/*" => {
            serde_json::from_slice::<Value>(body).map_err(|e| e.to_string())
        }
        "application/yaml" | "application/x-yaml" | "text/yaml" => std::str::from_utf8(body)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_saphyr::from_str::<Value>(t).map_err(|e| e.to_string())),
        crate::protobuf::MEDIA_TYPE if custom => {
            return Err(crate::protobuf::refuse_for_custom_resource(body, into));
        }
        crate::protobuf::MEDIA_TYPE => return crate::protobuf::decode_request(body, into),
        _ => {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf",
            ));
        }
    };
    match parsed {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_request(
            "the body of the request must be a JSON object",
        )),
        Err(e) => Err(ApiError::bad_request(format!(
            "error decoding request body: {e}"
        ))),
    }
}

fn check_type(t: &Target, obj: &Map<String, Value>) -> Result<(), ApiError> {
    if let Some(kind) = obj.get("kind").and_then(Value::as_str)
        && !kind.is_empty()
        && kind != t.res.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            t.res.kind
        )));
    }
    if let Some(av) = obj.get("apiVersion").and_then(Value::as_str)
        && !av.is_empty()
        && av != t.api_version()
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({})",
            t.api_version()
        )));
    }
    Ok(())
}

/// An apply configuration names its type: the field manager has no schema
/// for a body without `apiVersion` and `kind` (400, worded as the apiserver's).
fn check_applied_type(applied: &Map<String, Value>) -> Result<(), ApiError> {
    let text = |field: &str| {
        applied
            .get(field)
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let (api_version, kind) = (text("apiVersion"), text("kind"));
    if !api_version.is_empty() && !kind.is_empty() {
        return Ok(());
    }
    let (group, version) = match api_version.split_once('/') {
        Some((group, version)) => (group, version),
        None => ("", api_version),
    };
    let gvk = format!("{group}/{version}, Kind={kind}");
    Err(ApiError::bad_request(format!(
        "failed to create typed patch object ({}/{}; {gvk}): no corresponding type for {gvk}",
        meta_str(applied, "namespace").unwrap_or_default(),
        meta_str(applied, "name").unwrap_or_default(),
    )))
}

fn check_namespace(core: &Core, t: &Target, name: &str, creating: bool) -> Result<(), ApiError> {
    if !t.res.namespaced {
        return Ok(());
    }
    let ns = t.ns();
    match core.namespace(ns) {
        None => Err(ApiError::not_found("namespaces", "", ns)),
        Some(n) if creating && meta(&n).is_some_and(|m| m.contains_key("deletionTimestamp")) => {
            let mut err = ApiError::new(
                403,
                "Forbidden",
                format!(
                    "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                    crate::status::qualified(&t.res.plural, &t.res.group)
                ),
            );
            let mut d = Map::new();
            d.insert("name".into(), Value::from(name));
            if !t.res.group.is_empty() {
                d.insert("group".into(), Value::from(t.res.group.clone()));
            }
            d.insert("kind".into(), Value::from(t.res.plural.clone()));
            d.insert(
                "causes".into(),
                serde_json::json!([{"reason": "NamespaceTerminating", "message": format!("namespace {ns} is being terminated"), "field": "metadata.namespace"}]),
            );
            err.details = Some(d);
            Err(err)
        }
        Some(_) => Ok(()),
    }
}

/// The name on the URL: a body naming another object is a 400; a body
/// naming none gets the URL's name.
fn check_body_name(t: &Target, obj: &mut Map<String, Value>) -> Result<String, ApiError> {
    let name = t.name().to_owned();
    match meta_str(obj, "name") {
        Some(n) if !n.is_empty() && n != name => Err(ApiError::bad_request(format!(
            "the name of the object ({n}) does not match the name on the URL ({name})"
        ))),
        _ => {
            meta_mut(obj).insert("name".into(), Value::from(name.clone()));
            Ok(name)
        }
    }
}

fn check_body_namespace(t: &Target, obj: &mut Map<String, Value>) -> Result<(), ApiError> {
    let url_ns = t.ns().to_owned();
    let m = meta_mut(obj);
    match m.get("namespace").and_then(Value::as_str) {
        Some(ns) if !ns.is_empty() && t.res.namespaced && ns != url_ns => {
            Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ))
        }
        _ => {
            if t.res.namespaced {
                m.insert("namespace".into(), Value::from(url_ns));
            } else {
                m.remove("namespace");
            }
            Ok(())
        }
    }
}

/// Prunes an object to what its type declares: a custom resource to its schema (422 on type
/// errors), a built-in type to its top-level and `metadata` fields. Unknown fields are dropped
/// with a warning, or fail with 400 under `fieldValidation=Strict`.
/// `old` is the object an update replaces: its custom resource's transition rules (CEL rules
/// reading `oldSelf`) run against it.
fn check_schema(
    t: &Target,
    obj: &mut Map<String, Value>,
    old: Option<&Map<String, Value>>,
    ctx: &WriteCtx,
) -> Result<(), ApiError> {
    let mut findings = if t.res.custom {
        match t.res.schemas.iter().find(|(v, _)| *v == t.version) {
            Some((_, schema)) => crate::schema::check(obj, old, schema),
            None => crate::schema::Findings::default(),
        }
    } else {
        crate::schema::check_builtin(&t.res.storage, obj)
    };
    if let Some(scale) = &t.res.scale {
        let value = Value::Object(obj.clone());
        for path in [&scale.spec_replicas, &scale.status_replicas] {
            findings
                .causes
                .extend(crate::schema::check_replicas(&value, path));
        }
    }
    if !findings.causes.is_empty() {
        let name = meta_str(obj, "name").unwrap_or_default().to_owned();
        return Err(ApiError::invalid(
            &t.res.kind,
            &t.res.group,
            &name,
            findings.causes,
        ));
    }
    if findings.unknown.is_empty() {
        return Ok(());
    }
    let unknown: Vec<String> = findings
        .unknown
        .iter()
        .map(|p| format!("unknown field \"{p}\""))
        .collect();
    if ctx.strict {
        return Err(ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
            unknown.join(", "),
            kind = t.res.kind,
            version = t.version,
        )));
    }
    ctx.warnings.borrow_mut().extend(unknown);
    Ok(())
}

/// POST to a collection.
pub(crate) fn create(
    core: &mut Core,
    t: &Target,
    body: &[u8],
    content_type: &str,
    ctx: &WriteCtx,
) -> Result<(u16, Bytes), ApiError> {
    let mut obj = parse_object(body, content_type, &t.res.kind, t.res.custom)?;
    t.to_stored_shape(&mut obj);
    check_type(t, &obj)?;
    create_object(core, t, obj, ctx, None)
}

/// Creates an object; `managed_fields` are used as given when the create is an apply.
fn create_object(
    core: &mut Core,
    t: &Target,
    mut obj: Map<String, Value>,
    ctx: &WriteCtx,
    managed_fields: Option<Value>,
) -> Result<(u16, Bytes), ApiError> {
    if meta_str(&obj, "resourceVersion").is_some_and(|rv| !rv.is_empty()) {
        return Err(ApiError {
            code: 500,
            reason: "",
            message: "resourceVersion should not be set on objects to be created".into(),
            details: None,
            retry_after: None,
        });
    }
    check_body_namespace(t, &mut obj)?;
    let mut name = meta_str(&obj, "name").unwrap_or_default().to_owned();
    if name.is_empty() {
        match meta_str(&obj, "generateName").filter(|g| !g.is_empty()) {
            Some(prefix) => {
                name = format!("{prefix}{}", defaults::random_suffix());
                meta_mut(&mut obj).insert("name".into(), Value::from(name.clone()));
            }
            None => {
                return Err(ApiError::invalid(
                    &t.res.kind,
                    &t.res.group,
                    "",
                    vec![Cause::new(
                        "FieldValueRequired",
                        "Required value: name or generateName is required",
                        "metadata.name",
                    )],
                ));
            }
        }
    }
    let mut causes = defaults::validate_name(&t.res, &name);
    causes.extend(defaults::validate_labels(&obj));
    if !causes.is_empty() {
        return Err(ApiError::invalid(&t.res.kind, &t.res.group, &name, causes));
    }
    check_namespace(core, t, &name, true)?;
    if t.res.custom && !crd::serving(core, &t.res) {
        return Err(ApiError::new(
            405,
            "MethodNotAllowed",
            "the CustomResourceDefinition is being deleted",
        ));
    }
    if core.store.get(&t.res.storage, t.ns(), &name).is_some() {
        return Err(ApiError::already_exists(&t.res.plural, &t.res.group, &name));
    }
    if &*t.res.storage == "apiextensions.k8s.io/customresourcedefinitions" {
        crd::validate(&obj)?;
    }
    let m = meta_mut(&mut obj);
    for k in [
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "managedFields",
        "selfLink",
    ] {
        m.remove(k);
    }
    m.insert("uid".into(), Value::from(uuid::Uuid::new_v4().to_string()));
    m.insert("creationTimestamp".into(), Value::from(now_rfc3339()));
    if t.res.generation == Generation::None {
        m.remove("generation");
    } else {
        m.insert("generation".into(), Value::from(1));
    }
    obj.remove("kind");
    obj.remove("apiVersion");
    defaults::on_create(core, &t.res, &mut obj);
    t.lists().drop_go_omitted(&mut obj);
    let causes = crate::validation::validate(&t.res, &obj);
    if !causes.is_empty() {
        return Err(ApiError::invalid(&t.res.kind, &t.res.group, &name, causes));
    }
    check_schema(t, &mut obj, None, ctx)?;
    crd::on_write(&t.res, &mut obj);
    crate::auth::rbac::admit(core, t, &obj, &ctx.user)?;
    let now = now_rfc3339();
    let api_version = t.api_version();
    let writer = Writer {
        manager: &ctx.manager,
        api_version: &api_version,
        subresource: "",
        time: &now,
    };
    match managed_fields {
        Some(mf) => {
            meta_mut(&mut obj).insert("managedFields".into(), mf);
        }
        None => apply::record_update(None, &mut obj, &writer, t.lists(), t.res.status_subresource),
    }
    if ctx.dry_run {
        return Ok((
            201,
            with_type(&t.res.kind, &api_version, &crate::json::encode_body(&obj)),
        ));
    }
    core.written(&t.res.storage, &obj);
    let stored = core.store.put(&t.res.storage, obj);
    crd::after_write(core, &t.res, &stored);
    Ok((201, t.render(&stored)))
}

fn resource_version_of(obj: &Map<String, Value>) -> Option<&str> {
    meta_str(obj, "resourceVersion").filter(|rv| !rv.is_empty())
}

/// PUT to an object or its `status` subresource.
pub(crate) fn update(
    core: &mut Core,
    t: &Target,
    body: &[u8],
    content_type: &str,
    ctx: &WriteCtx,
) -> Result<(u16, Bytes), ApiError> {
    let mut obj = parse_object(body, content_type, &t.res.kind, t.res.custom)?;
    t.to_stored_shape(&mut obj);
    check_type(t, &obj)?;
    let name = check_body_name(t, &mut obj)?;
    check_body_namespace(t, &mut obj)?;
    let Some(old) = core.store.get(&t.res.storage, t.ns(), &name).cloned() else {
        check_namespace(core, t, &name, false)?;
        return Err(t.not_found());
    };
    match resource_version_of(&obj) {
        Some(rv) if rv != old.rv.to_string() => {
            return Err(ApiError::stale(&t.res.plural, &t.res.group, &name));
        }
        None if t.res.custom => {
            return Err(ApiError::invalid(
                &t.res.kind,
                &t.res.group,
                &name,
                vec![Cause::new(
                    "FieldValueInvalid",
                    "Invalid value: 0: must be specified for an update",
                    "metadata.resourceVersion",
                )],
            ));
        }
        _ => {}
    }
    finish_update(core, t, &old, obj, ctx, Ownership::Record)
}

/// PATCH of an object or its `status` subresource.
pub(crate) fn patch(
    core: &mut Core,
    t: &Target,
    content_type: &str,
    body: &[u8],
    q: &Query,
    ctx: &WriteCtx,
) -> Result<(u16, Bytes), ApiError> {
    let Some(kind) = PatchType::from_content_type(content_type) else {
        return Err(ApiError::unsupported_media_type(t.res.custom));
    };
    if kind == PatchType::Strategic && t.res.custom {
        return Err(ApiError::unsupported_media_type(t.res.custom));
    }
    let name = t.name().to_owned();
    let old = core.store.get(&t.res.storage, t.ns(), &name).cloned();
    if kind == PatchType::Apply {
        return server_side_apply(core, t, old.as_ref(), body, q, ctx);
    }
    let Some(old) = old else {
        check_namespace(core, t, &name, false)?;
        return Err(t.not_found());
    };
    let mut current = old.decode();
    crate::convert::to_served(&t.res, &t.version, &mut current);
    let mut doc = Value::Object(current);
    if let Some(m) = doc.as_object_mut() {
        m.insert("kind".into(), Value::from(t.res.kind.clone()));
        m.insert("apiVersion".into(), Value::from(t.api_version()));
    }
    match kind {
        PatchType::Json => patch::apply_json_patch(&mut doc, body)?,
        PatchType::Merge => patch::apply_merge_patch(&mut doc, &patch::parse_patch_object(body)?),
        PatchType::Strategic => {
            patch::apply_strategic(&mut doc, &patch::parse_patch_object(body)?, t.lists())?
        }
        PatchType::Apply => {}
    }
    let Value::Object(mut patched) = doc else {
        return Err(ApiError::bad_request(
            "the patched object is not a JSON object",
        ));
    };
    t.to_stored_shape(&mut patched);
    if let Some(rv) = resource_version_of(&patched)
        && rv != old.rv.to_string()
    {
        return Err(ApiError::stale(&t.res.plural, &t.res.group, &name));
    }
    if meta_str(&patched, "name").is_some_and(|n| n != name) {
        return Err(ApiError::bad_request(
            "metadata.name: the name of the object may not be changed by a patch",
        ));
    }
    finish_update(core, t, &old, patched, ctx, Ownership::Record)
}

fn server_side_apply(
    core: &mut Core,
    t: &Target,
    old: Option<&Stored>,
    body: &[u8],
    q: &Query,
    ctx: &WriteCtx,
) -> Result<(u16, Bytes), ApiError> {
    if q.non_empty("fieldManager").is_none() {
        return Err(ApiError::invalid(
            "PatchOptions",
            "meta.k8s.io",
            "",
            vec![Cause::new(
                "FieldValueRequired",
                "Required value: is required for apply patch",
                "fieldManager",
            )],
        ));
    }
    let text =
        std::str::from_utf8(body).map_err(|_| ApiError::bad_request("apply body is not UTF-8"))?;
    let applied: Value = serde_saphyr::from_str(text)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    let Value::Object(mut applied) = applied else {
        return Err(ApiError::bad_request("apply body must be an object"));
    };
    check_applied_type(&applied)?;
    check_type(t, &applied)?;
    check_body_name(t, &mut applied)?;
    check_body_namespace(t, &mut applied)?;
    t.to_stored_shape(&mut applied);
    applied.remove("kind");
    applied.remove("apiVersion");
    let sub = t.subresource.clone().unwrap_or_default();
    if sub.is_empty() && t.res.status_subresource {
        // The main resource of a kind with a status subresource cannot set `status`: the
        // server resets it, and no applier owns it or conflicts on it.
        applied.remove("status");
    }
    let force = q.flag("force");
    let now = now_rfc3339();
    let api_version = t.api_version();
    let writer = Writer {
        manager: &ctx.manager,
        api_version: &api_version,
        subresource: &sub,
        time: &now,
    };
    let lists = t.lists();
    match old {
        None => {
            if t.subresource.is_some() {
                return Err(t.not_found());
            }
            let mut merged = apply::apply(None, &applied, &writer, force, lists)?;
            let managed_fields = meta_mut(&mut merged).remove("managedFields");
            create_object(core, t, merged, ctx, managed_fields)
        }
        Some(old) => {
            let current = old.decode();
            let merged = apply::apply(Some(&current), &applied, &writer, force, lists)?;
            finish_update(core, t, old, merged, ctx, Ownership::Applied)
        }
    }
}

fn without(obj: &Map<String, Value>, keys: &[&str]) -> Map<String, Value> {
    obj.iter()
        .filter(|(k, _)| !keys.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The one field a subresource writes; the rest of the body is ignored.
fn writable_through(subresource: &str) -> Option<&'static [&'static str]> {
    Some(match subresource {
        "status" => &["status"],
        "ephemeralcontainers" => &["spec", "ephemeralContainers"],
        "finalize" => &["spec", "finalizers"],
        "approval" => &["status", "conditions"],
        _ => return None,
    })
}

/// A pod's `resize` subresource writes its containers' `resources` and
/// `resizePolicy`, matched by name, and nothing else.
fn resized(old: &Map<String, Value>, new: &Map<String, Value>) -> Map<String, Value> {
    let mut merged = old.clone();
    let wanted = new
        .get("spec")
        .and_then(|spec| spec.get("containers"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let Some(containers) = merged
        .get_mut("spec")
        .and_then(|spec| spec.get_mut("containers"))
        .and_then(Value::as_array_mut)
    else {
        return merged;
    };
    for container in containers.iter_mut().filter_map(Value::as_object_mut) {
        let name = container.get("name").cloned();
        let Some(asked) = wanted.iter().find(|c| c.get("name") == name.as_ref()) else {
            continue;
        };
        for field in ["resources", "resizePolicy"] {
            match asked.get(field) {
                Some(value) => container.insert(field.to_owned(), value.clone()),
                None => container.remove(field),
            };
        }
    }
    merged
}

fn remove_path(obj: &mut Map<String, Value>, path: &[&str]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut current = obj;
    for parent in parents {
        match current.get_mut(*parent).and_then(Value::as_object_mut) {
            Some(next) => current = next,
            None => return,
        }
    }
    current.remove(*last);
}

/// How `managedFields` are settled by a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ownership {
    /// Record the writer as the manager of the fields it changed (create, update, patch).
    Record,
    /// Server-side apply already computed `managedFields`.
    Applied,
}

/// Turns a requested new state into the stored one and writes it (or not, for a no-op).
pub(crate) fn finish_update(
    core: &mut Core,
    t: &Target,
    old: &Stored,
    mut new: Map<String, Value>,
    ctx: &WriteCtx,
    ownership: Ownership,
) -> Result<(u16, Bytes), ApiError> {
    let old_obj = old.decode();
    new.remove("kind");
    new.remove("apiVersion");
    t.lists().drop_go_omitted(&mut new);
    let sub = t.subresource.as_deref().unwrap_or_default();
    if let Some(path) = writable_through(sub) {
        let mut merged = old_obj.clone();
        let written = get_in(&new, path).cloned();
        match written {
            Some(value) => set_path(&mut merged, path, value),
            None => remove_path(&mut merged, path),
        }
        if ownership == Ownership::Applied
            && let Some(mf) = meta(&new).and_then(|m| m.get("managedFields")).cloned()
        {
            meta_mut(&mut merged).insert("managedFields".into(), mf);
        }
        new = merged;
    } else if sub == "resize" {
        new = resized(&old_obj, &new);
    } else if t.res.status_subresource {
        match old_obj.get("status") {
            Some(s) => new.insert("status".into(), s.clone()),
            None => new.remove("status"),
        };
    }
    {
        let old_meta = meta(&old_obj).cloned().unwrap_or_default();
        let m = meta_mut(&mut new);
        for k in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ] {
            match old_meta.get(k) {
                Some(v) => m.insert(k.to_owned(), v.clone()),
                None => m.remove(k),
            };
        }
        if ownership == Ownership::Record {
            match old_meta.get("managedFields") {
                Some(v) => m.insert("managedFields".into(), v.clone()),
                None => m.remove("managedFields"),
            };
        }
        m.insert("resourceVersion".into(), Value::from(old.rv.to_string()));
        m.remove("selfLink");
    }
    if meta(&old_obj).is_some_and(|m| m.contains_key("deletionTimestamp")) {
        let before = finalizers(&old_obj);
        let added: Vec<String> = finalizers(&new)
            .into_iter()
            .filter(|f| !before.contains(f))
            .collect();
        if !added.is_empty() {
            let list = added
                .iter()
                .map(|f| format!("{f:?}"))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(ApiError::invalid(
                &t.res.kind,
                &t.res.group,
                t.name(),
                vec![Cause::new(
                    "FieldValueForbidden",
                    format!(
                        "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{{{list}}}"
                    ),
                    "metadata.finalizers",
                )],
            ));
        }
    }
    defaults::mutate_secret(&t.res, &mut new);
    let mut causes = defaults::validate_labels(&new);
    causes.extend(crate::validation::validate(&t.res, &new));
    if !causes.is_empty() {
        return Err(ApiError::invalid(
            &t.res.kind,
            &t.res.group,
            t.name(),
            causes,
        ));
    }
    check_schema(t, &mut new, Some(&old_obj), ctx)?;
    let spec_changed = match t.res.generation {
        Generation::None => false,
        Generation::On(fields) => fields.iter().any(|field| {
            let path: Vec<&str> = field.split('.').collect();
            get_in(&old_obj, &path) != get_in(&new, &path)
        }),
        Generation::AllButMetadata => {
            let skip: &[&str] = if t.res.status_subresource {
                &["metadata", "status"]
            } else {
                &["metadata"]
            };
            without(&old_obj, skip) != without(&new, skip)
        }
    };
    if spec_changed {
        let g = meta(&old_obj)
            .and_then(|m| m.get("generation"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        meta_mut(&mut new).insert("generation".into(), Value::from(g + 1));
    }
    if ownership == Ownership::Record {
        let now = now_rfc3339();
        let api_version = t.api_version();
        let writer = Writer {
            manager: &ctx.manager,
            api_version: &api_version,
            subresource: sub,
            time: &now,
        };
        apply::record_update(
            Some(&old_obj),
            &mut new,
            &writer,
            t.lists(),
            sub.is_empty() && t.res.status_subresource,
        );
    }
    crd::on_write(&t.res, &mut new);
    crate::auth::rbac::admit(core, t, &new, &ctx.user)?;
    if new == old_obj {
        return Ok((200, t.render(old)));
    }
    if ctx.dry_run {
        return Ok((
            200,
            with_type(
                &t.res.kind,
                &t.api_version(),
                &crate::json::encode_body(&new),
            ),
        ));
    }
    let deleting = meta(&new).is_some_and(|m| m.contains_key("deletionTimestamp"));
    if deleting && finalizers(&new).is_empty() {
        let name = t.name().to_owned();
        core.store.put(&t.res.storage, new);
        if let Some(gone) = core.store.remove(&t.res.storage, t.ns(), &name) {
            core.removed(&gone);
            crd::after_remove(core, &t.res, &gone);
            return Ok((
                200,
                with_type(
                    &t.res.kind,
                    &t.api_version(),
                    &crate::json::encode_body(&gone),
                ),
            ));
        }
        return Err(t.not_found());
    }
    core.written(&t.res.storage, &new);
    let stored = core.store.put(&t.res.storage, new);
    crd::after_write(core, &t.res, &stored);
    Ok((200, t.render(&stored)))
}
