//! The executor: checks a reconcile's actions against the guest's grant,
//! then performs them against the API server, in order.
//!
//! All actions are checked before any is performed: if one is denied, none
//! is, so a reconcile is never half-applied because of a missing grant.
//! Failures are sorted the way a controller needs (see
//! [`ExecuteError`]): a denial is not retried; conflicts, throttling,
//! server errors and network errors are retried (after the server's
//! `Retry-After` when it gives one); anything else the API server rejects
//! (invalid, not found, an unserved kind) is retried with the key's
//! exponential backoff, as kube-runtime and controller-runtime retry a
//! failed reconcile, and reported on the primary object as a Warning
//! event.

use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::events::EventRecorder;
use super::{Action, EventType, ObjectRef, Outcome, PatchKind};
use crate::cluster::{Discovery, InformerRegistry, Resource, split_api_version};
use crate::grants::{Grant, Permission};
use crate::identity::{Attributes, Identities, ServiceAccount};
use crate::replication::Fence;

/// Who is acting: the guest's name, grant and namespaces.
#[derive(Debug, Clone)]
pub struct Actor {
    /// The guest's name; the field manager is `paddock-<name>`.
    pub name: String,
    /// Its grant.
    pub grant: Grant,
    /// Its namespaces; empty for all.
    pub namespaces: Vec<String>,
    /// The tenant's namespace when a tenant declared the controller (a
    /// `WasmController`), `None` when the operator did.
    pub tenant: Option<String>,
    /// The ServiceAccount it acts as; `None`: it acts as the host.
    pub service_account: Option<ServiceAccount>,
}

/// Paddock's own API group: `WasmController` and `ClusterWasmController`.
pub const PADDOCK_GROUP: &str = "paddock.dev";

impl Actor {
    /// The field manager of its writes.
    pub fn field_manager(&self) -> String {
        format!("paddock-{}", self.name)
    }

    /// Who it acts as, for logs and status: `serviceaccount ns/name` or
    /// `host`.
    pub fn identity(&self) -> String {
        self.service_account.as_ref().map_or_else(
            || "host".to_owned(),
            |account| format!("serviceaccount {account}"),
        )
    }

    /// Whether it may work in `namespace` (`None`: a cluster-scoped object).
    pub fn may_use_namespace(&self, namespace: Option<&str>) -> bool {
        match namespace {
            _ if self.namespaces.is_empty() => true,
            Some(namespace) => self.namespaces.iter().any(|allowed| allowed == namespace),
            None => false,
        }
    }
}

/// Why a reconcile's actions were not all performed.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    /// An action is outside the guest's grant or namespaces, or the API
    /// server forbade it (403); nothing more was performed. Not retried:
    /// retrying cannot grant a right. The object's next change, a resync or
    /// a new version of the controller reconciles it again.
    #[error("guest `{guest}`: action #{index} ({verb} {target}) was denied: {reason}")]
    Denied {
        /// The guest.
        guest: String,
        /// The action's position.
        index: usize,
        /// Its verb.
        verb: &'static str,
        /// Its target.
        target: String,
        /// The missing permission.
        reason: String,
    },
    /// Worth retrying soon: a conflict (409), throttling (429), a server
    /// error (5xx) or a network error. Retried after the server's
    /// `Retry-After` when it gave one, else with the key's backoff.
    #[error("guest `{guest}`: action #{index} ({verb} {target}) failed, will retry")]
    Transient {
        /// The guest.
        guest: String,
        /// The action's position.
        index: usize,
        /// Its verb.
        verb: &'static str,
        /// Its target.
        target: String,
        /// How long the server asked to wait, if it did.
        retry_after: Option<Duration>,
        /// The API error.
        #[source]
        source: Box<kube::Error>,
    },
    /// The API server rejected the action (400, 404, 405, 415, 422), or
    /// its kind is not served, or its body is not an object. Reported as a
    /// Warning event and retried with the key's exponential backoff: the
    /// cause may go away without the object changing (a CRD installed, a
    /// namespace created, a webhook mended).
    #[error("guest `{guest}`: action #{index} ({verb} {target}) failed: {message}")]
    Rejected {
        /// The guest.
        guest: String,
        /// The action's position.
        index: usize,
        /// Its verb.
        verb: &'static str,
        /// Its target.
        target: String,
        /// The HTTP status, when the API server answered.
        code: Option<u16>,
        /// What the server or discovery said.
        message: String,
    },
    /// This host stopped working (it lost its ring's Lease, or another
    /// host holds it) before the action: it and the ones after it were not
    /// performed. The key is queued again; the host that works now
    /// reconciles it.
    #[error(
        "guest `{guest}`: {}: this host may no longer work on the object (its term in the ring ended, or the object moved to another member)",
        if *in_flight { format!("action #{index} was abandoned unanswered (the server may still apply it) and the ones after it were not performed") } else { format!("action #{index} and the ones after it were not performed") }
    )]
    Fenced {
        /// The guest.
        guest: String,
        /// The first action not performed, or abandoned.
        index: usize,
        /// Whether that action was sent and abandoned before its answer.
        in_flight: bool,
    },
}

