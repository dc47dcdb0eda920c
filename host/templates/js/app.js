// `{{name}}`: a Paddock controller. It labels every ConfigMap
// `example.com/reconciled: "true"`.

import { Action, Watch, done, label, objectRef } from "./paddock.js";

const LABEL = "example.com/reconciled";

export function describe() {
  return { name: "{{name}}", watches: [Watch.primary("v1", "ConfigMap")] };
}

export function reconcile({ object: configMap, change }) {
  if (change === "deleted" || label(configMap, LABEL) !== undefined) return done();
  return [Action.mergePatch(objectRef(configMap), { metadata: { labels: { [LABEL]: "true" } } })];
}
