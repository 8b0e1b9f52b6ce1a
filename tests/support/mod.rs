//! Helpers shared by the integration tests. Each test binary includes them with `mod support;`.

pub mod daemon;
pub mod http_sink;
pub mod rig;
pub mod sink;
