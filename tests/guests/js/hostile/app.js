// A JavaScript guest that misbehaves on request, for the sandbox tests.
//
// The annotation `paddock.dev/test-mode` picks the misbehaviour: `loop`
// (never returns), `allocate` (grows memory without bound), `trap` (throws
// an exception the SDK does not turn into an error), `count` (reports how
// many calls this instance has seen). Anything else behaves: one Normal event.

import { Action, Watch, annotation, objectRef } from "./paddock.js";

let calls = 0;

export function describe() {
  return { name: "hostile", watches: [Watch.primary("v1", "ConfigMap")] };
}

export function reconcile({ object }) {
  const me = objectRef(object);
  switch (annotation(object, "paddock.dev/test-mode") ?? "") {
    case "loop": {
      let counter = 0;
      for (;;) counter += 1;
    }
    case "allocate": {
      const hoard = [];
      for (;;) hoard.push(new Uint8Array(1 << 20).fill(7));
    }
    case "trap":
      throw new Error("hostile guest threw on purpose");
    case "count":
      calls += 1;
      return [Action.event(me, "Counted", String(calls))];
    default:
      return [Action.event(me, "Reconciled", "all good")];
  }
}
