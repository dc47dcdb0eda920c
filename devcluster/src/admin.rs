//! The admin endpoint under `/devcluster/v1/` that drives fault injection and counters over HTTP.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::{Method, StatusCode, header};
use serde_json::{Value, json};

use crate::faults::FaultRule;
use crate::shared::Shared;

fn ok(body: Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn bad(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"error": message}).to_string(),
    )
        .into_response()
}

/// Serves one admin request:
///
/// - `POST close-watches`: end every open watch;
/// - `POST expire-history`: make every resourceVersion seen so far too old to resume a watch from;
/// - `POST faults` with a [`FaultRule`] as JSON (`{"verb":"list","group":"apps","resource":"deployments",
///   "kind":"tooManyRequests","times":2}`), `DELETE faults` to clear faults and latency;
/// - `PUT latency` with `{"millis": 50}`;
/// - `PUT simulator` with `{"enabled": true}`;
/// - `GET counters`: requests per verb and resource, watches opened and open per resource.
pub(crate) fn handle(shared: &Shared, method: &Method, path: &str, body: &[u8]) -> Response {
    let parse = || serde_json::from_slice::<Value>(body).map_err(|e| e.to_string());
    match (method.as_str(), path) {
        ("POST", "close-watches") => {
            shared.close_watches();
            ok(json!({}))
        }
        ("POST", "expire-history") => {
            shared.expire_watch_history();
            ok(json!({}))
        }
        ("POST", "faults") => match serde_json::from_slice::<FaultRule>(body) {
            Ok(rule) => {
                shared.faults.add(rule);
                ok(json!({}))
            }
            Err(e) => bad(e.to_string()),
        },
        ("DELETE", "faults") => {
            shared.faults.clear();
            ok(json!({}))
        }
        ("PUT", "latency") => match parse() {
            Ok(v) => {
                shared.faults.set_latency(Duration::from_millis(
                    v.get("millis").and_then(Value::as_u64).unwrap_or(0),
                ));
                ok(json!({}))
            }
            Err(e) => bad(e),
        },
        ("PUT", "simulator") => match parse() {
            Ok(v) => {
                let on = v.get("enabled").and_then(Value::as_bool).unwrap_or(false);
                shared.simulator.store(on, Ordering::SeqCst);
                if on {
                    crate::simulator::sync(shared);
                }
                ok(json!({}))
            }
            Err(e) => bad(e),
        },
        ("GET", "counters") => {
            let requests: Vec<Value> = shared
                .counters
                .all_requests()
                .into_iter()
                .map(|(verb, group, resource, count)| json!({"verb": verb, "group": group, "resource": resource, "count": count}))
                .collect();
            let watches: Vec<Value> = shared
                .counters
                .all_watches()
                .into_iter()
                .map(|(group, resource, c)| json!({"group": group, "resource": resource, "opened": c.opened, "open": c.open}))
                .collect();
            ok(json!({"requests": requests, "watches": watches}))
        }
        _ => (StatusCode::NOT_FOUND, "unknown admin endpoint\n").into_response(),
    }
}
