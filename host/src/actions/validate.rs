//! Checks a guest's raw output and turns it into [`Outcome`]s.

use std::time::Duration;

use serde_json::Value;

use super::{Action, EventType, ObjectRef, Outcome, PatchKind};
use crate::wasm::bindings as wit;

/// Output of a guest that breaks the contract: which action, and what is
/// wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("action #{index} ({verb}): {problem}")]
pub struct MalformedOutput {
    /// The position of the offending action in the outcome, from 0.
    pub index: usize,
    /// The action's name (`create`, `patch`, ...).
    pub verb: &'static str,
    /// What is wrong, naming the field.
    pub problem: String,
}

/// Validates a guest's outcome.
pub fn outcome_from_guest(outcome: wit::Outcome) -> Result<Outcome, MalformedOutput> {
    let actions = outcome
        .actions
        .into_iter()
        .enumerate()
        .map(|(index, action)| action_from_guest(index, action))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Outcome {
        actions,
        requeue_after: outcome.requeue_after_ms.map(Duration::from_millis),
    })
}

/// Validates the object references `map` answered with.
pub fn refs_from_guest(refs: Vec<wit::ObjectRef>) -> Result<Vec<ObjectRef>, MalformedOutput> {
    refs.into_iter()
        .enumerate()
        .map(|(index, reference)| {
            object_ref(reference).map_err(|problem| MalformedOutput {
                index,
                verb: "map",
                problem,
            })
        })
        .collect()
}

fn action_from_guest(index: usize, action: wit::Action) -> Result<Action, MalformedOutput> {
    let verb = verb_of(&action);
    let problem = |problem: String| MalformedOutput {
        index,
        verb,
        problem,
    };
    match action {
        wit::Action::Create(json) => {
            let object = object(&json, NameRule::NameOrGenerateName).map_err(problem)?;
            Ok(Action::Create { object })
        }
        wit::Action::Update(json) => {
            let object = object(&json, NameRule::Name).map_err(problem)?;
            Ok(Action::Update { object })
        }
        wit::Action::UpdateStatus(json) => {
            let object = object(&json, NameRule::Name).map_err(problem)?;
            Ok(Action::UpdateStatus { object })
        }
        wit::Action::Patch(patch) => {
            let target = object_ref(patch.target).map_err(|p| problem(format!("target: {p}")))?;
            let kind = match patch.kind {
                wit::PatchKind::Merge => PatchKind::Merge,
                wit::PatchKind::Json => PatchKind::Json,
                wit::PatchKind::Strategic => PatchKind::Strategic,
                wit::PatchKind::Apply => PatchKind::Apply,
            };
            let body = patch_body(&patch.body, kind, &target).map_err(problem)?;
            Ok(Action::Patch {
                target,
                kind,
                body,
                force: patch.force,
            })
        }
        wit::Action::Delete(target) => {
            let target = object_ref(target).map_err(|p| problem(format!("target: {p}")))?;
            Ok(Action::Delete { target })
        }
        wit::Action::Scale(scale) => {
            let target = object_ref(scale.target).map_err(|p| problem(format!("target: {p}")))?;
            Ok(Action::Scale {
                target,
                replicas: scale.replicas,
            })
        }
        wit::Action::RecordEvent(event) => {
            let regarding =
                object_ref(event.regarding).map_err(|p| problem(format!("regarding: {p}")))?;
            if event.reason.is_empty() {
                return Err(problem(
                    "`reason` is empty; give a short UpperCamelCase reason".into(),
                ));
            }
            Ok(Action::Event {
                regarding,
                event_type: if event.warning {
                    EventType::Warning
                } else {
                    EventType::Normal
                },
                reason: event.reason,
                message: event.message,
            })
        }
    }
}

fn verb_of(action: &wit::Action) -> &'static str {
    match action {
        wit::Action::Create(_) => "create",
        wit::Action::Update(_) => "update",
        wit::Action::UpdateStatus(_) => "update-status",
        wit::Action::Patch(_) => "patch",
        wit::Action::Delete(_) => "delete",
        wit::Action::Scale(_) => "scale",
        wit::Action::RecordEvent(_) => "record-event",
    }
}

