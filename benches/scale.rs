//! Scale benchmark (BENCHMARKS.md): N ApiKeys (generate issuer, Kubernetes store) created
//! at once by a Rust client with `--in-flight` requests in flight, against a dev cluster
//! and an operator that each run as their own process (the operator's memory is its own).
//!
//!   cargo bench --bench scale -- 10000 [--in-flight 64] [--steady 60] [--concurrency 16]
//!
//! Prints the time until all are Ready, the operator's peak RSS, API writes per ApiKey by
//! verb and resource (from the dev cluster's `apiserver_request_total`), the writes in the
//! `--steady` seconds after convergence, CPU time per process, and the floor: the same
//! writes on the same kinds, in per-key sequences as the operator must make them, by a
//! minimal client at the operator's concurrency.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use apikey_operator::api::apikey::ApiKey;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, conditions, wait::await_condition, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_apikey-operator");

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

struct Args {
    apikeys: usize,
    in_flight: usize,
    steady: u64,
    /// The operator's `--concurrency` (its default: 16); the floor runs as many key
    /// sequences at once.
    concurrency: usize,
}

fn args() -> Args {
    let mut a = Args {
        apikeys: 1000,
        in_flight: 64,
        steady: 60,
        concurrency: 16,
    };
    let mut it = std::env::args().skip(1).filter(|s| s != "--bench");
    while let Some(arg) = it.next() {
        let mut value = || it.next().and_then(|v| v.parse().ok()).expect("a number");
        match arg.as_str() {
            "--in-flight" => a.in_flight = value() as usize,
            "--steady" => a.steady = value(),
            "--concurrency" => a.concurrency = value() as usize,
            n => {
                a.apikeys = n
                    .parse()
                    .expect("usage: scale [N] [--in-flight K] [--steady S]")
            }
        }
    }
    a
}

