//! The registration-time checks of `x-kubernetes-validations` across a whole schema, as
//! apiextensions-apiserver's `validation.go` and `cel_validation.go` make them: each
//! rule's estimated cost is multiplied by how often its schema node can occur in one
//! object (the product of the `maxItems`/`maxProperties` above it), checked against the
//! per-expression limit, and summed against the per-CRD limit.

use std::rc::Rc;

use serde_json::Value;

use super::decl::{self, Decl, MAX_REQUEST_SIZE_BYTES, Ty};
use super::estimate::{self, Release};
use crate::errors::FieldError;

/// `StaticEstimatedCostLimit`: the most one rule may cost, times its node's cardinality.
pub const PER_EXPRESSION_LIMIT: u64 = 10_000_000;
/// `StaticEstimatedCRDCostLimit`: the most all rules of one schema may cost together.
pub const PER_CRD_LIMIT: u64 = 100_000_000;
/// A total-budget refusal names the most expensive rules: at most four, each costing at
/// least a hundredth of the total limit (`TotalCost.ObserveExpressionCost`).
const MOST_EXPENSIVE_LISTED: usize = 4;
const MOST_EXPENSIVE_FLOOR: u64 = PER_CRD_LIMIT / 100;

/// The errors kube-apiserver reports for the rules of one version's schema; `base` is the
/// schema's field path (`spec.validation.openAPIV3Schema` when every version shares it).
pub fn check_schema(schema: &Value, base: &str, release: Release) -> Vec<FieldError> {
    let mut walk = Walk {
        release,
        errors: Vec::new(),
        total: 0,
        expensive: Vec::new(),
    };
    walk.node(schema, base.to_string(), Some(1), true);
    if walk.total > PER_CRD_LIMIT {
        walk.expensive.sort_by_key(|e| std::cmp::Reverse(e.1));
        for (path, _) in walk.expensive.iter().take(MOST_EXPENSIVE_LISTED) {
            walk.errors.push(FieldError::forbidden(
                path,
                "contributed to estimated rule cost total exceeding cost limit for entire OpenAPIv3 schema",
            ));
        }
        walk.errors.push(FieldError::forbidden(
            base,
            cost_message(
                "x-kubernetes-validations estimated rule cost total for entire OpenAPIv3 schema",
                walk.total,
                PER_CRD_LIMIT,
            ),
        ));
    }
    walk.errors
}

struct Walk {
    release: Release,
    errors: Vec<FieldError>,
    total: u64,
    /// The paths and costs of expressions that may be named when the total is exceeded.
    expensive: Vec<(String, u64)>,
}

/// Which expression of a validation rule.
#[derive(Clone, Copy)]
enum Expression {
    Rule,
    Message,
}

impl Walk {
    /// `cardinality`: how often this node can occur in one object; `None` when a list or
    /// map above it has no bound.
    fn node(&mut self, s: &Value, path: String, cardinality: Option<u64>, resource_root: bool) {
        let per_parent = elements_per_parent(s);
        let child = |c: Option<u64>| match (c, per_parent) {
            (Some(c), Some(n)) => Some(c.saturating_mul(n)),
            _ => None,
        };
        // Children first: kube-apiserver reports their rules before their parent's.
        if s["additionalProperties"].is_object() {
            self.node(
                &s["additionalProperties"],
                format!("{path}.additionalProperties"),
                child(cardinality),
                false,
            );
        }
        if let Some(props) = s["properties"].as_object() {
            for (name, prop) in props {
                self.node(
                    prop,
                    format!("{path}.properties[{name}]"),
                    child(cardinality),
                    false,
                );
            }
        }
        if s["items"].is_object() {
            self.node(
                &s["items"],
                format!("{path}.items"),
                child(cardinality),
                false,
            );
        }
        if let Some(rules) = s["x-kubernetes-validations"].as_array() {
            let embedded = resource_root || s["x-kubernetes-embedded-resource"] == true;
            match decl::of_schema(s, embedded, self.release.typing) {
                Some(d) => self.rules(rules, &Rc::new(d), &path, cardinality),
                None => self.errors.push(FieldError {
                    reason: "InternalError",
                    field: format!("{path}.x-kubernetes-validations"),
                    detail: "Internal error: internal error: failed to construct type information for x-kubernetes-validations rules: unable to convert structural schema to CEL declarations".into(),
                }),
            }
        }
    }

