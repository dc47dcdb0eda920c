// A JavaScript guest that misbehaves on request, for the sandbox tests.
//
// The annotation `paddock.dev/test-mode` picks the misbehaviour: `loop`
// (never returns), `allocate` (grows memory without bound), `trap` (throws
// an exception the SDK does not turn into an error), `count` (reports how
// many calls this instance has seen), `deletion` (reports whether the request
// is about a deletion), `flood` (an event of a 64 KiB message), `malformed`
// (an event whose reason is a number: the host reads the SDK's JSON answer
// and refuses it). Anything else behaves: one Normal event. It declares
// that it finalizes its primaries and reads Secrets in `default`, for the
// SDK's side of those declarations.

import { Action, Read, Watch, annotation, isDeletion, objectRef } from "./paddock.js";

let calls = 0;

export function describe() {
  return {
    name: "hostile",
    watches: [Watch.primary("v1", "ConfigMap")],
    finalizes: true,
    reads: [Read("v1", "Secret", { namespace: "default" })],
  };
}

export function reconcile(request) {
  const { object } = request;
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
    case "deletion":
      return [Action.event(me, "Deletion", isDeletion(request) ? "deletion" : "no deletion")];
    case "flood":
      return [Action.event(me, "Flood", "x".repeat(64 * 1024))];
    case "malformed":
      return [{ action: "event", regarding: me, warning: false, reason: 42, message: "m" }];
    case "count":
      calls += 1;
      return [Action.event(me, "Counted", String(calls))];
    default:
      return [Action.event(me, "Reconciled", "all good")];
  }
}
