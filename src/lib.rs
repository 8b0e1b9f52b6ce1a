//! selfheal: a watchdog that keeps a Linux mail server's services running and alerts the admin
//! only when it cannot.

pub mod alert;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod diagnose;
pub mod engine;
pub mod manager;
pub mod metrics;
pub mod policy;
pub mod probe;
pub mod store;
pub mod web;
