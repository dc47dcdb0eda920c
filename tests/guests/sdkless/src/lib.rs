//! A guest written with wit-bindgen alone, against the repository's
//! `wit/`, as `docs/guests.md` ("Without an SDK") shows it (keep the two in
//! step); its twins are `tests/guests/python/sdkless/app.py` and
//! `tests/guests/js/sdkless/app.js`, and all three answer the fixtures
//! beside this file.
//!
//! Every Namespace labelled `tenant=<t>` gets a ResourceQuota
//! `tenant-quota` of `pods` from the ConfigMap `<t>` in the namespace
//! `tenant-quotas` (`data.pods`), 10 when there is none. A change to such
//! a ConfigMap reconciles its tenant's Namespaces, found by the index
//! `tenant`.

// The generated export glue is `unsafe` code; this crate writes none itself
// (Paddock's workspace denies `unsafe_code`).
#![allow(unsafe_code)]

wit_bindgen::generate!({
    path: "../../../wit",
    world: "paddock:controller/controller",
});

// The world `use`s `info`, `request`, `outcome`, `error`, `object-ref`,
// `json`, `read`, `index` and `projection`: wit-bindgen defines those at the crate root,
// and importing them again from `paddock::controller::types` fails with
// "defined multiple times". Only the other types come from there.
use paddock::controller::cache;
use paddock::controller::types::{Action, Change, Patch, PatchKind, Relation, Watch};
use serde_json::{Value, json};

/// The ConfigMaps that size each tenant's quota live here.
const QUOTAS_NAMESPACE: &str = "tenant-quotas";

struct TenantQuota;

fn watch(kind: &str, relation: Relation, namespace: Option<&str>, selector: Option<&str>) -> Watch {
    Watch {
        api_version: "v1".into(),
        kind: kind.into(),
        relation,
        namespace: namespace.map(Into::into),
        label_selector: selector.map(Into::into),
    }
}

impl Guest for TenantQuota {
    fn describe() -> Info {
        Info {
            name: "tenant-quota".into(),
            watches: vec![
                watch("Namespace", Relation::Primary, None, Some("tenant")),
                watch("ResourceQuota", Relation::Owned, None, None),
                watch("ConfigMap", Relation::Mapped, Some(QUOTAS_NAMESPACE), None),
            ],
        }
    }

    fn finalizes() -> bool {
        false
    }

    fn reads() -> Vec<Read> {
        Vec::new()
    }

    fn indexes() -> Vec<Index> {
        vec![Index {
            name: "tenant".into(),
            api_version: "v1".into(),
            kind: "Namespace".into(),
            paths: vec![".metadata.labels.tenant".into()],
        }]
    }

    // The host hands this guest only the fields it reads of a Namespace
    // and of a ConfigMap.
    fn projections() -> Vec<Projection> {
        vec![
            Projection {
                api_version: "v1".into(),
                kind: "Namespace".into(),
                paths: vec![".metadata.labels.tenant".into()],
            },
            Projection {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                paths: vec![".data.pods".into()],
            },
        ]
    }

    fn reconcile(request: Request) -> Result<Outcome, Error> {
        let namespace: Value = serde_json::from_str(&request.object)
            .map_err(|error| Error::Permanent(format!("the object does not parse: {error}")))?;
        let metadata = &namespace["metadata"];
        // A Namespace's quota goes with it.
        if request.change == Change::Deleted || !metadata["deletionTimestamp"].is_null() {
            return Ok(Outcome {
                actions: Vec::new(),
                requeue_after_ms: None,
            });
        }
        let name = metadata["name"].as_str().unwrap_or_default();
        let tenant = metadata["labels"]["tenant"].as_str().unwrap_or_default();
        let sizing = cache::get(&ObjectRef {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: Some(QUOTAS_NAMESPACE.into()),
            name: tenant.into(),
        })
        .and_then(|json| serde_json::from_str::<Value>(&json).ok());
        let pods = sizing
            .as_ref()
            .and_then(|sizing| sizing["data"]["pods"].as_str());
        let quota = json!({
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {
                "name": "tenant-quota",
                "namespace": name,
                "ownerReferences": [{
                    "apiVersion": "v1", "kind": "Namespace", "name": name, "uid": metadata["uid"],
                    "controller": true, "blockOwnerDeletion": true,
                }],
            },
            "spec": {"hard": {"pods": pods.unwrap_or("10")}},
        });
        let target = ObjectRef {
            api_version: "v1".into(),
            kind: "ResourceQuota".into(),
            namespace: Some(name.into()),
            name: "tenant-quota".into(),
        };
        Ok(Outcome {
            actions: vec![Action::Patch(Patch {
                target,
                kind: PatchKind::Apply,
                body: quota.to_string(),
                force: true,
            })],
            requeue_after_ms: None,
        })
    }

    fn map(changed: Json) -> Vec<ObjectRef> {
        // A changed ConfigMap `<t>`: the Namespaces of tenant `<t>`.
        let Ok(sizing) = serde_json::from_str::<Value>(&changed) else {
            return Vec::new();
        };
        let tenant = sizing["metadata"]["name"].as_str().unwrap_or_default();
        cache::by_index("tenant", tenant, None)
            .iter()
            .filter_map(|json| serde_json::from_str::<Value>(json).ok())
            .map(|namespace| ObjectRef {
                api_version: "v1".into(),
                kind: "Namespace".into(),
                namespace: None,
                name: namespace["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .into(),
            })
            .collect()
    }
}

export!(TenantQuota);
