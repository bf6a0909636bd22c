//! Field ownership for server-side apply, after structured-merge-diff: every field an
//! object sets is a path of fields (`f:`), keyed list elements (`k:`) and set values
//! (`v:`); managers own sets of such paths, recorded as `managedFields[].fieldsV1`.
//! Which lists are keyed comes from the Go structs' merge keys (built-ins) or from
//! `x-kubernetes-list-type` (CRDs); every other list is atomic.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::resources::ResourceType;
use super::strategic;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Element {
    Field(String),
    /// A keyed list element, by the canonical JSON of its key fields.
    Key(String),
    /// A member of a set-like list, by its canonical JSON.
    Value(String),
}

pub type Path = Vec<Element>;

/// How a list field merges and is owned.
#[derive(Clone, Debug, PartialEq, Eq)]
enum ListKind {
    Atomic,
    Map(Vec<String>),
    Set,
}

/// Which part of the object a write covers: the main resource or `/status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Main { exclude_status: bool },
    Status,
}

/// Metadata fields owned by the server, never tracked as anyone's managed fields.
const SERVER_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "generateName",
    "selfLink",
];

/// Walks objects of one kind with its list semantics.
pub struct Walker<'a> {
    rt: &'a ResourceType,
}

fn child_schema<'s>(schema: Option<&'s Value>, field: &str) -> Option<&'s Value> {
    let s = schema?;
    s.pointer(&format!(
        "/properties/{}",
        field.replace('~', "~0").replace('/', "~1")
    ))
    .or_else(|| s.get("additionalProperties").filter(|a| a.is_object()))
}

fn canonical(v: &Value) -> String {
    v.to_string()
}

impl<'a> Walker<'a> {
    pub fn new(rt: &'a ResourceType) -> Self {
        Walker { rt }
    }

    fn root_schema(&self) -> Option<&'a Value> {
        self.rt.schema.as_ref().map(|s| s.raw())
    }

    fn list_kind(&self, schema: Option<&Value>, parent: &str, field: &str) -> ListKind {
        // Metadata is ObjectMeta for every kind: its lists follow the Go merge keys.
        if self.rt.is_custom() && !parent.starts_with("metadata") {
            let keys = |s: &Value| -> Vec<String> {
                super::meta::string_list(s.get("x-kubernetes-list-map-keys")).unwrap_or_default()
            };
            return match schema
                .and_then(|s| s.get("x-kubernetes-list-type"))
                .and_then(Value::as_str)
            {
                Some("map") => ListKind::Map(keys(schema.expect("has list type"))),
                Some("set") => ListKind::Set,
                _ => ListKind::Atomic,
            };
        }
        match strategic::list_strategy(parent, field) {
            strategic::ListStrategy::MergeByKey(k) => ListKind::Map(vec![k.to_string()]),
            strategic::ListStrategy::MergePrimitives => ListKind::Set,
            strategic::ListStrategy::Replace => ListKind::Atomic,
        }
    }

    fn element_key(keys: &[String], item: &Value) -> Value {
        let m: Map<String, Value> = keys
            .iter()
            .filter_map(|k| item.get(k).map(|v| (k.clone(), v.clone())))
            .collect();
        Value::Object(m)
    }

    /// Every leaf path `obj` sets within `scope`.
    pub fn fields(&self, obj: &Value, scope: Scope) -> BTreeSet<Path> {
        let mut out = BTreeSet::new();
        let Some(map) = obj.as_object() else {
            return out;
        };
        for (k, v) in map {
            let keep = match (scope, k.as_str()) {
                (_, "apiVersion" | "kind") => false,
                (Scope::Status, key) => key == "status",
                (Scope::Main { exclude_status }, "status") => !exclude_status,
                _ => true,
            };
            if !keep {
                continue;
            }
            let mut path = vec![Element::Field(k.clone())];
            if k == "metadata" {
                let mut m = v.clone();
                if let Some(mm) = m.as_object_mut() {
                    mm.retain(|key, _| !SERVER_METADATA.contains(&key.as_str()));
                    if mm.is_empty() {
                        continue;
                    }
                }
                self.collect(&m, None, "metadata", &mut path, &mut out);
            } else if let Some(items) = v.as_array().filter(|i| !i.is_empty()) {
                let schema = child_schema(self.root_schema(), k);
                self.collect_list(items, schema, "", k, &mut path, &mut out);
            } else {
                let schema = child_schema(self.root_schema(), k);
                self.collect(v, schema, k, &mut path, &mut out);
            }
        }
        out
    }

    fn collect(
        &self,
        v: &Value,
        schema: Option<&Value>,
        strpath: &str,
        path: &mut Path,
        out: &mut BTreeSet<Path>,
    ) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, child) in m {
                    path.push(Element::Field(k.clone()));
                    let cs = child_schema(schema, k);
                    match child {
                        Value::Array(items) if !items.is_empty() => {
                            self.collect_list(items, cs, strpath, k, path, out)
                        }
                        _ => self.collect(child, cs, &format!("{strpath}.{k}"), path, out),
                    }
                    path.pop();
                }
            }
            _ => {
                out.insert(path.clone());
            }
        }
    }

    fn collect_list(
        &self,
        items: &[Value],
        schema: Option<&Value>,
        parent: &str,
        field: &str,
        path: &mut Path,
        out: &mut BTreeSet<Path>,
    ) {
        let item_schema = schema.and_then(|s| s.get("items"));
        match self.list_kind(schema, parent, field) {
            ListKind::Atomic => {
                out.insert(path.clone());
            }
            ListKind::Set => {
                for item in items {
                    path.push(Element::Value(canonical(item)));
                    out.insert(path.clone());
                    path.pop();
                }
            }
            ListKind::Map(keys) => {
                let element_path = format!("{parent}.{field}[]");
                for item in items {
                    path.push(Element::Key(canonical(&Self::element_key(&keys, item))));
                    out.insert(path.clone());
                    self.collect(item, item_schema, &element_path, path, out);
                    path.pop();
                }
            }
        }
    }

    /// Server-side apply's merge: maps merge, keyed and set lists merge by identity,
    /// atomic lists and scalars are replaced by the applied value.
    pub fn merge(&self, live: &mut Value, applied: &Value) {
        self.merge_at(live, applied, self.root_schema(), "");
    }

    fn merge_at(&self, live: &mut Value, applied: &Value, schema: Option<&Value>, strpath: &str) {
        let (Some(l), Some(a)) = (live.as_object_mut(), applied.as_object()) else {
            *live = applied.clone();
            return;
        };
        for (k, v) in a {
            let cs = child_schema(schema, k);
            let child_path = if strpath.is_empty() {
                k.clone()
            } else {
                format!("{strpath}.{k}")
            };
            match (l.get_mut(k), v) {
                (Some(existing), Value::Object(_)) if existing.is_object() => {
                    self.merge_at(existing, v, cs, &child_path)
                }
                (Some(Value::Array(existing)), Value::Array(items)) => {
                    match self.list_kind(cs, strpath, k) {
                        ListKind::Atomic => *existing = items.clone(),
                        ListKind::Set => {
                            for i in items {
                                if !existing.contains(i) {
                                    existing.push(i.clone());
                                }
                            }
                        }
                        ListKind::Map(keys) => {
                            let item_schema = cs.and_then(|s| s.get("items"));
                            let element_path = format!("{child_path}[]");
                            for item in items {
                                let id = Self::element_key(&keys, item);
                                match existing
                                    .iter_mut()
                                    .find(|e| Self::element_key(&keys, e) == id)
                                {
                                    Some(e) => self.merge_at(e, item, item_schema, &element_path),
                                    None => existing.push(item.clone()),
                                }
                            }
                        }
                    }
                }
                _ => {
                    l.insert(k.clone(), v.clone());
                }
            }
        }
    }
}

