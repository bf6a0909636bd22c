//! The ApiKey controller end to end on the dev cluster, through kube-runtime.

mod aws;
mod aws_iam;
mod bad_input;
mod chart;
mod consumers;
mod correctness;
mod events;
mod gitops;
mod ha;
mod harness;
mod http_issuer;
mod issuers;
mod lifecycle;
mod matrix;
mod plugin;
mod process;
mod readme;
mod recovery;
mod scope;
mod templates;
mod user_surface;
mod vault;
mod zero_downtime;