impl ExecuteError {
    /// Whether the key is retried: every failure but a denial.
    pub fn is_retried(&self) -> bool {
        !matches!(self, Self::Denied { .. })
    }

    /// The wait the server asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Transient { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The reason of the Warning event that reports it, `None` for a
    /// transient failure (not reported: it is expected to clear by itself).
    pub fn event_reason(&self) -> Option<&'static str> {
        match self {
            Self::Denied { .. } => Some("ActionDenied"),
            Self::Rejected { .. } => Some("ActionFailed"),
            Self::Transient { .. } | Self::Fenced { .. } => None,
        }
    }
}

/// Performs actions against the API server.
#[derive(Clone)]
pub struct ActionExecutor {
    identities: Identities,
    discovery: Discovery,
    recorder: EventRecorder,
    fence: Fence,
}

impl std::fmt::Debug for ActionExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActionExecutor").finish_non_exhaustive()
    }
}

/// The API object, resource and namespace one action works on.
struct Resolved {
    resource: Arc<Resource>,
    namespace: Option<String>,
}

impl ActionExecutor {
    /// An executor using `client`; events find the uid of the objects they
    /// regard in `registry`'s stores.
    pub fn new(identities: Identities, discovery: Discovery, registry: InformerRegistry) -> Self {
        Self {
            recorder: EventRecorder::new(identities.host().clone(), discovery.clone(), registry),
            identities,
            discovery,
            fence: Fence::open(),
        }
    }

    /// Makes no write unless `fence` allows it at that moment: a host of a
    /// ring that lost its Lease stops in the middle of an answer.
    #[must_use]
    pub fn with_fence(mut self, fence: Fence) -> Self {
        self.fence = fence;
        self
    }

    /// The event recorder (the host's own events go through it too).
    pub fn recorder(&self) -> &EventRecorder {
        &self.recorder
    }

    /// The host's own client.
    pub fn client(&self) -> &Client {
        self.identities.host()
    }

    /// The client `actor` acts with: one impersonating its ServiceAccount,
    /// or the host's own.
    pub fn client_for(&self, actor: &Actor) -> Client {
        self.identities.client_for(actor.service_account.as_ref())
    }

    /// The identities: clients per ServiceAccount and access reviews.
    pub fn identities(&self) -> &Identities {
        &self.identities
    }

