//! Checks and lowering of the `replicas` section, and of the read-only
//! pools (`pooler.databases.NAME.target: replica`) that need it.

use std::collections::BTreeMap;
use std::path::Path;

use super::checker::Checker;
use super::settings::setting_text;
use crate::model::access::AccessRule;
use crate::model::replicas::{
    AT_LEAST_PRIMARY, DEFAULT_ROLE, Replica, Replication, is_replica_name,
};
use crate::model::{Deployment, Role};
use crate::secret::Secret;
use crate::spec::file::{BackupKind, PoolTarget, ReplicasSpec, ResourcesSpec, SpecFile};
use crate::spec::load::{join_index, join_key};
use crate::units;

/// The most replicas one spec may run.
const MAX_REPLICAS: i64 = 16;

/// The names of the replicas a spec declares, in order.
fn names(spec: &ReplicasSpec) -> Vec<String> {
    if spec.list.is_empty() {
        (1..=spec.count.unwrap_or(0).clamp(0, MAX_REPLICAS))
            .map(|number| number.to_string())
            .collect()
    } else {
        spec.list
            .iter()
            .map(|replica| replica.name.clone())
            .collect()
    }
}

/// Whether a schedule of the spec streams WAL on the backup slot.
fn streams_backup_wal(file: &SpecFile) -> bool {
    file.backup.as_ref().is_some_and(|backup| {
        backup
            .schedules
            .iter()
            .any(|schedule| schedule.kind == Some(BackupKind::Physical))
    })
}