#[derive(Clone, Copy)]
enum NameRule {
    Name,
    NameOrGenerateName,
}

fn parse(json: &str) -> Result<Value, String> {
    serde_json::from_str(json).map_err(|error| format!("the JSON does not parse: {error}"))
}

fn object(json: &str, rule: NameRule) -> Result<Value, String> {
    let value = parse(json)?;
    let Some(map) = value.as_object() else {
        return Err(format!("expected a JSON object, got {}", type_name(&value)));
    };
    non_empty_string(map.get("apiVersion"), "apiVersion")?;
    non_empty_string(map.get("kind"), "kind")?;
    let metadata = map.get("metadata").and_then(Value::as_object);
    let Some(metadata) = metadata else {
        return Err("`metadata` is missing or not an object".into());
    };
    let name = non_empty_string(metadata.get("name"), "metadata.name");
    if name.is_ok()
        && let Some(name) = metadata.get("name").and_then(Value::as_str)
    {
        check_name("metadata.name", name, MAX_NAME_BYTES)?;
    }
    if let Some(prefix) = metadata.get("generateName").and_then(Value::as_str) {
        // The server appends five characters.
        check_name("metadata.generateName", prefix, MAX_NAME_BYTES - 5)?;
    }
    match (rule, name) {
        (_, Ok(())) => {}
        (NameRule::NameOrGenerateName, Err(_))
            if non_empty_string(metadata.get("generateName"), "metadata.generateName").is_ok() => {}
        (NameRule::NameOrGenerateName, Err(_)) => {
            return Err("`metadata.name` and `metadata.generateName` are both missing".into());
        }
        (NameRule::Name, Err(error)) => return Err(error),
    }
    if let Some(namespace) = metadata.get("namespace") {
        non_empty_string(Some(namespace), "metadata.namespace")?;
        check_namespace("metadata.namespace", namespace.as_str().unwrap_or_default())?;
    }
    Ok(value)
}

/// The longest object name Kubernetes accepts (a DNS subdomain).
const MAX_NAME_BYTES: usize = 253;

