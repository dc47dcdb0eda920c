// `tenant-quota` with componentize-js alone, against the repository's `wit/`.
//
// The JavaScript twin of `tests/guests/sdkless` (Rust), answering its
// fixtures with the same actions, as `docs/guests.md` ("Without an SDK")
// shows it: every Namespace labelled `tenant=<t>` gets a ResourceQuota
// `tenant-quota` of `pods` from the ConfigMap `<t>` in the namespace
// `tenant-quotas` (`data.pods`), 10 when there is none; a change to such a
// ConfigMap reconciles its tenant's Namespaces, found by the index `tenant`.
//
// The exports are the world's, in camelCase; records are objects, enums
// strings, variants `{ tag, val }`, an absent option `undefined`; an error
// is thrown as `{ tag: "transient" | "permanent", val: message }`.

import { byIndex, get } from "paddock:controller/cache@0.1.5";

const QUOTAS_NAMESPACE = "tenant-quotas";

const watch = (kind, relation, namespace, labelSelector) =>
  ({ apiVersion: "v1", kind, relation, namespace, labelSelector });

export function describe() {
  return {
    name: "tenant-quota",
    watches: [
      watch("Namespace", "primary", undefined, "tenant"),
      watch("ResourceQuota", "owned"),
      watch("ConfigMap", "mapped", QUOTAS_NAMESPACE),
    ],
  };
}

export function finalizes() {
  return false;
}

export function reads() {
  return [];
}

export function indexes() {
  return [
    { name: "tenant", apiVersion: "v1", kind: "Namespace", paths: [".metadata.labels.tenant"] },
  ];
}

// The host hands this guest only the fields it reads of a Namespace and of
// a ConfigMap.
export function projections() {
  return [
    { apiVersion: "v1", kind: "Namespace", paths: [".metadata.labels.tenant"] },
    { apiVersion: "v1", kind: "ConfigMap", paths: [".data.pods"] },
  ];
}

export function reconcile({ object, change }) {
  let namespace;
  try {
    namespace = JSON.parse(object);
  } catch (error) {
    throw { tag: "permanent", val: `the object does not parse: ${error}` };
  }
  const metadata = namespace.metadata ?? {};
  // A Namespace's quota goes with it.
  if (change === "deleted" || metadata.deletionTimestamp != null) return { actions: [] };
  const name = metadata.name ?? "";
  const tenant = metadata.labels?.tenant ?? "";
  const sizing = get({
    apiVersion: "v1", kind: "ConfigMap", namespace: QUOTAS_NAMESPACE, name: tenant,
  });
  const pods = (sizing === undefined ? undefined : JSON.parse(sizing).data?.pods) ?? "10";
  const quota = {
    apiVersion: "v1",
    kind: "ResourceQuota",
    metadata: {
      name: "tenant-quota",
      namespace: name,
      ownerReferences: [{
        apiVersion: "v1", kind: "Namespace", name, uid: metadata.uid,
        controller: true, blockOwnerDeletion: true,
      }],
    },
    spec: { hard: { pods } },
  };
  const target = { apiVersion: "v1", kind: "ResourceQuota", namespace: name, name: "tenant-quota" };
  const patch = { target, kind: "apply", body: JSON.stringify(quota), force: true };
  return { actions: [{ tag: "patch", val: patch }], requeueAfterMs: undefined };
}

export function map(changed) {
  // A changed ConfigMap `<t>`: the Namespaces of tenant `<t>`.
  const tenant = JSON.parse(changed).metadata?.name ?? "";
  return byIndex("tenant", tenant, undefined).map((json) => ({
    apiVersion: "v1", kind: "Namespace", namespace: undefined, name: JSON.parse(json).metadata.name,
  }));
}
