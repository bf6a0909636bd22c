//! The registry of served resource types. Built-in kinds are registered once at start-up;
//! CRDs add and remove entries at run time. Adding a built-in kind is one `builtin(..)` line.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::{apps, batch, certificates, coordination, core, events, policy, rbac};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::schema::Schema;
use super::table::TableKind;

/// Where objects of a resource live. Several served versions (or, for events, two API
/// groups) can share one storage location, as in kube-apiserver.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StorageKey {
    pub group: String,
    pub resource: String,
}

/// How the stored form maps to what a served version shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// Stored as served; only `apiVersion` is rewritten.
    Identity,
    /// events.k8s.io/v1 over core/v1 event storage.
    EventsV1,
}

/// Which changes bump `metadata.generation` (kube-apiserver decides this per kind).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GenerationPolicy {
    /// The kind has no generation (Secrets, ConfigMaps, …).
    None,
    /// Any change outside metadata (and outside status when the status subresource is on).
    Spec,
    /// Deployments: spec or annotation changes (annotations are copied to ReplicaSets).
    SpecAndAnnotations,
}

/// Round-trips a built-in object through its typed Rust model, which drops unknown fields
/// and rejects ill-typed ones exactly where the Go structs in kube-apiserver would.
pub type Normalizer = fn(Value) -> Result<Value, String>;

#[derive(Clone, Debug)]
pub struct PrinterColumn {
    pub name: String,
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    pub json_path: String,
}

#[derive(Clone)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub status_subresource: bool,
    pub storage: StorageKey,
    pub view: View,
    pub generation: GenerationPolicy,
    pub normalize: Option<Normalizer>,
    pub schema: Option<Arc<Schema>>,
    pub table: TableKind,
    /// `additionalPrinterColumns` of a custom resource version.
    pub printer_columns: Vec<PrinterColumn>,
    /// Name of the CRD that defines this resource, if any.
    pub crd: Option<String>,
    /// Whether this is the version objects are stored in (CRDs) / the preferred version.
    pub preferred: bool,
    /// Create-only review resources, answered and never stored.
    pub review: Option<Review>,
    /// Computed by the server (componentstatuses): only `get` and `list`.
    pub read_only: bool,
    /// Subresources other than `status`.
    pub subresources: Vec<Subresource>,
}

/// A subresource other than `status`, served as kube-apiserver serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subresource {
    /// `serviceaccounts/token`: a TokenRequest.
    Token,
    /// `namespaces/finalize`: only `spec.finalizers` changes.
    Finalize,
    /// `…/scale`: an `autoscaling/v1` Scale over the object's replica fields.
    Scale(ScalePaths),
    /// `certificatesigningrequests/approval`: only the Approved/Denied conditions change.
    Approval,
    /// `pods/ephemeralcontainers`: only `spec.ephemeralContainers` changes.
    EphemeralContainers,
    /// `pods/eviction`: an Eviction deletes the pod unless a disruption budget forbids it.
    Eviction,
    /// Proxied to the kubelet of the pod's node (`log`, `exec`, `attach`, `portforward`,
    /// `proxy`); no kubelet runs here.
    Kubelet(&'static str),
}

/// Where a scalable object keeps its replica counts (a CRD's `subresources.scale`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

impl ScalePaths {
    /// Deployments, StatefulSets and ReplicaSets.
    fn workload() -> Self {
        ScalePaths {
            spec_replicas: ".spec.replicas".into(),
            status_replicas: ".status.replicas".into(),
            label_selector: None,
        }
    }
}

/// What discovery says about a subresource.
pub struct SubresourceInfo {
    pub name: &'static str,
    /// group, version, kind of what the subresource takes and returns.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: Option<&'static str>,
    pub verbs: &'static [&'static str],
}

