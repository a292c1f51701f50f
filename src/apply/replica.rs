//! Streaming replicas: cloning one from the server, creating, restarting
//! and removing its container, waiting until it streams, and dropping its
//! slot.
//!
//! The clone runs in a throwaway container of the replica's image on the
//! deployment's network: `pg_basebackup` on the replica's slot into its
//! volume, then `standby.signal` and `primary_conninfo`, which names a
//! password file in the data directory: the password is in no label,
//! environment or command line.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bollard::models::{
    ContainerCreateBody, HostConfig, Mount, MountType, PortBinding, RestartPolicy,
    RestartPolicyNameEnum,
};

use crate::engine::archive::{self, Entry};
use crate::engine::container::{self as containers, SERVER_PORT};
use crate::engine::{Docker, files, image, labels, object_labels, objects};
use crate::live::Target;
use crate::model::backup::pgpass_line;
use crate::model::replicas::{LABEL_NAME, LABEL_ROLE, PASSFILE, Replica};
use crate::plan::DockerStep;

/// How long a clone may take: pg_basebackup copies the whole server.
const CLONE_LIMIT: Duration = Duration::from_secs(6 * 3600);

/// How long a replica may take to stream after it starts.
const STREAM_LIMIT: Duration = Duration::from_secs(300);

/// Where the clone container finds the password file and the settings to
/// append, uploaded before it starts.
const CLONE_PASSFILE: &str = "/tmp/pgspec-clone/pass";
const CLONE_SETTINGS: &str = "/tmp/pgspec-clone/standby.conf";

/// The clone, as root in the throwaway container: arguments are the data
/// directory, the server, the role and the slot; values reach the shell
/// only as positional parameters. A data directory that is not a standby's
/// (a replica promoted by hand holds the only copy of its writes) is never
/// emptied.
const CLONE_SCRIPT: &str = r#"set -eu
pgdata="$1"; server="$2"; role="$3"; slot="$4"
as_postgres() {
  if command -v setpriv >/dev/null 2>&1; then
    setpriv --reuid=postgres --regid=postgres --init-groups "$@"
  elif command -v gosu >/dev/null 2>&1; then
    gosu postgres "$@"
  else
    su-exec postgres "$@"
  fi
}
if [ -f "$pgdata/PG_VERSION" ] && [ ! -f "$pgdata/standby.signal" ]; then
  echo "the volume holds a server that is not a standby (a promoted replica?); it is not overwritten" >&2
  exit 3
fi
mkdir -p "$pgdata"
find "$pgdata" -mindepth 1 -delete
chown postgres:postgres "$pgdata" /tmp/pgspec-clone /tmp/pgspec-clone/pass
chmod 700 "$pgdata"
as_postgres env PGPASSFILE=/tmp/pgspec-clone/pass PGCONNECT_TIMEOUT=30 \
  pg_basebackup -h "$server" -p 5432 -U "$role" -D "$pgdata" -X stream -S "$slot" -c fast -w
cp /tmp/pgspec-clone/pass "$pgdata/pgspec-replication.pass"
touch "$pgdata/standby.signal"
cat /tmp/pgspec-clone/standby.conf >> "$pgdata/postgresql.auto.conf"
chown postgres:postgres "$pgdata/pgspec-replication.pass" "$pgdata/standby.signal"
chmod 600 "$pgdata/pgspec-replication.pass"
"#;

pub async fn run(
    docker: &Docker,
    deployment: &str,
    step: &DockerStep,
    target: &Target,
) -> anyhow::Result<()> {
    match step {
        DockerStep::CloneReplica {
            replica,
            server,
            role,
            secret,
        } => {
            let password = secret
                .as_ref()
                .context("the replication role has no password")?
                .resolve()
                .context("cannot read the replication role's password")?;
            clone(docker, deployment, replica, server, role, password.expose()).await
        }
        DockerStep::CreateReplica { replica } => create(docker, deployment, replica).await,
        DockerStep::RestartReplica { name } => {
            let running = containers::inspect(docker, name)
                .await?
                .and_then(|inspect| inspect.state)
                .and_then(|state| state.running)
                .unwrap_or(false);
            if running {
                containers::restart(docker, name).await?;
            } else {
                containers::start(docker, name).await?;
            }
            Ok(())
        }
        DockerStep::WaitStreaming { name, slot } => {
            wait_streaming(docker, deployment, name, slot, target).await
        }
        DockerStep::RemoveReplica { name } => {
            replica_container(docker, name).await?;
            Ok(containers::stop_and_remove(docker, name).await?)
        }
        DockerStep::DropReplicaSlot { slot } => drop_slot(slot, target).await,
        DockerStep::RemoveReplicaVolume { name } => {
            replica_volume(docker, name).await?;
            Ok(objects::remove_volume(docker, name).await?)
        }
        _ => bail!("not a replica's step"),
    }
}

