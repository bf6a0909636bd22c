//! The dev cluster: an in-memory Kubernetes API server that the real `kube` client,
//! `kube-runtime` controllers and `kubectl` use unchanged. See its `README.md`.

mod apiserver;
mod auth;
mod bootstrap;
mod cel;
pub mod cli;
mod controllers;
mod crd;
mod discovery;
mod errors;
mod events;
mod fieldset;
mod hooks;
mod http;
mod meta;
mod ownership;
mod patch;
mod protobuf;
mod rbac;
mod resources;
mod schema;
mod selectors;
mod store;
mod strategic;
mod table;
mod tls;
mod watch;
mod workloads;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

pub use hooks::{Fault, RequestKey};
pub use workloads::WorkloadKind;

use apiserver::ApiServer;
use hooks::Hooks;
use workloads::Workloads;

#[derive(Clone, Debug)]
pub struct Config {
    /// 0 picks a free port.
    pub port: u16,
    /// The admin's bearer token (generated when not given; it is in the kubeconfig).
    /// Requests without a valid token get 401, as on a real cluster.
    pub token: Option<String>,
    /// Changes retained for watches to resume from; older resourceVersions get 410.
    pub history_limit: usize,
    pub bookmark_interval: Duration,
    /// How long a simulated rollout takes after its pod template changes.
    pub rollout_delay: Duration,
    /// Nodes a DaemonSet is scheduled on.
    pub daemonset_nodes: i64,
    /// Enforce RBAC for every identity but the admin (ServiceAccount tokens, impersonated
    /// users). Access reviews evaluate RBAC either way.
    pub rbac: bool,
    /// The Kubernetes 1.x release reported by `/version`, whose CRD registration checks
    /// (CEL cost estimation) the dev cluster applies.
    pub kubernetes_minor: u32,
}

/// The release the dev cluster reports unless told otherwise.
pub const DEFAULT_KUBERNETES_MINOR: u32 = 33;
/// The oldest release it can emulate: the first with CRD validation rules.
pub const OLDEST_KUBERNETES_MINOR: u32 = 24;

impl Default for Config {
    fn default() -> Self {
        Config {
            port: 0,
            token: None,
            history_limit: 100_000,
            bookmark_interval: Duration::from_secs(60),
            rollout_delay: Duration::from_secs(2),
            daemonset_nodes: 1,
            rbac: false,
            kubernetes_minor: DEFAULT_KUBERNETES_MINOR,
        }
    }
}

pub(crate) struct Shared {
    api: Arc<ApiServer>,
    admin_token: String,
    ca_pem: String,
    admin_certificate: tls::ClientCertificate,
    hooks: Hooks,
    signer: auth::TokenSigner,
    config: Config,
    addr: SocketAddr,
}

/// A running dev cluster. Dropping it stops the server.
pub struct DevCluster {
    shared: Arc<Shared>,
    workloads: Arc<Workloads>,
    tasks: Vec<JoinHandle<()>>,
}

