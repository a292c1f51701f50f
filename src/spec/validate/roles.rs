//! Checks of `roles` and of every reference to a role elsewhere in the spec.

use std::collections::{BTreeMap, BTreeSet};

use super::checker::Checker;
use crate::diag::MAX_RENDERED;
use crate::spec::file::SpecFile;
use crate::spec::load::{did_you_mean, join_index, join_key};

/// How many declared roles the help of an undeclared role lists.
const MAX_LISTED_ROLES: usize = 20;

impl Checker<'_> {
    /// Roles a reference may name besides `pg_*` ones: declared roles, the
    /// superuser and the connection user.
    pub(super) fn known_roles(&self, file: &SpecFile) -> BTreeSet<String> {
        let mut known: BTreeSet<String> = file.roles.iter().map(|role| role.name.clone()).collect();
        let postgres = file.postgres.as_ref();
        known.insert(
            postgres
                .and_then(|postgres| postgres.superuser.as_ref())
                .and_then(|superuser| superuser.name.clone())
                .unwrap_or_else(|| "postgres".to_owned()),
        );
        if let Some(user) = postgres
            .and_then(|postgres| postgres.connection.as_ref())
            .and_then(|connection| connection.user.clone())
        {
            known.insert(user);
        }
        known
    }

    pub(super) fn check_role_reference(
        &mut self,
        path: &str,
        name: &str,
        known: &BTreeSet<String>,
        allow_public: bool,
    ) {
        if allow_public && name.eq_ignore_ascii_case("public") {
            return;
        }
        if !self.check_no_control(path, name, "role") {
            return;
        }
        if name.starts_with("pg_") || known.contains(name) {
            return;
        }
        // A suggestion compares the name with every declared role: past the
        // findings that are shown, that work (quadratic in a spec with tens
        // of thousands of undeclared references) would buy nothing.
        let suggestion = if self.found.len() < MAX_RENDERED {
            did_you_mean(name, known.iter().map(String::as_str)).map(str::to_owned)
        } else {
            None
        };
        let diagnostic = self.error(path, format!("role `{name}` is not declared"));
        diagnostic.help = Some(match suggestion {
            Some(suggestion) => format!("did you mean `{suggestion}`?"),
            None => {
                let mut listed: Vec<String> = known
                    .iter()
                    .take(MAX_LISTED_ROLES)
                    .map(|role| format!("`{role}`"))
                    .collect();
                if known.len() > MAX_LISTED_ROLES {
                    listed.push(format!("and {} more", known.len() - MAX_LISTED_ROLES));
                }
                format!(
                    "declare it under `roles`, or use a predefined `pg_*` role; \
                     known roles: {}",
                    listed.join(", ")
                )
            }
        });
    }

    pub(super) fn check_roles(&mut self, file: &SpecFile, known: &BTreeSet<String>) {
        let mut seen = BTreeMap::new();
        for (index, role) in file.roles.iter().enumerate() {
            let path = join_index("roles", index);
            let name_path = join_key(&path, "name");
            self.check_name(&mut seen, &name_path, &role.name, "role");
            self.check_at_least(
                &join_key(&path, "connection_limit"),
                role.connection_limit,
                -1,
                "connection limit",
            );
            for (member_index, parent) in role.member_of.iter().enumerate() {
                let member_path = join_index(&join_key(&path, "member_of"), member_index);
                if parent == &role.name {
                    self.error(
                        &member_path,
                        format!("role `{parent}` cannot be a member of itself"),
                    );
                    continue;
                }
                self.check_role_reference(&member_path, parent, known, false);
            }
            self.check_settings(&join_key(&path, "settings"), &role.settings);
        }
    }
}
