//! Checks of the `postgres` section: the container pgspec runs (image,
//! name, networks, port, volume, resources, superuser) and how it
//! connects.

use std::collections::BTreeSet;

use super::checker::{Checker, is_docker_name};
use crate::spec::file::{NetworkEntry, ResourcesSpec, SpecFile};
use crate::spec::load::{join_index, join_key};
use crate::units;

/// The smallest memory limit or reservation the Docker engine accepts.
const MIN_DOCKER_MEMORY: i64 = 6 << 20;

/// Docker's weight of a container's CPU time per reserved CPU
/// (`--cpu-shares`; a container that sets none weighs this much).
pub const CPU_SHARES_PER_CPU: f64 = 1024.0;

/// The largest CPU weight the engine accepts.
const MAX_CPU_SHARES: f64 = 262_144.0;

impl Checker<'_> {
    pub(super) fn check_postgres(&mut self, file: &SpecFile) {
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
                    ("container_name", postgres.container_name.is_some()),
                    ("network", postgres.network.is_some()),
                    ("networks", !postgres.networks.is_empty()),
                    ("port", postgres.port.is_some()),
                    ("bind_address", postgres.bind_address.is_some()),
                    ("volume", postgres.volume.is_some()),
                    ("resources", postgres.resources.is_some()),
                    ("upgrade", postgres.upgrade.is_some()),
                    ("superuser", postgres.superuser.is_some()),
                    ("engine", postgres.engine.is_some()),
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
        if let Some(engine) = &postgres.engine {
            self.check_engine(engine);
        }
        if let Some(volume) = &postgres.volume
            && !is_docker_name(volume)
        {
            self.error(
                "postgres.volume",
                format!("volume name `{volume}` is not a valid Docker name"),
            );
        }
        if let Some(name) = &postgres.container_name {
            self.check_container_name(file, name);
        }
        self.check_networks(file, postgres.network.as_ref(), &postgres.networks);
        if let Some(resources) = &postgres.resources {
            self.check_resources(resources);
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
        self.check_tls(file);
    }
}

