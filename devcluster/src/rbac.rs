//! RBAC evaluation over the stored Roles, ClusterRoles and bindings (including aggregated
//! ClusterRoles), as kube-apiserver's RBAC authorizer decides: allowed when any rule of any
//! role bound to the user, one of its groups or its ServiceAccount matches.

use serde_json::Value;

use super::apiserver::State;
use super::auth::UserInfo;
use super::resources::StorageKey;
use super::selectors::LabelSelector;
use super::store::meta_str;

const RBAC: &str = "rbac.authorization.k8s.io";

/// What a request does, in authorizer terms.
#[derive(Clone, Debug, Default)]
pub struct Attributes {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    /// Set for non-resource requests (`/version`, `/healthz`, …).
    pub path: Option<String>,
}

impl Attributes {
    /// kube-apiserver's 403 message for a denied request.
    pub fn forbidden_message(&self, user: &UserInfo) -> String {
        if let Some(path) = &self.path {
            return format!(
                "forbidden: User \"{}\" cannot {} path \"{path}\"",
                user.username, self.verb
            );
        }
        let resource = if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        };
        let qualified = if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        };
        let object = if self.name.is_empty() {
            qualified
        } else {
            format!("{qualified} \"{}\"", self.name)
        };
        let scope = if self.namespace.is_empty() {
            "at the cluster scope".to_string()
        } else {
            format!("in the namespace \"{}\"", self.namespace)
        };
        format!(
            "{object} is forbidden: User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}",
            user.username, self.verb, self.group
        )
    }
}

fn key(resource: &str) -> StorageKey {
    StorageKey {
        group: RBAC.into(),
        resource: resource.into(),
    }
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn subject_matches(subject: &Value, user: &UserInfo, binding_ns: &str) -> bool {
    let name = subject["name"].as_str().unwrap_or_default();
    match subject["kind"].as_str() {
        Some("User") => user.username == name,
        Some("Group") => user.groups.iter().any(|g| g == name),
        Some("ServiceAccount") => {
            let ns = subject["namespace"]
                .as_str()
                .filter(|n| !n.is_empty())
                .unwrap_or(binding_ns);
            user.username == format!("system:serviceaccount:{ns}:{name}")
        }
        _ => false,
    }
}

fn matches_any(patterns: &[&str], value: &str) -> bool {
    patterns.iter().any(|p| *p == "*" || *p == value)
}

fn rule_allows(rule: &Value, a: &Attributes) -> bool {
    if !matches_any(&strings(&rule["verbs"]), &a.verb) {
        return false;
    }
    if let Some(path) = &a.path {
        return strings(&rule["nonResourceURLs"]).iter().any(|p| {
            *p == "*"
                || *p == path
                || p.strip_suffix('*')
                    .is_some_and(|prefix| path.starts_with(prefix))
        });
    }
    if !matches_any(&strings(&rule["apiGroups"]), &a.group) {
        return false;
    }
    let resources = strings(&rule["resources"]);
    let resource_ok = if a.subresource.is_empty() {
        matches_any(&resources, &a.resource)
    } else {
        let combined = format!("{}/{}", a.resource, a.subresource);
        resources
            .iter()
            .any(|r| *r == "*" || *r == combined || *r == format!("*/{}", a.subresource))
    };
    let names = strings(&rule["resourceNames"]);
    resource_ok && (names.is_empty() || names.contains(&a.name.as_str()))
}

/// The rules of a ClusterRole, including those it aggregates by label: each selector is a
/// full label selector (`matchLabels` and `matchExpressions`; an empty one selects every
/// ClusterRole), as the aggregation controller reads it.
fn cluster_role_rules(st: &State, name: &str) -> Vec<Value> {
    let Some(role) = st.store.get(&key("clusterroles"), "", name) else {
        return Vec::new();
    };
    let mut rules: Vec<Value> = role["rules"].as_array().cloned().unwrap_or_default();
    if let Some(selectors) = role
        .pointer("/aggregationRule/clusterRoleSelectors")
        .and_then(Value::as_array)
    {
        let selectors: Vec<LabelSelector> =
            selectors.iter().map(LabelSelector::from_object).collect();
        for other in st.store.list(&key("clusterroles"), None) {
            let selected = selectors.iter().any(|s| s.matches(&other));
            if selected && meta_str(&other, "name") != name {
                rules.extend(other["rules"].as_array().cloned().unwrap_or_default());
            }
        }
    }
    rules
}

/// Whether RBAC allows the request, and which binding allowed it.
pub fn authorize(st: &State, user: &UserInfo, a: &Attributes) -> Result<String, ()> {
    for b in st.store.list(&key("clusterrolebindings"), None) {
        let bound = b["subjects"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| subject_matches(s, user, "")));
        let role = b["roleRef"]["name"].as_str().unwrap_or_default();
        if bound
            && cluster_role_rules(st, role)
                .iter()
                .any(|r| rule_allows(r, a))
        {
            return Ok(format!(
                "RBAC: allowed by ClusterRoleBinding \"{}\" of ClusterRole \"{role}\" to {}",
                meta_str(&b, "name"),
                user.username
            ));
        }
    }
    if a.namespace.is_empty() {
        return Err(());
    }
    for b in st.store.list(&key("rolebindings"), Some(&a.namespace)) {
        let bound = b["subjects"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| subject_matches(s, user, &a.namespace)));
        if !bound {
            continue;
        }
        let role = b["roleRef"]["name"].as_str().unwrap_or_default();
        let rules = match b["roleRef"]["kind"].as_str() {
            Some("ClusterRole") => cluster_role_rules(st, role),
            _ => st
                .store
                .get(&key("roles"), &a.namespace, role)
                .and_then(|r| r["rules"].as_array().cloned())
                .unwrap_or_default(),
        };
        if rules.iter().any(|r| rule_allows(r, a)) {
            return Ok(format!(
                "RBAC: allowed by RoleBinding \"{}/{}\" of {} \"{role}\" to {}",
                meta_str(&b, "name"),
                a.namespace,
                b["roleRef"]["kind"].as_str().unwrap_or("Role"),
                user.username
            ));
        }
    }
    Err(())
}

