"""`label-policy` in Python: enforces the labels a Namespace requires of its
Deployments.

The same controller as `guest-examples/label-policy` (Rust), answering its
fixtures with the same actions.
"""

import paddock
from paddock import Action, Info, ObjectRef, Outcome, Transient, Watch, cache

POLICY = "paddock.dev/required-labels"


def parse_policy(policy):
    """Comma-separated `key` or `key=default` entries, as (key, default or None)."""
    requirements = []
    for entry in policy.split(","):
        entry = entry.strip()
        if not entry:
            continue
        key, separator, default = entry.partition("=")
        if separator:
            requirements.append((key.strip(), default.strip()))
        else:
            requirements.append((entry, None))
    return requirements


def enforce(deployment, requirements):
    """The actions that bring `deployment` in line with `requirements`."""
    defaults = {}
    unfixable = []
    for key, default in requirements:
        if paddock.label(deployment, key) is not None:
            continue
        if default is None:
            unfixable.append(key)
        else:
            defaults[key] = default
    me = paddock.object_ref(deployment)
    outcome = Outcome.done()
    if defaults:
        added = ", ".join(f"{key}={defaults[key]}" for key in sorted(defaults))
        outcome.push(Action.merge_patch(me, {"metadata": {"labels": defaults}}))
        outcome.push(Action.event(
            me, "LabelsDefaulted", f"added required labels from the namespace policy: {added}"))
    if unfixable:
        outcome.push(Action.warning(
            me, "MissingRequiredLabels",
            "the namespace policy requires labels with no default: "
            f"{', '.join(unfixable)}; add them to the Deployment"))
    return outcome


class LabelPolicy(paddock.Controller):
    def describe(self):
        return Info("label-policy", [
            Watch.primary("apps/v1", "Deployment"),
            Watch.mapped("v1", "Namespace"),
        ])

    def reconcile(self, request):
        deployment = request.object
        if request.change == "deleted" or paddock.is_being_deleted(deployment):
            return Outcome.done()
        namespace_name = paddock.namespace(deployment)
        if namespace_name is None:
            return Outcome.done()
        namespace = cache.get(ObjectRef.cluster("v1", "Namespace", namespace_name))
        if namespace is None:
            # The Namespace is not in the cache yet: try again shortly.
            raise Transient(f"namespace {namespace_name} is not in the cache yet")
        policy = paddock.annotation(namespace, POLICY)
        if policy is None:
            return Outcome.done()
        return enforce(deployment, parse_policy(policy))

    def map(self, namespace):
        deployments = cache.list("apps/v1", "Deployment", paddock.name(namespace))
        return [paddock.object_ref(deployment) for deployment in deployments]


WitWorld = paddock.export(LabelPolicy)
