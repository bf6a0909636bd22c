//! `managedFields`: who owns which fields. Updates transfer the fields they change to their
//! manager; server-side apply detects conflicts with other managers (or takes the fields
//! with `force`) and removes the fields a manager stops applying when nobody else owns
//! them. See the crate README for where this approximates structured-merge-diff.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::fieldset::{self, Element, Path, Scope, Walker};
use super::meta::now_rfc3339;

#[derive(Clone, Debug)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    subresource: Option<String>,
    time: Value,
    fields: BTreeSet<Path>,
}

impl Entry {
    fn is(&self, manager: &str, operation: &str, subresource: Option<&str>) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == subresource
    }
}

fn read(obj: &Value) -> Vec<Entry> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|e| Entry {
                    manager: e["manager"].as_str().unwrap_or_default().into(),
                    operation: e["operation"].as_str().unwrap_or_default().into(),
                    api_version: e["apiVersion"].as_str().unwrap_or_default().into(),
                    subresource: e
                        .get("subresource")
                        .and_then(Value::as_str)
                        .map(String::from),
                    time: e.get("time").cloned().unwrap_or(Value::Null),
                    fields: fieldset::from_fields_v1(&e["fieldsV1"]),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Writes the entries back, dropping those that own nothing.
fn write(obj: &mut Value, entries: Vec<Entry>) {
    let list: Vec<Value> = entries
        .into_iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": fieldset::to_fields_v1(&e.fields),
            });
            if let Some(s) = e.subresource {
                v["subresource"] = json!(s);
            }
            v
        })
        .collect();
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if list.is_empty() {
            m.remove("managedFields");
        } else {
            m.insert("managedFields".into(), Value::Array(list));
        }
    }
}

/// Who is writing, with which operation, through which endpoint.
pub struct Writer<'a> {
    pub manager: &'a str,
    pub api_version: &'a str,
    pub scope: Scope,
}

impl Writer<'_> {
    fn subresource(&self) -> Option<&'static str> {
        (self.scope == Scope::Status).then_some("status")
    }

    fn upsert(
        &self,
        entries: &mut Vec<Entry>,
        operation: &str,
        fields: BTreeSet<Path>,
        replace: bool,
    ) {
        let sub = self.subresource();
        match entries
            .iter_mut()
            .find(|e| e.is(self.manager, operation, sub))
        {
            Some(e) => {
                if replace {
                    e.fields = fields;
                } else {
                    e.fields.extend(fields);
                }
                e.time = json!(now_rfc3339());
                e.api_version = self.api_version.into();
            }
            None => entries.push(Entry {
                manager: self.manager.into(),
                operation: operation.into(),
                api_version: self.api_version.into(),
                subresource: sub.map(String::from),
                time: json!(now_rfc3339()),
                fields,
            }),
        }
    }
}

/// Whether `p` has the same value in both objects (for list elements: exists in both).
fn same_at(a: &Value, b: &Value, p: &[Element]) -> bool {
    match p.last() {
        Some(Element::Key(_) | Element::Value(_)) => {
            fieldset::value_at(a, p).is_some() == fieldset::value_at(b, p).is_some()
        }
        _ => match (fieldset::value_at(a, p), fieldset::value_at(b, p)) {
            (Some(x), Some(y)) => equal(x, y),
            (x, y) => x == y,
        },
    }
}

/// Value equality as structured-merge-diff compares: numbers by value, so `0` and `0.0`
/// (a YAML float where the live object holds an int) are the same, not a conflict.
fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| equal(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| equal(v, w)))
        }
        _ => a == b,
    }
}

/// A field of a keyed list element that is part of its key: it goes with the element,
/// never alone (an element without its key is no element).
fn is_key_field(p: &[Element]) -> bool {
    match p {
        [.., Element::Key(key), Element::Field(f)] => {
            serde_json::from_str::<serde_json::Map<String, Value>>(key)
                .is_ok_and(|k| k.contains_key(f))
        }
        _ => false,
    }
}