    /// Checks every action, then performs them in order, stopping at the
    /// first failure. Denials and rejections are recorded as
    /// Warning events on `primary`.
    pub async fn execute(
        &self,
        actor: &Actor,
        primary: &ObjectRef,
        outcome: &Outcome,
    ) -> Result<(), ExecuteError> {
        let namespace = primary.namespace.as_deref().unwrap_or_default();
        let fenced = |index, in_flight| ExecuteError::Fenced {
            guest: actor.name.clone(),
            index,
            in_flight,
        };
        // An answer that comes back after the term it was asked in has
        // ended is not acted on, even one without actions: the object's
        // next owner answers for it.
        if !self.fence.allows(namespace, &primary.name) {
            return Err(fenced(0, false));
        }
        let mut resolved = Vec::with_capacity(outcome.actions.len());
        for (index, action) in outcome.actions.iter().enumerate() {
            let target = target_of(action);
            let resource = match self.resolve(&target).await {
                Ok(resource) => resource,
                Err(message) => {
                    let error = rejected(actor, index, action, &target, None, message);
                    self.report(actor, primary, &error).await;
                    return Err(error);
                }
            };
            let namespace = target.namespace.clone().filter(|_| resource.namespaced);
            if let Err(reason) = check(actor, action, &resource, namespace.as_deref()) {
                let error = ExecuteError::Denied {
                    guest: actor.name.clone(),
                    index,
                    verb: action.verb(),
                    target: target.to_string(),
                    reason,
                };
                tracing::warn!(guest = %actor.name, %error, "action denied");
                self.report(actor, primary, &error).await;
                return Err(error);
            }
            resolved.push(Resolved {
                resource,
                namespace,
            });
        }
        if let Some(account) = &actor.service_account {
            for (index, (action, resolved)) in outcome.actions.iter().zip(&resolved).enumerate() {
                if let Err(error) = self.review(actor, account, index, action, resolved).await {
                    tracing::warn!(guest = %actor.name, %error, "action denied");
                    self.report(actor, primary, &error).await;
                    return Err(error);
                }
            }
        }
        for (index, (action, resolved)) in outcome.actions.iter().zip(&resolved).enumerate() {
            if !self.fence.allows(namespace, &primary.name) {
                return Err(fenced(index, false));
            }
            // A write still unanswered when the term ends is abandoned, so
            // that none outlives the term it began in (see "Why two hosts
            // never work at once" in docs/operating.md).
            let performed = self.fence.within(
                namespace,
                &primary.name,
                self.perform(actor, action, resolved),
            );
            let Some(performed) = performed.await else {
                return Err(fenced(index, true));
            };
            if let Err(source) = performed {
                let target = target_of(action);
                let error = classify(actor, index, action, &target, source);
                self.report(actor, primary, &error).await;
                return Err(error);
            }
        }
        Ok(())
    }

    /// Asks whether the actor's ServiceAccount may perform `action`
    /// (SubjectAccessReview, cached), so that RBAC refuses a reconcile
    /// before any of its actions is performed rather than in the middle.
    async fn review(
        &self,
        actor: &Actor,
        account: &ServiceAccount,
        index: usize,
        action: &Action,
        resolved: &Resolved,
    ) -> Result<(), ExecuteError> {
        let target = target_of(action);
        let asked = rbac_attributes(
            action,
            &resolved.resource,
            resolved.namespace.as_deref(),
            &target,
        );
        let reviews = self.identities.reviews();
        let mut refused = None;
        for attributes in &asked {
            match reviews.allows(account, attributes).await {
                Ok(true) => {}
                Ok(false) => {
                    refused = Some(attributes.clone());
                    break;
                }
                Err(crate::identity::ReviewError::Api { source, .. }) => {
                    return Err(classify(actor, index, action, &target, *source));
                }
                Err(error) => {
                    return Err(rejected(
                        actor,
                        index,
                        action,
                        &target,
                        None,
                        error.to_string(),
                    ));
                }
            }
        }
        let Some(attributes) = refused else {
            return Ok(());
        };
        Err(ExecuteError::Denied {
            guest: actor.name.clone(),
            index,
            verb: action.verb(),
            target: target.to_string(),
            reason: format!(
                "ServiceAccount {account} may not {attributes} (RBAC, asked with a SubjectAccessReview)"
            ),
        })
    }

