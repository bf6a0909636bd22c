//! Shared test harness: a dev cluster per test, the Widget CRD fixture, kubectl, and
//! watch-driven waiting (never sleeps).

pub mod invariants;
pub mod kubectl;
pub mod openbao;

use std::fmt::Debug;
use std::time::Duration;

pub use apikey_operator::devcluster::{Config, DevCluster};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, CustomResource, Resource};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// How long any single wait may take before the test fails (a safety net, not a timing
/// assertion).
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A dev cluster tuned for tests: fast bookmarks and rollouts.
pub fn test_config() -> Config {
    Config {
        bookmark_interval: Duration::from_millis(200),
        rollout_delay: Duration::from_millis(50),
        ..Config::default()
    }
}

pub struct TestCluster {
    pub cluster: DevCluster,
    pub client: Client,
}

pub async fn cluster() -> TestCluster {
    cluster_with(test_config()).await
}

pub async fn cluster_with(config: Config) -> TestCluster {
    let cluster = DevCluster::start(config).await.expect("dev cluster starts");
    let client = cluster.client().await.expect("kube client from kubeconfig");
    TestCluster { cluster, client }
}

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[kube(
    group = "example.apikey.dev",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus"
)]
pub struct WidgetSpec {
    pub size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
pub struct WidgetStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<i64>,
}

pub const WIDGET_CRD: &str = include_str!("../fixtures/widgets-crd.yaml");

pub fn widget(name: &str, size: i64) -> Widget {
    Widget::new(
        name,
        WidgetSpec {
            size,
            ..Default::default()
        },
    )
}

impl TestCluster {
    /// A client whose requests carry `User-Agent: <agent>`, so the dev cluster's request
    /// counters can tell them apart from the test's own.
    pub async fn client_as(&self, agent: &'static str) -> Client {
        self.client_with(|c| {
            c.headers.push((
                http::header::USER_AGENT,
                http::HeaderValue::from_static(agent),
            ))
        })
        .await
    }

    /// A client built from the cluster's kubeconfig with `edit` applied to its config.
    pub async fn client_with(&self, edit: impl FnOnce(&mut kube::Config)) -> Client {
        let kc = kube::config::Kubeconfig::from_yaml(&self.cluster.kubeconfig()).unwrap();
        let mut config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        edit(&mut config);
        Client::try_from(config).unwrap()
    }

    /// Installs the Widget CRD and waits until it is established.
    pub async fn install_widgets(&self) -> Api<Widget> {
        let crd: CustomResourceDefinition = serde_yaml::from_str(WIDGET_CRD).expect("fixture");
        let crds: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        crds.create(&PostParams::default(), &crd)
            .await
            .expect("create CRD");
        wait(
            crds.clone(),
            "widgets.example.apikey.dev",
            conditions::is_crd_established(),
        )
        .await;
        Api::default_namespaced(self.client.clone())
    }

    pub fn api<K>(&self, ns: &str) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), ns)
    }
}

/// Waits (by watching) until `cond` holds for the named object.
pub async fn wait<K>(api: Api<K>, name: &str, cond: impl kube::runtime::wait::Condition<K>) -> K
where
    K: Clone + Debug + Send + DeserializeOwned + Resource + 'static,
{
    tokio::time::timeout(PATIENCE, await_condition(api, name, cond))
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {name}"))
        .expect("watch works")
        .unwrap_or_else(|| panic!("{name} does not exist"))
}

/// Waits (by watching) until the named object is gone.
pub async fn wait_deleted<K>(api: Api<K>, name: &str)
where
    K: Clone + Debug + Send + DeserializeOwned + Resource + 'static,
{
    tokio::time::timeout(
        PATIENCE,
        await_condition(api, name, |o: Option<&K>| o.is_none()),
    )
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {name} to be deleted"))
    .expect("watch works");
}

/// The resourceVersion a list of `api` reports now (where a watch can start).
pub async fn list_rv<K>(api: &Api<K>) -> String
where
    K: Clone + Debug + DeserializeOwned + Resource,
{
    let list = api.list(&Default::default()).await.expect("list");
    list.metadata
        .resource_version
        .expect("lists carry a resourceVersion")
}

/// The `Status` a failed request returned.
pub fn api_error<T: Debug>(r: kube::Result<T>) -> kube::core::Status {
    match r {
        Err(kube::Error::Api(s)) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}
