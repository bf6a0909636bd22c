//! Scale benchmark (BENCHMARKS.md): N ApiKeys (the reference issuer or a `generate` one,
//! the Kubernetes store) created at once by a Rust client with `--in-flight` requests in
//! flight, against a dev cluster, an operator and a reference issuer that each run as
//! their own process (the operator's memory is its own).
//!
//!   cargo bench --bench scale -- 10000 [--issuer http|generate] [--in-flight 64]
//!                                      [--steady 60] [--concurrency 16]
//!   cargo bench --bench scale -- 1000 --rotate --issuer-rps 50
//!   cargo bench --bench scale -- 10000 --runs 3     (the median of each ratio)
//!
//! Prints the time until all are Ready, the operator's and the dev cluster's peak RSS,
//! API writes per ApiKey by verb and resource (from the dev cluster's
//! `apiserver_request_total`), the writes in the `--steady` seconds after convergence,
//! CPU time per process, and the floor: the same writes on the same kinds, in per-key
//! sequences as the operator must make them, by a minimal client at the operator's
//! concurrency (three ways: the writes alone, with the operator's Events, and timed
//! from the first create as the operator's time is). With `--rotate`, it then asks
//! every ApiKey to rotate at once and compares the time taken with what the issuer's
//! rate limit (`--issuer-rps`, at the issuer and in the KeyIssuer) allows.

mod floor;
mod processes;
mod readiness;
mod repeat;
mod rotation;

use std::time::{Duration, Instant};

use apikey_operator::api::apikey::ApiKey;
use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, PostParams};
use serde_json::json;

use self::processes::{
    HttpIssuer, cpu_seconds, delta, free_local_addr, peak_rss_mib, request_totals, sample,
    start_cluster, start_operator, start_reference_issuer,
};

const BIN: &str = env!("CARGO_BIN_EXE_apikey-operator");

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

struct Args {
    apikeys: usize,
    in_flight: usize,
    steady: u64,
    /// The operator's `--concurrency` (its default: 16); the floor runs as many key
    /// sequences at once.
    concurrency: usize,
    /// `http` (the reference issuer) or `generate`.
    issuer: String,
    rotate: bool,
    issuer_rps: Option<u32>,
    runs: usize,
}

const USAGE: &str = "usage: scale [N] [--issuer http|generate] [--in-flight K] [--steady S] \
    [--concurrency C] [--rotate] [--issuer-rps R] [--runs R]";

fn args() -> Args {
    let mut a = Args {
        apikeys: 1000,
        in_flight: 64,
        steady: 60,
        concurrency: 16,
        issuer: "http".into(),
        rotate: false,
        issuer_rps: None,
        runs: 1,
    };
    let mut it = std::env::args().skip(1).filter(|s| s != "--bench");
    while let Some(arg) = it.next() {
        let mut value = || it.next().expect(USAGE);
        let number = |v: String| v.parse::<u64>().expect(USAGE);
        match arg.as_str() {
            "--in-flight" => a.in_flight = number(value()) as usize,
            "--steady" => a.steady = number(value()),
            "--concurrency" => a.concurrency = number(value()) as usize,
            "--issuer" => a.issuer = value(),
            "--rotate" => a.rotate = true,
            "--issuer-rps" => a.issuer_rps = Some(number(value()) as u32),
            "--runs" => a.runs = number(value()) as usize,
            n => a.apikeys = n.parse().expect(USAGE),
        }
    }
    assert!(["http", "generate"].contains(&a.issuer.as_str()), "{USAGE}");
    assert!(
        !a.rotate || a.issuer == "http",
        "--rotate needs --issuer http"
    );
    a
}

fn post<K: serde::de::DeserializeOwned>(v: serde_json::Value) -> K {
    serde_json::from_value(v).expect("fixture")
}

/// An ApiKey of the benchmark: issued by `issuer`, rotating monthly with a one-second
/// overlap (so a requested rotation revokes its previous key at once).
fn apikey(name: &str, issuer: &str) -> serde_json::Value {
    json!({"apiVersion": "apikey.dev/v1alpha1", "kind": "ApiKey", "metadata": {"name": name},
        "spec": {"issuerRef": {"name": issuer}, "scopes": ["widgets:read"],
            "rotation": {"every": "720h", "overlap": "1s"}}})
}

