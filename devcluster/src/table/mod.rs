//! `meta.k8s.io/v1` Table rendering for `kubectl get`: the columns kubectl users know for
//! built-in kinds, and `additionalPrinterColumns` (JSONPath) for custom resources.

mod pods;

use jiff::Timestamp;
use serde_json::{Value, json};

use super::resources::{PrinterColumn, ResourceType};

/// Which column set a kind renders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableKind {
    Default,
    CreatedAt,
    Namespace,
    Secret,
    ConfigMap,
    ServiceAccount,
    Service,
    Event,
    EventsV1,
    Deployment,
    StatefulSet,
    DaemonSet,
    Lease,
    Binding,
    Pod,
    Node,
    ReplicaSet,
    Job,
    /// A custom resource with printer columns from its CRD.
    Custom,
}

/// What each row carries in `object` (the `includeObject` parameter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

struct Column {
    name: &'static str,
    type_: &'static str,
    format: &'static str,
    priority: i64,
}

const fn col(name: &'static str, type_: &'static str) -> Column {
    Column {
        name,
        type_,
        format: "",
        priority: 0,
    }
}

const fn wide(name: &'static str, type_: &'static str) -> Column {
    Column {
        name,
        type_,
        format: "",
        priority: 1,
    }
}

const NAME: Column = Column {
    name: "Name",
    type_: "string",
    format: "name",
    priority: 0,
};
const AGE: Column = col("Age", "string");

fn columns(kind: TableKind) -> Vec<Column> {
    use TableKind::*;
    match kind {
        Default | Custom => vec![NAME, AGE],
        CreatedAt => vec![NAME, col("Created At", "date")],
        Namespace => vec![NAME, col("Status", "string"), AGE],
        Secret => vec![NAME, col("Type", "string"), col("Data", "string"), AGE],
        ConfigMap => vec![NAME, col("Data", "string"), AGE],
        ServiceAccount => vec![NAME, col("Secrets", "string"), AGE],
        Service => vec![
            NAME,
            col("Type", "string"),
            col("Cluster-IP", "string"),
            col("External-IP", "string"),
            col("Port(s)", "string"),
            AGE,
            wide("Selector", "string"),
        ],
        Event | EventsV1 => vec![
            col("Last Seen", "string"),
            col("Type", "string"),
            col("Reason", "string"),
            col("Object", "string"),
            wide("Subobject", "string"),
            wide("Source", "string"),
            col("Message", "string"),
            wide("First Seen", "string"),
            wide("Count", "string"),
            wide("Name", "string"),
        ],
        Deployment => vec![
            NAME,
            col("Ready", "string"),
            col("Up-to-date", "string"),
            col("Available", "string"),
            AGE,
            wide("Containers", "string"),
            wide("Images", "string"),
            wide("Selector", "string"),
        ],
        StatefulSet => vec![
            NAME,
            col("Ready", "string"),
            AGE,
            wide("Containers", "string"),
            wide("Images", "string"),
        ],
        DaemonSet => vec![
            NAME,
            col("Desired", "integer"),
            col("Current", "integer"),
            col("Ready", "integer"),
            col("Up-to-date", "integer"),
            col("Available", "integer"),
            col("Node Selector", "string"),
            AGE,
        ],
        Lease => vec![NAME, col("Holder", "string"), AGE],
        Binding => vec![NAME, col("Role", "string"), AGE],
        Pod => vec![
            NAME,
            col("Ready", "string"),
            col("Status", "string"),
            col("Restarts", "string"),
            AGE,
            wide("IP", "string"),
            wide("Node", "string"),
        ],
        Node => vec![
            NAME,
            col("Status", "string"),
            col("Roles", "string"),
            AGE,
            col("Version", "string"),
        ],
        ReplicaSet => vec![
            NAME,
            col("Desired", "integer"),
            col("Current", "integer"),
            col("Ready", "integer"),
            AGE,
        ],
        Job => vec![
            NAME,
            col("Status", "string"),
            col("Completions", "string"),
            AGE,
        ],
    }
}

/// Kubernetes' `duration.HumanDuration`: the AGE column format.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
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

fn age(ts: Option<&Value>, now: Timestamp) -> Value {
    match ts
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<Timestamp>().ok())
    {
        Some(t) => json!(human_duration(now.as_second() - t.as_second())),
        None => json!("<unknown>"),
    }
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str)
}

