//! Semantic checks of a loaded spec, then lowering into the desired
//! [`Deployment`].
//!
//! `check` gathers every finding (errors and warnings) with its key path
//! and span before anything is printed. Lowering is the single place where
//! the file format becomes the model: defaults are applied, shorthands
//! expanded, privileges normalised and index statements built. Nothing here
//! does I/O; secrets stay references and nothing is resolved.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::diag::MAX_RENDERED;
use crate::diag::{Diagnostic, Diagnostics};
use crate::model::{
    Backup, BackupDestination, BackupSchedule, Container, ContainerState, Database, Deployment,
    Extension, Grant, GrantTarget, Index, Pooler, Role, Schema, Setting,
};
use crate::model::{Connection, Desired, DiffOptions};
use crate::secret::Secret;
use crate::spec::expression;
use crate::spec::file::{
    BackupSpec, DefaultObjectKind, ExtensionEntry, GrantSpec, IndexColumn, IndexSpec, NullsOrder,
    ObjectSelection, PoolMode, PoolerSpec, RetentionSpec, SchemaEntry, SettingValue, SortOrder,
    SpecFile,
};
use crate::spec::load::{Loaded, did_you_mean, join_index, join_key};
use crate::sql::{quote_ident, quote_literal};
use crate::units::{self, UnitClass};

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
        let spec = lower(&self);
        Ok(Validated {
            spec,
            warnings: diagnostics,
        })
    }
}

/// PostgreSQL keeps NAMEDATALEN - 1 bytes of an identifier.
const MAX_IDENTIFIER_BYTES: usize = 63;

/// Settings whose unit class is well known, so a value with the wrong kind
/// of unit can be caught before the server rejects it.
const MEMORY_SETTINGS: &[&str] = &[
    "shared_buffers",
    "work_mem",
    "maintenance_work_mem",
    "effective_cache_size",
    "wal_buffers",
    "wal_keep_size",
    "max_wal_size",
    "min_wal_size",
    "temp_buffers",
];
const TIME_SETTINGS: &[&str] = &[
    "log_min_duration_statement",
    "statement_timeout",
    "checkpoint_timeout",
    "idle_in_transaction_session_timeout",
    "lock_timeout",
];

/// Extensions whose library must be in `shared_preload_libraries`.
const PRELOADED_EXTENSIONS: &[&str] = crate::model::PRELOADED_EXTENSIONS;

const INDEX_METHODS: &[&str] = &["btree", "gin", "gist", "hash", "brin", "spgist"];

/// Which objects a grant is about, for the privilege check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GrantKind {
    Database,
    Schema,
    Tables,
    Sequences,
    Functions,
    Types,
    Schemas,
}

impl GrantKind {
    fn privileges(self) -> &'static [&'static str] {
        match self {
            GrantKind::Database => &["CONNECT", "CREATE", "TEMPORARY", "TEMP", "ALL"],
            GrantKind::Schema | GrantKind::Schemas => &["USAGE", "CREATE", "ALL"],
            GrantKind::Tables => &[
                "SELECT",
                "INSERT",
                "UPDATE",
                "DELETE",
                "TRUNCATE",
                "REFERENCES",
                "TRIGGER",
                "MAINTAIN",
                "ALL",
            ],
            GrantKind::Sequences => &["USAGE", "SELECT", "UPDATE", "ALL"],
            GrantKind::Functions => &["EXECUTE", "ALL"],
            GrantKind::Types => &["USAGE", "ALL"],
        }
    }

    fn noun(self) -> &'static str {
        match self {
            GrantKind::Database => "a database",
            GrantKind::Schema => "a schema",
            GrantKind::Tables => "tables",
            GrantKind::Sequences => "sequences",
            GrantKind::Functions => "functions",
            GrantKind::Types => "types",
            GrantKind::Schemas => "schemas",
        }
    }
}

fn default_kind(kind: DefaultObjectKind) -> GrantKind {
    match kind {
        DefaultObjectKind::Tables => GrantKind::Tables,
        DefaultObjectKind::Sequences => GrantKind::Sequences,
        DefaultObjectKind::Functions => GrantKind::Functions,
        DefaultObjectKind::Types => GrantKind::Types,
        DefaultObjectKind::Schemas => GrantKind::Schemas,
    }
}

fn default_object_name(kind: DefaultObjectKind) -> &'static str {
    match kind {
        DefaultObjectKind::Tables => "tables",
        DefaultObjectKind::Sequences => "sequences",
        DefaultObjectKind::Functions => "functions",
        DefaultObjectKind::Types => "types",
        DefaultObjectKind::Schemas => "schemas",
    }
}

/// A privilege as the model keeps it: upper-case, `TEMP` spelled
/// `TEMPORARY`, `ALL PRIVILEGES` as `ALL`.
fn normalize_privilege(privilege: &str) -> String {
    let upper = privilege
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_uppercase();
    match upper.as_str() {
        "TEMP" => "TEMPORARY".to_owned(),
        "ALL PRIVILEGES" => "ALL".to_owned(),
        _ => upper,
    }
}

/// Docker object names must match `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
fn is_docker_name(name: &str) -> bool {
    let mut characters = name.chars();
    characters
        .next()
        .is_some_and(|first| first.is_ascii_alphanumeric())
        && characters.all(|character| {
            character.is_ascii_alphanumeric() || matches!(character, '_' | '.' | '-')
        })
}

/// The text of a setting value in the form `ALTER SYSTEM` accepts.
pub fn setting_text(value: &SettingValue) -> String {
    match value {
        SettingValue::Bool(true) => "on".to_owned(),
        SettingValue::Bool(false) => "off".to_owned(),
        SettingValue::Integer(number) => number.to_string(),
        SettingValue::Float(number) => number.to_string(),
        SettingValue::Text(text) => text.clone(),
        SettingValue::List(items) => items.join(", "),
    }
}

/// Library names in a `shared_preload_libraries` value, without quotes or
/// `$libdir/` prefixes.
fn preload_libraries(value: &SettingValue) -> Vec<String> {
    let items: Vec<String> = match value {
        SettingValue::List(items) => items.clone(),
        other => setting_text(other).split(',').map(str::to_owned).collect(),
    };
    items
        .iter()
        .map(|item| {
            let item = item.trim().trim_matches('"').trim_matches('\'');
            let base = item.rsplit('/').next().unwrap_or(item);
            base.trim_end_matches(".so").to_owned()
        })
        .filter(|item| !item.is_empty())
        .collect()
}

/// Splits `audit.events` into (`audit`, `events`); an unqualified table is in
/// `public`.
fn split_table(table: &str) -> (String, String) {
    match table.split_once('.') {
        Some((schema, name)) => (schema.to_owned(), name.to_owned()),
        None => ("public".to_owned(), table.to_owned()),
    }
}

// ---------------------------------------------------------------------------
// Checks.

/// Every semantic finding about a loaded spec, errors and warnings alike.
pub(crate) fn check(loaded: &Loaded) -> Vec<Diagnostic> {
    let mut checker = Checker {
        loaded,
        found: Vec::new(),
    };
    checker.check_all(&loaded.file);
    checker.found
}

/// How many declared roles the help of an undeclared role lists.
const MAX_LISTED_ROLES: usize = 20;

