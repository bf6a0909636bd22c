//! The estimator against kube-apiserver's own expectations.

use serde_json::json;

use std::rc::Rc;

use super::decl;
use super::estimate::{OldSelf, Release, estimate};
use super::range::Range;

fn cost(schema: serde_json::Value, rule: &str, minor: u32) -> Result<Range, Vec<String>> {
    let release = Release::of_minor(minor);
    let node = Rc::new(decl::of_schema(&schema, false, release.typing).unwrap());
    let program = kube_cel::cel::Program::compile(rule).unwrap();
    estimate(program.expression(), &node, OldSelf::Plain, release).map(|c| c.cost)
}

fn max_cost(schema: serde_json::Value, rule: &str) -> u64 {
    cost(schema, rule, 33).unwrap().max
}

fn list(items: serde_json::Value) -> serde_json::Value {
    json!({"type": "array", "items": items})
}

fn map(values: serde_json::Value) -> serde_json::Value {
    json!({"type": "object", "additionalProperties": values})
}

/// kube-apiserver's own expectations (apiextensions-apiserver `pkg/apiserver/schema/
/// cel/compilation_test.go`, `TestCostEstimation`): the rule's estimated cost before
/// cardinality.
#[test]
fn costs_match_kube_apiservers_own_test_vectors() {
    let number = json!({"type": "number"});
    let string = json!({"type": "string"});
    let string_of = |n: u64| json!({"type": "string", "maxLength": n});
    let format = |f: &str| json!({"type": "string", "format": f});
    let nested = |depth: usize| {
        let (mut rule, mut close) = (String::new(), String::new());
        for v in ["x", "y", "z"].iter().take(depth) {
            rule.push_str(&format!("self.all({v}, "));
            close.push(')');
        }
        format!("{rule}true{close}")
    };
    let cases: Vec<(serde_json::Value, String, u64)> = vec![
        (list(number.clone()), "self.all(x, true)".into(), 4_718_591),
        (
            json!({"type": "array", "maxItems": 10, "items": number}),
            "self.all(x, true)".into(),
            32,
        ),
        (list(string.clone()), "self.all(x, true)".into(), 3_145_727),
        (
            list(json!({"type": "boolean"})),
            "self.all(x, true)".into(),
            1_887_437,
        ),
        (
            list(format("duration")),
            "self.all(x, true)".into(),
            2_359_295,
        ),
        (list(format("date")), "self.all(x, true)".into(), 725_936),
        (
            list(format("date-time")),
            "self.all(x, true)".into(),
            428_963,
        ),
        (map(number.clone()), "self.all(x, true)".into(), 1_348_169),
        (map(string.clone()), "self.all(x, true)".into(), 1_179_647),
        (
            map(format("duration")),
            "self.all(x, true)".into(),
            1_048_577,
        ),
        (string.clone(), "self.contains('test')".into(), 314_574),
        (string_of(10), "self.contains('test')".into(), 5),
        (string.clone(), "self.startsWith('test')".into(), 2),
        (
            string.clone(),
            "size(self + \"hello\") > size(\"hello\")".into(),
            314_578,
        ),
        (list(string.clone()), "self[1] == self[1]".into(), 314_577),
        (list(number.clone()), "self[1] == 0.0".into(), 2),
        (string_of(0), "self == \"x\"".into(), 1),
        (string.clone(), "self == \"x\"".into(), 2),
        (string.clone(), "self.matches(\"x\")".into(), 314_574),
        (
            string.clone(),
            "\"\".matches(\"(((((((((())))))))))[0-9]\")".into(),
            7,
        ),
        (
            map(string.clone()),
            "self.all(x, x.contains(self[x]))".into(),
            2_752_507,
        ),
        (
            list(map(number.clone())),
            "self.all(x, x.y == 25.2)".into(),
            6_291_452,
        ),
        (
            map(json!({"type": "integer"})),
            "oldSelf.size() == self.size()".into(),
            5,
        ),
        (
            map(format("date-time")),
            "self[\"a\"] == self[\"b\"]".into(),
            8,
        ),
        (
            json!({"type": "string", "enum": ["A", "B", "C", "LongValue"]}),
            "self.contains('A')".into(),
            2,
        ),
        (
            json!({"type": "string", "maxLength": 1000, "enum": ["A", "B", "C", "LongValue"]}),
            "self.contains('A')".into(),
            401,
        ),
        (
            string.clone(),
            "self.lowerAscii() == 'lower!'".into(),
            314_575,
        ),
        (string.clone(), "self.find('[0-9]+') == ''".into(), 629_147),
        (
            list(string.clone()),
            "self.join(' ') == 'aa bb'".into(),
            329_853_068_905,
        ),
        (
            list(string.clone()),
            "self.isSorted() == true".into(),
            329_854_432_052,
        ),
        (
            json!({"type": "object", "properties": {"str": string,
                "before": string_of(2), "after": string_of(4)}}),
            "self.str.replace(self.before, self.after) == 'does not matter'".into(),
            629_154,
        ),
        (
            json!({"type": "object", "properties": {"str": string, "separator": string}}),
            "self.str.split(self.separator) == []".into(),
            629_160,
        ),
        (
            json!({"type": "array", "maxItems": 10, "items": number}),
            nested(2),
            352,
        ),
        (
            json!({"type": "array", "maxItems": 10, "items": number}),
            nested(3),
            3_552,
        ),
    ];
    for (schema, rule, want) in cases {
        assert_eq!(max_cost(schema, &rule), want, "{rule}");
    }
}

