"""Kubernetes objects as dicts, with helpers for what every controller reads."""

from dataclasses import dataclass
from typing import Any, Optional


@dataclass(frozen=True)
class ObjectRef:
    """Names one Kubernetes object."""

    api_version: str
    kind: str
    namespace: Optional[str]
    name: str

    @staticmethod
    def namespaced(api_version: str, kind: str, namespace: str, name: str) -> "ObjectRef":
        """A reference to a namespaced object."""
        return ObjectRef(api_version, kind, namespace, name)

    @staticmethod
    def cluster(api_version: str, kind: str, name: str) -> "ObjectRef":
        """A reference to a cluster-scoped object."""
        return ObjectRef(api_version, kind, None, name)


# The tokens of each JSON pointer read so far: guests read the same few
# paths on every call, and splitting and unescaping them is most of a
# lookup's cost in an interpreter.
_TOKENS: dict = {}


def _tokens(path: str) -> tuple:
    tokens = _TOKENS.get(path)
    if tokens is None:
        tokens = tuple(token.replace("~1", "/").replace("~0", "~")
                       for token in path.lstrip("/").split("/"))
        if len(_TOKENS) < 4096:
            _TOKENS[path] = tokens
    return tokens


def pointer(obj: Any, path: str) -> Any:
    """The value at a JSON pointer such as ``/spec/replicas``, or None."""
    if path == "":
        return obj
    current = obj
    for token in _tokens(path):
        if isinstance(current, dict):
            current = current.get(token)
        elif isinstance(current, list) and token.isdigit() and int(token) < len(current):
            current = current[int(token)]
        else:
            return None
        if current is None:
            return None
    return current


def _metadata(obj: Any) -> dict:
    metadata = obj.get("metadata") if isinstance(obj, dict) else None
    return metadata if isinstance(metadata, dict) else {}


def _str(value: Any) -> Optional[str]:
    return value if isinstance(value, str) else None


def str_at(obj: Any, path: str) -> Optional[str]:
    """The string at a JSON pointer, or None."""
    value = pointer(obj, path)
    return value if isinstance(value, str) else None


def int_at(obj: Any, path: str) -> Optional[int]:
    """The integer at a JSON pointer, or None (floats and strings are not integers)."""
    value = pointer(obj, path)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def api_version(obj: dict) -> str:
    """``apiVersion``, or ``""``."""
    return _str(obj.get("apiVersion") if isinstance(obj, dict) else None) or ""


def kind(obj: dict) -> str:
    """``kind``, or ``""``."""
    return _str(obj.get("kind") if isinstance(obj, dict) else None) or ""


def name(obj: dict) -> str:
    """``metadata.name``, or ``""``."""
    return _str(_metadata(obj).get("name")) or ""


def namespace(obj: dict) -> Optional[str]:
    """``metadata.namespace``; None for cluster-scoped objects."""
    return _str(_metadata(obj).get("namespace"))


def uid(obj: dict) -> str:
    """``metadata.uid``, or ``""``."""
    return _str(_metadata(obj).get("uid")) or ""


def resource_version(obj: dict) -> Optional[str]:
    """``metadata.resourceVersion``, if set."""
    return str_at(obj, "/metadata/resourceVersion")


def generation(obj: dict) -> Optional[int]:
    """``metadata.generation``, if the kind has one."""
    return int_at(obj, "/metadata/generation")


def is_being_deleted(obj: dict) -> bool:
    """Whether ``metadata.deletionTimestamp`` is set."""
    return _metadata(obj).get("deletionTimestamp") is not None


def _string_map(obj: dict, field: str) -> dict:
    value = _metadata(obj).get(field)
    return value if isinstance(value, dict) else {}


def label(obj: dict, key: str) -> Optional[str]:
    """One label's value, or None."""
    value = _string_map(obj, "labels").get(key)
    return value if isinstance(value, str) else None


def annotation(obj: dict, key: str) -> Optional[str]:
    """One annotation's value, or None."""
    value = _string_map(obj, "annotations").get(key)
    return value if isinstance(value, str) else None


def labels(obj: dict) -> dict:
    """All labels with string values (empty when there are none)."""
    return {k: v for k, v in _string_map(obj, "labels").items() if isinstance(v, str)}


def annotations(obj: dict) -> dict:
    """All annotations with string values (empty when there are none)."""
    return {k: v for k, v in _string_map(obj, "annotations").items() if isinstance(v, str)}


def has_finalizer(obj: dict, finalizer: str) -> bool:
    """Whether ``metadata.finalizers`` holds ``finalizer``."""
    finalizers = _metadata(obj).get("finalizers")
    return isinstance(finalizers, list) and finalizer in finalizers


def object_ref(obj: dict) -> ObjectRef:
    """The reference to this object."""
    metadata = _metadata(obj)
    return ObjectRef(api_version(obj), kind(obj), _str(metadata.get("namespace")),
                     _str(metadata.get("name")) or "")


def controller_reference(obj: dict) -> dict:
    """An owner reference naming ``obj`` as the controller of another object
    (``controller: true``, ``blockOwnerDeletion: true``)."""
    return {
        "apiVersion": api_version(obj),
        "kind": kind(obj),
        "name": name(obj),
        "uid": uid(obj),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def controller_owner(obj: dict) -> Optional[ObjectRef]:
    """The controller owner of ``obj``, if it has one."""
    owners = _metadata(obj).get("ownerReferences")
    if not isinstance(owners, list):
        return None
    for owner in owners:
        if isinstance(owner, dict) and owner.get("controller") is True:
            fields = [owner.get("apiVersion"), owner.get("kind"), owner.get("name")]
            if not all(isinstance(field, str) for field in fields):
                return None
            return ObjectRef(fields[0], fields[1], namespace(obj), fields[2])
    return None
