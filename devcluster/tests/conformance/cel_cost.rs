//! What kube-apiserver refuses when a CRD is registered: CEL rules that do not type-check,
//! and rules whose estimated cost exceeds the per-expression or per-CRD budget.
//!
//! Expectations come from kube-apiserver itself:
//! - limits and messages: apiextensions-apiserver `pkg/apis/apiextensions/validation/
//!   validation.go` (`StaticEstimatedCostLimit` = 10,000,000, `StaticEstimatedCRDCostLimit`
//!   = 100,000,000, `getCostErrorMessage`, the "contributed to ..." causes);
//! - cardinality: `cel_validation.go` (`extractMaxElements`) and `pkg/apiserver/schema/cel/
//!   compilation.go` (`maxCardinality`: a request of 3 MiB divided by the node's smallest
//!   JSON plus a comma);
//! - sizes: k8s.io/apiserver `pkg/cel/common/schemas.go` (`maxLength` × 4 bytes, unbounded
//!   strings and lists sized to fill a request);
//! - costs: cel-go `checker/cost.go`;
//! - the documented example: kubernetes.io "Extend the Kubernetes API with
//!   CustomResourceDefinitions", section "Resource use by validation functions" (a list of
//!   strings checked with `contains` is refused unbounded, accepted with maxItems/maxLength).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

use crate::support::*;

const SUGGESTION: &str = "(try simplifying the rule, or adding maxItems, maxProperties, and maxLength where arrays, maps, and strings are declared)";

fn crd(plural: &str, schema: Value) -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.cost.example.dev")},
        "spec": {
            "group": "cost.example.dev",
            "scope": "Namespaced",
            "names": {"plural": plural, "kind": "Thing"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": schema}}}}]
        }
    }))
    .unwrap()
}

fn strings(max_items: Option<u64>, max_length: Option<u64>) -> Value {
    let mut items = json!({"type": "string"});
    if let Some(n) = max_length {
        items["maxLength"] = json!(n);
    }
    let mut list = json!({"type": "array", "items": items});
    if let Some(n) = max_items {
        list["maxItems"] = json!(n);
    }
    list
}

fn with_rules(mut schema: Value, rules: &[&str]) -> Value {
    schema["x-kubernetes-validations"] = rules.iter().map(|r| json!({"rule": r})).collect();
    schema
}

/// Where kube-apiserver reports a rule of `spec` (a CRD with one version).
fn spec_path(rest: &str) -> String {
    format!("spec.validation.openAPIV3Schema.properties[spec]{rest}")
}

enum Expect {
    Accepted,
    /// (field, the cause's message) for each cause, in any order.
    Refused(Vec<(String, String)>),
}

fn sorted(mut causes: Vec<(String, String)>) -> Vec<(String, String)> {
    causes.sort();
    causes
}

/// One rule far over its limit: refused on its own, and it alone exceeds the total.
fn far_over_budget(rule: &str) -> Vec<(String, String)> {
    vec![
        (spec_path(rule), over_budget("estimated rule cost", "more than 100x")),
        (
            spec_path(rule),
            "Forbidden: contributed to estimated rule cost total exceeding cost limit for entire OpenAPIv3 schema".into(),
        ),
        (
            "spec.validation.openAPIV3Schema".into(),
            over_budget(
                "x-kubernetes-validations estimated rule cost total for entire OpenAPIv3 schema",
                "more than 100x",
            ),
        ),
    ]
}

fn over_budget(what: &str, factor: &str) -> String {
    format!("Forbidden: {what} exceeds budget by factor of {factor} {SUGGESTION}")
}

async fn register(
    t: &TestCluster,
    plural: &str,
    schema: Value,
) -> Result<(), Vec<(String, String)>> {
    let api = Api::<CustomResourceDefinition>::all(t.client.clone());
    match api
        .create(&PostParams::default(), &crd(plural, schema))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{}", status.message);
            let mut causes: Vec<(String, String)> = status
                .details
                .expect("details")
                .causes
                .into_iter()
                .map(|c| (c.field, c.message))
                .collect();
            causes.sort();
            Err(causes)
        }
        Err(e) => panic!("unexpected error: {e}"),
    }
}

