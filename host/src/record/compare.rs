//! Comparing two results of the same call (the live guest's and a
//! candidate's, or a recorded one and a replayed one) after normalisation:
//! actions on different objects may come in any order, keys in any order,
//! and a sandbox failure compares by its kind alone (its message names the
//! guest).

use serde_json::Value;

/// How two results differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Difference {
    /// Both answered, with different actions (or mapped to different
    /// primaries).
    Actions,
    /// Both answered the same actions, with a different requeue.
    Requeue,
    /// The first answered; the second failed.
    SecondFailed,
    /// The first failed; the second answered.
    FirstFailed,
    /// Both failed, differently.
    Failures,
}

impl Difference {
    /// Every kind, in the order reports list them.
    pub const ALL: [Self; 5] = [
        Self::Actions,
        Self::Requeue,
        Self::SecondFailed,
        Self::FirstFailed,
        Self::Failures,
    ];

    /// The kind's name in reports, calling the two sides `first` and
    /// `second` (`live`/`candidate`, `recorded`/`replayed`).
    pub fn name(self, first: &str, second: &str) -> String {
        match self {
            Self::Actions => "actions".to_owned(),
            Self::Requeue => "requeue".to_owned(),
            Self::SecondFailed => format!("{second}-failed"),
            Self::FirstFailed => format!("{first}-failed"),
            Self::Failures => "failures".to_owned(),
        }
    }
}

/// The verdict on two results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// How they differ; `None`: they agree.
    pub difference: Option<Difference>,
    /// A unified diff of the two normalised results as YAML; empty when
    /// they agree.
    pub diff: String,
}

/// Compares two results as a recording writes them
/// ([`super::reconcile_result`], [`super::map_result`]), naming the sides
/// `first` and `second` in the diff.
pub fn compare(first: &Value, second: &Value, names: (&str, &str)) -> Comparison {
    let first = normalise(first);
    let second = normalise(second);
    if first == second {
        return Comparison {
            difference: None,
            diff: String::new(),
        };
    }
    let failed = |result: &Value| result.get("error").is_some();
    let difference = match (failed(&first), failed(&second)) {
        (true, true) => Difference::Failures,
        (true, false) => Difference::FirstFailed,
        (false, true) => Difference::SecondFailed,
        (false, false) => {
            if first.get("actions") == second.get("actions")
                && first.get("primaries") == second.get("primaries")
            {
                Difference::Requeue
            } else {
                Difference::Actions
            }
        }
    };
    let yaml = |value: &Value| serde_saphyr::to_string(value).unwrap_or_else(|e| e.to_string());
    let (first_text, second_text) = (yaml(&first), yaml(&second));
    let diff = similar::TextDiff::from_lines(&first_text, &second_text)
        .unified_diff()
        .context_radius(3)
        .header(names.0, names.1)
        .to_string();
    Comparison {
        difference: Some(difference),
        diff,
    }
}

/// A result with the freedom the contract leaves taken out: actions
/// sorted by the object they act on (writes to one object keep their
/// order, events come after the writes), mapped primaries sorted, map keys
/// sorted, and a sandbox failure reduced to its kind.
pub fn normalise(result: &Value) -> Value {
    let mut result = sorted(result);
    if let Some(actions) = result.get_mut("actions").and_then(Value::as_array_mut) {
        actions.sort_by_cached_key(action_key);
    }
    if let Some(primaries) = result.get_mut("primaries").and_then(Value::as_array_mut) {
        primaries.sort_by_cached_key(Value::to_string);
        primaries.dedup();
    }
    if let Some(error) = result.get_mut("error").and_then(Value::as_object_mut) {
        for (kind, message) in error.iter_mut() {
            if kind != "transient" && kind != "permanent" {
                *message = Value::Null;
            }
        }
    }
    result
}

