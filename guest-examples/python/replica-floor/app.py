"""`replica-floor` in Python: keeps annotated Deployments at or above a minimum.

The same controller as `guest-examples/replica-floor` (Rust), answering its
fixtures with the same actions.
"""

import json
import re

import paddock
from paddock import Action, Info, Outcome, Projection, Watch

ANNOTATION = "paddock.dev/min-replicas"

WHOLE_NUMBER = re.compile(r"\+?[0-9]+")


def parse_floor(text):
    """The floor as a u32, or None: what Rust's `str::parse::<u32>` accepts."""
    text = text.strip()
    if not WHOLE_NUMBER.fullmatch(text):
        return None
    value = int(text)
    return value if value <= 0xFFFF_FFFF else None


class ReplicaFloor(paddock.Controller):
    def describe(self):
        # Only the annotation and the replicas cross from the host.
        return Info("replica-floor", [Watch.primary("apps/v1", "Deployment")]).project(
            Projection("apps/v1", "Deployment",
                       [f".metadata.annotations['{ANNOTATION}']", ".spec.replicas"]))

    def reconcile(self, request):
        deployment = request.object
        if request.change == "deleted" or paddock.is_being_deleted(deployment):
            return Outcome.done()
        text = paddock.annotation(deployment, ANNOTATION)
        if text is None:
            return Outcome.done()
        me = paddock.object_ref(deployment)
        floor = parse_floor(text)
        if floor is None:
            quoted = json.dumps(text, ensure_ascii=False)
            return Outcome.done().with_(Action.warning(
                me, "InvalidMinReplicas",
                f"annotation {ANNOTATION} is {quoted}, not a whole number; ignoring it"))
        # An absent `spec.replicas` means 1, as the API server defaults it.
        replicas = paddock.int_at(deployment, "/spec/replicas")
        if replicas is None:
            replicas = 1
        if replicas >= floor:
            return Outcome.done()
        return (Outcome.done()
                .with_(Action.scale(me, floor))
                .with_(Action.event(
                    me, "ScaledUp",
                    f"scaled from {replicas} to {floor} replicas to meet {ANNOTATION}")))


WitWorld = paddock.export(ReplicaFloor)
