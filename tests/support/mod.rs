//! The workspace's shared harness, and the invariant checker of the rotation protocol.

pub mod invariants;

pub use apikey_testkit::*;
