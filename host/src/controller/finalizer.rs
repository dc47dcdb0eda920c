//! Finalizers for guests that finalize their primary objects (the
//! contract's `finalizes`), as kube-runtime's `finalizer` helper and
//! controller-runtime do: the host adds `paddock.dev/<controller>` to each
//! primary object before the guest first reconciles it, so a deletion keeps
//! the object until the guest's answer to it succeeds; then the host
//! removes the finalizer and the API server deletes the object.
//!
//! Finalizers are written as a JSON merge patch of `metadata.finalizers`
//! that carries the `resourceVersion` the list was read at: the API server
//! refuses it with a conflict when the object changed meanwhile, so another
//! writer's finalizer is never dropped (the key is then retried with the
//! latest state).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DynamicObject, ListParams, Patch, PatchParams};
use serde::Deserialize;
use serde_json::json;

use crate::actions::Actor;
use crate::cluster::{Resource, StoredObject};

/// The prefix of every finalizer the host writes.
const PREFIX: &str = "paddock.dev/";

/// The longest name part of a qualified name.
const NAME_LIMIT: usize = 63;

/// The finalizer of controller `controller`: `paddock.dev/` and its name,
/// with `/` (a tenant's `namespace/name`) as `.`; a name longer than a
/// finalizer may be is cut and ends with a digest of the whole, so two
/// controllers never share one.
pub(crate) fn name_for(controller: &str) -> String {
    let name: String = controller
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '.'
            }
        })
        .collect();
    if name.len() <= NAME_LIMIT {
        return format!("{PREFIX}{name}");
    }
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
        controller.as_bytes(),
    ));
    let kept = &name[..NAME_LIMIT - 13];
    format!(
        "{PREFIX}{}-{}",
        kept.trim_end_matches(['-', '_', '.']),
        &digest[..12]
    )
}

/// The parts of an object's metadata that finalizing looks at.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FinalizerState {
    #[serde(default)]
    pub(crate) uid: Option<String>,
    #[serde(default)]
    resource_version: Option<String>,
    #[serde(default)]
    deletion_timestamp: Option<String>,
    #[serde(default)]
    finalizers: Vec<String>,
}

#[derive(Deserialize)]
struct Head {
    #[serde(default)]
    metadata: FinalizerState,
}

impl FinalizerState {
    /// Reads an object's metadata; an unreadable one reads as empty.
    pub(crate) fn of(object: &StoredObject) -> Self {
        serde_json::from_str::<Head>(&object.json)
            .map(|head| head.metadata)
            .unwrap_or_default()
    }

    /// Whether the object is being deleted.
    pub(crate) fn deleting(&self) -> bool {
        self.deletion_timestamp.is_some()
    }

    /// Whether it carries `finalizer`.
    pub(crate) fn holds(&self, finalizer: &str) -> bool {
        self.finalizers.iter().any(|held| held == finalizer)
    }
}

/// What a reconcile of a finalizing controller does with an existing object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Not ours yet and not being deleted: add the finalizer first; the
    /// write's watch event reconciles the object.
    Add,
    /// Ours: call the guest as usual.
    Reconcile,
    /// Being deleted and ours: call the guest, then remove the finalizer
    /// when its answer succeeded.
    Finalize,
    /// Being deleted without our finalizer (it never had it, or it was
    /// already removed): nothing to do.
    Skip,
}

impl Step {
    /// The step for an object in `state`.
    pub(crate) fn of(state: &FinalizerState, finalizer: &str) -> Self {
        match (state.deleting(), state.holds(finalizer)) {
            (false, false) => Self::Add,
            (false, true) => Self::Reconcile,
            (true, true) => Self::Finalize,
            (true, false) => Self::Skip,
        }
    }
}

/// Adds or removes `finalizer` on `object`, under the controller's field
/// manager.
///
/// # Errors
///
/// The API server's answer: a conflict when the object changed since it
/// was read.
pub(crate) async fn write(
    client: &kube::Client,
    actor: &Actor,
    resource: &Resource,
    object: &StoredObject,
    state: &FinalizerState,
    finalizer: &str,
    present: bool,
) -> Result<(), kube::Error> {
    let api = api_for(client, resource, Some(&object.namespace));
    patch(&api, actor, &object.name, state, finalizer, present).await
}

/// The dynamic API of `resource`, in `namespace` when it is namespaced
/// (all namespaces for `None`).
fn api_for(
    client: &kube::Client,
    resource: &Resource,
    namespace: Option<&str>,
) -> kube::Api<DynamicObject> {
    match namespace.filter(|_| resource.namespaced) {
        Some(namespace) => {
            kube::Api::namespaced_with(client.clone(), namespace, &resource.api_resource())
        }
        None => kube::Api::all_with(client.clone(), &resource.api_resource()),
    }
}

async fn patch(
    api: &kube::Api<DynamicObject>,
    actor: &Actor,
    name: &str,
    state: &FinalizerState,
    finalizer: &str,
    present: bool,
) -> Result<(), kube::Error> {
    let mut finalizers: Vec<&str> = state
        .finalizers
        .iter()
        .map(String::as_str)
        .filter(|held| *held != finalizer)
        .collect();
    if present {
        finalizers.push(finalizer);
    }
    let body = json!({
        "metadata": {
            "resourceVersion": state.resource_version,
            "finalizers": finalizers,
        }
    });
    let params = PatchParams {
        field_manager: Some(actor.field_manager()),
        ..PatchParams::default()
    };
    api.patch(name, &params, &Patch::Merge(&body))
        .await
        .map(drop)
}

