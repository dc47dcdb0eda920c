//! A tenant's guest for the tenancy tests: on request it tries to leave
//! its namespace, and otherwise behaves.
//!
//! It reconciles ConfigMaps and reads Secrets (declared, not watched). The
//! annotation `paddock.dev/tenant-mode` picks what it does; `data.namespace`
//! and `data.name` name the target of an escape:
//! - `read-secret`: reads that Secret through `cache.get` and reports in an
//!   event whether it saw it (`SecretRead`, `absent` or `seen`);
//! - `list-secrets`: lists Secrets in that namespace through `cache.list`
//!   and reports how many it saw (`SecretsListed`);
//! - `index-secrets`: looks up the Secrets named `data.name` through its
//!   index `secret-name` (in that namespace, or in every namespace when
//!   `data.namespace` is empty) and reports how many it saw
//!   (`SecretsIndexed`);
//! - `create-outside`, `patch-outside`, `delete-outside`: creates, patches
//!   or deletes a ConfigMap there;
//! - `scale-outside`: scales a Deployment there;
//! - `ungranted-kind`: creates a Secret in its own namespace;
//! - `cluster-scoped`: creates a Namespace;
//! - `patch-by-name`: merge-patches the Deployment named `data.name` (such
//!   as `web/status` or `web/scale`, reaching for a subresource through
//!   the name) with `{"spec":{"replicas":0},"status":{"replicas":7}}`;
//! - `forge-status`: writes the status of the `WasmController` named
//!   `data.name` with a forged `moduleDigest`;
//! - `read-kind`: reads the object of `data.apiVersion` and `data.kind`
//!   named by `data.namespace` and `data.name` through `cache.get` (a kind
//!   it did not declare reads as absent), and reports whether it saw it
//!   (`ObjectRead`, `absent` or `seen`);
//! - `escalate`: creates a RoleBinding named `data.name` in its own
//!   namespace that binds the ClusterRole `view` to the ServiceAccount
//!   `data.subject` of its namespace;
//! - `burn`: never returns.
//!
//! Anything else behaves: it stamps the ConfigMap with the `data.value` it
//! saw (annotation `tenant.paddock.dev/seen`).

use std::hint::black_box;

use paddock_guest::{
    Action, Change, Controller, Error, Index, Info, ObjectRef, Outcome, Read, Request, Watch,
    cache, json,
};

/// The controller.
#[derive(Debug)]
pub struct Tenant;

impl Controller for Tenant {
    fn describe() -> Info {
        Info::new("tenant")
            .watch(Watch::primary("v1", "ConfigMap"))
            .read(Read::new("v1", "Secret"))
            .index(Index::new(
                "secret-name",
                "v1",
                "Secret",
                &[".metadata.name"],
            ))
    }

    fn reconcile(request: Request) -> Result<Outcome, Error> {
        let object = request.object;
        if request.change == Change::Deleted {
            return Ok(Outcome::done());
        }
        let me = object.object_ref();
        let namespace = object
            .str_at("/data/namespace")
            .unwrap_or("default")
            .to_owned();
        let name = object.str_at("/data/name").unwrap_or("target").to_owned();
        let target = |api_version: &str, kind: &str| {
            ObjectRef::namespaced(api_version, kind, &namespace, &name)
        };
        let action = match object.annotation("paddock.dev/tenant-mode").unwrap_or("") {
            "read-secret" => {
                let seen = cache::get(&target("v1", "Secret")).is_some();
                Action::event(me, "SecretRead", if seen { "seen" } else { "absent" })
            }
            "list-secrets" => {
                let seen = cache::list("v1", "Secret", Some(&namespace), None).len();
                Action::event(me, "SecretsListed", seen.to_string())
            }
            "index-secrets" => {
                let scope = Some(namespace.as_str()).filter(|ns| !ns.is_empty());
                let seen = cache::by_index("secret-name", &name, scope).len();
                Action::event(me, "SecretsIndexed", seen.to_string())
            }
            "create-outside" => Action::create(json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"namespace": namespace, "name": name},
                "data": {"planted": "by a tenant"},
            })),
            "patch-outside" => Action::merge_patch(
                target("v1", "ConfigMap"),
                json!({"data": {"planted": "by a tenant"}}),
            ),
            "delete-outside" => Action::delete(target("v1", "ConfigMap")),
            "scale-outside" => Action::scale(target("apps/v1", "Deployment"), 0),
            "ungranted-kind" => Action::create(json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"namespace": object.namespace().unwrap_or("default"), "name": name},
                "stringData": {"stolen": "yes"},
            })),
            "cluster-scoped" => Action::create(json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": name},
            })),
            "patch-by-name" => Action::merge_patch(
                target("apps/v1", "Deployment"),
                json!({"spec": {"replicas": 0}, "status": {"replicas": 7}}),
            ),
            "forge-status" => Action::update_status(json!({
                "apiVersion": "paddock.dev/v1alpha1",
                "kind": "WasmController",
                "metadata": {"namespace": namespace, "name": name},
                "status": {"moduleDigest": "forged"},
            })),
            "read-kind" => {
                let api_version = object.str_at("/data/apiVersion").unwrap_or("v1");
                let kind = object.str_at("/data/kind").unwrap_or("Secret");
                let seen = cache::get(&target(api_version, kind)).is_some();
                Action::event(me, "ObjectRead", if seen { "seen" } else { "absent" })
            }
            "escalate" => {
                let own = object.namespace().unwrap_or("default");
                Action::create(json!({
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "RoleBinding",
                    "metadata": {"namespace": own, "name": name},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
                    "subjects": [{
                        "kind": "ServiceAccount",
                        "namespace": own,
                        "name": object.str_at("/data/subject").unwrap_or("default"),
                    }],
                }))
            }
            "burn" => {
                let mut counter = 0u64;
                loop {
                    counter = black_box(counter.wrapping_add(1));
                }
            }
            _ => {
                let value = object.str_at("/data/value").unwrap_or("");
                if object.annotation("tenant.paddock.dev/seen") == Some(value) {
                    return Ok(Outcome::done());
                }
                Action::merge_patch(
                    me,
                    json!({"metadata": {"annotations": {"tenant.paddock.dev/seen": value}}}),
                )
            }
        };
        Ok(Outcome::done().with(action))
    }
}

paddock_guest::export_controller!(Tenant);
