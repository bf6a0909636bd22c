//! What kube-apiserver's Service strategy and IP allocator do: defaults, a ClusterIP from
//! the service CIDR for every Service that wants one, and that IP kept for life.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde_json::{Value, json};

use crate::errors::FieldError;
use crate::resources::{ResourceType, StorageKey};

use super::State;

/// kube-apiserver's default `--service-cluster-ip-range`.
const SERVICE_CIDR: (Ipv4Addr, u32) = (Ipv4Addr::new(10, 96, 0, 0), 12);
/// The first address goes to `default/kubernetes`, as on every cluster.
pub const KUBERNETES_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);

pub(super) fn is_service(rt: &ResourceType) -> bool {
    rt.group.is_empty() && rt.kind == "Service"
}

fn in_cidr(ip: Ipv4Addr) -> bool {
    let (net, bits) = SERVICE_CIDR;
    u32::from(ip) >> (32 - bits) == u32::from(net) >> (32 - bits)
}

fn wants_cluster_ip(obj: &Value) -> bool {
    obj.pointer("/spec/type").and_then(Value::as_str) != Some("ExternalName")
        && obj.pointer("/spec/clusterIP").and_then(Value::as_str) != Some("None")
}

fn used_ips(st: &State) -> BTreeSet<Ipv4Addr> {
    let key = StorageKey {
        group: String::new(),
        resource: "services".into(),
    };
    st.store
        .list(&key, None)
        .iter()
        .filter_map(|s| s.pointer("/spec/clusterIP")?.as_str()?.parse().ok())
        .collect()
}

/// Defaults a new Service and allocates its ClusterIP (or checks the one asked for).
pub(super) fn prepare_create(st: &State, obj: &mut Value) -> Vec<FieldError> {
    default_spec(obj);
    if !wants_cluster_ip(obj) {
        return Vec::new();
    }
    let used = used_ips(st);
    let ip = match obj.pointer("/spec/clusterIP").and_then(Value::as_str) {
        Some(asked) if !asked.is_empty() => {
            let field = "spec.clusterIPs[0]";
            let Ok(ip) = asked.parse::<Ipv4Addr>() else {
                return vec![FieldError::invalid(
                    field,
                    &json!(asked),
                    "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                )];
            };
            if !in_cidr(ip) {
                return vec![FieldError::invalid(
                    field,
                    &json!(asked),
                    "failed to allocate IP 10.96.0.0/12: the provided IP is not in the valid range. The range of valid IPs is 10.96.0.0/12",
                )];
            }
            if used.contains(&ip) {
                return vec![FieldError::invalid(
                    field,
                    &json!(asked),
                    "failed to allocate IP: provided IP is already allocated",
                )];
            }
            ip
        }
        _ => {
            let first = u32::from(KUBERNETES_SERVICE_IP) + 9;
            let last = u32::from(SERVICE_CIDR.0) + (1 << (32 - SERVICE_CIDR.1)) - 2;
            match (first..=last)
                .map(Ipv4Addr::from)
                .find(|ip| !used.contains(ip))
            {
                Some(ip) => ip,
                None => {
                    return vec![FieldError::invalid(
                        "spec.clusterIPs",
                        &json!([]),
                        "failed to allocate a serviceIP: range is full",
                    )];
                }
            }
        }
    };
    obj["spec"]["clusterIP"] = json!(ip.to_string());
    obj["spec"]["clusterIPs"] = json!([ip.to_string()]);
    Vec::new()
}

/// An update keeps the allocated ClusterIP: left out, it is kept; changed, it is refused.
pub(super) fn prepare_update(old: &Value, obj: &mut Value) -> Vec<FieldError> {
    default_spec(obj);
    let old_ip = old.pointer("/spec/clusterIP").cloned();
    let new_ip = obj.pointer("/spec/clusterIP").cloned();
    match (&old_ip, &new_ip) {
        (Some(o), None) => {
            obj["spec"]["clusterIP"] = o.clone();
            if let Some(ips) = old.pointer("/spec/clusterIPs") {
                obj["spec"]["clusterIPs"] = ips.clone();
            }
            Vec::new()
        }
        (Some(o), Some(n)) if o != n && n != "" => vec![FieldError::invalid(
            "spec.clusterIPs[0]",
            n,
            "may not change once set",
        )],
        (Some(o), Some(_)) => {
            obj["spec"]["clusterIP"] = o.clone();
            Vec::new()
        }
        _ => Vec::new(),
    }
}

fn default_spec(obj: &mut Value) {
    if !obj.get("spec").is_some_and(Value::is_object) {
        obj["spec"] = json!({});
    }
    let spec = &mut obj["spec"];
    let kind = spec["type"].as_str().unwrap_or("ClusterIP").to_string();
    spec["type"] = json!(kind);
    if spec.get("sessionAffinity").is_none() {
        spec["sessionAffinity"] = json!("None");
    }
    if kind != "ExternalName" {
        if spec.get("ipFamilies").is_none() {
            spec["ipFamilies"] = json!(["IPv4"]);
        }
        if spec.get("ipFamilyPolicy").is_none() {
            spec["ipFamilyPolicy"] = json!("SingleStack");
        }
        if spec.get("internalTrafficPolicy").is_none() {
            spec["internalTrafficPolicy"] = json!("Cluster");
        }
    }
    for port in spec
        .get_mut("ports")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if port.get("protocol").is_none() {
            port["protocol"] = json!("TCP");
        }
        if port.get("targetPort").is_none() {
            port["targetPort"] = port["port"].clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_cidr_is_the_default_one() {
        assert!(in_cidr(KUBERNETES_SERVICE_IP));
        assert!(in_cidr(Ipv4Addr::new(10, 111, 255, 254)));
        assert!(!in_cidr(Ipv4Addr::new(10, 112, 0, 1)));
    }

    #[test]
    fn an_update_keeps_the_cluster_ip() {
        let old = json!({"spec": {"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"]}});
        let mut put = json!({"spec": {"ports": [{"port": 80}]}});
        assert!(prepare_update(&old, &mut put).is_empty());
        assert_eq!(put["spec"]["clusterIP"], "10.96.0.10");
        assert_eq!(put["spec"]["ports"][0]["targetPort"], 80);
        let mut changed = json!({"spec": {"clusterIP": "10.96.0.11"}});
        assert_eq!(prepare_update(&old, &mut changed).len(), 1);
    }
}
