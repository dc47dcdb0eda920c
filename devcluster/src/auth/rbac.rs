//! RBAC: rules, the binding index every request is authorized against, the escalation check,
//! ClusterRole aggregation and the bootstrap policy.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::{Action, Attributes, UserInfo, forbidden_error, service_account_user};
use crate::core::{Core, Target};
use crate::json::{meta_str, now_rfc3339};
use crate::status::ApiError;
use crate::store::Store;

/// The RBAC API group.
pub(crate) const GROUP: &str = "rbac.authorization.k8s.io";
/// Storage keys of the four RBAC resources.
pub(crate) const ROLES: &str = "rbac.authorization.k8s.io/roles";
pub(crate) const CLUSTER_ROLES: &str = "rbac.authorization.k8s.io/clusterroles";
pub(crate) const ROLE_BINDINGS: &str = "rbac.authorization.k8s.io/rolebindings";
pub(crate) const CLUSTER_ROLE_BINDINGS: &str = "rbac.authorization.k8s.io/clusterrolebindings";

/// The default ClusterRoles and ClusterRoleBindings of a fresh cluster (kube-apiserver's
/// bootstrap policy, the part a client can observe).
const BOOTSTRAP_POLICY: &str = include_str!("bootstrap-policy.json");

fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// One rule of a Role or ClusterRole.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PolicyRule {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub verbs: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub api_groups: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub resources: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub resource_names: Vec<String>,
    #[serde(
        default,
        rename = "nonResourceURLs",
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub non_resource_urls: Vec<String>,
}

fn has_or_star(list: &[String], want: &str) -> bool {
    list.iter().any(|v| v == "*" || v == want)
}

fn url_matches(rule: &str, path: &str) -> bool {
    rule == "*"
        || rule == path
        || rule
            .strip_suffix('*')
            .is_some_and(|prefix| path.starts_with(prefix.trim_end_matches('*')))
}

impl PolicyRule {
    /// Whether this rule allows the request (RBAC's `RuleAllows`).
    pub(crate) fn allows(&self, attrs: &Attributes) -> bool {
        if !has_or_star(&self.verbs, &attrs.verb) {
            return false;
        }
        match &attrs.kind {
            Action::Resource {
                group,
                resource,
                subresource,
                name,
                ..
            } => {
                has_or_star(&self.api_groups, group)
                    && self.resources.iter().any(|r| {
                        if r == "*" {
                            return true;
                        }
                        if subresource.is_empty() {
                            return r == resource;
                        }
                        r.split_once('/') == Some((resource.as_str(), subresource.as_str()))
                            || r.strip_prefix("*/") == Some(subresource.as_str())
                    })
                    && (self.resource_names.is_empty() || self.resource_names.contains(name))
            }
            Action::NonResource { path } => self
                .non_resource_urls
                .iter()
                .any(|rule| url_matches(rule, path)),
        }
    }

    /// The rule as the escalation message prints it (`{APIGroups:["*"], Resources:["*"], Verbs:["*"]}`).
    fn compact_string(&self) -> String {
        let quoted = |l: &[String]| {
            let items: Vec<String> = l.iter().map(|s| format!("{s:?}")).collect();
            format!("[{}]", items.join(" "))
        };
        let mut parts = Vec::new();
        for (label, list) in [
            ("APIGroups", &self.api_groups),
            ("Resources", &self.resources),
            ("NonResourceURLs", &self.non_resource_urls),
            ("ResourceNames", &self.resource_names),
            ("Verbs", &self.verbs),
        ] {
            if !list.is_empty() {
                parts.push(format!("{label}:{}", quoted(list)));
            }
        }
        format!("{{{}}}", parts.join(", "))
    }
}

/// The rules of a Role or ClusterRole object.
pub(crate) fn rules_of(obj: &Map<String, Value>) -> Vec<PolicyRule> {
    obj.get("rules")
        .and_then(|r| Vec::<PolicyRule>::deserialize(r).ok())
        .unwrap_or_default()
}

/// What one binding grants one subject.
#[derive(Debug)]
struct Grant {
    /// `None` for a ClusterRoleBinding (everywhere), the namespace of a RoleBinding.
    namespace: Option<String>,
    /// The role's rules, or why they could not be found.
    rules: Result<Arc<[PolicyRule]>, String>,
    /// `ClusterRoleBinding "x" of ClusterRole "y" to Group "z"`, for the allow reason.
    source: String,
}