impl Checker<'_> {
    pub(super) fn check_replicas(&mut self, file: &SpecFile) {
        self.check_pool_targets(file);
        let Some(spec) = &file.replicas else {
            return;
        };
        let path = "replicas";
        if file
            .postgres
            .as_ref()
            .and_then(|postgres| postgres.image.as_ref())
            .is_none()
        {
            self.error(path, "`replicas` needs `postgres.image`").help = Some(
                "replicas are containers of the server's image beside the server container \
                 pgspec manages"
                    .to_owned(),
            );
        }
        if file.access.is_none() {
            self.error(path, "`replicas` needs an `access` section")
                .help = Some(
                "the server's own pg_hba.conf lets no replication connection in from another \
                 container; with `access`, pgspec owns the file and adds the replication \
                 role's rule (`host replication ROLE samenet scram-sha-256`) unless a rule \
                 for it is there"
                    .to_owned(),
            );
        }
        match (spec.count, spec.list.is_empty()) {
            (Some(_), false) => {
                self.error(path, "give `count` or `list`, not both");
            }
            (None, true) => {
                self.error(
                    path,
                    "say how many replicas: `count: 2`, or a `list` with names",
                );
            }
            (Some(count), true) if !(1..=MAX_REPLICAS).contains(&count) => {
                self.error(
                    &join_key(path, "count"),
                    format!("`count` {count} is out of range"),
                )
                .label = Some(format!("expected 1 to {MAX_REPLICAS}"));
            }
            _ => {}
        }
        let mut seen = BTreeMap::new();
        for (index, replica) in spec.list.iter().enumerate() {
            let item = join_index(&join_key(path, "list"), index);
            let name_path = join_key(&item, "name");
            if !is_replica_name(&replica.name) {
                self.error(
                    &name_path,
                    format!("`{}` cannot name a replica", replica.name.escape_default()),
                )
                .help = Some(
                    "lowercase letters, digits and `_`, at most 40: it names the container, \
                     volume and replication slot"
                        .to_owned(),
                );
            }
            self.check_duplicate(&mut seen, &name_path, &replica.name, "replica");
            self.check_port(&join_key(&item, "port"), replica.port);
            if let Some(port) = replica.port
                && file
                    .postgres
                    .as_ref()
                    .and_then(|postgres| postgres.port)
                    .unwrap_or(5432)
                    == port
            {
                self.error(
                    &join_key(&item, "port"),
                    format!("port {port} is the server's"),
                );
            }
            for name in replica.settings.keys() {
                if !crate::model::is_known_setting(name) {
                    self.error(
                        &join_key(&join_key(&item, "settings"), name),
                        format!("unknown setting `{name}`"),
                    );
                }
            }
        }
        if let Some(max_lag) = &spec.max_lag
            && let Err(error) = units::parse_pg_memory(max_lag)
        {
            self.error(&join_key(path, "max_lag"), error.to_string())
                .help = error.help.clone();
        }
        self.check_replication_role(file, spec);
        self.check_replication_settings(file, spec);
    }

    fn check_replication_role(&mut self, file: &SpecFile, spec: &ReplicasSpec) {
        let role = spec.role.as_deref().unwrap_or(DEFAULT_ROLE);
        self.check_identifier("replicas.role", role, "role");
        match file.roles.iter().position(|declared| declared.name == role) {
            Some(index) => {
                let declared = &file.roles[index];
                let at = join_index("roles", index);
                if declared.replication != Some(true) || declared.login != Some(true) {
                    self.error(
                        &at,
                        format!("the replication role `{role}` needs `login: true` and `replication: true`"),
                    );
                }
                if declared.password.is_none() {
                    self.error(
                        &at,
                        format!("the replication role `{role}` needs a `password` the replicas connect with"),
                    );
                }
                if spec.password.is_some() {
                    self.error(
                        "replicas.password",
                        format!("`{role}` is declared in `roles`, which give its password"),
                    );
                }
            }
            None if spec.password.is_none() => {
                self.error(
                    "replicas",
                    format!("the replication role `{role}` needs a `password`"),
                )
                .help = Some(
                    "give `replicas.password` (a secret reference), or declare the role in \
                     `roles` with `replication: true` and a password"
                        .to_owned(),
                );
            }
            None => {}
        }
    }

    /// `wal_level`, `max_wal_senders` and `max_replication_slots`, where the
    /// spec sets them, must leave room for every replica (and the backup
    /// container's WAL stream, when a schedule is physical).
    fn check_replication_settings(&mut self, file: &SpecFile, spec: &ReplicasSpec) {
        let Some(postgres) = &file.postgres else {
            return;
        };
        let replicas = names(spec).len() as i64;
        let needed = replicas + i64::from(streams_backup_wal(file));
        if let Some(level) = postgres.settings.get("wal_level") {
            let level = setting_text(level);
            if !matches!(level.as_str(), "replica" | "logical") {
                self.error(
                    "postgres.settings.wal_level",
                    format!("`wal_level` `{level}` does not let replicas stream"),
                )
                .help = Some("replicas need `replica` or `logical`".to_owned());
            }
        }
        for setting in ["max_wal_senders", "max_replication_slots"] {
            let Some(value) = postgres.settings.get(setting) else {
                continue;
            };
            let text = setting_text(value);
            if let Ok(value) = text.parse::<i64>()
                && value < needed
            {
                self.error(
                    &join_key("postgres.settings", setting),
                    format!("`{setting}` {value} is too low for {replicas} replica(s)"),
                )
                .help = Some(format!(
                    "each replica needs one{}: at least {needed}",
                    if needed > replicas {
                        ", and the physical backup schedule's WAL stream one more"
                    } else {
                        ""
                    }
                ));
            }
        }
    }

    /// Pools with `target: replica` need replicas; a pool's `database` is a
    /// database the spec declares.
    fn check_pool_targets(&mut self, file: &SpecFile) {
        let Some(pooler) = &file.pooler else {
            return;
        };
        for (name, pool) in &pooler.databases {
            let path = join_key("pooler.databases", name);
            if pool.target == Some(PoolTarget::Replica) && file.replicas.is_none() {
                self.error(
                    &join_key(&path, "target"),
                    "`target: replica` needs a `replicas` section",
                );
            }
            if let Some(database) = &pool.database {
                self.check_identifier(&join_key(&path, "database"), database, "database");
                if !file.databases.is_empty()
                    && !file
                        .databases
                        .iter()
                        .any(|declared| &declared.name == database)
                {
                    self.error(
                        &join_key(&path, "database"),
                        format!(
                            "the pool serves database `{database}`, which the spec does not declare"
                        ),
                    );
                }
            }
        }
    }
}

