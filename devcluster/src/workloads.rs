//! A rollout simulator standing in for the Deployment, StatefulSet and DaemonSet
//! controllers: after a pod-template change the status first shows the rollout in
//! progress (observedGeneration caught up, old replicas still serving), then, after a
//! configurable delay, complete. Tests can hold a workload to simulate a stuck rollout.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use super::apiserver::{ApiServer, is_terminating};
use super::resources::StorageKey;
use super::store::{Change, ChangeKind, meta_str};

const MANAGER: &str = "kube-controller-manager";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
}

impl WorkloadKind {
    fn from_resource(resource: &str) -> Option<Self> {
        match resource {
            "deployments" => Some(WorkloadKind::Deployment),
            "statefulsets" => Some(WorkloadKind::StatefulSet),
            "daemonsets" => Some(WorkloadKind::DaemonSet),
            _ => None,
        }
    }

    fn key(self) -> StorageKey {
        let resource = match self {
            WorkloadKind::Deployment => "deployments",
            WorkloadKind::StatefulSet => "statefulsets",
            WorkloadKind::DaemonSet => "daemonsets",
        };
        StorageKey {
            group: "apps".into(),
            resource: resource.into(),
        }
    }
}

type WorkloadId = (WorkloadKind, String, String);

pub struct Workloads {
    delay: Duration,
    daemonset_nodes: i64,
    held: Mutex<HashSet<WorkloadId>>,
    /// Template hash each workload last completed a rollout of (by uid).
    completed: Mutex<HashMap<String, String>>,
}

fn template_hash(obj: &Value) -> String {
    let mut h = DefaultHasher::new();
    obj.pointer("/spec/template")
        .map(Value::to_string)
        .unwrap_or_default()
        .hash(&mut h);
    format!("{:010x}", h.finish() & 0xff_ffff_ffff)
}

fn replicas(obj: &Value) -> i64 {
    obj.pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

fn on_delete_strategy(obj: &Value) -> bool {
    obj.pointer("/spec/updateStrategy/type")
        .and_then(Value::as_str)
        == Some("OnDelete")
}

impl Workloads {
    pub fn new(delay: Duration, daemonset_nodes: i64) -> Self {
        Workloads {
            delay,
            daemonset_nodes,
            held: Mutex::default(),
            completed: Mutex::default(),
        }
    }

    pub fn hold(&self, kind: WorkloadKind, ns: &str, name: &str) {
        self.held
            .lock()
            .expect("lock")
            .insert((kind, ns.into(), name.into()));
    }

    /// Lets a held rollout complete now.
    pub fn release(&self, api: &ApiServer, kind: WorkloadKind, ns: &str, name: &str) {
        self.held
            .lock()
            .expect("lock")
            .remove(&(kind, ns.to_string(), name.to_string()));
        self.complete(api, kind, ns, name);
    }

    fn is_held(&self, kind: WorkloadKind, ns: &str, name: &str) -> bool {
        self.held
            .lock()
            .expect("lock")
            .contains(&(kind, ns.to_string(), name.to_string()))
    }

    pub fn on_change(self: &Arc<Self>, api: &Arc<ApiServer>, change: &Change) {
        let Some(kind) = WorkloadKind::from_resource(&change.key.resource) else {
            return;
        };
        if change.key.group != "apps" {
            return;
        }
        if change.kind == ChangeKind::Deleted {
            self.completed
                .lock()
                .expect("lock")
                .remove(meta_str(&change.object, "uid"));
            return;
        }
        let obj = &change.object;
        let generation = obj
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let observed = obj
            .pointer("/status/observedGeneration")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if observed >= generation || is_terminating(obj) {
            return;
        }
        let (ns, name) = (change.namespace().to_string(), change.name().to_string());
        let uid = meta_str(obj, "uid").to_string();
        let hash = template_hash(obj);
        let previous = self.completed.lock().expect("lock").get(&uid).cloned();
        let template_changed = previous.as_deref() != Some(hash.as_str());
        let paused = obj
            .pointer("/spec/paused")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let n = self.desired(kind, obj);
        let in_progress = template_changed && n > 0;
        {
            let mut st = api.lock();
            api.mutate(&mut st, &kind.key(), &ns, &name, MANAGER, true, |o| {
                o["status"] = if in_progress {
                    progressing_status(kind, o, generation, n, previous.as_deref(), &hash, paused)
                } else {
                    complete_status(kind, o, generation, n, &hash)
                };
            });
        }
        if !in_progress {
            self.completed.lock().expect("lock").insert(uid, hash);
            return;
        }
        let replaces_pods = previous.is_some();
        if paused || (replaces_pods && kind != WorkloadKind::Deployment && on_delete_strategy(obj))
        {
            // Paused workloads never roll by themselves; OnDelete ones create their first
            // pods but replace existing ones only when those are deleted.
            return;
        }
        let me = self.clone();
        let api = Arc::downgrade(api);
        let delay = self.delay;
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Some(api) = api.upgrade() {
                me.complete(&api, kind, &ns, &name);
            }
        });
    }

    fn desired(&self, kind: WorkloadKind, obj: &Value) -> i64 {
        match kind {
            WorkloadKind::DaemonSet => self.daemonset_nodes,
            _ => replicas(obj),
        }
    }

    /// Finishes the rollout of the workload's current template, unless held.
    fn complete(&self, api: &ApiServer, kind: WorkloadKind, ns: &str, name: &str) {
        if self.is_held(kind, ns, name) {
            return;
        }
        let mut st = api.lock();
        let Some(obj) = st.store.get(&kind.key(), ns, name) else {
            return;
        };
        let generation = obj
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let paused = obj
            .pointer("/spec/paused")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let uid = meta_str(&obj, "uid").to_string();
        let replaces_pods = self.completed.lock().expect("lock").contains_key(&uid);
        let on_delete = kind != WorkloadKind::Deployment && on_delete_strategy(&obj);
        if paused || (replaces_pods && on_delete) || is_terminating(&obj) {
            return;
        }
        let hash = template_hash(&obj);
        let n = self.desired(kind, &obj);
        api.mutate(&mut st, &kind.key(), ns, name, MANAGER, true, |o| {
            o["status"] = complete_status(kind, o, generation, n, &hash);
        });
        self.completed.lock().expect("lock").insert(uid, hash);
    }
}

