//! The audit log: one `audit.k8s.io/v1` Event per request, as a kube-apiserver started with
//! `--audit-log-path` and a policy of `level: Metadata` for every request writes it.
//!
//! Each line names who asked (`user`), whom it impersonated (`impersonatedUser`), what it asked
//! (`verb`, `objectRef`, `requestURI`), the authorizer's decision (the annotations
//! `authorization.k8s.io/decision` and `authorization.k8s.io/reason`) and the answer's code. A
//! request refused before it reached a handler (401, 403) carries the whole failure status, as
//! the apiserver's does; other failures carry their code. Requests are logged at stage
//! `ResponseComplete`, watches at `ResponseStarted` (their stream outlives the line).

use std::io::Write;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::auth::{Action, Attributes, UserInfo};
use crate::status::ApiError;

/// Where audit events go.
#[derive(Debug)]
pub(crate) struct AuditLog {
    path: PathBuf,
    file: Mutex<std::io::BufWriter<std::fs::File>>,
}

impl AuditLog {
    /// Appends to `path`, creating it.
    pub(crate) fn open(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Self {
            path: path.to_owned(),
            file: Mutex::new(std::io::BufWriter::new(file)),
        })
    }

    /// Writes one event, whole lines only; a failed write is logged, never fails the request.
    pub(crate) fn record(&self, event: &Value) {
        let mut line = event.to_string();
        line.push('\n');
        let mut file = self.file.lock();
        if let Err(error) = file.write_all(line.as_bytes()).and_then(|()| file.flush()) {
            tracing::warn!(path = %self.path.display(), %error, "writing the audit log");
        }
    }
}

/// What the audit event of one request needs to know about it.
#[derive(Debug)]
pub(crate) struct Audited<'a> {
    pub received: jiff::Timestamp,
    pub uri: &'a http::Uri,
    pub user_agent: Option<&'a str>,
    /// The authenticated user; `None` when authentication failed.
    pub requestor: Option<&'a UserInfo>,
    /// The user it acts as, when it impersonated one.
    pub impersonated: Option<&'a UserInfo>,
    pub attrs: &'a Attributes,
    /// The authorizer's decision and reason, once it was asked.
    pub decision: Option<(bool, &'a str)>,
    /// The error that refused the request before any handler ran.
    pub refused: Option<&'a ApiError>,
    pub code: u16,
}

impl Audited<'_> {
    /// The `audit.k8s.io/v1` Event.
    pub(crate) fn event(&self) -> Value {
        let watch = self.attrs.verb == "watch";
        let mut event = json!({
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": "Metadata",
            "auditID": uuid::Uuid::new_v4().to_string(),
            "stage": if watch { "ResponseStarted" } else { "ResponseComplete" },
            "requestURI": self.uri.path_and_query().map_or_else(|| self.uri.path().to_owned(), ToString::to_string),
            "verb": self.attrs.verb,
            "user": self.requestor.map_or_else(|| json!({}), user),
            "sourceIPs": ["127.0.0.1"],
            "requestReceivedTimestamp": micros(self.received),
            "stageTimestamp": micros(jiff::Timestamp::now()),
        });
        let map = event.as_object_mut().expect("an object");
        if let Some(impersonated) = self.impersonated {
            map.insert("impersonatedUser".into(), user(impersonated));
        }
        if let Some(agent) = self.user_agent {
            map.insert("userAgent".into(), agent.into());
        }
        if let Some(reference) = object_ref(self.attrs, self.uri.path()) {
            map.insert("objectRef".into(), reference);
        }
        map.insert(
            "responseStatus".into(),
            match self.refused {
                Some(error) => json!({
                    "metadata": {},
                    "status": "Failure",
                    "message": error.message,
                    "reason": error.reason,
                    "code": error.code,
                }),
                None => json!({"metadata": {}, "code": self.code}),
            },
        );
        if let Some((allowed, reason)) = self.decision {
            map.insert(
                "annotations".into(),
                json!({
                    "authorization.k8s.io/decision": if allowed { "allow" } else { "forbid" },
                    "authorization.k8s.io/reason": reason,
                }),
            );
        }
        event
    }
}

fn user(user: &UserInfo) -> Value {
    let mut value = json!({"username": user.name, "groups": user.groups});
    if !user.uid.is_empty() {
        value["uid"] = user.uid.clone().into();
    }
    if !user.extra.is_empty() {
        value["extra"] = json!(user.extra);
    }
    value
}

/// Timestamps with microseconds, as audit events carry them.
fn micros(at: jiff::Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// The `objectRef` of a resource request; its `apiVersion` is read off the path.
fn object_ref(attrs: &Attributes, path: &str) -> Option<Value> {
    let Action::Resource {
        group,
        resource,
        subresource,
        namespace,
        name,
    } = &attrs.kind
    else {
        return None;
    };
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let version = match segments.as_slice() {
        ["api", version, ..] => *version,
        ["apis", _, version, ..] => *version,
        _ => "",
    };
    let mut reference = json!({
        "resource": resource,
        "apiGroup": group,
        "apiVersion": version,
    });
    let map = reference.as_object_mut().expect("an object");
    for (key, value) in [
        ("namespace", namespace),
        ("name", name),
        ("subresource", subresource),
    ] {
        if !value.is_empty() {
            map.insert(key.into(), value.clone().into());
        }
    }
    Some(reference)
}
