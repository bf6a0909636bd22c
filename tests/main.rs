//! One integration-test binary (fast to link): every capability is a module.

mod devcluster;
mod support;