#[test]
fn presence_tests_cost_their_operand_from_1_29() {
    let object =
        json!({"type": "object", "properties": {"a": {"type": "string", "maxLength": 10}}});
    assert_eq!(cost(object.clone(), "has(self.a)", 33).unwrap().max, 1);
    assert_eq!(cost(object, "has(self.a)", 28).unwrap().max, 0);
}

#[test]
fn equality_of_presence_tests_is_unbounded_before_1_25() {
    let object = json!({"type": "object", "properties": {
        "a": {"type": "string", "maxLength": 1}, "b": {"type": "string", "maxLength": 1}}});
    let rule = "has(self.a) != has(self.b)";
    assert!(cost(object.clone(), rule, 24).unwrap().max > 1_000_000_000_000);
    // Each `has()` costs its `self` from 1.29 on; comparing two scalars costs 1.
    assert_eq!(cost(object.clone(), rule, 25).unwrap().max, 1);
    assert_eq!(cost(object, rule, 33).unwrap().max, 3);
}

#[test]
fn type_errors_are_reported_as_cel_go_words_them() {
    let object = json!({"type": "object", "properties": {
        "n": {"type": "integer"}, "list": {"type": "array", "maxItems": 2, "items": {"type": "string", "maxLength": 2}}}});
    let errors = |rule: &str| match cost(object.clone(), rule, 33) {
        Err(e) => e,
        other => panic!("{rule}: {other:?}"),
    };
    assert_eq!(
        errors("self.n == 'x'"),
        ["found no matching overload for '_==_' applied to '(int, string)'"]
    );
    assert_eq!(errors("self.nope"), ["undefined field 'nope'"]);
    assert_eq!(
        errors("x > 1"),
        ["undeclared reference to 'x' (in container '')"]
    );
    assert_eq!(
        errors("self.n.all(x, x)"),
        [
            "expression of type 'int' cannot be range of a comprehension (must be list, map, or dynamic)"
        ]
    );
    assert_eq!(
        errors("self.list.exists(x, x + 1 == 2)"),
        ["found no matching overload for '_+_' applied to '(string, int)'"]
    );
    assert_eq!(
        errors("'a' + 1"),
        ["found no matching overload for '_+_' applied to '(string, int)'"]
    );
    assert!(
        cost(
            object,
            "self.list.all(x, x.startsWith('a')) && self.n >= 0",
            33
        )
        .is_ok()
    );
}
