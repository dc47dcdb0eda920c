//! Server-side `Table`s (`Accept: ...;as=Table;g=meta.k8s.io;v=v1`), the columns `kubectl get` prints.

use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::core::Target;
use crate::json::{decode, encode_typed, get_path, metadata_only, with_type};

/// One column: name, type, format, priority (1 = only with `-o wide`).
type Column = (&'static str, &'static str, &'static str, u8);

const NAME: Column = ("Name", "string", "name", 0);
const AGE: Column = ("Age", "string", "", 0);

/// The apiserver's `HumanDuration`: `45s`, `3m20s`, `2h5m`, `4d3h`, `2y30d`.
pub(crate) fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

fn since(v: Option<&Value>) -> Value {
    let Some(ts) = v.and_then(Value::as_str) else {
        return Value::from("<unknown>");
    };
    match ts.parse::<jiff::Timestamp>() {
        Ok(t) => Value::from(human_duration(
            jiff::Timestamp::now().as_second() - t.as_second(),
        )),
        Err(_) => Value::from("<unknown>"),
    }
}

fn at<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let parts: Vec<&str> = path.split('.').filter(|p| !p.is_empty()).collect();
    get_path(obj, &parts)
}

fn int(obj: &Value, path: &str) -> i64 {
    at(obj, path).and_then(Value::as_i64).unwrap_or(0)
}

