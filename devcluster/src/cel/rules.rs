//! The registration-time checks of `x-kubernetes-validations` across a whole schema, as
//! apiextensions-apiserver's `validation.go` and `cel_validation.go` make them: each
//! rule's estimated cost is multiplied by how often its schema node can occur in one
//! object (the product of the `maxItems`/`maxProperties` above it), checked against the
//! per-expression limit, and summed against the per-CRD limit.

use std::rc::Rc;

use serde_json::Value;

use super::decl::{self, Decl, MAX_REQUEST_SIZE_BYTES, Ty};
use super::estimate::{self, Checked, OldSelf, Release};
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
        schema_errors: Vec::new(),
        errors: Vec::new(),
        total: 0,
        expensive: Vec::new(),
    };
    walk.node(
        schema,
        Place {
            path: base.to_string(),
            cardinality: Some(1),
            resource_root: true,
            uncorrelatable: None,
        },
    );
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
    walk.schema_errors.extend(walk.errors);
    walk.schema_errors
}

struct Walk {
    release: Release,
    /// Errors of the rules' own fields, which kube-apiserver reports before any CEL error.
    schema_errors: Vec<FieldError>,
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

/// Where in the schema a node is, for the checks that depend on its ancestors.
struct Place<'a> {
    path: String,
    /// How often this node can occur in one object; `None` when a list or map above it
    /// has no bound.
    cardinality: Option<u64>,
    resource_root: bool,
    /// The list above this node whose items old and new objects cannot be paired in
    /// (any list but `x-kubernetes-list-type: map`): `oldSelf` means nothing below it.
    uncorrelatable: Option<&'a str>,
}

impl Walk {
    /// Checks a node's subtree, children first (kube-apiserver reports their rules before
    /// their parent's); whether the subtree is free of schema errors, without which
    /// kube-apiserver does not compile its rules.
    fn node(&mut self, s: &Value, at: Place<'_>) -> bool {
        let per_parent = elements_per_parent(s);
        let child_cardinality = match (at.cardinality, per_parent) {
            (Some(c), Some(n)) => Some(c.saturating_mul(n)),
            _ => None,
        };
        let child = |path: String, uncorrelatable| Place {
            path,
            cardinality: child_cardinality,
            resource_root: false,
            uncorrelatable,
        };
        let mut valid = true;
        if s["additionalProperties"].is_object() {
            let path = format!("{}.additionalProperties", at.path);
            valid &= self.node(&s["additionalProperties"], child(path, at.uncorrelatable));
        }
        if let Some(props) = s["properties"].as_object() {
            for (name, prop) in props {
                let path = format!("{}.properties[{name}]", at.path);
                valid &= self.node(prop, child(path, at.uncorrelatable));
            }
        }
        if s["items"].is_object() {
            let keyed = s["x-kubernetes-list-type"] == "map";
            let uncorrelatable = at.uncorrelatable.or((!keyed).then_some(at.path.as_str()));
            valid &= self.node(
                &s["items"],
                child(format!("{}.items", at.path), uncorrelatable),
            );
        }
        let Some(rules) = s["x-kubernetes-validations"].as_array() else {
            return valid;
        };
        let schema_errors: Vec<FieldError> = rules
            .iter()
            .enumerate()
            .flat_map(|(i, r)| {
                structural_errors(r, &format!("{}.x-kubernetes-validations[{i}]", at.path))
            })
            .collect();
        valid &= schema_errors.is_empty();
        self.schema_errors.extend(schema_errors);
        if !valid {
            return false;
        }
        let embedded = at.resource_root || s["x-kubernetes-embedded-resource"] == true;
        match decl::of_schema(s, embedded, self.release.typing) {
            Some(d) => self.rules(rules, &Rc::new(d), &at),
            None => self.errors.push(FieldError {
                reason: "InternalError",
                field: format!("{}.x-kubernetes-validations", at.path),
                detail: "Internal error: internal error: failed to construct type information for x-kubernetes-validations rules: unable to convert structural schema to CEL declarations".into(),
            }),
        }
        true
    }