fn revision(obj: &Value, hash: &str) -> String {
    format!("{}-{}", meta_str(obj, "name"), hash)
}

fn progressing_status(
    kind: WorkloadKind,
    obj: &Value,
    generation: i64,
    n: i64,
    previous: Option<&str>,
    hash: &str,
    paused: bool,
) -> Value {
    match kind {
        WorkloadKind::Deployment => {
            let (reason, status) = if paused {
                ("DeploymentPaused", "Unknown")
            } else {
                ("ReplicaSetUpdated", "True")
            };
            let old = if previous.is_some() { n } else { 0 };
            json!({
                "observedGeneration": generation,
                "replicas": old + if paused { 0 } else { 1 },
                "updatedReplicas": if paused { 0 } else { 1 }.min(n),
                "readyReplicas": old,
                "availableReplicas": old,
                "unavailableReplicas": if paused { 0 } else { 1 },
                "conditions": [
                    {"type": "Available", "status": if old > 0 { "True" } else { "False" },
                     "reason": if old > 0 { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" }},
                    {"type": "Progressing", "status": status, "reason": reason},
                ],
            })
        }
        WorkloadKind::StatefulSet => {
            let current = previous
                .map(|p| revision(obj, p))
                .unwrap_or_else(|| revision(obj, hash));
            let old = if previous.is_some() { n } else { 0 };
            json!({
                "observedGeneration": generation,
                "replicas": n,
                "readyReplicas": old,
                "currentReplicas": old,
                "updatedReplicas": 0,
                "availableReplicas": old,
                "currentRevision": current,
                "updateRevision": revision(obj, hash),
                "collisionCount": 0,
            })
        }
        WorkloadKind::DaemonSet => {
            let old = if previous.is_some() { n } else { 0 };
            json!({
                "observedGeneration": generation,
                "desiredNumberScheduled": n,
                "currentNumberScheduled": n,
                "numberReady": old,
                "updatedNumberScheduled": 0,
                "numberAvailable": old,
                "numberMisscheduled": 0,
            })
        }
    }
}

fn complete_status(kind: WorkloadKind, obj: &Value, generation: i64, n: i64, hash: &str) -> Value {
    match kind {
        WorkloadKind::Deployment => json!({
            "observedGeneration": generation,
            "replicas": n,
            "updatedReplicas": n,
            "readyReplicas": n,
            "availableReplicas": n,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
            ],
        }),
        WorkloadKind::StatefulSet => json!({
            "observedGeneration": generation,
            "replicas": n,
            "readyReplicas": n,
            "currentReplicas": n,
            "updatedReplicas": n,
            "availableReplicas": n,
            "currentRevision": revision(obj, hash),
            "updateRevision": revision(obj, hash),
            "collisionCount": 0,
        }),
        WorkloadKind::DaemonSet => json!({
            "observedGeneration": generation,
            "desiredNumberScheduled": n,
            "currentNumberScheduled": n,
            "numberReady": n,
            "updatedNumberScheduled": n,
            "numberAvailable": n,
            "numberMisscheduled": 0,
        }),
    }
}
