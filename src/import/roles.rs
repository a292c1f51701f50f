//! Roles with their attributes, password references, memberships and
//! settings, and which roles the spec may name.

use crate::model::Role;
use crate::spec::file::RoleSpec;

use super::Importer;
use super::names::glob_matches;
use super::settings::setting_value;

impl Importer<'_> {
    fn role_included(&self, role: &Role) -> bool {
        if let Some(pattern) = &self.options.role_pattern
            && !glob_matches(pattern, &role.name)
        {
            return false;
        }
        if self.options.include_system {
            return true;
        }
        // The bootstrap superuser comes with the server: the spec names it as
        // its superuser or connection user.
        !(role.name == self.survey.bootstrap_superuser && self.known.contains(&role.name))
    }

    /// The roles the options include, with notes on what is left out.
    pub(super) fn roles(&mut self) -> Vec<RoleSpec> {
        let live_roles = &self.survey.deployment.roles;
        let included: Vec<&Role> = live_roles
            .values()
            .filter(|role| self.role_included(role))
            .collect();
        self.known
            .extend(included.iter().map(|role| role.name.clone()));
        let mut specs = Vec::new();
        for role in included {
            let path = format!("roles[{}]", specs.len());
            let mut notes = Vec::new();
            let mut spec = RoleSpec {
                name: role.name.clone(),
                login: role.login.then_some(true),
                superuser: role.superuser.then_some(true),
                createdb: role.createdb.then_some(true),
                createrole: role.createrole.then_some(true),
                replication: role.replication.then_some(true),
                bypassrls: role.bypassrls.then_some(true),
                inherit: (!role.inherit).then_some(false),
                connection_limit: (role.connection_limit != -1).then_some(role.connection_limit),
                valid_until: role.valid_until.clone(),
                ..RoleSpec::default()
            };
            let has_password = match &self.survey.passwords {
                Some(passwords) => passwords.get(&role.name).copied().map(|md5| {
                    if md5 {
                        notes.push(
                            "its password is stored as an MD5 hash: the plan stores it again \
                             as SCRAM-SHA-256 from the variable"
                                .to_owned(),
                        );
                    }
                    true
                }),
                None if role.login => {
                    notes.push(
                        "whether it has a password is unknown (pg_authid is not readable); \
                         pgspec will not verify it either"
                            .to_owned(),
                    );
                    Some(true)
                }
                None => None,
            };
            if has_password.is_some() {
                spec.password = Some(
                    self.password_variable(&role.name, format!("password of role `{}`", role.name)),
                );
            }
            for parent in &role.member_of {
                if self.is_known(parent) {
                    spec.member_of.push(parent.clone());
                } else {
                    notes.push(format!(
                        "its membership in `{parent}` is left out: that role is not imported"
                    ));
                }
            }
            for membership in &role.memberships {
                if membership.admin && spec.member_of.contains(&membership.role) {
                    notes.push(format!(
                        "it holds `{}` WITH ADMIN OPTION; the spec says membership only, and \
                         pgspec leaves the option as it is",
                        membership.role
                    ));
                }
            }
            let live_settings = &self.survey.deployment.settings;
            spec.settings = role
                .settings
                .iter()
                .map(|(name, value)| {
                    (
                        name.clone(),
                        setting_value(name, value, live_settings.get(name)),
                    )
                })
                .collect();
            for (setting_role, database) in &self.survey.role_database_settings {
                if setting_role == &role.name {
                    notes.push(format!(
                        "its settings in database `{database}` (ALTER ROLE … IN DATABASE … SET) \
                         are not imported: the spec has no place for them"
                    ));
                }
            }
            notes.dedup();
            for note in notes {
                self.note(&path, note);
            }
            specs.push(spec);
        }
        let excluded: Vec<&String> = live_roles
            .keys()
            .filter(|name| !self.known.contains(*name))
            .collect();
        if !excluded.is_empty() && self.options.role_pattern.is_some() {
            let list = excluded
                .iter()
                .map(|name| format!("`{name}`"))
                .collect::<Vec<_>>()
                .join(", ");
            self.header
                .push(format!("Roles not matching --role-pattern: {list}."));
        }
        specs
    }

    /// Whether the spec may name `role`: `PUBLIC`, a `pg_*` role, or one of
    /// the `known` roles.
    pub(super) fn is_known(&self, role: &str) -> bool {
        role == "PUBLIC" || role.starts_with("pg_") || self.known.contains(role)
    }
}
