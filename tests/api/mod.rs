//! The apikey.dev/v1alpha1 API: committed CRDs, schema validation on the dev cluster,
//! and the examples users apply.

mod schema;
