//! One integration-test binary (fast to link): every capability is a module.

mod api;
mod controller;
mod devcluster;
mod support;
