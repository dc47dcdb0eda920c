//! Events are stored once, in the core/v1 shape, and shown as events.k8s.io/v1 by renaming fields.

use serde_json::{Map, Value};

use crate::registry::ResourceDef;

/// core/v1 field names and their events.k8s.io/v1 counterparts.
const RENAMES: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

/// Whether a resource is the events.k8s.io view of Events.
pub(crate) fn is_events_view(res: &ResourceDef) -> bool {
    res.group == "events.k8s.io" && res.plural == "events"
}

fn rename(obj: &mut Map<String, Value>, to_view: bool) {
    for (core, view) in RENAMES {
        let (from, to) = if to_view { (core, view) } else { (view, core) };
        if let Some(v) = obj.remove(*from) {
            obj.insert((*to).to_owned(), v);
        }
    }
}

/// Turns a stored (core/v1) Event into its events.k8s.io/v1 shape.
pub(crate) fn to_view(obj: &mut Map<String, Value>) {
    rename(obj, true);
}

/// Turns an events.k8s.io/v1 Event into the stored (core/v1) shape.
pub(crate) fn to_core(obj: &mut Map<String, Value>) {
    rename(obj, false);
}

/// Rewrites an events.k8s.io field selector (`regarding.name=x`) to the stored field names.
pub(crate) fn fields_to_core(selector: &str) -> String {
    selector
        .split(',')
        .map(|term| {
            for (core, view) in RENAMES {
                if let Some(rest) = term.strip_prefix(view)
                    && (rest.starts_with('.') || rest.starts_with('=') || rest.starts_with('!'))
                {
                    return format!("{core}{rest}");
                }
            }
            term.to_owned()
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_round_trip_between_the_two_views() {
        let core = json!({"metadata": {"name": "e"}, "involvedObject": {"name": "x"}, "message": "m", "reason": "R", "count": 2});
        let mut obj = core.as_object().cloned().unwrap();
        to_view(&mut obj);
        assert_eq!(obj["regarding"], json!({"name": "x"}));
        assert_eq!(obj["note"], "m");
        assert_eq!(obj["deprecatedCount"], 2);
        assert_eq!(obj["reason"], "R");
        to_core(&mut obj);
        assert_eq!(Value::Object(obj), core);
        assert_eq!(
            fields_to_core("regarding.name=x,reason=R"),
            "involvedObject.name=x,reason=R"
        );
    }
}