impl FinalizerState {
    /// The finalizing state of an object read from the API server.
    fn of_meta(meta: &ObjectMeta) -> Self {
        Self {
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone(),
            deletion_timestamp: meta
                .deletion_timestamp
                .as_ref()
                .map(|time| time.0.to_string()),
            finalizers: meta.finalizers.clone().unwrap_or_default(),
        }
    }
}

/// How often a release is tried again with the object's newest state when
/// another writer changed it in between.
const RELEASE_ATTEMPTS: usize = 5;

/// Objects read per page while looking for held finalizers.
const PAGE: u32 = 500;

/// Removes `finalizer` from every object of `resource` in `scopes` (a
/// namespace each, `None` for all) that holds it: what a controller that
/// stops finalizing owes the objects it held. The objects are listed from
/// the API server, not from the informers' stores, which may not have seen
/// a finalizer the host added a moment ago; an object that changed in
/// between is read again and tried again. Failures are logged. Answers how
/// many objects were released.
pub(crate) async fn release(
    client: &kube::Client,
    actor: &Actor,
    resource: &Resource,
    scopes: &[Option<String>],
    finalizer: &str,
) -> usize {
    let mut released = 0;
    for scope in scopes {
        let api = api_for(client, resource, scope.as_deref());
        let mut params = ListParams::default().limit(PAGE);
        loop {
            let page = match api.list(&params).await {
                Ok(page) => page,
                Err(error) => {
                    tracing::warn!(
                        controller = %actor.name,
                        namespace = scope.as_deref().unwrap_or("*"),
                        %error,
                        "could not list the objects whose finalizers to release"
                    );
                    break;
                }
            };
            for object in &page.items {
                if release_one(client, actor, resource, object, finalizer).await {
                    released += 1;
                }
            }
            match page.metadata.continue_.filter(|token| !token.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => break,
            }
        }
    }
    released
}

/// Removes `finalizer` from `object` if it holds it; answers whether it
/// did.
async fn release_one(
    client: &kube::Client,
    actor: &Actor,
    resource: &Resource,
    object: &DynamicObject,
    finalizer: &str,
) -> bool {
    let (Some(name), namespace) = (
        object.metadata.name.as_deref(),
        object.metadata.namespace.as_deref(),
    ) else {
        return false;
    };
    let api = api_for(client, resource, namespace);
    let mut state = FinalizerState::of_meta(&object.metadata);
    for _ in 0..RELEASE_ATTEMPTS {
        if !state.holds(finalizer) {
            return false;
        }
        let error = match patch(&api, actor, name, &state, finalizer, false).await {
            Ok(()) => return true,
            Err(error) => error,
        };
        let conflict = matches!(&error, kube::Error::Api(status) if status.code == 409);
        if !conflict {
            tracing::warn!(
                controller = %actor.name,
                namespace = namespace.unwrap_or(""),
                name,
                %error,
                "could not release a finalizer"
            );
            return false;
        }
        match api.get_opt(name).await {
            Ok(Some(newer)) => state = FinalizerState::of_meta(&newer.metadata),
            Ok(None) => return false,
            Err(error) => {
                tracing::warn!(
                    controller = %actor.name,
                    namespace = namespace.unwrap_or(""),
                    name,
                    %error,
                    "could not read an object again to release its finalizer"
                );
                return false;
            }
        }
    }
    tracing::warn!(
        controller = %actor.name,
        namespace = namespace.unwrap_or(""),
        name,
        attempts = RELEASE_ATTEMPTS,
        "could not release a finalizer: the object kept changing"
    );
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finalizer_names_are_qualified_names_of_the_controller() {
        assert_eq!(name_for("floor"), "paddock.dev/floor");
        assert_eq!(name_for("team-a/floor"), "paddock.dev/team-a.floor");
        let long = format!("team-a/{}", "x".repeat(100));
        let cut = name_for(&long);
        let part = cut.strip_prefix(PREFIX).expect("the prefix");
        assert!(part.len() <= NAME_LIMIT, "{cut}");
        assert_ne!(cut, name_for(&format!("team-a/{}", "x".repeat(101))));
    }

    #[test]
    fn the_step_follows_the_deletion_and_the_finalizer() {
        let state = |deleting: bool, held: &[&str]| FinalizerState {
            deletion_timestamp: deleting.then(|| "2026-12-02T00:00:00Z".into()),
            finalizers: held.iter().map(|held| (*held).to_owned()).collect(),
            ..FinalizerState::default()
        };
        let ours = "paddock.dev/floor";
        assert_eq!(Step::of(&state(false, &[]), ours), Step::Add);
        assert_eq!(Step::of(&state(false, &["other"]), ours), Step::Add);
        assert_eq!(Step::of(&state(false, &[ours]), ours), Step::Reconcile);
        assert_eq!(
            Step::of(&state(true, &["other", ours]), ours),
            Step::Finalize
        );
        assert_eq!(Step::of(&state(true, &["other"]), ours), Step::Skip);
    }
}
