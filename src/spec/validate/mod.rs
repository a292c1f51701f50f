//! Semantic checks of a loaded spec, then lowering into the desired
//! [`Deployment`](crate::model::Deployment).
//!
//! `check` gathers every finding (errors and warnings) with its key path
//! and span before anything is printed. Lowering is the single place where
//! the file format becomes the model: defaults are applied, shorthands
//! expanded, privileges normalised and index statements built. Nothing here
//! does I/O; secrets stay references and nothing is resolved.
//!
//! The checks are grouped by the section of the spec they read (`postgres`,
//! `settings`, `roles`, `databases`, `indexes`, `pooler`, `backup`), all
//! methods of the one `checker::Checker`; `lower` builds the model.

mod access;
mod backup;
mod checker;
mod databases;
mod indexes;
mod lower;
mod monitoring;
mod pooler;
mod postgres;
mod replicas;
mod roles;
mod settings;
#[cfg(test)]
mod tests;
mod tls;
#[cfg(test)]
mod tls_tests;

use crate::diag::Diagnostics;
use crate::model::Desired;
use crate::spec::load::Loaded;

pub(crate) use checker::check;
pub use lower::index_definition;
pub use settings::setting_text;

/// A spec that passed every check: the desired state, plus the warnings
/// found on the way (empty when there were none).
#[derive(Debug, Clone)]
pub struct Validated {
    pub spec: Desired,
    pub warnings: Diagnostics,
}

impl Loaded {
    /// Checks the spec's meaning and lowers it. Returns every error (and
    /// warning) at once, or the desired spec with its warnings.
    pub fn validate(self) -> Result<Validated, Diagnostics> {
        let mut diagnostics = self.diagnostics();
        diagnostics.items = check(&self);
        diagnostics.sort();
        if diagnostics.has_errors() {
            return Err(diagnostics);
        }
        let spec = lower::lower(&self);
        Ok(Validated {
            spec,
            warnings: diagnostics,
        })
    }
}
