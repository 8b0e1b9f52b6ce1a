//! selfheal: a watchdog that keeps a Linux mail server's services running and alerts the admin
//! only when it cannot.

pub mod config;
pub mod manager;
pub mod policy;
pub mod probe;
