//! Reading a spec file: `load` parses it and remembers where every key sits,
//! `validate` checks it and lowers it into a desired `model::Deployment`.
//!
//! Apart from reading the spec file (and files it names), nothing here does
//! I/O; no environment variable or secret is read here.

pub mod expression;
pub mod file;
pub mod load;
mod syntax;
pub mod validate;

pub use load::{Loaded, load, load_str};
pub use validate::Validated;