fn text(obj: &Value, path: &str) -> String {
    at(obj, path)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn count(obj: &Value, path: &str) -> i64 {
    at(obj, path)
        .and_then(Value::as_object)
        .map_or(0, |m| m.len() as i64)
}

fn containers_and_images(obj: &Value, path: &str) -> (Value, Value) {
    let list = at(obj, path)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let names: Vec<&str> = list
        .iter()
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect();
    let images: Vec<&str> = list
        .iter()
        .filter_map(|c| c.get("image").and_then(Value::as_str))
        .collect();
    (Value::from(names.join(",")), Value::from(images.join(",")))
}

fn selector(obj: &Value, path: &str) -> Value {
    Value::from(crate::scale::selector_string(at(obj, path)).unwrap_or_default())
}

fn or_none(s: String) -> Value {
    Value::from(if s.is_empty() { "<none>".to_owned() } else { s })
}

/// Columns and cells of one built-in resource, or `None` for the default (Name, Age) table.
fn builtin_row(storage: &str, o: &Value) -> Option<(Vec<Column>, Vec<Value>)> {
    let name = Value::from(text(o, "metadata.name"));
    let age = since(at(o, "metadata.creationTimestamp"));
    let row = match storage {
        "apps/deployments" => {
            let (c, i) = containers_and_images(o, "spec.template.spec.containers");
            (
                vec![
                    NAME,
                    ("Ready", "string", "", 0),
                    ("Up-to-date", "string", "", 0),
                    ("Available", "string", "", 0),
                    AGE,
                    ("Containers", "string", "", 1),
                    ("Images", "string", "", 1),
                    ("Selector", "string", "", 1),
                ],
                vec![
                    name,
                    Value::from(format!(
                        "{}/{}",
                        int(o, "status.readyReplicas"),
                        int(o, "spec.replicas")
                    )),
                    Value::from(int(o, "status.updatedReplicas")),
                    Value::from(int(o, "status.availableReplicas")),
                    age,
                    c,
                    i,
                    selector(o, "spec.selector"),
                ],
            )
        }
        "apps/replicasets" => {
            let (c, i) = containers_and_images(o, "spec.template.spec.containers");
            (
                vec![
                    NAME,
                    ("Desired", "integer", "", 0),
                    ("Current", "integer", "", 0),
                    ("Ready", "integer", "", 0),
                    AGE,
                    ("Containers", "string", "", 1),
                    ("Images", "string", "", 1),
                    ("Selector", "string", "", 1),
                ],
                vec![
                    name,
                    Value::from(int(o, "spec.replicas")),
                    Value::from(int(o, "status.replicas")),
                    Value::from(int(o, "status.readyReplicas")),
                    age,
                    c,
                    i,
                    selector(o, "spec.selector"),
                ],
            )
        }
        "apps/statefulsets" => {
            let (c, i) = containers_and_images(o, "spec.template.spec.containers");
            (
                vec![
                    NAME,
                    ("Ready", "string", "", 0),
                    AGE,
                    ("Containers", "string", "", 1),
                    ("Images", "string", "", 1),
                ],
                vec![
                    name,
                    Value::from(format!(
                        "{}/{}",
                        int(o, "status.readyReplicas"),
                        int(o, "spec.replicas")
                    )),
                    age,
                    c,
                    i,
                ],
            )
        }
        "apps/daemonsets" => {
            let (c, i) = containers_and_images(o, "spec.template.spec.containers");
            let node_selector: Vec<String> = at(o, "spec.template.spec.nodeSelector")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                        .collect()
                })
                .unwrap_or_default();
            (
                vec![
                    NAME,
                    ("Desired", "integer", "", 0),
                    ("Current", "integer", "", 0),
                    ("Ready", "integer", "", 0),
                    ("Up-to-date", "integer", "", 0),
                    ("Available", "integer", "", 0),
                    ("Node Selector", "string", "", 0),
                    AGE,
                    ("Containers", "string", "", 1),
                    ("Images", "string", "", 1),
                    ("Selector", "string", "", 1),
                ],
                vec![
                    name,
                    Value::from(int(o, "status.desiredNumberScheduled")),
                    Value::from(int(o, "status.currentNumberScheduled")),
                    Value::from(int(o, "status.numberReady")),
                    Value::from(int(o, "status.updatedNumberScheduled")),
                    Value::from(int(o, "status.numberAvailable")),
                    or_none(node_selector.join(",")),
                    age,
                    c,
                    i,
                    selector(o, "spec.selector"),
                ],
            )
        }
        "/services" => {
            let ty = text(o, "spec.type");
            let cluster_ip = at(o, "spec.clusterIPs")
                .and_then(Value::as_array)
                .and_then(|a| a.first())
                .or_else(|| at(o, "spec.clusterIP"))
                .and_then(Value::as_str)
                .filter(|ip| !ip.is_empty())
                .map_or_else(|| "<none>".to_owned(), str::to_owned);
            let external = match ty.as_str() {
                "ExternalName" => text(o, "spec.externalName"),
                "LoadBalancer" => "<pending>".to_owned(),
                _ => "<none>".to_owned(),
            };
            let ports: Vec<String> = at(o, "spec.ports")
                .and_then(Value::as_array)
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
                            let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
                            match p.get("nodePort").and_then(Value::as_i64) {
                                Some(n) if n > 0 => format!("{port}:{n}/{proto}"),
                                _ => format!("{port}/{proto}"),
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            let sel: Vec<String> = at(o, "spec.selector")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                        .collect()
                })
                .unwrap_or_default();
            (
                vec![
                    NAME,
                    ("Type", "string", "", 0),
                    ("Cluster-IP", "string", "", 0),
                    ("External-IP", "string", "", 0),
                    ("Port(s)", "string", "", 0),
                    AGE,
                    ("Selector", "string", "", 1),
                ],
                vec![
                    name,
                    Value::from(ty),
                    Value::from(cluster_ip),
                    Value::from(external),
                    or_none(ports.join(",")),
                    age,
                    or_none(sel.join(",")),
                ],
            )
        }
        "/configmaps" => (
            vec![NAME, ("Data", "string", "", 0), AGE],
            vec![
                name,
                Value::from(count(o, "data") + count(o, "binaryData")),
                age,
            ],
        ),
        "/secrets" => (
            vec![
                NAME,
                ("Type", "string", "", 0),
                ("Data", "string", "", 0),
                AGE,
            ],
            vec![
                name,
                Value::from(text(o, "type")),
                Value::from(count(o, "data")),
                age,
            ],
        ),
        "/namespaces" => (
            vec![NAME, ("Status", "string", "", 0), AGE],
            vec![name, Value::from(text(o, "status.phase")), age],
        ),
        "/pods" => {
            let total = at(o, "spec.containers")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let ready = at(o, "status.containerStatuses")
                .and_then(Value::as_array)
                .map_or(0, |s| {
                    s.iter()
                        .filter(|c| c.get("ready").and_then(Value::as_bool) == Some(true))
                        .count()
                });
            let restarts: i64 = at(o, "status.containerStatuses")
                .and_then(Value::as_array)
                .map_or(0, |s| {
                    s.iter()
                        .filter_map(|c| c.get("restartCount").and_then(Value::as_i64))
                        .sum()
                });
            let status = at(o, "status.reason")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| text(o, "status.phase"));
            (
                vec![
                    NAME,
                    ("Ready", "string", "", 0),
                    ("Status", "string", "", 0),
                    ("Restarts", "string", "", 0),
                    AGE,
                    ("IP", "string", "", 1),
                    ("Node", "string", "", 1),
                    ("Nominated Node", "string", "", 1),
                    ("Readiness Gates", "string", "", 1),
                ],
                vec![
                    name,
                    Value::from(format!("{ready}/{total}")),
                    Value::from(status),
                    Value::from(restarts.to_string()),
                    age,
                    or_none(text(o, "status.podIP")),
                    or_none(text(o, "spec.nodeName")),
                    or_none(text(o, "status.nominatedNodeName")),
                    Value::from("<none>"),
                ],
            )
        }
        "apiextensions.k8s.io/customresourcedefinitions" => (
            vec![NAME, ("Created At", "date", "", 0)],
            vec![
                name,
                at(o, "metadata.creationTimestamp")
                    .cloned()
                    .unwrap_or(Value::Null),
            ],
        ),
        "coordination.k8s.io/leases" => (
            vec![NAME, ("Holder", "string", "", 0), AGE],
            vec![name, Value::from(text(o, "spec.holderIdentity")), age],
        ),
        "/events" => {
            let first = at(o, "firstTimestamp")
                .filter(|v| v.is_string())
                .or_else(|| at(o, "eventTime"));
            let last = at(o, "series.lastObservedTime")
                .or_else(|| at(o, "lastTimestamp").filter(|v| v.is_string()))
                .or(first);
            let kind = text(o, "involvedObject.kind").to_lowercase();
            let target = match text(o, "involvedObject.name") {
                n if n.is_empty() => kind,
                n => format!("{kind}/{n}"),
            };
            let count = at(o, "series.count")
                .or_else(|| at(o, "count"))
                .and_then(Value::as_i64)
                .filter(|c| *c > 0)
                .unwrap_or(1);
            let source = match (text(o, "source.component"), text(o, "reportingComponent")) {
                (s, _) if !s.is_empty() => s,
                (_, r) => r,
            };
            (
                vec![
                    ("Last Seen", "string", "", 0),
                    ("Type", "string", "", 0),
                    ("Reason", "string", "", 0),
                    ("Object", "string", "", 0),
                    ("Subobject", "string", "", 1),
                    ("Source", "string", "", 1),
                    ("Message", "string", "", 0),
                    ("First Seen", "string", "", 1),
                    ("Count", "string", "", 1),
                    ("Name", "string", "name", 1),
                ],
                vec![
                    since(last),
                    Value::from(text(o, "type")),
                    Value::from(text(o, "reason")),
                    Value::from(target),
                    Value::from(text(o, "involvedObject.fieldPath")),
                    Value::from(source),
                    Value::from(text(o, "message").trim().to_owned()),
                    since(first),
                    Value::from(count),
                    name,
                ],
            )
        }
        _ => return None,
    };
    Some(row)
}