struct Checker<'a> {
    loaded: &'a Loaded,
    found: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn error(&mut self, path: &str, message: impl Into<String>) -> &mut Diagnostic {
        let diagnostic = Diagnostic::error(message)
            .at(path)
            .with_span(self.loaded.span(path));
        self.found.push(diagnostic);
        self.found.last_mut().expect("just pushed")
    }

    fn warning(&mut self, path: &str, message: impl Into<String>) -> &mut Diagnostic {
        let diagnostic = Diagnostic::warning(message)
            .at(path)
            .with_span(self.loaded.span(path));
        self.found.push(diagnostic);
        self.found.last_mut().expect("just pushed")
    }

    fn check_all(&mut self, file: &SpecFile) {
        if file.version != 1 {
            self.error(
                "version",
                format!("unsupported spec version `{}`", file.version),
            )
            .help = Some("only version 1 exists".to_owned());
        }
        if !is_docker_name(&file.name) {
            let message = if file.name.is_empty() {
                "deployment name is empty".to_owned()
            } else {
                format!("deployment name `{}` is not a valid Docker name", file.name)
            };
            self.error("name", message).help = Some(
                "use letters, digits, `_`, `.` and `-`, starting with a letter or digit; \
                 the name prefixes container and volume names"
                    .to_owned(),
            );
        }

        let known_roles = self.known_roles(file);
        self.check_postgres(file);
        self.check_roles(file, &known_roles);
        self.check_databases(file, &known_roles);
        self.check_preload(file);
        if let Some(pooler) = &file.pooler {
            self.check_pooler(file, pooler);
        }
        if let Some(backup) = &file.backup {
            self.check_backup(file, backup);
        }
    }

    /// Roles a reference may name besides `pg_*` ones: declared roles, the
    /// superuser and the connection user.
    fn known_roles(&self, file: &SpecFile) -> BTreeSet<String> {
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

    fn check_role_reference(
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

    /// Empty names, names PostgreSQL would truncate, and names with
    /// control characters.
    fn check_identifier(&mut self, path: &str, name: &str, what: &str) {
        if name.is_empty() {
            self.error(path, format!("{what} name is empty"));
            return;
        }
        if !self.check_no_control(path, name, what) {
            return;
        }
        if name.len() > MAX_IDENTIFIER_BYTES {
            let mut cut = MAX_IDENTIFIER_BYTES;
            while !name.is_char_boundary(cut) {
                cut -= 1;
            }
            self.error(
                path,
                format!(
                    "{what} name `{name}` is {} bytes long; PostgreSQL keeps at most {MAX_IDENTIFIER_BYTES}",
                    name.len()
                ),
            )
            .help = Some(format!(
                "shorten it; PostgreSQL would silently truncate it to `{}`",
                &name[..cut]
            ));
        }
    }

    /// A name with a NUL, a newline or an escape sequence would break the
    /// lines of `pgbouncer.ini`, the auth file, logs and the terminal
    /// (PostgreSQL cannot store NUL at all). Returns whether `name` is clean.
    fn check_no_control(&mut self, path: &str, name: &str, what: &str) -> bool {
        let Some(character) = expression::control_character(name) else {
            return true;
        };
        self.error(
            path,
            format!(
                "{what} name `{}` holds the control character {}",
                name.escape_default(),
                expression::escape_char(character)
            ),
        )
        .help = Some(
            "names may not contain NUL, newlines, escapes or other control characters".to_owned(),
        );
        false
    }

    /// An index expression or predicate must be one SQL expression: pgspec
    /// puts it into a `CREATE INDEX` statement, and it must not end that
    /// statement or reach outside it.
    fn check_expression(&mut self, path: &str, text: &str, what: &str) {
        if let Err(why) = expression::check_one_expression(text) {
            self.error(
                path,
                format!("{what} is not one SQL expression: {}", why.describe()),
            )
            .help = Some(
                "write a single expression, without `;` or comments, with every bracket and \
                 quote closed; pgspec builds it into `CREATE INDEX` and never runs it as a \
                 statement of its own"
                    .to_owned(),
            );
        }
    }

    fn check_duplicate(
        &mut self,
        seen: &mut BTreeMap<String, String>,
        path: &str,
        name: &str,
        what: &str,
    ) {
        if name.is_empty() {
            return;
        }
        if let Some(first) = seen.get(name) {
            let first = first.clone();
            self.error(path, format!("duplicate {what} `{name}`")).help =
                Some(format!("`{name}` is already declared at {first}"));
        } else {
            seen.insert(name.to_owned(), path.to_owned());
        }
    }

    fn check_port(&mut self, path: &str, port: Option<i64>) {
        if let Some(port) = port
            && !(1..=65535).contains(&port)
        {
            self.error(path, format!("port `{port}` is out of range"))
                .label = Some("expected 1 to 65535".to_owned());
        }
    }

    fn check_at_least(&mut self, path: &str, value: Option<i64>, minimum: i64, what: &str) {
        if let Some(value) = value
            && value < minimum
        {
            self.error(path, format!("{what} `{value}` is below {minimum}"));
        }
    }

    /// A setting name PostgreSQL does not have is caught here, before the
    /// server is asked: an error with the setting meant when one is close,
    /// a warning otherwise (a setting of a newer major than the list).
    /// Names with a dot belong to extensions and are the server's to judge.
    fn check_setting_name(&mut self, path: &str, name: &str) {
        if name.contains('.') || crate::model::is_known_setting(name) {
            return;
        }
        match super::load::did_you_mean(name, crate::model::known_settings()) {
            Some(suggestion) => {
                let diagnostic = self.error(path, format!("`{name}` is not a PostgreSQL setting"));
                diagnostic.help = Some(format!("did you mean `{suggestion}`?"));
            }
            None => {
                let diagnostic = self.warning(
                    path,
                    format!("`{name}` is not a setting of PostgreSQL 15 to 18 that pgspec knows"),
                );
                diagnostic.help =
                    Some("the server checks it at plan time; check the spelling".to_owned());
            }
        }
    }

    fn check_settings(&mut self, parent: &str, settings: &BTreeMap<String, SettingValue>) {
        for (name, value) in settings {
            let path = join_key(parent, name);
            if name.trim().is_empty() {
                self.error(&path, "setting name is empty");
                continue;
            }
            if !self.check_no_control(&path, name, "setting") {
                continue;
            }
            self.check_setting_name(&path, name);
            let SettingValue::Text(text) = value else {
                continue;
            };
            let expected = if MEMORY_SETTINGS.contains(&name.as_str()) {
                Some(UnitClass::Memory)
            } else if TIME_SETTINGS.contains(&name.as_str()) {
                Some(UnitClass::Time)
            } else {
                None
            };
            match units::parse_pg_quantity(text) {
                Err(error) => {
                    let diagnostic = self.error(&path, format!("`{name}`: {}", error.message));
                    diagnostic.help = error.help;
                }
                Ok(Some(quantity)) => {
                    if let Some(expected) = expected
                        && expected != quantity.class
                    {
                        self.error(
                            &path,
                            format!(
                                "`{name}` takes a {}, `{text}` is a {}",
                                match expected {
                                    UnitClass::Memory => "memory size",
                                    UnitClass::Time => "duration",
                                },
                                quantity.class.noun()
                            ),
                        )
                        .help = Some(match expected {
                            UnitClass::Memory => {
                                "use `B`, `kB`, `MB`, `GB` or `TB`: `256MB`".to_owned()
                            }
                            UnitClass::Time => {
                                "use `us`, `ms`, `s`, `min`, `h` or `d`: `1s`".to_owned()
                            }
                        });
                    }
                }
                Ok(None) => {
                    let bare_number = text.trim().parse::<f64>().is_ok();
                    if expected.is_some() && !bare_number && !text.trim().is_empty() {
                        self.error(
                            &path,
                            format!("`{name}` takes a number with a unit, found `{text}`"),
                        );
                    }
                }
            }
        }
    }

    fn check_postgres(&mut self, file: &SpecFile) {
        let Some(postgres) = &file.postgres else {
            return;
        };
        match &postgres.image {
            Some(image) if image.trim().is_empty() => {
                self.error("postgres.image", "image is empty");
            }
            Some(_) => {}
            None => {
                let container_only = [
                    ("port", postgres.port.is_some()),
                    ("bind_address", postgres.bind_address.is_some()),
                    ("volume", postgres.volume.is_some()),
                    ("resources", postgres.resources.is_some()),
                    ("superuser", postgres.superuser.is_some()),
                ];
                for (field, set) in container_only {
                    if set {
                        self.error(
                            &join_key("postgres", field),
                            format!("`postgres.{field}` needs `postgres.image`"),
                        )
                        .help = Some(
                            "it configures the container pgspec runs; add `image`, or, for an \
                             existing server, describe how to reach it under `postgres.connection`"
                                .to_owned(),
                        );
                    }
                }
            }
        }
        self.check_port("postgres.port", postgres.port);
        if let Some(volume) = &postgres.volume
            && !is_docker_name(volume)
        {
            self.error(
                "postgres.volume",
                format!("volume name `{volume}` is not a valid Docker name"),
            );
        }
        if let Some(resources) = &postgres.resources {
            if let Some(cpus) = resources.cpus
                && !(cpus > 0.0 && cpus.is_finite())
            {
                self.error(
                    "postgres.resources.cpus",
                    format!("`cpus` must be more than 0, found `{cpus}`"),
                );
            }
            for (field, value) in [
                ("memory", &resources.memory),
                ("shm_size", &resources.shm_size),
            ] {
                if let Some(value) = value
                    && let Err(error) = units::parse_docker_memory(value)
                {
                    let path = join_key("postgres.resources", field);
                    self.error(&path, error.message).help = error.help;
                }
            }
        }
        if let Some(superuser) = &postgres.superuser
            && let Some(name) = &superuser.name
        {
            self.check_identifier("postgres.superuser.name", name, "superuser");
        }
        if let Some(connection) = &postgres.connection {
            self.check_port("postgres.connection.port", connection.port);
        }
        self.check_settings("postgres.settings", &postgres.settings);
    }

    fn check_roles(&mut self, file: &SpecFile, known: &BTreeSet<String>) {
        let mut seen = BTreeMap::new();
        for (index, role) in file.roles.iter().enumerate() {
            let path = join_index("roles", index);
            let name_path = join_key(&path, "name");
            self.check_identifier(&name_path, &role.name, "role");
            self.check_duplicate(&mut seen, &name_path, &role.name, "role");
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

    fn check_databases(&mut self, file: &SpecFile, known: &BTreeSet<String>) {
        let mut seen = BTreeMap::new();
        for (index, database) in file.databases.iter().enumerate() {
            let path = join_index("databases", index);
            let name_path = join_key(&path, "name");
            self.check_identifier(&name_path, &database.name, "database");
            self.check_duplicate(&mut seen, &name_path, &database.name, "database");
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
                let (name, name_path) = match extension {
                    ExtensionEntry::Name(name) => (name, extension_path.clone()),
                    ExtensionEntry::Full(full) => {
                        if let Some(schema) = &full.schema {
                            self.check_identifier(
                                &join_key(&extension_path, "schema"),
                                schema,
                                "schema",
                            );
                        }
                        (&full.name, join_key(&extension_path, "name"))
                    }
                };
                self.check_identifier(&name_path, name, "extension");
                self.check_duplicate(&mut extensions, &name_path, name, "extension");
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
                self.check_identifier(&name_path, name, "schema");
                self.check_duplicate(&mut schemas, &name_path, name, "schema");
            }

            for (grant_index, grant) in database.grants.iter().enumerate() {
                let grant_path = join_index(&join_key(&path, "grants"), grant_index);
                self.check_grant(&grant_path, grant, known);
            }

            let mut indexes = BTreeMap::new();
            for (index_index, index) in database.indexes.iter().enumerate() {
                let index_path = join_index(&join_key(&path, "indexes"), index_index);
                self.check_identifier(&join_key(&index_path, "name"), &index.name, "index");
                self.check_duplicate(
                    &mut indexes,
                    &join_key(&index_path, "name"),
                    &index.name,
                    "index",
                );
                self.check_index(&index_path, index);
            }
        }
    }

    fn check_grant(&mut self, path: &str, grant: &GrantSpec, known: &BTreeSet<String>) {
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

        let kind = if grant.tables.is_some() {
            GrantKind::Tables
        } else if grant.sequences.is_some() {
            GrantKind::Sequences
        } else if grant.functions.is_some() {
            GrantKind::Functions
        } else if let Some(default_for) = grant.default_for {
            default_kind(default_for)
        } else if grant.schema.is_some() {
            GrantKind::Schema
        } else {
            GrantKind::Database
        };
        let privileges_path = join_key(path, "privileges");
        if grant.privileges.is_empty() {
            self.error(&privileges_path, "no privileges given");
        }
        let valid = kind.privileges();
        for (privilege_index, privilege) in grant.privileges.iter().enumerate() {
            let normalized = normalize_privilege(privilege);
            if valid.contains(&normalized.as_str())
                || (normalized == "TEMPORARY" && valid.contains(&"TEMP"))
            {
                continue;
            }
            let privilege_path = join_index(&privileges_path, privilege_index);
            let valid_list = valid
                .iter()
                .filter(|name| **name != "TEMP")
                .map(|name| format!("`{name}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let suggestion = did_you_mean(&normalized, valid.iter().copied()).map(str::to_owned);
            let diagnostic = self.error(
                &privilege_path,
                format!("privilege `{privilege}` does not apply to {}", kind.noun()),
            );
            diagnostic.label = Some(format!("expected one of {valid_list}"));
            if let Some(suggestion) = suggestion {
                diagnostic.help = Some(format!("did you mean `{suggestion}`?"));
            }
        }
    }

    fn check_index(&mut self, path: &str, index: &IndexSpec) {
        let table_path = join_key(path, "table");
        let parts: Vec<&str> = index.table.split('.').collect();
        if parts.len() > 2 {
            self.error(
                &table_path,
                format!("table `{}` has more than a schema and a name", index.table),
            );
        } else {
            for part in &parts {
                self.check_identifier(&table_path, part, "table");
            }
        }
        let columns_path = join_key(path, "columns");
        if index.columns.is_empty() {
            self.error(
                &columns_path,
                format!("index `{}` has no columns", index.name),
            )
            .help = Some("list at least one column or expression".to_owned());
        }
        for (column_index, column) in index.columns.iter().enumerate() {
            let column_path = join_index(&columns_path, column_index);
            if let IndexColumn::Full(full) = column {
                for (key, name, what) in [
                    ("opclass", &full.opclass, "operator class"),
                    ("collation", &full.collation, "collation"),
                ] {
                    if let Some(name) = name {
                        self.check_no_control(&join_key(&column_path, key), name, what);
                    }
                }
            }
            match column {
                IndexColumn::Name(name) => self.check_identifier(&column_path, name, "column"),
                IndexColumn::Full(full) => match (&full.column, &full.expression) {
                    (Some(_), Some(_)) => {
                        self.error(
                            &column_path,
                            "an index key takes `column` or `expression`, not both",
                        );
                    }
                    (None, None) => {
                        self.error(&column_path, "an index key needs `column` or `expression`");
                    }
                    (Some(name), None) => {
                        self.check_identifier(&join_key(&column_path, "column"), name, "column");
                    }
                    (None, Some(expression)) => {
                        let expression_path = join_key(&column_path, "expression");
                        if expression.trim().is_empty() {
                            self.error(&expression_path, "index expression is empty");
                        } else {
                            self.check_expression(&expression_path, expression, "index expression");
                        }
                    }
                },
            }
        }
        for (include_index, name) in index.include.iter().enumerate() {
            self.check_identifier(
                &join_index(&join_key(path, "include"), include_index),
                name,
                "column",
            );
        }
        if let Some(using) = &index.using
            && !INDEX_METHODS.contains(&using.to_ascii_lowercase().as_str())
        {
            let suggestion = did_you_mean(using, INDEX_METHODS.iter().copied()).map(str::to_owned);
            let diagnostic = self.error(
                &join_key(path, "using"),
                format!("unknown index method `{using}`"),
            );
            diagnostic.label = Some(format!(
                "expected one of {}",
                INDEX_METHODS
                    .iter()
                    .map(|method| format!("`{method}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            if let Some(suggestion) = suggestion {
                diagnostic.help = Some(format!("did you mean `{suggestion}`?"));
            }
        }
        for parameter in index.with.keys() {
            let valid = parameter
                .chars()
                .next()
                .is_some_and(|first| first.is_ascii_lowercase() || first == '_')
                && parameter.chars().all(|character| {
                    character.is_ascii_lowercase() || character.is_ascii_digit() || character == '_'
                });
            if !valid {
                self.error(
                    &join_key(&join_key(path, "with"), parameter),
                    format!("storage parameter `{parameter}` is not a plain lower-case name"),
                );
            }
        }
        if let Some(predicate) = &index.predicate {
            let predicate_path = join_key(path, "where");
            if predicate.trim().is_empty() {
                self.error(&predicate_path, "index predicate is empty");
            } else {
                self.check_expression(&predicate_path, predicate, "index predicate");
            }
        }
    }

    /// Extensions that only work when their library is preloaded.
    fn check_preload(&mut self, file: &SpecFile) {
        let postgres = file.postgres.as_ref();
        let preload =
            postgres.and_then(|postgres| postgres.settings.get("shared_preload_libraries"));
        let managed_container = postgres.is_some_and(|postgres| postgres.image.is_some());
        let libraries = preload.map(preload_libraries);
        for (database_index, database) in file.databases.iter().enumerate() {
            for (extension_index, extension) in database.extensions.iter().enumerate() {
                let (name, path) = match extension {
                    ExtensionEntry::Name(name) => (
                        name,
                        join_index(
                            &join_key(&join_index("databases", database_index), "extensions"),
                            extension_index,
                        ),
                    ),
                    ExtensionEntry::Full(full) => (
                        &full.name,
                        join_key(
                            &join_index(
                                &join_key(&join_index("databases", database_index), "extensions"),
                                extension_index,
                            ),
                            "name",
                        ),
                    ),
                };
                if !PRELOADED_EXTENSIONS.contains(&name.as_str()) {
                    continue;
                }
                match &libraries {
                    Some(libraries) if !libraries.contains(name) => {
                        let mut wanted = libraries.clone();
                        wanted.push(name.clone());
                        self.error(
                            &path,
                            format!(
                                "extension `{name}` needs `{name}` in `shared_preload_libraries`, \
                                 which does not list it"
                            ),
                        )
                        .help = Some(format!(
                            "add it under `postgres.settings`: `shared_preload_libraries: [{}]` \
                             (a change there restarts the server)",
                            wanted.join(", ")
                        ));
                    }
                    None if managed_container => {
                        self.warning(
                            &path,
                            format!(
                                "extension `{name}` needs `{name}` in `shared_preload_libraries`, \
                                 which the spec does not set"
                            ),
                        )
                        .help = Some(format!(
                            "add `shared_preload_libraries: [{name}]` under `postgres.settings`"
                        ));
                    }
                    _ => {}
                }
            }
        }
    }

    fn check_pooler(&mut self, file: &SpecFile, pooler: &PoolerSpec) {
        self.check_port("pooler.port", pooler.port);
        match pooler.image.as_deref().map(str::trim) {
            Some("") => {
                self.error("pooler.image", "image is empty");
            }
            Some(_) => {}
            None => {
                self.error("pooler", "`pooler.image` is required").help = Some(
                    "name an image that runs PgBouncer on /etc/pgbouncer/pgbouncer.ini \
                     (pgspec writes that file and the auth file into the container), \
                     e.g. `edoburu/pgbouncer`, or `pgspec-test/pgbouncer:1` from scripts/images.sh"
                        .to_owned(),
                );
            }
        }
        let postgres = file.postgres.as_ref();
        let server_port = postgres.and_then(|postgres| postgres.port).unwrap_or(5432);
        let bind =
            |address: Option<&String>| address.map_or("127.0.0.1", String::as_str).to_owned();
        let pooler_bind = bind(pooler.bind_address.as_ref());
        let server_bind = bind(postgres.and_then(|postgres| postgres.bind_address.as_ref()));
        let overlap = pooler_bind == server_bind
            || [&pooler_bind, &server_bind]
                .iter()
                .any(|address| matches!(address.as_str(), "0.0.0.0" | "::"));
        if pooler.port.unwrap_or(6432) == server_port
            && overlap
            && postgres.is_some_and(|postgres| postgres.image.is_some())
        {
            self.error(
                "pooler.port",
                format!("the pooler and the server both publish port {server_port}"),
            )
            .help = Some("give `pooler.port` or `postgres.port` another port".to_owned());
        }
        if postgres
            .and_then(|postgres| postgres.image.as_ref())
            .is_none()
        {
            self.error("pooler", "`pooler` needs `postgres.image`").help = Some(
                "the pooler runs beside the server container pgspec manages and reaches it by \
                 name on the deployment's network"
                    .to_owned(),
            );
        }
        for (field, value) in [
            ("default_pool_size", pooler.default_pool_size),
            ("min_pool_size", pooler.min_pool_size),
            ("reserve_pool_size", pooler.reserve_pool_size),
            ("max_client_conn", pooler.max_client_conn),
            ("max_db_connections", pooler.max_db_connections),
        ] {
            self.check_at_least(&join_key("pooler", field), value, 0, &format!("`{field}`"));
        }
        for (field, value) in [
            ("server_idle_timeout", &pooler.server_idle_timeout),
            ("server_lifetime", &pooler.server_lifetime),
            ("query_wait_timeout", &pooler.query_wait_timeout),
        ] {
            if let Some(value) = value {
                match units::parse_pg_time(value, "s") {
                    Ok(micros) if micros < 0.0 => {
                        self.error(&join_key("pooler", field), format!("`{field}` is negative"));
                    }
                    Ok(_) => {}
                    Err(error) => {
                        self.error(
                            &join_key("pooler", field),
                            format!("`{field}`: {}", error.message),
                        )
                        .help = error.help;
                    }
                }
            }
        }
        let declared: BTreeSet<&str> = file
            .databases
            .iter()
            .map(|database| database.name.as_str())
            .collect();
        for (name, overrides) in &pooler.databases {
            let path = join_key("pooler.databases", name);
            self.check_identifier(&path, name, "database");
            self.check_at_least(
                &join_key(&path, "pool_size"),
                overrides.pool_size,
                0,
                "`pool_size`",
            );
            self.check_at_least(
                &join_key(&path, "max_db_connections"),
                overrides.max_db_connections,
                0,
                "`max_db_connections`",
            );
            if !declared.is_empty() && !declared.contains(name.as_str()) {
                self.warning(
                    &path,
                    format!(
                        "pooler settings for database `{name}`, which the spec does not declare"
                    ),
                );
            }
        }

        // PgBouncer keeps one pool per database and user. Each can open its
        // pool size plus the reserve on the server, up to the database's
        // `max_db_connections`; together they must fit in what
        // `max_connections` leaves after the reserved connections.
        let setting = |name: &str, default: i64| {
            postgres
                .and_then(|postgres| postgres.settings.get(name))
                .and_then(|value| match value {
                    SettingValue::Integer(number) => Some(*number),
                    SettingValue::Text(text) => text.trim().parse().ok(),
                    _ => None,
                })
                .unwrap_or(default)
        };
        let max_connections = setting("max_connections", 100);
        let superuser_reserved = setting("superuser_reserved_connections", 3);
        let reserved = setting("reserved_connections", 0);
        let available = max_connections - superuser_reserved - reserved;
        let default_pool_size = pooler.default_pool_size.unwrap_or(20);
        let reserve = pooler.reserve_pool_size.unwrap_or(0);
        let users = file
            .roles
            .iter()
            .filter(|role| role.login == Some(true))
            .count()
            .max(1) as i64;
        let names: Vec<&str> = if file.databases.is_empty() {
            vec![""]
        } else {
            file.databases
                .iter()
                .map(|database| database.name.as_str())
                .collect()
        };
        let total: i64 = names
            .iter()
            .map(|name| {
                let overrides = pooler.databases.get(*name);
                let pools = (overrides
                    .and_then(|overrides| overrides.pool_size)
                    .unwrap_or(default_pool_size)
                    + reserve)
                    * users;
                match overrides
                    .and_then(|overrides| overrides.max_db_connections)
                    .or(pooler.max_db_connections)
                {
                    Some(cap) if cap > 0 => pools.min(cap),
                    _ => pools,
                }
            })
            .sum();
        if total > available {
            let mut reserved_text =
                format!("`superuser_reserved_connections` ({superuser_reserved})");
            if reserved > 0 {
                reserved_text.push_str(&format!(" and `reserved_connections` ({reserved})"));
            }
            self.warning(
                "pooler.default_pool_size",
                format!(
                    "pooler pools can open {total} server connections, more than the {available} \
                     that `max_connections` ({max_connections}) leaves after {reserved_text}"
                ),
            )
            .help = Some(format!(
                "each database has a pool per login role ({users} here) of its pool size plus \
                 `reserve_pool_size`; lower the pool sizes, set `max_db_connections`, or raise \
                 `max_connections`"
            ));
        }
    }

    fn check_retention(&mut self, path: &str, retention: &Option<RetentionSpec>) {
        if let Some(retention) = retention {
            for (field, value) in [
                ("days", retention.days),
                ("max_count", retention.max_count),
                ("min_count", retention.min_count),
            ] {
                self.check_at_least(&join_key(path, field), value, 0, &format!("`{field}`"));
            }
        }
    }

    fn check_cron(&mut self, path: &str, expression: &str) {
        if let Err(error) = units::check_cron(expression) {
            self.error(path, error.message).help = error.help;
        }
    }

    fn check_backup(&mut self, file: &SpecFile, backup: &BackupSpec) {
        match (&backup.schedule, backup.schedules.is_empty()) {
            (Some(_), false) => {
                self.error(
                    "backup.schedules",
                    "`backup` takes `schedule` or `schedules`, not both",
                )
                .help =
                    Some("move the single `schedule` into `schedules` with a `name`".to_owned());
            }
            (None, true) => {
                self.error("backup", "`backup` needs a `schedule` or `schedules`")
                    .help = Some("for a nightly dump: `schedule: \"0 2 * * *\"`".to_owned());
            }
            _ => {}
        }
        if let Some(schedule) = &backup.schedule {
            self.check_cron("backup.schedule", schedule);
        }
        self.check_retention("backup.retention", &backup.retention);
        match (&backup.destination.volume, &backup.destination.directory) {
            (Some(_), Some(_)) => {
                self.error(
                    "backup.destination",
                    "a backup destination takes `volume` or `directory`, not both",
                );
            }
            (None, None) => {
                self.error(
                    "backup.destination",
                    "a backup destination needs `volume` or `directory`",
                );
            }
            (Some(volume), None) if !is_docker_name(volume) => {
                self.error(
                    "backup.destination.volume",
                    format!("volume name `{volume}` is not a valid Docker name"),
                );
            }
            _ => {}
        }
        let declared: BTreeSet<&str> = file
            .databases
            .iter()
            .map(|database| database.name.as_str())
            .collect();
        let check_databases = |checker: &mut Self, path: &str, databases: &[String]| {
            for (index, name) in databases.iter().enumerate() {
                if !declared.contains(name.as_str()) {
                    checker.warning(
                        &join_index(path, index),
                        format!("backup of database `{name}`, which the spec does not declare"),
                    );
                }
            }
        };
        check_databases(self, "backup.databases", &backup.databases);
        let mut seen = BTreeMap::new();
        for (index, schedule) in backup.schedules.iter().enumerate() {
            let path = join_index("backup.schedules", index);
            let name_path = join_key(&path, "name");
            if !is_docker_name(&schedule.name) {
                self.error(
                    &name_path,
                    format!("schedule name `{}` is not a plain name", schedule.name),
                )
                .help = Some(
                    "use letters, digits, `_`, `.` and `-`, starting with a letter or digit"
                        .to_owned(),
                );
            }
            self.check_duplicate(&mut seen, &name_path, &schedule.name, "backup schedule");
            self.check_cron(&join_key(&path, "schedule"), &schedule.schedule);
            self.check_retention(&join_key(&path, "retention"), &schedule.retention);
            check_databases(self, &join_key(&path, "databases"), &schedule.databases);
        }
    }
}

// ---------------------------------------------------------------------------
// Lowering.

/// Lowers a checked spec into the desired state. Only called when `check`
/// found no errors, so every parse here succeeds; a failure falls back to
/// "no limit" rather than panicking.
fn lower(loaded: &Loaded) -> Desired {
    let file = &loaded.file;
    let base = loaded.path.parent().unwrap_or(Path::new(""));
    let postgres = file.postgres.clone().unwrap_or_default();

    let container = postgres.image.as_ref().map(|image| {
        let resources = postgres.resources.clone().unwrap_or_default();
        let superuser = postgres.superuser.as_ref();
        let superuser_name = superuser
            .and_then(|superuser| superuser.name.clone())
            .unwrap_or_else(|| "postgres".to_owned());
        Container {
            name: format!("{}-postgres", file.name),
            image: image.clone(),
            port: postgres
                .port
                .and_then(|port| u16::try_from(port).ok())
                .unwrap_or(5432),
            bind_address: postgres
                .bind_address
                .clone()
                .unwrap_or_else(|| "127.0.0.1".to_owned()),
            volume: postgres
                .volume
                .clone()
                .unwrap_or_else(|| format!("{}-pgdata", file.name)),
            // Where the data lives is read from the image, never guessed
            // from its tag (`model::data`); `plan::diff` fills it in.
            data_mount: String::new(),
            nano_cpus: resources.cpus.map(|cpus| (cpus * 1e9).round() as i64),
            memory_bytes: resources
                .memory
                .as_deref()
                .and_then(|memory| units::parse_docker_memory(memory).ok()),
            shm_bytes: resources
                .shm_size
                .as_deref()
                .and_then(|size| units::parse_docker_memory(size).ok()),
            superuser: superuser_name.clone(),
            superuser_password: superuser
                .map(|superuser| Secret::from_ref(&superuser.password, base)),
            state: ContainerState::Running,
            id: String::new(),
            image_id: String::new(),
            pgdata: String::new(),
            data_kind: String::new(),
            data_major: None,
            volume_exists: true,
            network: format!("{}-net", file.name),
            network_exists: true,
            restart_policy: "unless-stopped".to_owned(),
            engine_cpus: None,
            engine_memory_bytes: None,
            health_check: Container::server_health_check(&superuser_name),
            health: None,
            config_hash: String::new(),
        }
    });

    let settings = postgres
        .settings
        .iter()
        .map(|(name, value)| {
            (
                name.clone(),
                Setting {
                    value: setting_text(value),
                    ..Setting::default()
                },
            )
        })
        .collect();

    let roles = file
        .roles
        .iter()
        .map(|role| {
            let mut member_of = role.member_of.clone();
            member_of.sort();
            member_of.dedup();
            let lowered = Role {
                name: role.name.clone(),
                login: role.login.unwrap_or(false),
                superuser: role.superuser.unwrap_or(false),
                createdb: role.createdb.unwrap_or(false),
                createrole: role.createrole.unwrap_or(false),
                replication: role.replication.unwrap_or(false),
                bypassrls: role.bypassrls.unwrap_or(false),
                inherit: role.inherit.unwrap_or(true),
                connection_limit: role.connection_limit.unwrap_or(-1),
                valid_until: role.valid_until.clone(),
                password: role
                    .password
                    .as_ref()
                    .map(|password| Secret::from_ref(password, base)),
                member_of,
                settings: lower_settings(&role.settings),
                ..Role::default()
            };
            (role.name.clone(), lowered)
        })
        .collect();

    let databases = file
        .databases
        .iter()
        .map(|database| (database.name.clone(), lower_database(database)))
        .collect();

    let connection = postgres
        .connection
        .as_ref()
        .map(|connection| Connection {
            url: connection
                .url
                .as_ref()
                .map(|url| Secret::from_ref(url, base)),
            host: connection.host.clone(),
            port: connection.port.and_then(|port| u16::try_from(port).ok()),
            user: connection.user.clone(),
            password: connection
                .password
                .as_ref()
                .map(|password| Secret::from_ref(password, base)),
            database: connection.database.clone(),
        })
        .unwrap_or_default();

    Desired {
        path: loaded.path.clone(),
        deployment: Deployment {
            name: file.name.clone(),
            container,
            settings,
            roles,
            databases,
            pooler: file.pooler.as_ref().map(lower_pooler),
            backup: file
                .backup
                .as_ref()
                .map(|backup| lower_backup(file, backup, base)),
            ..Deployment::default()
        },
        connection,
        options: DiffOptions { prune: file.prune },
    }
}

fn lower_settings(settings: &BTreeMap<String, SettingValue>) -> BTreeMap<String, String> {
    settings
        .iter()
        .map(|(name, value)| (name.clone(), setting_text(value)))
        .collect()
}

fn lower_database(database: &crate::spec::file::DatabaseSpec) -> Database {
    let extensions = database
        .extensions
        .iter()
        .map(|extension| {
            let lowered = match extension {
                ExtensionEntry::Name(name) => Extension {
                    name: name.clone(),
                    ..Extension::default()
                },
                ExtensionEntry::Full(full) => Extension {
                    name: full.name.clone(),
                    version: full.version.clone(),
                    schema: full.schema.clone(),
                    managed: false,
                },
            };
            (lowered.name.clone(), lowered)
        })
        .collect();
    let schemas = database
        .schemas
        .iter()
        .map(|schema| {
            let lowered = match schema {
                SchemaEntry::Name(name) => Schema {
                    name: name.clone(),
                    owner: None,
                },
                SchemaEntry::Full(full) => Schema {
                    name: full.name.clone(),
                    owner: full.owner.clone(),
                },
            };
            (lowered.name.clone(), lowered)
        })
        .collect();

    // Grants for the same grantee and target merge into one.
    let mut grants: BTreeMap<(String, GrantTarget), BTreeSet<String>> = BTreeMap::new();
    for grant in &database.grants {
        let grantee = if grant.role.eq_ignore_ascii_case("public") {
            "PUBLIC".to_owned()
        } else {
            grant.role.clone()
        };
        grants
            .entry((grantee, grant_target(grant)))
            .or_default()
            .extend(
                grant
                    .privileges
                    .iter()
                    .map(|privilege| normalize_privilege(privilege)),
            );
    }
    let grants = grants
        .into_iter()
        .map(|((grantee, target), privileges)| Grant {
            grantee,
            target,
            privileges: privileges.into_iter().collect(),
        })
        .collect();

    let indexes = database
        .indexes
        .iter()
        .map(|index| {
            let (schema, table) = split_table(&index.table);
            let lowered = Index {
                name: index.name.clone(),
                definition: index_definition(index, &schema, &table),
                schema,
                table,
                invalid: false,
                managed: false,
                ..Index::default()
            };
            (index.name.clone(), lowered)
        })
        .collect();

    Database {
        name: database.name.clone(),
        owner: database.owner.clone(),
        connection_limit: database.connection_limit,
        encoding: database.encoding.clone(),
        locale: database.locale.clone(),
        template: database.template.clone(),
        settings: lower_settings(&database.settings),
        extensions,
        schemas,
        grants,
        indexes,
        ..Database::default()
    }
}

fn grant_target(grant: &GrantSpec) -> GrantTarget {
    let schema = grant.schema.clone().unwrap_or_default();
    let names = |selection: &ObjectSelection| match selection {
        ObjectSelection::All(_) => None,
        ObjectSelection::Names(names) => {
            let mut names = names.clone();
            names.sort();
            names.dedup();
            Some(names)
        }
    };
    if let Some(selection) = &grant.tables {
        GrantTarget::Tables {
            schema,
            names: names(selection),
        }
    } else if let Some(selection) = &grant.sequences {
        GrantTarget::Sequences {
            schema,
            names: names(selection),
        }
    } else if let Some(selection) = &grant.functions {
        GrantTarget::Functions {
            schema,
            names: names(selection),
        }
    } else if let Some(kind) = grant.default_for {
        GrantTarget::Default {
            schema,
            object: default_object_name(kind).to_owned(),
            for_role: grant.for_role.clone(),
        }
    } else if grant.schema.is_some() {
        GrantTarget::Schema { schema }
    } else {
        GrantTarget::Database
    }
}

/// A possibly schema-qualified name (`public.gin_trgm_ops`), each part
/// quoted.
fn quote_qualified(name: &str) -> String {
    name.split('.')
        .map(quote_ident)
        .collect::<Vec<_>>()
        .join(".")
}

/// The `CREATE INDEX` statement pgspec would run for `index`, in the order
/// PostgreSQL's grammar wants: key columns with `COLLATE`, operator class,
/// `ASC`/`DESC` and `NULLS`, then `INCLUDE`, `NULLS NOT DISTINCT`, `WITH`
/// and `WHERE`. Expressions and the predicate are SQL the spec's author
/// wrote and are used as written.
pub fn index_definition(index: &IndexSpec, schema: &str, table: &str) -> String {
    let method = index
        .using
        .as_deref()
        .unwrap_or("btree")
        .to_ascii_lowercase();
    let keys: Vec<String> = index
        .columns
        .iter()
        .map(|column| match column {
            IndexColumn::Name(name) => quote_ident(name),
            IndexColumn::Full(full) => {
                let mut key = match (&full.column, &full.expression) {
                    (Some(name), _) => quote_ident(name),
                    (None, Some(expression)) => format!("({expression})"),
                    (None, None) => String::new(),
                };
                if let Some(collation) = &full.collation {
                    key.push_str(&format!(" COLLATE {}", quote_qualified(collation)));
                }
                if let Some(opclass) = &full.opclass {
                    key.push_str(&format!(" {}", quote_qualified(opclass)));
                }
                match full.order {
                    Some(SortOrder::Asc) => key.push_str(" ASC"),
                    Some(SortOrder::Desc) => key.push_str(" DESC"),
                    None => {}
                }
                match full.nulls {
                    Some(NullsOrder::First) => key.push_str(" NULLS FIRST"),
                    Some(NullsOrder::Last) => key.push_str(" NULLS LAST"),
                    None => {}
                }
                key
            }
        })
        .collect();
    let mut statement = format!(
        "CREATE {}INDEX {} ON {}.{} USING {method} ({})",
        if index.unique { "UNIQUE " } else { "" },
        quote_ident(&index.name),
        quote_ident(schema),
        quote_ident(table),
        keys.join(", ")
    );
    if !index.include.is_empty() {
        let include: Vec<String> = index.include.iter().map(|name| quote_ident(name)).collect();
        statement.push_str(&format!(" INCLUDE ({})", include.join(", ")));
    }
    if index.nulls_not_distinct {
        statement.push_str(" NULLS NOT DISTINCT");
    }
    if !index.with.is_empty() {
        let parameters: Vec<String> = index
            .with
            .iter()
            .map(|(name, value)| {
                let value = match value {
                    SettingValue::Integer(number) => number.to_string(),
                    SettingValue::Float(number) => number.to_string(),
                    SettingValue::Bool(true) => "on".to_owned(),
                    SettingValue::Bool(false) => "off".to_owned(),
                    other => quote_literal(&setting_text(other)),
                };
                format!("{name} = {value}")
            })
            .collect();
        statement.push_str(&format!(" WITH ({})", parameters.join(", ")));
    }
    if let Some(predicate) = &index.predicate {
        statement.push_str(&format!(" WHERE {predicate}"));
    }
    statement
}

fn pool_mode_text(mode: PoolMode) -> String {
    match mode {
        PoolMode::Session => "session",
        PoolMode::Transaction => "transaction",
        PoolMode::Statement => "statement",
    }
    .to_owned()
}

fn lower_pooler(pooler: &PoolerSpec) -> Pooler {
    let mut settings = BTreeMap::new();
    if let Some(mode) = pooler.pool_mode {
        settings.insert("pool_mode".to_owned(), pool_mode_text(mode));
    }
    for (name, value) in [
        ("default_pool_size", pooler.default_pool_size),
        ("min_pool_size", pooler.min_pool_size),
        ("reserve_pool_size", pooler.reserve_pool_size),
        ("max_client_conn", pooler.max_client_conn),
        ("max_db_connections", pooler.max_db_connections),
    ] {
        if let Some(value) = value {
            settings.insert(name.to_owned(), value.to_string());
        }
    }
    for (name, value) in [
        ("server_idle_timeout", &pooler.server_idle_timeout),
        ("server_lifetime", &pooler.server_lifetime),
        ("query_wait_timeout", &pooler.query_wait_timeout),
    ] {
        if let Some(micros) = value
            .as_deref()
            .and_then(|text| units::parse_pg_time(text, "s").ok())
        {
            settings.insert(name.to_owned(), units::seconds_text(micros));
        }
    }
    let databases = pooler
        .databases
        .iter()
        .map(|(name, overrides)| {
            let mut lowered = BTreeMap::new();
            if let Some(pool_size) = overrides.pool_size {
                lowered.insert("pool_size".to_owned(), pool_size.to_string());
            }
            if let Some(mode) = overrides.pool_mode {
                lowered.insert("pool_mode".to_owned(), pool_mode_text(mode));
            }
            if let Some(max) = overrides.max_db_connections {
                lowered.insert("max_db_connections".to_owned(), max.to_string());
            }
            (name.clone(), lowered)
        })
        .collect();
    Pooler {
        image: pooler.image.clone().unwrap_or_default(),
        port: pooler
            .port
            .and_then(|port| u16::try_from(port).ok())
            .unwrap_or(6432),
        bind_address: pooler
            .bind_address
            .clone()
            .unwrap_or_else(|| "127.0.0.1".to_owned()),
        settings,
        databases,
        ..Pooler::default()
    }
}

fn lower_backup(file: &SpecFile, backup: &BackupSpec, base: &Path) -> Backup {
    let destination = match (&backup.destination.volume, &backup.destination.directory) {
        (Some(volume), _) => BackupDestination::Volume(volume.clone()),
        (None, Some(directory)) => {
            BackupDestination::Directory(base.join(directory).display().to_string())
        }
        (None, None) => BackupDestination::default(),
    };
    let all_databases = || {
        let mut names: Vec<String> = file
            .databases
            .iter()
            .map(|database| database.name.clone())
            .collect();
        names.sort();
        names
    };
    let sorted = |databases: &[String]| {
        let mut databases = databases.to_vec();
        databases.sort();
        databases.dedup();
        databases
    };
    let kind_text = |kind: Option<crate::spec::file::BackupKind>| {
        use crate::spec::file::BackupKind;
        match kind.unwrap_or(BackupKind::Full) {
            BackupKind::Full => "full",
            BackupKind::Data => "data",
            BackupKind::Schema => "schema",
            BackupKind::Globals => "globals",
        }
        .to_owned()
    };
    let format_text = |format: Option<crate::spec::file::BackupFormat>| {
        use crate::spec::file::BackupFormat;
        match format.unwrap_or(BackupFormat::Custom) {
            BackupFormat::Custom => "custom",
            BackupFormat::Plain => "plain",
            BackupFormat::Directory => "directory",
        }
        .to_owned()
    };
    let section_databases = if backup.databases.is_empty() {
        all_databases()
    } else {
        sorted(&backup.databases)
    };
    let schedule = |name: &str,
                    cron: &str,
                    kind,
                    format,
                    databases: &[String],
                    retention: &Option<RetentionSpec>| {
        let retention = retention.as_ref().or(backup.retention.as_ref());
        BackupSchedule {
            name: name.to_owned(),
            cron: units::check_cron(cron).unwrap_or_else(|_| cron.trim().to_owned()),
            kind: kind_text(kind),
            format: format_text(format),
            databases: if databases.is_empty() {
                section_databases.clone()
            } else {
                sorted(databases)
            },
            retention_days: retention.and_then(|retention| retention.days),
            max_count: retention.and_then(|retention| retention.max_count),
            min_count: retention.and_then(|retention| retention.min_count),
        }
    };
    let mut schedules = BTreeMap::new();
    if let Some(cron) = &backup.schedule {
        schedules.insert(
            "default".to_owned(),
            schedule("default", cron, backup.kind, backup.format, &[], &None),
        );
    }
    for entry in &backup.schedules {
        schedules.insert(
            entry.name.clone(),
            schedule(
                &entry.name,
                &entry.schedule,
                entry.kind.or(backup.kind),
                entry.format.or(backup.format),
                &entry.databases,
                &entry.retention,
            ),
        );
    }
    Backup {
        destination,
        schedules,
        ..Backup::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::load_str;

    fn validate(text: &str) -> Result<Validated, Diagnostics> {
        load_str(Path::new("spec.yaml"), text)?.validate()
    }

    fn messages(text: &str) -> Vec<String> {
        match validate(text) {
            Ok(validated) => validated
                .warnings
                .items
                .iter()
                .map(|item| format!("warning: {}", item.message))
                .collect(),
            Err(diagnostics) => diagnostics
                .items
                .iter()
                .map(|item| format!("{}: {}", item.severity.as_str(), item.message))
                .collect(),
        }
    }

    #[test]
    fn privileges_are_normalised() {
        assert_eq!(normalize_privilege("temp"), "TEMPORARY");
        assert_eq!(normalize_privilege("all  privileges"), "ALL");
        assert_eq!(normalize_privilege("Select"), "SELECT");
    }

    #[test]
    fn preload_libraries_reads_lists_and_text() {
        assert_eq!(
            preload_libraries(&SettingValue::Text(
                "'$libdir/pg_stat_statements', pg_cron".into()
            )),
            ["pg_stat_statements", "pg_cron"]
        );
        assert_eq!(
            preload_libraries(&SettingValue::List(vec!["auto_explain".into()])),
            ["auto_explain"]
        );
    }

    #[test]
    fn setting_values_lower_to_text() {
        assert_eq!(setting_text(&SettingValue::Bool(true)), "on");
        assert_eq!(setting_text(&SettingValue::Integer(200)), "200");
        assert_eq!(setting_text(&SettingValue::Float(0.9)), "0.9");
        assert_eq!(
            setting_text(&SettingValue::List(vec!["a".into(), "b".into()])),
            "a, b"
        );
    }

    #[test]
    fn index_definition_quotes_and_orders_clauses() {
        let index: IndexSpec = serde_yaml::from_str(
            r#"
name: idx_events
table: audit.events
unique: true
using: BTREE
columns:
  - account_id
  - { column: created_at, order: desc, nulls: last, collation: C }
  - { expression: "lower(url)", opclass: text_pattern_ops }
include: [payload]
nulls_not_distinct: true
with: { fillfactor: 90 }
where: "deleted_at IS NULL"
"#,
        )
        .expect("valid index");
        let (schema, table) = split_table(&index.table);
        assert_eq!(
            index_definition(&index, &schema, &table),
            r#"CREATE UNIQUE INDEX "idx_events" ON "audit"."events" USING btree ("account_id", "created_at" COLLATE "C" DESC NULLS LAST, (lower(url)) "text_pattern_ops") INCLUDE ("payload") NULLS NOT DISTINCT WITH (fillfactor = 90) WHERE deleted_at IS NULL"#
        );
    }

    #[test]
    fn minimal_spec_lowers_with_defaults() {
        let validated = validate(
            "version: 1\nname: app\npostgres:\n  image: postgres:18\n  superuser: { password: { env: PW } }\nroles:\n  - name: app\n",
        )
        .expect("valid");
        let container = validated.spec.deployment.container.expect("container");
        assert_eq!(container.name, "app-postgres");
        assert_eq!(container.port, 5432);
        assert_eq!(container.volume, "app-pgdata");
        // The tag says nothing about where the data lives.
        assert_eq!(container.data_mount, "");
        let role = &validated.spec.deployment.roles["app"];
        assert!(role.inherit && !role.login);
        assert_eq!(role.connection_limit, -1);
    }

    #[test]
    fn role_references_must_be_declared() {
        let found = messages(
            "version: 1\nname: app\nroles:\n  - { name: app, member_of: [pg_read_all_data, admins] }\n\
             databases:\n  - name: app\n    owner: postgres\n    grants:\n      - { role: public, privileges: [connect] }\n      - { role: apps, privileges: [connect] }\n",
        );
        assert_eq!(
            found,
            [
                "error: role `admins` is not declared",
                "error: role `apps` is not declared"
            ]
        );
    }

    #[test]
    fn identifiers_count_bytes() {
        // 32 two-byte characters: 32 characters, 64 bytes.
        let name = "é".repeat(32);
        let found = messages(&format!(
            "version: 1\nname: app\nroles:\n  - name: {name}\n"
        ));
        assert_eq!(
            found,
            [format!(
                "error: role name `{name}` is 64 bytes long; PostgreSQL keeps at most 63"
            )]
        );
    }

    #[test]
    fn duplicates_are_reported() {
        let found = messages(
            "version: 1\nname: app\nroles: [{ name: a }, { name: a }]\ndatabases:\n  - { name: d, extensions: [x, { name: x }] }\n",
        );
        assert_eq!(
            found,
            [
                "error: duplicate role `a`",
                "error: duplicate extension `x`"
            ]
        );
    }

    /// Issue 15: spec text must not smuggle a statement into `CREATE INDEX`.
    #[test]
    fn index_text_must_be_one_expression() {
        let text = "version: 1\nname: app\ndatabases:\n  - name: d\n    indexes:\n      \
                    - { name: i, table: t, columns: [{ expression: \"lower(a)); DROP TABLE t; --\" }] }\n      \
                    - { name: j, table: t, columns: [a], where: \"true; COPY (SELECT 1) TO PROGRAM 'touch /tmp/x'\" }\n      \
                    - { name: k, table: t, columns: [a], where: \"note <> 'a;b' AND note <> $$)$$\" }\n";
        let Err(diagnostics) = validate(text) else {
            panic!("the spec should be invalid");
        };
        let found: Vec<(String, String)> = diagnostics
            .items
            .iter()
            .map(|item| (item.path.clone().unwrap_or_default(), item.message.clone()))
            .collect();
        assert_eq!(
            found,
            [
                (
                    "databases[0].indexes[0].columns[0].expression".to_owned(),
                    "index expression is not one SQL expression: `)` closes a bracket that was \
                     not opened in the expression"
                        .to_owned()
                ),
                (
                    "databases[0].indexes[1].where".to_owned(),
                    "index predicate is not one SQL expression: `;` outside a string would end \
                     the statement"
                        .to_owned()
                ),
            ]
        );
        let rendered = diagnostics.render(false);
        assert!(rendered.contains("spec.yaml:6:"), "{rendered}");
    }

    /// Issue 15: a name with a control character is data nowhere pgspec
    /// writes it, so it is refused.
    #[test]
    fn names_with_control_characters_are_rejected() {
        let found = messages(
            "version: 1\nname: app\nroles: [{ name: \"a\\nb\" }, { name: r, member_of: [\"pg_\\u001b[31m\"] }]\n\
             databases:\n  - { name: \"d\\0\", schemas: [\"s\\r\"] }\n\
             pooler: { image: p, databases: { \"x\\ny\": { pool_size: 1 } } }\n\
             postgres: { image: postgres:17 }\n",
        );
        for expected in [
            "error: role name `a\\nb` holds the control character \\n",
            "error: role name `pg_\\u{1b}[31m` holds the control character \\u{1b}",
            "error: database name `d\\u{0}` holds the control character \\u{0}",
            "error: schema name `s\\r` holds the control character \\r",
            "error: database name `x\\ny` holds the control character \\n",
        ] {
            assert!(
                found.iter().any(|message| message == expected),
                "{expected} in {found:#?}"
            );
        }
    }

    #[test]
    fn grant_shapes_are_checked() {
        let found = messages(
            "version: 1\nname: app\nroles: [{ name: r }]\ndatabases:\n  - name: d\n    grants:\n\
             \x20     - { role: r, tables: all, privileges: [select] }\n\
             \x20     - { role: r, schema: s, tables: all, sequences: all, privileges: [select] }\n\
             \x20     - { role: r, schema: s, for_role: r, privileges: [usage] }\n\
             \x20     - { role: r, schema: s, functions: all, privileges: [select] }\n\
             \x20     - { role: r, privileges: [temp, connect] }\n",
        );
        assert_eq!(
            found,
            [
                "error: `tables` needs `schema`",
                "error: a grant takes at most one of `tables`, `sequences`, `functions` and `default_for`, found `tables` and `sequences`",
                "error: `for_role` applies only to `default_for` grants",
                "error: privilege `select` does not apply to functions",
            ]
        );
    }

    #[test]
    fn settings_units_are_checked() {
        let found = messages(
            "version: 1\nname: app\npostgres:\n  settings:\n    shared_buffers: 1s\n    work_mem: 64mb\n    statement_timeout: 30s\n    search_path: '\"$user\", public'\n",
        );
        assert_eq!(
            found,
            [
                "error: `shared_buffers` takes a memory size, `1s` is a time",
                "error: `work_mem`: `64mb` has a unit PostgreSQL does not accept",
            ]
        );
    }

    #[test]
    fn container_fields_need_an_image() {
        let found = messages(
            "version: 1\nname: app\npostgres:\n  port: 5433\n  connection: { host: db.internal }\n",
        );
        assert_eq!(found, ["error: `postgres.port` needs `postgres.image`"]);
    }

    #[test]
    fn pooler_warning_when_pools_exceed_max_connections() {
        let found = messages(
            "version: 1\nname: app\npostgres:\n  image: postgres:17\n  superuser: { password: { env: PW } }\n  \
             settings: { max_connections: 60 }\npooler:\n  image: pgbouncer\n  default_pool_size: 30\n\
             databases: [{ name: a }, { name: b }]\n",
        );
        assert_eq!(
            found,
            [
                "warning: pooler pools can open 60 server connections, more than the 57 that \
                 `max_connections` (60) leaves after `superuser_reserved_connections` (3)"
            ]
        );
        // A pool per login role, capped per database by `max_db_connections`.
        let spec = |cap: &str| {
            format!(
                "version: 1\nname: app\npostgres:\n  image: postgres:17\n  \
                 superuser: {{ password: {{ env: PW }} }}\n  settings: {{ max_connections: 60 }}\n\
                 pooler:\n  image: pgbouncer\n{cap}\
                 roles: [{{ name: a, login: true }}, {{ name: b, login: true }}, {{ name: c }}]\n\
                 databases: [{{ name: a }}, {{ name: b }}]\n"
            )
        };
        assert_eq!(
            messages(&spec("")),
            [
                "warning: pooler pools can open 80 server connections, more than the 57 that \
                 `max_connections` (60) leaves after `superuser_reserved_connections` (3)"
            ]
        );
        assert!(messages(&spec("  max_db_connections: 25\n")).is_empty());
    }

    #[test]
    fn pooler_and_server_cannot_publish_the_same_port() {
        let found = messages(
            "version: 1\nname: app\npostgres:\n  image: postgres:17\n  port: 6432\n  \
             superuser: { password: { env: PW } }\npooler:\n  image: pgbouncer\n",
        );
        assert_eq!(
            found,
            ["error: the pooler and the server both publish port 6432"]
        );
    }

    #[test]
    fn pooler_needs_an_image_and_the_server_container() {
        let found = messages("version: 1\nname: app\npooler:\n  default_pool_size: 5\n");
        assert_eq!(
            found,
            [
                "error: `pooler.image` is required",
                "error: `pooler` needs `postgres.image`"
            ]
        );
    }

    #[test]
    fn pooler_durations_lower_to_seconds() {
        let validated = validate(
            "version: 1\nname: app\npostgres:\n  image: postgres:17\n  superuser: { password: { env: PW } }\n\
             pooler:\n  image: pgbouncer\n  pool_mode: transaction\n  server_idle_timeout: 10min\n  query_wait_timeout: \"30\"\n",
        )
        .expect("valid");
        let pooler = validated.spec.deployment.pooler.expect("pooler");
        assert_eq!(pooler.settings["server_idle_timeout"], "600");
        assert_eq!(pooler.settings["query_wait_timeout"], "30");
        assert_eq!(pooler.settings["pool_mode"], "transaction");
        assert_eq!(pooler.port, 6432);
    }

    #[test]
    fn backups_need_one_destination_and_valid_cron() {
        let found = messages(
            "version: 1\nname: app\nbackup:\n  schedule: \"0 0 2 * * *\"\n  destination: {}\n",
        );
        assert_eq!(
            found,
            [
                "error: cron expression `0 0 2 * * *` has 6 fields; pgspec takes 5, without seconds",
                "error: a backup destination needs `volume` or `directory`",
            ]
        );
    }
}
