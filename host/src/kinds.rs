//! Which apiVersions serve which kinds, and what to say when a guest or a
//! file names a kind at an apiVersion that does not serve it: the
//! apiVersions that do, or that the core group is written `v1`.
//!
//! A cluster's discovery fills a [`ServedKinds`] for the error of a kind it
//! does not serve ([`crate::cluster::ClusterError::UnknownKind`]); offline,
//! `paddock test` fills one with Kubernetes' built-in kinds, the kinds of
//! the CustomResourceDefinitions it is given and those the guest declares,
//! and checks every action's target against it
//! ([`ServedKinds::unserved_targets`]).

use std::path::{Path, PathBuf};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

use crate::actions::{Action, ObjectRef, Outcome, target_of};
use crate::cluster::split_api_version;
use crate::harness::FixtureError;
use crate::wasm::Info;

/// A kind and an apiVersion that serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedKind {
    /// `group/version`, or the version for the core group.
    pub api_version: String,
    /// The kind, e.g. `Deployment`.
    pub kind: String,
}

/// The kinds known to be served, each at every apiVersion serving it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServedKinds {
    kinds: Vec<ServedKind>,
}

impl ServedKinds {
    /// The kinds every cluster serves: the built-in kinds of a 1.36 API
    /// server with its default feature gates (the embedded cluster's table).
    pub fn builtin() -> Self {
        let mut kinds = Self::default();
        for builtin in devcluster::builtin_kinds() {
            for version in &builtin.versions {
                kinds.add(&api_version(&builtin.group, version), &builtin.kind);
            }
        }
        kinds
    }

    /// The kinds a cluster's discovery found.
    pub fn discovered(discovery: &kube::Discovery) -> Self {
        let mut kinds = Self::default();
        for group in discovery.groups() {
            for version in group.versions() {
                for (resource, _) in group.versioned_resources(version) {
                    kinds.add(&resource.api_version, &resource.kind);
                }
            }
        }
        kinds
    }

    /// What `paddock test` knows offline: the built-in kinds and those of
    /// the CustomResourceDefinitions in `definition_files`.
    ///
    /// # Errors
    ///
    /// A file that cannot be read, holds no CustomResourceDefinition or one
    /// that does not read as one.
    pub fn offline(definition_files: &[PathBuf]) -> Result<Self, KindsError> {
        let mut kinds = Self::builtin();
        for path in definition_files {
            kinds.add_definitions_from(path)?;
        }
        Ok(kinds)
    }

    /// These kinds and those the guest declares (watches, reads, indexes)
    /// in groups none of these kinds is in: the guest's custom resources.
    /// A declared kind of a known group is not taken on trust: `apps/v2`
    /// stays unknown however the guest names it.
    #[must_use]
    pub fn with_declared(&self, info: &Info) -> Self {
        let declared = info
            .watches
            .iter()
            .map(|watch| (&watch.api_version, &watch.kind))
            .chain(
                info.reads
                    .iter()
                    .map(|read| (&read.api_version, &read.kind)),
            )
            .chain(
                info.indexes
                    .iter()
                    .map(|index| (&index.api_version, &index.kind)),
            );
        let mut kinds = self.clone();
        for (api_version, kind) in declared {
            let (group, _) = split_api_version(api_version);
            if !self.serves_group(group) {
                kinds.add(api_version, kind);
            }
        }
        kinds
    }

    /// Adds `kind` at `api_version`.
    pub fn add(&mut self, api_version: &str, kind: &str) {
        if !self.serves(api_version, kind) {
            self.kinds.push(ServedKind {
                api_version: api_version.to_owned(),
                kind: kind.to_owned(),
            });
        }
    }

    /// Adds the kind of a CustomResourceDefinition at each version it
    /// serves.
    pub fn add_definition(&mut self, definition: &CustomResourceDefinition) {
        let spec = &definition.spec;
        for version in spec.versions.iter().filter(|version| version.served) {
            self.add(&api_version(&spec.group, &version.name), &spec.names.kind);
        }
    }