#[tokio::test]
async fn rule_costs_are_budgeted_as_kube_apiserver_budgets_them() {
    let t = cluster().await;
    let per_item_rule = |list: Value| {
        let mut list = list;
        list["items"] = with_rules(list["items"].clone(), &["self.contains('a string')"]);
        json!({"type": "object", "properties": {"foo": list}})
    };
    let ints = json!({"type": "array", "items": {"type": "integer"}});
    let cases: Vec<(&str, Value, Expect)> = vec![
        (
            // The documented example, refused: the list and its strings fill a request.
            "docs-unbounded",
            with_rules(
                json!({"type": "object", "properties": {"foo": strings(None, None)}}),
                &["self.foo.all(x, x.contains('a string'))"],
            ),
            Expect::Refused(far_over_budget(".x-kubernetes-validations[0].rule")),
        ),
        (
            "docs-bounded",
            with_rules(
                json!({"type": "object", "properties": {"foo": strings(Some(25), Some(10))}}),
                &["self.foo.all(x, x.contains('a string'))"],
            ),
            Expect::Accepted,
        ),
        (
            // A rule on each item of an unbounded list runs once per possible item.
            "per-item-unbounded",
            per_item_rule(strings(None, None)),
            Expect::Refused(far_over_budget(
                ".properties[foo].items.x-kubernetes-validations[0].rule",
            )),
        ),
        (
            "per-item-bounded",
            per_item_rule(strings(Some(32), Some(128))),
            Expect::Accepted,
        ),
        (
            // Linear in an unbounded list of integers: 7,864,317, just under the limit.
            "linear-unbounded-ints",
            with_rules(ints.clone(), &["self.all(x, x > 0)"]),
            Expect::Accepted,
        ),
        (
            // Quadratic in the same list: far over.
            "quadratic-unbounded-ints",
            with_rules(ints.clone(), &["self.all(x, self.all(y, x <= y || x > y))"]),
            Expect::Refused(far_over_budget(".x-kubernetes-validations[0].rule")),
        ),
        (
            "quadratic-bounded-ints",
            with_rules(
                json!({"type": "array", "maxItems": 100, "items": {"type": "integer"}}),
                &["self.all(x, self.all(y, x <= y || x > y))"],
            ),
            Expect::Accepted,
        ),
        (
            // Thirteen rules of 7,864,317 each: every one within its own limit, together
            // 102,236,121, over the per-CRD limit of 100,000,000.
            "total-over-budget",
            with_rules(ints.clone(), &["self.all(x, x > 0)"; 13]),
            Expect::Refused({
                let mut causes: Vec<(String, String)> = (0..4)
                    .map(|i| {
                        (
                            spec_path(&format!(".x-kubernetes-validations[{i}].rule")),
                            "Forbidden: contributed to estimated rule cost total exceeding cost limit for entire OpenAPIv3 schema".to_string(),
                        )
                    })
                    .collect();
                causes.push((
                    "spec.validation.openAPIV3Schema".into(),
                    over_budget(
                        "x-kubernetes-validations estimated rule cost total for entire OpenAPIv3 schema",
                        "1.022361x",
                    ),
                ));
                causes
            }),
        ),
        (
            "twelve-within-total",
            with_rules(ints, &["self.all(x, x > 0)"; 12]),
            Expect::Accepted,
        ),
    ];
    for (plural, schema, expect) in cases {
        let got = register(&t, plural, schema).await;
        match expect {
            Expect::Accepted => assert!(got.is_ok(), "{plural}: refused: {got:?}"),
            Expect::Refused(want) => assert_eq!(got, Err(sorted(want)), "{plural}"),
        }
    }
}