/// Checks a name a guest sent before anything is built from it: the host
/// puts names into request paths, so a name must be one path segment that
/// Kubernetes could accept: 1 to 253 characters of `a-z A-Z 0-9 . - _ : @`,
/// and not `.` or `..`. (`/` would reach a subresource, `%`, `?` and `#`
/// would change the request.) The API server applies each kind's stricter
/// rules after this.
fn check_name(field: &str, name: &str, max: usize) -> Result<(), String> {
    let shown = || {
        let mut shown: String = name.chars().take(40).collect();
        if shown.len() < name.len() {
            shown.push('…');
        }
        shown
    };
    if name.is_empty() || name.len() > max {
        return Err(format!(
            "`{field}` is {} bytes long; a name has 1 to {max}",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("`{field}` may not be `{name}`"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '@')))
    {
        return Err(format!(
            "`{field}` `{}` holds {bad:?}; names may hold only letters, digits and `.-_:@`",
            shown()
        ));
    }
    Ok(())
}

/// Checks a namespace a guest sent: an RFC 1123 DNS label.
fn check_namespace(field: &str, namespace: &str) -> Result<(), String> {
    if crate::config::is_dns_label(namespace) {
        Ok(())
    } else {
        let shown: String = namespace.chars().take(40).collect();
        Err(format!(
            "`{field}` `{shown}` is not a namespace name (lower-case letters, digits and `-`, at most 63)"
        ))
    }
}

fn patch_body(json: &str, kind: PatchKind, target: &ObjectRef) -> Result<Value, String> {
    let body = parse(json).map_err(|error| format!("body: {error}"))?;
    match kind {
        PatchKind::Json if !body.is_array() => Err(format!(
            "body: a JSON patch is an array of operations, got {}",
            type_name(&body)
        )),
        PatchKind::Merge | PatchKind::Strategic if !body.is_object() => Err(format!(
            "body: a merge patch is a JSON object, got {}",
            type_name(&body)
        )),
        PatchKind::Apply => {
            if !body.is_object() {
                return Err(format!(
                    "body: an apply is a whole JSON object, got {}",
                    type_name(&body)
                ));
            }
            for (field, expected) in [("apiVersion", &target.api_version), ("kind", &target.kind)] {
                match body.get(field).and_then(Value::as_str) {
                    Some(value) if value == expected => {}
                    Some(value) => {
                        return Err(format!(
                            "body: `{field}` is `{value}` but the target's is `{expected}`"
                        ));
                    }
                    None => return Err(format!("body: `{field}` is missing")),
                }
            }
            Ok(body)
        }
        _ => Ok(body),
    }
}

fn object_ref(reference: wit::ObjectRef) -> Result<ObjectRef, String> {
    for (value, field) in [
        (&reference.api_version, "api-version"),
        (&reference.kind, "kind"),
        (&reference.name, "name"),
    ] {
        if value.is_empty() {
            return Err(format!("`{field}` is empty"));
        }
    }
    if reference.namespace.as_deref() == Some("") {
        return Err("`namespace` is an empty string; use none for cluster-scoped objects".into());
    }
    check_name("name", &reference.name, MAX_NAME_BYTES)?;
    if let Some(namespace) = &reference.namespace {
        check_namespace("namespace", namespace)?;
    }
    Ok(ObjectRef {
        api_version: reference.api_version,
        kind: reference.kind,
        namespace: reference.namespace,
        name: reference.name,
    })
}

fn non_empty_string(value: Option<&Value>, field: &str) -> Result<(), String> {
    match value {
        Some(Value::String(text)) if !text.is_empty() => Ok(()),
        Some(Value::String(_)) => Err(format!("`{field}` is empty")),
        Some(other) => Err(format!("`{field}` is {}, not a string", type_name(other))),
        None => Err(format!("`{field}` is missing")),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn outcome(actions: Vec<wit::Action>) -> wit::Outcome {
        wit::Outcome {
            actions,
            requeue_after_ms: None,
        }
    }

    fn target() -> wit::ObjectRef {
        wit::ObjectRef {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            namespace: Some("default".into()),
            name: "web".into(),
        }
    }

    fn error_of(action: wit::Action) -> MalformedOutput {
        outcome_from_guest(outcome(vec![action])).expect_err("malformed")
    }

    #[test]
    fn accepts_a_well_formed_create() {
        let json = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"generateName":"c-"}}"#;
        let outcome =
            outcome_from_guest(outcome(vec![wit::Action::Create(json.into())])).expect("valid");
        assert!(matches!(outcome.actions[0], Action::Create { .. }));
    }

    #[test]
    fn numbers_reach_the_api_server_as_the_guest_wrote_them() {
        // Found by the guest_output fuzz target: without serde_json's
        // `float_roundtrip`, this number came back one unit in the last
        // place off, so the host changed what a guest asked for.
        let json = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"x":201887739074256335302,"y":0.1}"#;
        let outcome =
            outcome_from_guest(outcome(vec![wit::Action::Create(json.into())])).expect("valid");
        let Action::Create { object } = &outcome.actions[0] else {
            panic!("a create");
        };
        assert_eq!(object["x"].as_f64(), Some(201_887_739_074_256_335_302.0));
        assert_eq!(object["y"].as_f64(), Some(0.1));
        let written: serde_json::Value =
            serde_json::from_str(&object.to_string()).expect("reads back");
        assert_eq!(&written, object, "written and read back unchanged");
    }

    #[test]
    fn names_the_missing_field() {
        let error = error_of(wit::Action::Update(
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{}}"#.into(),
        ));
        assert_eq!(error.verb, "update");
        assert_eq!(error.problem, "`metadata.name` is missing");

        let error = error_of(wit::Action::Create(r#"{"kind":"ConfigMap"}"#.into()));
        assert_eq!(error.problem, "`apiVersion` is missing");
    }

    #[test]
    fn rejects_json_that_is_not_an_object() {
        let error = error_of(wit::Action::Create("[1, 2]".into()));
        assert_eq!(error.problem, "expected a JSON object, got an array");
        let error = error_of(wit::Action::Create("{not json".into()));
        assert!(
            error.problem.starts_with("the JSON does not parse"),
            "{error}"
        );
    }

    #[test]
    fn reports_the_index_of_the_bad_action() {
        let good = wit::Action::Delete(target());
        let bad = wit::Action::Scale(wit::Scale {
            target: wit::ObjectRef {
                name: String::new(),
                ..target()
            },
            replicas: 1,
        });
        let error = outcome_from_guest(outcome(vec![good, bad])).expect_err("malformed");
        assert_eq!(error.index, 1);
        assert_eq!(
            error.to_string(),
            "action #1 (scale): target: `name` is empty"
        );
    }

    #[test]
    fn checks_patch_shapes() {
        let patch = |kind, body: &str| {
            wit::Action::Patch(wit::Patch {
                target: target(),
                kind,
                body: body.into(),
                force: false,
            })
        };
        assert!(
            error_of(patch(wit::PatchKind::Json, "{}"))
                .problem
                .contains("array")
        );
        assert!(
            error_of(patch(wit::PatchKind::Merge, "[]"))
                .problem
                .contains("object")
        );
        let mismatch = error_of(patch(
            wit::PatchKind::Apply,
            r#"{"apiVersion":"apps/v1","kind":"StatefulSet"}"#,
        ));
        assert_eq!(
            mismatch.problem,
            "body: `kind` is `StatefulSet` but the target's is `Deployment`"
        );
    }

    #[test]
    fn names_that_would_change_the_request_are_refused() {
        let hostile = [
            "app/status".to_owned(),
            "app/scale".to_owned(),
            "..".to_owned(),
            ".".to_owned(),
            "app%2Fstatus".to_owned(),
            "app?dryRun=All".to_owned(),
            "app#frag".to_owned(),
            "a".repeat(100 * 1024),
            "ünïcode".to_owned(),
            "app\u{0}".to_owned(),
            "two words".to_owned(),
        ];
        for name in &hostile {
            let patch = wit::Action::Patch(wit::Patch {
                target: wit::ObjectRef {
                    name: name.clone(),
                    ..target()
                },
                kind: wit::PatchKind::Merge,
                body: "{}".into(),
                force: false,
            });
            let error = error_of(patch);
            assert!(
                error.problem.starts_with("target: `name`"),
                "{name:.40}: {error}"
            );
            let create = wit::Action::Create(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}})
                    .to_string(),
            );
            let error = error_of(create);
            assert!(
                error.problem.starts_with("`metadata.name`"),
                "{name:.40}: {error}"
            );
        }
        for namespace in ["a/b", "..", "Team", "x%2Fy", &"n".repeat(64)] {
            let delete = wit::Action::Delete(wit::ObjectRef {
                namespace: Some(namespace.to_owned()),
                ..target()
            });
            let error = error_of(delete);
            assert!(
                error.problem.starts_with("target: `namespace`"),
                "{namespace}: {error}"
            );
        }
        // What Kubernetes names do hold is accepted.
        for name in ["web", "web-1.example", "system:controller:x", "a_b", "x@y"] {
            let delete = wit::Action::Delete(wit::ObjectRef {
                name: name.to_owned(),
                ..target()
            });
            outcome_from_guest(outcome(vec![delete])).expect("a valid name");
        }
    }

    #[test]
    fn rejects_an_event_without_reason() {
        let error = error_of(wit::Action::RecordEvent(wit::Event {
            regarding: target(),
            warning: true,
            reason: String::new(),
            message: "m".into(),
        }));
        assert!(error.problem.contains("reason"));
    }
}
