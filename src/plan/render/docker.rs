//! The plan lines of Docker steps: what pgspec will do through the engine,
//! one line per call.

use crate::plan::DockerStep;

/// A path of the data layout, or where it will come from when the image
/// is not local yet.
fn or_from_image(path: &str) -> &str {
    if path.is_empty() {
        "(read from the image)"
    } else {
        path
    }
}

/// ` with aliases a, b` for a network attachment, or nothing.
fn with_aliases(aliases: &[String]) -> String {
    if aliases.is_empty() {
        String::new()
    } else {
        format!(" with aliases {}", aliases.join(", "))
    }
}

pub(super) fn docker_line(call: &DockerStep) -> String {
    match call {
        DockerStep::CreateVolume { name } => format!("create volume `{name}`"),
        DockerStep::CreateNetwork { name } => format!("create network `{name}`"),
        DockerStep::UpgradeData {
            container,
            from_major,
            to_major,
            kept,
            pooler,
        } => format!(
            "upgrade the data of volume `{volume}` from PostgreSQL {from_major} to {to_major} by \
             dump and restore: a scratch server of `{image}` on a new volume; the old server's \
             extensions checked against it; {paused}the old server read-only while the new \
             image's pg_dumpall and pg_dump copy the roles and every database; row counts and \
             sequence values compared; both servers stopped, the volume's data kept in volume \
             `{kept}` and replaced by the new server's",
            volume = container.volume,
            image = container.image,
            paused = pooler
                .as_ref()
                .map(|name| format!("PgBouncer in `{name}` paused (PAUSE), "))
                .unwrap_or_default(),
        ),
        DockerStep::MarkAdopted { container, .. } => format!(
            "write the adoption mark `{}` into the data directory of `{container}`",
            crate::model::ADOPTED_MARK
        ),
        DockerStep::ConnectNetwork {
            network,
            container,
            aliases,
        } => format!(
            "connect container `{container}` to network `{network}`{}",
            with_aliases(aliases)
        ),
        DockerStep::JoinNetwork {
            network,
            container,
            aliases,
            reconnect,
        } => {
            let aliases = with_aliases(aliases);
            if *reconnect {
                format!(
                    "disconnect container `{container}` from network `{network}` and connect it \
                     again{aliases} (it keeps running)"
                )
            } else {
                format!("connect container `{container}` to network `{network}`{aliases}")
            }
        }
        DockerStep::PrepareContainer { container } => format!(
            "pull and inspect `{}`; prove the data directory is on volume `{}` and that a \
             container from the image finds it there, before `{}` is touched",
            container.image, container.volume, container.name
        ),
        DockerStep::CreateContainer { container } => format!(
            "create container `{}` from `{}` ({}:{} -> 5432, volume `{}` at {}, PGDATA {})",
            container.name,
            container.image,
            container.bind_address,
            container.port,
            container.volume,
            or_from_image(&container.data_mount),
            or_from_image(&container.pgdata)
        ),
        DockerStep::VerifyData { name, databases } => {
            if databases.is_empty() {
                format!("check that `{name}` runs on the same data directory as before")
            } else {
                format!(
                    "check that `{name}` runs on the same data directory as before, with {}",
                    databases
                        .iter()
                        .map(|database| format!("`{database}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        }
        DockerStep::StartContainer { name } => format!("start container `{name}`"),
        DockerStep::RemoveContainer { name } => {
            format!("stop container `{name}` (fast shutdown) and remove it; its volume stays")
        }
        DockerStep::UpdateResources {
            name,
            nano_cpus,
            memory_bytes,
            restart_policy,
            cpu_shares,
            memory_reservation_bytes,
        } => {
            let mut parts = Vec::new();
            if let Some(policy) = restart_policy {
                parts.push(format!("restart policy {policy}"));
            }
            if let Some(nano_cpus) = nano_cpus {
                parts.push(format!("cpus {}", *nano_cpus as f64 / 1e9));
            }
            if let Some(memory) = memory_bytes {
                parts.push(format!(
                    "memory {}",
                    crate::plan::diff::format_bytes(*memory)
                ));
            }
            if let Some(shares) = cpu_shares {
                parts.push(format!("cpu shares {shares}"));
            }
            if let Some(memory) = memory_reservation_bytes {
                parts.push(format!(
                    "memory reservation {}",
                    crate::plan::diff::format_bytes(*memory)
                ));
            }
            format!("update container `{name}`: {}", parts.join(", "))
        }
        DockerStep::RestartContainer { name } => format!("restart container `{name}`"),
        DockerStep::WaitReady { name } => {
            format!("wait until the server in `{name}` accepts connections")
        }
        DockerStep::CheckBackupAgent { image } => format!(
            "check that the pgspec backup agent starts in a throwaway container of `{image}`"
        ),
        DockerStep::CreateBackupContainer { backup } => describe_backup(backup),
        DockerStep::CreatePooler {
            name,
            pooler,
            network,
        } => format!(
            "create container `{name}` from `{}` ({}:{} -> {}, network `{network}`)",
            pooler.image,
            pooler.bind_address,
            pooler.port,
            crate::plan::diff::pooler::LISTEN_PORT
        ),
        DockerStep::WritePoolerConfig { name, config } => format!(
            "write pgbouncer.ini and the auth file into `{name}` (SCRAM verifiers of {} read from the server)",
            config
                .users
                .iter()
                .map(|user| format!("`{user}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        DockerStep::StartPooler { name } => {
            format!("start container `{name}` and wait until PgBouncer answers")
        }
        DockerStep::ReloadPooler { name } => {
            format!("RELOAD through the admin console of `{name}` (clients stay connected)")
        }
        DockerStep::ResumePooler { name } => format!(
            "RESUME through the admin console of `{name}`: the clients it held go on to the \
             server"
        ),
        DockerStep::RemovePooler { name } | DockerStep::RemoveExporter { name } => {
            format!("stop container `{name}` and remove it")
        }
        DockerStep::CreateExporter {
            name,
            exporter,
            network,
            ..
        } => format!(
            "create container `{name}` from `{}` ({} -> {}, network `{network}`, logging in as `{}`)",
            exporter.image,
            exporter.published(),
            exporter.kind.listen_port(),
            exporter.role
        ),
        DockerStep::WriteExporterPassword { name, .. } => format!(
            "write the monitoring role's password into `{name}` as files only the exporter's user reads"
        ),
        DockerStep::RestartExporter { name } => format!("start (or restart) container `{name}`"),
        DockerStep::CloneReplica { .. }
        | DockerStep::CreateReplica { .. }
        | DockerStep::RestartReplica { .. }
        | DockerStep::WaitStreaming { .. }
        | DockerStep::RemoveReplica { .. }
        | DockerStep::DropReplicaSlot { .. }
        | DockerStep::RemoveReplicaVolume { .. } => {
            crate::plan::diff::replicas::step_text(call).unwrap_or_default()
        }
        DockerStep::WriteTls { name, source } => match source.as_ref() {
            crate::model::TlsSource::SelfSigned { .. } => format!(
                "issue a server certificate with pgspec's CA in `{name}` (the CA made first when \
                 there is none) and write it with its key into `{}` in the data directory",
                crate::model::tls::TLS_DIRECTORY
            ),
            crate::model::TlsSource::Files {
                certificate,
                key,
                ca,
            } => format!(
                "write the certificate from {}, the key from {}{} into `{}` in the data directory \
                 of `{name}` (key mode 0600, owned by the server's user)",
                certificate.describe(),
                key.describe(),
                ca.as_ref()
                    .map(|ca| format!(" and the CA from {}", ca.describe()))
                    .unwrap_or_default(),
                crate::model::tls::TLS_DIRECTORY
            ),
        },
    }
}

/// The plan line of a `CreateBackupContainer` step.
fn describe_backup(backup: &crate::model::Backup) -> String {
    let schedules = backup
        .schedules
        .values()
        .map(|schedule| format!("{} `{}`", schedule.name, schedule.cron))
        .collect::<Vec<_>>()
        .join(", ");
    let destination = match &backup.destination {
        crate::model::BackupDestination::Volume(name) => format!("volume `{name}`"),
        crate::model::BackupDestination::Directory(path) => format!("directory `{path}`"),
    };
    match &backup.agent {
        Some(agent) => format!(
            "create and start backup container `{}` from `{}` with the pgspec {} backup \
             agent (schedules: {schedules}; backups to {destination} at {})",
            agent.name,
            agent.image,
            agent.version,
            crate::model::backup::BACKUP_MOUNT
        ),
        None => format!("create backup container (schedules: {schedules})"),
    }
}
