//! The test harness the workspace's tests share: a dev cluster per test, the real
//! kubectl, OpenBao and moto, and watch-driven waiting (never sleeps).

mod kubectl;
mod moto;
mod openbao;
mod outage;
mod tools;

pub use kubectl::Kubectl;
pub use moto::{Moto, REGION};
pub use openbao::OpenBao;
pub use outage::Outage;
pub use tools::{free_port, require, venv};

use std::fmt::Debug;
use std::time::Duration;

use kube::api::Api;
use kube::runtime::wait::await_condition;
use kube::{Client, Resource};
pub use kube_devcluster::{Config, DevCluster};
use serde::de::DeserializeOwned;

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

    /// A client without credentials (no token, no client certificate): `system:anonymous`.
    pub async fn anonymous_client(&self) -> Client {
        self.client_with(|c| {
            c.auth_info.token = None;
            c.auth_info.client_certificate_data = None;
            c.auth_info.client_key_data = None;
        })
        .await
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
    K: Clone + Debug + Send + DeserializeOwned + serde::Serialize + Resource + 'static,
{
    match tokio::time::timeout(PATIENCE, await_condition(api.clone(), name, cond)).await {
        Ok(found) => found
            .expect("watch works")
            .unwrap_or_else(|| panic!("{name} does not exist")),
        // Show what it looked like instead: the status says why it never got there.
        Err(_) => {
            let mut last = serde_json::to_value(api.get_opt(name).await.ok().flatten()).unwrap();
            if let Some(meta) = last.get_mut("metadata").and_then(|m| m.as_object_mut()) {
                meta.remove("managedFields");
            }
            let last = serde_json::to_string_pretty(&last).unwrap();
            panic!("timed out waiting for {name}; it is now:\n{last}")
        }
    }
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

/// What a command-line tool printed.
pub struct Output {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    fn of(out: std::process::Output) -> Output {
        Output {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}