/// Refuses a container of a replica's name that pgspec did not make for a
/// replica: it is never stopped or removed here.
async fn replica_container(docker: &Docker, name: &str) -> anyhow::Result<()> {
    let role = containers::label(docker, name, labels::ROLE).await?;
    if role.is_some_and(|role| role != LABEL_ROLE) {
        bail!(
            "container `{name}` exists but pgspec did not make it for a replica; it is left \
             alone: remove or rename it, or name the replica otherwise"
        );
    }
    Ok(())
}

/// Whether `volume` is a replica's volume pgspec made: anything else is
/// never emptied or removed here.
async fn replica_volume(docker: &Docker, volume: &str) -> anyhow::Result<bool> {
    match objects::volume_role(docker, volume).await? {
        None => Ok(false),
        Some(role) if role == LABEL_ROLE => Ok(true),
        Some(_) => bail!(
            "volume `{volume}` exists but pgspec did not make it for a replica; it is left \
             alone: remove or rename it, or name the replica otherwise"
        ),
    }
}

/// A libpq connection value in single quotes.
fn conninfo_value(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A `postgresql.conf` string value: the server's configuration reader
/// takes backslash escapes and doubled quotes inside quotes.
fn conf_value(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// The lines a standby needs beside `standby.signal`.
pub fn standby_settings(replica: &Replica, server: &str, role: &str, pgdata: &str) -> String {
    let conninfo = format!(
        "host={} port=5432 user={} passfile={} application_name={}",
        conninfo_value(server),
        conninfo_value(role),
        conninfo_value(&format!("{pgdata}/{PASSFILE}")),
        conninfo_value(&replica.name),
    );
    format!(
        "\n# written by pgspec for replica `{}`\nprimary_conninfo = {}\nprimary_slot_name = {}\n",
        replica.name,
        conf_value(&conninfo),
        conf_value(&replica.slot)
    )
}

async fn clone(
    docker: &Docker,
    deployment: &str,
    replica: &Replica,
    server: &str,
    role: &str,
    password: &str,
) -> anyhow::Result<()> {
    if !replica_volume(docker, &replica.volume).await? {
        objects::create_volume(
            docker,
            deployment,
            &replica.volume,
            &[(labels::ROLE, LABEL_ROLE), (LABEL_NAME, &replica.name)],
        )
        .await?;
    }
    image::ensure(docker, &replica.image).await?;
    let layout = image::inspect(docker, &replica.image)
        .await?
        .with_context(|| format!("image `{}` is not local", replica.image))?
        .data_layout();
    let name = format!("{}-clone", replica.container);
    containers::remove_throwaway(docker, &name).await?;
    let mut container_labels = object_labels(deployment);
    container_labels.insert(labels::ROLE.to_owned(), "replica-clone".to_owned());
    let mut entrypoint = vec!["sh".to_owned(), "-c".to_owned(), CLONE_SCRIPT.to_owned()];
    entrypoint
        .extend(["pgspec-clone", &layout.pgdata, server, role, &replica.slot].map(str::to_owned));
    containers::create(
        docker,
        &name,
        ContainerCreateBody {
            image: Some(replica.image.clone()),
            entrypoint: Some(entrypoint),
            cmd: Some(Vec::new()),
            user: Some("0:0".to_owned()),
            labels: Some(container_labels),
            host_config: Some(HostConfig {
                mounts: Some(vec![volume_mount(&replica.volume, &layout.mount)]),
                network_mode: Some(replica.network.clone()),
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        },
    )
    .await
    .context("cannot create the clone container")?;
    let outcome = async {
        let settings = standby_settings(replica, server, role, &layout.pgdata);
        let pass = pgpass_line(Some(role), password)?;
        // `/tmp` is left as it is: the postgres user passes through it.
        let upload = archive::build(&[
            Entry::directory("/tmp/pgspec-clone", 0o700),
            Entry::file(CLONE_PASSFILE, 0o600, pass.as_bytes()),
            Entry::file(CLONE_SETTINGS, 0o644, settings.as_bytes()),
        ])
        .context("cannot build the clone's files")?;
        files::upload(docker, &name, upload, "the replication password file").await?;
        containers::start(docker, &name).await?;
        let code = containers::wait_exit(docker, &name, CLONE_LIMIT).await?;
        if code != 0 {
            let logs = containers::last_logs(docker, &name).await;
            bail!(
                "cloning the server into `{}` failed (exit code {code}): {}",
                replica.volume,
                logs.trim()
            );
        }
        Ok(())
    }
    .await;
    let removed = containers::remove_throwaway(docker, &name).await;
    outcome?;
    removed?;
    Ok(())
}

fn volume_mount(volume: &str, target: &str) -> Mount {
    Mount {
        target: Some(target.to_owned()),
        source: Some(volume.to_owned()),
        typ: Some(MountType::VOLUME),
        ..Mount::default()
    }
}

async fn create(docker: &Docker, deployment: &str, replica: &Replica) -> anyhow::Result<()> {
    image::ensure(docker, &replica.image).await?;
    let layout = image::inspect(docker, &replica.image)
        .await?
        .with_context(|| format!("image `{}` is not local", replica.image))?
        .data_layout();
    let mut container_labels = object_labels(deployment);
    container_labels.insert(labels::ROLE.to_owned(), LABEL_ROLE.to_owned());
    container_labels.insert(LABEL_NAME.to_owned(), replica.name.clone());
    container_labels.insert(labels::CONFIG_HASH.to_owned(), replica.config_hash());
    let port_bindings = replica.port.map(|port| {
        HashMap::from([(
            SERVER_PORT.to_owned(),
            Some(vec![PortBinding {
                host_ip: Some(replica.bind_address.clone()),
                host_port: Some(port.to_string()),
            }]),
        )])
    });
    let body = ContainerCreateBody {
        image: Some(replica.image.clone()),
        cmd: Some(replica.command()),
        env: Some(vec![format!("PGDATA={}", layout.pgdata)]),
        labels: Some(container_labels),
        exposed_ports: Some(vec![SERVER_PORT.to_owned()]),
        host_config: Some(HostConfig {
            port_bindings,
            mounts: Some(vec![volume_mount(&replica.volume, &layout.mount)]),
            nano_cpus: replica.nano_cpus,
            memory: replica.memory_bytes,
            memory_swap: replica.memory_bytes,
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            network_mode: Some(replica.network.clone()),
            ..HostConfig::default()
        }),
        ..ContainerCreateBody::default()
    };
    containers::create(docker, &replica.container, body).await?;
    containers::start(docker, &replica.container).await?;
    Ok(())
}

async fn wait_streaming(
    docker: &Docker,
    deployment: &str,
    name: &str,
    slot: &str,
    target: &Target,
) -> anyhow::Result<()> {
    let replica = crate::model::replicas::replica_of_slot(slot).unwrap_or_default();
    let started = Instant::now();
    loop {
        let slots = crate::live::replicas::observe_slots(target, deployment).await;
        if let Ok(slots) = &slots
            && slots.get(replica).is_some_and(|slot| slot.streaming)
        {
            return Ok(());
        }
        let running = containers::inspect(docker, name)
            .await?
            .and_then(|inspect| inspect.state)
            .and_then(|state| state.running)
            .unwrap_or(false);
        if started.elapsed() > STREAM_LIMIT || (!running && started.elapsed().as_secs() > 10) {
            let logs = containers::last_logs(docker, name).await;
            bail!(
                "replica `{name}` does not stream on slot `{slot}` after {} s: {}",
                started.elapsed().as_secs(),
                logs.trim()
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn drop_slot(slot: &str, target: &Target) -> anyhow::Result<()> {
    let client = target.connect().await?;
    let started = Instant::now();
    loop {
        let row = client
            .query_opt(
                "SELECT active FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .context("cannot read the replication slots")?;
        match row {
            None => return Ok(()),
            Some(row) if !row.get::<_, bool>(0) => {
                client
                    .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
                    .await
                    .with_context(|| format!("cannot drop replication slot `{slot}`"))?;
                return Ok(());
            }
            Some(_) if started.elapsed() > Duration::from_secs(30) => {
                bail!("replication slot `{slot}` is still in use after 30 s")
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standby_settings_quote_names_and_hold_no_password() {
        let replica = Replica::named("x", "1");
        let text = standby_settings(&replica, "x-postgres", "it's", "/var/lib/postgresql/data");
        assert!(
            text.contains(
                "primary_conninfo = 'host=''x-postgres'' port=5432 user=''it\\\\''s'' \
                 passfile=''/var/lib/postgresql/data/pgspec-replication.pass'' \
                 application_name=''1'''\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("primary_slot_name = 'pgspec_replica_1'\n"),
            "{text}"
        );
        assert!(!text.contains("password="), "{text}");
    }
}
