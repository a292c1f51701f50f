//! Checks of the `postgres` section: the container pgspec runs (image,
//! port, volume, resources, superuser) and how it connects.

use super::checker::{Checker, is_docker_name};
use crate::spec::file::SpecFile;
use crate::spec::load::join_key;
use crate::units;

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
}
