//! Events in the core/v1 form client-go's `record.EventRecorder` writes (cert-manager's
//! too): with `firstTimestamp`, `lastTimestamp` and `count`, so `kubectl get events
//! --sort-by=.lastTimestamp` orders them. kube's `Recorder` writes events.k8s.io/v1,
//! which refuses those fields on create, so its events sort as if they had no time.
//!
//! As client-go's recorder does, `publish` only queues the event: a reconcile does not
//! wait for its events to be written (they were 3 of its 13 requests in a row).

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event as CoreEvent, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::Patch;
use kube::runtime::events::{Event, EventType};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use crate::telemetry::Metrics;

/// How many events are written at once. Each lane writes in order, and all events about
/// one object take the same lane: they keep their order, and a repeat finds its first.
const LANES: usize = 8;

/// Events waiting in one lane. When a lane is full (the API server is slow or down), new
/// events are dropped and counted, as client-go's recorder drops rather than hold up the
/// controller.
const LANE_QUEUE: usize = 256;

/// A repeat within this long counts on the existing event instead of writing a new one
/// (client-go folds repeats within 10 minutes).
const FOLD_WINDOW: Duration = Duration::from_secs(600);

/// How often events older than the window are forgotten. Pruning on every event cost a
/// walk of every recent event each time: at 10,000 ApiKeys, a fifth of the operator's CPU.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// What makes two events the same occurrence, repeated.
#[derive(Hash, PartialEq, Eq)]
struct Occurrence {
    regarding: (Option<String>, Option<String>, Option<String>),
    type_: &'static str,
    reason: String,
    action: String,
    note: Option<String>,
}

struct Written {
    namespace: String,
    name: String,
    count: i32,
    last: Timestamp,
}

/// Queues events for the writer `EventRecorder::new` returns beside it.
pub struct EventRecorder {
    lanes: Vec<mpsc::Sender<Queued>>,
    metrics: Arc<Metrics>,
}

enum Queued {
    Event(Box<Publication>),
    /// Answered once every event queued before it in the lane is written (or failed).
    Flush(oneshot::Sender<()>),
}

struct Publication {
    ev: Event,
    regarding: ObjectReference,
    at: Timestamp,
}

/// Writes events and remembers them, to count repeats on the first.
struct Writer {
    client: Client,
    component: String,
    instance: String,
    recent: Mutex<Recent>,
}

/// The events written within the window (and some older ones, until the next prune).
struct Recent {
    written: HashMap<Occurrence, Written>,
    pruned: Timestamp,
}

fn within_window(now: Timestamp, then: Timestamp, window: Duration) -> bool {
    now.duration_since(then).unsigned_abs() < window
}

impl EventRecorder {
    /// `component` names the controller; `instance` this replica (the pod name). The
    /// future returned writes what is published; it runs as long as the recorder lives.
    pub fn new(
        client: Client,
        component: &str,
        instance: Option<String>,
        metrics: Arc<Metrics>,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let writer = Arc::new(Writer {
            client,
            component: component.into(),
            instance: instance.unwrap_or_else(|| component.into()),
            recent: Mutex::new(Recent {
                written: HashMap::new(),
                pruned: Timestamp::now(),
            }),
        });
        let (lanes, queues): (Vec<_>, Vec<_>) =
            (0..LANES).map(|_| mpsc::channel(LANE_QUEUE)).unzip();
        let writing = futures::future::join_all(
            queues
                .into_iter()
                .map(move |queue| write_lane(writer.clone(), queue)),
        );
        (EventRecorder { lanes, metrics }, async move {
            writing.await;
        })
    }

    /// Queues `ev` about `regarding`, timed now, and returns. Events of cluster-scoped
    /// objects go to `default`, as client-go's.
    pub fn publish(&self, ev: Event, regarding: ObjectReference) {
        let lane = BuildHasherDefault::<DefaultHasher>::default()
            .hash_one((&regarding.namespace, &regarding.name)) as usize
            % LANES;
        let queued = Queued::Event(Box::new(Publication {
            ev,
            regarding,
            at: Timestamp::now(),
        }));
        if let Err(mpsc::error::TrySendError::Full(Queued::Event(dropped))) =
            self.lanes[lane].try_send(queued)
        {
            self.metrics.event_dropped();
            tracing::warn!(
                reason = dropped.ev.reason,
                "event dropped: too many waiting to be written"
            );
        }
    }

