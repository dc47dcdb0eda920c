//! A guest that implements the world `controller` correctly and exports a
//! `reconcile-json` of the wrong type (`func(req: request) -> string`, see
//! `wit/world.wit`): the host must refuse it at load, naming the export,
//! rather than call `reconcile` or misread the answer.

// The generated export glue is `unsafe` code; this crate writes none itself.
#![allow(unsafe_code)]

wit_bindgen::generate!({
    path: ["../../../wit", "wit"],
    world: "paddock-test:wrong-json/wrong-json",
    generate_all,
});

use paddock::controller::types::{Relation, Watch};

struct WrongJson;

impl Guest for WrongJson {
    fn describe() -> Info {
        Info {
            name: "wrong-json".into(),
            watches: vec![Watch {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                relation: Relation::Primary,
                namespace: None,
                label_selector: None,
            }],
        }
    }

    fn reconcile(_request: Request) -> Result<Outcome, Error> {
        Ok(Outcome {
            actions: Vec::new(),
            requeue_after_ms: None,
        })
    }

    fn map(_changed: Json) -> Vec<ObjectRef> {
        Vec::new()
    }

    fn finalizes() -> bool {
        false
    }

    fn reads() -> Vec<Read> {
        Vec::new()
    }

    fn indexes() -> Vec<Index> {
        Vec::new()
    }

    fn projections() -> Vec<Projection> {
        Vec::new()
    }

    fn reconcile_json(_request: JsonRequest) -> String {
        "{\"actions\":[]}".into()
    }
}

export!(WrongJson);
