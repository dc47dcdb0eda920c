// `replica-floor` in JavaScript: keeps annotated Deployments at or above a
// minimum. The same controller as `guest-examples/replica-floor` (Rust),
// answering its fixtures with the same actions.

import {
  Action, Projection, Watch, annotation, done, intAt, isBeingDeleted, objectRef,
} from "./paddock.js";

export const ANNOTATION = "paddock.dev/min-replicas";

/** The floor as a u32, or undefined: what Rust's `str::parse::<u32>` accepts. */
function parseFloor(text) {
  const trimmed = text.trim();
  if (!/^\+?[0-9]+$/.test(trimmed)) return undefined;
  const value = Number(trimmed);
  return value <= 0xffff_ffff ? value : undefined;
}

export function describe() {
  return {
    name: "replica-floor",
    watches: [Watch.primary("apps/v1", "Deployment")],
    // Only the annotation and the replicas cross from the host.
    projections: [
      Projection("apps/v1", "Deployment", [`.metadata.annotations['${ANNOTATION}']`, ".spec.replicas"]),
    ],
  };
}

export function reconcile({ object: deployment, change }) {
  if (change === "deleted" || isBeingDeleted(deployment)) return done();
  const text = annotation(deployment, ANNOTATION);
  if (text === undefined) return done();
  const me = objectRef(deployment);
  const floor = parseFloor(text);
  if (floor === undefined) {
    return [
      Action.warning(
        me,
        "InvalidMinReplicas",
        `annotation ${ANNOTATION} is ${JSON.stringify(text)}, not a whole number; ignoring it`,
      ),
    ];
  }
  // An absent `spec.replicas` means 1, as the API server defaults it.
  const replicas = intAt(deployment, "/spec/replicas") ?? 1;
  if (replicas >= floor) return done();
  return [
    Action.scale(me, floor),
    Action.event(me, "ScaledUp", `scaled from ${replicas} to ${floor} replicas to meet ${ANNOTATION}`),
  ];
}
