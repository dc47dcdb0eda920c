//! Tenancy: what a tenant's `WasmController` gets whatever its spec says.
//! It works only in its own namespace (other namespaces and cluster-scoped
//! rights are cut), acts as a ServiceAccount of that namespace, and its
//! limits are capped by the host's tenant limits; every cut is said in its
//! status. Which resources are cluster-scoped comes from kube's discovery,
//! asked again as [`MAX_AGE`] passes or when a grant names something it did
//! not find.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use kube::Client;
use kube::discovery::Scope;

use crate::cluster::MAX_AGE;
use crate::config::{LimitsSpec, check_settings};
use crate::crd::ControllerSettings;
use crate::grants::Rule;
use crate::identity::ServiceAccount;

/// The caps a tenant's `WasmController` gets, whatever its spec says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantLimits {
    /// The largest memory cap, in MiB.
    pub max_memory_mib: u64,
    /// The longest deadline, in milliseconds.
    pub max_deadline_ms: u64,
    /// The most reconciles at once.
    pub max_concurrency: usize,
    /// The most actions per answer.
    pub max_actions: u32,
    /// The most bytes per answer.
    pub max_answer_bytes: u64,
    /// The longest log line, in bytes.
    pub max_log_line_bytes: u32,
    /// The most log bytes per call.
    pub max_log_bytes_per_call: u64,
    /// The most log lines per second per controller.
    pub max_log_lines_per_second: u32,
    /// The shortest `requeue-after` a tenant may get, in milliseconds (a
    /// floor: a tenant's `minRequeueMs` below it is raised).
    pub min_requeue_ms: u64,
    /// The most `WasmController`s that run in one namespace; the others
    /// are refused (oldest first run).
    pub max_controllers_per_namespace: usize,
    /// The ServiceAccount (in its own namespace) a `WasmController` that
    /// names none acts as; `None`: such a controller is refused.
    pub default_service_account: Option<String>,
    /// The registries (`host[:port]`) a `WasmController`'s image may come
    /// from; empty: any. Without a list, a tenant makes the host connect
    /// to whatever registry it names.
    pub registries: Vec<String>,
}

impl Default for TenantLimits {
    fn default() -> Self {
        Self {
            max_memory_mib: 128,
            max_deadline_ms: 1000,
            max_concurrency: 2,
            max_actions: 100,
            max_answer_bytes: 1024 * 1024,
            max_log_line_bytes: 4096,
            max_log_bytes_per_call: 16 * 1024,
            max_log_lines_per_second: 20,
            min_requeue_ms: 1000,
            max_controllers_per_namespace: 10,
            default_service_account: None,
            registries: Vec::new(),
        }
    }
}

/// Lowers `value` to `cap` when it is above it, saying so in `cut`.
pub(super) fn lower_to<T: PartialOrd + Copy + std::fmt::Display>(
    cut: &mut Vec<String>,
    field: &str,
    value: &mut T,
    cap: T,
) {
    if *value > cap {
        cut.push(format!(
            "spec.limits.{field}: {value} lowered to the host's tenant cap {cap}"
        ));
        *value = cap;
    }
}

/// Checks a resource's settings as tenancy left them (its namespaces and
/// limits), naming the field under `spec.` in the error.
pub(super) fn check_spec(
    settings: &ControllerSettings,
    namespaces: &[String],
    limits: &LimitsSpec,
) -> Result<(), String> {
    check_settings(namespaces, &settings.grant, limits, &settings.queue)
        .map_err(|(field, problem)| format!("spec.{field}: {problem}"))
}

/// What a tenant's `spec.namespaces` loses: every namespace but its own.
pub(super) fn namespaces_cut(own: &str, namespaces: &[String]) -> Option<String> {
    let others: Vec<&str> = namespaces
        .iter()
        .map(String::as_str)
        .filter(|ns| *ns != own)
        .collect();
    (!others.is_empty()).then(|| {
        format!(
            "spec.namespaces: {} (a WasmController works only in its own namespace, {own})",
            others.join(", ")
        )
    })
}

