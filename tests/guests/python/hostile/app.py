"""A Python guest that misbehaves on request, for the sandbox tests.

The annotation `paddock.dev/test-mode` picks the misbehaviour: `loop` (never
returns), `allocate` (grows memory without bound), `trap` (raises an
exception the SDK does not turn into an error), `count` (reports how many
calls this instance has seen), `deletion` (reports whether the request is
about a deletion). Anything else behaves: one Normal event. It declares that
it finalizes its primaries and reads Secrets in `default`, for the SDK's side
of those declarations.
"""

import paddock
from paddock import Action, Info, Outcome, Read, Watch

CALLS = 0


class Hostile(paddock.Controller):
    def describe(self):
        return Info("hostile", [Watch.primary("v1", "ConfigMap")], finalizes=True,
                    reads=[Read("v1", "Secret").in_namespace("default")])

    def reconcile(self, request):
        global CALLS
        me = paddock.object_ref(request.object)
        mode = paddock.annotation(request.object, "paddock.dev/test-mode") or ""
        if mode == "loop":
            counter = 0
            while True:
                counter += 1
        if mode == "allocate":
            hoard = []
            while True:
                hoard.append(bytearray(1 << 20))
        if mode == "trap":
            raise RuntimeError("hostile guest raised on purpose")
        if mode == "deletion":
            answer = "deletion" if request.is_deletion else "no deletion"
            return Outcome.done().with_(Action.event(me, "Deletion", answer))
        if mode == "count":
            CALLS += 1
            return Outcome.done().with_(Action.event(me, "Counted", str(CALLS)))
        return Outcome.done().with_(Action.event(me, "Reconciled", "all good"))


WitWorld = paddock.export(Hostile)
