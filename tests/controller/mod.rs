//! The ApiKey controller end to end on the dev cluster, through kube-runtime.

mod harness;
mod lifecycle;
