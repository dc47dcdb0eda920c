//! The review APIs (TokenReview, SelfSubjectReview, SubjectAccessReview, LocalSubjectAccessReview,
//! SelfSubjectAccessReview, SelfSubjectRulesReview): answered on create, never stored.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::rbac::PolicyRule;
use super::{Action, Attributes, UserInfo, authorize, tokens::ISSUER};
use crate::core::Target;
use crate::json::encode_typed;
use crate::shared::Shared;
use crate::status::{ApiError, Cause};

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn text<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get(field).and_then(Value::as_str).unwrap_or_default()
}

/// Answers the create of a review: the request echoed with its `status` filled in, 201.
pub(crate) fn create(
    shared: &Shared,
    user: &UserInfo,
    t: &Target,
    body: &[u8],
    content_type: &str,
) -> Result<(u16, Bytes), ApiError> {
    let request = crate::write::parse_object(body, content_type, &t.res.kind, false)?;
    if let Some(kind) = request.get("kind").and_then(Value::as_str)
        && !kind.is_empty()
        && kind != t.res.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            t.res.kind
        )));
    }
    let spec = request.get("spec").cloned().unwrap_or_else(|| json!({}));
    let invalid = |field: &str, message: &str| {
        ApiError::invalid(
            &t.res.kind,
            &t.res.group,
            "",
            vec![Cause::new("FieldValueInvalid", message, field)],
        )
    };
    let status = match t.res.plural.as_str() {
        "tokenreviews" => token_review(shared, &spec),
        "selfsubjectreviews" => json!({"userInfo": user.to_json()}),
        "selfsubjectaccessreviews" => access_review(shared, user, &spec, None)
            .map_err(|m| invalid("spec.resourceAttributes", &m))?,
        "subjectaccessreviews" | "localsubjectaccessreviews" => {
            let subject = UserInfo {
                name: text(&spec, "user").to_owned(),
                uid: text(&spec, "uid").to_owned(),
                groups: strings(spec.get("groups")),
                extra: spec
                    .get("extra")
                    .and_then(Value::as_object)
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), strings(Some(v))))
                            .collect::<BTreeMap<_, _>>()
                    })
                    .unwrap_or_default(),
            };
            if subject.name.is_empty() && subject.groups.is_empty() {
                return Err(invalid(
                    "spec.user",
                    "Invalid value: \"\": at least one of user or group must be specified",
                ));
            }
            let local = (t.res.plural == "localsubjectaccessreviews").then(|| t.ns());
            access_review(shared, &subject, &spec, local)
                .map_err(|m| invalid("spec.resourceAttributes", &m))?
        }
        "selfsubjectrulesreviews" => rules_review(shared, user, text(&spec, "namespace")),
        _ => return Err(ApiError::method_not_allowed()),
    };
    let mut metadata = request
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    metadata.insert("creationTimestamp".into(), Value::Null);
    let mut out = Map::new();
    out.insert("kind".into(), Value::from(t.res.kind.clone()));
    out.insert("apiVersion".into(), Value::from(t.api_version()));
    out.insert("metadata".into(), Value::Object(metadata));
    if t.res.plural != "selfsubjectreviews" {
        out.insert("spec".into(), spec);
    }
    out.insert("status".into(), status);
    Ok((201, encode_typed(&Value::Object(out))))
}

fn token_review(shared: &Shared, spec: &Value) -> Value {
    let token = text(spec, "token");
    let mut audiences = strings(spec.get("audiences"));
    if audiences.is_empty() {
        audiences.push(ISSUER.to_owned());
    }
    let wanted: Vec<&str> = audiences.iter().map(String::as_str).collect();
    match shared.authn.token_user(&shared.core, token, &wanted) {
        Ok((user, valid_for)) => json!({
            "authenticated": true,
            "user": user.to_json(),
            "audiences": valid_for,
        }),
        Err(e) => json!({"user": {}, "error": format!("[{e}]")}),
    }
}

/// The attributes of an access review's spec, or why the spec is invalid.
fn review_attributes(spec: &Value, namespace: Option<&str>) -> Result<Attributes, String> {
    let resource = spec.get("resourceAttributes").filter(|v| !v.is_null());
    let path = spec.get("nonResourceAttributes").filter(|v| !v.is_null());
    match (resource, path) {
        (Some(r), None) => {
            let ns = text(r, "namespace");
            if let Some(local) = namespace
                && ns != local
            {
                return Err(format!(
                    "Invalid value: {ns:?}: must match metadata.namespace"
                ));
            }
            Ok(Attributes::resource(
                text(r, "verb"),
                text(r, "group"),
                text(r, "resource"),
                text(r, "subresource"),
                ns,
                text(r, "name"),
            ))
        }
        (None, Some(p)) if namespace.is_none() => Ok(Attributes {
            verb: text(p, "verb").to_owned(),
            kind: Action::NonResource {
                path: text(p, "path").to_owned(),
            },
        }),
        (None, Some(_)) => Err(
            "Invalid value: \"null\": disallowed on this kind of request".to_owned(),
        ),
        _ => Err(
            "Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified"
                .to_owned(),
        ),
    }
}

fn access_review(
    shared: &Shared,
    user: &UserInfo,
    spec: &Value,
    namespace: Option<&str>,
) -> Result<Value, String> {
    let attrs = review_attributes(spec, namespace)?;
    let decision = authorize(&shared.core, user, &attrs);
    let mut status = Map::new();
    status.insert("allowed".into(), Value::from(decision.allowed));
    if !decision.reason.is_empty() {
        status.insert("reason".into(), Value::from(decision.reason));
    }
    Ok(Value::Object(status))
}

fn rules_review(shared: &Shared, user: &UserInfo, namespace: &str) -> Value {
    let policy = shared.core.lock().policy();
    let (rules, errors) = policy.rules_for(user, namespace);
    let mut resource_rules = Vec::new();
    let mut path_rules = Vec::new();
    for PolicyRule {
        verbs,
        api_groups,
        resources,
        resource_names,
        non_resource_urls,
    } in rules
    {
        if !resources.is_empty() {
            let mut r = json!({"verbs": verbs, "apiGroups": api_groups, "resources": resources});
            if !resource_names.is_empty() {
                r["resourceNames"] = json!(resource_names);
            }
            resource_rules.push(r);
        }
        if !non_resource_urls.is_empty() {
            path_rules.push(json!({"verbs": verbs, "nonResourceURLs": non_resource_urls}));
        }
    }
    let mut status = json!({
        "resourceRules": resource_rules,
        "nonResourceRules": path_rules,
        "incomplete": !errors.is_empty(),
    });
    if !errors.is_empty() {
        status["evaluationError"] = json!(errors.join(", "));
    }
    status
}