    /// Waits until every event published before is written (or has failed).
    pub async fn flush(&self) {
        futures::future::join_all(self.lanes.iter().map(|lane| async move {
            let (done, written) = oneshot::channel();
            if lane.send(Queued::Flush(done)).await.is_ok() {
                let _ = written.await;
            }
        }))
        .await;
    }
}

async fn write_lane(writer: Arc<Writer>, mut queue: mpsc::Receiver<Queued>) {
    while let Some(queued) = queue.recv().await {
        match queued {
            Queued::Event(p) => {
                let Publication { ev, regarding, at } = *p;
                if let Err(e) = writer.write(&ev, &regarding, at).await {
                    tracing::warn!(error = %e, reason = ev.reason, "cannot publish event");
                }
            }
            Queued::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

impl Writer {
    /// Writes `ev` about `regarding`, timed `now`, or counts it on the same event written
    /// less than ten minutes before.
    async fn write(
        &self,
        ev: &Event,
        regarding: &ObjectReference,
        now: Timestamp,
    ) -> kube::Result<()> {
        let type_ = match ev.type_ {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        };
        let key = Occurrence {
            regarding: (
                regarding.namespace.clone(),
                regarding.name.clone(),
                regarding.uid.clone(),
            ),
            type_,
            reason: ev.reason.clone(),
            action: ev.action.clone(),
            note: ev.note.clone(),
        };
        let earlier = {
            let mut recent = self.recent.lock().expect("lock");
            if !within_window(now, recent.pruned, PRUNE_EVERY) {
                recent
                    .written
                    .retain(|_, w| within_window(now, w.last, FOLD_WINDOW));
                recent.pruned = now;
            }
            recent
                .written
                .get(&key)
                .filter(|w| within_window(now, w.last, FOLD_WINDOW))
                .map(|w| (w.namespace.clone(), w.name.clone(), w.count))
        };
        if let Some((namespace, name, count)) = earlier {
            let api: Api<CoreEvent> = Api::namespaced(self.client.clone(), &namespace);
            let repeat = json!({"count": count + 1, "lastTimestamp": Time(now)});
            match api
                .patch(&name, &crate::writes::patch(), &Patch::Merge(&repeat))
                .await
            {
                Ok(_) => {
                    self.remember(key, namespace, name, count + 1, now);
                    return Ok(());
                }
                // Expired or deleted meanwhile: write it afresh.
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let namespace = regarding.namespace.clone().unwrap_or("default".into());
        let name = format!(
            "{}.{:x}",
            regarding.name.as_deref().unwrap_or(&self.component),
            now.as_nanosecond()
        );
        let event = CoreEvent {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: regarding.clone(),
            related: ev.secondary.clone(),
            type_: Some(type_.into()),
            reason: Some(ev.reason.clone()),
            action: Some(ev.action.clone()),
            message: ev.note.clone(),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: None,
            }),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.instance.clone()),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            count: Some(1),
            ..Default::default()
        };
        Api::<CoreEvent>::namespaced(self.client.clone(), &namespace)
            .create(&crate::writes::post(), &event)
            .await?;
        self.remember(key, namespace, name, 1, now);
        Ok(())
    }

    fn remember(
        &self,
        key: Occurrence,
        namespace: String,
        name: String,
        count: i32,
        last: Timestamp,
    ) {
        let written = Written {
            namespace,
            name,
            count,
            last,
        };
        self.recent
            .lock()
            .expect("lock")
            .written
            .insert(key, written);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lane whose writer is stuck (here: never run) drops what does not fit, and
    /// counts it, instead of holding up the reconcile that publishes.
    #[tokio::test]
    async fn a_full_lane_drops_and_counts_instead_of_waiting() {
        let client =
            Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap();
        let metrics = Arc::new(Metrics::new(Default::default()));
        let (recorder, _never_written) = EventRecorder::new(client, "test", None, metrics.clone());
        let about = ObjectReference {
            namespace: Some("default".into()),
            name: Some("busy".into()),
            ..Default::default()
        };
        for n in 0..LANE_QUEUE + 2 {
            let ev = Event {
                type_: EventType::Normal,
                reason: "Tested".into(),
                note: Some(format!("event {n}")),
                action: "Test".into(),
                secondary: None,
            };
            recorder.publish(ev, about.clone());
        }
        assert!(
            metrics.encode().contains("apikey_events_dropped_total 2"),
            "{}",
            metrics.encode()
        );
    }
}
