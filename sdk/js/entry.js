// The component's entry point, written next to the controller by
// `paddock build`: wraps `app.js` into the exports of the `controller-json`
// world.
import * as controller from "./app.js";
import { exportController } from "./paddock.js";

const guest = exportController(controller);

export function describe() {
  return guest.describe();
}

export function reconcile(request) {
  return guest.reconcile(request);
}

// The world `controller-json`: the host reconciles through this export
// (bound directly: in an interpreter, each call costs).
export const reconcileJson = guest.reconcileJson;

export function map(changed) {
  return guest.map(changed);
}

export function finalizes() {
  return guest.finalizes();
}

export function reads() {
  return guest.reads();
}

export function indexes() {
  return guest.indexes();
}

export function projections() {
  return guest.projections();
}
