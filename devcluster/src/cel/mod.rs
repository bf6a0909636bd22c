//! What kube-apiserver checks of CEL validation rules when a CRD is registered: that each
//! rule compiles and type-checks against its schema, and that its estimated cost is within
//! budget. Evaluation of the rules on custom objects is `kube-cel`'s (see `schema.rs`).

mod decl;
mod estimate;
mod functions;
mod range;
mod rules;
#[cfg(test)]
mod tests;

pub use estimate::Release;
pub use rules::check_schema;