/// Columns and cells from a CRD's `additionalPrinterColumns`: Name, then exactly the columns
/// (a real server adds no Age; a CRD that wants one lists it).
fn printer_row(columns: &[Value], o: &Value) -> (Vec<Value>, Vec<Value>) {
    let mut defs = vec![column_json(NAME)];
    let mut cells = vec![Value::from(text(o, "metadata.name"))];
    for c in columns {
        let ty = c.get("type").and_then(Value::as_str).unwrap_or("string");
        let mut def = Map::new();
        def.insert("name".into(), c.get("name").cloned().unwrap_or_default());
        def.insert(
            "type".into(),
            Value::from(if ty == "date" { "string" } else { ty }),
        );
        def.insert(
            "format".into(),
            c.get("format").cloned().unwrap_or_else(|| Value::from("")),
        );
        def.insert(
            "description".into(),
            c.get("description")
                .cloned()
                .unwrap_or_else(|| Value::from("")),
        );
        def.insert(
            "priority".into(),
            c.get("priority").cloned().unwrap_or_else(|| Value::from(0)),
        );
        defs.push(Value::Object(def));
        let path = c
            .get("jsonPath")
            .and_then(Value::as_str)
            .unwrap_or_default();
        cells.push(printer_cell(ty, first_match(o, path)));
    }
    (defs, cells)
}

/// The first value a CRD column's JSONPath (`.status.conditions[?(@.type=="Ready")].status`)
/// finds, as the apiserver's table convertor takes it.
fn first_match<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let path = path.trim();
    let path = path
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .unwrap_or(path);
    let query = if path.starts_with('$') {
        path.to_owned()
    } else {
        format!("${path}")
    };
    jsonpath_rust::JsonPath::query(obj, &query)
        .ok()?
        .into_iter()
        .next()
}