impl DevCluster {
    pub async fn start(config: Config) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", config.port))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let certs = tls::generate()?;
        if !(OLDEST_KUBERNETES_MINOR..=DEFAULT_KUBERNETES_MINOR).contains(&config.kubernetes_minor)
        {
            return Err(std::io::Error::other(format!(
                "the dev cluster emulates Kubernetes 1.{OLDEST_KUBERNETES_MINOR} to 1.{DEFAULT_KUBERNETES_MINOR}, not 1.{}",
                config.kubernetes_minor
            )));
        }
        let api = Arc::new(ApiServer::new(
            config.history_limit,
            cel::Release::of_minor(config.kubernetes_minor),
        ));
        bootstrap::create(&api, addr).map_err(std::io::Error::other)?;
        let workloads = Arc::new(Workloads::new(config.rollout_delay, config.daemonset_nodes));
        let shared = Arc::new(Shared {
            api: api.clone(),
            admin_token: config
                .token
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()),
            ca_pem: certs.ca_pem,
            admin_certificate: certs.admin,
            hooks: Hooks::default(),
            signer: auth::TokenSigner::new(),
            config,
            addr,
        });
        let app = axum::Router::new()
            .fallback(http::handle)
            .with_state(shared.clone());
        let tls = axum_server::tls_rustls::RustlsConfig::from_config(certs.server);
        let server = axum_server::tls_rustls::from_tcp_rustls(listener, tls)?;
        let server = tokio::spawn(async move {
            if let Err(e) = server.serve(app.into_make_service()).await {
                tracing::error!(error = %e, "dev cluster server stopped");
            }
        });
        let controllers = tokio::spawn(controllers::run(api, workloads.clone()));
        Ok(DevCluster {
            shared,
            workloads,
            tasks: vec![server, controllers],
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.shared.addr)
    }

    /// The CA that signed the server's certificate (PEM), as in the kubeconfig.
    pub fn ca_pem(&self) -> &str {
        &self.shared.ca_pem
    }

    /// A kubeconfig for `kubectl` and `kube::Client` (context `apikey-dev`).
    pub fn kubeconfig(&self) -> String {
        let b64 =
            |pem: &str| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, pem);
        let cert = &self.shared.admin_certificate;
        let user = format!(
            "{{token: {}, client-certificate-data: {}, client-key-data: {}}}",
            self.shared.admin_token,
            b64(&cert.cert_pem),
            b64(&cert.key_pem)
        );
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: apikey-dev\nclusters:\n- name: apikey-dev\n  cluster:\n    server: {}\n    certificate-authority-data: {}\ncontexts:\n- name: apikey-dev\n  context:\n    cluster: apikey-dev\n    user: apikey-dev\n    namespace: default\nusers:\n- name: apikey-dev\n  user: {user}\npreferences: {{}}\n",
            self.url(),
            base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                &self.shared.ca_pem
            ),
        )
    }

    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig())
    }

    pub async fn client(&self) -> kube::Result<kube::Client> {
        let kc = kube::config::Kubeconfig::from_yaml(&self.kubeconfig())
            .map_err(kube::Error::InferKubeconfig)?;
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .map_err(kube::Error::InferKubeconfig)?;
        kube::Client::try_from(config)
    }

    /// Injects a failure (status code and/or delay) for matching requests.
    pub fn inject(&self, fault: Fault) {
        self.shared.hooks.inject(fault);
    }

    pub fn clear_faults(&self) {
        self.shared.hooks.clear_faults();
    }

    /// How many injected faults have been applied: `wait_for` on it to act the moment one
    /// fires (e.g. delete an object while its controller's write has just failed).
    pub fn faults_fired(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.hooks.faults_fired()
    }

    /// Ends every open watch stream; clients reconnect from their last resourceVersion.
    pub fn cut_watches(&self) {
        self.shared.hooks.cut_watches();
    }

    /// Forgets all change history: watches and continue tokens from before now get 410.
    pub fn compact(&self) {
        self.shared.api.lock().store.compact();
    }

    /// Requests served so far with this verb (`list`, `watch`, `create`, …) and resource.
    pub fn requests(&self, verb: &str, resource: &str) -> u64 {
        self.shared.hooks.requests(verb, resource)
    }

    /// The 403 messages of every request RBAC refused so far (with `Config::rbac`): a test
    /// that runs a controller under its real permissions asserts this stays empty.
    pub fn denials(&self) -> Vec<String> {
        self.shared.hooks.denials()
    }

    pub fn request_counts(&self) -> std::collections::BTreeMap<RequestKey, u64> {
        self.shared.hooks.request_counts()
    }

    /// Keeps a workload's rollouts from completing (a stuck rollout) until released.
    pub fn hold_rollout(&self, kind: WorkloadKind, namespace: &str, name: &str) {
        self.workloads.hold(kind, namespace, name);
    }

    pub fn release_rollout(&self, kind: WorkloadKind, namespace: &str, name: &str) {
        self.workloads
            .release(&self.shared.api, kind, namespace, name);
    }

    pub fn current_resource_version(&self) -> u64 {
        self.shared.api.lock().store.current_rv()
    }
}

impl Drop for DevCluster {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