    /// Adds the kinds of the CustomResourceDefinitions of a YAML file; its
    /// other objects are skipped, so a file of manifests will do. Answers
    /// how many definitions it held.
    ///
    /// # Errors
    ///
    /// The file cannot be read, holds no CustomResourceDefinition, or one
    /// that does not read as one.
    pub fn add_definitions_from(&mut self, path: &Path) -> Result<usize, KindsError> {
        let mut count = 0;
        for object in crate::harness::read_objects(path)? {
            if object.get("kind").and_then(Value::as_str) != Some("CustomResourceDefinition") {
                continue;
            }
            let name = object
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let definition: CustomResourceDefinition =
                serde_json::from_value(object).map_err(|source| KindsError::Invalid {
                    path: path.to_owned(),
                    name: name.clone(),
                    source,
                })?;
            let spec = &definition.spec;
            let missing = [
                ("spec.group", spec.group.is_empty()),
                ("spec.names.kind", spec.names.kind.is_empty()),
                (
                    "spec.versions (served)",
                    !spec.versions.iter().any(|version| version.served),
                ),
            ];
            if let Some((field, _)) = missing.into_iter().find(|(_, missing)| *missing) {
                return Err(KindsError::Incomplete {
                    path: path.to_owned(),
                    name,
                    field,
                });
            }
            self.add_definition(&definition);
            count += 1;
        }
        if count == 0 {
            return Err(KindsError::NoDefinition {
                path: path.to_owned(),
            });
        }
        Ok(count)
    }

    /// Whether `kind` is served at `api_version`.
    pub fn serves(&self, api_version: &str, kind: &str) -> bool {
        self.kinds
            .iter()
            .any(|served| served.api_version == api_version && served.kind == kind)
    }

    /// Whether any kind of `group` is served.
    pub fn serves_group(&self, group: &str) -> bool {
        self.kinds
            .iter()
            .any(|served| split_api_version(&served.api_version).0 == group)
    }

    /// Where a kind of this name is served, its case ignored
    /// (`deployment` finds `Deployment`), preferred versions first.
    pub fn named(&self, kind: &str) -> Vec<ServedKind> {
        self.kinds
            .iter()
            .filter(|served| served.kind.eq_ignore_ascii_case(kind))
            .cloned()
            .collect()
    }

    /// The actions of `outcome` whose target (the object an event is
    /// about, for an event) is of a kind not served at its apiVersion.
    pub fn unserved_targets(&self, outcome: &Outcome) -> Vec<UnservedTarget> {
        outcome
            .actions
            .iter()
            .enumerate()
            .filter_map(|(index, action)| {
                let target = match action {
                    Action::Event { regarding, .. } => regarding.clone(),
                    other => target_of(other),
                };
                self.check_target(index, action.verb(), &target)
            })
            .collect()
    }

    /// As [`ServedKinds::unserved_targets`], for an answer rendered as a
    /// fixture's `expected.yaml` holds it; an error or a map's primaries
    /// have no actions.
    pub fn unserved_targets_in(&self, answer: &Value) -> Vec<UnservedTarget> {
        serde_json::from_value::<Outcome>(answer.clone())
            .map(|outcome| self.unserved_targets(&outcome))
            .unwrap_or_default()
    }

    fn check_target(
        &self,
        index: usize,
        verb: &'static str,
        target: &ObjectRef,
    ) -> Option<UnservedTarget> {
        if self.serves(&target.api_version, &target.kind) {
            return None;
        }
        let fix = advice(&target.api_version, &target.kind, &self.named(&target.kind))
            .unwrap_or_else(|| UNKNOWN_KIND_FIX.to_owned());
        Some(UnservedTarget {
            index,
            verb,
            api_version: target.api_version.clone(),
            kind: target.kind.clone(),
            fix,
        })
    }
}

/// What to do about a kind no built-in kind, definition given or
/// declaration of the guest names.
const UNKNOWN_KIND_FIX: &str = "it is not a built-in kind, nor defined by a \
    CustomResourceDefinition given, nor declared by the guest; give its definition with \
    `paddock test --crd FILE`, or check the apiVersion and kind";

/// `group/version`, or the version alone for the core group.
fn api_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    }
}

/// What to tell someone who named `kind` at `api_version`, where it is not
/// served, given where a kind of that name is (`served_as`, from
/// [`ServedKinds::named`]): that the core group is written `v1`, and the
/// apiVersions serving the kind. `None` when there is nothing to tell: no
/// kind of that name is served and the apiVersion is not a misspelt core
/// group.
pub fn advice(api_version: &str, kind: &str, served_as: &[ServedKind]) -> Option<String> {
    let mut parts = Vec::new();
    let core_serves = served_as
        .iter()
        .any(|served| !served.api_version.contains('/'));
    if misspells_core(api_version) && (served_as.is_empty() || core_serves) {
        parts.push(format!(
            "the core group is written `v1`, with no group (not `{api_version}`)"
        ));
    }
    let mut spellings: Vec<&str> = Vec::new();
    for served in served_as {
        if !spellings.contains(&served.kind.as_str()) {
            spellings.push(&served.kind);
        }
    }
    for spelling in spellings {
        let versions: Vec<String> = served_as
            .iter()
            .filter(|served| served.kind == spelling)
            .map(|served| format!("`{}`", served.api_version))
            .collect();
        let renamed = if spelling == kind {
            String::new()
        } else {
            format!(" (not `{kind}`)")
        };
        parts.push(format!(
            "`{spelling}`{renamed} is served as {}",
            versions.join(" or ")
        ));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// Whether an apiVersion names the core group in a way Kubernetes does not:
/// `core/v1`, `/v1`, `api/v1`, `v1/ConfigMap`.
fn misspells_core(api_version: &str) -> bool {
    match api_version.split_once('/') {
        Some((group, _)) => matches!(group, "" | "core" | "api" | "v1"),
        None => api_version == "core",
    }
}

/// An action whose target is of a kind not served at its apiVersion.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "action #{index} ({verb}) targets kind `{kind}` of `{api_version}`, which is not served; {fix}"
)]
pub struct UnservedTarget {
    /// The action's position in the outcome, from 0.
    pub index: usize,
    /// The action's name (`create`, `patch`, ...).
    pub verb: &'static str,
    /// The target's apiVersion.
    pub api_version: String,
    /// The target's kind.
    pub kind: String,
    /// Where the kind is served, or how to make it known.
    pub fix: String,
}