    fn rules(&mut self, rules: &[Value], node: &Rc<Decl>, at: &Place<'_>) {
        // Without bounds above it, a node may repeat as often as its smallest JSON fits
        // into one request (`maxCardinality`).
        let times = at
            .cardinality
            .unwrap_or(MAX_REQUEST_SIZE_BYTES / (node.min_size + 1));
        for (i, rule) in rules.iter().enumerate() {
            let prefix = format!("{}.x-kubernetes-validations[{i}]", at.path);
            let old_self = if rule["optionalOldSelf"] == true {
                OldSelf::Optional
            } else {
                OldSelf::Plain
            };
            // A rule that does not compile is reported alone (its message is not checked).
            let Some(checked) = self.expression(rule, Expression::Rule, node, old_self, &prefix)
            else {
                continue;
            };
            self.observe(
                format!("{prefix}.rule"),
                checked.cost.max.saturating_mul(times),
                "rule",
            );
            if rule["messageExpression"]
                .as_str()
                .is_some_and(|m| !m.trim().is_empty())
                && let Some(message) =
                    self.expression(rule, Expression::Message, node, old_self, &prefix)
            {
                // Messages are evaluated once per failure: not multiplied.
                self.observe(
                    format!("{prefix}.messageExpression"),
                    message.cost.max,
                    "messageExpression",
                );
            }
            match (checked.uses_old_self, at.uncorrelatable) {
                (true, Some(list)) => self.errors.push(FieldError::invalid(
                    format!("{prefix}.rule"),
                    &rule["rule"],
                    format!("oldSelf cannot be used on the uncorrelatable portion of the schema within {list}"),
                )),
                (false, _) if !rule["optionalOldSelf"].is_null() => {
                    self.errors.push(FieldError::invalid(
                        format!("{prefix}.optionalOldSelf"),
                        &rule["optionalOldSelf"],
                        "may not be set if oldSelf is not used in rule",
                    ))
                }
                _ => {}
            }
        }
    }

    /// Checks one expression; what checking found when it compiles and yields the type
    /// kube-apiserver requires (exactly `bool` for a rule, `string` for a message).
    fn expression(
        &mut self,
        rule: &Value,
        which: Expression,
        node: &Rc<Decl>,
        old_self: OldSelf,
        prefix: &str,
    ) -> Option<Checked> {
        let (key, failed, wrong_type, wanted) = match which {
            Expression::Rule => (
                "rule",
                "compilation failed",
                "cel expression must evaluate to a bool",
                Ty::Bool,
            ),
            Expression::Message => (
                "messageExpression",
                "messageExpression compilation failed",
                "messageExpression must evaluate to a string",
                Ty::String,
            ),
        };
        let text = rule[key].as_str().unwrap_or_default();
        let parsed = kube_cel::cel::parser::Parser::new()
            .enable_optional_syntax(self.release.libraries >= 28)
            .parse(text)
            .map_err(|e| vec![e.to_string()]);
        let checked =
            parsed.and_then(|expr| estimate::estimate(&expr, node, old_self, self.release));
        let why = match checked {
            Err(messages) => {
                let errors: Vec<String> = messages
                    .iter()
                    .map(|m| format!("ERROR: <input>: {m}"))
                    .collect();
                format!("{failed}: {}", errors.join("\n"))
            }
            Ok(c) if std::mem::discriminant(&c.ty) == std::mem::discriminant(&wanted) => {
                return Some(c);
            }
            Ok(_) => wrong_type.to_string(),
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

/// What kube-apiserver checks of a rule's fields before compiling anything.
fn structural_errors(rule: &Value, prefix: &str) -> Vec<FieldError> {
    let text = |key: &str| rule[key].as_str().unwrap_or_default();
    let (rule_text, message, message_expression) =
        (text("rule"), text("message"), text("messageExpression"));
    let mut errors = Vec::new();
    let required = |field: &str, why: &str| FieldError {
        reason: "FieldValueRequired",
        field: format!("{prefix}.{field}"),
        detail: format!("Required value: {why}"),
    };
    if rule_text.trim().is_empty() {
        errors.push(required("rule", "rule is not specified"));
    } else if !message.is_empty() && message.trim().is_empty() {
        errors.push(FieldError::invalid(
            format!("{prefix}.message"),
            &rule["message"],
            "message must be non-empty if specified",
        ));
    } else if message.trim().contains('\n') {
        errors.push(FieldError::invalid(
            format!("{prefix}.message"),
            &rule["message"],
            "message must not contain line breaks",
        ));
    } else if rule_text.trim().contains('\n')
        && message.trim().is_empty()
        && message_expression.trim().is_empty()
    {
        errors.push(required(
            "message",
            "message must be specified if rule contains line breaks",
        ));
    }
    if !message_expression.is_empty() && message_expression.trim().is_empty() {
        errors.push(required(
            "messageExpression",
            "messageExpression must be non-empty if specified",
        ));
    }
    const REASONS: [&str; 4] = [
        "FieldValueDuplicate",
        "FieldValueForbidden",
        "FieldValueInvalid",
        "FieldValueRequired",
    ];
    if let Some(reason) = rule["reason"].as_str()
        && !REASONS.contains(&reason)
    {
        errors.push(FieldError {
            reason: "FieldValueNotSupported",
            field: format!("{prefix}.reason"),
            detail: format!(
                "Unsupported value: {reason:?}: supported values: {}",
                REASONS.map(|r| format!("{r:?}")).join(", ")
            ),
        });
    }
    errors
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