/// A column's cell of a given type, as the apiserver's table convertor fills it:
/// values of another type are empty, strings print any value as text.
fn printer_cell(ty: &str, value: Option<&Value>) -> Value {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Value::Null;
    };
    match ty {
        "date" => since(Some(value)),
        "string" => match value {
            Value::String(text) => Value::from(text.clone()),
            other => Value::from(other.to_string()),
        },
        "integer" => value
            .as_i64()
            .or_else(|| value.as_f64().map(|f| f as i64))
            .map_or(Value::Null, Value::from),
        "number" => value.as_f64().map_or(Value::Null, Value::from),
        "boolean" => value.as_bool().map_or(Value::Null, Value::from),
        _ => Value::Null,
    }
}

fn column_json((name, ty, format, priority): Column) -> Value {
    json!({"name": name, "type": ty, "format": format, "description": "", "priority": priority})
}

/// A `Table` of encoded bodies (stored shape, no kind/apiVersion).
pub(crate) fn render(t: &Target, bodies: &[Bytes], list_meta: Map<String, Value>) -> Bytes {
    let mut columns: Option<Vec<Value>> = None;
    let mut rows = Vec::with_capacity(bodies.len());
    for body in bodies {
        let obj = Value::Object(decode(body));
        let (defs, cells) = if let Some(printer) = &t.res.printer_columns {
            printer_row(printer, &obj)
        } else if let Some((cols, cells)) = builtin_row(&t.res.storage, &obj) {
            (cols.into_iter().map(column_json).collect(), cells)
        } else {
            (
                vec![column_json(NAME), column_json(AGE)],
                vec![
                    Value::from(text(&obj, "metadata.name")),
                    since(at(&obj, "metadata.creationTimestamp")),
                ],
            )
        };
        columns.get_or_insert(defs);
        let partial: Value = serde_json::from_slice(&with_type(
            "PartialObjectMetadata",
            "meta.k8s.io/v1",
            &metadata_only(body),
        ))
        .unwrap_or_default();
        rows.push(json!({"cells": cells, "object": partial}));
    }
    let columns = columns.unwrap_or_else(|| {
        if let Some(printer) = &t.res.printer_columns {
            printer_row(printer, &Value::Null).0
        } else {
            builtin_row(&t.res.storage, &Value::Null)
                .map(|(c, _)| c.into_iter().map(column_json).collect())
                .unwrap_or_else(|| vec![column_json(NAME), column_json(AGE)])
        }
    });
    encode_typed(&json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": columns,
        "rows": rows,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_match_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(200), "3m20s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(3 * 3600 + 5 * 60), "3h5m");
        assert_eq!(human_duration(30 * 3600), "30h");
        assert_eq!(human_duration(4 * 86400 + 3 * 3600), "4d3h");
        assert_eq!(human_duration(100 * 86400), "100d");
    }

    #[test]
    fn deployment_rows_show_ready_over_desired() {
        let d = json!({"metadata": {"name": "web"}, "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}}, "status": {"readyReplicas": 2}});
        let (cols, cells) = builtin_row("apps/deployments", &d).unwrap();
        assert_eq!(
            cols.iter().map(|c| c.0).collect::<Vec<_>>()[..5],
            ["Name", "Ready", "Up-to-date", "Available", "Age"]
        );
        assert_eq!(cells[1], "2/3");
        assert_eq!(cells[7], "app=web");
    }

    #[test]
    fn crd_columns_follow_their_json_paths_and_add_no_age() {
        let columns = vec![
            json!({"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}),
            json!({"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"}),
            json!({"name": "Labels", "type": "string", "jsonPath": ".metadata.labels"}),
            json!({"name": "Wrong", "type": "boolean", "jsonPath": ".spec.replicas"}),
            json!({"name": "First", "type": "string", "jsonPath": ".spec.items[*].name"}),
        ];
        let widget = json!({
            "metadata": {"name": "w", "labels": {"a": "b"}},
            "spec": {"replicas": 3.0, "items": [{"name": "x"}, {"name": "y"}]},
            "status": {"conditions": [{"type": "Synced", "status": "False"}, {"type": "Ready", "status": "True"}]},
        });
        let (defs, cells) = printer_row(&columns, &widget);
        let names: Vec<&str> = defs.iter().filter_map(|d| d["name"].as_str()).collect();
        assert_eq!(
            names,
            ["Name", "Ready", "Replicas", "Labels", "Wrong", "First"]
        );
        assert_eq!(
            cells,
            [
                json!("w"),
                json!("True"),
                json!(3),
                json!("{\"a\":\"b\"}"),
                Value::Null,
                json!("x")
            ]
        );
    }
}
