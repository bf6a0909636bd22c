//! Test hooks: injected failures, request counters and cutting open watches.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

/// A failure to inject for requests matching a verb (`get`, `list`, `watch`, `create`,
/// `update`, `patch`, `delete`, `deletecollection`) and a resource (`secrets`,
/// `apikeys`; `*` for any).
#[derive(Clone, Debug)]
pub struct Fault {
    pub verb: String,
    pub resource: String,
    pub status: Option<u16>,
    pub delay: Option<Duration>,
    /// How many requests it applies to; `None` for all until cleared.
    pub times: Option<usize>,
    /// Matching requests to let through before it applies (fail the n+1-th write).
    pub after: usize,
    /// The request takes effect before `status` is answered, as when a write reached
    /// etcd and the answer timed out (a 504 from a busy API server).
    pub applied: bool,
}

impl Fault {
    pub fn on(verb: &str, resource: &str) -> Self {
        Fault {
            verb: verb.into(),
            resource: resource.into(),
            status: None,
            delay: None,
            times: None,
            after: 0,
            applied: false,
        }
    }

    pub fn after(mut self, n: usize) -> Self {
        self.after = n;
        self
    }

    pub fn status(mut self, code: u16) -> Self {
        self.status = Some(code);
        self
    }

    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = Some(d);
        self
    }

    /// Lets the request take effect, then answers `status` instead of its result.
    pub fn applied(mut self) -> Self {
        self.applied = true;
        self
    }

    pub fn times(mut self, n: usize) -> Self {
        self.times = Some(n);
        self
    }

    fn matches(&self, verb: &str, resource: &str) -> bool {
        (self.verb == "*" || self.verb == verb)
            && (self.resource == "*" || self.resource == resource)
    }
}

/// One counted request: verb, resource (empty for discovery and other non-resource
/// paths) and the client's User-Agent.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RequestKey {
    pub verb: String,
    pub resource: String,
    pub user_agent: String,
}

pub struct Hooks {
    faults: Mutex<Vec<Fault>>,
    counts: Mutex<BTreeMap<RequestKey, u64>>,
    denials: Mutex<Vec<String>>,
    cut: watch::Sender<u64>,
    /// How many injected faults have been applied so far.
    fired: watch::Sender<u64>,
}

impl Default for Hooks {
    fn default() -> Self {
        Hooks {
            faults: Mutex::default(),
            counts: Mutex::default(),
            denials: Mutex::default(),
            cut: watch::channel(0).0,
            fired: watch::channel(0).0,
        }
    }
}

impl Hooks {
    pub fn inject(&self, fault: Fault) {
        self.faults.lock().expect("lock").push(fault);
    }

    pub fn clear_faults(&self) {
        self.faults.lock().expect("lock").clear();
    }

    /// The fault to apply to this request, consuming one of its `times`.
    pub fn take_fault(&self, verb: &str, resource: &str) -> Option<Fault> {
        let mut faults = self.faults.lock().expect("lock");
        let i = faults.iter().position(|f| f.matches(verb, resource))?;
        if faults[i].after > 0 {
            faults[i].after -= 1;
            return None;
        }
        let fault = faults[i].clone();
        if let Some(n) = &mut faults[i].times {
            *n = n.saturating_sub(1);
            if *n == 0 {
                faults.remove(i);
            }
        }
        self.fired.send_modify(|n| *n += 1);
        Some(fault)
    }

    /// Counts the faults applied so far; a test waits on it to act right after one.
    pub fn faults_fired(&self) -> watch::Receiver<u64> {
        self.fired.subscribe()
    }

    pub fn count(&self, verb: &str, resource: &str, user_agent: &str) {
        let key = RequestKey {
            verb: verb.into(),
            resource: resource.into(),
            user_agent: user_agent.into(),
        };
        *self.counts.lock().expect("lock").entry(key).or_default() += 1;
    }

    /// Requests so far with this verb and resource, from any client.
    pub fn requests(&self, verb: &str, resource: &str) -> u64 {
        self.counts
            .lock()
            .expect("lock")
            .iter()
            .filter(|(k, _)| k.verb == verb && k.resource == resource)
            .map(|(_, n)| n)
            .sum()
    }

    /// Records a request RBAC refused (its 403 message).
    pub fn deny(&self, message: String) {
        self.denials.lock().expect("lock").push(message);
    }

    /// The 403 messages of every request RBAC refused so far.
    pub fn denials(&self) -> Vec<String> {
        self.denials.lock().expect("lock").clone()
    }

    /// `/metrics`: kube-apiserver's `apiserver_request_total`, by verb (as kube-apiserver
    /// names them: POST, PUT, PATCH, …) and resource.
    pub fn metrics_text(&self) -> String {
        let mut totals: BTreeMap<(&'static str, String), u64> = BTreeMap::new();
        for (k, n) in self.counts.lock().expect("lock").iter() {
            let verb = match k.verb.as_str() {
                "create" => "POST",
                "update" => "PUT",
                "patch" => "PATCH",
                "delete" | "deletecollection" => "DELETE",
                "list" => "LIST",
                "watch" => "WATCH",
                "get" => "GET",
                _ => "OTHER",
            };
            *totals.entry((verb, k.resource.clone())).or_default() += n;
        }
        let mut out = String::from(
            "# HELP apiserver_request_total Counter of apiserver requests broken out for each verb and resource.\n# TYPE apiserver_request_total counter\n",
        );
        for ((verb, resource), n) in totals {
            out.push_str(&format!(
                "apiserver_request_total{{resource=\"{resource}\",verb=\"{verb}\"}} {n}\n"
            ));
        }
        out
    }

    pub fn request_counts(&self) -> BTreeMap<RequestKey, u64> {
        self.counts.lock().expect("lock").clone()
    }

    /// Ends every open watch stream (clients see EOF, as when an apiserver restarts).
    pub fn cut_watches(&self) {
        self.cut.send_modify(|n| *n += 1);
    }

    pub fn watch_cuts(&self) -> watch::Receiver<u64> {
        self.cut.subscribe()
    }
}
