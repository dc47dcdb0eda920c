// `{{name}}`: a Paddock controller. It rolls a Deployment out again when a
// ConfigMap it uses changes: its pod template carries the resourceVersions
// of the ConfigMaps it mounts or takes environment variables from, in the
// annotation `example.com/config-versions`.

import {
  Action, Index, Watch, cache, done, name, namespace, namespaced, objectRef, pointer,
  resourceVersion, strAt,
} from "./paddock.js";

const ANNOTATION = "example.com/config-versions";

// The index of Deployments by the names of the ConfigMaps they use.
const BY_CONFIG_MAP = "by-configmap";

export function describe() {
  return {
    name: "{{name}}",
    watches: [
      Watch.primary("apps/v1", "Deployment"),
      // A ConfigMap's change calls `map` below.
      Watch.mapped("v1", "ConfigMap"),
    ],
    indexes: [
      Index(BY_CONFIG_MAP, "apps/v1", "Deployment", [
        ".spec.template.spec.volumes[*].configMap.name",
        ".spec.template.spec.containers[*].envFrom[*].configMapRef.name",
      ]),
    ],
  };
}

export function reconcile({ object: deployment, change }) {
  if (change === "deleted") return done();
  const versions = [];
  for (const configMapName of configMaps(deployment)) {
    const configMap = cache.get(namespaced("v1", "ConfigMap", namespace(deployment), configMapName));
    const version = configMap && resourceVersion(configMap);
    if (version !== undefined) versions.push(`${configMapName}=${version}`);
  }
  const stamp = versions.join(",");
  const current =
    strAt(deployment, "/spec/template/metadata/annotations/example.com~1config-versions") ?? "";
  if (current === stamp) return done();
  return [
    Action.mergePatch(objectRef(deployment), {
      spec: { template: { metadata: { annotations: { [ANNOTATION]: stamp } } } },
    }),
  ];
}

// The Deployments that use the changed ConfigMap, from the index.
export function map(changed) {
  return cache.byIndex(BY_CONFIG_MAP, name(changed), namespace(changed)).map(objectRef);
}

// The names of the ConfigMaps a Deployment's pods use, sorted.
function configMaps(deployment) {
  const spec = pointer(deployment, "/spec/template/spec") ?? {};
  const names = new Set();
  for (const volume of spec.volumes ?? []) names.add(strAt(volume, "/configMap/name"));
  for (const container of spec.containers ?? []) {
    for (const source of container.envFrom ?? []) names.add(strAt(source, "/configMapRef/name"));
  }
  return [...names].filter((n) => n !== undefined).sort();
}
