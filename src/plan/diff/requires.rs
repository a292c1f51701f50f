//! Extensions that other extensions require (`requires` in their control
//! file, as `pg_available_extension_versions` reports it).
//!
//! `CREATE EXTENSION earthdistance` fails unless `cube` is installed. The
//! action that creates an extension therefore first creates, deepest first,
//! every extension it requires that is not installed, with the version and
//! schema the spec gives it when the spec names it too. Creating in the
//! action itself rather than relying on the order of actions keeps the
//! order right whatever the names sort like; each create checks first that
//! the extension is not installed (`Step::CreateExtension`), which makes the
//! required extension's own action (when the spec names it) a no-op. A
//! required extension the spec names is marked as pgspec's when this creates
//! it; one the spec does not name is not marked and is not reported as
//! unmanaged: it is there because a desired extension needs it.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{Database, Extension, ServerInfo, managed_mark};
use crate::plan::{Action, Change, Step};

/// The extensions `name` requires, transitively, deepest first.
fn required(name: &str, server: &ServerInfo) -> Vec<String> {
    fn visit(name: &str, server: &ServerInfo, seen: &mut BTreeSet<String>, out: &mut Vec<String>) {
        let Some(available) = server.available_extensions.get(name) else {
            return;
        };
        for requirement in &available.requires {
            if seen.insert(requirement.clone()) {
                visit(requirement, server, seen, out);
                out.push(requirement.clone());
            }
        }
    }
    let mut seen = BTreeSet::from([name.to_owned()]);
    let mut out = Vec::new();
    visit(name, server, &mut seen, &mut out);
    out
}

/// Puts the creation of the extensions `action`'s extension requires, and
/// that are not installed, in front of its steps.
pub fn create_required_first(
    deployment: &str,
    action: &mut Action,
    want: &Database,
    name: &str,
    installed: &BTreeMap<String, Extension>,
    server: Option<&ServerInfo>,
) {
    let Some(server) = server else { return };
    let missing: Vec<String> = required(name, server)
        .into_iter()
        .filter(|requirement| !installed.contains_key(requirement))
        .collect();
    if missing.is_empty() {
        return;
    }
    let steps: Vec<Step> = missing
        .iter()
        .map(|requirement| {
            let wanted = want.extensions.get(requirement);
            Step::CreateExtension {
                database: want.name.clone(),
                name: requirement.clone(),
                statement: super::create_extension_statement(requirement, wanted),
                // Marked only when the spec names it: then it is pgspec's
                // to prune once it leaves the spec.
                mark: wanted.map(|_| managed_mark(deployment)),
            }
        })
        .collect();
    action.steps.splice(0..0, steps);
    action
        .changes
        .push(Change::new("requires", None, Some(missing.join(", "))));
}

/// Whether a live extension is there because a desired one requires it.
pub fn is_required(want: &Database, name: &str, server: Option<&ServerInfo>) -> bool {
    let Some(server) = server else { return false };
    want.extensions.keys().any(|desired| {
        required(desired, server)
            .iter()
            .any(|required| required == name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AvailableExtension;

    fn server() -> ServerInfo {
        let mut server = ServerInfo::default();
        for (name, requires) in [
            ("earthdistance", vec!["cube"]),
            ("cube", vec![]),
            ("a_top", vec!["m_middle", "cube"]),
            ("m_middle", vec!["z_bottom"]),
            ("z_bottom", vec![]),
        ] {
            server.available_extensions.insert(
                name.to_owned(),
                AvailableExtension {
                    requires: requires.into_iter().map(str::to_owned).collect(),
                    ..AvailableExtension::default()
                },
            );
        }
        server
    }

    #[test]
    fn requirements_come_deepest_first() {
        assert_eq!(required("earthdistance", &server()), ["cube"]);
        assert_eq!(
            required("a_top", &server()),
            ["z_bottom", "m_middle", "cube"]
        );
        assert!(required("cube", &server()).is_empty());
    }
}
