//! Events in the core/v1 form client-go's `record.EventRecorder` writes (cert-manager's
//! too): with `firstTimestamp`, `lastTimestamp` and `count`, so `kubectl get events
//! --sort-by=.lastTimestamp` orders them. kube's `Recorder` writes events.k8s.io/v1,
//! which refuses those fields on create, so its events sort as if they had no time.

use std::collections::HashMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event as CoreEvent, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::Patch;
use kube::runtime::events::{Event, EventType};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::Mutex;

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

pub struct EventRecorder {
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
    /// `component` names the controller; `instance` this replica (the pod name).
    pub fn new(client: Client, component: &str, instance: Option<String>) -> Self {
        EventRecorder {
            client,
            component: component.into(),
            instance: instance.unwrap_or_else(|| component.into()),
            recent: Mutex::new(Recent {
                written: HashMap::new(),
                pruned: Timestamp::now(),
            }),
        }
    }

    /// Writes `ev` about `regarding`, or counts it on the same event written less than
    /// ten minutes ago. Events of cluster-scoped objects go to `default`, as client-go's.
    pub async fn publish(&self, ev: &Event, regarding: &ObjectReference) -> kube::Result<()> {
        let now = Timestamp::now();
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
        // Not held across requests: one slow write must not hold up every ApiKey's events.
        let earlier = {
            let mut recent = self.recent.lock().await;
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
                    self.remember(key, namespace, name, count + 1, now).await;
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
        self.remember(key, namespace, name, 1, now).await;
        Ok(())
    }

    async fn remember(
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
        self.recent.lock().await.written.insert(key, written);
    }
}
