//! The processes a run starts (dev cluster, operator, reference issuer), each its own,
//! and what the benchmark reads of them: CPU, peak RSS, request counters.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kube::runtime::{conditions, wait::await_condition};
use kube::{Client, ResourceExt};
use serde_json::json;

use super::{BIN, Result, post};

/// The reference issuer's admin token (loopback only).
const ADMIN_TOKEN: &str = "bench-admin-token";

/// A child process killed when dropped.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The reference issuer as its own process, limited to `rps` requests per second if
/// set; returns it and its URL.
pub fn start_reference_issuer(rps: Option<u32>) -> Result<(Process, String)> {
    let mut cmd = Command::new(BIN);
    cmd.args(["reference-issuer", "--admin-token", ADMIN_TOKEN]);
    if let Some(rps) = rps {
        cmd.args(["--requests-per-second", &rps.to_string()]);
    }
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
    let mut out = std::io::BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    out.read_line(&mut line)?;
    // Keep draining, so the issuer never writes into a closed pipe.
    std::thread::spawn(move || out.lines().for_each(drop));
    let url = line
        .rsplit(' ')
        .next()
        .map(str::trim)
        .filter(|u| u.starts_with("http://"))
        .ok_or("the reference issuer did not say where it serves")?
        .to_string();
    Ok((Process(child), url))
}

/// The `http` KeyIssuer `widgetjar` a run creates: the reference issuer's URL, and the
/// pace to keep (its rate limit).
pub struct HttpIssuer<'a> {
    pub url: &'a str,
    pub requests_per_second: Option<u32>,
}

/// `apiserver_request_total` by (verb, resource).
pub async fn request_totals(client: &Client) -> Result<BTreeMap<(String, String), u64>> {
    let text = client
        .request_text(http::Request::get("/metrics").body(Vec::new())?)
        .await?;
    let mut totals = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        let label = |name: &str| {
            let start = line
                .find(&format!("{name}=\""))
                .map(|i| i + name.len() + 2)?;
            let end = line[start..].find('"')? + start;
            Some(line[start..end].to_string())
        };
        let count = line.rsplit(' ').next().and_then(|n| n.parse().ok());
        if let (Some(verb), Some(resource), Some(count)) = (label("verb"), label("resource"), count)
        {
            totals.insert((verb, resource), count);
        }
    }
    Ok(totals)
}

/// Requests of `verbs` between two scrapes, by (verb, resource).
pub fn delta(
    before: &BTreeMap<(String, String), u64>,
    after: &BTreeMap<(String, String), u64>,
    verbs: &[&str],
) -> BTreeMap<(String, String), u64> {
    after
        .iter()
        .filter(|((verb, _), _)| verbs.contains(&verb.as_str()))
        .map(|(k, n)| (k.clone(), n - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// A Prometheus counter family's total, summed over its labels, where `filter` holds.
pub async fn counter_total(url: &str, family: &str, filter: impl Fn(&str) -> bool) -> Result<u64> {
    let text = reqwest::get(url).await?.text().await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with(&format!("{family}{{")) && filter(l))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64)
}

/// An unlabelled sample's value (a histogram's `_count`, say), 0 when absent.
pub async fn sample(url: &str, name: &str) -> Result<u64> {
    let text = reqwest::get(url).await?.text().await?;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
        .unwrap_or(0.0) as u64)
}

/// A loopback address no one listens on yet.
pub fn free_local_addr() -> Result<std::net::SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

pub fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// CPU seconds (user + system) a process has used.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime and stime are the
    // 12th and 13th of them, in clock ticks (100 per second on Linux).
    let after_name = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<f64> = after_name
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    fields
        .get(10)
        .zip(fields.get(11))
        .map_or(0.0, |(u, s)| (u + s) / 100.0)
}

pub async fn start_cluster(
    dir: &std::path::Path,
    http: Option<HttpIssuer<'_>>,
) -> Result<(Process, Client)> {
    let kubeconfig = dir.join("kubeconfig");
    let dev = Process(
        Command::new(BIN)
            .args(["dev", "--api-only", "--kubeconfig"])
            .arg(&kubeconfig)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    while std::fs::metadata(&kubeconfig).map_or(true, |m| m.len() == 0) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let kc = kube::config::Kubeconfig::read_from(&kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    let client = Client::try_from(config)?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in apikey_operator::api::crds() {
        let name = crd.name_any();
        crds.create(&PostParams::default(), &crd).await?;
        await_condition(crds.clone(), &name, conditions::is_crd_established()).await?;
    }
    for ns in ["apikey-operator", "floor"] {
        Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
            .create(
                &PostParams::default(),
                &post(json!({"metadata": {"name": ns}})),
            )
            .await?;
    }
    let issuers =
        Api::<apikey_operator::api::issuer::KeyIssuer>::namespaced(client.clone(), "default");
    issuers
        .create(
            &PostParams::default(),
            &post(
                json!({"apiVersion": "apikey.dev/v1alpha1", "kind": "KeyIssuer",
                "metadata": {"name": "gen"},
                "spec": {"generate": {}, "allowedScopes": ["widgets:*"]}}),
            ),
        )
        .await?;
    if let Some(issuer) = http {
        Api::<Secret>::namespaced(client.clone(), "default")
            .create(
                &PostParams::default(),
                &post(json!({"metadata": {"name": "widgetjar-admin"}, "stringData": {"token": ADMIN_TOKEN}})),
            )
            .await?;
        let mut http = json!({"url": issuer.url,
            "credentialsSecretRef": {"name": "widgetjar-admin", "key": "token"}});
        if let Some(rps) = issuer.requests_per_second {
            http["requestsPerSecond"] = json!(rps);
        }
        issuers
            .create(
                &PostParams::default(),
                &post(
                    json!({"apiVersion": "apikey.dev/v1alpha1", "kind": "KeyIssuer",
                    "metadata": {"name": "widgetjar"},
                    "spec": {"http": http, "allowedScopes": ["widgets:*"]}}),
                ),
            )
            .await?;
    }
    Ok((dev, client))
}

/// The operator, serving its metrics on `metrics_addr`.
pub fn start_operator(
    dir: &std::path::Path,
    concurrency: usize,
    metrics_addr: std::net::SocketAddr,
) -> Result<Process> {
    Ok(Process(
        Command::new(BIN)
            .args(["run", "--health-addr", "off"])
            .args(["--metrics-addr", &metrics_addr.to_string()])
            .args(["--kube-qps", "10000", "--kube-burst", "10000"])
            .args(["--concurrency", &concurrency.to_string()])
            // The floor's objects live in namespace `floor`, which the operator leaves alone.
            .args(["--namespaces", "default"])
            .env("KUBECONFIG", dir.join("kubeconfig"))
            .env("APIKEY_OPERATOR_LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("operator.log"))?)
            .spawn()?,
    ))
}
