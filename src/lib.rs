//! apikey-operator: mints, stores, distributes and rotates API keys for Kubernetes
//! workloads. This crate also carries the dev cluster the operator is tested against.

pub mod api;
pub mod controller;
pub mod devcluster;
pub mod issuer;
pub mod store;
