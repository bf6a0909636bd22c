//! The objects kube-apiserver creates when it starts: the system namespaces, the
//! `default/kubernetes` Service and its Endpoints, the bootstrap RBAC policy, one local
//! APIService per served group version, and the component statuses.

use std::net::SocketAddr;

use serde_json::{Value, json};

use crate::apiserver::{ApiServer, KUBERNETES_SERVICE_IP, WriteOptions};
use crate::meta;
use crate::resources::version_priority;

const MANAGER: &str = "kube-apiserver";

pub fn create(api: &ApiServer, addr: SocketAddr) -> Result<(), String> {
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        create_object(
            api,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )?;
    }
    kubernetes_service(api, addr)?;
    let policy: Vec<Value> = serde_yaml::Deserializer::from_str(include_str!("rbac.yaml"))
        .map(|doc| serde::Deserialize::deserialize(doc).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    for object in policy {
        create_object(api, object)?;
    }
    for component in ["scheduler", "controller-manager", "etcd-0"] {
        create_object(
            api,
            json!({"apiVersion": "v1", "kind": "ComponentStatus",
                "metadata": {"name": component},
                "conditions": [{"type": "Healthy", "status": "True", "message": "ok"}]}),
        )?;
    }
    local_api_services(api)
}

fn create_object(api: &ApiServer, obj: Value) -> Result<Value, String> {
    let (group, version) = match obj["apiVersion"]
        .as_str()
        .unwrap_or_default()
        .split_once('/')
    {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (
            String::new(),
            obj["apiVersion"].as_str().unwrap_or_default().to_string(),
        ),
    };
    let kind = obj["kind"].as_str().unwrap_or_default();
    let rt = api
        .resource_of_kind(&group, &version, kind)
        .ok_or_else(|| format!("{kind} is not served"))?;
    let ns = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .map(String::from);
    api.create(&rt, ns.as_deref(), obj, &WriteOptions::internal(MANAGER))
        .map(|w| w.object)
        .map_err(|e| e.message)
}

fn kubernetes_service(api: &ApiServer, addr: SocketAddr) -> Result<(), String> {
    let labels = json!({"component": "apiserver", "provider": "kubernetes"});
    create_object(
        api,
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": labels},
            "spec": {"clusterIP": KUBERNETES_SERVICE_IP.to_string(),
                "ports": [{"name": "https", "port": 443, "protocol": "TCP",
                           "targetPort": addr.port()}]}}),
    )?;
    create_object(
        api,
        json!({"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "kubernetes", "namespace": "default",
                         "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
            "subsets": [{"addresses": [{"ip": addr.ip().to_string()}],
                         "ports": [{"name": "https", "port": addr.port(), "protocol": "TCP"}]}]}),
    )?;
    Ok(())
}

/// kube-apiserver's priorities for the built-in groups (higher first in discovery).
fn group_priority(group: &str) -> i64 {
    match group {
        "" => 18000,
        "apps" => 17800,
        "events.k8s.io" => 17750,
        "authentication.k8s.io" => 17700,
        "authorization.k8s.io" => 17600,
        "batch" => 17400,
        "certificates.k8s.io" => 17300,
        "policy" => 17100,
        "rbac.authorization.k8s.io" => 17000,
        "apiextensions.k8s.io" => 16700,
        "coordination.k8s.io" => 16500,
        "apiregistration.k8s.io" => 16700,
        _ => 1000,
    }
}

fn local_api_services(api: &ApiServer) -> Result<(), String> {
    let groups = api.lock().registry.groups();
    for (group, versions) in groups {
        for version in versions {
            let name = format!("{version}.{group}");
            // GA before beta before alpha, as kube-apiserver ranks its own versions.
            let version_rank = match version_priority(&version).0 {
                3 => 15,
                2 => 9,
                _ => 1,
            };
            let created = create_object(
                api,
                json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
                    "metadata": {"name": name,
                                 "labels": {"kube-aggregator.kubernetes.io/automanaged": "onstart"}},
                    "spec": {"group": group, "version": version,
                             "groupPriorityMinimum": group_priority(&group),
                             "versionPriority": version_rank}}),
            )?;
            let rt = api
                .resource("apiregistration.k8s.io", "v1", "apiservices")
                .ok_or("APIServices are not served")?;
            let mut st = api.lock();
            let available = json!({"conditions": [{"type": "Available", "status": "True",
                "lastTransitionTime": meta::now_rfc3339(), "reason": "Local",
                "message": "Local APIServices are always available"}]});
            api.mutate(&mut st, &rt.storage, "", &name, MANAGER, true, |o| {
                o["status"] = available;
            })
            .ok_or_else(|| format!("cannot mark {} available", created["metadata"]["name"]))?;
        }
    }
    Ok(())
}
