"""Builders for the actions a reconcile answers with."""

import copy
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, List, Optional

from .objects import ObjectRef, controller_reference, namespace, object_ref


class PatchKind(Enum):
    """How a patch body is applied."""

    MERGE = "merge"
    JSON = "json"
    STRATEGIC = "strategic"
    APPLY = "apply"


@dataclass
class Action:
    """Something the controller wants done. Build one with the static methods;
    the host checks it against the guest's grant, then performs it."""

    verb: str
    object: Any = None
    target: Optional[ObjectRef] = None
    patch_kind: Optional[PatchKind] = None
    force: bool = False
    replicas: int = 0
    is_warning: bool = False
    reason: str = ""
    message: str = ""

    @staticmethod
    def create(obj: dict) -> "Action":
        """Create ``obj``."""
        return Action("create", object=obj)

    @staticmethod
    def update(obj: dict) -> "Action":
        """Replace ``obj`` (keep ``metadata.resourceVersion`` for optimistic concurrency)."""
        return Action("update", object=obj)

    @staticmethod
    def update_status(obj: dict) -> "Action":
        """Replace the status of ``obj`` through ``/status``."""
        return Action("update-status", object=obj)

    @staticmethod
    def apply(obj: dict) -> "Action":
        """Server-side apply ``obj``, the whole intent of this controller for
        it; fields other managers own are taken over (``force``)."""
        return Action("patch", object=obj, target=object_ref(obj),
                      patch_kind=PatchKind.APPLY, force=True)

    @staticmethod
    def apply_owned(owner: dict, child: dict) -> "Action":
        """Server-side apply ``child`` owned by ``owner``: sets the controller
        owner reference and, when the child names none, the owner's namespace."""
        return Action.apply(_owned_by(owner, child))

    @staticmethod
    def create_owned(owner: dict, child: dict) -> "Action":
        """Create ``child`` owned by ``owner`` (see ``apply_owned``)."""
        return Action.create(_owned_by(owner, child))

    @staticmethod
    def merge_patch(target: ObjectRef, body: Any) -> "Action":
        """A JSON merge patch of ``target``."""
        return Action("patch", object=body, target=target, patch_kind=PatchKind.MERGE)

    @staticmethod
    def json_patch(target: ObjectRef, operations: list) -> "Action":
        """A JSON patch (a list of operations) of ``target``."""
        return Action("patch", object=operations, target=target, patch_kind=PatchKind.JSON)

    @staticmethod
    def strategic_patch(target: ObjectRef, body: Any) -> "Action":
        """A strategic merge patch of ``target`` (built-in kinds only)."""
        return Action("patch", object=body, target=target, patch_kind=PatchKind.STRATEGIC)

    @staticmethod
    def delete(target: ObjectRef) -> "Action":
        """Delete ``target``."""
        return Action("delete", target=target)

    @staticmethod
    def scale(target: ObjectRef, replicas: int) -> "Action":
        """Set the replicas of ``target`` through its ``/scale`` subresource."""
        return Action("scale", target=target, replicas=replicas)

    @staticmethod
    def event(regarding: ObjectRef, reason: str, message: str) -> "Action":
        """Record a Normal event about ``regarding``."""
        return Action("record-event", target=regarding, reason=reason, message=message)

    @staticmethod
    def warning(regarding: ObjectRef, reason: str, message: str) -> "Action":
        """Record a Warning event about ``regarding``."""
        return Action("record-event", target=regarding, is_warning=True, reason=reason,
                      message=message)


def _owned_by(owner: dict, child: dict) -> dict:
    child = copy.deepcopy(child)
    if isinstance(child, dict):
        metadata = child.setdefault("metadata", {})
        if isinstance(metadata, dict):
            owner_namespace = namespace(owner)
            if owner_namespace is not None:
                metadata.setdefault("namespace", owner_namespace)
            metadata["ownerReferences"] = [controller_reference(owner)]
    return child


@dataclass
class Outcome:
    """What a successful reconcile answers: actions, and an optional requeue."""

    actions: List[Action] = field(default_factory=list)
    requeue_after_ms: Optional[int] = None

    @staticmethod
    def done() -> "Outcome":
        """Nothing to do."""
        return Outcome()

    def with_(self, action: Action) -> "Outcome":
        """Adds one action; returns the outcome, for chaining."""
        self.actions.append(action)
        return self

    def push(self, action: Action) -> None:
        """Adds one action."""
        self.actions.append(action)

    def requeue_after(self, seconds: float) -> "Outcome":
        """Reconcile again after ``seconds`` even if nothing changes."""
        self.requeue_after_ms = max(0, int(seconds * 1000))
        return self
