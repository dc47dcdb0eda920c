//! A guest built against `paddock:controller@0.1.0` (the contract as it
//! was first released, kept in `wit/` beside this file) with wit-bindgen
//! alone, as a guest built before 0.1.1 is: the host must load and run it
//! unchanged.
//!
//! It reconciles ConfigMaps and stamps each with the `data.value` it saw
//! (annotation `legacy.paddock.dev/seen`).

// The generated export glue is `unsafe` code; this crate writes none itself.
#![allow(unsafe_code)]

wit_bindgen::generate!({
    path: "wit",
    world: "paddock:controller/controller@0.1.0",
});

use paddock::controller::types::{Action, Change, Patch, PatchKind, Relation, Watch};

struct Legacy;

fn text<'a>(object: &'a serde_json::Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(object, |value, key| value.get(key))
        .and_then(serde_json::Value::as_str)
}

impl Guest for Legacy {
    fn describe() -> Info {
        Info {
            name: "legacy".into(),
            watches: vec![Watch {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                relation: Relation::Primary,
                namespace: None,
                label_selector: None,
            }],
        }
    }

    fn reconcile(request: Request) -> Result<Outcome, Error> {
        if request.change == Change::Deleted {
            return Ok(Outcome {
                actions: Vec::new(),
                requeue_after_ms: None,
            });
        }
        let object: serde_json::Value = serde_json::from_str(&request.object)
            .map_err(|error| Error::Permanent(format!("the object does not parse: {error}")))?;
        let name = text(&object, &["metadata", "name"]).unwrap_or_default();
        let namespace = text(&object, &["metadata", "namespace"]).map(str::to_owned);
        let seen = text(&object, &["data", "value"]).unwrap_or_default();
        let body = serde_json::json!({
            "metadata": {"annotations": {"legacy.paddock.dev/seen": seen}}
        })
        .to_string();
        Ok(Outcome {
            actions: vec![Action::Patch(Patch {
                target: ObjectRef {
                    api_version: "v1".into(),
                    kind: "ConfigMap".into(),
                    namespace,
                    name: name.into(),
                },
                kind: PatchKind::Merge,
                body,
                force: false,
            })],
            requeue_after_ms: None,
        })
    }

    fn map(_changed: String) -> Vec<ObjectRef> {
        Vec::new()
    }
}

export!(Legacy);