/// A child process killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `apiserver_request_total` by (verb, resource).
async fn request_totals(client: &Client) -> Result<BTreeMap<(String, String), u64>> {
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
fn delta(
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

fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn post<K: serde::de::DeserializeOwned>(v: serde_json::Value) -> K {
    serde_json::from_value(v).expect("fixture")
}

/// CPU seconds (user + system) a process has used.
fn cpu_seconds(pid: u32) -> f64 {
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

async fn start_cluster(dir: &std::path::Path) -> Result<(Process, Client)> {
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
    Api::<apikey_operator::api::issuer::KeyIssuer>::namespaced(client.clone(), "default")
        .create(
            &PostParams::default(),
            &post(
                json!({"apiVersion": "apikey.dev/v1alpha1", "kind": "KeyIssuer",
                "metadata": {"name": "gen"},
                "spec": {"generate": {}, "allowedScopes": ["widgets:*"]}}),
            ),
        )
        .await?;
    Ok((dev, client))
}

fn start_operator(dir: &std::path::Path, concurrency: usize) -> Result<Process> {
    Ok(Process(
        Command::new(BIN)
            .args(["run", "--metrics-addr", "off", "--health-addr", "off"])
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

/// Resolves once `n` ApiKeys are Ready.
fn all_ready(client: Client, n: usize) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let api: Api<ApiKey> = Api::namespaced(client, "default");
        let mut ready = std::collections::HashSet::new();
        let mut stream = std::pin::pin!(watcher(api, Default::default()).applied_objects());
        while let Ok(Some(ak)) = stream.try_next().await {
            let is_ready = ak.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            });
            if is_ready {
                ready.insert(ak.name_any());
                if ready.len() >= n {
                    return;
                }
            }
        }
    })
}

/// The operator's writes for one key, made directly, in the same per-key order and mix
/// (a finalizer patch, four status writes, two Secret creates) on
/// objects of the same kinds, `concurrency` keys at a time, by a client doing nothing
/// else: what the API server makes those writes cost.
async fn floor(client: &Client, keys: usize, concurrency: usize) -> Result<Duration> {
    let apikeys: Api<ApiKey> = Api::namespaced(client.clone(), "floor");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "floor");
    // The objects exist first, as the benchmark's ApiKeys do before the operator starts.
    futures::stream::iter(0..keys)
        .map(|i| {
            let apikeys = apikeys.clone();
            async move {
                apikeys
                    .create(&PostParams::default(), &post(apikey(&format!("f{i}"))))
                    .await
            }
        })
        .buffer_unordered(64)
        .try_collect::<Vec<_>>()
        .await?;
    let started = Instant::now();
    futures::stream::iter(0..keys)
        .map(|i| {
            let (apikeys, secrets) = (apikeys.clone(), secrets.clone());
            async move {
                let name = format!("f{i}");
                let pp = PatchParams::default();
                let finalizer = json!({"metadata": {"finalizers": ["apikey.dev/cleanup"]}});
                apikeys.patch(&name, &pp, &Patch::Merge(&finalizer)).await?;
                for phase in ["Issuing", "Storing", "Distributing", "Ready"] {
                    let status = json!({"status": {"phase": phase, "rotationCount": 1,
                        "conditions": [{"type": "Ready", "status": "True", "reason": phase,
                            "message": "floor", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
                    apikeys
                        .patch_status(&name, &pp, &Patch::Merge(&status))
                        .await?;
                }
                for secret in [name.clone(), format!("{name}-apikey-state")] {
                    let s =
                        json!({"metadata": {"name": secret}, "stringData": {"api-key": "floor"}});
                    secrets.create(&PostParams::default(), &post(s)).await?;
                }
                Ok::<(), Box<dyn std::error::Error>>(())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(started.elapsed())
}

fn apikey(name: &str) -> serde_json::Value {
    json!({"apiVersion": "apikey.dev/v1alpha1", "kind": "ApiKey", "metadata": {"name": name},
        "spec": {"issuerRef": {"name": "gen"}, "scopes": ["widgets:read"],
            "rotation": {"every": "720h"}}})
}

#[tokio::main]
async fn main() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let a = args();
    let dir = tempfile::tempdir()?;
    let (dev, client) = start_cluster(dir.path()).await?;
    let operator = start_operator(dir.path(), a.concurrency)?;
    let before = request_totals(&client).await?;
    let cpu_before = (cpu_seconds(dev.0.id()), cpu_seconds(operator.0.id()));

    let started = Instant::now();
    let ready = all_ready(client.clone(), a.apikeys);
    let api: Api<ApiKey> = Api::namespaced(client.clone(), "default");
    futures::stream::iter(0..a.apikeys)
        .map(|i| {
            let api = api.clone();
            async move {
                api.create(&PostParams::default(), &post(apikey(&format!("k{i}"))))
                    .await?;
                Ok::<(), Box<dyn std::error::Error>>(())
            }
        })
        .buffer_unordered(a.in_flight)
        .try_collect::<Vec<()>>()
        .await?;
    let created = started.elapsed();
    ready.await?;
    let converged = started.elapsed();
    let rss = peak_rss_mib(operator.0.id());
    let cpu = (
        cpu_seconds(dev.0.id()) - cpu_before.0,
        cpu_seconds(operator.0.id()) - cpu_before.1,
    );
    let after = request_totals(&client).await?;

    const WRITES: &[&str] = &["POST", "PUT", "PATCH", "DELETE"];
    let mut converge = delta(&before, &after, WRITES);
    let reads = delta(&before, &after, &["GET", "LIST"]);
    // The benchmark's own creates are not the operator's.
    if let Some(n) = converge.get_mut(&("POST".into(), "apikeys".into())) {
        *n -= a.apikeys as u64;
    }
    converge.retain(|_, n| *n > 0);
    let per_key = |n: u64| n as f64 / a.apikeys as f64;
    let operator_writes: u64 = converge
        .iter()
        .filter(|((_, r), _)| r != "events")
        .map(|(_, n)| n)
        .sum();

    tokio::time::sleep(Duration::from_secs(a.steady)).await;
    let steady = delta(&after, &request_totals(&client).await?, WRITES);

    let floor_time = floor(&client, a.apikeys, a.concurrency).await?;

    println!("ApiKeys                       {}", a.apikeys);
    println!(
        "created in                    {:.1} s ({} in flight)",
        created.as_secs_f64(),
        a.in_flight
    );
    println!(
        "all Ready after               {:.1} s",
        converged.as_secs_f64()
    );
    println!("operator peak RSS             {rss:.1} MiB");
    println!(
        "CPU until all Ready           dev cluster {:.1} s, operator {:.1} s",
        cpu.0, cpu.1
    );
    println!(
        "writes per ApiKey (no events) {:.2}",
        per_key(operator_writes)
    );
    for ((verb, resource), n) in &converge {
        println!("  {verb:<6} {resource:<20} {:.2} per ApiKey", per_key(*n));
    }
    for ((verb, resource), n) in &reads {
        println!(
            "  {verb:<6} {resource:<20} {:.2} per ApiKey (read)",
            per_key(*n)
        );
    }
    println!(
        "floor                         {:.1} s (the same 7 writes per key, {} keys at once)",
        floor_time.as_secs_f64(),
        a.concurrency
    );
    println!(
        "operator / floor              {:.2}",
        converged.as_secs_f64() / floor_time.as_secs_f64()
    );
    println!("writes in the {} s after convergence:", a.steady);
    if steady.is_empty() {
        println!("  none");
    }
    for ((verb, resource), n) in &steady {
        println!("  {verb:<6} {resource:<20} {n}");
    }
    Ok(())
}
