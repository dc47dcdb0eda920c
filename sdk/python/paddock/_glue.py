"""Conversions between the SDK's types and the generated bindings."""

import json

from componentize_py_types import Err
from wit_world.imports import types as wit

from .errors import Permanent, Transient

_RELATIONS = {
    "primary": wit.Relation.PRIMARY,
    "owned": wit.Relation.OWNED,
    "mapped": wit.Relation.MAPPED,
}

_PATCH_KINDS = {
    "merge": wit.PatchKind.MERGE,
    "json": wit.PatchKind.JSON,
    "strategic": wit.PatchKind.STRATEGIC,
    "apply": wit.PatchKind.APPLY,
}


def ref_to_wit(ref):
    return wit.ObjectRef(ref.api_version, ref.kind, ref.namespace, ref.name)


def info_to_wit(info):
    watches = []
    for watch in info.watches:
        if watch.relation not in _RELATIONS:
            raise ValueError(f"watch relation {watch.relation!r} is not primary, owned or mapped")
        watches.append(wit.Watch(watch.api_version, watch.kind, _RELATIONS[watch.relation],
                                 watch.namespace, watch.label_selector))
    return wit.Info(info.name, watches)


def reads_to_wit(info):
    return [wit.Read(read.api_version, read.kind, read.namespace) for read in info.reads]


def indexes_to_wit(info):
    return [wit.Index(index.name, index.api_version, index.kind, list(index.paths))
            for index in info.indexes]


def projections_to_wit(info):
    return [wit.Projection(projection.api_version, projection.kind, list(projection.paths))
            for projection in info.projections]


def _dump(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _scale_to_wit(action):
    return wit.Action_Scale(wit.Scale(ref_to_wit(action.target), action.replicas))


def _event_to_wit(action):
    return wit.Action_RecordEvent(wit.Event(ref_to_wit(action.target), action.is_warning,
                                            action.reason, action.message))


def _patch_to_wit(action):
    return wit.Action_Patch(wit.Patch(ref_to_wit(action.target),
                                      _PATCH_KINDS[action.patch_kind.value],
                                      _dump(action.object), action.force))


_ACTIONS = {
    "create": lambda action: wit.Action_Create(_dump(action.object)),
    "update": lambda action: wit.Action_Update(_dump(action.object)),
    "update-status": lambda action: wit.Action_UpdateStatus(_dump(action.object)),
    "patch": _patch_to_wit,
    "delete": lambda action: wit.Action_Delete(ref_to_wit(action.target)),
    "scale": _scale_to_wit,
    "record-event": _event_to_wit,
}


def action_to_wit(action):
    to_wit = _ACTIONS.get(action.verb)
    if to_wit is None:
        raise ValueError(f"unknown action {action.verb!r}")
    return to_wit(action)


def reconcile(controller, req, Request):
    try:
        obj = json.loads(req.object)
    except ValueError as error:
        raise Err(wit.Error_Permanent(f"the host sent an object that does not parse: {error}"))
    change = "deleted" if req.change == wit.Change.DELETED else "applied"
    try:
        outcome = controller.reconcile(Request(obj, change, req.attempt))
    except Transient as error:
        raise Err(wit.Error_Transient(str(error)))
    except Permanent as error:
        raise Err(wit.Error_Permanent(str(error)))
    return wit.Outcome([action_to_wit(action) for action in outcome.actions],
                       outcome.requeue_after_ms)