/// Every binding, indexed by the user name and group it applies to; rebuilt when RBAC objects
/// change, so a request costs a few hash lookups.
#[derive(Debug, Default)]
pub(crate) struct Policy {
    by_user: HashMap<String, Vec<Grant>>,
    by_group: HashMap<String, Vec<Grant>>,
}

/// The answer of the authorizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decision {
    pub allowed: bool,
    pub reason: String,
}

#[derive(Debug, Deserialize)]
struct RoleRef {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    name: String,
}

#[derive(Debug, Deserialize)]
struct Subject {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
}

fn role_ref(obj: &Map<String, Value>) -> Option<RoleRef> {
    obj.get("roleRef")
        .and_then(|r| RoleRef::deserialize(r).ok())
}

fn subjects(obj: &Map<String, Value>) -> Vec<Subject> {
    obj.get("subjects")
        .and_then(|s| Vec::<Subject>::deserialize(s).ok())
        .unwrap_or_default()
}

fn not_found(kind: &str, name: &str) -> String {
    format!("{}.{GROUP} {name:?} not found", kind.to_lowercase())
}

impl Policy {
    /// Indexes the bindings in the store.
    pub(crate) fn build(store: &Store) -> Self {
        let cluster_roles: HashMap<&str, Arc<[PolicyRule]>> = store
            .iter(CLUSTER_ROLES, None)
            .map(|(k, s)| (k.1.as_str(), Arc::from(rules_of(&s.decode()))))
            .collect();
        let roles: HashMap<(&str, &str), Arc<[PolicyRule]>> = store
            .iter(ROLES, None)
            .map(|(k, s)| {
                (
                    (k.0.as_str(), k.1.as_str()),
                    Arc::from(rules_of(&s.decode())),
                )
            })
            .collect();
        let mut policy = Self::default();
        let bindings = store
            .iter(CLUSTER_ROLE_BINDINGS, None)
            .chain(store.iter(ROLE_BINDINGS, None));
        for ((ns, name), stored) in bindings {
            let obj = stored.decode();
            let Some(role) = role_ref(&obj) else { continue };
            let rules = match role.kind.as_str() {
                "ClusterRole" => cluster_roles.get(role.name.as_str()).cloned(),
                "Role" if !ns.is_empty() => roles.get(&(ns.as_str(), role.name.as_str())).cloned(),
                _ => continue,
            }
            .ok_or_else(|| not_found(&role.kind, &role.name));
            let binding = if ns.is_empty() {
                format!("ClusterRoleBinding {name:?}")
            } else {
                format!("RoleBinding {:?}", format!("{name}/{ns}"))
            };
            for subject in subjects(&obj) {
                let (index, key, described) = match subject.kind.as_str() {
                    "User" => (
                        &mut policy.by_user,
                        subject.name.clone(),
                        subject.name.clone(),
                    ),
                    "Group" => (
                        &mut policy.by_group,
                        subject.name.clone(),
                        subject.name.clone(),
                    ),
                    "ServiceAccount" => {
                        let sa_ns = if subject.namespace.is_empty() {
                            ns.as_str()
                        } else {
                            subject.namespace.as_str()
                        };
                        if sa_ns.is_empty() {
                            continue;
                        }
                        (
                            &mut policy.by_user,
                            service_account_user(sa_ns, &subject.name),
                            format!("{}/{sa_ns}", subject.name),
                        )
                    }
                    _ => continue,
                };
                index.entry(key).or_default().push(Grant {
                    namespace: (!ns.is_empty()).then(|| ns.clone()),
                    rules: rules.clone(),
                    source: format!(
                        "{binding} of {} {:?} to {} {described:?}",
                        role.kind, role.name, subject.kind
                    ),
                });
            }
        }
        policy
    }

