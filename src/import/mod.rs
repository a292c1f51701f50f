//! `pgspec import`: the spec of what is live.
//!
//! `live::all` reads a whole server (and its container); `import` turns
//! that live model into a `spec::file::SpecFile`, and `yaml` writes it the
//! way a person would. The contract is the round trip: the imported spec,
//! planned against the deployment it came from, gives an empty plan. So
//! every value is written in a form `spec::validate` lowers back to what is
//! live, defaults are left out, and what a spec cannot say, or pgspec does
//! not reconcile yet, is left out with a comment saying why.
//!
//! Passwords are never read: a role with a stored password gets a secret
//! reference to an environment variable named after it
//! (`PGSPEC_PASSWORD_<ROLE>`), and `Imported::variables` lists them.
//!
//! `Importer::run` writes the header and puts the parts together; each kind
//! of object has its file: `container` (the server's container or
//! connection), `settings`, `roles`, `databases` (with extensions and
//! schemas), `grants`, `indexes`, and `services` (pooler and backups).
//!
//! Invariant: no I/O. Like `plan::diff`, this is a function of plain data.

use std::collections::BTreeSet;

use crate::live::all::{ContainerSurvey, Survey};
use crate::spec::file::{ConnectionSpec, SecretRef, SpecFile};

mod access;
mod container;
mod databases;
mod grants;
mod indexes;
pub mod names;
mod replicas;
mod roles;
mod services;
mod settings;
pub mod yaml;

use names::PasswordVariables;
use yaml::Comments;

/// What to import and how to name it.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The deployment's name in the spec.
    pub name: String,
    /// The container the server runs in, when it runs in one.
    pub container: Option<ContainerSurvey>,
    /// For a server outside Docker: how the spec connects (no password; it
    /// comes from PGPASSWORD).
    pub connection: Option<ConnectionSpec>,
    /// Databases named with `--database`; empty imports all of them.
    pub databases: Vec<String>,
    /// Only roles whose names match this glob.
    pub role_pattern: Option<String>,
    /// Also import what PostgreSQL or extensions made: the bootstrap
    /// superuser, a `postgres` database holding nothing, extension objects,
    /// indexes of constraints.
    pub include_system: bool,
    /// The `$schema` the first line points editors at.
    pub schema_url: String,
}

/// An environment variable the imported spec reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    pub name: String,
    /// Whose password it holds, for the user.
    pub purpose: String,
}

/// The spec of a live deployment, with its comments.
#[derive(Debug, Clone)]
pub struct Imported {
    pub file: SpecFile,
    pub comments: Comments,
    /// Password variables the user must set, in spec order.
    pub variables: Vec<Variable>,
}

impl Imported {
    /// The spec as tidy YAML with its comments.
    pub fn render(&self) -> String {
        let mut value = serde_yaml::to_value(&self.file)
            .unwrap_or_else(|error| panic!("a spec file always serialises: {error}"));
        if let Some(databases) = value
            .get_mut("databases")
            .and_then(serde_yaml::Value::as_sequence_mut)
        {
            for database in databases {
                for (list, order) in [("grants", GRANT_KEYS), ("indexes", INDEX_KEYS)] {
                    if let Some(items) = database
                        .get_mut(list)
                        .and_then(serde_yaml::Value::as_sequence_mut)
                    {
                        for item in items {
                            reorder(item, order);
                        }
                    }
                }
            }
        }
        yaml::render(&value, &self.comments)
    }
}

/// Grants read as a sentence: who, on what, then which privileges.
const GRANT_KEYS: &[&str] = &[
    "role",
    "schema",
    "tables",
    "sequences",
    "functions",
    "default_for",
    "for_role",
    "privileges",
];

/// Indexes: name and table first, then how.
const INDEX_KEYS: &[&str] = &[
    "name",
    "table",
    "using",
    "columns",
    "include",
    "unique",
    "nulls_not_distinct",
    "with",
    "where",
];

/// Puts a mapping's keys in `order`; keys not listed keep their place at
/// the end.
fn reorder(value: &mut serde_yaml::Value, order: &[&str]) {
    let Some(mapping) = value.as_mapping_mut() else {
        return;
    };
    let mut sorted = serde_yaml::Mapping::new();
    for key in order {
        if let Some(entry) = mapping.remove(*key) {
            sorted.insert(serde_yaml::Value::String((*key).to_owned()), entry);
        }
    }
    for (key, entry) in std::mem::take(mapping) {
        sorted.insert(key, entry);
    }
    *mapping = sorted;
}

