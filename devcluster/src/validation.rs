//! The validation of built-in objects that clients trip over most, with the
//! apiserver's field paths and texts: a workload's selector must be given and
//! match its pod template's labels, and a pod (or a pod template) needs
//! containers, each with a name and an image. Runs after defaulting, as the
//! apiserver validates the defaulted object.

use serde_json::{Map, Value};

use crate::json::get_in;
use crate::registry::ResourceDef;
use crate::status::Cause;

/// The causes an object of `res` is invalid, if any.
pub(crate) fn validate(res: &ResourceDef, obj: &Map<String, Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    match &*res.storage {
        "apps/deployments" | "apps/replicasets" | "apps/statefulsets" | "apps/daemonsets" => {
            selector_matches_template(obj, &mut causes);
            pod_spec(
                get_in(obj, &["spec", "template", "spec"]),
                "spec.template.spec",
                &mut causes,
            );
        }
        "/replicationcontrollers" | "batch/jobs" => pod_spec(
            get_in(obj, &["spec", "template", "spec"]),
            "spec.template.spec",
            &mut causes,
        ),
        "batch/cronjobs" => pod_spec(
            get_in(obj, &["spec", "jobTemplate", "spec", "template", "spec"]),
            "spec.jobTemplate.spec.template.spec",
            &mut causes,
        ),
        "/pods" => pod_spec(obj.get("spec"), "spec", &mut causes),
        "/podtemplates" => pod_spec(
            get_in(obj, &["template", "spec"]),
            "template.spec",
            &mut causes,
        ),
        _ => {}
    }
    causes
}

/// `spec.selector` is required and selects `spec.template.metadata.labels`.
fn selector_matches_template(obj: &Map<String, Value>, causes: &mut Vec<Cause>) {
    let labels = get_in(obj, &["spec", "template", "metadata", "labels"]);
    let Some(selector) = get_in(obj, &["spec", "selector"]).filter(|s| !s.is_null()) else {
        causes.push(Cause::new(
            "FieldValueRequired",
            "Required value",
            "spec.selector",
        ));
        causes.push(Cause::new(
            "FieldValueInvalid",
            format!(
                "Invalid value: {}: `selector` does not match template `labels`",
                go_labels(labels)
            ),
            "spec.template.metadata.labels",
        ));
        return;
    };
    let pairs: Vec<(String, String)> = labels
        .and_then(Value::as_object)
        .map(|l| {
            l.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    let matches = crate::scale::selector_string(Some(selector))
        .and_then(|s| crate::selector::LabelSelector::parse(&s).ok())
        .is_some_and(|s| !s.is_empty() && s.matches(&pairs));
    if !matches {
        causes.push(Cause::new(
            "FieldValueInvalid",
            format!(
                "Invalid value: {}: `selector` does not match template `labels`",
                go_labels(labels)
            ),
            "spec.template.metadata.labels",
        ));
    }
}

/// Labels as Go's `%#v` prints a `map[string]string`, `null` when absent.
fn go_labels(labels: Option<&Value>) -> String {
    match labels.and_then(Value::as_object) {
        Some(map) => {
            let mut pairs: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{:?}:{:?}", k, v.as_str().unwrap_or_default()))
                .collect();
            pairs.sort();
            format!("map[string]string{{{}}}", pairs.join(", "))
        }
        None => "null".to_owned(),
    }
}

/// A pod spec needs containers, each named and with an image.
fn pod_spec(spec: Option<&Value>, at: &str, causes: &mut Vec<Cause>) {
    let containers = spec
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty());
    let Some(containers) = containers else {
        causes.push(Cause::new(
            "FieldValueRequired",
            "Required value",
            format!("{at}.containers"),
        ));
        return;
    };
    for (index, container) in containers.iter().enumerate() {
        for field in ["name", "image"] {
            let given = container
                .get(field)
                .and_then(Value::as_str)
                .is_some_and(|v| !v.trim().is_empty());
            if !given {
                causes.push(Cause::new(
                    "FieldValueRequired",
                    "Required value",
                    format!("{at}.containers[{index}].{field}"),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::registry::Registry;

    fn causes(plural: &str, group: &str, obj: Value) -> Vec<(String, String)> {
        let registry = Registry::builtin();
        let res = registry
            .find_any_version(group, plural)
            .expect("a built-in resource");
        validate(&res, obj.as_object().expect("an object"))
            .into_iter()
            .map(|c| (c.field.clone(), c.message.clone()))
            .collect()
    }

    #[test]
    fn an_empty_deployment_spec_fails_as_a_real_server_says() {
        assert_eq!(
            causes("deployments", "apps", json!({"spec": {}})),
            [
                ("spec.selector".to_owned(), "Required value".to_owned()),
                (
                    "spec.template.metadata.labels".to_owned(),
                    "Invalid value: null: `selector` does not match template `labels`".to_owned()
                ),
                (
                    "spec.template.spec.containers".to_owned(),
                    "Required value".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn a_selector_must_select_the_template() {
        let deployment = json!({"spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
        }});
        assert_eq!(
            causes("deployments", "apps", deployment),
            [(
                "spec.template.metadata.labels".to_owned(),
                "Invalid value: map[string]string{\"app\":\"db\"}: `selector` does not match template `labels`".to_owned()
            )]
        );
        let valid = json!({"spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
        }});
        assert!(causes("deployments", "apps", valid).is_empty());
    }

    #[test]
    fn pods_need_named_containers_with_images() {
        assert_eq!(
            causes("pods", "", json!({"spec": {"containers": [{"name": "c"}]}})),
            [(
                "spec.containers[0].image".to_owned(),
                "Required value".to_owned()
            )]
        );
    }
}
