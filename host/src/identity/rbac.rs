//! The host's own rights, written down: the ClusterRole (and, for the
//! ServiceAccounts controllers act as, a Role per namespace) that a host
//! needs for what it will run, as `paddock rbac` prints them.
//!
//! What the host does itself:
//! - for a controller that acts as the host, everything its grant allows
//!   (the host performs its actions), and `get`, `list` and `watch` of
//!   whatever the grant lets it read at all (the host's informers serve its
//!   watches and reads);
//! - for a controller that acts as a ServiceAccount, only those reads of
//!   its grant (its informers and cache are the host's), `impersonate` on
//!   that ServiceAccount (a Role in its namespace), `create` on
//!   SubjectAccessReviews and `list`/`watch` of the RBAC kinds (to forget
//!   reviews when RBAC changes);
//! - always, events (`create`, `patch`: the host reports denials and
//!   failures on the primary object);
//! - with `--from-cluster`, the controller resources, their status and the
//!   ConfigMaps that hold modules, `impersonate` on every ServiceAccount
//!   (a tenant names its own), and the reads its tenants' watches need,
//!   which are served by the host's informers.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::ServiceAccount;
use crate::config::ControllersFile;
use crate::grants::Rule;

/// What the rights are for.
#[derive(Debug, Clone, Default)]
pub struct HostPlan<'a> {
    /// The controllers file the host will run, if any.
    pub file: Option<&'a ControllersFile>,
    /// Whether it runs the cluster's controller resources (`--from-cluster`).
    pub from_cluster: bool,
    /// With `from_cluster`: the resources tenants' controllers may watch,
    /// as `resource` or `resource.group` (`deployments.apps`); empty for
    /// every resource.
    pub tenant_reads: Vec<String>,
    /// The namespace of the Leases of the ring the host joins
    /// (`--replication`), if it joins one.
    pub lease_namespace: Option<String>,
}

/// The objects that give the host its rights.
#[derive(Debug, Clone)]
pub struct HostRbac {
    /// The cluster-wide rights.
    pub cluster_role: ClusterRole,
    /// Binds them to the host's ServiceAccount.
    pub cluster_role_binding: ClusterRoleBinding,
    /// Per namespace, `impersonate` on the ServiceAccounts controllers act
    /// as there.
    pub roles: Vec<(Role, RoleBinding)>,
}

impl HostRbac {
    /// Every object, as one YAML stream (`kubectl apply -f -` reads it).
    ///
    /// # Errors
    ///
    /// When an object cannot be written as YAML.
    pub fn to_yaml(&self) -> Result<String, serde_saphyr::ser::Error> {
        let mut out = String::new();
        let mut push = |object: serde_json::Value| -> Result<(), serde_saphyr::ser::Error> {
            if !out.is_empty() {
                out.push_str("---\n");
            }
            out.push_str(&serde_saphyr::to_string(&object)?);
            Ok(())
        };
        push(typed(&self.cluster_role))?;
        push(typed(&self.cluster_role_binding))?;
        for (role, binding) in &self.roles {
            push(typed(role))?;
            push(typed(binding))?;
        }
        Ok(out)
    }
}

/// An object as JSON with its `apiVersion` and `kind`.
fn typed<K: k8s_openapi::Resource + serde::Serialize>(object: &K) -> serde_json::Value {
    let mut value = serde_json::to_value(object).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        map.insert("apiVersion".into(), K::API_VERSION.into());
        map.insert("kind".into(), K::KIND.into());
    }
    value
}

const READ: [&str; 3] = ["get", "list", "watch"];

/// A set of rules, merged by group and resource.
#[derive(Debug, Default)]
struct Rules {
    /// (group, resource) → verbs.
    by_resource: BTreeMap<(String, String), BTreeSet<String>>,
    /// (group, resource) → names, for rules limited to names.
    named: BTreeMap<(String, String, String), BTreeSet<String>>,
}