/// Builds the spec of `survey`.
pub fn import(survey: &Survey, options: &ImportOptions) -> Imported {
    let importer = Importer {
        survey,
        options,
        comments: Comments::new(),
        variables: Vec::new(),
        names: PasswordVariables::default(),
        known: BTreeSet::new(),
        header: Vec::new(),
    };
    importer.run()
}

struct Importer<'a> {
    survey: &'a Survey,
    options: &'a ImportOptions,
    comments: Comments,
    variables: Vec<Variable>,
    names: PasswordVariables,
    /// Roles the spec may name: imported roles, the superuser and the
    /// connection user (`pg_*` roles always).
    known: BTreeSet<String>,
    header: Vec<String>,
}

impl Importer<'_> {
    fn run(mut self) -> Imported {
        let superuser = self
            .options
            .container
            .as_ref()
            .map(|container| container.container.superuser.clone());
        let connection_user = self
            .options
            .connection
            .as_ref()
            .and_then(|connection| connection.user.clone());
        self.known.extend(superuser.iter().cloned());
        self.known.extend(connection_user.iter().cloned());
        // Without a container or a connection user, the spec connects as
        // the libpq variables say; that user is known too.
        self.known.insert(self.survey.current_user.clone());

        let mut postgres = self.postgres();
        if let Some(postgres) = &mut postgres {
            for (name, value) in self.replica_settings() {
                let value = match value.parse::<i64>() {
                    Ok(number) => crate::spec::file::SettingValue::Integer(number),
                    Err(_) => crate::spec::file::SettingValue::Text(value),
                };
                postgres.settings.entry(name).or_insert(value);
            }
        }
        let roles = self.roles();
        let databases = self.databases();
        let backup = self.backup(&databases);
        let mut pooler = self.pooler(&databases);
        if let Some(pooler) = &mut pooler {
            for (name, routed) in self.routed_pools() {
                let pool = pooler.databases.entry(name).or_default();
                pool.database = routed.database;
                pool.target = routed.target;
            }
        }
        let replicas = self.replicas(&roles);
        let access = self.access();

        let mut header = vec![
            format!("yaml-language-server: $schema={}", self.options.schema_url),
            format!(
                "Imported by `pgspec import` from the live deployment (PostgreSQL {}).",
                self.version_text()
            ),
            "Passwords are not exported: each one is a reference to an environment variable."
                .to_owned(),
            "Imported: the container, settings written with ALTER SYSTEM, roles with their \
             attributes, memberships and settings, databases with owners, settings, \
             extensions, schemas, grants, default privileges and indexes, the pooler and backup \
             schedules, and the client authentication rules of a server container."
                .to_owned(),
            "Not imported (no place in a spec, or not reconciled yet): per-role settings inside \
             one database, membership options (ADMIN, INHERIT, SET), column privileges, \
             default privileges for every schema, template databases and ones that allow no \
             connections, predefined pg_* roles, tablespaces, row-level security policies, \
             publications and subscriptions, and tables and other schema objects (the \
             application's migrations own them); what else is left out is noted where it \
             would be."
                .to_owned(),
        ];
        if !self.header.is_empty() {
            header.push(String::new());
            header.append(&mut self.header);
        }
        self.comments.insert(String::new(), wrap_all(&header));

        let file = SpecFile {
            version: 1,
            name: self.options.name.clone(),
            postgres,
            pooler,
            roles,
            databases,
            backup,
            monitoring: None,
            replicas,
            access,
            access_lockout: None,
            prune: false,
        };
        Imported {
            file,
            comments: self.comments,
            variables: self.variables,
        }
    }

    fn version_text(&self) -> String {
        let number = self.version_num();
        format!("{}.{}", number / 10_000, number % 10_000)
    }

    fn note(&mut self, path: &str, message: String) {
        self.comments
            .entry(path.to_owned())
            .or_default()
            .extend(wrap(&message));
    }

    fn password_variable(&mut self, role: &str, purpose: String) -> SecretRef {
        let name = self.names.name_for(role);
        self.variables.push(Variable {
            name: name.clone(),
            purpose,
        });
        SecretRef::Env(name)
    }

    fn version_num(&self) -> u32 {
        self.survey
            .deployment
            .server
            .as_ref()
            .map_or(0, |server| server.version_num)
    }
}

/// Wraps a note to comment lines of at most about 96 characters.
fn wrap(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > 96 {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

fn wrap_all(paragraphs: &[String]) -> Vec<String> {
    paragraphs
        .iter()
        .flat_map(|paragraph| {
            if paragraph.is_empty() {
                vec![String::new()]
            } else {
                wrap(paragraph)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
