//! The failpoint of a `Step` run: after the n-th step that acts on one ApiKey it fires,
//! and it holds that reconcile until released. A crash never releases it: the operator
//! holding it is dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use apikey_operator::controller::failpoints::AfterStep;
use futures::FutureExt;
use tokio::sync::watch;

pub struct Failpoint {
    fired: watch::Sender<u64>,
    released: watch::Sender<bool>,
}

impl Failpoint {
    pub fn new() -> Self {
        Failpoint {
            fired: watch::Sender::new(0),
            released: watch::Sender::new(false),
        }
    }

    /// Counts up once it has fired (as the dev cluster's fault counter does).
    pub fn fired(&self) -> watch::Receiver<u64> {
        self.fired.subscribe()
    }

    /// Lets the held reconcile go on.
    pub fn release(&self) {
        self.released.send_replace(true);
    }

    /// The hook that fires after step `n` (from 0) of ApiKey `apikey`.
    pub fn after_step(&self, apikey: &str, n: usize) -> AfterStep {
        let steps = AtomicUsize::new(0);
        let (apikey, fired) = (apikey.to_string(), self.fired.clone());
        let released = self.released.subscribe();
        AfterStep(Arc::new(move |name, step| {
            if name != apikey || steps.fetch_add(1, Ordering::SeqCst) != n {
                return futures::future::ready(()).boxed();
            }
            eprintln!("failpoint: held after step {n} ({step}) of {name}");
            fired.send_modify(|f| *f += 1);
            let mut released = released.clone();
            async move {
                let _ = released.wait_for(|r| *r).await;
            }
            .boxed()
        }))
    }
}