    async fn resolve(&self, target: &ObjectRef) -> Result<Arc<Resource>, String> {
        self.discovery
            .resolve(&target.api_version, &target.kind)
            .await
            .map_err(|error| error.to_string())
    }

    /// Records a Warning event on the primary object for a denied or
    /// rejected action (repeats are counted on one event).
    async fn report(&self, actor: &Actor, primary: &ObjectRef, error: &ExecuteError) {
        let Some(reason) = error.event_reason() else {
            return;
        };
        self.recorder
            .record(
                &actor.field_manager(),
                primary,
                EventType::Warning,
                reason,
                &error.to_string(),
            )
            .await;
    }

    async fn perform(
        &self,
        actor: &Actor,
        action: &Action,
        resolved: &Resolved,
    ) -> Result<(), kube::Error> {
        let client = self.client_for(actor);
        let api: Api<DynamicObject> = match &resolved.namespace {
            Some(namespace) => {
                Api::namespaced_with(client.clone(), namespace, &resolved.resource.api_resource())
            }
            None => Api::all_with(client.clone(), &resolved.resource.api_resource()),
        };
        let manager = actor.field_manager();
        let post = PostParams {
            dry_run: false,
            field_manager: Some(manager.clone()),
        };
        let patch_params = PatchParams {
            field_manager: Some(manager.clone()),
            ..PatchParams::default()
        };
        match action {
            Action::Create { object } => {
                api.create(&post, &dynamic(object)?).await?;
            }
            Action::Update { object } => {
                api.replace(name_of(object), &post, &dynamic(object)?)
                    .await?;
            }
            Action::UpdateStatus { object } => {
                api.replace_status(name_of(object), &post, &dynamic(object)?)
                    .await?;
            }
            Action::Patch {
                target,
                kind,
                body,
                force,
            } => {
                let patch: Patch<&Value> = match kind {
                    PatchKind::Merge => Patch::Merge(body),
                    PatchKind::Strategic => Patch::Strategic(body),
                    PatchKind::Apply => Patch::Apply(body),
                    PatchKind::Json => Patch::Json(
                        serde_json::from_value(body.clone()).map_err(kube::Error::SerdeError)?,
                    ),
                };
                let params = if *kind == PatchKind::Apply {
                    let params = PatchParams::apply(&manager);
                    if *force { params.force() } else { params }
                } else {
                    patch_params
                };
                api.patch(&target.name, &params, &patch).await?;
            }
            Action::Delete { target } => {
                match api.delete(&target.name, &DeleteParams::background()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(status)) if status.code == 404 => {}
                    Err(error) => return Err(error),
                }
            }
            Action::Scale { target, replicas } => {
                let body = json!({"spec": {"replicas": replicas}});
                api.patch_scale(&target.name, &patch_params, &Patch::Merge(&body))
                    .await?;
            }
            Action::Event {
                regarding,
                event_type,
                reason,
                message,
            } => {
                self.recorder
                    .try_record_as(&client, &manager, regarding, *event_type, reason, message)
                    .await?;
            }
        }
        Ok(())
    }
}

fn dynamic(object: &Value) -> Result<DynamicObject, kube::Error> {
    serde_json::from_value(object.clone()).map_err(kube::Error::SerdeError)
}

fn name_of(object: &Value) -> &str {
    object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The object an action is about.
pub fn target_of(action: &Action) -> ObjectRef {
    match action {
        Action::Create { object } | Action::Update { object } | Action::UpdateStatus { object } => {
            let text = |pointer: &str| {
                object
                    .pointer(pointer)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            };
            ObjectRef {
                api_version: text("/apiVersion").unwrap_or_default(),
                kind: text("/kind").unwrap_or_default(),
                namespace: text("/metadata/namespace"),
                name: text("/metadata/name")
                    .or_else(|| text("/metadata/generateName"))
                    .unwrap_or_default(),
            }
        }
        Action::Patch { target, .. } | Action::Delete { target } | Action::Scale { target, .. } => {
            target.clone()
        }
        Action::Event { regarding, .. } => ObjectRef {
            api_version: "events.k8s.io/v1".into(),
            kind: "Event".into(),
            namespace: Some(
                regarding
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into()),
            ),
            name: regarding.name.clone(),
        },
    }
}

