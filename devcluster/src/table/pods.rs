//! Rows of the kinds kubectl shows by their status: pods, nodes and jobs.

use serde_json::{Value, json};

use super::{int_at, or_none, str_at};

fn condition_true(o: &Value, type_: &str) -> Option<bool> {
    o.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))
        .map(|c| c.get("status").and_then(Value::as_str) == Some("True"))
}

pub(super) fn pod_cells(o: &Value, name: Value, age: Value) -> Vec<Value> {
    let statuses = o
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let containers = o
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let ready = statuses
        .iter()
        .filter(|c| c.get("ready").and_then(Value::as_bool) == Some(true))
        .count();
    let restarts: i64 = statuses
        .iter()
        .filter_map(|c| c.get("restartCount").and_then(Value::as_i64))
        .sum();
    let phase = if o.pointer("/metadata/deletionTimestamp").is_some() {
        "Terminating"
    } else {
        str_at(o, "/status/phase").unwrap_or("Pending")
    };
    vec![
        name,
        json!(format!("{ready}/{containers}")),
        json!(phase),
        json!(restarts.to_string()),
        age,
        or_none(str_at(o, "/status/podIP").map(String::from)),
        or_none(str_at(o, "/spec/nodeName").map(String::from)),
    ]
}

pub(super) fn node_cells(o: &Value, name: Value, age: Value) -> Vec<Value> {
    let mut status = match condition_true(o, "Ready") {
        Some(true) => "Ready".to_string(),
        Some(false) => "NotReady".to_string(),
        None => "Unknown".to_string(),
    };
    if o.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    let roles = o
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .keys()
                .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                .collect::<Vec<_>>()
                .join(",")
        });
    vec![
        name,
        json!(status),
        or_none(roles),
        age,
        json!(str_at(o, "/status/nodeInfo/kubeletVersion").unwrap_or_default()),
    ]
}

pub(super) fn job_cells(o: &Value, name: Value, age: Value) -> Vec<Value> {
    let status = if condition_true(o, "Complete") == Some(true) {
        "Complete"
    } else if condition_true(o, "Failed") == Some(true) {
        "Failed"
    } else if o.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true) {
        "Suspended"
    } else {
        "Running"
    };
    let completions = o
        .pointer("/spec/completions")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    vec![
        name,
        json!(status),
        json!(format!("{}/{completions}", int_at(o, "/status/succeeded"))),
        age,
    ]
}
