//! What the CEL rules of a schema can see of an object, so that only that is handed to
//! `kube-cel`. It turns every subtree it walks into CEL values again at every schema
//! level, rules or not: for a custom object with a big `status` and no rule there, that
//! was most of the cost of a write. A field that no rule reads, and under which no rule
//! sits, cannot change any rule's result, so leaving it out changes no outcome. And of
//! the root's `metadata`, kube-apiserver binds only `name` and `generateName`.

use std::collections::{BTreeMap, BTreeSet};

use kube_cel::cel::common::ast::{EntryExpr, Expr, IdedExpr};
use serde_json::{Map, Value};

/// The fields of the root's metadata that rules can read.
const VISIBLE_METADATA: [&str; 2] = ["name", "generateName"];

/// The part of a schema node that rules read.
#[derive(Debug, PartialEq)]
pub struct View {
    /// The fields of this node's value that its own rules read; `None`: all of it.
    reads: Option<BTreeSet<String>>,
    /// The properties with rules at or below them.
    properties: BTreeMap<String, View>,
    /// The items' view, when rules are at or below them.
    items: Option<Box<View>>,
}

impl View {
    /// `None` when no rule is at or below `schema`.
    pub fn of(schema: &Value) -> Option<View> {
        let rules = schema
            .get("x-kubernetes-validations")
            .and_then(Value::as_array)
            .filter(|r| !r.is_empty());
        let mut reads = Some(BTreeSet::new());
        for rule in rules.into_iter().flatten() {
            for key in ["rule", "messageExpression"] {
                if let Some(text) = rule.get(key).and_then(Value::as_str) {
                    reads = union(reads, fields_read(text));
                }
            }
        }
        // Rules under combinators or map values are rare: their node is kept whole rather
        // than tracked exactly.
        let combinators = ["allOf", "anyOf", "oneOf"]
            .iter()
            .filter_map(|k| schema.get(*k).and_then(Value::as_array))
            .flatten();
        let elsewhere = combinators
            .chain(schema.get("additionalProperties").filter(|a| a.is_object()))
            .any(|s| View::of(s).is_some());
        if elsewhere {
            reads = None;
        }
        let properties: BTreeMap<String, View> = schema
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter_map(|(name, s)| Some((name.clone(), View::of(s)?)))
            .collect();
        let items = schema.get("items").and_then(View::of).map(Box::new);
        let has_rules = rules.is_some() || elsewhere || !properties.is_empty() || items.is_some();
        has_rules.then_some(View {
            reads,
            properties,
            items,
        })
    }