    /// The grants that apply to a user in `namespace`: cluster-wide ones first.
    fn grants<'a>(&'a self, user: &'a UserInfo, namespace: &'a str) -> Vec<&'a Grant> {
        let all = self.by_user.get(&user.name).into_iter().flatten().chain(
            user.groups
                .iter()
                .filter_map(|g| self.by_group.get(g))
                .flatten(),
        );
        let (cluster, local): (Vec<&Grant>, Vec<&Grant>) = all.partition(|g| g.namespace.is_none());
        cluster
            .into_iter()
            .chain(
                local
                    .into_iter()
                    .filter(|g| !namespace.is_empty() && g.namespace.as_deref() == Some(namespace)),
            )
            .collect()
    }

    /// Whether a binding allows the request, and why (`RBAC: allowed by ...`).
    pub(crate) fn authorize(&self, user: &UserInfo, attrs: &Attributes) -> Decision {
        let mut errors = Vec::new();
        for grant in self.grants(user, attrs.namespace()) {
            match &grant.rules {
                Ok(rules) if rules.iter().any(|r| r.allows(attrs)) => {
                    return Decision {
                        allowed: true,
                        reason: format!("RBAC: allowed by {}", grant.source),
                    };
                }
                Ok(_) => {}
                Err(e) => errors.push(e.clone()),
            }
        }
        Decision {
            allowed: false,
            reason: resolution_reason(&errors),
        }
    }

    /// Every rule a user holds in a namespace ("" for cluster-wide ones only), and the errors
    /// met resolving roles.
    pub(crate) fn rules_for(
        &self,
        user: &UserInfo,
        namespace: &str,
    ) -> (Vec<PolicyRule>, Vec<String>) {
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        for grant in self.grants(user, namespace) {
            match &grant.rules {
                Ok(r) => rules.extend(r.iter().cloned()),
                Err(e) => errors.push(e.clone()),
            }
        }
        (rules, errors)
    }
}

fn resolution_reason(errors: &[String]) -> String {
    match errors {
        [] => String::new(),
        [one] => format!("RBAC: {one}"),
        many => format!("RBAC: [{}]", many.join(", ")),
    }
}

/// Splits a rule into rules of one group, resource, verb and name (RBAC's `BreakdownRule`).
fn breakdown(rule: &PolicyRule) -> Vec<PolicyRule> {
    let mut out = Vec::new();
    let one = |s: &String| vec![s.clone()];
    for group in &rule.api_groups {
        for resource in &rule.resources {
            for verb in &rule.verbs {
                let base = PolicyRule {
                    verbs: one(verb),
                    api_groups: one(group),
                    resources: one(resource),
                    ..PolicyRule::default()
                };
                if rule.resource_names.is_empty() {
                    out.push(base);
                } else {
                    for name in &rule.resource_names {
                        out.push(PolicyRule {
                            resource_names: one(name),
                            ..base.clone()
                        });
                    }
                }
            }
        }
    }
    for url in &rule.non_resource_urls {
        for verb in &rule.verbs {
            out.push(PolicyRule {
                verbs: one(verb),
                non_resource_urls: one(url),
                ..PolicyRule::default()
            });
        }
    }
    out
}

/// Whether `owner` grants everything `sub` (a broken-down rule) does.
fn covers(owner: &PolicyRule, sub: &PolicyRule) -> bool {
    let has_all = |set: &[String], want: &[String]| want.iter().all(|w| set.contains(w));
    let verbs = owner.verbs.iter().any(|v| v == "*") || has_all(&owner.verbs, &sub.verbs);
    let groups =
        owner.api_groups.iter().any(|g| g == "*") || has_all(&owner.api_groups, &sub.api_groups);
    let resources = owner.resources.iter().any(|r| r == "*")
        || sub.resources.iter().all(|r| {
            owner.resources.contains(r)
                || r.split_once('/')
                    .is_some_and(|(_, s)| owner.resources.contains(&format!("*/{s}")))
        });
    let urls = sub.non_resource_urls.iter().all(|want| {
        owner
            .non_resource_urls
            .iter()
            .any(|have| url_matches(have, want))
    });
    let names = if sub.resource_names.is_empty() {
        owner.resource_names.is_empty()
    } else {
        owner.resource_names.is_empty() || has_all(&owner.resource_names, &sub.resource_names)
    };
    verbs && groups && resources && urls && names
}

/// Merges broken-down rules that differ only in their verb (RBAC's `CompactRules`).
fn compact(rules: Vec<PolicyRule>) -> Vec<PolicyRule> {
    let mut out: Vec<PolicyRule> = Vec::new();
    for rule in rules {
        let simple = rule.non_resource_urls.is_empty()
            && rule.api_groups.len() == 1
            && rule.resources.len() == 1
            && rule.resource_names.len() <= 1;
        let same = |r: &PolicyRule| {
            r.non_resource_urls.is_empty()
                && r.api_groups == rule.api_groups
                && r.resources == rule.resources
                && r.resource_names == rule.resource_names
        };
        match out.iter_mut().find(|r| simple && same(r)) {
            Some(existing) => existing.verbs.extend(rule.verbs),
            None => out.push(rule),
        }
    }
    out
}

