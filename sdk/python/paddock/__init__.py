"""Write Paddock controllers in Python.

A controller is a class with ``describe`` and ``reconcile`` methods (and
``map`` for mapped watches), exported with one line::

    import paddock
    from paddock import Action, Info, Outcome, Watch

    class Floor(paddock.Controller):
        def describe(self):
            return Info("replica-floor", [Watch.primary("apps/v1", "Deployment")])

        def reconcile(self, request):
            deployment = request.object            # a dict, as the API server sends it
            floor = paddock.annotation(deployment, "paddock.dev/min-replicas")
            if floor is None:
                return Outcome.done()
            return Outcome.done().with_(Action.scale(paddock.object_ref(deployment), int(floor)))

    WitWorld = paddock.export(Floor)

Objects are plain dicts; the helpers in ``paddock.objects`` read their
metadata. Raise ``paddock.Transient`` or ``paddock.Permanent`` to fail a
reconcile; any other exception traps, like a panic in Rust.

Build with ``paddock build`` (or ``componentize-py -d wit -w controller
componentize app -o app.wasm``).
"""

from . import cache, log, time
from .actions import Action, Outcome, PatchKind
from .controller import Controller, Index, Info, Projection, Read, Request, Watch, export
from .errors import Permanent, Transient
from .objects import (
    ObjectRef,
    annotation,
    annotations,
    api_version,
    controller_owner,
    controller_reference,
    generation,
    has_finalizer,
    int_at,
    is_being_deleted,
    kind,
    label,
    labels,
    name,
    namespace,
    object_ref,
    pointer,
    resource_version,
    str_at,
    uid,
)

__all__ = [
    "Action", "Controller", "Index", "Info", "ObjectRef", "Outcome", "PatchKind", "Permanent",
    "Projection",
    "Read", "Request", "Transient", "Watch", "annotation", "annotations", "api_version", "cache",
    "controller_owner", "controller_reference", "export", "generation", "has_finalizer",
    "int_at", "is_being_deleted", "kind", "label", "labels", "log", "name", "namespace",
    "object_ref", "pointer", "resource_version", "str_at", "time", "uid",
]
