"""`{{name}}`: a Paddock controller. It labels every ConfigMap
`example.com/reconciled: "true"`."""

import paddock
from paddock import Action, Info, Outcome, Watch

LABEL = "example.com/reconciled"


class Reconciler(paddock.Controller):
    def describe(self):
        return Info("{{name}}", [Watch.primary("v1", "ConfigMap")])

    def reconcile(self, request):
        config_map = request.object
        if request.change == "deleted" or paddock.label(config_map, LABEL) is not None:
            return Outcome.done()
        return Outcome.done().with_(Action.merge_patch(
            paddock.object_ref(config_map), {"metadata": {"labels": {LABEL: "true"}}}))


WitWorld = paddock.export(Reconciler)
