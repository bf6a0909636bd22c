//! The failpoint of a `Step` run: after the n-th step (waits apart) of one ApiKey it
//! fires, and it holds that reconcile until released. A crash never releases it: the
//! operator holding it is dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use apikey_operator::controller::failpoints::AfterStep;
use futures::FutureExt;
use tokio::sync::watch;

pub struct Failpoint {
    fired: watch::Sender<u64>,
    released: watch::Sender<bool>,
    /// The steps that have ended, in order.
    ended: watch::Sender<Vec<String>>,
}

impl Failpoint {
    pub fn new() -> Self {
        Failpoint {
            fired: watch::Sender::new(0),
            released: watch::Sender::new(false),
            ended: watch::Sender::new(Vec::new()),
        }
    }

    /// Counts up once it has fired (as the dev cluster's fault counter does).
    pub fn fired(&self) -> watch::Receiver<u64> {
        self.fired.subscribe()
    }

    /// Waits until `step` has ended (and the failpoint, if that was its step, fired).
    pub async fn ended(&self, step: &str) {
        let mut ended = self.ended.subscribe();
        let _ = ended.wait_for(|e| e.iter().any(|s| s == step)).await;
    }

    /// Lets the held reconcile go on.
    pub fn release(&self) {
        self.released.send_replace(true);
    }

    /// The hook that fires after step `n` (from 0) of ApiKey `apikey`.
    pub fn after_step(&self, apikey: &str, n: usize) -> AfterStep {
        let steps = AtomicUsize::new(0);
        let (apikey, fired) = (apikey.to_string(), self.fired.clone());
        let (released, ended) = (self.released.subscribe(), self.ended.clone());
        AfterStep(Arc::new(move |name, step| {
            if name != apikey {
                return futures::future::ready(()).boxed();
            }
            let this = steps.fetch_add(1, Ordering::SeqCst) == n;
            if this {
                eprintln!("failpoint: held after step {n} ({step}) of {name}");
                fired.send_modify(|f| *f += 1);
            }
            ended.send_modify(|e| e.push(step.to_string()));
            if !this {
                return futures::future::ready(()).boxed();
            }
            let mut released = released.clone();
            async move {
                let _ = released.wait_for(|r| *r).await;
            }
            .boxed()
        }))
    }
}
