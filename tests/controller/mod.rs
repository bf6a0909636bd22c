//! The ApiKey controller end to end on the dev cluster, through kube-runtime.

mod correctness;
mod events;
mod harness;
mod lifecycle;
