//! pgspec: declarative reconciliation of PostgreSQL deployments in Docker.
//!
//! The pipeline is load → validate → observe → diff → render/save → apply;
//! see ARCHITECTURE.md for which module owns each step.

// Only `output` writes to stdout, and logs go through tracing.
#![warn(clippy::print_stdout, clippy::print_stderr)]

pub mod apply;
pub mod backup;
pub mod cli;
pub mod diag;
pub mod engine;
pub mod import;
pub mod live;
pub mod lock;
pub mod model;
pub mod output;
pub mod plan;
pub mod secret;
pub mod spec;
pub mod sql;
pub mod tls;
pub mod units;
