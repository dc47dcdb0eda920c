"""The controller class, its description, and the export to the component."""

import json
from dataclasses import dataclass, field
from typing import List, Optional

from . import _glue
from .objects import is_being_deleted


@dataclass
class Watch:
    """A resource the controller watches."""

    api_version: str
    kind: str
    relation: str  # "primary", "owned" or "mapped"
    namespace: Optional[str] = None
    label_selector: Optional[str] = None

    @staticmethod
    def primary(api_version: str, kind: str) -> "Watch":
        """The kind this controller reconciles."""
        return Watch(api_version, kind, "primary")

    @staticmethod
    def owned(api_version: str, kind: str) -> "Watch":
        """A kind this controller creates and owns: changes reconcile the owner."""
        return Watch(api_version, kind, "owned")

    @staticmethod
    def mapped(api_version: str, kind: str) -> "Watch":
        """A kind whose changes ``map`` turns into primary objects to reconcile."""
        return Watch(api_version, kind, "mapped")

    def in_namespace(self, namespace: str) -> "Watch":
        """Only watch one namespace."""
        self.namespace = namespace
        return self

    def with_label_selector(self, selector: str) -> "Watch":
        """Only watch objects matching a label selector, e.g. ``app=web``."""
        self.label_selector = selector
        return self


@dataclass
class Read:
    """A resource the controller reads from the cache without reacting to its
    changes: the host keeps it cached for the controller. A guest reads only
    kinds it watches or reads; anything else reads as absent. The grant must
    allow ``get`` or ``list`` on it."""

    api_version: str
    kind: str
    namespace: Optional[str] = None

    def in_namespace(self, namespace: str) -> "Read":
        """Only objects in one namespace."""
        self.namespace = namespace
        return self


@dataclass
class Index:
    """An index of the cache, for ``cache.by_index``: objects of one kind (one
    the controller watches or reads) by the values JSONPath expressions in
    kubectl's syntax select in them (strings, numbers and booleans, as text,
    and each element of a selected list of them), e.g.
    ``Index("by-configmap", "apps/v1", "Deployment",
    [".spec.template.spec.volumes[*].configMap.name"])``. The host evaluates
    it whenever it stores an object of the kind."""

    name: str
    api_version: str
    kind: str
    paths: List[str] = field(default_factory=list)


@dataclass
class Projection:
    """The fields of one kind (one the controller watches or reads) it
    reads, as JSONPath expressions of field names and ``[*]`` in kubectl's
    syntax, e.g. ``Projection("apps/v1", "Deployment", [".spec.replicas",
    ".metadata.annotations['paddock.dev/min-replicas']"])``. The host hands
    such objects (to ``reconcile``, ``map`` and every cache read) narrowed
    to them, always keeping ``apiVersion``, ``kind`` and the metadata that
    names an object (``name``, ``namespace``, ``uid``, ``resourceVersion``,
    ``generation``, ``ownerReferences``, ``deletionTimestamp``): the guest
    parses only what it uses. A field not listed reads as absent."""

    api_version: str
    kind: str
    paths: List[str] = field(default_factory=list)


@dataclass
class Info:
    """Who a controller is and what it watches (exactly one primary watch).

    ``finalizes=True``: the host holds each primary object with the
    finalizer ``paddock.dev/<controller>``, so a deletion reaches
    ``reconcile`` while the object still exists (``request.is_deletion``),
    even when the host was down when it was deleted; once that reconcile
    succeeds the host removes the finalizer. The grant must allow ``patch``
    on the primary resource.

    ``reads``: the resources (``Read``) the controller reads from the cache
    without watching them.

    ``indexes``: the indexes (``Index``) it looks objects up by with
    ``cache.by_index``.

    ``projections``: the fields (``Projection``) it reads of some kinds."""

    name: str
    watches: List[Watch] = field(default_factory=list)
    finalizes: bool = False
    reads: List[Read] = field(default_factory=list)
    indexes: List[Index] = field(default_factory=list)
    projections: List[Projection] = field(default_factory=list)

    def watch(self, watch: Watch) -> "Info":
        """Adds a watch."""
        self.watches.append(watch)
        return self

    def read(self, read: Read) -> "Info":
        """Adds a resource read without watching it."""
        self.reads.append(read)
        return self

    def index(self, index: Index) -> "Info":
        """Adds an index of a kind the controller watches or reads."""
        self.indexes.append(index)
        return self

    def project(self, projection: Projection) -> "Info":
        """Reads only some fields of a kind the controller watches or reads."""
        self.projections.append(projection)
        return self


@dataclass
class Request:
    """One call to ``reconcile``."""

    object: dict
    change: str  # "applied" or "deleted"
    attempt: int

    @property
    def is_deletion(self) -> bool:
        """Whether this reconcile is about a deletion: the object is gone
        (``change == "deleted"``) or is being deleted (``deletionTimestamp``
        set, as a finalizing controller sees it). Clean up, and answer."""
        return self.change == "deleted" or is_being_deleted(self.object)


class Controller:
    """Subclass this: ``describe`` and ``reconcile``, and ``map`` for mapped
    watches. How long an instance lives is the host's choice (it may be reused
    for several calls of the same guest, or be fresh per call): keep no state
    that a reconcile depends on."""

    def describe(self) -> Info:
        """Who this controller is and what it watches (exactly one primary
        watch), and what it finalizes, reads and indexes. Asked once at load
        and checked against the grant."""
        raise NotImplementedError("a controller must describe itself")

    def reconcile(self, request: Request):
        """Reconcile one primary object: answer with an ``Outcome`` of the
        actions that bring the world in line with ``request.object``, or raise
        ``Transient`` or ``Permanent``."""
        raise NotImplementedError("a controller must reconcile")

    def map(self, changed: dict) -> list:
        """The primary objects (``ObjectRef``) to reconcile when ``changed``
        (an object of a mapped kind) changes. The default maps to nothing."""
        return []


def export(controller_class):
    """Exports a ``Controller`` subclass as the component's world; assign the
    result to ``WitWorld`` at the top level of the app module."""

    class WitWorld:
        def describe(self):
            return _glue.info_to_wit(controller_class().describe())

        def reconcile(self, req):
            return _glue.reconcile(controller_class(), req, Request)

        def finalizes(self) -> bool:
            return bool(controller_class().describe().finalizes)

        def reads(self):
            return _glue.reads_to_wit(controller_class().describe())

        def indexes(self):
            return _glue.indexes_to_wit(controller_class().describe())

        def projections(self):
            return _glue.projections_to_wit(controller_class().describe())

        def map(self, changed: str):
            try:
                obj = json.loads(changed)
            except ValueError:
                return []
            return [_glue.ref_to_wit(ref) for ref in controller_class().map(obj)]

    WitWorld.__name__ = "WitWorld"
    return WitWorld