impl Checker<'_> {
    /// The server container's name: what Docker accepts, and none of the
    /// names pgspec gives the deployment's other containers.
    fn check_container_name(&mut self, file: &SpecFile, name: &str) {
        let path = "postgres.container_name";
        // Docker: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`, two characters at least.
        if !is_docker_name(name) || name.len() < 2 {
            self.error(
                path,
                format!(
                    "container name `{}` is not a valid Docker name",
                    name.escape_debug()
                ),
            )
            .help = Some(
                "Docker container names are two or more of `a-z A-Z 0-9 _ . -`, starting with a \
                 letter or digit"
                    .to_owned(),
            );
            return;
        }
        let others = [
            (format!("{}-pgbouncer", file.name), "the pooler container"),
            (
                crate::model::backup::container_name(&file.name),
                "the backup container",
            ),
            (format!("{}-net", file.name), "the deployment's network"),
        ];
        for (other, what) in others {
            if name == other {
                self.error(
                    path,
                    format!("container name `{name}` is the name pgspec gives {what}"),
                )
                .help = Some("choose another name for the server container".to_owned());
            }
        }
    }

    /// The deployment's network and the networks the container joins
    /// besides it: existing ones others own, each named once, with aliases
    /// that are host names.
    fn check_networks(
        &mut self,
        file: &SpecFile,
        network: Option<&NetworkEntry>,
        networks: &[NetworkEntry],
    ) {
        let own = format!("{}-net", file.name);
        let deployment_network = network.map_or(own.as_str(), NetworkEntry::name);
        if let Some(entry) = network
            && self.check_network_entry("postgres.network", entry)
            && entry.name() == "bridge"
        {
            self.error(
                &network_path("postgres.network", entry),
                "Docker's default `bridge` network resolves no names: the pooler and backup \
                 containers could not reach the server on it",
            )
            .help = Some(
                "name a user-defined network (`docker network create …`, or a Compose \
                 project's network), or leave `network` out for pgspec's own"
                    .to_owned(),
            );
        }
        let mut seen = BTreeSet::new();
        for (index, entry) in networks.iter().enumerate() {
            let item = join_index("postgres.networks", index);
            if !self.check_network_entry(&item, entry) {
                continue;
            }
            let path = network_path(&item, entry);
            let name = entry.name();
            if name == deployment_network {
                let what = if network.is_some() {
                    "the deployment's network (`postgres.network`)"
                } else {
                    "the deployment's own network"
                };
                self.error(
                    &path,
                    format!("`{name}` is {what}, which the container always joins"),
                )
                .help = Some(
                    "list only the networks the server joins besides the deployment's; give \
                     the deployment's network its aliases under `postgres.network`"
                        .to_owned(),
                );
            }
            if !seen.insert(name) {
                self.error(&path, format!("network `{name}` is listed twice"));
            }
        }
    }

    /// One network entry: a Docker name the container can join, with
    /// aliases that are host names. Returns whether the name is valid.
    fn check_network_entry(&mut self, item: &str, entry: &NetworkEntry) -> bool {
        let path = network_path(item, entry);
        let name = entry.name();
        if !is_docker_name(name) {
            self.error(
                &path,
                format!(
                    "network name `{}` is not a valid Docker name",
                    name.escape_debug()
                ),
            );
            return false;
        }
        if matches!(name, "host" | "none") {
            self.error(
                &path,
                format!("the container cannot join network `{name}` beside other networks"),
            )
            .help = Some(
                "`host` and `none` are network modes, not networks to join; pgspec publishes \
                 the server's port instead"
                    .to_owned(),
            );
        } else if name == "bridge" && !entry.aliases().is_empty() {
            self.error(
                &join_key(item, "aliases"),
                "Docker's default `bridge` network resolves no names, so it takes no aliases",
            )
            .help = Some(
                "join a user-defined network (`docker network create …`, or a Compose \
                 project's network) to be reached by an alias"
                    .to_owned(),
            );
        }
        for (alias_index, alias) in entry.aliases().iter().enumerate() {
            if !is_docker_name(alias) {
                self.error(
                    &join_index(&join_key(item, "aliases"), alias_index),
                    format!("alias `{}` is not a valid host name", alias.escape_debug()),
                )
                .help = Some(
                    "an alias is a name other containers on the network resolve: letters, \
                     digits, `_`, `.` and `-`, starting with a letter or digit"
                        .to_owned(),
                );
            }
        }
        true
    }

    /// Limits and reservations: what the engine accepts, and no reservation
    /// above its limit.
    fn check_resources(&mut self, resources: &ResourcesSpec) {
        let check_cpus = |checker: &mut Self, path: &str, cpus: Option<f64>| {
            if let Some(cpus) = cpus
                && !(cpus > 0.0 && cpus.is_finite())
            {
                checker.error(path, format!("`cpus` must be more than 0, found `{cpus}`"));
                return None;
            }
            cpus
        };
        let cpus = check_cpus(self, "postgres.resources.cpus", resources.cpus);
        let memory = |checker: &mut Self, path: &str, value: &Option<String>| {
            let value = value.as_ref()?;
            match units::parse_docker_memory(value) {
                Ok(bytes) => Some(bytes),
                Err(error) => {
                    checker.error(path, error.message).help = error.help;
                    None
                }
            }
        };
        let limit = memory(self, "postgres.resources.memory", &resources.memory);
        memory(self, "postgres.resources.shm_size", &resources.shm_size);
        let Some(reservations) = &resources.reservations else {
            return;
        };
        let cpus_path = "postgres.resources.reservations.cpus";
        if let Some(reserved) = check_cpus(self, cpus_path, reservations.cpus) {
            let shares = reserved * CPU_SHARES_PER_CPU;
            if shares.round() < 2.0 || shares > MAX_CPU_SHARES {
                self.error(
                    cpus_path,
                    format!(
                        "a reservation of {reserved} CPUs is a CPU weight of {shares}, outside \
                         the 2 to {MAX_CPU_SHARES} the engine accepts"
                    ),
                )
                .help = Some("reserve between 0.002 and 256 CPUs".to_owned());
            } else if let Some(cpus) = cpus
                && reserved > cpus
            {
                self.error(
                    cpus_path,
                    format!("the reservation of {reserved} CPUs is more than the limit of {cpus}"),
                );
            }
        }
        let memory_path = "postgres.resources.reservations.memory";
        if let Some(reserved) = memory(self, memory_path, &reservations.memory) {
            if reserved < MIN_DOCKER_MEMORY {
                self.error(
                    memory_path,
                    format!(
                        "a memory reservation of `{}` is below the 6MiB the engine accepts",
                        reservations.memory.as_deref().unwrap_or_default()
                    ),
                );
            } else if let Some(limit) = limit
                && reserved > limit
            {
                self.error(
                    memory_path,
                    format!(
                        "the memory reservation `{}` is more than the limit `{}`",
                        reservations.memory.as_deref().unwrap_or_default(),
                        resources.memory.as_deref().unwrap_or_default()
                    ),
                )
                .help = Some(
                    "a reservation is what the container keeps under memory pressure; it can \
                     be at most its limit"
                        .to_owned(),
                );
            }
        }
    }
}

/// Where a network entry's name is: the item itself, or its `name` key.
fn network_path(item: &str, entry: &NetworkEntry) -> String {
    match entry {
        NetworkEntry::Name(_) => item.to_owned(),
        NetworkEntry::Full(_) => join_key(item, "name"),
    }
}

impl Checker<'_> {
    /// `postgres.engine`: an engine URL pgspec can reach, or a docker
    /// context's name.
    fn check_engine(&mut self, engine: &str) {
        let problem = match engine.split_once("://") {
            Some(("ssh", rest)) if rest.is_empty() || rest.starts_with('@') => {
                Some("an ssh:// engine needs a host: `ssh://user@host`")
            }
            // ssh would read a user or host that starts with `-` as an option.
            Some(("ssh", rest))
                if rest.starts_with('-')
                    || rest
                        .split_once('@')
                        .is_some_and(|(_, host)| host.starts_with('-')) =>
            {
                Some("an ssh:// engine's user and host do not start with `-`")
            }
            Some(("tcp" | "https", "")) => {
                Some("a tcp:// engine needs a host and port: `tcp://host:2376`")
            }
            Some(("unix", rest)) if !rest.starts_with('/') => Some(
                "a unix:// engine needs an absolute socket path: `unix:///var/run/docker.sock`",
            ),
            Some(("ssh" | "tcp" | "https" | "unix", _)) => None,
            Some(_) => {
                Some("the engine is `ssh://…`, `tcp://…`, `unix://…` or a docker context's name")
            }
            None if engine.is_empty()
                || engine.chars().any(|c| c.is_whitespace() || c.is_control()) =>
            {
                Some("an engine named by its docker context has a name without spaces")
            }
            None => None,
        };
        if let Some(problem) = problem {
            self.error("postgres.engine", problem);
        }
    }
}
