//! One integration-test binary (fast to link): every capability is a module.

mod api;
mod devcluster;
mod support;