/// Drops owned paths that no longer exist in `obj`.
fn prune(walker: &Walker<'_>, obj: &Value, entries: &mut [Entry]) {
    let present = walker.fields(
        obj,
        Scope::Main {
            exclude_status: false,
        },
    );
    for e in entries.iter_mut() {
        e.fields.retain(|p| present.contains(p));
    }
}

/// A create: the creator owns everything it set.
pub fn record_create(walker: &Walker<'_>, obj: &mut Value, writer: &Writer<'_>, operation: &str) {
    let mut entries = Vec::new();
    writer.upsert(
        &mut entries,
        operation,
        walker.fields(obj, writer.scope),
        true,
    );
    write(obj, entries);
}

/// An update (PUT or patch): the writer takes the fields it changed from everyone else.
pub fn record_update(walker: &Walker<'_>, old: &Value, new: &mut Value, writer: &Writer<'_>) {
    let mut entries = read(old);
    let changed: BTreeSet<Path> = walker
        .fields(new, writer.scope)
        .into_iter()
        .filter(|p| !same_at(old, new, p))
        .collect();
    for e in entries.iter_mut() {
        e.fields.retain(|p| !changed.contains(p));
    }
    if !changed.is_empty() {
        writer.upsert(&mut entries, "Update", changed, false);
    }
    prune(walker, new, &mut entries);
    write(new, entries);
}

/// Fields another manager owns with a different value than the one applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    pub manager: String,
    pub api_version: String,
    pub path: String,
}