    fn rules(&mut self, rules: &[Value], node: &Rc<Decl>, path: &str, cardinality: Option<u64>) {
        // Without bounds above it, a node may repeat as often as its smallest JSON fits
        // into one request (`maxCardinality`).
        let times = cardinality.unwrap_or(MAX_REQUEST_SIZE_BYTES / (node.min_size + 1));
        for (i, rule) in rules.iter().enumerate() {
            let prefix = format!("{path}.x-kubernetes-validations[{i}]");
            let text = rule["rule"].as_str().unwrap_or_default();
            if text.trim().is_empty() {
                self.errors
                    .push(FieldError::required(format!("{prefix}.rule")));
                continue;
            }
            if let Some(cost) = self.expression(rule, Expression::Rule, node, &prefix) {
                self.observe(format!("{prefix}.rule"), cost.saturating_mul(times), "rule");
            }
            if rule["messageExpression"]
                .as_str()
                .is_some_and(|m| !m.trim().is_empty())
                && let Some(cost) = self.expression(rule, Expression::Message, node, &prefix)
            {
                // Messages are evaluated once per failure: not multiplied.
                self.observe(
                    format!("{prefix}.messageExpression"),
                    cost,
                    "messageExpression",
                );
            }
        }
    }

    /// Checks one expression; its estimated cost (`Max`) when it compiles.
    fn expression(
        &mut self,
        rule: &Value,
        which: Expression,
        node: &Rc<Decl>,
        prefix: &str,
    ) -> Option<u64> {
        let (key, failed, wrong_type) = match which {
            Expression::Rule => (
                "rule",
                "compilation failed",
                "cel expression must evaluate to a bool",
            ),
            Expression::Message => (
                "messageExpression",
                "messageExpression compilation failed",
                "messageExpression must evaluate to a string",
            ),
        };
        let text = rule[key].as_str().unwrap_or_default();
        let checked = kube_cel::cel::Program::compile(text)
            .map_err(|e| vec![e.to_string()])
            .and_then(|program| estimate::estimate(program.expression(), node, self.release));
        let why = match checked {
            Err(messages) => {
                let errors: Vec<String> = messages
                    .iter()
                    .map(|m| format!("ERROR: <input>: {m}"))
                    .collect();
                format!("{failed}: {}", errors.join("\n"))
            }
            Ok(c) => {
                let wanted = match which {
                    Expression::Rule => matches!(c.ty, Ty::Bool | Ty::Dyn),
                    Expression::Message => matches!(c.ty, Ty::String | Ty::Dyn),
                };
                if wanted {
                    return Some(c.cost.max);
                }
                wrong_type.to_string()
            }
        };
        self.errors.push(FieldError {
            reason: "FieldValueInvalid",
            field: format!("{prefix}.{key}"),
            detail: format!("Invalid value: {}: {why}", render_rule(rule)),
        });
        None
    }

    fn observe(&mut self, field: String, cost: u64, what: &str) {
        if cost > PER_EXPRESSION_LIMIT {
            let name = format!("estimated {what} cost");
            self.errors.push(FieldError::forbidden(
                &field,
                cost_message(&name, cost, PER_EXPRESSION_LIMIT),
            ));
        }
        self.total = self.total.saturating_add(cost);
        if cost >= MOST_EXPENSIVE_FLOOR {
            self.expensive.push((field, cost));
        }
    }
}

/// `extractMaxElements`: how many children a node has per occurrence.
fn elements_per_parent(s: &Value) -> Option<u64> {
    let bound = |key: &str| s[key].as_i64().map(|n| n.max(0) as u64);
    match s["type"].as_str() {
        Some("array") => bound("maxItems"),
        Some("object") if s["additionalProperties"].is_object() => bound("maxProperties"),
        _ => Some(1),
    }
}

/// kube-apiserver's `getCostErrorMessage`.
fn cost_message(what: &str, cost: u64, limit: u64) -> String {
    let factor = cost as f64 / limit as f64;
    let factor = if factor > 100.0 {
        "more than 100x".to_string()
    } else if factor < 1.5 {
        format!("{factor:.6}x")
    } else {
        format!("{factor:.1}x")
    };
    format!(
        "{what} exceeds budget by factor of {factor} (try simplifying the rule, or adding maxItems, maxProperties, and maxLength where arrays, maps, and strings are declared)"
    )
}

/// A rule as Go prints kube-apiserver's internal `ValidationRule` struct (`%#v`), which is
/// how an invalid rule is shown.
fn render_rule(rule: &Value) -> String {
    let text = |key: &str| format!("{:?}", rule[key].as_str().unwrap_or_default());
    let pointer = |key: &str, ty: &str| match rule.get(key) {
        None | Some(Value::Null) => format!("(*{ty})(nil)"),
        Some(_) => format!("(*{ty})(0xc000010000)"),
    };
    format!(
        "apiextensions.ValidationRule{{Rule:{}, Message:{}, MessageExpression:{}, Reason:{}, FieldPath:{}, OptionalOldSelf:{}}}",
        text("rule"),
        text("message"),
        text("messageExpression"),
        pointer("reason", "apiextensions.FieldValueErrorReason"),
        text("fieldPath"),
        pointer("optionalOldSelf", "bool"),
    )
}