/// A file of CustomResourceDefinitions that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KindsError {
    /// The file cannot be read, or is not YAML of objects.
    #[error(transparent)]
    Read(#[from] FixtureError),
    /// A `kind: CustomResourceDefinition` document does not read as one.
    #[error(
        "{}: CustomResourceDefinition `{name}` does not read as one (apiextensions.k8s.io/v1); \
         check its `spec.group`, `spec.names.kind` and `spec.versions`",
        path.display()
    )]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The definition's name.
        name: String,
        /// What does not read.
        #[source]
        source: serde_json::Error,
    },
    /// A definition lacks its group, its kind or a served version.
    #[error(
        "{}: CustomResourceDefinition `{name}` has no `{field}`; a definition names its group, \
         its kind and at least one version with `served: true`",
        path.display()
    )]
    Incomplete {
        /// The file.
        path: PathBuf,
        /// The definition's name.
        name: String,
        /// The field missing.
        field: &'static str,
    },
    /// The file holds no definition.
    #[error(
        "{} holds no CustomResourceDefinition; give the file of the definitions (documents of \
         `kind: CustomResourceDefinition`) of the kinds the guest acts on",
        path.display()
    )]
    NoDefinition {
        /// The file.
        path: PathBuf,
    },
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::wasm::{Read, Relation, Watch};

    fn served(api_version: &str, kind: &str) -> ServedKind {
        ServedKind {
            api_version: api_version.into(),
            kind: kind.into(),
        }
    }

    #[test]
    fn the_builtin_kinds_are_those_of_kubernetes() {
        let kinds = ServedKinds::builtin();
        assert!(kinds.serves("apps/v1", "Deployment"));
        assert!(kinds.serves("v1", "ConfigMap"));
        assert!(kinds.serves("autoscaling/v1", "HorizontalPodAutoscaler"));
        assert!(kinds.serves("autoscaling/v2", "HorizontalPodAutoscaler"));
        assert!(!kinds.serves("apps/v2", "Deployment"));
        assert!(!kinds.serves("core/v1", "ConfigMap"));
        assert_eq!(kinds.named("deployment"), [served("apps/v1", "Deployment")]);
    }

    #[test]
    fn advice_names_the_served_versions_and_the_core_group() {
        let kinds = ServedKinds::builtin();
        let advise = |api_version: &str, kind: &str| advice(api_version, kind, &kinds.named(kind));
        assert_eq!(
            advise("apps/v2", "Deployment").as_deref(),
            Some("`Deployment` is served as `apps/v1`")
        );
        assert_eq!(
            advise("apps/v1", "deployment").as_deref(),
            Some("`Deployment` (not `deployment`) is served as `apps/v1`")
        );
        assert_eq!(
            advise("core/v1", "ConfigMap").as_deref(),
            Some(
                "the core group is written `v1`, with no group (not `core/v1`); \
                 `ConfigMap` is served as `v1`"
            )
        );
        assert_eq!(
            advise("/v1", "ConfigMap").as_deref(),
            Some(
                "the core group is written `v1`, with no group (not `/v1`); \
                 `ConfigMap` is served as `v1`"
            )
        );
        assert_eq!(
            advise("v1/ConfigMap", "ConfigMap").as_deref(),
            Some(
                "the core group is written `v1`, with no group (not `v1/ConfigMap`); \
                 `ConfigMap` is served as `v1`"
            )
        );
        // A kind of another group: the core group is beside the point.
        assert_eq!(
            advise("core/v1", "Deployment").as_deref(),
            Some("`Deployment` is served as `apps/v1`")
        );
        assert_eq!(
            advise("autoscaling/v3", "HorizontalPodAutoscaler").as_deref(),
            Some("`HorizontalPodAutoscaler` is served as `autoscaling/v2` or `autoscaling/v1`")
        );
        assert_eq!(advise("example.com/v1", "Widget"), None);
    }

    fn outcome(actions: Value) -> Outcome {
        serde_json::from_value(json!({ "actions": actions })).expect("an outcome")
    }

    #[test]
    fn unserved_targets_name_the_action_and_the_fix() {
        let kinds = ServedKinds::builtin();
        let answer = outcome(json!([
            {"scale": {"target": {"apiVersion": "apps/v1", "kind": "Deployment",
                                   "namespace": "shop", "name": "web"}, "replicas": 3}},
            {"scale": {"target": {"apiVersion": "apps/v2", "kind": "Deployment",
                                   "namespace": "shop", "name": "web"}, "replicas": 3}},
            {"create": {"object": {"apiVersion": "core/v1", "kind": "ConfigMap",
                                   "metadata": {"namespace": "shop", "name": "settings"}}}},
            {"event": {"regarding": {"apiVersion": "example.com/v1", "kind": "Widget",
                                           "namespace": "shop", "name": "w"},
                       "type": "Normal", "reason": "Seen", "message": "seen"}},
        ]));
        let unserved: Vec<String> = kinds
            .unserved_targets(&answer)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            unserved,
            [
                "action #1 (scale) targets kind `Deployment` of `apps/v2`, which is not served; \
                 `Deployment` is served as `apps/v1`",
                "action #2 (create) targets kind `ConfigMap` of `core/v1`, which is not served; \
                 the core group is written `v1`, with no group (not `core/v1`); `ConfigMap` is \
                 served as `v1`",
                "action #3 (record-event) targets kind `Widget` of `example.com/v1`, which is not \
                 served; it is not a built-in kind, nor defined by a CustomResourceDefinition \
                 given, nor declared by the guest; give its definition with `paddock test --crd \
                 FILE`, or check the apiVersion and kind",
            ]
        );
        let rendered = serde_json::to_value(&answer).expect("json");
        assert_eq!(kinds.unserved_targets_in(&rendered).len(), 3);
        assert!(
            kinds
                .unserved_targets_in(&json!({"error": {"transient": "later"}}))
                .is_empty()
        );
    }

    #[test]
    fn declared_kinds_count_outside_the_builtin_groups() {
        let info = Info {
            name: "widgets".into(),
            watches: vec![Watch {
                api_version: "example.com/v1".into(),
                kind: "Widget".into(),
                relation: Relation::Primary,
                namespace: None,
                label_selector: None,
            }],
            finalizes: false,
            reads: vec![Read {
                api_version: "apps/v2".into(),
                kind: "Deployment".into(),
                namespace: None,
            }],
            indexes: Vec::new(),
            projections: Vec::new(),
        };
        let kinds = ServedKinds::builtin().with_declared(&info);
        assert!(kinds.serves("example.com/v1", "Widget"));
        assert!(!kinds.serves("apps/v2", "Deployment"), "apps is built in");
    }

    #[test]
    fn definitions_are_read_from_yaml_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("crds.yaml");
        std::fs::write(
            &path,
            "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - {name: v1, served: true, storage: true}
  - {name: v1beta1, served: false, storage: false}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop}
