//! `pdb-keeper`: every Deployment of two replicas or more gets a
//! PodDisruptionBudget of its own, so that a node drain never takes more
//! of its pods at once than the namespace allows: `maxUnavailable` of the
//! ConfigMap `pdb-policy` in its namespace (1 when there is none).
//!
//! It is written with Kubernetes' own types (the SDK's feature `typed`):
//! it reads the Deployment and the ConfigMap as k8s-openapi structs and
//! answers with one.

use paddock_guest::k8s::api::apps::v1::Deployment;
use paddock_guest::k8s::api::core::v1::ConfigMap;
use paddock_guest::k8s::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use paddock_guest::k8s::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use paddock_guest::k8s::apimachinery::pkg::util::intstr::IntOrString;
use paddock_guest::{Action, Controller, Error, Info, Outcome, Read, Request, Watch, cache};

/// The controller.
#[derive(Debug)]
pub struct PdbKeeper;

impl Controller for PdbKeeper {
    fn describe() -> Info {
        Info::new("pdb-keeper")
            .watch(Watch::primary("apps/v1", "Deployment"))
            .watch(Watch::owned("policy/v1", "PodDisruptionBudget"))
            .read(Read::new("v1", "ConfigMap"))
    }

    fn reconcile(request: Request) -> Result<Outcome, Error> {
        if request.is_deletion() {
            // Its budget is owned by it: the cluster collects it.
            return Ok(Outcome::done());
        }
        let deployment: Deployment = request.object.typed()?;
        let spec = deployment.spec.unwrap_or_default();
        if spec.replicas.unwrap_or(1) < 2 {
            return Ok(Outcome::done());
        }
        let namespace = deployment.metadata.namespace.as_deref();
        let allowed = cache::get_as::<ConfigMap>(namespace, "pdb-policy")
            .and_then(|policy| policy.data?.get("maxUnavailable")?.parse::<i32>().ok())
            .unwrap_or(1)
            .max(1);
        let budget = PodDisruptionBudget {
            metadata: ObjectMeta {
                name: deployment.metadata.name.clone(),
                namespace: deployment.metadata.namespace.clone(),
                ..ObjectMeta::default()
            },
            spec: Some(PodDisruptionBudgetSpec {
                max_unavailable: Some(IntOrString::Int(allowed)),
                selector: Some(spec.selector),
                ..PodDisruptionBudgetSpec::default()
            }),
            status: None,
        };
        Ok(Outcome::done().with(Action::apply_owned(&request.object, budget)))
    }
}

paddock_guest::export_controller!(PdbKeeper);