impl Rules {
    fn add(&mut self, groups: &[String], resources: &[String], verbs: &[&str]) {
        if verbs.is_empty() {
            return;
        }
        for group in groups {
            for resource in resources {
                self.by_resource
                    .entry((group.clone(), resource.clone()))
                    .or_default()
                    .extend(verbs.iter().map(|verb| (*verb).to_owned()));
            }
        }
    }

    fn add_one(&mut self, group: &str, resources: &[&str], verbs: &[&str]) {
        let resources: Vec<String> = resources.iter().map(|r| (*r).to_owned()).collect();
        self.add(&[group.to_owned()], &resources, verbs);
    }

    fn add_named(&mut self, group: &str, resource: &str, verb: &str, name: &str) {
        self.named
            .entry((group.to_owned(), resource.to_owned(), verb.to_owned()))
            .or_default()
            .insert(name.to_owned());
    }

    /// The rules, one per group and verb set, resources merged.
    fn policy(&self) -> Vec<PolicyRule> {
        let mut merged: BTreeMap<(String, Vec<String>), BTreeSet<String>> = BTreeMap::new();
        for ((group, resource), verbs) in &self.by_resource {
            let verbs = if verbs.contains("*") {
                vec!["*".to_owned()]
            } else {
                verbs.iter().cloned().collect()
            };
            merged
                .entry((group.clone(), verbs))
                .or_default()
                .insert(resource.clone());
        }
        let mut rules: Vec<PolicyRule> = merged
            .into_iter()
            .map(|((group, verbs), resources)| PolicyRule {
                api_groups: Some(vec![group]),
                resources: Some(resources.into_iter().collect()),
                verbs,
                ..PolicyRule::default()
            })
            .collect();
        rules.extend(
            self.named
                .iter()
                .map(|((group, resource, verb), names)| PolicyRule {
                    api_groups: Some(vec![group.clone()]),
                    resources: Some(vec![resource.clone()]),
                    resource_names: Some(names.iter().cloned().collect()),
                    verbs: vec![verb.clone()],
                    ..PolicyRule::default()
                }),
        );
        rules
    }
}

/// The verbs of `rule` that read.
/// What the host's informers need for a grant's rule: all of `get`, `list`
/// and `watch` when the rule lets the guest read at all (a guest may watch
/// or read from the cache what it may `get` or `list`, and the host's
/// informers list and watch it), none otherwise.
fn reads(rule: &Rule) -> Vec<&'static str> {
    let reads = rule
        .verbs
        .iter()
        .any(|granted| granted == "*" || READ.contains(&granted.as_str()));
    if reads { READ.to_vec() } else { Vec::new() }
}

