//! Aggregated discovery (`Accept: application/json;g=apidiscovery.k8s.io;v=v2`): every
//! group, version and resource of `/api` or `/apis` in one `APIGroupDiscoveryList`, as
//! kube-apiserver serves it from 1.26 (v2beta1) and 1.30 (v2).

use serde_json::{Value, json};

use super::{subresources, verbs};
use crate::resources::Registry;

/// The discovery version a client asked for and the emulated release serves, if any.
pub fn negotiate(accept: &str, minor: u32) -> Option<&'static str> {
    accept.split(',').find_map(|part| {
        let p = part.replace(' ', "");
        if !p.contains("g=apidiscovery.k8s.io") || !p.contains("as=APIGroupDiscoveryList") {
            return None;
        }
        if p.contains("v=v2;") || p.ends_with("v=v2") {
            (minor >= 30).then_some("v2")
        } else if p.contains("v=v2beta1") {
            (minor >= 26).then_some("v2beta1")
        } else {
            None
        }
    })
}

pub fn content_type(version: &str) -> String {
    format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList")
}

/// `/api` (`core` true) or `/apis` as one APIGroupDiscoveryList.
pub fn document(registry: &Registry, core: bool, version: &str) -> Value {
    let mut groups: Vec<(String, Vec<String>)> = registry
        .groups()
        .into_iter()
        .filter(|(g, _)| g.is_empty() == core)
        .collect();
    // kube-apiserver lists groups by priority; built-in groups come before CRD groups.
    groups.sort_by_key(|(g, _)| registry.all().any(|t| &t.group == g && t.is_custom()));
    let items: Vec<Value> = groups
        .iter()
        .map(|(group, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| json!({"version": v, "resources": resources(registry, group, v), "freshness": "Current"}))
                .collect();
            json!({"metadata": {"name": group, "creationTimestamp": null}, "versions": versions})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": format!("apidiscovery.k8s.io/{version}"),
           "metadata": {}, "items": items})
}

fn resources(registry: &Registry, group: &str, version: &str) -> Vec<Value> {
    let mut types: Vec<_> = registry
        .all()
        .filter(|t| t.group == group && t.version == version)
        .collect();
    types.sort_by(|a, b| a.plural.cmp(&b.plural));
    types
        .into_iter()
        .map(|t| {
            let mut r = json!({
                "resource": t.plural,
                "responseKind": {"group": t.group, "version": t.version, "kind": t.kind},
                "scope": if t.namespaced { "Namespaced" } else { "Cluster" },
                "singularResource": t.singular,
                "verbs": verbs(t),
            });
            if !t.short_names.is_empty() {
                r["shortNames"] = json!(t.short_names);
            }
            if !t.categories.is_empty() {
                r["categories"] = json!(t.categories);
            }
            let subs: Vec<Value> = subresources(t)
                .map(|s| {
                    let (g, v) = if s.group.is_empty() && s.version.is_empty() {
                        (t.group.as_str(), t.version.as_str())
                    } else {
                        (s.group, s.version)
                    };
                    json!({"subresource": s.name,
                           "responseKind": {"group": g, "version": v, "kind": s.kind.unwrap_or(&t.kind)},
                           "verbs": s.verbs})
                })
                .collect();
            if !subs.is_empty() {
                r["subresources"] = json!(subs);
            }
            r
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_is_served_from_1_30_and_v2beta1_from_1_26() {
        let kube_rs = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(negotiate(kube_rs, 33), Some("v2"));
        assert_eq!(negotiate(kube_rs, 28), Some("v2beta1"));
        assert_eq!(negotiate(kube_rs, 25), None);
        assert_eq!(negotiate("application/json", 33), None);
    }

    #[test]
    fn resources_carry_scope_verbs_and_subresources() {
        let doc = document(&Registry::with_builtins(), false, "v2");
        let apps = doc["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["metadata"]["name"] == "apps")
            .unwrap();
        let deployments = apps["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "deployments")
            .unwrap();
        assert_eq!(deployments["scope"], "Namespaced");
        assert!(
            deployments["verbs"]
                .as_array()
                .unwrap()
                .contains(&json!("list"))
        );
        let scale = deployments["subresources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["subresource"] == "scale")
            .unwrap();
        assert_eq!(scale["responseKind"]["kind"], "Scale");
    }
}
