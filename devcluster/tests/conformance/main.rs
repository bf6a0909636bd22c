//! Conformance of the dev cluster with kube-apiserver, through the real kube client,
//! kube-runtime and kubectl. One test binary (fast to link): a module per capability.

mod auth;
mod bootstrap;
mod cel_cost;
mod controller;
mod crd;
mod deletion;
mod hooks;
mod kubectl;
mod list_watch;
mod objects;
mod support;
mod workloads;
