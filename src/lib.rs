//! apikey-operator: mints, stores, distributes and rotates API keys for Kubernetes
//! workloads.

pub mod api;
pub mod aws;
pub mod controller;
pub mod generations;
pub mod https;
pub mod issuer;
pub mod messages;
pub mod pace;
pub mod plugin;
pub mod reference_issuer;
pub mod run;
#[cfg(feature = "devcluster")]
pub mod sandbox;
pub mod store;
pub mod telemetry;
pub mod writes;