#[tokio::main]
async fn main() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let a = args();
    if a.runs > 1 {
        return repeat::repeat(a.runs);
    }
    let dir = tempfile::tempdir()?;
    let issuer = match a.issuer.as_str() {
        "http" => Some(start_reference_issuer(a.issuer_rps)?),
        _ => None,
    };
    let http = issuer.as_ref().map(|(_, url)| HttpIssuer {
        url,
        requests_per_second: a.issuer_rps,
    });
    let (dev, client) = start_cluster(dir.path(), http).await?;
    let metrics_addr = free_local_addr()?;
    let operator = start_operator(dir.path(), a.concurrency, metrics_addr)?;
    let operator_metrics = format!("http://{metrics_addr}/metrics");
    let issuer_name = if issuer.is_some() { "widgetjar" } else { "gen" };
    let before = request_totals(&client).await?;
    // Every process on the two cores: the dev cluster, the operator, the reference
    // issuer and this client.
    let issuer_pid = issuer.as_ref().map(|(child, _)| child.0.id());
    let cpu_now = || {
        [
            cpu_seconds(dev.0.id()),
            cpu_seconds(operator.0.id()),
            issuer_pid.map_or(0.0, cpu_seconds),
            cpu_seconds(std::process::id()),
        ]
    };
    let cpu_before = cpu_now();

    let started = Instant::now();
    let ready = readiness::all_ready(client.clone(), a.apikeys);
    let api: Api<ApiKey> = Api::namespaced(client.clone(), "default");
    futures::stream::iter(0..a.apikeys)
        .map(|i| {
            let api = api.clone();
            async move {
                api.create(
                    &PostParams::default(),
                    &post(apikey(&format!("k{i}"), issuer_name)),
                )
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
    let cluster_rss = peak_rss_mib(dev.0.id());
    let cpu: Vec<f64> = cpu_now()
        .iter()
        .zip(cpu_before)
        .map(|(now, before)| now - before)
        .collect();
    let after = request_totals(&client).await?;
    let reconciles = sample(&operator_metrics, "apikey_reconcile_duration_seconds_count").await?;

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
    let mut steady = delta(&after, &request_totals(&client).await?, WRITES);
    // Events are written beside the reconciles: some queued before convergence are
    // written after it. They are the convergence's, not the steady state's.
    let late_events = steady
        .remove(&("POST".into(), "events".into()))
        .unwrap_or(0)
        + steady
            .remove(&("PATCH".into(), "events".into()))
            .unwrap_or(0);

    let floor_of = |mix, creates| floor::floor(&client, a.apikeys, a.concurrency, mix, creates);
    let floor_time = floor_of(floor::Mix::Writes, floor::Creates::Untimed).await?;
    let floor_with_events = floor_of(floor::Mix::WritesAndEvents, floor::Creates::Untimed).await?;
    let floor_with_creates = floor_of(
        floor::Mix::Writes,
        floor::Creates::Timed {
            in_flight: a.in_flight,
        },
    )
    .await?;
    let rotated = match (&issuer, a.rotate) {
        (Some((_, url)), true) => {
            Some(rotation::rotate_all(&client, a.apikeys, a.in_flight, url).await?)
        }
        _ => None,
    };

    println!(
        "ApiKeys                       {} (issuer: {})",
        a.apikeys, a.issuer
    );
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
    println!("dev cluster peak RSS          {cluster_rss:.1} MiB");
    println!(
        "CPU until all Ready           dev cluster {:.1} s, operator {:.1} s, issuer {:.1} s, this client {:.1} s (of {:.1} s on two cores)",
        cpu[0],
        cpu[1],
        cpu[2],
        cpu[3],
        2.0 * converged.as_secs_f64()
    );
    println!("reconciles per ApiKey         {:.2}", per_key(reconciles));
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
        "floor                         {:.1} s (the same {} writes per key, {} keys at once)",
        floor_time.as_secs_f64(),
        floor::WRITES_PER_KEY,
        a.concurrency
    );
    println!(
        "operator / floor              {:.2}",
        converged.as_secs_f64() / floor_time.as_secs_f64()
    );
    println!(
        "floor with the Events         {:.1} s (and the operator's {} Event per key)",
        floor_with_events.as_secs_f64(),
        floor::EVENTS.len()
    );
    println!(
        "operator / that floor         {:.2}",
        converged.as_secs_f64() / floor_with_events.as_secs_f64()
    );
    println!(
        "floor with the creates        {:.1} s (timed from the first of {} creates, {} in flight, as the operator's time is)",
        floor_with_creates.as_secs_f64(),
        a.apikeys,
        a.in_flight
    );
    println!(
        "operator / that floor         {:.2}",
        converged.as_secs_f64() / floor_with_creates.as_secs_f64()
    );
    println!("writes in the {} s after convergence:", a.steady);
    if steady.is_empty() {
        println!("  none");
    }
    for ((verb, resource), n) in &steady {
        println!("  {verb:<6} {resource:<20} {n}");
    }
    println!("  and {late_events} Events queued before convergence, written after it");
    if let Some(r) = rotated {
        let rps = f64::from(a.issuer_rps.unwrap_or(0));
        let n = a.apikeys as f64;
        println!("mass rotation of all {} ApiKeys", a.apikeys);
        println!(
            "  took                        {:.1} s",
            r.took.as_secs_f64()
        );
        println!(
            "  issuer requests             {} ({:.2} per rotation), {} refused by the limit",
            r.requests,
            r.requests as f64 / n,
            r.refused
        );
        if rps > 0.0 {
            let bound = r.requests as f64 / rps;
            println!(
                "  rate-limit bound            {bound:.1} s (those requests at {rps} per second)"
            );
            println!(
                "  took / bound                {:.2}",
                r.took.as_secs_f64() / bound
            );
        }
    }
    Ok(())
}
