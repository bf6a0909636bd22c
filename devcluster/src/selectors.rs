//! Label and field selectors as list and watch requests send them.

use serde_json::Value;

use super::resources::ResourceType;

#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Exists(String),
    NotExists(String),
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    GreaterThan(String, i64),
    LessThan(String, i64),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector(Vec<Requirement>);

/// Splits on commas that are not inside parentheses.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn parse_set(rest: &str) -> Result<Vec<String>, String> {
    let inner = rest
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("expected a parenthesised set of values, got {rest:?}"))?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

impl LabelSelector {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for part in split_top_level(s) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let req = if let Some(key) = part.strip_prefix('!') {
                Requirement::NotExists(key.trim().to_string())
            } else if let Some((k, v)) = part.split_once("!=") {
                Requirement::NotEquals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once("==") {
                Requirement::Equals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once('=') {
                Requirement::Equals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once(" notin ") {
                Requirement::NotIn(k.trim().into(), parse_set(v)?)
            } else if let Some((k, v)) = part.split_once(" in ") {
                Requirement::In(k.trim().into(), parse_set(v)?)
            } else if let Some((k, v)) = part.split_once('>') {
                Requirement::GreaterThan(k.trim().into(), parse_int(v)?)
            } else if let Some((k, v)) = part.split_once('<') {
                Requirement::LessThan(k.trim().into(), parse_int(v)?)
            } else if part.contains(char::is_whitespace) || part.contains('(') {
                return Err(format!("unable to parse requirement: {part:?}"));
            } else {
                Requirement::Exists(part.to_string())
            };
            reqs.push(req);
        }
        Ok(LabelSelector(reqs))
    }

    /// A structured selector (`matchLabels`, `matchExpressions`), as objects carry them.
    pub fn from_object(selector: &Value) -> Self {
        let mut reqs: Vec<Requirement> = selector
            .get("matchLabels")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(k, v)| Requirement::Equals(k.clone(), v.as_str().unwrap_or_default().into()))
            .collect();
        for e in selector
            .get("matchExpressions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let key = e["key"].as_str().unwrap_or_default().to_string();
            let values: Vec<String> = e["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect();
            reqs.push(match e["operator"].as_str().unwrap_or_default() {
                "In" => Requirement::In(key, values),
                "NotIn" => Requirement::NotIn(key, values),
                "Exists" => Requirement::Exists(key),
                _ => Requirement::NotExists(key),
            });
        }
        LabelSelector(reqs)
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
            Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
            Requirement::GreaterThan(k, n) => get(k)
                .and_then(|x| x.parse::<i64>().ok())
                .is_some_and(|x| x > *n),
            Requirement::LessThan(k, n) => get(k)
                .and_then(|x| x.parse::<i64>().ok())
                .is_some_and(|x| x < *n),
        })
    }
}

fn parse_int(v: &str) -> Result<i64, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("for 'gt', 'lt' operators, the value must be an integer: {v:?}"))
}

#[derive(Debug, Clone, Default)]
pub struct FieldSelector(Vec<(String, bool, String)>);

/// Where a selectable field lives in the object, per kind (kube-apiserver's field label
/// conversion functions).
fn field_pointer(rt: &ResourceType, field: &str) -> Option<String> {
    match field {
        "metadata.name" => return Some("/metadata/name".into()),
        "metadata.namespace" => return Some("/metadata/namespace".into()),
        _ => {}
    }
    let allowed: &[&str] = match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Event") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        ("events.k8s.io", "Event") => &[
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "regarding.apiVersion",
            "regarding.resourceVersion",
            "regarding.fieldPath",
            "reason",
            "reportingController",
            "type",
        ],
        ("", "Secret") => &["type"],
        ("", "Namespace") => &["status.phase"],
        ("", "Node") => &["spec.unschedulable"],
        ("", "Pod") => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        ("batch", "Job") => &["status.successful"],
        ("apps", "ReplicaSet") => &["status.replicas"],
        ("certificates.k8s.io", "CertificateSigningRequest") => &["spec.signerName"],
        _ => &[],
    };
    if !allowed.contains(&field) {
        return None;
    }
    let field = if field == "source" {
        "source.component"
    } else {
        field
    };
    Some(format!("/{}", field.replace('.', "/")))
}

impl FieldSelector {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn parse(rt: &ResourceType, s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, equal, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, true, v)
            } else {
                return Err(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                ));
            };
            let ptr = field_pointer(rt, field.trim())
                .ok_or_else(|| format!("field label not supported: {}", field.trim()))?;
            reqs.push((ptr, equal, value.trim().to_string()));
        }
        Ok(FieldSelector(reqs))
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(ptr, equal, value)| {
            // Selectable fields are strings; booleans and numbers are formatted, and an
            // unset boolean is false (as Go's zero value).
            let actual = match obj.pointer(ptr) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Bool(b)) => b.to_string(),
                Some(Value::Number(n)) => n.to_string(),
                _ if ptr.ends_with("/unschedulable") || ptr.ends_with("/hostNetwork") => {
                    "false".into()
                }
                _ => String::new(),
            };
            (actual == *value) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(labels: Value) -> Value {
        json!({"metadata": {"name": "n", "labels": labels}})
    }

    #[test]
    fn label_selector_operators() {
        let o = obj(json!({"app": "shop", "tier": "web", "n": "5"}));
        let cases = [
            ("app=shop", true),
            ("app==shop", true),
            ("app!=shop", false),
            ("app", true),
            ("!app", false),
            ("!missing", true),
            ("app in (shop,bank)", true),
            ("app notin (shop,bank)", false),
            ("missing notin (x)", true),
            ("app=shop,tier=db", false),
            ("app in (shop, bank),tier", true),
            ("n>4", true),
            ("n<4", false),
            ("", true),
        ];
        for (sel, want) in cases {
            assert_eq!(
                LabelSelector::parse(sel).unwrap().matches(&o),
                want,
                "{sel}"
            );
        }
        assert!(LabelSelector::parse("app in shop").is_err());
    }

    #[test]
    fn field_selectors_are_checked_per_kind() {
        let registry = super::super::resources::Registry::with_builtins();
        let events = registry.get("", "v1", "events").unwrap();
        let secrets = registry.get("", "v1", "secrets").unwrap();
        let ev = json!({"metadata": {"name": "e", "namespace": "d"},
            "involvedObject": {"kind": "ApiKey", "name": "k", "uid": "u1"}});
        let sel = FieldSelector::parse(
            &events,
            "involvedObject.kind=ApiKey,involvedObject.name=k,involvedObject.namespace=,involvedObject.uid=u1",
        )
        .unwrap();
        assert!(sel.matches(&ev));
        assert!(
            !FieldSelector::parse(&events, "metadata.name!=e")
                .unwrap()
                .matches(&ev)
        );
        let err = FieldSelector::parse(&secrets, "involvedObject.name=k").unwrap_err();
        assert_eq!(err, "field label not supported: involvedObject.name");
    }
}