impl Subresource {
    pub fn name(&self) -> &'static str {
        match self {
            Subresource::Token => "token",
            Subresource::Finalize => "finalize",
            Subresource::Scale(_) => "scale",
            Subresource::Approval => "approval",
            Subresource::EphemeralContainers => "ephemeralcontainers",
            Subresource::Eviction => "eviction",
            Subresource::Kubelet(name) => name,
        }
    }

    /// `None` for the kind: the parent's own kind.
    pub fn info(&self) -> SubresourceInfo {
        let (group, version, kind, verbs): (_, _, _, &'static [&'static str]) = match self {
            Subresource::Token => (
                "authentication.k8s.io",
                "v1",
                Some("TokenRequest"),
                &["create"],
            ),
            Subresource::Finalize => ("", "", None, &["update"]),
            Subresource::Scale(_) => (
                "autoscaling",
                "v1",
                Some("Scale"),
                &["get", "patch", "update"],
            ),
            Subresource::Approval | Subresource::EphemeralContainers => {
                ("", "", None, &["get", "patch", "update"])
            }
            Subresource::Eviction => ("policy", "v1", Some("Eviction"), &["create"]),
            Subresource::Kubelet("log") => ("", "v1", Some("Pod"), &["get"]),
            Subresource::Kubelet(_) => ("", "v1", Some("Pod"), &["create", "get"]),
        };
        SubresourceInfo {
            name: self.name(),
            group,
            version,
            kind,
            verbs,
        }
    }
}

