//! What each guest may see and do: RBAC-style rules, checked when a guest
//! is loaded (its watches) and before every action and cache read.

use serde::{Deserialize, Serialize};

/// One rule: the verbs allowed on some resources of some API groups, like
/// a Kubernetes RBAC `PolicyRule`. `"*"` matches anything in each list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// API groups (`""` is the core group, `apps`, `examples.paddock.dev`, `*`).
    pub api_groups: Vec<String>,
    /// Resources by plural name, subresources as `deployments/scale`,
    /// `deployments/status`; `*` for all, `*/scale` for every scale subresource.
    pub resources: Vec<String>,
    /// Verbs: get, list, watch, create, update, patch, delete, or `*`.
    pub verbs: Vec<String>,
}

/// The verbs a rule may name.
pub const VERBS: [&str; 8] = [
    "get", "list", "watch", "create", "update", "patch", "delete", "*",
];

/// Everything a guest was granted: the union of its rules.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Grant {
    /// The rules.
    pub rules: Vec<Rule>,
}

/// One permission asked for: a verb on a resource (or subresource) of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission<'a> {
    /// The verb.
    pub verb: &'a str,
    /// The API group (`""` for core).
    pub group: &'a str,
    /// The resource's plural name.
    pub resource: &'a str,
    /// The subresource (`status`, `scale`), if any.
    pub subresource: Option<&'a str>,
}

impl std::fmt::Display for Permission<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = if self.group.is_empty() {
            "\"\" (core)"
        } else {
            self.group
        };
        write!(f, "verb `{}` on resource `{}", self.verb, self.resource)?;
        if let Some(subresource) = self.subresource {
            write!(f, "/{subresource}")?;
        }
        write!(f, "` in API group {group}")
    }
}

fn matches(list: &[String], value: &str) -> bool {
    list.iter().any(|item| item == "*" || item == value)
}

impl Rule {
    /// A rule allowing `verbs` on `resources` of `api_groups`.
    pub fn new(api_groups: &[&str], resources: &[&str], verbs: &[&str]) -> Self {
        let strings = |list: &[&str]| list.iter().map(|item| (*item).to_owned()).collect();
        Self {
            api_groups: strings(api_groups),
            resources: strings(resources),
            verbs: strings(verbs),
        }
    }

    /// Whether this rule allows `permission`.
    pub fn allows(&self, permission: &Permission<'_>) -> bool {
        let resource_matches = self.resources.iter().any(|item| {
            if item == "*" {
                return true;
            }
            match (item.split_once('/'), permission.subresource) {
                (None, None) => item == permission.resource,
                (Some((resource, sub)), Some(wanted)) => {
                    (resource == "*" || resource == permission.resource) && sub == wanted
                }
                _ => false,
            }
        });
        resource_matches
            && matches(&self.api_groups, permission.group)
            && matches(&self.verbs, permission.verb)
    }

    /// Checks the rule's own shape: every list non-empty and every verb known.
    pub fn validate(&self) -> Result<(), String> {
        for (field, list) in [
            ("apiGroups", &self.api_groups),
            ("resources", &self.resources),
            ("verbs", &self.verbs),
        ] {
            if list.is_empty() {
                return Err(format!("`{field}` is empty; list at least one (or \"*\")"));
            }
        }
        if let Some(verb) = self
            .verbs
            .iter()
            .find(|verb| !VERBS.contains(&verb.as_str()))
        {
            return Err(format!(
                "`verbs` holds `{verb}`, which is not one of {}",
                VERBS.join(", ")
            ));
        }
        Ok(())
    }
}

impl Grant {
    /// A grant of these rules.
    pub fn new(rules: Vec<Rule>) -> Self {
        Self { rules }
    }

    /// Whether any rule allows `permission`.
    pub fn allows(&self, permission: &Permission<'_>) -> bool {
        self.rules.iter().any(|rule| rule.allows(permission))
    }

    /// The first of `permissions` no rule allows, as an error naming it.
    pub fn check(&self, permissions: &[Permission<'_>]) -> Result<(), Denied> {
        match permissions
            .iter()
            .find(|permission| !self.allows(permission))
        {
            None => Ok(()),
            Some(permission) => Err(Denied {
                permission: permission.to_string(),
                rule_hint: hint(permission),
            }),
        }
    }
}

/// A permission the grant does not give.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not granted: {permission}; add a rule such as {rule_hint}")]
pub struct Denied {
    /// The missing permission, in words.
    pub permission: String,
    /// A rule that would grant it, in the controllers file's syntax.
    pub rule_hint: String,
}

fn hint(permission: &Permission<'_>) -> String {
    let resource = match permission.subresource {
        Some(sub) => format!("{}/{sub}", permission.resource),
        None => permission.resource.to_owned(),
    };
    format!(
        "{{apiGroups: [\"{}\"], resources: [\"{resource}\"], verbs: [\"{}\"]}}",
        permission.group, permission.verb
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Rule {
        Rule::new(groups, resources, verbs)
    }

    fn permission<'a>(
        verb: &'a str,
        group: &'a str,
        resource: &'a str,
        subresource: Option<&'a str>,
    ) -> Permission<'a> {
        Permission {
            verb,
            group,
            resource,
            subresource,
        }
    }

    #[test]
    fn resources_and_subresources_are_distinct() {
        let grant = Grant::new(vec![rule(&["apps"], &["deployments"], &["get", "list"])]);
        assert!(grant.allows(&permission("list", "apps", "deployments", None)));
        assert!(!grant.allows(&permission("update", "apps", "deployments", Some("scale"))));
        assert!(!grant.allows(&permission("list", "", "deployments", None)));

        let scale = Grant::new(vec![rule(&["apps"], &["deployments/scale"], &["update"])]);
        assert!(scale.allows(&permission("update", "apps", "deployments", Some("scale"))));
        assert!(!scale.allows(&permission("update", "apps", "deployments", None)));
    }

    #[test]
    fn wildcards() {
        let grant = Grant::new(vec![rule(&["*"], &["*/scale"], &["*"])]);
        assert!(grant.allows(&permission("patch", "apps", "statefulsets", Some("scale"))));
        assert!(!grant.allows(&permission("patch", "apps", "statefulsets", None)));
        let all = Grant::new(vec![rule(&["*"], &["*"], &["*"])]);
        assert!(all.allows(&permission("delete", "", "pods", Some("status"))));
    }

    #[test]
    fn a_denial_names_the_permission_and_the_fix() {
        let grant = Grant::new(vec![rule(&["apps"], &["deployments"], &["list"])]);
        let error = grant
            .check(&[
                permission("list", "apps", "deployments", None),
                permission("watch", "apps", "deployments", None),
            ])
            .expect_err("watch is missing");
        assert_eq!(
            error.to_string(),
            "not granted: verb `watch` on resource `deployments` in API group apps; add a rule \
             such as {apiGroups: [\"apps\"], resources: [\"deployments\"], verbs: [\"watch\"]}"
        );
    }

    #[test]
    fn validation_names_the_field() {
        assert!(
            rule(&["apps"], &[], &["get"])
                .validate()
                .unwrap_err()
                .contains("`resources`")
        );
        assert!(
            rule(&["apps"], &["x"], &["steal"])
                .validate()
                .unwrap_err()
                .contains("`steal`")
        );
        assert!(rule(&[""], &["pods"], &["*"]).validate().is_ok());
    }
}