/// A tenant's limits capped by the host's tenant limits (and its
/// `minRequeueMs` raised to the floor), each change said in `cut`.
pub(super) fn cap_limits(
    mut limits: LimitsSpec,
    tenant: &TenantLimits,
    cut: &mut Vec<String>,
) -> LimitsSpec {
    lower_to(
        cut,
        "memoryMiB",
        &mut limits.memory_mib,
        tenant.max_memory_mib,
    );
    lower_to(
        cut,
        "deadlineMs",
        &mut limits.deadline_ms,
        tenant.max_deadline_ms,
    );
    lower_to(
        cut,
        "concurrency",
        &mut limits.concurrency,
        tenant.max_concurrency,
    );
    lower_to(
        cut,
        "maxActions",
        &mut limits.max_actions,
        tenant.max_actions,
    );
    lower_to(
        cut,
        "maxAnswerBytes",
        &mut limits.max_answer_bytes,
        tenant.max_answer_bytes,
    );
    lower_to(
        cut,
        "maxLogLineBytes",
        &mut limits.max_log_line_bytes,
        tenant.max_log_line_bytes,
    );
    lower_to(
        cut,
        "maxLogBytesPerCall",
        &mut limits.max_log_bytes_per_call,
        tenant.max_log_bytes_per_call,
    );
    lower_to(
        cut,
        "logLinesPerSecond",
        &mut limits.log_lines_per_second,
        tenant.max_log_lines_per_second,
    );
    if limits.min_requeue_ms < tenant.min_requeue_ms {
        cut.push(format!(
            "spec.limits.minRequeueMs: {} raised to the host's tenant floor {}",
            limits.min_requeue_ms, tenant.min_requeue_ms
        ));
        limits.min_requeue_ms = tenant.min_requeue_ms;
    }
    limits
}

/// The least time between two discoveries asked for because a rule names
/// a group or resource the last one did not find: a rule naming something
/// that does not exist must not make every pass ask again.
const SCOPES_MIN_REFRESH: Duration = Duration::from_secs(10);

/// Which resources of the cluster are cluster-scoped, from kube's
/// discovery of the groups the grants name (of every group, once a rule
/// names `*`). Asked again when older than [`MAX_AGE`], and when a rule
/// names a group or resource it did not find (a CRD created since), at
/// most once per [`SCOPES_MIN_REFRESH`].
#[derive(Debug, Default)]
pub(super) struct Scopes {
    found: Option<FoundScopes>,
}

/// One discovery of the cluster's resources.
struct FoundScopes {
    discovery: kube::Discovery,
    at: Instant,
    /// Whether every group was asked for.
    all: bool,
    /// The groups asked for, when not all.
    groups: BTreeSet<String>,
}

impl std::fmt::Debug for FoundScopes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FoundScopes")
            .field("all", &self.all)
            .field("groups", &self.groups)
            .finish_non_exhaustive()
    }
}