/// The review resources kube-apiserver computes on create.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Review {
    Token,
    SelfSubjectAccess,
    SubjectAccess,
    LocalSubjectAccess,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural.group` as used in error messages (`secrets`, `apikeys.apikey.dev`).
    pub fn qualified_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `Kind.group` as used in 422 messages (`Secret`, `ApiKey.apikey.dev`).
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    pub fn is_custom(&self) -> bool {
        self.crd.is_some()
    }

    pub fn subresource(&self, name: &str) -> Option<&Subresource> {
        self.subresources.iter().find(|s| s.name() == name)
    }
}

/// Served resources keyed by (group, version, plural).
#[derive(Default, Clone)]
pub struct Registry {
    types: BTreeMap<(String, String, String), Arc<ResourceType>>,
}

impl Registry {
    pub fn with_builtins() -> Self {
        let mut r = Registry::default();
        for t in builtin_types() {
            r.insert(t);
        }
        r
    }

    pub fn insert(&mut self, t: ResourceType) {
        self.types.insert(
            (t.group.clone(), t.version.clone(), t.plural.clone()),
            Arc::new(t),
        );
    }

    pub fn remove_crd(&mut self, crd_name: &str) {
        self.types.retain(|_, t| t.crd.as_deref() != Some(crd_name));
    }

    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.types
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
            .cloned()
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<ResourceType>> {
        self.types.values()
    }

    /// The preferred served version of the resource stored at `key`.
    pub fn preferred_for(&self, key: &StorageKey) -> Option<Arc<ResourceType>> {
        self.all()
            .filter(|t| &t.storage == key && t.view == View::Identity)
            .max_by_key(|t| t.preferred)
            .cloned()
    }

    /// Groups with their versions, preferred version first (discovery order).
    pub fn groups(&self) -> BTreeMap<String, Vec<String>> {
        let mut groups: BTreeMap<String, Vec<(bool, String)>> = BTreeMap::new();
        for t in self.all() {
            let versions = groups.entry(t.group.clone()).or_default();
            if let Some(existing) = versions.iter_mut().find(|(_, v)| v == &t.version) {
                existing.0 |= t.preferred;
            } else {
                versions.push((t.preferred, t.version.clone()));
            }
        }
        groups
            .into_iter()
            .map(|(g, mut vs)| {
                vs.sort_by(|a, b| {
                    b.0.cmp(&a.0)
                        .then_with(|| version_priority(&b.1).cmp(&version_priority(&a.1)))
                });
                (g, vs.into_iter().map(|(_, v)| v).collect())
            })
            .collect()
    }
}

/// Kubernetes version ordering: GA > beta > alpha, then by number (v2 > v1, v1beta2 > v1beta1).
pub fn version_priority(v: &str) -> (u8, u32, u32) {
    static VERSION: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"^v(\d+)(?:(alpha|beta)(\d+))?$").expect("static regex")
    });
    let re = &*VERSION;
    match re.captures(v) {
        Some(c) => {
            let major = c[1].parse().unwrap_or(0);
            let minor = c.get(3).and_then(|m| m.as_str().parse().ok()).unwrap_or(0);
            let stability = match c.get(2).map(|m| m.as_str()) {
                None => 3,
                Some("beta") => 2,
                _ => 1,
            };
            (stability, major, minor)
        }
        None => (0, 0, 0),
    }
}

fn roundtrip<K: DeserializeOwned + Serialize>(v: Value) -> Result<Value, String> {
    let typed: K = serde_json::from_value(v).map_err(|e| e.to_string())?;
    serde_json::to_value(typed).map_err(|e| e.to_string())
}

struct Builtin {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
    status: bool,
    generation: GenerationPolicy,
    table: TableKind,
}

impl Builtin {
    fn into_type(self, normalize: Option<Normalizer>) -> ResourceType {
        ResourceType {
            group: self.group.into(),
            version: self.version.into(),
            kind: self.kind.into(),
            plural: self.plural.into(),
            singular: self.kind.to_lowercase(),
            namespaced: self.namespaced,
            short_names: self.short_names.iter().map(|s| s.to_string()).collect(),
            categories: self.categories.iter().map(|s| s.to_string()).collect(),
            status_subresource: self.status,
            storage: StorageKey {
                group: self.group.into(),
                resource: self.plural.into(),
            },
            view: View::Identity,
            generation: self.generation,
            normalize,
            schema: None,
            table: self.table,
            printer_columns: Vec::new(),
            crd: None,
            preferred: true,
            review: None,
            read_only: false,
            subresources: Vec::new(),
        }
    }
}

fn review(
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    r: Review,
) -> ResourceType {
    let mut t = kind_of(group, "v1", kind, plural, namespaced).into_type(None);
    t.review = Some(r);
    t
}

fn read_only(mut t: ResourceType) -> ResourceType {
    t.read_only = true;
    t
}

fn with_subresources(mut t: ResourceType, subresources: Vec<Subresource>) -> ResourceType {
    t.subresources = subresources;
    t
}

fn builtin<K: DeserializeOwned + Serialize>(b: Builtin) -> ResourceType {
    b.into_type(Some(roundtrip::<K>))
}

const fn kind_of(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
) -> Builtin {
    Builtin {
        group,
        version,
        kind,
        plural,
        namespaced,
        short_names: &[],
        categories: &[],
        status: false,
        generation: GenerationPolicy::None,
        table: TableKind::Default,
    }
}

impl Builtin {
    const fn short(mut self, s: &'static [&'static str]) -> Self {
        self.short_names = s;
        self
    }
    const fn categories(mut self, c: &'static [&'static str]) -> Self {
        self.categories = c;
        self
    }
    const fn with_status(mut self, generation: GenerationPolicy) -> Self {
        self.status = true;
        self.generation = generation;
        self
    }
    const fn table(mut self, t: TableKind) -> Self {
        self.table = t;
        self
    }
}

fn builtin_types() -> Vec<ResourceType> {
    use GenerationPolicy::*;
    let rbac = "rbac.authorization.k8s.io";
    let mut events_v1 = builtin::<events::v1::Event>(
        kind_of("events.k8s.io", "v1", "Event", "events", true)
            .short(&["ev"])
            .table(TableKind::EventsV1),
    );
    // One store, two views: events.k8s.io/v1 objects live in core/v1 event storage.
    events_v1.storage = StorageKey {
        group: String::new(),
        resource: "events".into(),
    };
    events_v1.view = View::EventsV1;
    vec![
        with_subresources(
            builtin::<core::v1::Namespace>(
                kind_of("", "v1", "Namespace", "namespaces", false)
                    .short(&["ns"])
                    .with_status(None)
                    .table(TableKind::Namespace),
            ),
            vec![Subresource::Finalize],
        ),
        builtin::<core::v1::Secret>(
            kind_of("", "v1", "Secret", "secrets", true).table(TableKind::Secret),
        ),
        builtin::<core::v1::ConfigMap>(
            kind_of("", "v1", "ConfigMap", "configmaps", true)
                .short(&["cm"])
                .table(TableKind::ConfigMap),
        ),
        with_subresources(
            builtin::<core::v1::ServiceAccount>(
                kind_of("", "v1", "ServiceAccount", "serviceaccounts", true)
                    .short(&["sa"])
                    .table(TableKind::ServiceAccount),
            ),
            vec![Subresource::Token],
        ),
        builtin::<core::v1::Service>(
            kind_of("", "v1", "Service", "services", true)
                .short(&["svc"])
                .categories(&["all"])
                .with_status(None)
                .table(TableKind::Service),
        ),
        with_subresources(
            builtin::<core::v1::Pod>(
                kind_of("", "v1", "Pod", "pods", true)
                    .short(&["po"])
                    .categories(&["all"])
                    .with_status(None)
                    .table(TableKind::Pod),
            ),
            vec![
                Subresource::EphemeralContainers,
                Subresource::Eviction,
                Subresource::Kubelet("log"),
                Subresource::Kubelet("exec"),
                Subresource::Kubelet("attach"),
                Subresource::Kubelet("portforward"),
                Subresource::Kubelet("proxy"),
            ],
        ),
        builtin::<core::v1::Node>(
            kind_of("", "v1", "Node", "nodes", false)
                .short(&["no"])
                .with_status(None)
                .table(TableKind::Node),
        ),
        builtin::<core::v1::Endpoints>(
            kind_of("", "v1", "Endpoints", "endpoints", true).short(&["ep"]),
        ),
        read_only(builtin::<core::v1::ComponentStatus>(
            kind_of("", "v1", "ComponentStatus", "componentstatuses", false).short(&["cs"]),
        )),
        builtin::<core::v1::Event>(
            kind_of("", "v1", "Event", "events", true)
                .short(&["ev"])
                .table(TableKind::Event),
        ),
        events_v1,
        with_subresources(
            builtin::<apps::v1::Deployment>(
                kind_of("apps", "v1", "Deployment", "deployments", true)
                    .short(&["deploy"])
                    .categories(&["all"])
                    .with_status(SpecAndAnnotations)
                    .table(TableKind::Deployment),
            ),
            vec![Subresource::Scale(ScalePaths::workload())],
        ),
        with_subresources(
            builtin::<apps::v1::StatefulSet>(
                kind_of("apps", "v1", "StatefulSet", "statefulsets", true)
                    .short(&["sts"])
                    .categories(&["all"])
                    .with_status(Spec)
                    .table(TableKind::StatefulSet),
            ),
            vec![Subresource::Scale(ScalePaths::workload())],
        ),
        builtin::<apps::v1::DaemonSet>(
            kind_of("apps", "v1", "DaemonSet", "daemonsets", true)
                .short(&["ds"])
                .categories(&["all"])
                .with_status(Spec)
                .table(TableKind::DaemonSet),
        ),
        with_subresources(
            builtin::<apps::v1::ReplicaSet>(
                kind_of("apps", "v1", "ReplicaSet", "replicasets", true)
                    .short(&["rs"])
                    .categories(&["all"])
                    .with_status(Spec)
                    .table(TableKind::ReplicaSet),
            ),
            vec![Subresource::Scale(ScalePaths::workload())],
        ),
        builtin::<batch::v1::Job>(
            kind_of("batch", "v1", "Job", "jobs", true)
                .categories(&["all"])
                .with_status(Spec)
                .table(TableKind::Job),
        ),
        builtin::<batch::v1::CronJob>(
            kind_of("batch", "v1", "CronJob", "cronjobs", true)
                .short(&["cj"])
                .categories(&["all"])
                .with_status(Spec),
        ),
        with_subresources(
            builtin::<certificates::v1::CertificateSigningRequest>(
                kind_of(
                    "certificates.k8s.io",
                    "v1",
                    "CertificateSigningRequest",
                    "certificatesigningrequests",
                    false,
                )
                .short(&["csr"])
                .with_status(None),
            ),
            vec![Subresource::Approval],
        ),
        builtin::<APIService>(
            kind_of(
                "apiregistration.k8s.io",
                "v1",
                "APIService",
                "apiservices",
                false,
            )
            .with_status(None),
        ),
        builtin::<policy::v1::PodDisruptionBudget>(
            kind_of(
                "policy",
                "v1",
                "PodDisruptionBudget",
                "poddisruptionbudgets",
                true,
            )
            .short(&["pdb"])
            .with_status(Spec)
            .table(TableKind::CreatedAt),
        ),
        builtin::<coordination::v1::Lease>(
            kind_of("coordination.k8s.io", "v1", "Lease", "leases", true).table(TableKind::Lease),
        ),
        builtin::<CustomResourceDefinition>(
            kind_of(
                "apiextensions.k8s.io",
                "v1",
                "CustomResourceDefinition",
                "customresourcedefinitions",
                false,
            )
            .short(&["crd", "crds"])
            .with_status(Spec)
            .table(TableKind::CreatedAt),
        ),
        builtin::<rbac::v1::Role>(
            kind_of(rbac, "v1", "Role", "roles", true).table(TableKind::CreatedAt),
        ),
        builtin::<rbac::v1::RoleBinding>(
            kind_of(rbac, "v1", "RoleBinding", "rolebindings", true).table(TableKind::Binding),
        ),
        builtin::<rbac::v1::ClusterRole>(
            kind_of(rbac, "v1", "ClusterRole", "clusterroles", false).table(TableKind::CreatedAt),
        ),
        builtin::<rbac::v1::ClusterRoleBinding>(
            kind_of(
                rbac,
                "v1",
                "ClusterRoleBinding",
                "clusterrolebindings",
                false,
            )
            .table(TableKind::Binding),
        ),
        review(
            "authentication.k8s.io",
            "TokenReview",
            "tokenreviews",
            false,
            Review::Token,
        ),
        review(
            "authorization.k8s.io",
            "SelfSubjectAccessReview",
            "selfsubjectaccessreviews",
            false,
            Review::SelfSubjectAccess,
        ),
        review(
            "authorization.k8s.io",
            "SubjectAccessReview",
            "subjectaccessreviews",
            false,
            Review::SubjectAccess,
        ),
        review(
            "authorization.k8s.io",
            "LocalSubjectAccessReview",
            "localsubjectaccessreviews",
            true,
            Review::LocalSubjectAccess,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_ordering_matches_kubernetes() {
        let mut vs = vec!["v1alpha1", "v1", "v2beta1", "v1beta2", "v1beta1", "v2"];
        vs.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        assert_eq!(
            vs,
            ["v2", "v1", "v2beta1", "v1beta2", "v1beta1", "v1alpha1"]
        );
    }

    #[test]
    fn roundtrip_drops_unknown_fields_and_rejects_bad_types() {
        let v = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "x"}, "data": {"a": "b"}, "bogus": 1});
        let out = roundtrip::<core::v1::ConfigMap>(v).unwrap();
        assert!(out.get("bogus").is_none());
        assert_eq!(out["data"]["a"], "b");
        let bad = serde_json::json!({"metadata": {"name": "x"}, "data": {"a": 5}});
        assert!(roundtrip::<core::v1::ConfigMap>(bad).is_err());
    }
}
