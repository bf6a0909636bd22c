//! One integration-test binary (fast to link): every capability is a module. The dev
//! cluster's own conformance tests live with it, in `devcluster/tests/`.

mod api;
mod controller;
mod support;
