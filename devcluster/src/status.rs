//! API errors rendered as `meta.k8s.io/v1` `Status` objects, the way kube-apiserver words them.

use bytes::Bytes;
use http::StatusCode;
use serde_json::{Map, Value, json};

use crate::json::encode_typed;

/// One cause inside `Status.details.causes`.
#[derive(Debug, Clone)]
pub(crate) struct Cause {
    pub reason: &'static str,
    pub message: String,
    pub field: String,
}

impl Cause {
    pub(crate) fn new(
        reason: &'static str,
        message: impl Into<String>,
        field: impl Into<String>,
    ) -> Self {
        Self {
            reason,
            message: message.into(),
            field: field.into(),
        }
    }
}

/// A failed API request: HTTP code, `Status.reason`, message and details.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub(crate) struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Map<String, Value>>,
    /// Extra response headers (e.g. `Retry-After`).
    pub retry_after: Option<u64>,
}

/// The name of a resource as the apiserver prints it in messages: `configmaps`, `deployments.apps`.
pub(crate) fn qualified(plural: &str, group: &str) -> String {
    if group.is_empty() {
        plural.to_owned()
    } else {
        format!("{plural}.{group}")
    }
}

fn details(name: &str, group: &str, kind: &str) -> Map<String, Value> {
    let mut d = Map::new();
    if !name.is_empty() {
        d.insert("name".into(), Value::from(name));
    }
    if !group.is_empty() {
        d.insert("group".into(), Value::from(group));
    }
    if !kind.is_empty() {
        d.insert("kind".into(), Value::from(kind));
    }
    d
}

impl ApiError {
    pub(crate) fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    pub(crate) fn with_details(mut self, details: Map<String, Value>) -> Self {
        self.details = Some(details);
        self
    }

    /// 404 `NotFound` for an object of a resource.
    pub(crate) fn not_found(plural: &str, group: &str, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", qualified(plural, group)),
        )
        .with_details(details(name, group, plural))
    }

    /// 404 for a path that names no resource, as a JSON Status.
    pub(crate) fn path_not_found() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_details(Map::new())
    }

    /// 409 `AlreadyExists`.
    pub(crate) fn already_exists(plural: &str, group: &str, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", qualified(plural, group)),
        )
        .with_details(details(name, group, plural))
    }

    /// 409 `Conflict` for a stale resourceVersion.
    pub(crate) fn stale(plural: &str, group: &str, name: &str) -> Self {
        Self::conflict(
            plural,
            group,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 409 `Conflict` with the apiserver's "Operation cannot be fulfilled" wording.
    pub(crate) fn conflict(plural: &str, group: &str, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                qualified(plural, group)
            ),
        )
        .with_details(details(name, group, plural))
    }

    /// 422 `Invalid` with causes; `kind` is the Kind, not the plural.
    pub(crate) fn invalid(kind: &str, group: &str, name: &str, causes: Vec<Cause>) -> Self {
        let summary: Vec<String> = causes
            .iter()
            .map(|c| {
                if c.field.is_empty() {
                    c.message.clone()
                } else {
                    format!("{}: {}", c.field, c.message)
                }
            })
            .collect();
        let summary = if summary.len() == 1 {
            summary.join("")
        } else {
            format!("[{}]", summary.join(", "))
        };
        let mut d = details(name, group, kind);
        d.insert("causes".into(), causes_json(&causes));
        let qualified_kind = if group.is_empty() {
            kind.to_owned()
        } else {
            format!("{kind}.{group}")
        };
        Self::new(
            422,
            "Invalid",
            format!("{qualified_kind} \"{name}\" is invalid: {summary}"),
        )
        .with_details(d)
    }

    /// 400 `BadRequest`.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 405 `MethodNotAllowed`.
    pub(crate) fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
        .with_details(Map::new())
    }

    /// 415 `UnsupportedMediaType` for a patch; custom resources take no strategic merge patches.
    pub(crate) fn unsupported_media_type(custom: bool) -> Self {
        let accepted = if custom {
            "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
        } else {
            "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml"
        };
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: {accepted}"
            ),
        )
    }

    /// 401 `Unauthorized`.
    pub(crate) fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// 410 `Expired` for a compacted resourceVersion.
    pub(crate) fn expired(rv: u64, oldest: u64) -> Self {
        Self::new(
            410,
            "Expired",
            format!("too old resource version: {rv} ({oldest})"),
        )
    }

    /// 500 `InternalError`.
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        let message = message.into();
        let mut d = Map::new();
        d.insert("causes".into(), json!([{ "message": message }]));
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {message}"),
        )
        .with_details(d)
    }

    /// The HTTP status code.
    pub(crate) fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The `Status` object as JSON.
    pub(crate) fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("kind".into(), Value::from("Status"));
        m.insert("apiVersion".into(), Value::from("v1"));
        m.insert("metadata".into(), json!({}));
        m.insert("status".into(), Value::from("Failure"));
        m.insert("message".into(), Value::from(self.message.clone()));
        if !self.reason.is_empty() {
            m.insert("reason".into(), Value::from(self.reason));
        }
        if let Some(d) = &self.details {
            m.insert("details".into(), Value::Object(d.clone()));
        }
        m.insert("code".into(), Value::from(self.code));
        Value::Object(m)
    }

    /// The `Status` object, encoded.
    pub(crate) fn to_bytes(&self) -> Bytes {
        encode_typed(&self.to_value())
    }
}

fn causes_json(causes: &[Cause]) -> Value {
    Value::Array(
        causes
            .iter()
            .map(|c| {
                let mut m = Map::new();
                m.insert("reason".into(), Value::from(c.reason));
                m.insert("message".into(), Value::from(c.message.clone()));
                m.insert("field".into(), Value::from(c.field.clone()));
                Value::Object(m)
            })
            .collect(),
    )
}

/// Builds the `Status` of a successful delete: no `code`, details with name, group, plural and uid.
pub(crate) fn delete_success(plural: &str, group: &str, name: &str, uid: &str) -> Value {
    let mut d = details(name, group, plural);
    d.insert("uid".into(), Value::from(uid));
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": Value::Object(d),
    })
}

/// Builds an apply-conflict Status error from `(manager, path)` pairs.
pub(crate) fn apply_conflict(conflicts: &[(String, String)]) -> ApiError {
    let message = if let [(manager, path)] = conflicts {
        format!("Apply failed with 1 conflict: conflict with {manager}: {path}")
    } else {
        let mut by_manager: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
        for (m, p) in conflicts {
            by_manager.entry(m).or_default().push(p);
        }
        let mut lines = Vec::new();
        for (m, paths) in by_manager {
            lines.push(format!("conflicts with {m}:"));
            lines.extend(paths.into_iter().map(|p| format!("- {p}")));
        }
        format!(
            "Apply failed with {} conflicts: {}",
            conflicts.len(),
            lines.join("\n")
        )
    };
    let causes: Vec<Cause> = conflicts
        .iter()
        .map(|(m, p)| {
            Cause::new(
                "FieldManagerConflict",
                format!("conflict with {m}"),
                p.clone(),
            )
        })
        .collect();
    let mut d = Map::new();
    d.insert("causes".into(), causes_json(&causes));
    ApiError::new(409, "Conflict", message).with_details(d)
}