/// RBAC's `ConfirmNoEscalation`: the user must already hold every rule in `rules` (in
/// `namespace`); the error names the missing ones as kube-apiserver does.
fn confirm_no_escalation(
    policy: &Policy,
    user: &UserInfo,
    namespace: &str,
    rules: &[PolicyRule],
) -> Result<(), String> {
    let (owned, errors) = policy.rules_for(user, namespace);
    let missing: Vec<PolicyRule> = rules
        .iter()
        .flat_map(breakdown)
        .filter(|sub| !owned.iter().any(|o| covers(o, sub)))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let lines: BTreeSet<String> = compact(missing)
        .iter()
        .map(PolicyRule::compact_string)
        .collect();
    let groups: Vec<String> = user.groups.iter().map(|g| format!("{g:?}")).collect();
    let mut msg = format!(
        "user {:?} (groups=[{}]) is attempting to grant RBAC permissions not currently held:\n{}",
        user.name,
        groups.join(" "),
        lines.into_iter().collect::<Vec<_>>().join("\n")
    );
    if !errors.is_empty() {
        msg.push_str(&format!("; resolution errors: [{}]", errors.join(" ")));
    }
    Err(msg)
}

/// The escalation check on writes of Roles, ClusterRoles and their bindings: refused unless
/// the writer is in `system:masters`, holds `escalate` (roles) or `bind` (bindings), or already
/// holds every granted permission.
pub(crate) fn admit(
    core: &mut Core,
    t: &Target,
    obj: &Map<String, Value>,
    user: &UserInfo,
) -> Result<(), ApiError> {
    let storage = &*t.res.storage;
    if !matches!(
        storage,
        ROLES | CLUSTER_ROLES | ROLE_BINDINGS | CLUSTER_ROLE_BINDINGS
    ) || user.is_master()
    {
        return Ok(());
    }
    let policy = core.policy();
    let name = meta_str(obj, "name").unwrap_or_default();
    let ns = t.ns();
    let refuse = |why: String| forbidden_error(&t.res.plural, GROUP, name, &why);
    if matches!(storage, ROLES | CLUSTER_ROLES) {
        let escalate = Attributes::resource("escalate", GROUP, &t.res.plural, "", ns, name);
        if policy.authorize(user, &escalate).allowed {
            return Ok(());
        }
        confirm_no_escalation(&policy, user, ns, &rules_of(obj)).map_err(refuse)?;
        if storage == CLUSTER_ROLES && obj.get("aggregationRule").is_some_and(|a| !a.is_null()) {
            let everything = [
                PolicyRule {
                    verbs: vec!["*".into()],
                    api_groups: vec!["*".into()],
                    resources: vec!["*".into()],
                    ..PolicyRule::default()
                },
                PolicyRule {
                    verbs: vec!["*".into()],
                    non_resource_urls: vec!["*".into()],
                    ..PolicyRule::default()
                },
            ];
            confirm_no_escalation(&policy, user, "", &everything).map_err(|_| {
                refuse("must have cluster-admin privileges to use the aggregationRule".into())
            })?;
        }
        return Ok(());
    }
    let Some(role) = role_ref(obj) else {
        return Ok(());
    };
    let plural = if role.kind == "Role" {
        "roles"
    } else {
        "clusterroles"
    };
    let bind = Attributes::resource("bind", GROUP, plural, "", ns, &role.name);
    if policy.authorize(user, &bind).allowed {
        return Ok(());
    }
    let stored = match role.kind.as_str() {
        "Role" => core.store.get(ROLES, ns, &role.name),
        _ => core.store.get(CLUSTER_ROLES, "", &role.name),
    };
    let Some(stored) = stored else {
        return Err(refuse(not_found(&role.kind, &role.name)));
    };
    confirm_no_escalation(&policy, user, ns, &rules_of(&stored.decode())).map_err(refuse)
}

/// Whether a `metav1.LabelSelector` (as JSON) matches labels; an empty selector matches all.
fn selector_matches(selector: &Value, labels: &[(String, String)]) -> bool {
    let label = |k: &str| {
        labels
            .iter()
            .find(|(lk, _)| lk == k)
            .map(|(_, v)| v.as_str())
    };
    let match_labels = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(|m| m.iter().all(|(k, v)| label(k) == v.as_str()));
    let expressions = selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .is_none_or(|exprs| {
            exprs.iter().all(|e| {
                let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
                let values: Vec<&str> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|v| v.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                match e.get("operator").and_then(Value::as_str) {
                    Some("In") => label(key).is_some_and(|v| values.contains(&v)),
                    Some("NotIn") => label(key).is_none_or(|v| !values.contains(&v)),
                    Some("Exists") => label(key).is_some(),
                    Some("DoesNotExist") => label(key).is_none(),
                    _ => false,
                }
            })
        });
    match_labels && expressions
}

