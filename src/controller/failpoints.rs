//! Failpoints at the boundaries between a rotation's steps, compiled in for tests only
//! (the `failpoints` feature, which the operator's own tests turn on). The fault matrix
//! crashes the operator, or deletes the ApiKey, exactly there: after one step has acted
//! and before the next is decided. The steps that write no status (a key stored but not
//! yet promoted) have no request of their own to fail at.

use std::sync::Arc;

use futures::future::BoxFuture;

/// Called after every step that succeeded, waits (`WaitForRollout`, `Idle`) apart, with
/// the ApiKey's name and the step's. The reconcile waits for the future it returns: a
/// test holds it there while it acts, or drops the operator as a crash would.
#[derive(Clone)]
pub struct AfterStep(pub Arc<Hook>);

pub type Hook = dyn Fn(&str, &str) -> BoxFuture<'static, ()> + Send + Sync;

impl std::fmt::Debug for AfterStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AfterStep")
    }
}
