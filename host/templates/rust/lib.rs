//! `{{name}}`: a Paddock controller. It rolls a Deployment out again when
//! a ConfigMap it uses changes: its pod template carries the
//! resourceVersions of the ConfigMaps it mounts or takes environment
//! variables from, in the annotation `example.com/config-versions`.

use std::collections::BTreeSet;

use paddock_guest::{
    Action, Change, Controller, Error, Index, Info, Object, ObjectRef, Outcome, Request, Value,
    Watch, cache, json,
};

/// The pod template annotation this controller sets.
const ANNOTATION: &str = "example.com/config-versions";

/// The index of Deployments by the names of the ConfigMaps they use.
const BY_CONFIG_MAP: &str = "by-configmap";

/// The controller.
struct Reconciler;

impl Controller for Reconciler {
    fn describe() -> Info {
        Info::new("{{name}}")
            .watch(Watch::primary("apps/v1", "Deployment"))
            // A ConfigMap's change calls `map` below.
            .watch(Watch::mapped("v1", "ConfigMap"))
            .index(Index::new(
                BY_CONFIG_MAP,
                "apps/v1",
                "Deployment",
                &[
                    ".spec.template.spec.volumes[*].configMap.name",
                    ".spec.template.spec.containers[*].envFrom[*].configMapRef.name",
                ],
            ))
    }

    fn reconcile(request: Request) -> Result<Outcome, Error> {
        let deployment = request.object;
        if request.change == Change::Deleted {
            return Ok(Outcome::done());
        }
        let namespace = deployment.namespace().unwrap_or_default();
        let versions: Vec<String> = config_maps(&deployment)
            .into_iter()
            .filter_map(|name| {
                let config_map =
                    cache::get(&ObjectRef::namespaced("v1", "ConfigMap", namespace, &name))?;
                Some(format!("{name}={}", config_map.resource_version()?))
            })
            .collect();
        let versions = versions.join(",");
        let current = deployment
            .str_at("/spec/template/metadata/annotations/example.com~1config-versions")
            .unwrap_or_default();
        if current == versions {
            return Ok(Outcome::done());
        }
        Ok(Outcome::done().with(Action::merge_patch(
            deployment.object_ref(),
            json!({"spec": {"template": {"metadata": {"annotations": {ANNOTATION: versions}}}}}),
        )))
    }

    /// The Deployments that use the changed ConfigMap, from the index.
    fn map(changed: Object) -> Vec<ObjectRef> {
        cache::by_index(BY_CONFIG_MAP, changed.name(), changed.namespace())
            .iter()
            .map(Object::object_ref)
            .collect()
    }
}

/// The names of the ConfigMaps a Deployment's pods use, sorted.
fn config_maps(deployment: &Object) -> BTreeSet<String> {
    let spec = deployment.pointer("/spec/template/spec");
    let volumes = items(spec, "volumes").filter_map(|volume| volume.pointer("/configMap/name"));
    let sources = items(spec, "containers")
        .flat_map(|container| items(Some(container), "envFrom"))
        .filter_map(|source| source.pointer("/configMapRef/name"));
    volumes
        .chain(sources)
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

/// The elements of the list `key` of `value`, if any.
fn items<'a>(value: Option<&'a Value>, key: &str) -> impl Iterator<Item = &'a Value> {
    value
        .and_then(|value| value.get(key))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

paddock_guest::export_controller!(Reconciler);