impl FoundScopes {
    /// `(plural, namespaced)` of every resource of `group`.
    fn resources(&self, group: &str) -> Vec<(String, bool)> {
        self.discovery
            .get(group)
            .map(|group| {
                group
                    .recommended_resources()
                    .into_iter()
                    .map(|(resource, capabilities)| {
                        (resource.plural, capabilities.scope == Scope::Namespaced)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether every group and resource the rules name by name was found.
    fn knows(&self, grant: &[Rule]) -> bool {
        grant.iter().all(|rule| {
            rule.api_groups
                .iter()
                .filter(|group| *group != "*")
                .all(|group| {
                    let resources = self.resources(group);
                    !resources.is_empty()
                        && rule.resources.iter().all(|resource| {
                            let base = resource.split('/').next().unwrap_or(resource);
                            base == "*" || resources.iter().any(|(plural, _)| plural == base)
                        })
                })
        })
    }
}

impl Scopes {
    /// For each rule naming cluster-scoped resources: its index and those
    /// resources.
    pub(super) async fn cluster_scoped(
        &mut self,
        client: &Client,
        grant: &[Rule],
    ) -> Vec<(usize, Vec<String>)> {
        self.refresh_for(client, grant).await;
        let Some(found) = &self.found else {
            return Vec::new();
        };
        let mut cut = Vec::new();
        for (index, rule) in grant.iter().enumerate() {
            let mut groups: BTreeSet<String> = BTreeSet::new();
            for group in &rule.api_groups {
                if group == "*" {
                    groups.extend(
                        found
                            .discovery
                            .groups()
                            .map(|group| group.name().to_owned()),
                    );
                } else {
                    groups.insert(group.clone());
                }
            }
            let mut names = BTreeSet::new();
            for group in groups {
                for (plural, namespaced) in found.resources(&group) {
                    let matches = rule.resources.iter().any(|resource| {
                        let base = resource.split('/').next().unwrap_or(resource);
                        base == "*" || base == plural
                    });
                    if matches && !namespaced {
                        names.insert(plural);
                    }
                }
            }
            if !names.is_empty() {
                cut.push((index, names.into_iter().collect()));
            }
        }
        cut
    }

    /// Asks discovery again when the last answer does not cover the
    /// grant's groups, is older than [`MAX_AGE`], or misses something the
    /// grant names (at most once per [`SCOPES_MIN_REFRESH`]). A failed
    /// discovery keeps the last answer.
    pub(super) async fn refresh_for(&mut self, client: &Client, grant: &[Rule]) {
        let named = || {
            grant
                .iter()
                .flat_map(|rule| &rule.api_groups)
                .filter(|group| *group != "*")
                .cloned()
        };
        let wants_all = grant
            .iter()
            .any(|rule| rule.api_groups.iter().any(|group| group == "*"));
        let needed = match &self.found {
            None => true,
            Some(found) => {
                let covers =
                    found.all || (!wants_all && named().all(|group| found.groups.contains(&group)));
                !covers
                    || found.at.elapsed() >= MAX_AGE
                    || (found.at.elapsed() >= SCOPES_MIN_REFRESH && !found.knows(grant))
            }
        };
        if !needed {
            return;
        }
        let all = wants_all || self.found.as_ref().is_some_and(|found| found.all);
        let mut groups: BTreeSet<String> = named().collect();
        if let Some(found) = &self.found {
            groups.extend(found.groups.iter().cloned());
        }
        let discovery = kube::Discovery::new(client.clone());
        let discovery = if all {
            discovery
        } else {
            let allow: Vec<&str> = groups.iter().map(String::as_str).collect();
            discovery.filter(&allow)
        };
        match discovery.run().await {
            Ok(discovery) => {
                self.found = Some(FoundScopes {
                    discovery,
                    at: Instant::now(),
                    all,
                    groups,
                });
            }
            Err(error) => {
                let error = crate::cluster::ClusterError::from_request(error);
                tracing::warn!(error = %crate::cluster::error_chain(&error), "cannot discover which resources are cluster-scoped; using the last answer");
            }
        }
    }
}

/// The ServiceAccount a resource's controller acts as: the one it names
/// (`named`), or for a tenant's (one in `namespace`) the host's default; a
/// tenant's controller without either is refused, naming the field and the
/// fix.
pub(super) fn service_account(
    namespace: Option<&str>,
    named: Option<&ServiceAccount>,
    tenant: &TenantLimits,
) -> Result<Option<ServiceAccount>, String> {
    let field = match namespace {
        Some(_) => "spec.serviceAccountName",
        None => "spec.serviceAccount",
    };
    let account = match (namespace, named) {
        (_, Some(account)) => account.clone(),
        (Some(own), None) => match &tenant.default_service_account {
            Some(name) => ServiceAccount::new(own, name.clone()),
            None => {
                return Err(format!(
                    "{field}: required; name a ServiceAccount in {own} whose RBAC allows what the controller does (for example one bound to the `edit` ClusterRole in {own}); this host gives tenants no default (--tenant-default-service-account)"
                ));
            }
        },
        (None, None) => return Ok(None),
    };
    account
        .check()
        .map_err(|problem| format!("{field}: {problem}"))?;
    Ok(Some(account))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_caps_lower_limits_and_say_so() {
        let mut cut = Vec::new();
        let mut actions = 5_000u32;
        lower_to(&mut cut, "maxActions", &mut actions, 100);
        assert_eq!(actions, 100);
        assert_eq!(
            cut,
            ["spec.limits.maxActions: 5000 lowered to the host's tenant cap 100"]
        );
        let mut within = 10u32;
        lower_to(&mut cut, "maxActions", &mut within, 100);
        assert_eq!((within, cut.len()), (10, 1));
    }

    #[tokio::test]
    async fn a_cluster_scoped_kind_created_later_is_found() {
        use crate::cluster::tests::{client_for, devcluster};
        use kube::api::{Api, DynamicObject};

        let cluster = devcluster().await;
        let client = client_for(&cluster.kubeconfig_yaml()).await;
        let grant = vec![Rule::new(&["example.com"], &["gadgets"], &["get", "list"])];
        let mut scopes = Scopes::default();
        assert!(scopes.cluster_scoped(&client, &grant).await.is_empty());

        let crds: Api<DynamicObject> = Api::all_with(
            client.clone(),
            &kube::core::ApiResource {
                group: "apiextensions.k8s.io".into(),
                version: "v1".into(),
                api_version: "apiextensions.k8s.io/v1".into(),
                kind: "CustomResourceDefinition".into(),
                plural: "customresourcedefinitions".into(),
            },
        );
        let crd: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "gadgets.example.com"},
            "spec": {
                "group": "example.com",
                "scope": "Cluster",
                "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
                "versions": [{
                    "name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {
                        "type": "object", "x-kubernetes-preserve-unknown-fields": true
                    }}
                }]
            }
        }))
        .expect("a CRD");
        crds.create(&kube::api::PostParams::default(), &crd)
            .await
            .expect("the CRD is created");
        // As if the last discovery were SCOPES_MIN_REFRESH old: the grant
        // names a resource it did not find, so it is asked again.
        if let Some(found) = scopes.found.as_mut() {
            found.at = Instant::now()
                .checked_sub(SCOPES_MIN_REFRESH)
                .expect("the clock is past the refresh interval");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let cut = scopes.cluster_scoped(&client, &grant).await;
            if cut == vec![(0, vec!["gadgets".to_owned()])] {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "gadgets not found cluster-scoped: {cut:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
            if let Some(found) = scopes.found.as_mut() {
                found.at = Instant::now()
                    .checked_sub(SCOPES_MIN_REFRESH)
                    .expect("the clock is past the refresh interval");
            }
        }
    }
}
