//! The comparisons each write makes of an object with its stored state: whether it
//! changes anything, and whether it changes the spec.

use serde_json::{Map, Value};

use crate::resources::ResourceType;

/// Whether two objects are equal in everything but metadata (and status, when it is a
/// subresource): a change there bumps `generation`.
pub fn same_spec(rt: &ResourceType, a: &Value, b: &Value) -> bool {
    let skipped: &[&str] = if rt.status_subresource {
        &["metadata", "apiVersion", "kind", "status"]
    } else {
        &["metadata", "apiVersion", "kind"]
    };
    equal_but(a, b, skipped, |_, x, y| x == y)
}

/// Whether a write changes nothing: everything but the resourceVersion and ownership
/// timestamps is equal (a change of who owns what alone is still a write).
pub fn same_but_volatile_metadata(a: &Value, b: &Value) -> bool {
    equal_but(a, b, &[], |field, x, y| match field {
        "metadata" => equal_but(x, y, &["resourceVersion"], |field, x, y| {
            match (field, x.as_array(), y.as_array()) {
                ("managedFields", Some(xs), Some(ys)) => {
                    xs.len() == ys.len()
                        && xs
                            .iter()
                            .zip(ys)
                            .all(|(x, y)| equal_but(x, y, &["time"], |_, x, y| x == y))
                }
                _ => x == y,
            }
        }),
        _ => x == y,
    })
}

/// Whether two JSON objects have the same fields, but for `skipped`, with `equal` values;
/// compared in place, as each write does several times (cloning them cost more than the
/// rest of the comparison).
fn equal_but(
    a: &Value,
    b: &Value,
    skipped: &[&str],
    equal: impl Fn(&str, &Value, &Value) -> bool,
) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    let kept =
        |o: &'_ Map<String, Value>| o.keys().filter(|k| !skipped.contains(&k.as_str())).count();
    kept(a) == kept(b)
        && a.iter()
            .filter(|(k, _)| !skipped.contains(&k.as_str()))
            .all(|(k, x)| b.get(k).is_some_and(|y| equal(k, x, y)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resource_version_and_ownership_times_are_volatile() {
        let a = json!({"metadata": {"name": "a", "resourceVersion": "1",
            "managedFields": [{"manager": "m", "time": "2026-01-01T00:00:00Z"}]}, "spec": {"x": 1}});
        let b = json!({"metadata": {"name": "a", "resourceVersion": "2",
            "managedFields": [{"manager": "m", "time": "2026-02-01T00:00:00Z"}]}, "spec": {"x": 1}});
        assert!(same_but_volatile_metadata(&a, &b));
        let mut owner = b.clone();
        owner["metadata"]["managedFields"][0]["manager"] = json!("n");
        assert!(!same_but_volatile_metadata(&a, &owner));
        let mut label = b.clone();
        label["metadata"]["labels"] = json!({"l": "v"});
        assert!(!same_but_volatile_metadata(&a, &label));
        let mut spec = b.clone();
        spec["spec"]["x"] = json!(2);
        assert!(!same_but_volatile_metadata(&a, &spec));
        let mut extra = b;
        extra["status"] = json!({});
        assert!(!same_but_volatile_metadata(&a, &extra));
    }
}
