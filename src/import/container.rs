//! The server's container as the spec says it (name, image, networks,
//! port, volume, resources, superuser), or, for a server outside Docker, how the spec
//! connects: `postgres:` but for its settings, which `settings` reads.

use crate::model::notation::format_bytes;
use crate::spec::file::{
    NetworkEntry, NetworkSpec, PostgresSpec, ReservationsSpec, ResourcesSpec, SuperuserSpec,
};

use super::Importer;

impl Importer<'_> {
    /// `postgres:`: the container or connection, and the settings.
    pub(super) fn postgres(&mut self) -> Option<PostgresSpec> {
        let mut spec = PostgresSpec::default();
        if let Some(survey) = &self.options.container {
            let container = &survey.container;
            let name = &self.options.name;
            if container.name != format!("{name}-postgres") {
                spec.container_name = Some(container.name.clone());
            }
            if survey.ephemeral_port {
                self.header.push(if survey.labelled {
                    format!(
                        "The container publishes the server on a port Docker picked ({}); the \
                         spec pins it, and a plan replaces the container to publish on it \
                         explicitly.",
                        container.port
                    )
                } else {
                    format!(
                        "The container publishes the server on a port Docker picked ({}); the \
                         spec pins it, and pgspec adopts only a container published on the \
                         spec's port: publish this one on a fixed port first.",
                        container.port
                    )
                });
            }
            if !survey.labelled {
                self.header.push(format!(
                    "pgspec did not create this container: the first apply adopts it as it \
                     runs (joins it to the deployment's network `{name}-net` and sets its \
                     restart policy), without restarting or recreating it."
                ));
            }
            // Every container is on the default `bridge` network it did not
            // ask for; the others are what a Compose project joined it to.
            spec.networks = container
                .networks
                .iter()
                .filter(|network| network.name != "bridge")
                .map(|network| {
                    if network.aliases.is_empty() {
                        NetworkEntry::Name(network.name.clone())
                    } else {
                        NetworkEntry::Full(NetworkSpec {
                            name: network.name.clone(),
                            aliases: network.aliases.clone(),
                        })
                    }
                })
                .collect();
            spec.image = Some(container.image.clone());
            spec.port = (container.port != 5432).then_some(i64::from(container.port));
            spec.bind_address =
                (container.bind_address != "127.0.0.1").then(|| container.bind_address.clone());
            spec.volume =
                (container.volume != format!("{name}-pgdata")).then(|| container.volume.clone());
            let reservations = ReservationsSpec {
                cpus: container.cpu_shares.map(|shares| shares as f64 / 1024.0),
                memory: container.memory_reservation_bytes.map(format_bytes),
            };
            let resources = ResourcesSpec {
                cpus: container.nano_cpus.map(|nano| nano as f64 / 1e9),
                memory: container.memory_bytes.map(format_bytes),
                // 64 MiB is what Docker gives a container that asks for none.
                shm_size: container
                    .shm_bytes
                    .filter(|bytes| *bytes != 64 << 20)
                    .map(format_bytes),
                reservations: (reservations.cpus.is_some() || reservations.memory.is_some())
                    .then_some(reservations),
            };
            if resources.cpus.is_some()
                || resources.memory.is_some()
                || resources.shm_size.is_some()
                || resources.reservations.is_some()
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
}
