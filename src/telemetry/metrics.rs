//! What `/metrics` serves (Prometheus text format, prometheus-client): rotations and
//! external requests as counters, per-ApiKey key age, next rotation and readiness as
//! gauges computed at scrape time, and whether this replica leads.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::controller::clock::Clock;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RotationLabels {
    namespace: String,
    name: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IssuerLabels {
    issuer: String,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    store: String,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyLabels {
    namespace: String,
    name: String,
}

/// How a rotation attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RotationResult {
    /// The new key is current and distributed.
    Success,
    /// A rotation step failed (it is retried, or waits for a fix).
    Failure,
    /// A minted key was dropped instead of promoted.
    Abandoned,
}

/// What the gauges of one ApiKey show, as of its last reconcile.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KeyFacts {
    pub issued_at: Option<jiff::Timestamp>,
    pub next_rotation: Option<jiff::Timestamp>,
    pub ready: bool,
}

/// The operator's metrics; cheap to share, safe to update from any task.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    rotations: Family<RotationLabels, Counter>,
    reconcile_duration: Histogram,
    issuer_requests: Family<IssuerLabels, Counter>,
    store_requests: Family<StoreLabels, Counter>,
    leader: Gauge,
    events_dropped: Counter,
    keys: Arc<Keys>,
}

impl Metrics {
    pub fn new(clock: Arc<Clock>) -> Metrics {
        let mut registry = Registry::default();
        let rotations = Family::default();
        registry.register(
            "apikey_rotations",
            "Rotation attempts by ApiKey and result (success, failure, abandoned)",
            rotations.clone(),
        );
        let reconcile_duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        registry.register(
            "apikey_reconcile_duration_seconds",
            "How long one reconcile of an ApiKey took",
            reconcile_duration.clone(),
        );
        let issuer_requests = Family::default();
        registry.register(
            "apikey_issuer_requests",
            "Requests to issuers by issuer and outcome",
            issuer_requests.clone(),
        );
        let store_requests = Family::default();
        registry.register(
            "apikey_store_requests",
            "Requests to key stores by store and outcome",
            store_requests.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "apikey_operator_leader",
            "1 while this replica leads (acts on ApiKeys), 0 while it waits",
            leader.clone(),
        );
        let events_dropped = Counter::default();
        registry.register(
            "apikey_events_dropped",
            "Events not written because too many were waiting (the API server is slow or down)",
            events_dropped.clone(),
        );
        let keys = Arc::new(Keys {
            clock,
            facts: Mutex::default(),
        });
        registry.register_collector(Box::new(keys.clone()));
        Metrics {
            registry,
            rotations,
            reconcile_duration,
            issuer_requests,
            store_requests,
            leader,
            events_dropped,
            keys,
        }
    }

    pub fn rotation(&self, namespace: &str, name: &str, result: RotationResult) {
        let result = match result {
            RotationResult::Success => "success",
            RotationResult::Failure => "failure",
            RotationResult::Abandoned => "abandoned",
        };
        let labels = RotationLabels {
            namespace: namespace.into(),
            name: name.into(),
            result,
        };
        self.rotations.get_or_create(&labels).inc();
    }

    pub fn reconciled(&self, took: std::time::Duration) {
        self.reconcile_duration.observe(took.as_secs_f64());
    }

    pub fn issuer_request(&self, issuer: &str, code: &'static str) {
        let labels = IssuerLabels {
            issuer: issuer.into(),
            code,
        };
        self.issuer_requests.get_or_create(&labels).inc();
    }

    pub fn store_request(&self, store: &str, code: &'static str) {
        let labels = StoreLabels {
            store: store.into(),
            code,
        };
        self.store_requests.get_or_create(&labels).inc();
    }

    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    pub fn event_dropped(&self) {
        self.events_dropped.inc();
    }

    /// Records what an ApiKey's gauges show; `None` removes them (the ApiKey is gone).
    pub fn key(&self, namespace: &str, name: &str, facts: Option<KeyFacts>) {
        let mut all = self.keys.facts.lock().expect("lock");
        let at = (namespace.to_string(), name.to_string());
        match facts {
            Some(f) => {
                all.insert(at, f);
            }
            None => {
                all.remove(&at);
                let rotations = |result| RotationLabels {
                    namespace: namespace.into(),
                    name: name.into(),
                    result,
                };
                for result in ["success", "failure", "abandoned"] {
                    self.rotations.remove(&rotations(result));
                }
            }
        }
    }

    /// The text exposition format Prometheus scrapes.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Whether this replica may act: set by leader election (always, without it).
#[derive(Debug)]
pub struct Leadership(AtomicBool);

impl Default for Leadership {
    fn default() -> Self {
        Leadership(AtomicBool::new(true))
    }
}

impl Leadership {
    pub fn set(&self, leading: bool) {
        self.0.store(leading, Ordering::SeqCst);
    }

    pub fn leading(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// One gauge's value for an ApiKey (`None`: not shown).
type Reading<'a> = dyn Fn(&KeyFacts) -> Option<f64> + 'a;

/// Per-ApiKey gauges, computed at scrape time so key age is always current.
#[derive(Debug)]
struct Keys {
    clock: Arc<Clock>,
    facts: Mutex<BTreeMap<(String, String), KeyFacts>>,
}

impl Collector for Keys {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now = self.clock.now();
        let facts = self.facts.lock().expect("lock");
        let seconds = |t: jiff::Timestamp| t.as_millisecond() as f64 / 1000.0;
        let gauges: [(&str, &str, &Reading); 3] = [
            (
                "apikey_key_age_seconds",
                "Seconds since the current key was issued",
                &|f| f.issued_at.map(|t| seconds(now) - seconds(t)),
            ),
            (
                "apikey_next_rotation_timestamp_seconds",
                "When the next rotation is due (Unix time)",
                &|f| f.next_rotation.map(seconds),
            ),
            (
                "apikey_ready",
                "1 when a usable key is in the ApiKey's Secret (its Ready condition)",
                &|f| Some(if f.ready { 1.0 } else { 0.0 }),
            ),
        ];
        for (name, help, value) in gauges {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for ((namespace, key), f) in facts.iter() {
                let Some(v) = value(f) else { continue };
                let labels = KeyLabels {
                    namespace: namespace.clone(),
                    name: key.clone(),
                };
                ConstGauge::new(v).encode(metric.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_gauges_follow_the_clock_and_go_with_their_apikey() {
        let clock = Arc::new(Clock::default());
        let metrics = Metrics::new(clock.clone());
        let issued = clock.now();
        metrics.key(
            "team",
            "billing",
            Some(KeyFacts {
                issued_at: Some(issued),
                next_rotation: None,
                ready: true,
            }),
        );
        metrics.rotation("team", "billing", RotationResult::Success);
        clock.advance(std::time::Duration::from_secs(90));
        let text = metrics.encode();
        assert!(
            text.contains(r#"apikey_key_age_seconds{namespace="team",name="billing"} 90"#),
            "{text}"
        );
        assert!(text.contains(r#"apikey_ready{namespace="team",name="billing"} 1"#));
        assert!(text.contains(
            r#"apikey_rotations_total{namespace="team",name="billing",result="success"} 1"#
        ));
        assert!(!text.contains("apikey_next_rotation_timestamp_seconds{"));

        metrics.key("team", "billing", None);
        let text = metrics.encode();
        assert!(!text.contains("billing"), "{text}");
    }
}
