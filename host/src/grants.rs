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
    /// Where the rules are written, which its denials name; `None`:
    /// they name its rules `grant[N]`, of no file.
    #[serde(skip)]
    pub location: Option<GrantLocation>,
}

/// Where a grant is written, for the messages of its denials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantLocation {
    /// The field holding the rules: `grant`, `spec.grant`.
    pub field: String,
    /// What declares it: ``controller `floor` in controllers.yaml``,
    /// `WasmController team-a/floor`.
    pub declared_by: String,
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

/// Whether one item of a rule's `resources` names the resource (and
/// subresource) of `permission`: `*`, `deployments`, `deployments/scale`,
/// `*/scale`.
fn names_resource(item: &str, permission: &Permission<'_>) -> bool {
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
        self.resources
            .iter()
            .any(|item| names_resource(item, permission))
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
        Self {
            rules,
            location: None,
        }
    }

    /// The same grant, written in `field` of what `declared_by` names.
    #[must_use]
    pub fn written_in(mut self, field: impl Into<String>, declared_by: impl Into<String>) -> Self {
        self.location = Some(GrantLocation {
            field: field.into(),
            declared_by: declared_by.into(),
        });
        self
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
            Some(permission) => {
                let rule_hint = hint(permission);
                let fix = self.near_miss(permission, &rule_hint).unwrap_or_else(|| {
                    match &self.location {
                        Some(location) => format!(
                            "add a rule such as {rule_hint} to `{}` of {}",
                            location.field, location.declared_by
                        ),
                        None => format!("add a rule such as {rule_hint}"),
                    }
                });
                Err(Denied {
                    permission: permission.to_string(),
                    fix,
                })
            }
        }
    }

    /// The rule that probably meant to allow `permission`, and how to
    /// correct it: one whose group and resource each match or are close to
    /// the ones asked for (a typo, the singular, `core` for `""`), one of
    /// them close. A rule that names both but lacks the verb is no typo:
    /// adding the verb to it would grant it on its other resources too.
    fn near_miss(&self, permission: &Permission<'_>, rule_hint: &str) -> Option<String> {
        self.rules.iter().enumerate().find_map(|(index, rule)| {
            let resource = resource_fit(rule, permission);
            let group = group_fit(rule, permission);
            // A rule far from either is about something else.
            let (Some(resource_written), Some(group_written)) =
                (resource.written(), group.written())
            else {
                return None;
            };
            let mut fixes: Vec<String> = [&resource, &group]
                .into_iter()
                .filter_map(Fit::fix)
                .map(str::to_owned)
                .collect();
            if fixes.is_empty() {
                return None;
            }
            if !matches(&rule.verbs, permission.verb) {
                fixes.push(format!(
                    "it lacks verb `{}` too: add a rule such as {rule_hint}",
                    permission.verb
                ));
            }
            let rule_name = match &self.location {
                Some(location) => {
                    format!("`{}[{index}]` of {}", location.field, location.declared_by)
                }
                None => format!("`grant[{index}]`"),
            };
            Some(format!(
                "{rule_name} names resource `{resource_written}` in group {}: {}",
                shown_group(group_written),
                fixes.join("; ")
            ))
        })
    }
}

/// How a rule's groups, or its resources, compare with the one asked for.
enum Fit {
    /// `written` is the one asked for (or a wildcard covering it).
    Matches { written: String },
    /// None is, but `written` probably means it; `fix` says how to write it.
    Close { written: String, fix: String },
    /// None is, nor is close to it.
    Far,
}

impl Fit {
    /// What the rule wrote, unless it is far from what was asked.
    fn written(&self) -> Option<&str> {
        match self {
            Self::Matches { written } | Self::Close { written, .. } => Some(written),
            Self::Far => None,
        }
    }

    /// How to correct a close name.
    fn fix(&self) -> Option<&str> {
        match self {
            Self::Close { fix, .. } => Some(fix),
            Self::Matches { .. } | Self::Far => None,
        }
    }
}

/// How `rule`'s groups compare with the group asked for.
fn group_fit(rule: &Rule, permission: &Permission<'_>) -> Fit {
    let asked = permission.group;
    if let Some(written) = rule
        .api_groups
        .iter()
        .find(|item| *item == "*" || *item == asked)
    {
        return Fit::Matches {
            written: written.clone(),
        };
    }
    let group_of = format!(
        "the group of {} is {}",
        permission.resource,
        shown_group(asked)
    );
    rule.api_groups
        .iter()
        .find_map(|written| {
            let lower = written.to_lowercase();
            let core = matches!(lower.as_str(), "core" | "v1" | "core/v1" | "api");
            let versioned = written
                .split_once('/')
                .is_some_and(|(group, _)| group == asked);
            let fix = if asked.is_empty() && core {
                format!("{group_of}: the core group is written \"\" in `apiGroups`")
            } else if versioned {
                format!("{group_of}: `apiGroups` take no version")
            } else if !asked.is_empty() && close(&lower, asked) {
                group_of.clone()
            } else {
                return None;
            };
            Some(Fit::Close {
                written: written.clone(),
                fix,
            })
        })
        .unwrap_or(Fit::Far)
}

/// How `rule`'s resources compare with the resource (and subresource)
/// asked for.
fn resource_fit(rule: &Rule, permission: &Permission<'_>) -> Fit {
    if let Some(written) = rule
        .resources
        .iter()
        .find(|item| names_resource(item, permission))
    {
        return Fit::Matches {
            written: written.clone(),
        };
    }
    let asked = permission_resource(permission);
    rule.resources
        .iter()
        .find_map(|written| {
            let fix = if permission.subresource.is_some() && *written == permission.resource {
                format!("a subresource is granted on its own: add `{asked}`")
            } else if !written.contains('*') && close(&written.to_lowercase(), &asked) {
                format!("write `{asked}` (resources are plural, lowercase)")
            } else {
                return None;
            };
            Some(Fit::Close {
                written: written.clone(),
                fix,
            })
        })
        .unwrap_or(Fit::Far)
}