/// What an action is sorted by: the object it acts on, then writes before
/// events.
fn action_key(action: &Value) -> (String, String, String, String, u8) {
    let Some((verb, body)) = action.as_object().and_then(|a| a.iter().next()) else {
        return Default::default();
    };
    let text = |value: Option<&Value>| value.and_then(Value::as_str).unwrap_or_default().to_owned();
    let (target, event) = match verb.as_str() {
        "create" | "update" | "updateStatus" => {
            let object = body.get("object");
            let metadata = object.and_then(|o| o.get("metadata"));
            let name = metadata
                .and_then(|m| m.get("name").or_else(|| m.get("generateName")))
                .cloned();
            return (
                text(object.and_then(|o| o.get("apiVersion"))),
                text(object.and_then(|o| o.get("kind"))),
                text(metadata.and_then(|m| m.get("namespace"))),
                text(name.as_ref()),
                0,
            );
        }
        "event" => (body.get("regarding"), 1),
        _ => (body.get("target"), 0),
    };
    (
        text(target.and_then(|t| t.get("apiVersion"))),
        text(target.and_then(|t| t.get("kind"))),
        text(target.and_then(|t| t.get("namespace"))),
        text(target.and_then(|t| t.get("name"))),
        event,
    )
}

/// `value` with every map's keys in order.
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|key| (key.clone(), sorted(&map[key])))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scale(name: &str, replicas: u32) -> Value {
        json!({"scale": {"target": {"apiVersion": "apps/v1", "kind": "Deployment",
                                    "namespace": "x", "name": name}, "replicas": replicas}})
    }

    fn event(name: &str) -> Value {
        json!({"event": {"regarding": {"apiVersion": "apps/v1", "kind": "Deployment",
                                       "namespace": "x", "name": name},
                         "type": "Normal", "reason": "Scaled", "message": "m"}})
    }

    #[test]
    fn independent_actions_in_another_order_agree() {
        let live = json!({"actions": [scale("a", 1), event("a"), scale("b", 2)]});
        let candidate = json!({"actions": [scale("b", 2), event("a"), scale("a", 1)]});
        let verdict = compare(&live, &candidate, ("live", "candidate"));
        assert_eq!(verdict.difference, None, "{}", verdict.diff);
    }

    #[test]
    fn writes_to_one_object_keep_their_order() {
        let live = json!({"actions": [scale("a", 1), scale("a", 2)]});
        let candidate = json!({"actions": [scale("a", 2), scale("a", 1)]});
        let verdict = compare(&live, &candidate, ("live", "candidate"));
        assert_eq!(verdict.difference, Some(Difference::Actions));
        assert!(verdict.diff.contains("--- live") && verdict.diff.contains("+++ candidate"));
        assert!(
            verdict.diff.contains("-    replicas: 1"),
            "{}",
            verdict.diff
        );
    }

    #[test]
    fn kinds_of_difference() {
        let answered = json!({"actions": [scale("a", 1)]});
        let later = json!({"actions": [scale("a", 1)], "requeueAfterMs": 1000});
        let trapped = json!({"error": {"trap": "guest web trapped"}});
        let trapped_too = json!({"error": {"trap": "guest web-next trapped"}});
        let transient = json!({"error": {"transient": "not yet"}});
        let kind = |a: &Value, b: &Value| compare(a, b, ("a", "b")).difference;
        assert_eq!(kind(&answered, &later), Some(Difference::Requeue));
        assert_eq!(kind(&answered, &trapped), Some(Difference::SecondFailed));
        assert_eq!(kind(&trapped, &answered), Some(Difference::FirstFailed));
        assert_eq!(kind(&trapped, &transient), Some(Difference::Failures));
        assert_eq!(kind(&trapped, &trapped_too), None);
        let primaries = |names: &[&str]| json!({"primaries": names.iter().map(|n| json!({"apiVersion": "v1", "kind": "K", "name": n})).collect::<Vec<_>>()});
        assert_eq!(
            kind(&primaries(&["a", "b"]), &primaries(&["b", "a", "a"])),
            None
        );
        assert_eq!(
            kind(&primaries(&["a"]), &primaries(&["b"])),
            Some(Difference::Actions)
        );
    }
}
