//! Dev cluster benchmark: N objects of one kind — create throughput, full-list latency
//! (unpaginated and in pages of 500), and whether a watch keeps up with the create burst.
//!
//! Run: `cargo bench --bench devcluster` (optionally `-- 20000` for another object count).

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ListParams, ObjectMeta, PostParams, WatchEvent, WatchParams};
use kube_devcluster::{Config, DevCluster};

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn config_map(i: usize) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(format!("cm-{i:05}")),
            labels: Some([("bench".to_string(), "yes".to_string())].into()),
            ..Default::default()
        },
        data: Some([("key".to_string(), "x".repeat(64))].into()),
        ..Default::default()
    }
}

fn summary(mut samples: Vec<Duration>) -> String {
    samples.sort();
    format!(
        "min {:.1} ms, median {:.1} ms, max {:.1} ms",
        samples[0].as_secs_f64() * 1e3,
        samples[samples.len() / 2].as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3
    )
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000);
    let cluster = DevCluster::start(Config::default())
        .await
        .expect("dev cluster");
    let client = cluster.client().await.expect("client");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": "bench"}})).unwrap(),
        )
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "bench");
    let rss_before = rss_mib();

    let rv = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let watch_api = cms.clone();
    let watcher = tokio::spawn(async move {
        let mut stream = watch_api
            .watch(&WatchParams::default().timeout(600), &rv)
            .await
            .unwrap()
            .boxed();
        let mut added = 0;
        while let Some(ev) = stream.try_next().await.unwrap() {
            if let WatchEvent::Added(_) = ev {
                added += 1;
                if added == n {
                    return Instant::now();
                }
            }
        }
        panic!("watch ended after {added} events");
    });

    let start = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let cms = cms.clone();
            async move {
                cms.create(&PostParams::default(), &config_map(i))
                    .await
                    .unwrap()
            }
        })
        .buffer_unordered(64)
        .for_each(|_| async {})
        .await;
    let created = start.elapsed();
    let last_event = watcher.await.unwrap();
    let watch_lag = last_event.saturating_duration_since(start + created);

    let mut full = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let list = cms.list(&ListParams::default()).await.unwrap();
        assert_eq!(list.items.len(), n);
        full.push(t.elapsed());
    }
    let mut paged = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let mut count = 0;
        let mut token: Option<String> = None;
        loop {
            let mut lp = ListParams::default().limit(500);
            if let Some(c) = &token {
                lp = lp.continue_token(c);
            }
            let page = cms.list(&lp).await.unwrap();
            count += page.items.len();
            token = page.metadata.continue_.filter(|c| !c.is_empty());
            if token.is_none() {
                break;
            }
        }
        assert_eq!(count, n);
        paged.push(t.elapsed());
    }
    let mut selected = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let list = cms
            .list(&ListParams::default().fields("metadata.name=cm-00042"))
            .await
            .unwrap();
        assert_eq!(list.items.len(), 1);
        selected.push(t.elapsed());
    }

    println!(
        "dev cluster benchmark: {n} ConfigMaps in one namespace (in-process server + kube client)"
    );
    println!(
        "  create burst (64 in flight): {:.2} s, {:.0} objects/s",
        created.as_secs_f64(),
        n as f64 / created.as_secs_f64()
    );
    println!(
        "  watch: all {n} ADDED events received {:.1} ms after the last create returned",
        watch_lag.as_secs_f64() * 1e3
    );
    println!("  full list, unpaginated:      {}", summary(full));
    println!("  full list, pages of 500:     {}", summary(paged));
    println!("  field-selector list (1 hit): {}", summary(selected));
    println!(
        "  process RSS: {rss_before:.0} MiB before, {:.0} MiB after",
        rss_mib()
    );
}
