//! The checks behind the fuzz targets in `fuzz/`, one function per target,
//! each taking the fuzzer's raw bytes. The targets and the test that
//! replays the committed corpora (`tests/fuzz_corpus.rs`) call these same
//! functions, so the properties checked cannot drift apart. A property that
//! does not hold panics.

use std::sync::OnceLock;

use serde_json::{Map, Value, json};

use crate::apply::{self, Lists, Writer};
use crate::core::Target;
use crate::list;
use crate::patch;
use crate::registry::Registry;
use crate::selector::{FieldSelector, LabelSelector};
use crate::server::{ResourcePath, query_of, segments};
use crate::watch::WatchRequest;

/// Storages whose field selectors differ (extra fields or none).
const STORAGES: [&str; 4] = ["/pods", "/events", "apps/replicasets", "apps/deployments"];

/// A request's path and query, the bytes being its request target
/// (`/api/v1/namespaces/x/pods?labelSelector=...`): path segments, the
/// resource they name, the query parameters, the label and field selectors,
/// the continue token and the watch options, as the server reads them.
/// A parsed path renders back to itself; parsed selectors render to a
/// canonical text that parses back to the same selector (so they match
/// the same objects); a decoded continue token encodes back to itself.
pub fn request(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(uri) = text.parse::<http::Uri>() else {
        return;
    };
    let path = uri.path().trim_end_matches('/');
    let segs = segments(path);
    assert!(segs.iter().all(|s| !s.is_empty() && !s.contains('/')));
    let resource = ResourcePath::parse(&segs);
    if let Some(resource) = &resource {
        let rendered = resource.to_path();
        assert_eq!(
            ResourcePath::parse(&segments(&rendered)).as_ref(),
            Some(resource),
            "{rendered}"
        );
    }

    let q = query_of(&uri);
    let labels = q.get("labelSelector").unwrap_or_default();
    if let Ok(selector) = LabelSelector::parse(labels) {
        let canonical = selector.to_string();
        let again = LabelSelector::parse(&canonical)
            .unwrap_or_else(|e| panic!("{canonical:?} (from {labels:?}) does not parse: {e}"));
        assert_eq!(again, selector, "{labels:?} rendered as {canonical:?}");
        assert_eq!(selector.is_empty(), labels.trim().is_empty());
        // Matching on a label set drawn from the selector's own text.
        let label_set = sample_labels(labels);
        assert_eq!(selector.matches(&label_set), again.matches(&label_set));
    }
    let fields = q.get("fieldSelector").unwrap_or_default();
    for storage in STORAGES {
        let fields = if storage == "/events" {
            crate::events::fields_to_core(fields)
        } else {
            fields.to_owned()
        };
        if let Ok(selector) = FieldSelector::parse(&fields, storage) {
            let canonical = selector.to_string();
            let again = FieldSelector::parse(&canonical, storage)
                .unwrap_or_else(|e| panic!("{canonical:?} (from {fields:?}) does not parse: {e}"));
            assert_eq!(again, selector, "{fields:?} rendered as {canonical:?}");
            let object = sample_object(&fields);
            assert_eq!(selector.matches(&object), again.matches(&object));
        }
    }
    if let Some(token) = q.get("continue")
        && let Ok((rv, namespace, name)) = list::decode_continue(token)
    {
        let again = list::decode_continue(&list::encode_continue(rv, &namespace, &name));
        assert_eq!(again.ok(), Some((rv, namespace, name)));
    }

    // The server's own reading of the whole request, as far as it needs no
    // stored objects.
    if let Some(resource) = resource
        && let Some(res) = registry().find(resource.group, resource.version, resource.plural)
    {
        let target = Target {
            res,
            version: resource.version.to_owned(),
            namespace: resource.namespace.map(str::to_owned),
            name: resource.name.map(str::to_owned),
            subresource: resource.subresource.map(str::to_owned),
            metadata_only: false,
            table: false,
        };
        let _ = list::selectors(&target, &q);
        let _ = WatchRequest::parse(target, &q);
    }
}

