//! Lowering: the single place where the file format becomes the model.
//! Defaults are applied, shorthands expanded, privileges normalised and
//! index statements built.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::pooler;
use super::postgres::CPU_SHARES_PER_CPU;
use super::settings::setting_text;
use crate::model::privileges;
use crate::model::{
    Backup, BackupDestination, BackupSchedule, Connection, Container, ContainerState, Database,
    Deployment, Desired, DiffOptions, Extension, Grant, GrantTarget, Index, NetworkAttachment,
    Pooler, Role, Schema, Setting,
};
use crate::secret::Secret;
use crate::spec::file::{
    BackupSpec, DefaultObjectKind, ExtensionEntry, GrantSpec, IndexColumn, IndexSpec, NetworkEntry,
    NullsOrder, ObjectSelection, PoolMode, PoolerSpec, RetentionSpec, SchemaEntry, SettingValue,
    SortOrder, SpecFile,
};
use crate::spec::load::Loaded;
use crate::sql::{quote_ident, quote_literal};
use crate::units;

/// Splits `audit.events` into (`audit`, `events`); an unqualified table is in
/// `public`.
pub(super) fn split_table(table: &str) -> (String, String) {
    match table.split_once('.') {
        Some((schema, name)) => (schema.to_owned(), name.to_owned()),
        None => ("public".to_owned(), table.to_owned()),
    }
}

/// Lowers a checked spec into the desired state. Only called when `check`
/// found no errors, so every parse here succeeds; a failure falls back to
/// "no limit" rather than panicking.
pub(super) fn lower(loaded: &Loaded) -> Desired {
    let file = &loaded.file;
    let base = loaded.path.parent().unwrap_or(Path::new(""));
    let postgres = file.postgres.clone().unwrap_or_default();

    let container = postgres.image.as_ref().map(|image| {
        let resources = postgres.resources.clone().unwrap_or_default();
        let superuser = postgres.superuser.as_ref();
        let superuser_name = superuser
            .and_then(|superuser| superuser.name.clone())
            .unwrap_or_else(|| "postgres".to_owned());
        let reservations = resources.reservations.clone().unwrap_or_default();
        let own_network = format!("{}-net", file.name);
        let network = postgres
            .network
            .as_ref()
            .map_or(own_network.as_str(), NetworkEntry::name)
            .to_owned();
        // The deployment's network is joined with its aliases like any
        // other: an entry of `networks` under its name.
        let network_aliases = postgres
            .network
            .as_ref()
            .filter(|entry| !entry.aliases().is_empty());
        let mut networks: Vec<NetworkAttachment> = network_aliases
            .into_iter()
            .chain(&postgres.networks)
            .map(|entry| {
                let mut aliases = entry.aliases().to_vec();
                aliases.sort();
                aliases.dedup();
                NetworkAttachment {
                    name: entry.name().to_owned(),
                    aliases,
                }
            })
            .collect();
        networks.sort();
        Container {
            name: postgres
                .container_name
                .clone()
                .unwrap_or_else(|| format!("{}-postgres", file.name)),
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
            cpu_shares: reservations
                .cpus
                .map(|cpus| (cpus * CPU_SHARES_PER_CPU).round() as i64),
            memory_reservation_bytes: reservations
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
            upgrade: postgres.upgrade.as_ref().map(|upgrade| upgrade.method),
            network_external: network != own_network,
            network,
            network_exists: true,
            adopted: false,
            network_subnet: String::new(),
            networks,
            absent_networks: Vec::new(),
            volume_users: Vec::new(),
            foreign: false,
            restart_policy: "unless-stopped".to_owned(),
            engine_cpus: None,
            engine_memory_bytes: None,
            health_check: Container::server_health_check(&superuser_name),
            health: None,
            config_hash: String::new(),
        }
    });

    let mut settings: BTreeMap<String, Setting> = postgres
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

    let tls = match (&postgres.tls, &container) {
        (Some(tls), Some(container)) => Some(super::tls::lower_tls(
            tls,
            &container.name,
            file.pooler
                .as_ref()
                .map(|_| format!("{}-pgbouncer", file.name)),
            &crate::model::tls::published_host(&container.bind_address),
            base,
            &mut settings,
        )),
        _ => None,
    };

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
            sslmode: connection.sslmode.clone(),
            sslrootcert: connection.sslrootcert.as_ref().map(|path| base.join(path)),
            engine: None,
        })
        .unwrap_or_default();
    let connection = Connection {
        engine: postgres.engine.clone(),
        ..connection
    };

    let mut deployment = Deployment {
        name: file.name.clone(),
        container,
        settings,
        roles,
        databases,
        pooler: file.pooler.as_ref().map(|pooler| {
            let mut pooler = lower_pooler(pooler);
            if let Some(tls) = &tls {
                pooler.settings.extend(Pooler::tls_settings(tls.require));
            }
            pooler
        }),
        backup: file
            .backup
            .as_ref()
            .map(|backup| lower_backup(file, backup, base)),
        access: super::access::lower_access(file),
        tls,
        ..Deployment::default()
    };
    super::monitoring::lower_exporter(file.monitoring.as_ref(), base, &mut deployment);
    super::replicas::lower_replicas(file, base, &mut deployment);
    Desired {
        path: loaded.path.clone(),
        deployment,
        connection,
        options: DiffOptions {
            prune: file.prune,
            ..DiffOptions::default()
        },
        monitoring: super::monitoring::lower_monitoring(file.monitoring.as_ref()),
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
                    .map(|privilege| privileges::normalize(privilege)),
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

/// The objects default privileges apply to, in `model::privileges`' words.
fn default_object_name(kind: DefaultObjectKind) -> &'static str {
    match kind {
        DefaultObjectKind::Tables => "tables",
        DefaultObjectKind::Sequences => "sequences",
        DefaultObjectKind::Functions => "functions",
        DefaultObjectKind::Types => "types",
        DefaultObjectKind::Schemas => "schemas",
    }
}

