// `label-policy` in JavaScript: enforces the labels a Namespace requires of
// its Deployments. The same controller as `guest-examples/label-policy`
// (Rust), answering its fixtures with the same actions.

import {
  Action, Transient, Watch, cache, cluster, done, isBeingDeleted, label, annotation, name,
  namespace, objectRef,
} from "./paddock.js";

export const POLICY = "paddock.dev/required-labels";

/** Comma-separated `key` or `key=default` entries, as `{ key, default }`. */
export function parsePolicy(policy) {
  return policy
    .split(",")
    .map((entry) => entry.trim())
    .filter((entry) => entry !== "")
    .map((entry) => {
      const at = entry.indexOf("=");
      return at < 0
        ? { key: entry, default: undefined }
        : { key: entry.slice(0, at).trim(), default: entry.slice(at + 1).trim() };
    });
}

/** The actions that bring `deployment` in line with `requirements`. */
export function enforce(deployment, requirements) {
  const defaults = new Map();
  const unfixable = [];
  for (const requirement of requirements) {
    if (label(deployment, requirement.key) !== undefined) continue;
    if (requirement.default === undefined) unfixable.push(requirement.key);
    else defaults.set(requirement.key, requirement.default);
  }
  const me = objectRef(deployment);
  const actions = [];
  if (defaults.size > 0) {
    // Sorted by key, as the Rust example's map is.
    const sorted = [...defaults.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    actions.push(Action.mergePatch(me, { metadata: { labels: Object.fromEntries(sorted) } }));
    actions.push(Action.event(
      me,
      "LabelsDefaulted",
      `added required labels from the namespace policy: ${sorted.map(([k, v]) => `${k}=${v}`).join(", ")}`,
    ));
  }
  if (unfixable.length > 0) {
    actions.push(Action.warning(
      me,
      "MissingRequiredLabels",
      `the namespace policy requires labels with no default: ${unfixable.join(", ")}; add them to the Deployment`,
    ));
  }
  return { actions };
}

export function describe() {
  return {
    name: "label-policy",
    watches: [Watch.primary("apps/v1", "Deployment"), Watch.mapped("v1", "Namespace")],
  };
}

export function reconcile({ object: deployment, change }) {
  if (change === "deleted" || isBeingDeleted(deployment)) return done();
  const namespaceName = namespace(deployment);
  if (namespaceName === undefined) return done();
  const ns = cache.get(cluster("v1", "Namespace", namespaceName));
  if (ns === undefined) {
    // The Namespace is not in the cache yet: try again shortly.
    throw new Transient(`namespace ${namespaceName} is not in the cache yet`);
  }
  const policy = annotation(ns, POLICY);
  if (policy === undefined) return done();
  return enforce(deployment, parsePolicy(policy));
}

export function map(ns) {
  return cache.list("apps/v1", "Deployment", name(ns)).map(objectRef);
}