fn resources(spec: Option<&ResourcesSpec>) -> (Option<i64>, Option<i64>) {
    let Some(spec) = spec else {
        return (None, None);
    };
    (
        spec.cpus.map(|cpus| (cpus * 1e9).round() as i64),
        spec.memory
            .as_deref()
            .and_then(|memory| units::parse_docker_memory(memory).ok()),
    )
}

/// The settings on a replica's command line: those a standby needs at
/// least as high as the server's, as the spec sets them for the server
/// (the replica's copy of the server's `postgresql.auto.conf` does not
/// follow later changes), then the replica's own overrides.
fn replica_settings(
    file: &SpecFile,
    listed: Option<&crate::spec::file::ReplicaSpec>,
) -> BTreeMap<String, String> {
    let mut settings: BTreeMap<String, String> = file
        .postgres
        .iter()
        .flat_map(|postgres| &postgres.settings)
        .filter(|(name, _)| AT_LEAST_PRIMARY.contains(&name.as_str()))
        .map(|(name, value)| (name.clone(), setting_text(value)))
        .collect();
    if let Some(replica) = listed {
        settings.extend(
            replica
                .settings
                .iter()
                .map(|(name, value)| (name.clone(), setting_text(value))),
        );
    }
    settings
}

/// Lowers `replicas` into the deployment: the replicas, the replication
/// role when the spec's roles do not declare it, and its `pg_hba` rule when
/// the spec has `access`.
pub(super) fn lower_replicas(file: &SpecFile, base: &Path, deployment: &mut Deployment) {
    let Some(spec) = &file.replicas else {
        return;
    };
    let Some(server) = &deployment.container else {
        return;
    };
    let role = spec.role.clone().unwrap_or_else(|| DEFAULT_ROLE.to_owned());
    let password = match deployment.roles.get(&role) {
        Some(declared) => declared.password.clone(),
        None => spec
            .password
            .as_ref()
            .map(|password| Secret::from_ref(password, base)),
    };
    let bind_address = spec
        .bind_address
        .clone()
        .unwrap_or_else(|| "127.0.0.1".to_owned());
    let shared = resources(spec.resources.as_ref());
    let mut replicas = BTreeMap::new();
    for name in names(spec) {
        let listed = spec.list.iter().find(|replica| replica.name == name);
        let (nano_cpus, memory_bytes) = match listed.and_then(|replica| replica.resources.as_ref())
        {
            Some(own) => resources(Some(own)),
            None => shared,
        };
        let replica = Replica {
            image: server.image.clone(),
            port: listed
                .and_then(|replica| replica.port)
                .and_then(|port| u16::try_from(port).ok()),
            bind_address: bind_address.clone(),
            nano_cpus,
            memory_bytes,
            settings: replica_settings(file, listed),
            network: server.network.clone(),
            ..Replica::named(&file.name, &name)
        };
        replicas.insert(name, replica);
    }
    if !deployment.roles.contains_key(&role) {
        deployment.roles.insert(
            role.clone(),
            Role {
                name: role.clone(),
                login: true,
                replication: true,
                inherit: true,
                connection_limit: -1,
                password: password.clone(),
                ..Role::default()
            },
        );
    }
    if let Some(access) = &mut deployment.access {
        let covered = access.rules.iter().any(|rule| {
            rule.databases
                .iter()
                .any(|database| database == "replication")
                && rule.users.iter().any(|user| user == &role || user == "all")
        });
        if !covered {
            access.rules.push(AccessRule {
                kind: "host".to_owned(),
                databases: vec!["replication".to_owned()],
                users: vec![role.clone()],
                address: Some("samenet".to_owned()),
                method: "scram-sha-256".to_owned(),
                options: BTreeMap::new(),
            });
        }
    }
    deployment.replication = Some(Replication {
        role,
        password,
        max_lag_bytes: spec
            .max_lag
            .as_deref()
            .and_then(|text| units::parse_pg_memory(text).ok())
            .map(|bytes| bytes as u64),
        replicas,
    });
}