/// A patch body applied to an object, the way `PATCH` applies it: the
/// first byte picks merge, JSON, strategic or apply (with or without
/// force); the rest is the body, or, when it holds a `0x00`, the current
/// object's JSON before it and the body after. A patch never panics and
/// either fails with a client error or yields a JSON object; a merge patch
/// applied twice changes nothing the second time, and so does applying the
/// same configuration twice.
pub fn patch(data: &[u8]) {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let (current, body) = match rest.iter().position(|&b| b == 0) {
        Some(at) => match serde_json::from_slice::<Value>(&rest[..at]) {
            Ok(Value::Object(current)) => (current, &rest[at + 1..]),
            _ => return,
        },
        None => (deployment(), rest),
    };
    let mut doc = Value::Object(current.clone());
    let result = match kind % 5 {
        0 => patch::parse_patch_object(body).map(|merge| {
            patch::apply_merge_patch(&mut doc, &merge);
            let once = doc.clone();
            patch::apply_merge_patch(&mut doc, &merge);
            assert_eq!(doc, once, "a merge patch is idempotent");
        }),
        1 => {
            let result = patch::apply_json_patch(&mut doc, body);
            if result.is_err() {
                assert_eq!(
                    doc,
                    Value::Object(current.clone()),
                    "a failed JSON patch changes nothing"
                );
            }
            // A JSON patch may replace the whole document; the server then
            // answers 400, so only an object is checked further.
            if !doc.is_object() {
                return;
            }
            result
        }
        2 => patch::parse_patch_object(body).and_then(|strategic| {
            let lists =
                Lists::typed(crate::openapi::schema_of::<k8s_openapi::api::apps::v1::Deployment>);
            patch::apply_strategic(&mut doc, &strategic, lists)
        }),
        force => server_side_apply(&current, body, force == 4)
            .map(|applied| doc = Value::Object(applied)),
    };
    match result {
        Ok(()) => assert!(doc.is_object(), "a patch yielded {doc}"),
        Err(error) => assert!(
            (400..500).contains(&error.code),
            "a bad patch is a client error, not {}: {}",
            error.code,
            error.message
        ),
    }
}

/// Server-side apply of `body` (YAML or JSON) onto `current` by one manager,
/// then the same again: the second apply must change nothing.
fn server_side_apply(
    current: &Map<String, Value>,
    body: &[u8],
    force: bool,
) -> Result<Map<String, Value>, crate::status::ApiError> {
    let Ok(text) = std::str::from_utf8(body) else {
        return Ok(current.clone());
    };
    let Ok(Value::Object(applied)) = serde_saphyr::from_str::<Value>(text) else {
        return Ok(current.clone());
    };
    let writer = Writer {
        manager: "fuzz",
        api_version: "apps/v1",
        subresource: "",
        time: "2026-01-01T00:00:00Z",
    };
    let lists = Lists::typed(crate::openapi::schema_of::<k8s_openapi::api::apps::v1::Deployment>);
    let once = apply::apply(Some(current), &applied, &writer, force, lists)?;
    let twice = apply::apply(Some(&once), &applied, &writer, force, lists)
        .expect("applying the same configuration again by the same manager cannot conflict");
    assert_eq!(
        twice, once,
        "applying the same configuration twice changed the object"
    );
    Ok(once)
}

/// The built-in resources, read once.
fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::builtin)
}

/// Labels whose keys and values are the words of `text`, so selectors
/// drawn from the same text can match them.
fn sample_labels(text: &str) -> Vec<(String, String)> {
    let words: Vec<&str> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')))
        .filter(|word| !word.is_empty())
        .collect();
    words
        .chunks(2)
        .map(|pair| {
            (
                pair[0].to_owned(),
                pair.get(1).copied().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// A pod-like object whose selectable fields hold the words of `text`.
fn sample_object(text: &str) -> Map<String, Value> {
    let mut words = text.split([',', '=', '!']).map(str::trim);
    let mut word = || words.next().unwrap_or_default().to_owned();
    let object = json!({
        "metadata": {"name": word(), "namespace": word()},
        "spec": {"nodeName": word(), "hostNetwork": true},
        "status": {"phase": word(), "replicas": 3},
        "type": word(),
        "involvedObject": {"kind": word(), "name": word()},
        "reason": word(),
    });
    match object {
        Value::Object(map) => map,
        _ => unreachable!("a JSON object literal"),
    }
}

/// A Deployment with keyed lists, for patches that bring no object.
fn deployment() -> Map<String, Value> {
    let object = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "labels": {"app": "web"},
            "finalizers": ["a/b"],
            "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "x", "uid": "u1"}],
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "app", "image": "nginx", "ports": [{"containerPort": 80}],
                         "env": [{"name": "A", "value": "1"}]},
                        {"name": "side", "image": "busybox"},
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                },
            },
        },
        "status": {"conditions": [{"type": "Available", "status": "True"}]},
    });
    match object {
        Value::Object(map) => map,
        _ => unreachable!("a JSON object literal"),
    }
}

/// A protobuf request body, as kubectl and client-go send for built-in
/// kinds, through the decoder every protobuf body goes through. What
/// decodes encodes again, and that decodes to the same JSON: the reader
/// and the writer agree on every message, shape and field of the tables.
pub fn protobuf(data: &[u8]) {
    let Ok(first) = crate::protobuf::decode(data) else {
        return;
    };
    let bytes = crate::protobuf::encode(&first)
        .unwrap_or_else(|e| panic!("decoded {first:?} does not encode: {e}"));
    let again = crate::protobuf::decode(&bytes)
        .unwrap_or_else(|e| panic!("the encoding of {first:?} does not decode: {e}"));
    assert_eq!(again, first);
}