/// A ClusterRole with its name and labels.
type NamedRole = (String, Map<String, Value>, crate::store::Labels);

/// Fills the rules of every ClusterRole with an `aggregationRule` from the ClusterRoles its
/// selectors pick (sorted by name, duplicates dropped), as kube-controller-manager's
/// aggregation controller does; repeated until nothing changes, so `admin` sees `edit`'s rules.
pub(crate) fn aggregate(core: &mut Core) {
    let storage: Arc<str> = Arc::from(CLUSTER_ROLES);
    for _ in 0..8 {
        let roles: Vec<NamedRole> = core
            .store
            .iter(CLUSTER_ROLES, None)
            .map(|(k, s)| (k.1.clone(), s.decode(), s.labels.clone()))
            .collect();
        let mut changed = false;
        for (name, role, _) in &roles {
            let Some(selectors) = role
                .get("aggregationRule")
                .and_then(|a| a.get("clusterRoleSelectors"))
                .and_then(Value::as_array)
            else {
                continue;
            };
            let mut rules: Vec<Value> = Vec::new();
            for selector in selectors {
                for (other, other_role, labels) in &roles {
                    if other == name || !selector_matches(selector, labels) {
                        continue;
                    }
                    for rule in other_role
                        .get("rules")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        if !rules.contains(rule) {
                            rules.push(rule.clone());
                        }
                    }
                }
            }
            let current = role.get("rules").and_then(Value::as_array);
            if current.map_or(rules.is_empty(), |c| *c == rules) {
                continue;
            }
            let mut updated = role.clone();
            updated.insert("rules".into(), Value::Array(rules));
            core.store.put(&storage, updated);
            changed = true;
        }
        if !changed {
            break;
        }
    }
}

