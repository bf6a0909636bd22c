//! Discovery documents (`/api`, `/apis`, `/apis/{group}/{version}`), `/version`, and the
//! OpenAPI documents kubectl reads before `apply` and `edit`.

pub mod aggregated;

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use serde_json::{Map, Value, json};

use super::resources::{Registry, ResourceType, SubresourceInfo};

const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// The verbs a resource supports, as discovery lists them.
pub fn verbs(t: &ResourceType) -> &'static [&'static str] {
    if t.review.is_some() {
        &["create"]
    } else if t.read_only {
        &["get", "list"]
    } else {
        VERBS
    }
}

/// Every subresource of `t`, `status` first.
pub fn subresources(t: &ResourceType) -> impl Iterator<Item = SubresourceInfo> + '_ {
    let status = t.status_subresource.then_some(SubresourceInfo {
        name: "status",
        group: "",
        version: "",
        kind: None,
        verbs: &["get", "patch", "update"],
    });
    status
        .into_iter()
        .chain(t.subresources.iter().map(|s| s.info()))
}

pub fn version(minor: u32) -> Value {
    json!({
        "major": "1",
        "minor": minor.to_string(),
        "gitVersion": format!("v1.{minor}.0-apikey-devcluster"),
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}

pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]
    })
}

fn group_json(name: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({"name": name, "versions": vs, "preferredVersion": vs[0]})
}

pub fn group_list(registry: &Registry) -> Value {
    let groups: Vec<Value> = registry
        .groups()
        .iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, vs)| group_json(g, vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn group(registry: &Registry, name: &str) -> Option<Value> {
    let groups = registry.groups();
    let vs = groups.get(name).filter(|_| !name.is_empty())?;
    let mut g = group_json(name, vs);
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    Some(g)
}

fn types_in<'a>(
    registry: &'a Registry,
    group: &str,
    version: &str,
) -> Vec<&'a std::sync::Arc<ResourceType>> {
    registry
        .all()
        .filter(|t| t.group == group && t.version == version)
        .collect()
}

pub fn resource_list(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let types = types_in(registry, group, version);
    if types.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for t in types {
        let mut r = json!({
            "name": t.plural,
            "singularName": t.singular,
            "namespaced": t.namespaced,
            "kind": t.kind,
            "verbs": verbs(t),
        });
        if !t.short_names.is_empty() {
            r["shortNames"] = json!(t.short_names);
        }
        if !t.categories.is_empty() {
            r["categories"] = json!(t.categories);
        }
        resources.push(r);
        for sub in subresources(t) {
            let mut r = json!({"name": format!("{}/{}", t.plural, sub.name), "singularName": "",
                "namespaced": t.namespaced, "kind": sub.kind.unwrap_or(&t.kind), "verbs": sub.verbs});
            if !sub.group.is_empty() || !sub.version.is_empty() {
                r["group"] = json!(sub.group);
                r["version"] = json!(sub.version);
            }
            resources.push(r);
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`: one entry per group-version. The hash changes whenever the served
/// resources change, so kubectl's cache never serves a stale document.
pub fn openapi_v3_index(registry: &Registry) -> Value {
    let mut gvs: BTreeMap<String, DefaultHasher> = BTreeMap::new();
    for t in registry.all() {
        let h = gvs.entry(gv_path(&t.group, &t.version)).or_default();
        (&t.plural, &t.kind, t.namespaced).hash(h);
        if let Some(s) = &t.schema {
            s.raw().to_string().hash(h);
        }
    }
    let paths: Map<String, Value> = gvs
        .into_iter()
        .map(|(p, h)| {
            let url = format!("/openapi/v3/{p}?hash={:016X}", h.finish());
            (p, json!({"serverRelativeURL": url}))
        })
        .collect();
    json!({"paths": paths})
}

fn query_param(name: &str) -> Value {
    json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}})
}

/// The OpenAPI v3 document of one group-version: every resource's item path with the
/// operations kubectl inspects (PATCH with `fieldValidation` tells kubectl to validate
/// server-side), plus the schemas of custom resources.
pub fn openapi_v3_document(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let types = types_in(registry, group, version);
    if types.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for t in types {
        let gvk = json!({"group": t.group, "version": t.version, "kind": t.kind});
        let prefix = format!("/{}", gv_path(&t.group, &t.version));
        let item = if t.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", t.plural)
        } else {
            format!("{prefix}/{}/{{name}}", t.plural)
        };
        let params = json!([
            query_param("dryRun"),
            query_param("fieldManager"),
            query_param("fieldValidation"),
            query_param("force")
        ]);
        let content = json!({
            "application/json-patch+json": {"schema": {}},
            "application/merge-patch+json": {"schema": {}},
            "application/apply-patch+yaml": {"schema": {}},
        });
        let op = |action: &str| {
            json!({"x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk,
                   "parameters": params, "responses": {"200": {"description": "OK"}}})
        };
        let mut patch = op("patch");
        patch["requestBody"] = json!({"content": content});
        paths.insert(
            item,
            json!({"get": op("get"), "put": op("put"), "patch": patch, "delete": op("delete")}),
        );
        if let Some(schema) = &t.schema {
            let mut s = schema.raw().clone();
            s["x-kubernetes-group-version-kind"] = json!([gvk]);
            let reversed: Vec<&str> = t.group.split('.').rev().collect();
            schemas.insert(
                format!("{}.{}.{}", reversed.join("."), t.version, t.kind),
                s,
            );
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}
