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
//! Invariant: no I/O. Like `plan::diff`, this is a function of plain data.

use std::collections::{BTreeMap, BTreeSet};

use crate::live::all::{ContainerSurvey, DatabaseSurvey, Survey};
use crate::model::notation::{format_bytes, list_items};
use crate::model::{Database, PRELOADED_EXTENSIONS, Role, Setting};
use crate::spec::file::{
    ConnectionSpec, DatabaseSpec, ExtensionEntry, ExtensionSpec, PostgresSpec, ResourcesSpec,
    RoleSpec, SchemaEntry, SchemaSpec, SecretRef, SettingValue, SpecFile, SuperuserSpec,
};

mod grants;
mod indexes;
pub mod names;
mod services;
pub mod yaml;

use names::{PasswordVariables, glob_matches};
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

/// Settings the server keeps in lists; imported as YAML lists.
const LIST_SETTINGS: &[&str] = &[
    "shared_preload_libraries",
    "session_preload_libraries",
    "local_preload_libraries",
];

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

        let postgres = self.postgres();
        let roles = self.roles();
        let databases = self.databases();
        let backup = self.backup(&databases);
        let pooler = self.pooler(&databases);

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
             schedules."
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
            prune: false,
        };
        Imported {
            file,
            comments: self.comments,
            variables: self.variables,
        }
    }

    fn version_text(&self) -> String {
        let number = self
            .survey
            .deployment
            .server
            .as_ref()
            .map_or(0, |server| server.version_num);
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

    fn postgres(&mut self) -> Option<PostgresSpec> {
        let mut spec = PostgresSpec::default();
        if let Some(survey) = &self.options.container {
            let container = &survey.container;
            let name = &self.options.name;
            if container.name != format!("{name}-postgres") {
                self.header.push(format!(
                    "The server runs in container `{}`, but pgspec names the container of \
                     deployment `{name}` `{name}-postgres`: a plan of this spec creates that \
                     one. Rename the container, or import with `--name`.",
                    container.name
                ));
            }
            if survey.ephemeral_port {
                self.header.push(format!(
                    "The container publishes the server on a port Docker picked ({}); the spec \
                     pins it, and a plan replaces the container to publish on it explicitly.",
                    container.port
                ));
            }
            if !survey.labelled {
                self.header.push(
                    "pgspec did not create this container: a plan may still want to attach it \
                     to the deployment network and set its restart policy."
                        .to_owned(),
                );
            }
            spec.image = Some(container.image.clone());
            spec.port = (container.port != 5432).then_some(i64::from(container.port));
            spec.bind_address =
                (container.bind_address != "127.0.0.1").then(|| container.bind_address.clone());
            spec.volume =
                (container.volume != format!("{name}-pgdata")).then(|| container.volume.clone());
            let resources = ResourcesSpec {
                cpus: container.nano_cpus.map(|nano| nano as f64 / 1e9),
                memory: container.memory_bytes.map(format_bytes),
                // 64 MiB is what Docker gives a container that asks for none.
                shm_size: container
                    .shm_bytes
                    .filter(|bytes| *bytes != 64 << 20)
                    .map(format_bytes),
            };
            if resources.cpus.is_some()
                || resources.memory.is_some()
                || resources.shm_size.is_some()
            {
                spec.resources = Some(resources);
            }
            let superuser = container.superuser.clone();
            let password = self.password_variable(
                &superuser,
                format!("password of the superuser `{superuser}`"),
            );
            spec.superuser = Some(SuperuserSpec {
                name: (superuser != "postgres").then_some(superuser),
                password,
            });
        } else if let Some(connection) = &self.options.connection {
            spec.connection = Some(connection.clone());
            self.note(
                "postgres.connection",
                "how this import connected; the password comes from PGPASSWORD".to_owned(),
            );
        }
        spec.settings = self.settings();
        let empty = spec.image.is_none() && spec.connection.is_none() && spec.settings.is_empty();
        (!empty).then_some(spec)
    }

    /// Settings written with ALTER SYSTEM, as written.
    fn settings(&mut self) -> BTreeMap<String, SettingValue> {
        let mut settings = BTreeMap::new();
        let Some(written) = &self.survey.system_settings else {
            self.note(
                "postgres",
                "settings are not imported: the connecting role cannot read the configuration \
                 files (it needs to be a superuser or a member of pg_read_all_settings)"
                    .to_owned(),
            );
            return settings;
        };
        let live_settings = &self.survey.deployment.settings;
        let mut notes = Vec::new();
        for (name, file_setting) in written {
            let live = live_settings.get(name);
            // A value for a restart-only setting is reported as "could not be
            // applied" until the restart; it is written, not rejected.
            let waiting = file_setting.error.as_deref() == Some("setting could not be applied");
            if let Some(error) = file_setting.error.as_ref().filter(|_| !waiting) {
                notes.push(format!(
                    "`{name} = {}` in postgresql.auto.conf is not imported: the server rejects \
                     it ({error})",
                    file_setting.value
                ));
                continue;
            }
            let source = live.and_then(|setting| setting.source.as_deref());
            if matches!(source, Some("command line") | Some("environment variable")) {
                notes.push(format!(
                    "`{name}` is not imported: the server's {} sets it, which overrides ALTER \
                     SYSTEM",
                    source.unwrap_or_default()
                ));
                continue;
            }
            if !file_setting.applied {
                let restart =
                    live.and_then(|setting| setting.context.as_deref()) == Some("postmaster");
                notes.push(format!(
                    "`{name}` is written but waits for a {}; the plan says so until then",
                    if restart { "restart" } else { "reload" }
                ));
            }
            settings.insert(name.clone(), setting_value(name, &file_setting.value, live));
        }
        for note in notes {
            self.note("postgres.settings", note);
        }
        settings
    }

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

    fn roles(&mut self) -> Vec<RoleSpec> {
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

    fn is_known(&self, role: &str) -> bool {
        role == "PUBLIC" || role.starts_with("pg_") || self.known.contains(role)
    }

    fn databases(&mut self) -> Vec<DatabaseSpec> {
        let mut specs = Vec::new();
        let mut left_out = Vec::new();
        for (name, live) in &self.survey.deployment.databases {
            let Some(survey) = self.survey.databases.get(name) else {
                continue;
            };
            let path = format!("databases[{}]", specs.len());
            let (spec, notes) = self.database(live, survey);
            let named = self.options.databases.contains(name);
            if name == "postgres"
                && !named
                && !self.options.include_system
                && self.pristine(&spec, &notes)
            {
                left_out.push(name.clone());
                continue;
            }
            for note in notes {
                self.note(&path, note);
            }
            specs.push(spec);
        }
        if !left_out.is_empty() {
            self.header.push(
                "The `postgres` database holds nothing but what initdb put there and is left \
                 out (--include-system imports it)."
                    .to_owned(),
            );
        }
        specs
    }

    /// Whether a database spec says nothing beyond what initdb made.
    fn pristine(&self, spec: &DatabaseSpec, notes: &[String]) -> bool {
        notes.is_empty()
            && spec
                .owner
                .as_ref()
                .is_none_or(|owner| *owner == self.survey.bootstrap_superuser)
            && spec.connection_limit.is_none()
            && spec.encoding.is_none()
            && spec.locale.is_none()
            && spec.settings.is_empty()
            && spec.extensions.is_empty()
            && spec.schemas.is_empty()
            && spec.grants.is_empty()
            && spec.indexes.is_empty()
    }

    fn database(&self, live: &Database, survey: &DatabaseSurvey) -> (DatabaseSpec, Vec<String>) {
        let mut notes = Vec::new();
        let owner = live.owner.clone().filter(|owner| {
            let known = self.is_known(owner);
            if !known {
                notes.push(format!(
                    "its owner `{owner}` is not imported, so the spec leaves the owner alone"
                ));
            }
            known
        });
        let live_settings = &self.survey.deployment.settings;
        let mut spec = DatabaseSpec {
            name: live.name.clone(),
            owner: owner.clone(),
            connection_limit: live.connection_limit.filter(|limit| *limit != -1),
            encoding: live
                .encoding
                .clone()
                .filter(|encoding| Some(encoding) != self.survey.template_encoding.as_ref()),
            locale: live
                .locale
                .clone()
                .filter(|locale| Some(locale) != self.survey.template_locale.as_ref()),
            settings: live
                .settings
                .iter()
                .map(|(name, value)| {
                    (
                        name.clone(),
                        setting_value(name, value, live_settings.get(name)),
                    )
                })
                .collect(),
            ..DatabaseSpec::default()
        };
        spec.extensions = self.extensions(live, &mut notes);
        spec.schemas = self.schemas(live, survey, &mut notes);
        let known = |role: &str| self.is_known(role);
        let context = grants::Context {
            live,
            survey,
            owner: owner.as_deref(),
            version_num: self.version_num(),
            include_system: self.options.include_system,
            known: &known,
        };
        let (grants, grant_notes) = grants::grants(&context);
        spec.grants = grants;
        notes.extend(grant_notes);
        let (indexes, index_notes) = indexes::indexes(live, survey, self.options.include_system);
        spec.indexes = indexes;
        notes.extend(index_notes);
        (spec, notes)
    }

    fn version_num(&self) -> u32 {
        self.survey
            .deployment
            .server
            .as_ref()
            .map_or(0, |server| server.version_num)
    }

    fn extensions(&self, live: &Database, notes: &mut Vec<String>) -> Vec<ExtensionEntry> {
        let server = self.survey.deployment.server.as_ref();
        let preloaded = self.preloaded_libraries();
        let mut entries = Vec::new();
        for (name, extension) in &live.extensions {
            if name == "plpgsql" {
                continue;
            }
            if PRELOADED_EXTENSIONS.contains(&name.as_str()) && !preloaded.contains(name) {
                notes.push(format!(
                    "extension `{name}` is left out: it needs `{name}` in \
                     shared_preload_libraries, which the server {} list",
                    if self.written_preload().is_some() {
                        "(as written with ALTER SYSTEM) does not"
                    } else {
                        "does not"
                    }
                ));
                continue;
            }
            let available = server.and_then(|server| server.available_extensions.get(name));
            let version = extension.version.clone().filter(|version| {
                let default = available.and_then(|available| available.default_version.as_ref());
                if default == Some(version) {
                    return false;
                }
                let installable =
                    available.is_some_and(|available| available.versions.contains(version));
                if !installable {
                    notes.push(format!(
                        "extension `{name}` runs version {version}, which this server can no \
                         longer install; the spec accepts whatever version is installed"
                    ));
                }
                installable
            });
            let schema = extension.schema.clone().filter(|schema| schema != "public");
            entries.push(if version.is_none() && schema.is_none() {
                ExtensionEntry::Name(name.clone())
            } else {
                ExtensionEntry::Full(ExtensionSpec {
                    name: name.clone(),
                    version,
                    schema,
                })
            });
        }
        entries
    }

    /// `shared_preload_libraries` as the spec will say it (written with
    /// ALTER SYSTEM), if it says it.
    fn written_preload(&self) -> Option<&str> {
        self.survey
            .system_settings
            .as_ref()?
            .get("shared_preload_libraries")
            .map(|setting| setting.value.as_str())
    }

    /// The libraries the server loads, or will at its next start.
    fn preloaded_libraries(&self) -> BTreeSet<String> {
        let value = match self.written_preload() {
            Some(value) => value.to_owned(),
            None => self
                .survey
                .deployment
                .settings
                .get("shared_preload_libraries")
                .map(|setting: &Setting| {
                    setting
                        .pending_value
                        .clone()
                        .unwrap_or_else(|| setting.value.clone())
                })
                .unwrap_or_default(),
        };
        list_items(&value)
            .into_iter()
            .map(|item| {
                let base = item.rsplit('/').next().unwrap_or(&item).to_owned();
                base.trim_end_matches(".so").to_owned()
            })
            .collect()
    }

    fn schemas(
        &self,
        live: &Database,
        survey: &DatabaseSurvey,
        notes: &mut Vec<String>,
    ) -> Vec<SchemaEntry> {
        let mut entries = Vec::new();
        for (name, schema) in &live.schemas {
            let from_extension = survey.schemas.get(name) == Some(&true);
            if from_extension && !self.options.include_system {
                continue;
            }
            let owner = schema.owner.clone().unwrap_or_default();
            if name == "public" && owner == "pg_database_owner" {
                continue;
            }
            if !self.is_known(&owner) {
                notes.push(format!(
                    "schema `{name}` is owned by `{owner}`, which is not imported; the spec \
                     leaves its owner alone"
                ));
                entries.push(SchemaEntry::Name(name.clone()));
                continue;
            }
            // A schema created without an owner belongs to the role pgspec
            // connects as.
            entries.push(if owner == self.survey.current_user {
                SchemaEntry::Name(name.clone())
            } else {
                SchemaEntry::Full(SchemaSpec {
                    name: name.clone(),
                    owner: Some(owner),
                })
            });
        }
        entries
    }
}

/// A setting's text as a person writes it in YAML: `on`/`off` as
/// booleans, plain numbers as numbers, library lists as lists, anything
/// else (values with units, names) as text.
fn setting_value(name: &str, text: &str, live: Option<&Setting>) -> SettingValue {
    if LIST_SETTINGS.contains(&name) {
        let items = list_items(text);
        if items.iter().all(|item| !item.contains(['\'', ' ', '"'])) {
            return SettingValue::List(items);
        }
        return SettingValue::Text(text.to_owned());
    }
    let vartype = live.and_then(|setting| setting.vartype.as_deref());
    if vartype == Some("bool") {
        match text.trim().to_ascii_lowercase().as_str() {
            "on" | "true" | "yes" | "1" => return SettingValue::Bool(true),
            "off" | "false" | "no" | "0" => return SettingValue::Bool(false),
            _ => {}
        }
    }
    if matches!(vartype, None | Some("integer") | Some("real")) {
        if let Ok(number) = text.parse::<i64>()
            && number.to_string() == text
        {
            return SettingValue::Integer(number);
        }
        if vartype == Some("real")
            && let Ok(number) = text.parse::<f64>()
            && number.to_string() == text
        {
            return SettingValue::Float(number);
        }
    }
    SettingValue::Text(text.to_owned())
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
mod tests {
    use super::*;

    #[test]
    fn setting_values_take_their_yaml_type() {
        let typed = |vartype: &str| Setting {
            vartype: Some(vartype.to_owned()),
            ..Setting::default()
        };
        assert_eq!(
            setting_value("max_connections", "200", Some(&typed("integer"))),
            SettingValue::Integer(200)
        );
        assert_eq!(
            setting_value("shared_buffers", "256MB", Some(&typed("integer"))),
            SettingValue::Text("256MB".to_owned())
        );
        assert_eq!(
            setting_value("jit", "off", Some(&typed("bool"))),
            SettingValue::Bool(false)
        );
        assert_eq!(
            setting_value("random_page_cost", "1.1", Some(&typed("real"))),
            SettingValue::Float(1.1)
        );
        assert_eq!(
            setting_value(
                "shared_preload_libraries",
                "pg_stat_statements, auto_explain",
                None
            ),
            SettingValue::List(vec![
                "pg_stat_statements".to_owned(),
                "auto_explain".to_owned()
            ])
        );
        assert_eq!(
            setting_value("search_path", "\"$user\", public", Some(&typed("string"))),
            SettingValue::Text("\"$user\", public".to_owned())
        );
    }

    /// A small live deployment: roles, one database with grants of every
    /// kind, extensions and an index, settings written with ALTER SYSTEM.
    fn survey() -> Survey {
        use crate::live::all::{FileSetting, IndexKey, IndexParts, Relation};
        use crate::model::{
            Acl, AclObject, AvailableExtension, Extension, Index, Schema, ServerInfo,
        };
        let names = |items: &[&str]| items.iter().map(|item| (*item).to_owned()).collect();
        let acl = |object: AclObject, entries: &[(&str, &[&str])]| Acl {
            object,
            privileges: entries
                .iter()
                .map(|(grantee, privileges)| ((*grantee).to_owned(), names(privileges)))
                .collect(),
        };
        // What ALL grants on a table of the fixture's PostgreSQL 17.
        let all_table = crate::model::privileges::all_privileges("tables", 170_002);
        let role = |name: &str, login: bool| Role {
            name: name.to_owned(),
            login,
            inherit: true,
            connection_limit: -1,
            ..Role::default()
        };
        let setting = |value: &str, vartype: &str, context: &str| Setting {
            value: value.to_owned(),
            vartype: Some(vartype.to_owned()),
            context: Some(context.to_owned()),
            source: Some("configuration file".to_owned()),
            ..Setting::default()
        };
        let file_setting = |value: &str, applied: bool, error: Option<&str>| FileSetting {
            value: value.to_owned(),
            applied,
            error: error.map(str::to_owned),
        };
        let app = Database {
            name: "app".to_owned(),
            owner: Some("app".to_owned()),
            connection_limit: Some(-1),
            encoding: Some("UTF8".to_owned()),
            locale: Some("C.UTF-8".to_owned()),
            extensions: [
                ("plpgsql", "1.0", "pg_catalog"),
                ("pg_trgm", "1.6", "public"),
                ("hstore", "1.7", "s"),
            ]
            .into_iter()
            .map(|(name, version, schema)| {
                (
                    name.to_owned(),
                    Extension {
                        name: name.to_owned(),
                        version: Some(version.to_owned()),
                        schema: Some(schema.to_owned()),
                        managed: false,
                    },
                )
            })
            .collect(),
            schemas: [("public", "pg_database_owner"), ("s", "app")]
                .into_iter()
                .map(|(name, owner)| {
                    (
                        name.to_owned(),
                        Schema {
                            name: name.to_owned(),
                            owner: Some(owner.to_owned()),
                        },
                    )
                })
                .collect(),
            acls: vec![
                acl(
                    AclObject::Database,
                    &[
                        ("app", &["CONNECT", "CREATE", "TEMPORARY"]),
                        ("PUBLIC", &["CONNECT"]),
                        ("readers", &["CONNECT"]),
                    ],
                ),
                acl(
                    AclObject::Schema {
                        schema: "public".to_owned(),
                    },
                    &[
                        ("pg_database_owner", &["CREATE", "USAGE"]),
                        ("PUBLIC", &["USAGE"]),
                    ],
                ),
                acl(
                    AclObject::Schema {
                        schema: "s".to_owned(),
                    },
                    &[("app", &["CREATE", "USAGE"]), ("readers", &["USAGE"])],
                ),
                acl(
                    AclObject::Table {
                        schema: "s".to_owned(),
                        name: "t1".to_owned(),
                    },
                    &[("app", all_table), ("readers", &["SELECT"])],
                ),
                acl(
                    AclObject::Table {
                        schema: "s".to_owned(),
                        name: "t2".to_owned(),
                    },
                    &[
                        ("app", all_table),
                        ("readers", &["SELECT"]),
                        ("app_rw", all_table),
                    ],
                ),
                acl(
                    AclObject::Default {
                        schema: "s".to_owned(),
                        object: "tables".to_owned(),
                        for_role: "app".to_owned(),
                    },
                    &[("readers", &["SELECT"])],
                ),
                acl(
                    AclObject::Default {
                        schema: String::new(),
                        object: "functions".to_owned(),
                        for_role: "app".to_owned(),
                    },
                    &[("app", &["EXECUTE"])],
                ),
            ],
            indexes: [(
                "s.idx_t1_a".to_owned(),
                Index {
                    name: "idx_t1_a".to_owned(),
                    schema: "s".to_owned(),
                    table: "t1".to_owned(),
                    ..Index::default()
                },
            )]
            .into_iter()
            .collect(),
            ..Database::default()
        };
        let app_survey = DatabaseSurvey {
            schemas: [("public".to_owned(), false), ("s".to_owned(), false)]
                .into_iter()
                .collect(),
            relations: [(
                "s".to_owned(),
                ["t1", "t2"]
                    .into_iter()
                    .map(|name| {
                        (
                            name.to_owned(),
                            Relation {
                                kind: "r".to_owned(),
                                owner: "app".to_owned(),
                                extension: false,
                            },
                        )
                    })
                    .collect(),
            )]
            .into_iter()
            .collect(),
            functions: Vec::new(),
            indexes: [(
                "s.idx_t1_a".to_owned(),
                IndexParts {
                    schema: "s".to_owned(),
                    table: "t1".to_owned(),
                    name: "idx_t1_a".to_owned(),
                    method: "btree".to_owned(),
                    key_count: 1,
                    predicate: Some("(a > 0)".to_owned()),
                    keys: vec![IndexKey {
                        column: Some("a".to_owned()),
                        descending: true,
                        nulls_first: true,
                        ..IndexKey::default()
                    }],
                    ..IndexParts::default()
                },
            )]
            .into_iter()
            .collect(),
        };
        let postgres = Database {
            name: "postgres".to_owned(),
            owner: Some("postgres".to_owned()),
            connection_limit: Some(-1),
            encoding: Some("UTF8".to_owned()),
            locale: Some("C.UTF-8".to_owned()),
            ..Database::default()
        };
        Survey {
            deployment: crate::model::Deployment {
                settings: [
                    ("work_mem", setting("8192", "integer", "user")),
                    ("shared_buffers", setting("16384", "integer", "postmaster")),
                    ("jit", setting("off", "bool", "user")),
                ]
                .into_iter()
                .map(|(name, setting)| (name.to_owned(), setting))
                .collect(),
                roles: [
                    Role {
                        superuser: true,
                        createdb: true,
                        createrole: true,
                        replication: true,
                        bypassrls: true,
                        ..role("postgres", true)
                    },
                    Role {
                        member_of: names(&["readers"]),
                        settings: [("statement_timeout".to_owned(), "30s".to_owned())]
                            .into_iter()
                            .collect(),
                        ..role("app", true)
                    },
                    role("app_rw", true),
                    role("readers", false),
                    Role {
                        connection_limit: 5,
                        ..role("legacy", true)
                    },
                ]
                .into_iter()
                .map(|role| (role.name.clone(), role))
                .collect(),
                databases: [("app".to_owned(), app), ("postgres".to_owned(), postgres)]
                    .into_iter()
                    .collect(),
                server: Some(ServerInfo {
                    version_num: 170_002,
                    current_user: Some("postgres".to_owned()),
                    data_directory: None,
                    available_extensions: [
                        ("pg_trgm", "1.6", &["1.5", "1.6"][..]),
                        ("hstore", "1.8", &["1.7", "1.8"][..]),
                    ]
                    .into_iter()
                    .map(|(name, default, versions)| {
                        (
                            name.to_owned(),
                            AvailableExtension {
                                default_version: Some(default.to_owned()),
                                versions: names(versions),
                                requires: Vec::new(),
                            },
                        )
                    })
                    .collect(),
                }),
                ..crate::model::Deployment::default()
            },
            bootstrap_superuser: "postgres".to_owned(),
            current_user: "postgres".to_owned(),
            passwords: Some(
                [
                    ("postgres", false),
                    ("app", false),
                    ("app_rw", false),
                    ("legacy", true),
                ]
                .into_iter()
                .map(|(name, md5)| (name.to_owned(), md5))
                .collect(),
            ),
            system_settings: Some(
                [
                    ("work_mem", file_setting("8MB", true, None)),
                    (
                        "shared_buffers",
                        file_setting("256MB", false, Some("setting could not be applied")),
                    ),
                    ("jit", file_setting("off", true, None)),
                    (
                        "bogus",
                        file_setting("x", false, Some("unrecognized parameter")),
                    ),
                ]
                .into_iter()
                .map(|(name, setting)| (name.to_owned(), setting))
                .collect(),
            ),
            template_encoding: Some("UTF8".to_owned()),
            template_locale: Some("C.UTF-8".to_owned()),
            role_database_settings: vec![("app".to_owned(), "postgres".to_owned())],
            databases: [
                ("app".to_owned(), app_survey),
                ("postgres".to_owned(), DatabaseSurvey::default()),
            ]
            .into_iter()
            .collect(),
        }
    }

    #[test]
    fn a_live_deployment_becomes_a_tidy_spec() {
        let options = ImportOptions {
            name: "ledger".to_owned(),
            connection: Some(ConnectionSpec {
                host: Some("db.internal".to_owned()),
                port: Some(5432),
                user: Some("postgres".to_owned()),
                ..ConnectionSpec::default()
            }),
            role_pattern: Some("*".to_owned()),
            schema_url: "../schema/pgspec.schema.json".to_owned(),
            ..ImportOptions::default()
        };
        let imported = import(&survey(), &options);
        let variables: Vec<&str> = imported
            .variables
            .iter()
            .map(|variable| variable.name.as_str())
            .collect();
        assert_eq!(
            variables,
            [
                "PGSPEC_PASSWORD_APP",
                "PGSPEC_PASSWORD_APP_RW",
                "PGSPEC_PASSWORD_LEGACY"
            ]
        );
        let text = imported.render();
        // What it writes is a valid spec.
        crate::spec::load_str(std::path::Path::new("imported.yaml"), &text)
            .and_then(|loaded| loaded.validate())
            .unwrap_or_else(|diagnostics| panic!("{}", diagnostics.render(false)));
        insta::assert_snapshot!(text);
    }

    #[test]
    fn a_role_pattern_leaves_references_out_with_a_note() {
        let options = ImportOptions {
            name: "ledger".to_owned(),
            role_pattern: Some("app*".to_owned()),
            schema_url: "schema.json".to_owned(),
            ..ImportOptions::default()
        };
        let imported = import(&survey(), &options);
        let roles: Vec<&str> = imported
            .file
            .roles
            .iter()
            .map(|role| role.name.as_str())
            .collect();
        assert_eq!(roles, ["app", "app_rw"]);
        assert!(imported.file.roles[0].member_of.is_empty());
        let text = imported.render();
        assert!(
            text.contains("its membership in `readers` is left out"),
            "{text}"
        );
        assert!(
            text.contains("grants to `readers` on tables in schema `s` are left out"),
            "{text}"
        );
        assert!(
            text.contains("Roles not matching --role-pattern: `legacy`, `readers`."),
            "{text}"
        );
    }
}