/// The value at `path`, if the object has one.
pub fn value_at<'v>(obj: &'v Value, path: &[Element]) -> Option<&'v Value> {
    let mut cur = obj;
    for e in path {
        cur = match e {
            Element::Field(f) => cur.get(f)?,
            Element::Key(k) => {
                let key: Map<String, Value> = serde_json::from_str(k).ok()?;
                cur.as_array()?
                    .iter()
                    .find(|item| key.iter().all(|(kk, kv)| item.get(kk) == Some(kv)))?
            }
            Element::Value(v) => {
                let want: Value = serde_json::from_str(v).ok()?;
                cur.as_array()?.iter().find(|item| **item == want)?
            }
        };
    }
    Some(cur)
}

/// Removes the field, list element or set member at `path`.
pub fn remove_at(obj: &mut Value, path: &[Element]) {
    let Some((last, parent_path)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for e in parent_path {
        let next = match e {
            Element::Field(f) => cur.get_mut(f),
            Element::Key(_) | Element::Value(_) => {
                let idx = index_of(cur, e);
                match (idx, cur.as_array_mut()) {
                    (Some(i), Some(a)) => a.get_mut(i),
                    _ => None,
                }
            }
        };
        let Some(next) = next else {
            return;
        };
        cur = next;
    }
    match last {
        Element::Field(f) => {
            if let Some(m) = cur.as_object_mut() {
                m.remove(f);
            }
        }
        e => {
            if let (Some(i), Some(items)) = (index_of(cur, e), cur.as_array_mut()) {
                items.remove(i);
            }
        }
    }
}

fn index_of(list: &Value, e: &Element) -> Option<usize> {
    let items = list.as_array()?;
    match e {
        Element::Key(k) => {
            let key: Map<String, Value> = serde_json::from_str(k).ok()?;
            items
                .iter()
                .position(|item| key.iter().all(|(kk, kv)| item.get(kk) == Some(kv)))
        }
        Element::Value(v) => {
            let want: Value = serde_json::from_str(v).ok()?;
            items.iter().position(|item| *item == want)
        }
        Element::Field(_) => None,
    }
}

fn encode(e: &Element) -> String {
    match e {
        Element::Field(f) => format!("f:{f}"),
        Element::Key(k) => format!("k:{k}"),
        Element::Value(v) => format!("v:{v}"),
    }
}

/// FieldsV1 JSON of a path set; list elements carry the `"."` marker of their own.
pub fn to_fields_v1(paths: &BTreeSet<Path>) -> Value {
    let mut root = json!({});
    for p in paths {
        let mut node = &mut root;
        for e in p {
            node = node
                .as_object_mut()
                .expect("object")
                .entry(encode(e))
                .or_insert_with(|| json!({}));
        }
        if matches!(p.last(), Some(Element::Key(_))) {
            node.as_object_mut()
                .expect("object")
                .insert(".".into(), json!({}));
        }
    }
    root
}

pub fn from_fields_v1(v: &Value) -> BTreeSet<Path> {
    fn walk(v: &Value, path: &mut Path, out: &mut BTreeSet<Path>) {
        let Some(m) = v.as_object() else {
            return;
        };
        if (m.is_empty() || m.contains_key(".")) && !path.is_empty() {
            out.insert(path.clone());
        }
        for (k, child) in m {
            let e = if let Some(f) = k.strip_prefix("f:") {
                Element::Field(f.to_string())
            } else if let Some(key) = k.strip_prefix("k:") {
                Element::Key(key.to_string())
            } else if let Some(val) = k.strip_prefix("v:") {
                Element::Value(val.to_string())
            } else {
                continue;
            };
            path.push(e);
            walk(child, path, out);
            path.pop();
        }
    }
    let mut out = BTreeSet::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

/// kube-apiserver's rendering of a path in conflict messages:
/// `.spec.template.spec.containers[name="app"].image`.
pub fn display(path: &[Element]) -> String {
    let mut s = String::new();
    for e in path {
        match e {
            Element::Field(f) => {
                s.push('.');
                s.push_str(f);
            }
            Element::Key(k) => {
                let key: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
                let parts: Vec<String> = key.iter().map(|(kk, kv)| format!("{kk}={kv}")).collect();
                s.push_str(&format!("[{}]", parts.join(",")));
            }
            Element::Value(v) => s.push_str(&format!("[={v}]")),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Registry;

    fn deployments() -> std::sync::Arc<ResourceType> {
        Registry::with_builtins()
            .get("apps", "v1", "deployments")
            .unwrap()
    }

    #[test]
    fn keyed_lists_become_element_paths_and_round_trip_through_fields_v1() {
        let rt = deployments();
        let w = Walker::new(&rt);
        let d = json!({"metadata": {"name": "x", "labels": {"a": "b"}, "finalizers": ["f1"]},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "app", "image": "i:1"}],
            "tolerations": [{"key": "k"}]}}}, "status": {"replicas": 1}});
        let fields = w.fields(
            &d,
            Scope::Main {
                exclude_status: true,
            },
        );
        let shown: Vec<String> = fields.iter().map(|p| display(p)).collect();
        assert_eq!(
            shown,
            [
                ".metadata.finalizers[=\"f1\"]",
                ".metadata.labels.a",
                ".spec.replicas",
                ".spec.template.spec.containers[name=\"app\"]",
                ".spec.template.spec.containers[name=\"app\"].image",
                ".spec.template.spec.containers[name=\"app\"].name",
                ".spec.template.spec.tolerations",
            ]
        );
        let v1 = to_fields_v1(&fields);
        assert_eq!(
            v1["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"app\"}"]["."],
            json!({})
        );
        assert_eq!(from_fields_v1(&v1), fields);
        let image = fields
            .iter()
            .find(|p| display(p).ends_with(".image"))
            .unwrap();
        assert_eq!(value_at(&d, image), Some(&json!("i:1")));
    }

    #[test]
    fn merge_and_remove_follow_list_kinds() {
        let rt = deployments();
        let w = Walker::new(&rt);
        let mut live = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "i:1", "env": [{"name": "A"}]}],
            "tolerations": [{"key": "a"}]}}}});
        w.merge(&mut live, &json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "i:2"}, {"name": "side"}],
            "tolerations": [{"key": "b"}]}}}}));
        let spec = &live["spec"]["template"]["spec"];
        assert_eq!(
            spec["containers"][0],
            json!({"name": "app", "image": "i:2", "env": [{"name": "A"}]})
        );
        assert_eq!(spec["containers"][1], json!({"name": "side"}));
        assert_eq!(spec["tolerations"], json!([{"key": "b"}]));
        let side = w
            .fields(
                &live,
                Scope::Main {
                    exclude_status: true,
                },
            )
            .into_iter()
            .find(|p| display(p) == ".spec.template.spec.containers[name=\"side\"]")
            .unwrap();
        remove_at(&mut live, &side);
        assert_eq!(
            live["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }
}
