//! `label-policy`: enforces the labels a Namespace requires of its Deployments.
//!
//! A Namespace annotated
//! `paddock.dev/required-labels: "team, cost-center=shared, tier"` requires
//! every Deployment in it to carry the labels `team`, `cost-center` and
//! `tier`. A missing label that the policy gives a default for
//! (`cost-center=shared`) is added with a merge patch; one without a default
//! cannot be fixed by the controller and gets a Warning event naming it.
//! When a Namespace's policy changes, every Deployment in it is reconciled
//! again (the Namespace watch is `mapped`).

use paddock_guest::{
    Action, Change, Controller, Error, Info, Object, ObjectRef, Outcome, Request, Watch, cache,
    json,
};

/// The Namespace annotation holding the policy.
pub const POLICY: &str = "paddock.dev/required-labels";

/// One required label, with the value to add when it is missing, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The label key.
    pub key: String,
    /// The default value.
    pub default: Option<String>,
}

/// Parses a policy: comma-separated `key` or `key=default` entries.
/// Blank entries are ignored.
pub fn parse_policy(policy: &str) -> Vec<Requirement> {
    policy
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| match entry.split_once('=') {
            Some((key, value)) => Requirement {
                key: key.trim().to_owned(),
                default: Some(value.trim().to_owned()),
            },
            None => Requirement {
                key: entry.to_owned(),
                default: None,
            },
        })
        .collect()
}

/// The controller.
#[derive(Debug)]
pub struct LabelPolicy;

impl Controller for LabelPolicy {
    fn describe() -> Info {
        Info::new("label-policy")
            .watch(Watch::primary("apps/v1", "Deployment"))
            .watch(Watch::mapped("v1", "Namespace"))
    }

    fn reconcile(request: Request) -> Result<Outcome, Error> {
        let deployment = request.object;
        if request.change == Change::Deleted || deployment.is_being_deleted() {
            return Ok(Outcome::done());
        }
        let Some(namespace) = deployment.namespace() else {
            return Ok(Outcome::done());
        };
        let Some(namespace) = cache::get(&ObjectRef::cluster("v1", "Namespace", namespace)) else {
            // The Namespace is not in the cache yet: try again shortly.
            return Err(Error::transient(format!(
                "namespace {namespace} is not in the cache yet"
            )));
        };
        let Some(policy) = namespace.annotation(POLICY) else {
            return Ok(Outcome::done());
        };
        Ok(enforce(&deployment, &parse_policy(policy)))
    }

    fn map(namespace: Object) -> Vec<ObjectRef> {
        cache::list("apps/v1", "Deployment", Some(namespace.name()), None)
            .iter()
            .map(Object::object_ref)
            .collect()
    }
}

/// The actions that bring `deployment` in line with `requirements`.
pub fn enforce(deployment: &Object, requirements: &[Requirement]) -> Outcome {
    let mut defaults = serde_map();
    let mut unfixable = Vec::new();
    for requirement in requirements {
        if deployment.label(&requirement.key).is_some() {
            continue;
        }
        match &requirement.default {
            Some(value) => {
                defaults.insert(requirement.key.clone(), json!(value));
            }
            None => unfixable.push(requirement.key.as_str()),
        }
    }
    let mut outcome = Outcome::done();
    if !defaults.is_empty() {
        let added: Vec<String> = defaults
            .iter()
            .map(|(key, value)| format!("{key}={}", value.as_str().unwrap_or_default()))
            .collect();
        outcome.push(Action::merge_patch(
            deployment.object_ref(),
            json!({"metadata": {"labels": defaults}}),
        ));
        outcome.push(Action::event(
            deployment.object_ref(),
            "LabelsDefaulted",
            format!(
                "added required labels from the namespace policy: {}",
                added.join(", ")
            ),
        ));
    }
    if !unfixable.is_empty() {
        outcome.push(Action::warning(
            deployment.object_ref(),
            "MissingRequiredLabels",
            format!(
                "the namespace policy requires labels with no default: {}; add them to the Deployment",
                unfixable.join(", ")
            ),
        ));
    }
    outcome
}

fn serde_map() -> paddock_guest::serde_json::Map<String, paddock_guest::Value> {
    paddock_guest::serde_json::Map::new()
}

paddock_guest::export_controller!(LabelPolicy);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_policies() {
        assert_eq!(
            parse_policy(" team, cost-center = shared ,, tier"),
            vec![
                Requirement {
                    key: "team".into(),
                    default: None
                },
                Requirement {
                    key: "cost-center".into(),
                    default: Some("shared".into())
                },
                Requirement {
                    key: "tier".into(),
                    default: None
                },
            ]
        );
        assert!(parse_policy("").is_empty());
    }

    #[test]
    fn a_compliant_deployment_needs_nothing() {
        let deployment = Object::new(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "a", "namespace": "n", "labels": {"team": "x"}}
        }));
        assert!(
            enforce(&deployment, &parse_policy("team"))
                .actions
                .is_empty()
        );
    }
}
