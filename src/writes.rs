//! Every write the operator makes names it as the field manager, so `managedFields` on
//! objects users also apply from Git (consumer workloads, Secrets) say which fields are
//! the operator's, and GitOps tools leave them be.

use kube::api::{PatchParams, PostParams};

pub const MANAGER: &str = "apikey-operator";

/// A merge, JSON or status patch.
pub fn patch() -> PatchParams {
    PatchParams {
        field_manager: Some(MANAGER.into()),
        ..PatchParams::default()
    }
}

/// A server-side apply that takes over the fields it sets.
pub fn apply() -> PatchParams {
    PatchParams::apply(MANAGER).force()
}

/// A create or replace.
pub fn post() -> PostParams {
    PostParams {
        field_manager: Some(MANAGER.into()),
        ..PostParams::default()
    }
}