/// Requests every authenticated user may make on a real cluster (the default
/// `system:discovery`, `system:public-info-viewer` and `system:basic-user` bindings).
pub fn allowed_by_default(a: &Attributes) -> bool {
    match &a.path {
        Some(p) => [
            "/api",
            "/apis",
            "/version",
            "/openapi",
            "/healthz",
            "/readyz",
            "/livez",
            "/.well-known",
            "/openid",
        ]
        .iter()
        .any(|prefix| p == prefix || p.starts_with(&format!("{prefix}/"))),
        None => {
            a.verb == "create"
                && a.group == "authorization.k8s.io"
                && matches!(
                    a.resource.as_str(),
                    "selfsubjectaccessreviews" | "selfsubjectrulesreviews"
                )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn state() -> State {
        let mut st = State::new(100, Default::default());
        st.store.insert(&key("roles"), json!({"metadata": {"namespace": "app", "name": "secret-reader", "uid": "r1"},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"], "resourceNames": []}]}));
        st.store.insert(
            &key("rolebindings"),
            json!({"metadata": {"namespace": "app", "name": "op", "uid": "rb1"},
            "roleRef": {"kind": "Role", "name": "secret-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "operator", "namespace": "app"}]}),
        );
        st.store.insert(&key("clusterroles"), json!({"metadata": {"name": "agg", "uid": "cr1"},
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"rbac.example/agg": "true"}}]}, "rules": []}));
        st.store.insert(&key("clusterroles"), json!({"metadata": {"name": "deploy-patcher", "uid": "cr2", "labels": {"rbac.example/agg": "true"}},
            "rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["patch"]},
                      {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]}]}));
        st.store.insert(&key("clusterrolebindings"), json!({"metadata": {"name": "ops", "uid": "crb1"},
            "roleRef": {"kind": "ClusterRole", "name": "agg"}, "subjects": [{"kind": "Group", "name": "ops"}]}));
        st
    }

    fn attrs(verb: &str, group: &str, resource: &str, ns: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            namespace: ns.into(),
            ..Default::default()
        }
    }

    #[test]
    fn role_bindings_grant_within_their_namespace() {
        let st = state();
        let sa = UserInfo {
            username: "system:serviceaccount:app:operator".into(),
            uid: String::new(),
            groups: vec![],
        };
        assert!(authorize(&st, &sa, &attrs("get", "", "secrets", "app")).is_ok());
        assert!(authorize(&st, &sa, &attrs("delete", "", "secrets", "app")).is_err());
        assert!(authorize(&st, &sa, &attrs("get", "", "secrets", "other")).is_err());
        let denied = attrs("delete", "", "secrets", "app");
        assert_eq!(
            Attributes {
                name: "k".into(),
                ..denied
            }
            .forbidden_message(&sa),
            "secrets \"k\" is forbidden: User \"system:serviceaccount:app:operator\" cannot delete resource \"secrets\" in API group \"\" in the namespace \"app\""
        );
    }

    #[test]
    fn aggregated_cluster_roles_and_subresources() {
        let st = state();
        let ops = UserInfo {
            username: "alice".into(),
            uid: String::new(),
            groups: vec!["ops".into()],
        };
        assert!(authorize(&st, &ops, &attrs("patch", "apps", "deployments", "x")).is_ok());
        let token = Attributes {
            subresource: "token".into(),
            ..attrs("create", "", "serviceaccounts", "x")
        };
        assert!(authorize(&st, &ops, &token).is_ok());
        assert!(
            authorize(&st, &ops, &attrs("create", "", "serviceaccounts", "x")).is_err(),
            "the subresource rule does not grant the resource"
        );
        let mut st = st;
        st.store.insert(&key("clusterroles"), json!({"metadata": {"name": "wild", "uid": "cr3", "labels": {"rbac.example/agg": "true"}},
            "rules": [{"apiGroups": [""], "resources": ["secrets/*"], "verbs": ["get"]}]}));
        let sub = Attributes {
            subresource: "status".into(),
            ..attrs("get", "", "secrets", "x")
        };
        assert!(
            authorize(&st, &ops, &sub).is_err(),
            "kube-apiserver has no resource/* wildcard"
        );
    }

    #[test]
    fn aggregation_selectors_use_match_expressions_and_an_empty_one_selects_all() {
        let mut st = state();
        let ops = UserInfo {
            username: "alice".into(),
            uid: String::new(),
            groups: vec!["ops".into()],
        };
        let list_nodes = attrs("list", "", "nodes", "");
        st.store.insert(
            &key("clusterroles"),
            json!({"metadata": {"name": "node-lister", "uid": "cr4", "labels": {"tier": "read"}},
            "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]}]}),
        );
        assert!(
            authorize(&st, &ops, &list_nodes).is_err(),
            "not selected yet"
        );
        let by_expression = json!({"metadata": {"name": "agg", "uid": "cr1"},
            "aggregationRule": {"clusterRoleSelectors": [
                {"matchLabels": {"rbac.example/agg": "true"}},
                {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["read", "audit"]}]}]},
            "rules": []});
        st.store.insert(&key("clusterroles"), by_expression);
        assert!(authorize(&st, &ops, &list_nodes).is_ok());
        let not_in = json!({"metadata": {"name": "agg", "uid": "cr1"},
            "aggregationRule": {"clusterRoleSelectors": [
                {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["read"]}]}]},
            "rules": []});
        st.store.insert(&key("clusterroles"), not_in);
        assert!(authorize(&st, &ops, &list_nodes).is_err());
        let everything = json!({"metadata": {"name": "agg", "uid": "cr1"},
            "aggregationRule": {"clusterRoleSelectors": [{}]}, "rules": []});
        st.store.insert(&key("clusterroles"), everything);
        assert!(authorize(&st, &ops, &list_nodes).is_ok());
    }
}
