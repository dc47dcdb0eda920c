"""`tenant-quota` with componentize-py alone, against the repository's `wit/`.

The Python twin of `tests/guests/sdkless` (Rust), answering its fixtures
with the same actions, as `docs/guests.md` ("Without an SDK") shows it (keep
the two in step): every Namespace labelled `tenant=<t>` gets a
ResourceQuota `tenant-quota` of `pods` from the ConfigMap `<t>` in the
namespace `tenant-quotas` (`data.pods`), 10 when there is none; a change to
such a ConfigMap reconciles its tenant's Namespaces, found by the index
`tenant`.
"""

import json

from componentize_py_types import Err
from wit_world.imports import cache, types

QUOTAS_NAMESPACE = "tenant-quotas"


class WitWorld:
    def describe(self):
        return types.Info("tenant-quota", [
            types.Watch("v1", "Namespace", types.Relation.PRIMARY, None, "tenant"),
            types.Watch("v1", "ResourceQuota", types.Relation.OWNED, None, None),
            types.Watch("v1", "ConfigMap", types.Relation.MAPPED, QUOTAS_NAMESPACE, None),
        ])

    def finalizes(self):
        return False

    def reads(self):
        return []

    def indexes(self):
        return [types.Index("tenant", "v1", "Namespace", [".metadata.labels.tenant"])]

    def projections(self):
        # The host hands this guest only the fields it reads of a Namespace
        # and of a ConfigMap.
        return [
            types.Projection("v1", "Namespace", [".metadata.labels.tenant"]),
            types.Projection("v1", "ConfigMap", [".data.pods"]),
        ]

    def reconcile(self, request):
        try:
            namespace = json.loads(request.object)
        except ValueError as error:
            raise Err(types.Error_Permanent(f"the object does not parse: {error}"))
        metadata = namespace.get("metadata", {})
        # A Namespace's quota goes with it.
        if request.change == types.Change.DELETED or metadata.get("deletionTimestamp") is not None:
            return types.Outcome([], None)
        name = metadata.get("name", "")
        tenant = metadata.get("labels", {}).get("tenant", "")
        sizing = cache.get(types.ObjectRef("v1", "ConfigMap", QUOTAS_NAMESPACE, tenant))
        pods = json.loads(sizing).get("data", {}).get("pods", "10") if sizing else "10"
        quota = {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {
                "name": "tenant-quota",
                "namespace": name,
                "ownerReferences": [{
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "name": name,
                    "uid": metadata.get("uid"),
                    "controller": True,
                    "blockOwnerDeletion": True,
                }],
            },
            "spec": {"hard": {"pods": pods}},
        }
        target = types.ObjectRef("v1", "ResourceQuota", name, "tenant-quota")
        patch = types.Patch(target, types.PatchKind.APPLY, json.dumps(quota), True)
        return types.Outcome([types.Action_Patch(patch)], None)

    def map(self, changed):
        # A changed ConfigMap `<t>`: the Namespaces of tenant `<t>`.
        tenant = json.loads(changed).get("metadata", {}).get("name", "")
        return [types.ObjectRef("v1", "Namespace", None, json.loads(found)["metadata"]["name"])
                for found in cache.by_index("tenant", tenant, None)]
