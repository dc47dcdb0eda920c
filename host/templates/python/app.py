"""`{{name}}`: a Paddock controller. It rolls a Deployment out again when a
ConfigMap it uses changes: its pod template carries the resourceVersions of
the ConfigMaps it mounts or takes environment variables from, in the
annotation `example.com/config-versions`."""

import paddock
from paddock import Action, Index, Info, ObjectRef, Outcome, Watch, cache

ANNOTATION = "example.com/config-versions"

# The index of Deployments by the names of the ConfigMaps they use.
BY_CONFIG_MAP = "by-configmap"


class Reconciler(paddock.Controller):
    def describe(self):
        return (Info("{{name}}")
                .watch(Watch.primary("apps/v1", "Deployment"))
                # A ConfigMap's change calls `map` below.
                .watch(Watch.mapped("v1", "ConfigMap"))
                .index(Index(BY_CONFIG_MAP, "apps/v1", "Deployment", [
                    ".spec.template.spec.volumes[*].configMap.name",
                    ".spec.template.spec.containers[*].envFrom[*].configMapRef.name",
                ])))

    def reconcile(self, request):
        deployment = request.object
        if request.change == "deleted":
            return Outcome.done()
        namespace = paddock.namespace(deployment)
        versions = []
        for name in config_maps(deployment):
            config_map = cache.get(ObjectRef.namespaced("v1", "ConfigMap", namespace, name))
            version = config_map and paddock.resource_version(config_map)
            if version is not None:
                versions.append(f"{name}={version}")
        versions = ",".join(versions)
        current = paddock.str_at(
            deployment, "/spec/template/metadata/annotations/example.com~1config-versions") or ""
        if current == versions:
            return Outcome.done()
        return Outcome.done().with_(Action.merge_patch(
            paddock.object_ref(deployment),
            {"spec": {"template": {"metadata": {"annotations": {ANNOTATION: versions}}}}}))

    def map(self, changed):
        """The Deployments that use the changed ConfigMap, from the index."""
        return [paddock.object_ref(deployment) for deployment in
                cache.by_index(BY_CONFIG_MAP, paddock.name(changed), paddock.namespace(changed))]


def config_maps(deployment):
    """The names of the ConfigMaps a Deployment's pods use, sorted."""
    spec = paddock.pointer(deployment, "/spec/template/spec") or {}
    names = set()
    for volume in spec.get("volumes") or []:
        names.add(paddock.str_at(volume, "/configMap/name"))
    for container in spec.get("containers") or []:
        for source in container.get("envFrom") or []:
            names.add(paddock.str_at(source, "/configMapRef/name"))
    return sorted(name for name in names if name is not None)


WitWorld = paddock.export(Reconciler)