/// Stores the bootstrap ClusterRoles and ClusterRoleBindings that are missing (all of them on a
/// fresh cluster; a stored cluster keeps its own), then aggregates.
pub(crate) fn seed(core: &mut Core) {
    let Ok(Value::Object(policy)) = serde_json::from_str::<Value>(BOOTSTRAP_POLICY) else {
        tracing::error!("the built-in bootstrap policy does not parse");
        return;
    };
    let now = now_rfc3339();
    for (field, storage) in [
        ("clusterRoles", CLUSTER_ROLES),
        ("clusterRoleBindings", CLUSTER_ROLE_BINDINGS),
    ] {
        let storage: Arc<str> = Arc::from(storage);
        for item in policy
            .get(field)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Value::Object(mut obj) = item.clone() else {
                continue;
            };
            let name = meta_str(&obj, "name").unwrap_or_default();
            if core.store.get(&storage, "", name).is_some() {
                continue;
            }
            let m = crate::json::meta_mut(&mut obj);
            m.insert("uid".into(), Value::from(uuid::Uuid::new_v4().to_string()));
            m.insert("creationTimestamp".into(), Value::from(now.clone()));
            core.store.put(&storage, obj);
        }
    }
    aggregate(core);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(v: Value) -> PolicyRule {
        serde_json::from_value(v).unwrap()
    }

    fn core() -> Core {
        Core::new(100, std::time::Duration::from_millis(1))
    }

    fn put(core: &mut Core, storage: &str, v: Value) {
        let Value::Object(m) = v else { panic!() };
        core.store.put(&Arc::from(storage), m);
    }

    #[test]
    fn rules_match_verbs_groups_subresources_names_and_paths() {
        let r = rule(
            json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods/log", "configmaps"], "resourceNames": ["a"]}),
        );
        assert!(r.allows(&Attributes::resource("get", "", "pods", "log", "n", "a")));
        assert!(!r.allows(&Attributes::resource("get", "", "pods", "", "n", "a")));
        assert!(!r.allows(&Attributes::resource("get", "", "configmaps", "", "n", "b")));
        assert!(!r.allows(&Attributes::resource(
            "list",
            "",
            "configmaps",
            "",
            "n",
            "a"
        )));
        let star = rule(json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*/scale"]}));
        assert!(star.allows(&Attributes::resource(
            "update",
            "apps",
            "deployments",
            "scale",
            "n",
            "d"
        )));
        let urls = rule(json!({"verbs": ["get"], "nonResourceURLs": ["/apis/*", "/version"]}));
        let path = |p: &str| Attributes {
            verb: "get".into(),
            kind: Action::NonResource { path: p.into() },
        };
        assert!(urls.allows(&path("/apis/apps/v1")));
        assert!(urls.allows(&path("/version")));
        assert!(!urls.allows(&path("/version/")));
    }

    #[test]
    fn a_fresh_cluster_aggregates_view_edit_and_admin() {
        let core = core();
        let view = core.store.get(CLUSTER_ROLES, "", "view").unwrap().decode();
        let edit = core.store.get(CLUSTER_ROLES, "", "edit").unwrap().decode();
        let admin = core.store.get(CLUSTER_ROLES, "", "admin").unwrap().decode();
        let (v, e, a) = (rules_of(&view), rules_of(&edit), rules_of(&admin));
        assert!(!v.is_empty());
        assert!(v.iter().all(|r| e.contains(r)), "edit includes view");
        assert!(e.iter().all(|r| a.contains(r)), "admin includes edit");
        let list_secrets = Attributes::resource("list", "", "secrets", "", "n", "");
        assert!(
            !v.iter().any(|r| r.allows(&list_secrets)),
            "view cannot read secrets"
        );
        assert!(e.iter().any(|r| r.allows(&list_secrets)));
    }

    #[test]
    fn bindings_grant_in_their_namespace_only_and_explain_themselves() {
        let mut core = core();
        put(
            &mut core,
            ROLE_BINDINGS,
            json!({"metadata": {"name": "viewers", "namespace": "facts"},
                   "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "view"},
                   "subjects": [{"kind": "ServiceAccount", "name": "viewer"}]}),
        );
        put(
            &mut core,
            ROLE_BINDINGS,
            json!({"metadata": {"name": "dangling", "namespace": "other"},
                   "roleRef": {"apiGroup": GROUP, "kind": "Role", "name": "gone"},
                   "subjects": [{"kind": "ServiceAccount", "name": "viewer", "namespace": "facts"}]}),
        );
        let policy = core.policy();
        let sa = UserInfo::service_account("facts", "viewer", "u");
        let here = policy.authorize(
            &sa,
            &Attributes::resource("list", "", "configmaps", "", "facts", ""),
        );
        assert!(here.allowed);
        assert_eq!(
            here.reason,
            r#"RBAC: allowed by RoleBinding "viewers/facts" of ClusterRole "view" to ServiceAccount "viewer/facts""#
        );
        let elsewhere = policy.authorize(
            &sa,
            &Attributes::resource("list", "", "configmaps", "", "other", ""),
        );
        assert!(!elsewhere.allowed);
        assert_eq!(
            elsewhere.reason,
            r#"RBAC: role.rbac.authorization.k8s.io "gone" not found"#
        );
        assert!(
            !policy
                .authorize(
                    &sa,
                    &Attributes::resource("create", "", "configmaps", "", "facts", "")
                )
                .allowed
        );
        let discovery = Attributes {
            verb: "get".into(),
            kind: Action::NonResource {
                path: "/api".into(),
            },
        };
        assert!(policy.authorize(&sa, &discovery).allowed);
        assert!(!policy.authorize(&UserInfo::anonymous(), &discovery).allowed);
    }

    #[test]
    fn escalation_is_described_as_the_apiserver_does() {
        let core = core();
        let policy = Policy::build(&core.store);
        let user = UserInfo::service_account("facts", "binder", "u");
        let admin_rules = rules_of(
            &core
                .store
                .get(CLUSTER_ROLES, "", "cluster-admin")
                .unwrap()
                .decode(),
        );
        let err = confirm_no_escalation(&policy, &user, "facts", &admin_rules).unwrap_err();
        assert_eq!(
            err,
            "user \"system:serviceaccount:facts:binder\" (groups=[\"system:serviceaccounts\" \"system:serviceaccounts:facts\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"*\"], Resources:[\"*\"], Verbs:[\"*\"]}\n{NonResourceURLs:[\"*\"], Verbs:[\"*\"]}"
        );
        let basic = rules_of(
            &core
                .store
                .get(CLUSTER_ROLES, "", "system:basic-user")
                .unwrap()
                .decode(),
        );
        assert!(confirm_no_escalation(&policy, &user, "facts", &basic).is_ok());
        let two = [rule(
            json!({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["secrets"]}),
        )];
        let err = confirm_no_escalation(&policy, &user, "facts", &two).unwrap_err();
        assert!(
            err.ends_with("{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\" \"list\"]}"),
            "{err}"
        );
    }
}