/// The resource asked for, as a rule writes it: `deployments/scale`.
fn permission_resource(permission: &Permission<'_>) -> String {
    match permission.subresource {
        Some(sub) => format!("{}/{sub}", permission.resource),
        None => permission.resource.to_owned(),
    }
}

/// A group in backquotes, the core group as `""`.
fn shown_group(group: &str) -> String {
    if group.is_empty() {
        "`\"\"`".to_owned()
    } else {
        format!("`{group}`")
    }
}

/// Whether `written` (lower-cased) is probably a misspelling of `wanted`:
/// the singular of it, or a few letters off (one for a short name, where
/// two would make `nodes` of `pods`).
fn close(written: &str, wanted: &str) -> bool {
    let plural = [
        format!("{written}s"),
        format!("{written}es"),
        format!("{}ies", written.strip_suffix('y').unwrap_or(written)),
    ];
    if written == wanted || plural.iter().any(|plural| plural == wanted) {
        return true;
    }
    let most = if written.len().min(wanted.len()) < 6 {
        1
    } else {
        2
    };
    strsim::damerau_levenshtein(written, wanted) <= most
}

/// A permission the grant does not give.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not granted: {permission}; {fix}")]
pub struct Denied {
    /// The missing permission, in words.
    pub permission: String,
    /// What to change, and where: the rule that was probably meant and
    /// its correction, or a rule to add.
    pub fix: String,
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

    /// The denial of `list` on `resource` of `group` by a grant of `rules`.
    fn denial(rules: Vec<Rule>, group: &str, resource: &str, sub: Option<&str>) -> String {
        Grant::new(rules)
            .check(&[permission("list", group, resource, sub)])
            .expect_err("denied")
            .fix
    }

    #[test]
    fn a_denial_names_the_rule_probably_meant() {
        let list = &["list", "watch"];
        assert_eq!(
            denial(
                vec![rule(&["apps"], &["deployment"], list)],
                "apps",
                "deployments",
                None
            ),
            "`grant[0]` names resource `deployment` in group `apps`: write `deployments` \
             (resources are plural, lowercase)"
        );
        assert_eq!(
            denial(
                vec![
                    rule(&[""], &["configmaps"], list),
                    rule(&["app"], &["deployments"], list)
                ],
                "apps",
                "deployments",
                None
            ),
            "`grant[1]` names resource `deployments` in group `app`: the group of deployments \
             is `apps`"
        );
        assert_eq!(
            denial(
                vec![rule(&["core"], &["ConfigMaps"], list)],
                "",
                "configmaps",
                None
            ),
            "`grant[0]` names resource `ConfigMaps` in group `core`: write `configmaps` \
             (resources are plural, lowercase); the group of configmaps is `\"\"`: the core \
             group is written \"\" in `apiGroups`"
        );
        assert_eq!(
            denial(
                vec![rule(&["apps/v1"], &["deployments"], list)],
                "apps",
                "deployments",
                None
            ),
            "`grant[0]` names resource `deployments` in group `apps/v1`: the group of \
             deployments is `apps`: `apiGroups` take no version"
        );
        assert_eq!(
            denial(
                vec![rule(&["apps"], &["deployments"], list)],
                "apps",
                "deployments",
                Some("scale")
            ),
            "`grant[0]` names resource `deployments` in group `apps`: a subresource is granted \
             on its own: add `deployments/scale`"
        );
        assert_eq!(
            denial(
                vec![rule(&["apps"], &["deploymnets"], &["get"])],
                "apps",
                "deployments",
                None
            ),
            "`grant[0]` names resource `deploymnets` in group `apps`: write `deployments` \
             (resources are plural, lowercase); it lacks verb `list` too: add a rule such as \
             {apiGroups: [\"apps\"], resources: [\"deployments\"], verbs: [\"list\"]}"
        );
        // A rule naming the resource without the verb is no typo.
        assert_eq!(
            denial(
                vec![rule(&["*"], &["*"], &["get"])],
                "apps",
                "deployments",
                None
            ),
            "add a rule such as {apiGroups: [\"apps\"], resources: [\"deployments\"], verbs: \
             [\"list\"]}"
        );
        // Short names a letter or two apart are other resources: no guess.
        assert_eq!(
            denial(vec![rule(&[""], &["nodes"], list)], "", "pods", None),
            "add a rule such as {apiGroups: [\"\"], resources: [\"pods\"], verbs: [\"list\"]}"
        );
    }

    #[test]
    fn a_denial_names_where_the_grant_is_written() {
        let written = |rules| {
            Grant::new(rules)
                .written_in("spec.grant", "WasmController team-a/floor")
                .check(&[permission("list", "apps", "deployments", None)])
                .expect_err("denied")
                .to_string()
        };
        assert_eq!(
            written(vec![rule(&[""], &["pods"], &["list"])]),
            "not granted: verb `list` on resource `deployments` in API group apps; add a rule \
             such as {apiGroups: [\"apps\"], resources: [\"deployments\"], verbs: [\"list\"]} \
             to `spec.grant` of WasmController team-a/floor"
        );
        assert_eq!(
            written(vec![rule(&["apps"], &["deployment"], &["list"])]),
            "not granted: verb `list` on resource `deployments` in API group apps; \
             `spec.grant[0]` of WasmController team-a/floor names resource `deployment` in \
             group `apps`: write `deployments` (resources are plural, lowercase)"
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