/// Which objects a grant is about: the first of `tables`, `sequences`,
/// `functions` and `default_for` it has, else its `schema`, else its
/// database.
pub(super) fn grant_target(grant: &GrantSpec) -> GrantTarget {
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
    for (name, value) in pooler::counts(pooler) {
        if let Some(value) = value {
            settings.insert(name.to_owned(), value.to_string());
        }
    }
    for (name, value) in pooler::timeouts(pooler) {
        if let Some(micros) = value.and_then(|text| units::parse_pg_time(text, "s").ok()) {
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
    let routes = pooler
        .databases
        .iter()
        .filter(|(_, pool)| pool.database.is_some() || pool.target.is_some())
        .map(|(name, pool)| {
            (
                name.clone(),
                crate::model::PoolRoute {
                    database: pool.database.clone().unwrap_or_else(|| name.clone()),
                    replica: pool.target == Some(crate::spec::file::PoolTarget::Replica),
                    host: String::new(),
                },
            )
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
        routes,
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
            BackupKind::Physical => "physical",
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
                    retention: &Option<RetentionSpec>,
                    verify: &Option<String>| {
        let retention = retention.as_ref().or(backup.retention.as_ref());
        let kind = kind_text(kind);
        let physical = kind == "physical";
        BackupSchedule {
            name: name.to_owned(),
            cron: units::check_cron(cron).unwrap_or_else(|_| cron.trim().to_owned()),
            // A base backup is one tar archive of the whole cluster.
            format: if physical {
                "tar".to_owned()
            } else {
                format_text(format)
            },
            kind,
            verify: verify
                .as_ref()
                .map(|cron| units::check_cron(cron).unwrap_or_else(|_| cron.trim().to_owned())),
            databases: if physical {
                Vec::new()
            } else if databases.is_empty() {
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
            schedule(
                "default",
                cron,
                backup.kind,
                backup.format,
                &[],
                &None,
                &backup.verify,
            ),
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
                &entry.verify,
            ),
        );
    }
    Backup {
        destination,
        schedules,
        max_lag_seconds: backup
            .max_lag
            .as_deref()
            .and_then(|text| units::parse_pg_time(text, "s").ok())
            .map(|microseconds| (microseconds / 1_000_000.0).max(0.0) as u64),
        ..Backup::default()
    }
}