fn int_at(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

fn or_none(s: Option<String>) -> Value {
    json!(
        s.filter(|s| !s.is_empty())
            .unwrap_or_else(|| "<none>".into())
    )
}

fn containers(o: &Value, field: &str) -> String {
    o.pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.get(field).and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// A workload's `spec.selector.matchLabels` as `k=v,…` (also Scale's selector).
pub(crate) fn match_labels(o: &Value) -> String {
    o.pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn cells(kind: TableKind, o: &Value, now: Timestamp) -> Vec<Value> {
    use TableKind::*;
    let name = json!(str_at(o, "/metadata/name").unwrap_or_default());
    let created = o.pointer("/metadata/creationTimestamp");
    let age = age(created, now);
    match kind {
        Default | Custom => vec![name, age],
        CreatedAt => vec![name, created.cloned().unwrap_or(Value::Null)],
        Namespace => vec![
            name,
            json!(str_at(o, "/status/phase").unwrap_or("Active")),
            age,
        ],
        Secret => {
            let data = o
                .get("data")
                .and_then(Value::as_object)
                .map_or(0, |m| m.len());
            vec![
                name,
                json!(str_at(o, "/type").unwrap_or("Opaque")),
                json!(data),
                age,
            ]
        }
        ConfigMap => {
            let n = o
                .get("data")
                .and_then(Value::as_object)
                .map_or(0, |m| m.len())
                + o.get("binaryData")
                    .and_then(Value::as_object)
                    .map_or(0, |m| m.len());
            vec![name, json!(n), age]
        }
        ServiceAccount => vec![
            name,
            json!(
                o.get("secrets")
                    .and_then(Value::as_array)
                    .map_or(0, |s| s.len())
            ),
            age,
        ],
        Service => {
            let ports = o
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            format!(
                                "{}/{}",
                                p.get("port").map(|v| v.to_string()).unwrap_or_default(),
                                p.get("protocol").and_then(Value::as_str).unwrap_or("TCP")
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                });
            vec![
                name,
                json!(str_at(o, "/spec/type").unwrap_or("ClusterIP")),
                json!(str_at(o, "/spec/clusterIP").unwrap_or("<none>")),
                json!("<none>"),
                or_none(ports),
                age,
                or_none(
                    o.pointer("/spec/selector")
                        .and_then(Value::as_object)
                        .map(|m| {
                            m.iter()
                                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                                .collect::<Vec<_>>()
                                .join(",")
                        }),
                ),
            ]
        }
        Event | EventsV1 => {
            let (regarding, note, last, first, count_ptr, source) = if kind == Event {
                (
                    "/involvedObject",
                    "/message",
                    "/lastTimestamp",
                    "/firstTimestamp",
                    "/count",
                    "/source/component",
                )
            } else {
                (
                    "/regarding",
                    "/note",
                    "/deprecatedLastTimestamp",
                    "/deprecatedFirstTimestamp",
                    "/deprecatedCount",
                    "/reportingController",
                )
            };
            let last_seen = o
                .pointer(last)
                .filter(|v| !v.is_null())
                .or_else(|| o.pointer("/eventTime"))
                .or(created);
            let object = format!(
                "{}/{}",
                str_at(o, &format!("{regarding}/kind"))
                    .unwrap_or_default()
                    .to_lowercase(),
                str_at(o, &format!("{regarding}/name")).unwrap_or_default()
            );
            let count = o.pointer(count_ptr).and_then(Value::as_i64).unwrap_or(1);
            vec![
                self::age(last_seen, now),
                json!(str_at(o, "/type").unwrap_or_default()),
                json!(str_at(o, "/reason").unwrap_or_default()),
                json!(object),
                json!(str_at(o, &format!("{regarding}/fieldPath")).unwrap_or_default()),
                json!(str_at(o, source).unwrap_or_default()),
                json!(str_at(o, note).unwrap_or_default()),
                self::age(o.pointer(first).filter(|v| !v.is_null()).or(last_seen), now),
                json!(count.to_string()),
                name,
            ]
        }
        Deployment => {
            let replicas = o
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            vec![
                name,
                json!(format!("{}/{replicas}", int_at(o, "/status/readyReplicas"))),
                json!(int_at(o, "/status/updatedReplicas")),
                json!(int_at(o, "/status/availableReplicas")),
                age,
                json!(containers(o, "name")),
                json!(containers(o, "image")),
                json!(match_labels(o)),
            ]
        }
        StatefulSet => {
            let replicas = o
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            vec![
                name,
                json!(format!("{}/{replicas}", int_at(o, "/status/readyReplicas"))),
                age,
                json!(containers(o, "name")),
                json!(containers(o, "image")),
            ]
        }
        DaemonSet => vec![
            name,
            json!(int_at(o, "/status/desiredNumberScheduled")),
            json!(int_at(o, "/status/currentNumberScheduled")),
            json!(int_at(o, "/status/numberReady")),
            json!(int_at(o, "/status/updatedNumberScheduled")),
            json!(int_at(o, "/status/numberAvailable")),
            or_none(
                o.pointer("/spec/template/spec/nodeSelector")
                    .and_then(Value::as_object)
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                            .collect::<Vec<_>>()
                            .join(",")
                    }),
            ),
            age,
        ],
        Pod => pods::pod_cells(o, name, age),
        Node => pods::node_cells(o, name, age),
        ReplicaSet => vec![
            name,
            json!(
                o.pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1)
            ),
            json!(int_at(o, "/status/replicas")),
            json!(int_at(o, "/status/readyReplicas")),
            age,
        ],
        Job => pods::job_cells(o, name, age),
        Lease => vec![
            name,
            or_none(str_at(o, "/spec/holderIdentity").map(String::from)),
            age,
        ],
        Binding => vec![
            name,
            json!(format!(
                "{}/{}",
                str_at(o, "/roleRef/kind").unwrap_or_default(),
                str_at(o, "/roleRef/name").unwrap_or_default()
            )),
            age,
        ],
    }
}

