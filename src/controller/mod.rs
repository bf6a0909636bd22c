//! The ApiKey controller. So far its functional core: `rotation::decide`, the next step
//! of the rotation protocol from observed state. The reconciler that gathers `Observed`
//! and performs each step is the next piece of work (issue: rotation controller).

pub mod rotation;