/// The rights the host needs for `plan`, bound to its ServiceAccount
/// `host` under the name `name`.
pub fn host_rbac(plan: &HostPlan<'_>, name: &str, host: &ServiceAccount) -> HostRbac {
    let mut cluster = Rules::default();
    // The host's reports (denials, failures) on primary objects.
    cluster.add_one("", &["events"], &["create", "patch"]);
    cluster.add_one("events.k8s.io", &["events"], &["create", "patch"]);
    let mut identities = false;
    let mut impersonated: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for controller in plan
        .file
        .map(|file| file.controllers.as_slice())
        .unwrap_or_default()
    {
        match controller.service_account() {
            None => {
                for rule in &controller.grant {
                    let verbs: Vec<&str> = rule.verbs.iter().map(String::as_str).collect();
                    cluster.add(&rule.api_groups, &rule.resources, &verbs);
                    cluster.add(&rule.api_groups, &rule.resources, &reads(rule));
                }
            }
            Some(account) => {
                identities = true;
                for rule in &controller.grant {
                    cluster.add(&rule.api_groups, &rule.resources, &reads(rule));
                }
                impersonated
                    .entry(account.namespace.clone())
                    .or_default()
                    .insert(account.name.clone());
            }
        }
    }
    if plan.from_cluster {
        identities = true;
        cluster.add_one(
            crate::actions::PADDOCK_GROUP,
            &["wasmcontrollers", "clusterwasmcontrollers"],
            &READ,
        );
        cluster.add_one(
            crate::actions::PADDOCK_GROUP,
            &["wasmcontrollers/status", "clusterwasmcontrollers/status"],
            &["get", "update", "patch"],
        );
        cluster.add_one("", &["configmaps"], &READ);
        // A tenant names its own ServiceAccount.
        cluster.add_one("", &["serviceaccounts"], &["impersonate"]);
        if plan.tenant_reads.is_empty() {
            cluster.add_one("*", &["*"], &READ);
        }
        for read in &plan.tenant_reads {
            let (resource, group) = read.split_once('.').unwrap_or((read.as_str(), ""));
            cluster.add_one(group, &[resource], &READ);
        }
    }
    if identities {
        cluster.add_one(
            "authorization.k8s.io",
            &["subjectaccessreviews"],
            &["create"],
        );
        cluster.add_one(
            "rbac.authorization.k8s.io",
            &[
                "roles",
                "rolebindings",
                "clusterroles",
                "clusterrolebindings",
            ],
            &["list", "watch"],
        );
    }
    let subject = Subject {
        kind: "ServiceAccount".into(),
        name: host.name.clone(),
        namespace: Some(host.namespace.clone()),
        ..Subject::default()
    };
    let meta = |namespace: Option<&str>| ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(BTreeMap::from([(
            "app.kubernetes.io/name".to_owned(),
            "paddock".to_owned(),
        )])),
        ..ObjectMeta::default()
    };
    let mut namespaced: BTreeMap<String, Rules> = BTreeMap::new();
    for (namespace, accounts) in impersonated {
        let rules = namespaced.entry(namespace).or_default();
        for account in &accounts {
            rules.add_named("", "serviceaccounts", "impersonate", account);
        }
    }
    if let Some(namespace) = &plan.lease_namespace {
        // The ring: its leader Lease, the members' Leases, listed by label.
        namespaced.entry(namespace.clone()).or_default().add_one(
            "coordination.k8s.io",
            &["leases"],
            &[
                "get", "list", "watch", "create", "update", "patch", "delete",
            ],
        );
    }
    let roles = namespaced
        .into_iter()
        .map(|(namespace, rules)| {
            let role = Role {
                metadata: meta(Some(&namespace)),
                rules: Some(rules.policy()),
            };
            let binding = RoleBinding {
                metadata: meta(Some(&namespace)),
                role_ref: RoleRef {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: "Role".into(),
                    name: name.to_owned(),
                },
                subjects: Some(vec![subject.clone()]),
            };
            (role, binding)
        })
        .collect();
    HostRbac {
        cluster_role: ClusterRole {
            metadata: meta(None),
            rules: Some(cluster.policy()),
            ..ClusterRole::default()
        },
        cluster_role_binding: ClusterRoleBinding {
            metadata: meta(None),
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "ClusterRole".into(),
                name: name.to_owned(),
            },
            subjects: Some(vec![subject]),
        },
        roles,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> ControllersFile {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("guest.wasm"), b"").expect("write");
        ControllersFile::parse(&dir.path().join("controllers.yaml"), text).expect("valid")
    }

    fn rules(rbac: &HostRbac) -> Vec<(String, String, Vec<String>)> {
        rbac.cluster_role
            .rules
            .iter()
            .flatten()
            .flat_map(|rule| {
                let group = rule.api_groups.clone().unwrap_or_default().join(",");
                rule.resources
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |resource| (group.clone(), resource, rule.verbs.clone()))
            })
            .collect()
    }

    #[test]
    fn a_controller_acting_as_the_host_needs_its_grant_and_one_acting_as_a_service_account_its_reads()
     {
        let file = file(
            "controllers:
- name: floor
  module: guest.wasm
  grant:
  - {apiGroups: [apps], resources: [deployments], verbs: [get, list, watch]}
  - {apiGroups: [apps], resources: [deployments/scale], verbs: [patch]}
  - {apiGroups: [''], resources: [namespaces], verbs: [get]}
- name: tenant
  module: guest.wasm
  serviceAccount: shop/tenant
  grant:
  - {apiGroups: [''], resources: [configmaps], verbs: [get, list, watch, patch]}
  - {apiGroups: [''], resources: [secrets], verbs: [create]}
",
        );
        let host = ServiceAccount::new("paddock-system", "paddock");
        let plan = HostPlan {
            file: Some(&file),
            ..HostPlan::default()
        };
        let rbac = host_rbac(&plan, "paddock", &host);
        let rules = rules(&rbac);
        let has = |group: &str, resource: &str, verbs: &[&str]| {
            rules.iter().any(|(g, r, v)| {
                g == group
                    && r == resource
                    && v.iter().map(String::as_str).eq(verbs.iter().copied())
            })
        };
        assert!(
            has("apps", "deployments", &["get", "list", "watch"]),
            "{rules:?}"
        );
        assert!(has("apps", "deployments/scale", &["patch"]), "{rules:?}");
        // What the guest may `get` it may read from the cache, which the
        // host's informers list and watch.
        assert!(
            has("", "namespaces", &["get", "list", "watch"]),
            "{rules:?}"
        );
        // The ServiceAccount's controller: the host reads, it writes.
        assert!(
            has("", "configmaps", &["get", "list", "watch"]),
            "{rules:?}"
        );
        assert!(!rules.iter().any(|(_, r, _)| r == "secrets"), "{rules:?}");
        assert!(has(
            "authorization.k8s.io",
            "subjectaccessreviews",
            &["create"]
        ));
        assert!(has(
            "rbac.authorization.k8s.io",
            "rolebindings",
            &["list", "watch"]
        ));
        let [(role, binding)] = rbac.roles.as_slice() else {
            panic!("one Role for the namespace shop: {:?}", rbac.roles);
        };
        assert_eq!(role.metadata.namespace.as_deref(), Some("shop"));
        let rule = &role.rules.as_ref().expect("rules")[0];
        assert_eq!(rule.verbs, ["impersonate"]);
        assert_eq!(
            rule.resource_names.as_deref(),
            Some(&["tenant".to_owned()][..])
        );
        assert_eq!(
            binding.subjects.as_ref().expect("subjects")[0]
                .namespace
                .as_deref(),
            Some("paddock-system")
        );
        let yaml = rbac.to_yaml().expect("YAML");
        assert_eq!(yaml.split("---\n").count(), 4, "{yaml}");
    }

    #[test]
    fn a_host_in_a_ring_may_keep_leases_in_its_namespace_only() {
        let host = ServiceAccount::new("paddock-system", "paddock");
        let plan = HostPlan {
            from_cluster: true,
            lease_namespace: Some("paddock-system".into()),
            ..HostPlan::default()
        };
        let rbac = host_rbac(&plan, "paddock", &host);
        assert!(
            !rules(&rbac).iter().any(|(_, r, _)| r == "leases"),
            "no cluster-wide rights on Leases"
        );
        let [(role, binding)] = rbac.roles.as_slice() else {
            panic!("one Role for the ring's namespace: {:?}", rbac.roles);
        };
        assert_eq!(role.metadata.namespace.as_deref(), Some("paddock-system"));
        assert_eq!(binding.role_ref.name, "paddock");
        let rule = &role.rules.as_ref().expect("rules")[0];
        assert_eq!(
            rule.api_groups.as_deref(),
            Some(&["coordination.k8s.io".to_owned()][..])
        );
        assert_eq!(rule.resources.as_deref(), Some(&["leases".to_owned()][..]));
        for verb in ["get", "create", "update", "delete", "list"] {
            assert!(rule.verbs.iter().any(|v| v == verb), "{verb}: {rule:?}");
        }
    }
}