/// The permission an action needs on its resource.
fn permission_of<'a>(action: &Action, resource: &'a Resource) -> Permission<'a> {
    let (verb, subresource) = match action {
        // Events are checked by `check_event`.
        Action::Create { .. } | Action::Event { .. } => ("create", None),
        Action::Update { .. } => ("update", None),
        Action::UpdateStatus { .. } => ("update", Some("status")),
        Action::Patch { .. } => ("patch", None),
        Action::Delete { .. } => ("delete", None),
        Action::Scale { .. } => ("patch", Some("scale")),
    };
    let (group, _) = split_api_version(&resource.api_version);
    Permission {
        verb,
        group,
        resource: &resource.plural,
        subresource,
    }
}

/// What RBAC is asked for an action, as the API server authorises the
/// requests the executor sends; every one must be allowed. An event is
/// recorded as an `events.k8s.io/v1` Event, created, and patched when it
/// repeats: RBAC tells that group's `events` from the core group's.
fn rbac_attributes(
    action: &Action,
    resource: &Resource,
    namespace: Option<&str>,
    target: &ObjectRef,
) -> Vec<Attributes> {
    if let Action::Event { .. } = action {
        return ["create", "patch"]
            .map(|verb| Attributes::new(verb, "events.k8s.io", "events", namespace))
            .to_vec();
    }
    let permission = permission_of(action, resource);
    // RBAC cannot name the object of a create: its request carries none.
    let name = match action {
        Action::Create { .. } => None,
        _ => Some(target.name.as_str()),
    };
    vec![
        Attributes::new(
            permission.verb,
            permission.group,
            permission.resource,
            namespace,
        )
        .subresource(permission.subresource)
        .name(name),
    ]
}

/// Checks that the actor may record events: `create` for a new one and
/// `patch` for a repeat counted in its series, on `events` of
/// `events.k8s.io` (what the recorder sends) or of the core group (the same
/// objects, served by both groups).
fn check_event(actor: &Actor) -> Result<(), String> {
    let needed = |group| {
        ["create", "patch"].map(|verb| Permission {
            verb,
            group,
            resource: "events",
            subresource: None,
        })
    };
    let denied = match actor.grant.check(&needed("events.k8s.io")) {
        Ok(()) => return Ok(()),
        Err(denied) => denied,
    };
    if actor.grant.check(&needed("")).is_ok() {
        return Ok(());
    }
    Err(denied.to_string())
}

/// Checks one action against the actor's grant and namespaces.
fn check(
    actor: &Actor,
    action: &Action,
    resource: &Resource,
    namespace: Option<&str>,
) -> Result<(), String> {
    if !actor.may_use_namespace(namespace) {
        return Err(match namespace {
            Some(namespace) => format!(
                "namespace `{namespace}` is outside the guest's namespaces ({})",
                actor.namespaces.join(", ")
            ),
            None => "a guest scoped to namespaces may not write cluster-scoped objects".into(),
        });
    }
    if let Action::Scale { .. } = action
        && !resource.has_subresource("scale")
    {
        return Err(format!("{} has no /scale subresource", resource.plural));
    }
    let (group, _) = split_api_version(&resource.api_version);
    if group == PADDOCK_GROUP && !matches!(action, Action::Event { .. }) {
        check_paddock_write(actor, action)?;
    }
    if let Action::Event { .. } = action {
        return check_event(actor);
    }
    actor
        .grant
        .check(&[permission_of(action, resource)])
        .map_err(|denied| denied.to_string())
}

