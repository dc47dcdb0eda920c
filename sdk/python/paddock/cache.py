"""Read-only access to the host's informer caches.

The guest sees only what its grant lets it read, in the namespaces it is
scoped to; anything else reads as absent.
"""

import json
from typing import List, Optional

from wit_world.imports import cache as _host

from ._glue import ref_to_wit
from .objects import ObjectRef


def get(target: ObjectRef) -> Optional[dict]:
    """The cached state of one object, or None when it does not exist or the
    guest may not see it."""
    text = _host.get(ref_to_wit(target))
    return None if text is None else json.loads(text)


def list(api_version: str, kind: str, namespace: Optional[str] = None,
         label_selector: Optional[str] = None) -> List[dict]:
    """Cached objects of one kind, sorted by namespace and name."""
    return [json.loads(text) for text in _host.list(api_version, kind, namespace, label_selector)]


def by_index(index: str, value: str, namespace: Optional[str] = None) -> List[dict]:
    """Cached objects whose values for the index ``index`` (declared with
    ``Info.index``) include ``value``, sorted by namespace and name;
    ``namespace`` None for all the guest may see. The rights of ``list`` on the
    index's kind apply; an undeclared index finds nothing."""
    return [json.loads(text) for text in _host.by_index(index, str(value), namespace)]
