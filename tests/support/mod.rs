//! Helpers shared by the integration tests. Each test binary includes them with `mod support;`.

pub mod rig;