#[tokio::test]
async fn rules_that_do_not_type_check_are_refused() {
    let t = cluster().await;
    let spec = |rule: &str| {
        with_rules(
            json!({"type": "object", "properties": {
                "count": {"type": "integer"}, "name": {"type": "string", "maxLength": 10}}}),
            &[rule],
        )
    };
    let invalid = |rule: &str, why: &str| {
        format!(
            "Invalid value: apiextensions.ValidationRule{{Rule:{rule:?}, Message:\"\", MessageExpression:\"\", Reason:(*apiextensions.FieldValueErrorReason)(nil), FieldPath:\"\", OptionalOldSelf:(*bool)(nil)}}: {why}"
        )
    };
    let field = spec_path(".x-kubernetes-validations[0].rule");
    let cases = [
        // cel-go declares `_==_` as (A, A) -> bool: int and uint do not unify.
        (
            "self.count == 1u",
            "compilation failed: ERROR: <input>: found no matching overload for '_==_' applied to '(int, uint)'",
        ),
        (
            "self.name == 1",
            "compilation failed: ERROR: <input>: found no matching overload for '_==_' applied to '(string, int)'",
        ),
        (
            "self.name < 3",
            "compilation failed: ERROR: <input>: found no matching overload for '_<_' applied to '(string, int)'",
        ),
        (
            "self.nmae == 'x'",
            "compilation failed: ERROR: <input>: undefined field 'nmae'",
        ),
        (
            "has(self.colour)",
            "compilation failed: ERROR: <input>: undefined field 'colour'",
        ),
        (
            "size(self.count) > 0",
            "compilation failed: ERROR: <input>: found no matching overload for 'size' applied to '(int)'",
        ),
        ("self.count + 1", "cel expression must evaluate to a bool"),
    ];
    for (i, (rule, why)) in cases.into_iter().enumerate() {
        let got = register(&t, &format!("typed{i}"), spec(rule)).await;
        assert_eq!(
            got,
            Err(vec![(field.clone(), invalid(rule, why))]),
            "{rule}"
        );
    }
    // A message expression must yield a string.
    let mut with_message = spec("self.count > 0");
    with_message["x-kubernetes-validations"][0]["messageExpression"] = json!("self.count");
    let message_field = spec_path(".x-kubernetes-validations[0].messageExpression");
    let got = register(&t, "message", with_message).await.unwrap_err();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, message_field);
    assert!(
        got[0]
            .1
            .ends_with("}: messageExpression must evaluate to a string"),
        "{}",
        got[0].1
    );
    // What does type-check is accepted: cross-type numeric comparison is enabled in
    // Kubernetes (from 1.28), and `dyn` defers checks to run time.
    for (i, rule) in [
        "self.count > 1.5",
        "self.count == 1",
        "dyn(self.count) == 1u",
        "self.name.startsWith('a')",
    ]
    .into_iter()
    .enumerate()
    {
        let got = register(&t, &format!("ok{i}"), spec(rule)).await;
        assert!(got.is_ok(), "{rule}: {got:?}");
    }
}

#[tokio::test]
async fn the_reported_release_decides_how_rules_are_priced() {
    // kube-apiserver 1.24 (cel-go 0.10) sized the result of `has()` as unbounded, so
    // comparing two with `!=` was refused; later releases size scalars as 1.
    let xor = with_rules(
        json!({"type": "object", "properties": {"a": {"type": "string", "maxLength": 8}, "b": {"type": "string", "maxLength": 8}}}),
        &["has(self.a) != has(self.b)"],
    );
    let old = cluster_with(Config {
        kubernetes_minor: 24,
        ..test_config()
    })
    .await;
    let version = old.client.apiserver_version().await.unwrap();
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        ("1", "24")
    );
    assert_eq!(
        register(&old, "xor", xor.clone()).await,
        Err(sorted(far_over_budget(".x-kubernetes-validations[0].rule")))
    );
    let counted = with_rules(
        xor.clone(),
        &["(has(self.a) ? 1 : 0) + (has(self.b) ? 1 : 0) == 1"],
    );
    assert_eq!(register(&old, "counted", counted).await, Ok(()));
    // 1.24 compares numbers of one type only.
    let mixed = with_rules(
        json!({"type": "object", "properties": {"n": {"type": "integer"}}}),
        &["self.n > 1.5"],
    );
    let refused = register(&old, "mixed", mixed.clone()).await.unwrap_err();
    assert!(
        refused[0].1.ends_with(
            "compilation failed: ERROR: <input>: found no matching overload for '_>_' applied to '(int, double)'"
        ),
        "{refused:?}"
    );
    let current = cluster().await;
    assert_eq!(
        current.client.apiserver_version().await.unwrap().minor,
        "33"
    );
    assert_eq!(register(&current, "xor", xor).await, Ok(()));
    assert_eq!(register(&current, "mixed", mixed).await, Ok(()));
    let unsupported = DevCluster::start(Config {
        kubernetes_minor: 23,
        ..test_config()
    })
    .await;
    assert!(
        unsupported.is_err(),
        "1.23 has no CRD validation rules to emulate"
    );
}

