//! Checks of `databases`: names, owners, extensions, schemas and grants.

use std::collections::{BTreeMap, BTreeSet};

use super::checker::Checker;
use super::lower::grant_target;
use crate::model::GrantTarget;
use crate::model::privileges;
use crate::spec::file::{
    DefaultObjectKind, ExtensionEntry, GrantSpec, ObjectSelection, SchemaEntry, SpecFile,
};
use crate::spec::load::{join_index, join_key};

/// An extension's name and the key path it sits at: the entry itself in
/// the short form (`- pg_trgm`), its `name` in the long form.
pub(super) fn extension_name<'a>(extension: &'a ExtensionEntry, path: &str) -> (&'a str, String) {
    match extension {
        ExtensionEntry::Name(name) => (name, path.to_owned()),
        ExtensionEntry::Full(full) => (&full.name, join_key(path, "name")),
    }
}

/// The kind of objects a grant is about, in `model::privileges`' words,
/// and how a message names them.
fn objects_of(target: &GrantTarget) -> (&str, &str) {
    match target {
        GrantTarget::Database => ("database", "a database"),
        GrantTarget::Schema { .. } => ("schema", "a schema"),
        GrantTarget::Tables { .. } => ("tables", "tables"),
        GrantTarget::Sequences { .. } => ("sequences", "sequences"),
        GrantTarget::Functions { .. } => ("functions", "functions"),
        GrantTarget::Default { object, .. } => (object, object),
    }
}

impl Checker<'_> {
    pub(super) fn check_databases(&mut self, file: &SpecFile, known: &BTreeSet<String>) {
        let mut seen = BTreeMap::new();
        for (index, database) in file.databases.iter().enumerate() {
            let path = join_index("databases", index);
            let name_path = join_key(&path, "name");
            self.check_name(&mut seen, &name_path, &database.name, "database");
            if let Some(owner) = &database.owner {
                self.check_role_reference(&join_key(&path, "owner"), owner, known, false);
            }
            self.check_at_least(
                &join_key(&path, "connection_limit"),
                database.connection_limit,
                -1,
                "connection limit",
            );
            self.check_settings(&join_key(&path, "settings"), &database.settings);

            let mut extensions = BTreeMap::new();
            for (extension_index, extension) in database.extensions.iter().enumerate() {
                let extension_path = join_index(&join_key(&path, "extensions"), extension_index);
                if let ExtensionEntry::Full(full) = extension
                    && let Some(schema) = &full.schema
                {
                    self.check_identifier(&join_key(&extension_path, "schema"), schema, "schema");
                }
                let (name, name_path) = extension_name(extension, &extension_path);
                self.check_name(&mut extensions, &name_path, name, "extension");
            }

            let mut schemas = BTreeMap::new();
            for (schema_index, schema) in database.schemas.iter().enumerate() {
                let schema_path = join_index(&join_key(&path, "schemas"), schema_index);
                let (name, name_path) = match schema {
                    SchemaEntry::Name(name) => (name, schema_path.clone()),
                    SchemaEntry::Full(full) => {
                        if let Some(owner) = &full.owner {
                            self.check_role_reference(
                                &join_key(&schema_path, "owner"),
                                owner,
                                known,
                                false,
                            );
                        }
                        (&full.name, join_key(&schema_path, "name"))
                    }
                };
                self.check_name(&mut schemas, &name_path, name, "schema");
            }

            for (grant_index, grant) in database.grants.iter().enumerate() {
                let grant_path = join_index(&join_key(&path, "grants"), grant_index);
                self.check_grant(&grant_path, grant, known);
            }

            let mut indexes = BTreeMap::new();
            for (index_index, index) in database.indexes.iter().enumerate() {
                let index_path = join_index(&join_key(&path, "indexes"), index_index);
                self.check_name(
                    &mut indexes,
                    &join_key(&index_path, "name"),
                    &index.name,
                    "index",
                );
                self.check_index(&index_path, index);
            }
        }
    }

    pub(super) fn check_grant(&mut self, path: &str, grant: &GrantSpec, known: &BTreeSet<String>) {
        let role_path = join_key(path, "role");
        if grant.role.is_empty() {
            self.error(&role_path, "grantee is empty");
        } else {
            self.check_role_reference(&role_path, &grant.role, known, true);
        }

        let objects: Vec<&str> = [
            ("tables", grant.tables.is_some()),
            ("sequences", grant.sequences.is_some()),
            ("functions", grant.functions.is_some()),
            ("default_for", grant.default_for.is_some()),
        ]
        .into_iter()
        .filter(|(_, set)| *set)
        .map(|(field, _)| field)
        .collect();
        if objects.len() > 1 {
            self.error(
                &join_key(path, objects[1]),
                format!(
                    "a grant takes at most one of `tables`, `sequences`, `functions` and \
                     `default_for`, found {}",
                    objects
                        .iter()
                        .map(|field| format!("`{field}`"))
                        .collect::<Vec<_>>()
                        .join(" and ")
                ),
            )
            .help = Some("split it into one grant per kind of object".to_owned());
        }
        if let Some(field) = objects.first()
            && grant.schema.is_none()
            && grant.default_for != Some(DefaultObjectKind::Schemas)
        {
            self.error(&join_key(path, field), format!("`{field}` needs `schema`"))
                .help = Some("name the schema the objects live in: `schema: public`".to_owned());
        }
        if grant.default_for == Some(DefaultObjectKind::Schemas) && grant.schema.is_some() {
            self.error(
                &join_key(path, "schema"),
                "default privileges on schemas cannot be limited to a schema",
            )
            .help = Some("remove `schema` from this grant".to_owned());
        }
        if grant.for_role.is_some() && grant.default_for.is_none() {
            self.error(
                &join_key(path, "for_role"),
                "`for_role` applies only to `default_for` grants",
            );
        }
        if let Some(for_role) = &grant.for_role {
            self.check_role_reference(&join_key(path, "for_role"), for_role, known, false);
        }
        if let Some(schema) = &grant.schema {
            self.check_identifier(&join_key(path, "schema"), schema, "schema");
        }
        for (field, selection) in [
            ("tables", &grant.tables),
            ("sequences", &grant.sequences),
            ("functions", &grant.functions),
        ] {
            if let Some(ObjectSelection::Names(names)) = selection {
                let field_path = join_key(path, field);
                if names.is_empty() {
                    self.error(&field_path, format!("`{field}` lists no names"))
                        .help = Some("list names, or write `all`".to_owned());
                }
                for (name_index, name) in names.iter().enumerate() {
                    let what = &field[..field.len() - 1];
                    // Functions may carry an argument list; only check the name.
                    let bare = name.split('(').next().unwrap_or(name).trim();
                    self.check_identifier(&join_index(&field_path, name_index), bare, what);
                }
            }
        }

        let target = grant_target(grant);
        let (kind, noun) = objects_of(&target);
        let privileges_path = join_key(path, "privileges");
        if grant.privileges.is_empty() {
            self.error(&privileges_path, "no privileges given");
        }
        let valid = privileges::grantable(kind);
        for (privilege_index, privilege) in grant.privileges.iter().enumerate() {
            let normalized = privileges::normalize(privilege);
            if valid.contains(&normalized.as_str()) {
                continue;
            }
            // The one meant may also be another word for a privilege (`TEMP`).
            let spellings = valid
                .iter()
                .flat_map(|name| std::iter::once(*name).chain(privileges::other_spelling(name)));
            self.error_with_choices(
                &join_index(&privileges_path, privilege_index),
                format!("privilege `{privilege}` does not apply to {noun}"),
                &normalized,
                &valid,
                spellings,
            );
        }
    }
}