/// Guests may not write Paddock's own resources, whose status the host
/// writes and whose spec decides what guests may do: never their status,
/// never from a tenant's guest, and otherwise only under a rule that names
/// the `paddock.dev` group itself (a `*` group does not cover it).
fn check_paddock_write(actor: &Actor, action: &Action) -> Result<(), String> {
    if let Some(namespace) = &actor.tenant {
        return Err(format!(
            "a tenant's guest (WasmController in {namespace}) may not write Paddock's own resources ({PADDOCK_GROUP})"
        ));
    }
    if let Action::UpdateStatus { .. } = action {
        return Err(format!(
            "the status of Paddock's own resources ({PADDOCK_GROUP}) is written by the host only"
        ));
    }
    let named = actor
        .grant
        .rules
        .iter()
        .any(|rule| rule.api_groups.iter().any(|group| group == PADDOCK_GROUP));
    if named {
        Ok(())
    } else {
        Err(format!(
            "writes to Paddock's own resources need a rule naming apiGroups [\"{PADDOCK_GROUP}\"] itself; `*` does not cover them"
        ))
    }
}

fn rejected(
    actor: &Actor,
    index: usize,
    action: &Action,
    target: &ObjectRef,
    code: Option<u16>,
    message: String,
) -> ExecuteError {
    ExecuteError::Rejected {
        guest: actor.name.clone(),
        index,
        verb: action.verb(),
        target: target.to_string(),
        code,
        message,
    }
}

