//! The outcome a guest answers as JSON through `reconcile-json` (contract
//! 0.1.5, world `controller-json`), read into the contract's own records so
//! that it is checked exactly as an outcome answered through `reconcile`.
//!
//! Each action is read on its own, so an error names the action it is in.
//! Objects and patch documents are kept as the guest wrote them (borrowed
//! from the answer's text), as the `json` strings of `reconcile` are.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::validate::MalformedOutput;
use crate::wasm::bindings as wit;

/// What the verb of an answer that is not an outcome's JSON is reported as.
const VERB: &str = "reconcile-json";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct JsonOutcome<'a> {
    #[serde(borrow)]
    actions: Vec<&'a RawValue>,
    #[serde(default)]
    requeue_after_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
enum JsonAction<'a> {
    Create(#[serde(borrow)] &'a RawValue),
    Update(#[serde(borrow)] &'a RawValue),
    UpdateStatus(#[serde(borrow)] &'a RawValue),
    Patch(#[serde(borrow)] JsonPatch<'a>),
    Delete(JsonRef),
    Scale(JsonScale),
    RecordEvent(JsonEvent),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct JsonRef {
    api_version: String,
    kind: String,
    #[serde(default)]
    namespace: Option<String>,
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonPatch<'a> {
    target: JsonRef,
    kind: JsonPatchKind,
    #[serde(borrow)]
    body: &'a RawValue,
    #[serde(default)]
    force: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum JsonPatchKind {
    Merge,
    Json,
    Strategic,
    Apply,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonScale {
    target: JsonRef,
    replicas: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonEvent {
    regarding: JsonRef,
    warning: bool,
    reason: String,
    message: String,
}

/// Reads the JSON of an outcome into the contract's `outcome`.
pub fn outcome_from_json(answer: &[u8]) -> Result<wit::Outcome, MalformedOutput> {
    let malformed = |index: usize, verb: &'static str, problem: String| MalformedOutput {
        index,
        verb,
        problem,
    };
    let text = std::str::from_utf8(answer)
        .map_err(|error| malformed(0, VERB, format!("the answer is not UTF-8: {error}")))?;
    let outcome: JsonOutcome<'_> = serde_json::from_str(text).map_err(|error| {
        malformed(
            0,
            VERB,
            format!(
                "the answer is not the JSON of an outcome \
                 ({{\"actions\": [...], \"requeueAfterMs\": N}}): {error}"
            ),
        )
    })?;
    let actions = outcome
        .actions
        .iter()
        .enumerate()
        .map(|(index, action)| {
            serde_json::from_str::<JsonAction<'_>>(action.get())
                .map(JsonAction::into_wit)
                .map_err(|error| {
                    malformed(
                        index,
                        verb_named(action.get()),
                        format!("not the JSON of an action: {error}"),
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(wit::Outcome {
        actions,
        requeue_after_ms: outcome.requeue_after_ms,
    })
}

/// The verb an action's JSON names, for an error about it.
fn verb_named(action: &str) -> &'static str {
    let key = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(action)
        .ok()
        .and_then(|members| members.keys().next().cloned());
    match key.as_deref() {
        Some("create") => "create",
        Some("update") => "update",
        Some("update-status") => "update-status",
        Some("patch") => "patch",
        Some("delete") => "delete",
        Some("scale") => "scale",
        Some("record-event") => "record-event",
        _ => "action",
    }
}

impl JsonAction<'_> {
    fn into_wit(self) -> wit::Action {
        match self {
            JsonAction::Create(object) => wit::Action::Create(object.get().to_owned()),
            JsonAction::Update(object) => wit::Action::Update(object.get().to_owned()),
            JsonAction::UpdateStatus(object) => wit::Action::UpdateStatus(object.get().to_owned()),
            JsonAction::Patch(patch) => wit::Action::Patch(wit::Patch {
                target: patch.target.into_wit(),
                kind: match patch.kind {
                    JsonPatchKind::Merge => wit::PatchKind::Merge,
                    JsonPatchKind::Json => wit::PatchKind::Json,
                    JsonPatchKind::Strategic => wit::PatchKind::Strategic,
                    JsonPatchKind::Apply => wit::PatchKind::Apply,
                },
                body: patch.body.get().to_owned(),
                force: patch.force,
            }),
            JsonAction::Delete(target) => wit::Action::Delete(target.into_wit()),
            JsonAction::Scale(scale) => wit::Action::Scale(wit::Scale {
                target: scale.target.into_wit(),
                replicas: scale.replicas,
            }),
            JsonAction::RecordEvent(event) => wit::Action::RecordEvent(wit::Event {
                regarding: event.regarding.into_wit(),
                warning: event.warning,
                reason: event.reason,
                message: event.message,
            }),
        }
    }
}

impl JsonRef {
    fn into_wit(self) -> wit::ObjectRef {
        wit::ObjectRef {
            api_version: self.api_version,
            kind: self.kind,
            namespace: self.namespace,
            name: self.name,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::outcome_from_guest;

    const REF: &str =
        r#"{"apiVersion":"apps/v1","kind":"Deployment","namespace":"default","name":"web"}"#;

    const APPLIED: &str = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"default"},"spec":{"replicas":3}}"#;

    fn target() -> wit::ObjectRef {
        wit::ObjectRef {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            namespace: Some("default".into()),
            name: "web".into(),
        }
    }

    #[test]
    fn every_action_reads_as_the_record_reconcile_answers() {
        let answer = format!(
            r#"{{"actions":[
                {{"create":{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"a"}}}}}},
                {{"update":{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"b"}}}}}},
                {{"update-status":{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"c"}}}}}},
                {{"patch":{{"target":{REF},"kind":"apply","body":{APPLIED},"force":true}}}},
                {{"patch":{{"target":{REF},"kind":"json","body":[{{"op":"remove","path":"/x"}}]}}}},
                {{"delete":{{"apiVersion":"v1","kind":"Namespace","name":"gone","namespace":null}}}},
                {{"scale":{{"target":{REF},"replicas":3}}}},
                {{"record-event":{{"regarding":{REF},"warning":true,"reason":"R","message":"m \"q\""}}}}
            ],"requeueAfterMs":5000}}"#
        );
        let outcome = outcome_from_json(answer.as_bytes()).expect("an outcome");
        let expected = wit::Outcome {
            actions: vec![
                wit::Action::Create(
                    r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}}"#.into(),
                ),
                wit::Action::Update(
                    r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"b"}}"#.into(),
                ),
                wit::Action::UpdateStatus(
                    r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}}"#.into(),
                ),
                wit::Action::Patch(wit::Patch {
                    target: target(),
                    kind: wit::PatchKind::Apply,
                    body: APPLIED.into(),
                    force: true,
                }),
                wit::Action::Patch(wit::Patch {
                    target: target(),
                    kind: wit::PatchKind::Json,
                    body: r#"[{"op":"remove","path":"/x"}]"#.into(),
                    force: false,
                }),
                wit::Action::Delete(wit::ObjectRef {
                    api_version: "v1".into(),
                    kind: "Namespace".into(),
                    namespace: None,
                    name: "gone".into(),
                }),
                wit::Action::Scale(wit::Scale {
                    target: target(),
                    replicas: 3,
                }),
                wit::Action::RecordEvent(wit::Event {
                    regarding: target(),
                    warning: true,
                    reason: "R".into(),
                    message: "m \"q\"".into(),
                }),
            ],
            requeue_after_ms: Some(5000),
        };
        assert_eq!(format!("{outcome:?}"), format!("{expected:?}"));
        // And it passes the checks an outcome of `reconcile` passes.
        let checked = outcome_from_guest(outcome).expect("valid actions");
        assert_eq!(checked.actions.len(), 8);
    }

    #[test]
    fn an_answer_without_actions_or_requeue_is_nothing_to_do() {
        let outcome = outcome_from_json(br#"{"actions":[]}"#).expect("an outcome");
        assert!(outcome.actions.is_empty());
        assert_eq!(outcome.requeue_after_ms, None);
    }

    #[test]
    fn a_malformed_answer_names_the_action_and_the_member() {
        let cases: [(&[u8], usize, &str, &str); 7] = [
            (b"\xff", 0, VERB, "not UTF-8"),
            (b"[]", 0, VERB, "not the JSON of an outcome"),
            (br#"{"actions":[],"requeueAfter":5}"#, 0, VERB, "unknown field `requeueAfter`"),
            (br#"{"actions":[],"requeueAfterMs":-1}"#, 0, VERB, "invalid value: integer `-1`, expected u64"),
            (
                br#"{"actions":[{"delete":{"kind":"Pod","name":"a"}}]}"#,
                0,
                "delete",
                "missing field `apiVersion`",
            ),
            (
                br#"{"actions":[{"delete":{"apiVersion":"v1","kind":"Pod","name":"a"}},{"scale":{"target":{"apiVersion":"v1","kind":"Pod","name":"a"},"replicas":-2}}]}"#,
                1,
                "scale",
                "invalid value",
            ),
            (br#"{"actions":[{"sclae":{}}]}"#, 0, "action", "unknown variant `sclae`"),
        ];
        for (answer, index, verb, problem) in cases {
            let error = outcome_from_json(answer).expect_err("malformed");
            let text = String::from_utf8_lossy(answer);
            assert_eq!((error.index, error.verb), (index, verb), "{text}: {error}");
            assert!(error.problem.contains(problem), "{text}: {error}");
        }
    }

    #[test]
    fn objects_that_break_the_contract_are_refused_as_through_reconcile() {
        // Read, but the same checks refuse it: a create without a name.
        let outcome = outcome_from_json(
            br#"{"actions":[{"create":{"apiVersion":"v1","kind":"ConfigMap"}}]}"#,
        )
        .expect("read");
        let error = outcome_from_guest(outcome).expect_err("no name");
        assert_eq!((error.index, error.verb), (0, "create"), "{error}");
    }
}