    /// What the rules can see of a whole object.
    pub fn of_object(&self, object: &Value) -> Value {
        let Value::Object(fields) = object else {
            return self.project(object);
        };
        let mut seen = self.project_fields(fields, |name| name != "metadata");
        if self.reads_field("metadata")
            && let Some(Value::Object(metadata)) = fields.get("metadata")
        {
            let visible = metadata
                .iter()
                .filter(|(k, _)| VISIBLE_METADATA.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            seen.insert("metadata".into(), Value::Object(visible));
        }
        Value::Object(seen)
    }

    fn reads_field(&self, name: &str) -> bool {
        self.reads.as_ref().is_none_or(|r| r.contains(name))
    }

    fn project(&self, value: &Value) -> Value {
        if self.reads.is_none() {
            return value.clone();
        }
        match (value, &self.items) {
            (Value::Object(fields), _) => Value::Object(self.project_fields(fields, |_| true)),
            (Value::Array(items), Some(view)) => {
                Value::Array(items.iter().map(|i| view.project(i)).collect())
            }
            _ => value.clone(),
        }
    }

    fn project_fields(
        &self,
        fields: &Map<String, Value>,
        keep: impl Fn(&str) -> bool,
    ) -> Map<String, Value> {
        fields
            .iter()
            .filter(|(name, _)| keep(name))
            .filter_map(|(name, v)| {
                if self.reads_field(name) {
                    Some((name.clone(), v.clone()))
                } else {
                    let view = self.properties.get(name)?;
                    Some((name.clone(), view.project(v)))
                }
            })
            .collect()
    }
}

fn union(a: Option<BTreeSet<String>>, b: Option<BTreeSet<String>>) -> Option<BTreeSet<String>> {
    let (mut a, b) = (a?, b?);
    a.extend(b);
    Some(a)
}

/// The fields of `self` (and `oldSelf`) an expression selects; `None` when it uses the
/// value otherwise (whole, indexed, iterated), selects an escaped name, or does not parse
/// (kube-cel reports that).
fn fields_read(text: &str) -> Option<BTreeSet<String>> {
    let expr = kube_cel::cel::parser::Parser::new()
        .enable_optional_syntax(true)
        .parse(text)
        .ok()?;
    let mut fields = Some(BTreeSet::new());
    collect(&expr, &mut fields);
    fields
}

fn is_self(ident: &str) -> bool {
    ident == "self" || ident == "oldSelf"
}

fn collect(e: &IdedExpr, fields: &mut Option<BTreeSet<String>>) {
    match &e.expr {
        Expr::Select(s) => match &s.operand.expr {
            // CEL escapes some field names (`__dash__`...): such a read keeps everything.
            Expr::Ident(name) if is_self(name) && s.field.contains("__") => *fields = None,
            Expr::Ident(name) if is_self(name) => {
                if let Some(f) = fields {
                    f.insert(s.field.clone());
                }
            }
            _ => collect(&s.operand, fields),
        },
        Expr::Ident(name) if is_self(name) => *fields = None,
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
        Expr::Call(c) => {
            for e in c.target.iter().map(AsRef::as_ref).chain(&c.args) {
                collect(e, fields);
            }
        }
        Expr::Comprehension(c) => {
            for e in [
                &c.iter_range,
                &c.accu_init,
                &c.loop_cond,
                &c.loop_step,
                &c.result,
            ] {
                collect(e, fields);
            }
        }
        Expr::List(l) => l.elements.iter().for_each(|e| collect(e, fields)),
        Expr::Map(m) => {
            for entry in &m.entries {
                match &entry.expr {
                    EntryExpr::MapEntry(m) => {
                        collect(&m.key, fields);
                        collect(&m.value, fields);
                    }
                    EntryExpr::StructField(f) => collect(&f.value, fields),
                }
            }
        }
        Expr::Struct(s) => {
            for entry in &s.entries {
                if let EntryExpr::StructField(f) = &entry.expr {
                    collect(&f.value, fields);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reads(text: &str) -> Option<Vec<String>> {
        fields_read(text).map(|f| f.into_iter().collect())
    }

    #[test]
    fn selected_fields_are_read_and_other_uses_read_everything() {
        assert_eq!(
            reads("!has(self.overlap) || duration(self.overlap) < duration(oldSelf.every)"),
            Some(vec!["every".into(), "overlap".into()])
        );
        assert_eq!(
            reads("[self.a, self.b].all(f, !(f in self.t))"),
            Some(vec!["a".into(), "b".into(), "t".into()])
        );
        for whole in [
            "self == oldSelf",
            "size(self) < 3",
            "self.all(x, x > 0)",
            "self[0] == 1",
            "self.x__dash__y == 1",
            "self.?a.orValue(1) == 1",
            "not CEL (",
        ] {
            assert_eq!(reads(whole), None, "{whole}");
        }
    }

    fn schema() -> Value {
        json!({"type": "object",
            "x-kubernetes-validations": [{"rule": "size(self.metadata.name) <= 63"}],
            "properties": {
                "metadata": {"type": "object"},
                "spec": {"type": "object", "properties": {
                    "plain": {"type": "string"},
                    "rotation": {"type": "object",
                        "x-kubernetes-validations": [{"rule": "has(self.every)",
                            "messageExpression": "'not ' + self.schedule"}],
                        "properties": {"every": {"type": "string"}, "schedule": {"type": "string"},
                            "other": {"type": "string"}}},
                    "consumers": {"type": "array", "items": {"type": "object",
                        "x-kubernetes-validations": [{"rule": "has(self.name)"}],
                        "properties": {"name": {"type": "string"}, "kind": {"type": "string"}}}}}},
                "status": {"type": "object", "properties": {"phase": {"type": "string"}}}}})
    }

    #[test]
    fn an_object_is_cut_to_what_rules_read_and_what_holds_rules() {
        let view = View::of(&schema()).expect("rules");
        let object = json!({"apiVersion": "x/v1", "kind": "K",
            "metadata": {"name": "a", "labels": {"l": "v"}, "managedFields": [{"manager": "m"}]},
            "spec": {"plain": "p", "rotation": {"every": "1h", "schedule": "s", "other": "o"},
                "consumers": [{"name": "c", "kind": "Deployment"}, {"kind": "StatefulSet"}]},
            "status": {"phase": "Ready"}});
        assert_eq!(
            view.of_object(&object),
            json!({"metadata": {"name": "a"},
                "spec": {"rotation": {"every": "1h", "schedule": "s"},
                    "consumers": [{"name": "c"}, {}]}})
        );
    }

    #[test]
    fn a_root_rule_reading_self_whole_keeps_all_but_hidden_metadata() {
        let mut s = schema();
        s["x-kubernetes-validations"] = json!([{"rule": "self == oldSelf"}]);
        let view = View::of(&s).expect("rules");
        let object = json!({"metadata": {"name": "a", "uid": "u"}, "status": {"phase": "Ready"}});
        assert_eq!(
            view.of_object(&object),
            json!({"metadata": {"name": "a"}, "status": {"phase": "Ready"}})
        );
    }

    #[test]
    fn a_schema_without_rules_has_no_view() {
        assert_eq!(
            View::of(&json!({"type": "object", "properties": {"a": {"type": "string"}}})),
            None
        );
    }
}