/// Server-side apply of `applied` onto `live`: the merged object with its managedFields,
/// or the conflicts (unless `force`).
pub fn apply(
    walker: &Walker<'_>,
    live: &Value,
    applied: &Value,
    writer: &Writer<'_>,
    force: bool,
) -> Result<Value, Vec<Conflict>> {
    let mut entries = read(live);
    let applied_fields = walker.fields(applied, writer.scope);
    let mut conflicts = Vec::new();
    let mut contested: BTreeSet<Path> = BTreeSet::new();
    for e in entries.iter().filter(|e| e.manager != writer.manager) {
        for p in e.fields.intersection(&applied_fields) {
            if !same_at(live, applied, p) {
                contested.insert(p.clone());
                conflicts.push(Conflict {
                    manager: e.manager.clone(),
                    api_version: e.api_version.clone(),
                    path: fieldset::display(p),
                });
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    for e in entries.iter_mut().filter(|e| e.manager != writer.manager) {
        e.fields.retain(|p| !contested.contains(p));
    }
    let previous = entries
        .iter()
        .find(|e| e.is(writer.manager, "Apply", writer.subresource()))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let mut merged = live.clone();
    walker.merge(&mut merged, applied);
    // Fields this manager stopped applying go, unless someone else still owns them (or
    // something beneath them); deepest first, so emptied parents can go too.
    let mut dropped: Vec<&Path> = previous.difference(&applied_fields).collect();
    dropped.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in dropped {
        let owned_elsewhere = entries
            .iter()
            .filter(|e| !e.is(writer.manager, "Apply", writer.subresource()))
            .any(|e| e.fields.iter().any(|q| q.starts_with(p)));
        let applied_beneath = applied_fields.iter().any(|q| q.starts_with(p));
        if !owned_elsewhere && !applied_beneath && !is_key_field(p) {
            fieldset::remove_at(&mut merged, p);
        }
    }
    writer.upsert(&mut entries, "Apply", applied_fields, true);
    prune(walker, &merged, &mut entries);
    write(&mut merged, entries);
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Registry;

    fn writer(manager: &str) -> Writer<'_> {
        Writer {
            manager,
            api_version: "v1",
            scope: Scope::Main {
                exclude_status: false,
            },
        }
    }

    #[test]
    fn apply_conflicts_force_and_removal() {
        let rt = Registry::with_builtins()
            .get("", "v1", "configmaps")
            .unwrap();
        let w = Walker::new(&rt);
        let mut live = json!({"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}});
        record_create(&w, &mut live, &writer("creator"), "Update");

        let conflict = apply(
            &w,
            &live,
            &json!({"data": {"a": "9"}}),
            &writer("ssa"),
            false,
        )
        .unwrap_err();
        assert_eq!(
            conflict,
            [Conflict {
                manager: "creator".into(),
                api_version: "v1".into(),
                path: ".data.a".into()
            }]
        );
        let same_value = apply(
            &w,
            &live,
            &json!({"data": {"a": "1", "c": "3"}}),
            &writer("ssa"),
            false,
        )
        .unwrap();
        assert_eq!(
            same_value["data"],
            json!({"a": "1", "b": "2", "c": "3"}),
            "equal values are shared, not conflicts"
        );

        let forced = apply(
            &w,
            &same_value,
            &json!({"data": {"a": "9", "c": "3"}}),
            &writer("ssa"),
            true,
        )
        .unwrap();
        assert_eq!(forced["data"]["a"], "9");
        let entries = read(&forced);
        let creator = entries.iter().find(|e| e.manager == "creator").unwrap();
        assert!(
            !creator
                .fields
                .iter()
                .any(|p| fieldset::display(p) == ".data.a"),
            "force takes the field"
        );

        // ssa stops applying "c" (only it owns it) and "a" (only it owns it now): both go.
        let dropped = apply(&w, &forced, &json!({"data": {}}), &writer("ssa"), false).unwrap();
        assert_eq!(dropped["data"], json!({"b": "2"}));
    }

    #[test]
    fn a_kept_list_element_never_loses_its_key() {
        let rt = Registry::with_builtins()
            .get("apps", "v1", "deployments")
            .unwrap();
        let w = Walker::new(&rt);
        let base = json!({"metadata": {"name": "d"}, "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "a"}]}}}});
        let with_side = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "a"}, {"name": "side", "image": "s:1"}]}}}});
        let a = apply(&w, &base, &with_side, &writer("a"), false).unwrap();
        let mut edited = a.clone();
        edited["spec"]["template"]["spec"]["containers"][1]["image"] = json!("s:2");
        record_update(&w, &a, &mut edited, &writer("b"));
        let without_side = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "a"}]}}}});
        let out = apply(&w, &edited, &without_side, &writer("a"), false).unwrap();
        let side = &out["spec"]["template"]["spec"]["containers"][1];
        assert_eq!(
            side["name"], "side",
            "B still owns .image, so the element stays whole: {side}"
        );
    }

    #[test]
    fn updates_take_the_fields_they_change() {
        let rt = Registry::with_builtins()
            .get("", "v1", "configmaps")
            .unwrap();
        let w = Walker::new(&rt);
        let mut live = json!({"metadata": {"name": "c"}, "data": {"a": "1"}});
        let applied = apply(
            &w,
            &live.clone(),
            &json!({"data": {"a": "1"}}),
            &writer("ssa"),
            false,
        )
        .unwrap();
        live = applied;
        let mut edited = live.clone();
        edited["data"]["a"] = json!("2");
        record_update(&w, &live, &mut edited, &writer("kubectl-edit"));
        let entries = read(&edited);
        assert_eq!(entries.len(), 1, "ssa no longer owns anything: {entries:?}");
        assert_eq!(entries[0].manager, "kubectl-edit");
        let conflict = apply(
            &w,
            &edited,
            &json!({"data": {"a": "3"}}),
            &writer("ssa"),
            false,
        )
        .unwrap_err();
        assert_eq!(conflict[0].manager, "kubectl-edit");
    }

    #[test]
    fn numbers_are_equal_by_value_as_structured_merge_diff_compares_them() {
        assert!(equal(
            &json!({"minimum": 0, "l": [1, 2]}),
            &json!({"minimum": 0.0, "l": [1.0, 2]})
        ));
        assert!(!equal(&json!({"minimum": 0}), &json!({"minimum": 0.5})));
        assert!(!equal(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
        assert!(!equal(&json!([1]), &json!([1, 1])));
    }
}