/// Corner cases where a first version differed from kube-apiserver (each worked out from
/// its sources: cel-go `checker/cost.go`, apiserver `library/cost.go`, `base.go`).
#[tokio::test]
async fn corner_cases_price_and_type_as_kube_apiserver_does() {
    let t = cluster().await;
    let containers = json!({"type": "object", "properties": {
        "image": {"type": "string"},
        "l": {"type": "array", "maxItems": 10, "items": {"type": "object", "properties": {
            "enabled": {"type": "boolean"}, "image": {"type": "string", "maxLength": 64}}}},
        "labels": {"type": "object", "maxProperties": 30, "additionalProperties": {"type": "string"}},
        "x": {"x-kubernetes-int-or-string": true}}});
    let accepted = [
        // An index into a list with no schema path is sized from the rule's own node.
        "self.image.split('/')[0].matches('^[a-z]+$')",
        // `in` a map is a lookup; the global `matches` costs 1.
        "'app' in self.labels",
        "matches(self.image, '^a+$')",
        // Namespaced library functions of the release.
        "sets.contains(['a'], ['a'])",
    ];
    for (i, rule) in accepted.into_iter().enumerate() {
        let got = register(
            &t,
            &format!("corner{i}"),
            with_rules(containers.clone(), &[rule]),
        )
        .await;
        assert!(got.is_ok(), "{rule}: {got:?}");
    }
    // The variable iterates a list without a path (a filter's result): its `image` is
    // looked up on the rule's node, which has none, so its size is unknown.
    let mut no_image = containers.clone();
    no_image["properties"]
        .as_object_mut()
        .unwrap()
        .remove("image");
    let got = register(
        &t,
        "unsized",
        with_rules(
            no_image,
            &["self.l.filter(c, c.enabled).all(c, c.image.contains(':'))"],
        ),
    )
    .await
    .unwrap_err();
    assert!(
        got.iter()
            .any(|(_, m)| m
                .contains("estimated rule cost exceeds budget by factor of more than 100x")),
        "{got:?}"
    );
    let refused = [
        // A rule must yield exactly bool: int-or-string is dyn.
        ("self.x", "cel expression must evaluate to a bool"),
        (
            "self.image.sort() == []",
            "undeclared reference to 'sort' (in container '')",
        ),
    ];
    for (i, (rule, why)) in refused.into_iter().enumerate() {
        let got = register(
            &t,
            &format!("refused{i}"),
            with_rules(containers.clone(), &[rule]),
        )
        .await
        .unwrap_err();
        assert!(got.iter().any(|(_, m)| m.contains(why)), "{rule}: {got:?}");
    }
    // Rule fields kube-apiserver checks before compiling anything.
    let mut lines = with_rules(
        containers.clone(),
        &["self.image != ''\n&& self.image != 'x'"],
    );
    let got = register(&t, "lines", lines.clone()).await.unwrap_err();
    assert_eq!(
        got,
        [(
            spec_path(".x-kubernetes-validations[0].message"),
            "Required value: message must be specified if rule contains line breaks".to_string()
        )]
    );
    lines["x-kubernetes-validations"][0]["message"] = json!("image must be set");
    assert_eq!(register(&t, "lines", lines).await, Ok(()));
    // oldSelf where old and new items cannot be paired (an atomic list), and
    // optionalOldSelf without oldSelf.
    let atomic = json!({"type": "object", "properties": {"l": {"type": "array", "maxItems": 5,
        "items": {"type": "object", "x-kubernetes-validations": [{"rule": "self.a == oldSelf.a"}],
            "properties": {"a": {"type": "string", "maxLength": 5}}}}}});
    let got = register(&t, "atomic", atomic).await.unwrap_err();
    assert!(
        got[0].1.contains("oldSelf cannot be used on the uncorrelatable portion of the schema within spec.validation.openAPIV3Schema.properties[spec].properties[l]"),
        "{got:?}"
    );
    let mut optional = with_rules(containers, &["self.image != ''"]);
    optional["x-kubernetes-validations"][0]["optionalOldSelf"] = json!(true);
    let got = register(&t, "optional", optional).await.unwrap_err();
    assert_eq!(
        got[0].0,
        spec_path(".x-kubernetes-validations[0].optionalOldSelf")
    );
    // Libraries arrive with releases: a 1.28 server compiles new rules with the 1.27 set.
    let old = cluster_with(Config {
        kubernetes_minor: 28,
        ..test_config()
    })
    .await;
    let quantity = with_rules(
        json!({"type": "object", "properties": {"mem": {"type": "string", "maxLength": 16}}}),
        &["quantity(self.mem).isLessThan(quantity('1Gi'))"],
    );
    let got = register(&old, "quantity", quantity.clone())
        .await
        .unwrap_err();
    assert!(
        got[0].1.contains("undeclared reference to 'quantity'"),
        "{got:?}"
    );
    assert_eq!(register(&t, "quantity", quantity).await, Ok(()));
}
