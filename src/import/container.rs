//! The server's container as the spec says it (image, port, volume,
//! resources, superuser), or, for a server outside Docker, how the spec
//! connects: `postgres:` but for its settings, which `settings` reads.

use crate::model::notation::format_bytes;
use crate::spec::file::{PostgresSpec, ResourcesSpec, SuperuserSpec};

use super::Importer;

impl Importer<'_> {
    /// `postgres:`: the container or connection, and the settings.
    pub(super) fn postgres(&mut self) -> Option<PostgresSpec> {
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
}