/// Sorts an API error: 403 is a denial; 409, 429, 5xx and network errors
/// are transient; other answers are rejections.
fn classify(
    actor: &Actor,
    index: usize,
    action: &Action,
    target: &ObjectRef,
    error: kube::Error,
) -> ExecuteError {
    match &error {
        kube::Error::Api(status) if status.code == 403 => {
            return ExecuteError::Denied {
                guest: actor.name.clone(),
                index,
                verb: action.verb(),
                target: target.to_string(),
                reason: format!("the API server forbade it: {}", status.message),
            };
        }
        kube::Error::Api(status) if !matches!(status.code, 409 | 429 | 500..) => {
            return rejected(
                actor,
                index,
                action,
                target,
                Some(status.code),
                status.message.clone(),
            );
        }
        kube::Error::SerdeError(serde) => {
            return rejected(actor, index, action, target, None, serde.to_string());
        }
        _ => {}
    }
    let retry_after = match &error {
        kube::Error::Api(status) => status
            .details
            .as_ref()
            .map(|details| u64::from(details.retry_after_seconds))
            .filter(|seconds| *seconds > 0)
            .map(Duration::from_secs),
        _ => None,
    };
    ExecuteError::Transient {
        guest: actor.name.clone(),
        index,
        verb: action.verb(),
        target: target.to_string(),
        retry_after,
        source: Box::new(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grants::Rule;

    fn deployments() -> Resource {
        Resource {
            group: "apps".into(),
            version: "v1".into(),
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            plural: "deployments".into(),
            namespaced: true,
            subresources: vec!["scale".into(), "status".into()],
        }
    }

    fn actor(resources: &[&str], verbs: &[&str], namespaces: &[&str]) -> Actor {
        let strings = |list: &[&str]| list.iter().map(|item| (*item).to_owned()).collect();
        Actor {
            tenant: None,
            service_account: None,
            name: "floor".into(),
            grant: Grant::new(vec![Rule {
                api_groups: vec!["apps".into()],
                resources: strings(resources),
                verbs: strings(verbs),
            }]),
            namespaces: strings(namespaces),
        }
    }

    fn scale() -> Action {
        Action::Scale {
            target: ObjectRef {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                namespace: Some("shop".into()),
                name: "web".into(),
            },
            replicas: 3,
        }
    }

    #[test]
    fn scale_needs_patch_on_the_scale_subresource() {
        let resource = deployments();
        let denied = check(
            &actor(&["deployments"], &["patch"], &[]),
            &scale(),
            &resource,
            Some("shop"),
        );
        assert!(denied.unwrap_err().contains("deployments/scale"));
        let allowed = check(
            &actor(&["deployments/scale"], &["patch"], &[]),
            &scale(),
            &resource,
            Some("shop"),
        );
        assert!(allowed.is_ok());
    }

    #[test]
    fn rbac_is_asked_for_the_requests_sent_and_an_event_needs_create_and_patch_in_its_group() {
        let resource = deployments();
        let target = target_of(&scale());
        let asked = rbac_attributes(&scale(), &resource, Some("shop"), &target);
        assert_eq!(
            asked,
            [
                Attributes::new("patch", "apps", "deployments", Some("shop"))
                    .subresource(Some("scale"))
                    .name(Some("web"))
            ]
        );
        let event = Action::Event {
            regarding: target.clone(),
            event_type: crate::actions::EventType::Normal,
            reason: "Scaled".into(),
            message: "to 3".into(),
        };
        let asked = rbac_attributes(&event, &resource, Some("shop"), &target);
        // The recorder sends events.k8s.io/v1 Events: core `events` rights
        // are not enough for it.
        assert_eq!(
            asked,
            ["create", "patch"].map(|verb| Attributes::new(
                verb,
                "events.k8s.io",
                "events",
                Some("shop")
            ))
        );
    }

    #[test]
    fn namespaces_fence_the_guest() {
        let resource = deployments();
        let fenced = actor(&["deployments/scale"], &["patch"], &["other"]);
        let error = check(&fenced, &scale(), &resource, Some("shop")).unwrap_err();
        assert!(error.contains("outside the guest's namespaces"), "{error}");
        assert!(!fenced.may_use_namespace(None));
    }

    #[test]
    fn guests_write_paddocks_own_resources_only_when_the_operator_names_the_group() {
        let resource = Resource {
            group: PADDOCK_GROUP.into(),
            version: "v1alpha1".into(),
            api_version: "paddock.dev/v1alpha1".into(),
            kind: "WasmController".into(),
            plural: "wasmcontrollers".into(),
            namespaced: true,
            subresources: vec!["status".into()],
        };
        let object = serde_json::json!({
            "apiVersion": "paddock.dev/v1alpha1",
            "kind": "WasmController",
            "metadata": {"name": "floor", "namespace": "team-a"},
            "status": {"moduleDigest": "forged"},
        });
        let status = Action::UpdateStatus {
            object: object.clone(),
        };
        let update = Action::Update { object };
        let everything = Actor {
            tenant: None,
            service_account: None,
            name: "op".into(),
            grant: Grant::new(vec![Rule::new(&["*"], &["*"], &["*"])]),
            namespaces: Vec::new(),
        };
        let wildcard = check(&everything, &update, &resource, Some("team-a")).unwrap_err();
        assert!(wildcard.contains("`*` does not cover them"), "{wildcard}");
        let named = Actor {
            grant: Grant::new(vec![Rule::new(&[PADDOCK_GROUP], &["*"], &["*"])]),
            ..everything
        };
        assert!(check(&named, &update, &resource, Some("team-a")).is_ok());
        let forged = check(&named, &status, &resource, Some("team-a")).unwrap_err();
        assert!(forged.contains("written by the host only"), "{forged}");
        let tenant = Actor {
            tenant: Some("team-a".into()),
            service_account: None,
            ..named
        };
        let refused = check(&tenant, &update, &resource, Some("team-a")).unwrap_err();
        assert!(refused.contains("a tenant's guest"), "{refused}");
    }

    #[test]
    fn events_go_to_the_regarding_objects_namespace() {
        let event = Action::Event {
            regarding: ObjectRef {
                api_version: "v1".into(),
                kind: "Namespace".into(),
                namespace: None,
                name: "shop".into(),
            },
            event_type: EventType::Normal,
            reason: "R".into(),
            message: "m".into(),
        };
        assert_eq!(target_of(&event).namespace.as_deref(), Some("default"));
    }
}

#[cfg(test)]
mod fence_tests {
    use std::time::Instant;

    use k8s_openapi::api::core::v1::ConfigMap;
    use tokio::sync::watch;

    use super::*;
    use crate::cluster::tests::{client_for, devcluster};
    use crate::grants::Rule;
    use crate::replication::Shard;

    /// A client that sends every request to the cluster `real` talks to,
    /// except PATCHes: it counts them and never sends or answers them, as
    /// a server too busy to answer in time would.
    fn holding_patches(real: Client) -> (Client, watch::Receiver<usize>) {
        let (seen, patches) = watch::channel(0);
        let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
            let real = real.clone();
            let seen = seen.clone();
            async move {
                if request.method() == http::Method::PATCH {
                    seen.send_modify(|count| *count += 1);
                    std::future::pending::<()>().await;
                }
                real.send(request).await
            }
        });
        (Client::new(service, "default"), patches)
    }

    #[tokio::test]
    async fn a_write_in_flight_is_abandoned_when_the_term_ends_or_the_object_moves() {
        let cluster = devcluster().await;
        let real = client_for(&cluster.kubeconfig_yaml()).await;
        let configmaps: Api<ConfigMap> = Api::namespaced(real.clone(), "default");
        let mut held = ConfigMap::default();
        held.metadata.name = Some("held".into());
        configmaps
            .create(&PostParams::default(), &held)
            .await
            .expect("create the ConfigMap");
        let (client, mut patches) = holding_patches(real);
        let target = ObjectRef {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: Some("default".into()),
            name: "held".into(),
        };
        // A member that owns the ConfigMap once it joins `a`'s ring.
        let taker = (0..)
            .map(|n| format!("b{n}"))
            .find(|b| Shard::new("a", [b.clone()]).owner("default", "held") == b)
            .expect("some member takes it");
        for moves in [false, true] {
            let case = if moves {
                "the object moves to another member"
            } else {
                "the term ends"
            };
            let fence = Fence::closed();
            fence.open_until(Instant::now() + Duration::from_secs(600));
            fence.set_shard(Some(Shard::new("a", ["a".to_owned()])));
            let executor = ActionExecutor::new(
                Identities::new(client.clone()),
                Discovery::new(client.clone()),
                InformerRegistry::new(client.clone()),
            )
            .with_fence(fence.clone());
            let actor = Actor {
                tenant: None,
                service_account: None,
                name: "writer".into(),
                grant: Grant::new(vec![Rule {
                    api_groups: vec![String::new()],
                    resources: vec!["configmaps".into()],
                    verbs: vec!["patch".into()],
                }]),
                namespaces: Vec::new(),
            };
            let outcome = Outcome {
                actions: vec![Action::Patch {
                    target: target.clone(),
                    kind: PatchKind::Merge,
                    body: json!({"data": {"written": case}}),
                    force: false,
                }],
                requeue_after: None,
            };
            let sent = *patches.borrow_and_update();
            let primary = target.clone();
            let writing =
                tokio::spawn(async move { executor.execute(&actor, &primary, &outcome).await });
            tokio::time::timeout(
                Duration::from_secs(30),
                patches.wait_for(|count| *count > sent),
            )
            .await
            .unwrap_or_else(|_| panic!("{case}: the PATCH is sent within 30 s"))
            .expect("the counter lives");
            assert!(
                !writing.is_finished(),
                "{case}: the write waits for its answer"
            );
            if moves {
                fence.set_shard(Some(Shard::new("a", ["a".to_owned(), taker.clone()])));
            } else {
                fence.close();
            }
            let result = tokio::time::timeout(Duration::from_secs(10), writing)
                .await
                .unwrap_or_else(|_| panic!("{case}: the write is abandoned within 10 s"))
                .expect("join");
            assert!(
                matches!(
                    result,
                    Err(ExecuteError::Fenced {
                        index: 0,
                        in_flight: true,
                        ..
                    })
                ),
                "{case}: {result:?}"
            );
            let message = result.unwrap_err().to_string();
            assert!(message.contains("abandoned unanswered"), "{message}");
        }
        cluster.shutdown().await;
    }
}