/// Evaluates a printer column's JSONPath (`.status.phase`) the way the CRD table
/// convertor does: the first result, rendered by the column type.
fn custom_cell(c: &PrinterColumn, o: &Value, now: Timestamp) -> Value {
    let path = c.json_path.trim();
    let path = path
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .unwrap_or(path);
    let query = format!("${path}");
    let found = jsonpath_rust::JsonPath::query(o, &query)
        .ok()
        .and_then(|r| r.into_iter().next().cloned());
    let Some(v) = found else {
        return Value::Null;
    };
    match c.type_.as_str() {
        "date" => age(Some(&v), now),
        "integer" => v.as_i64().map_or(Value::Null, Value::from),
        "number" => v.as_f64().map_or(Value::Null, Value::from),
        "boolean" => v.as_bool().map_or(Value::Null, Value::from),
        _ => match v {
            Value::String(s) => Value::String(s),
            Value::Null => Value::Null,
            other => Value::String(other.to_string()),
        },
    }
}

/// The metadata-only form kube-apiserver puts in rows and metadata-only lists.
pub fn partial_object_metadata(o: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": o.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

pub fn render(
    rt: &ResourceType,
    objects: &[Value],
    include: IncludeObject,
    resource_version: &str,
    continue_token: Option<&str>,
    headers: bool,
) -> Value {
    let now = Timestamp::now();
    let printer_columns = &rt.printer_columns;
    let (defs, rows): (Vec<Value>, Vec<Value>) = if rt.table == TableKind::Custom {
        let mut defs = vec![json!({"name": "Name", "type": "string", "format": "name",
            "description": "Name must be unique within a namespace.", "priority": 0})];
        defs.extend(printer_columns.iter().map(|c| {
            json!({"name": c.name, "type": c.type_, "format": c.format,
                   "description": c.description, "priority": c.priority})
        }));
        if printer_columns.is_empty() {
            defs.push(json!({"name": "Age", "type": "date", "format": "",
                "description": "CreationTimestamp is a timestamp representing the server time when this object was created.", "priority": 0}));
        }
        let rows = objects
            .iter()
            .map(|o| {
                let mut cells = vec![json!(str_at(o, "/metadata/name").unwrap_or_default())];
                cells.extend(printer_columns.iter().map(|c| custom_cell(c, o, now)));
                if printer_columns.is_empty() {
                    cells.push(age(o.pointer("/metadata/creationTimestamp"), now));
                }
                row(cells, o, include)
            })
            .collect();
        (defs, rows)
    } else {
        let defs = columns(rt.table)
            .into_iter()
            .map(|c| {
                json!({"name": c.name, "type": c.type_, "format": c.format,
                       "description": "", "priority": c.priority})
            })
            .collect();
        let rows = objects
            .iter()
            .map(|o| row(cells(rt.table, o, now), o, include))
            .collect();
        (defs, rows)
    };
    let mut metadata = json!({"resourceVersion": resource_version});
    if let Some(c) = continue_token {
        metadata["continue"] = json!(c);
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": if headers { Value::Array(defs) } else { json!([]) },
        "rows": rows,
    })
}

fn row(cells: Vec<Value>, o: &Value, include: IncludeObject) -> Value {
    let object = match include {
        IncludeObject::None => Value::Null,
        IncludeObject::Metadata => partial_object_metadata(o),
        IncludeObject::Object => o.clone(),
    };
    json!({"cells": cells, "object": object})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_match_kubectl() {
        let cases = [
            (5, "5s"),
            (119, "119s"),
            (120, "2m"),
            (125, "2m5s"),
            (600, "10m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 60, "3h1m"),
            (30 * 3600, "30h"),
            (50 * 3600, "2d2h"),
            (10 * 86400, "10d"),
            (3 * 365 * 86400 + 86400, "3y1d"),
            (-5, "<invalid>"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(secs), want, "{secs}s");
        }
    }

    #[test]
    fn custom_columns_follow_jsonpath_and_type() {
        let o = json!({"metadata": {"name": "a"}, "status": {"count": 3,
            "conditions": [{"type": "Other", "status": "False"}, {"type": "Ready", "status": "True"}]}});
        let col = |path: &str, t: &str| PrinterColumn {
            name: "X".into(),
            type_: t.into(),
            format: String::new(),
            description: String::new(),
            priority: 0,
            json_path: path.into(),
        };
        let now = Timestamp::now();
        assert_eq!(
            custom_cell(
                &col(".status.conditions[?(@.type==\"Ready\")].status", "string"),
                &o,
                now
            ),
            json!("True")
        );
        assert_eq!(
            custom_cell(&col(".status.count", "integer"), &o, now),
            json!(3)
        );
        assert_eq!(
            custom_cell(&col(".status.missing", "string"), &o, now),
            Value::Null
        );
    }
}