",
        )
        .expect("write");
        let kinds = ServedKinds::offline(std::slice::from_ref(&path)).expect("read");
        assert!(kinds.serves("example.com/v1", "Widget"));
        assert!(!kinds.serves("example.com/v1beta1", "Widget"), "not served");
        assert_eq!(
            advice("example.com/v1beta1", "Widget", &kinds.named("Widget")).as_deref(),
            Some("`Widget` is served as `example.com/v1`")
        );

        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
        )
        .expect("write");
        let error = ServedKinds::offline(std::slice::from_ref(&path)).expect_err("no CRD");
        assert!(
            error
                .to_string()
                .contains("crds.yaml holds no CustomResourceDefinition"),
            "{error}"
        );
        std::fs::write(
            &path,
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n\
             metadata: {name: widgets.example.com}\nspec: {group: example.com}\n",
        )
        .expect("write");
        let error = ServedKinds::offline(std::slice::from_ref(&path)).expect_err("no names");
        assert!(
            error.to_string().contains(
                "crds.yaml: CustomResourceDefinition `widgets.example.com` has no \
                 `spec.names.kind`"
            ),
            "{error}"
        );
        std::fs::write(
            &path,
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n\
             metadata: {name: widgets.example.com}\nspec: {group: example.com, versions: 3}\n",
        )
        .expect("write");
        let error = ServedKinds::offline(std::slice::from_ref(&path)).expect_err("a number");
        assert!(
            error.to_string().contains(
                "crds.yaml: CustomResourceDefinition `widgets.example.com` does not read as one"
            ),
            "{error}"
        );
    }
}
