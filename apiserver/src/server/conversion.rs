//! Conversion between the stored form of an object and the version a client asked for.
//!
//! One kind is served in two API groups: `events.k8s.io/v1` Events are the same objects as core
//! `v1` Events, stored once in the core shape (so `kubectl describe`, which reads core events, shows
//! what controllers record through events.k8s.io, as kube-runtime's Recorder does). Upstream keeps the
//! same correspondence (`pkg/apis/events/v1/conversion.go`).

use serde_json::{Map, Value};

use super::registry::ResourceInfo;

/// Field renames between events.k8s.io/v1 (left) and core/v1 (right).
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
    ("reportingController", "reportingComponent"),
];

fn rename(obj: Value, from_left: bool, api_version: &str) -> Value {
    let Value::Object(map) = obj else { return obj };
    let mut out = Map::new();
    for (key, value) in map {
        let renamed = EVENT_FIELDS
            .iter()
            .find(|(l, r)| if from_left { l == &key } else { r == &key })
            .map(|(l, r)| if from_left { *r } else { *l });
        out.insert(renamed.unwrap_or(&key).to_owned(), value);
    }
    out.insert("apiVersion".into(), Value::String(api_version.to_owned()));
    Value::Object(out)
}

/// The stored (core) shape of an object sent in `info`'s version.
pub fn to_storage(info: &ResourceInfo, obj: Value) -> Value {
    if info.converts() {
        rename(obj, true, "v1")
    } else {
        obj
    }
}

/// An object of `info`'s version from its stored (core) shape.
pub fn from_storage(info: &ResourceInfo, obj: Value) -> Value {
    if info.converts() {
        rename(obj, false, "events.k8s.io/v1")
    } else {
        obj
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::server::registry::find;

    #[test]
    fn events_round_trip_between_groups() {
        let info = find("events.k8s.io", "v1", "events").expect("served");
        let new = json!({ "apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": { "name": "e" },
            "regarding": { "kind": "Pod", "name": "p" }, "note": "Pulled", "reason": "Pulled",
            "reportingController": "kubelet", "eventTime": "2026-01-01T00:00:00.000000Z" });
        let stored = to_storage(info, new.clone());
        assert_eq!(stored["involvedObject"]["name"], "p");
        assert_eq!(stored["message"], "Pulled");
        assert_eq!(stored["apiVersion"], "v1");
        assert_eq!(from_storage(info, stored), new);
    }
}
