//! Host side of backups through the Docker Engine: create the backup
//! container, run the agent in it (`docker exec`), and run a restore check
//! in a scratch container that is removed afterwards, failure or not.
//!
//! Invariant: never removes the destination. The only objects removed
//! here are the scratch container and volume that `verify` made.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bollard::models::{
    ContainerCreateBody, HostConfig, Mount, MountType, RestartPolicy, RestartPolicyNameEnum,
};
use sha2::{Digest, Sha256};

use super::agent::Report;
use super::{
    AGENT_PATH, AgentConfig, BACKUP_MOUNT, CONFIG_PATH, PGPASS_PATH, SERVER_PORT, labels,
    pgpass_line, schedule_labels,
};
use crate::engine::archive::Entry;
use crate::engine::container::{self as containers, ExecOutput, NotReady, Patience};
use crate::engine::{Docker, files, image, object_labels, objects};
use crate::model::data::PASSWORD_FILE;
use crate::model::{Backup, BackupDestination};

/// Environment variable naming a Linux pgspec binary to copy into
/// containers instead of the running one (for a pgspec built for another
/// platform than the engine's).
pub const AGENT_BINARY_ENV: &str = "PGSPEC_BACKUP_AGENT";

/// The bytes of the agent binary: `PGSPEC_BACKUP_AGENT`, or the running
/// executable (through `/proc/self/exe` where there is one). Refused when
/// it is not a Linux (ELF) executable.
async fn agent_binary() -> anyhow::Result<Vec<u8>> {
    let path = match std::env::var_os(AGENT_BINARY_ENV) {
        Some(path) => std::path::PathBuf::from(path),
        // The running executable itself, even when its file was replaced or
        // deleted since it started (a rebuild, an upgrade): the agent is
        // always the code that planned it.
        None if std::path::Path::new("/proc/self/exe").exists() => {
            std::path::PathBuf::from("/proc/self/exe")
        }
        None => std::env::current_exe().context("cannot find the running pgspec binary")?,
    };
    let bytes = tokio::fs::read(&path)
        .await
        .with_context(|| format!("cannot read the agent binary `{}`", path.display()))?;
    if !bytes.starts_with(b"\x7fELF") {
        bail!(
            "`{}` is not a Linux executable, so it cannot run as the backup agent inside a \
             container; set {AGENT_BINARY_ENV} to a Linux build of pgspec",
            path.display()
        );
    }
    Ok(bytes)
}

/// Copies `files` (with their parent directories, pgspec's own) into the
/// container.
async fn upload(docker: &Docker, container: &str, files: &[Entry<'_>]) -> anyhow::Result<()> {
    let archive = crate::engine::archive::build_with_parents(files)
        .context("cannot build the archive for the container")?;
    Ok(files::upload(docker, container, archive, "the backup agent").await?)
}

/// The mount of a destination at `BACKUP_MOUNT`.
fn destination_mount(destination: &BackupDestination, read_only: bool) -> Mount {
    let (typ, source) = match destination {
        BackupDestination::Volume(name) => (MountType::VOLUME, name.clone()),
        BackupDestination::Directory(path) => (MountType::BIND, path.clone()),
    };
    Mount {
        target: Some(BACKUP_MOUNT.to_owned()),
        source: Some(source),
        typ: Some(typ),
        read_only: Some(read_only),
        ..Mount::default()
    }
}

/// Creates the backup container a plan step describes, copies the agent,
/// its configuration and the password file in, starts it and waits until
/// the agent answers.
pub async fn create_container(
    docker: &Docker,
    deployment: &str,
    backup: &Backup,
) -> anyhow::Result<()> {
    let agent = backup
        .agent
        .as_ref()
        .context("the backup step names no container; this is a bug in pgspec, please report it with the `--json` plan")?;
    if let BackupDestination::Directory(path) = &backup.destination {
        // A bind mount needs its directory; the engine runs on this host
        // when the destination is a host directory.
        tokio::fs::create_dir_all(path)
            .await
            .with_context(|| format!("cannot create backup directory `{path}`"))?;
    }
    let binary = agent_binary().await?;
    let password = match &agent.superuser_password {
        Some(secret) => Some(
            secret
                .resolve()
                .context("cannot read the superuser password")?,
        ),
        None => None,
    };
    let config = AgentConfig {
        deployment: deployment.to_owned(),
        server: agent.server.clone(),
        port: SERVER_PORT,
        superuser: agent.superuser.clone(),
        schedules: backup.schedules.clone(),
    };
    let config_text =
        serde_json::to_vec_pretty(&config).context("cannot encode the agent configuration")?;
    let mut container_labels = object_labels(deployment);
    container_labels.extend(schedule_labels(
        &backup.destination,
        &backup.schedules,
        &agent.server,
        &agent.superuser,
    ));
    let body = ContainerCreateBody {
        image: Some(agent.image.clone()),
        entrypoint: Some(vec![
            AGENT_PATH.to_owned(),
            "backup".to_owned(),
            "agent".to_owned(),
            "schedule".to_owned(),
            format!("--config={CONFIG_PATH}"),
        ]),
        cmd: Some(Vec::new()),
        env: Some(vec![
            format!("PGPASSFILE={PGPASS_PATH}"),
            "TZ=UTC".to_owned(),
        ]),
        labels: Some(container_labels),
        host_config: Some(HostConfig {
            mounts: Some(vec![destination_mount(&backup.destination, false)]),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            network_mode: Some(agent.network.clone()).filter(|network| !network.is_empty()),
            ..HostConfig::default()
        }),
        ..ContainerCreateBody::default()
    };
    // Checked before the container exists: a password the file cannot
    // hold leaves nothing behind.
    let pgpass = password
        .as_ref()
        .map(|password| pgpass_line(None, password.expose()))
        .transpose()
        .context("cannot write the backup agent's password file")?
        .unwrap_or_default();
    containers::create(docker, &agent.name, body).await?;
    let files = [
        Entry::file(AGENT_PATH, 0o755, &binary),
        Entry::file(CONFIG_PATH, 0o600, &config_text),
        Entry::file(PGPASS_PATH, 0o600, pgpass.as_bytes()),
    ];
    upload(docker, &agent.name, &files).await?;
    start_and_check(docker, &agent.name, deployment).await
}

/// How long the throwaway check of the agent may take.
const AGENT_CHECK_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `pgspec --version` from the agent binary in a throwaway container
/// of `image`, before anything of the backup is changed: the agent is this
/// pgspec binary (or `PGSPEC_BACKUP_AGENT`), and an image whose C library
/// is older or another (musl in the official `-alpine` images), or whose
/// architecture differs, cannot start it.
pub async fn check_agent_starts(
    docker: &Docker,
    deployment: &str,
    image: &str,
) -> anyhow::Result<()> {
    image::ensure(docker, image).await?;
    let binary = agent_binary().await?;
    let name = format!("{deployment}-backup-agent-check");
    containers::create_throwaway(
        docker,
        deployment,
        &name,
        "agent-check",
        ContainerCreateBody {
            image: Some(image.to_owned()),
            entrypoint: Some(vec![AGENT_PATH.to_owned(), "--version".to_owned()]),
            cmd: Some(Vec::new()),
            ..ContainerCreateBody::default()
        },
    )
    .await?;
    let outcome = async {
        upload(docker, &name, &[Entry::file(AGENT_PATH, 0o755, &binary)]).await?;
        containers::start(docker, &name).await?;
        let code = containers::wait_exit(docker, &name, AGENT_CHECK_TIMEOUT)
            .await
            .context("the backup agent check did not finish")?;
        if code != 0 {
            bail!(
                "the pgspec backup agent cannot start in image `{image}` (exit code {code}); \
                 the agent is {which}, a Linux build for this machine's C library, and an image \
                 with another C library (musl, as in the official `-alpine` images), an older \
                 glibc or another architecture cannot run it. Use a Debian-based image, or \
                 point {AGENT_BINARY_ENV} at a build that runs there (a static musl build: \
                 `cargo build --release --target x86_64-unknown-linux-musl`). Nothing of the \
                 backup was changed\n{}",
                containers::last_logs(docker, &name).await,
                which = if std::env::var_os(AGENT_BINARY_ENV).is_some() {
                    format!("`{AGENT_BINARY_ENV}`")
                } else {
                    "this pgspec binary".to_owned()
                },
            );
        }
        Ok(())
    }
    .await;
    let removed = containers::remove_throwaway(docker, &name).await;
    outcome?;
    Ok(removed?)
}

/// How long a started agent may take to answer; generous, because a busy
/// engine is slow to exec. An agent that keeps exiting fails sooner.
const AGENT_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long one readiness probe of the agent (it lists the destination's
/// manifests) may run before it counts as a failed probe. The agent's own
/// backups and restore checks, run through `docker exec` by `pgspec backup`,
/// are not bounded: a dump takes as long as the database needs.
const AGENT_ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts the backup container and waits until its agent answers, so an
/// agent that cannot run in the image (another architecture, an older
/// glibc) fails the apply instead of silently never taking a backup.
async fn start_and_check(docker: &Docker, name: &str, deployment: &str) -> anyhow::Result<()> {
    containers::start(docker, name).await?;
    let command = agent_command(&["list", "--deployment", deployment]);
    let patience = Patience {
        limit: AGENT_READY_TIMEOUT,
        grace: Duration::ZERO,
        interval: Duration::from_millis(300),
    };
    let probe = || async {
        match tokio::time::timeout(
            AGENT_ANSWER_TIMEOUT,
            containers::exec(docker, name, &command, false),
        )
        .await
        {
            Ok(Ok(output)) if output.code == 0 => Ok(()),
            Ok(Ok(output)) => Err(format!(
                "exit code {}: {}",
                output.code,
                output.stderr.trim()
            )),
            Ok(Err(error)) => Err(format!("{error:#}")),
            Err(_) => Err(format!(
                "`backup agent list` did not finish within {} s",
                AGENT_ANSWER_TIMEOUT.as_secs()
            )),
        }
    };
    match containers::wait_ready(docker, name, patience, probe).await {
        Ok(()) => Ok(()),
        Err(NotReady::Stopped { last_error, logs } | NotReady::TimedOut { last_error, logs }) => {
            bail!(
                "the backup agent in `{name}` does not run ({last_error}); is `{AGENT_PATH}` a \
                 Linux build for the engine's architecture? ({AGENT_BINARY_ENV} names another)\n{logs}"
            )
        }
    }
}

/// Runs the agent with `arguments` in the running backup container of
/// `deployment`, forwarding its progress to stderr. `schedules` are the
/// ones the spec wants: a container that runs others gets a warning.
pub async fn exec_agent(
    docker: &Docker,
    deployment: &str,
    schedules: Option<&std::collections::BTreeMap<String, crate::model::BackupSchedule>>,
    arguments: &[&str],
) -> anyhow::Result<ExecOutput> {
    let name = super::container_name(deployment);
    let Some(inspect) = containers::inspect(docker, &name).await? else {
        bail!("there is no backup container `{name}`; run `pgspec apply` to create it")
    };
    let labels = inspect
        .config
        .and_then(|config| config.labels)
        .unwrap_or_default();
    if schedules != Some(&super::schedules_from_labels(&labels)) {
        crate::output::status(&format!(
            "warning: backup container `{name}` runs other schedules than the spec says; \
             `pgspec apply` updates it"
        ));
    }
    let running = inspect
        .state
        .and_then(|state| state.running)
        .unwrap_or(false);
    if !running {
        bail!("backup container `{name}` is not running; run `pgspec apply` to start it");
    }
    Ok(containers::exec(docker, &name, &agent_command(arguments), true).await?)
}

/// The agent command line inside a container.
pub fn agent_command(arguments: &[&str]) -> Vec<String> {
    let mut command = vec![
        AGENT_PATH.to_owned(),
        "backup".to_owned(),
        "agent".to_owned(),
    ];
    command.extend(arguments.iter().map(|argument| (*argument).to_owned()));
    command
}

/// What `verify` needs to know about the deployment.
pub struct VerifyTarget<'a> {
    pub deployment: &'a str,
    pub image: &'a str,
    pub superuser: &'a str,
    pub destination: &'a BackupDestination,
}

/// A name no other object has: deployment, purpose, time and process.
fn scratch_name(deployment: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    let digest = Sha256::digest(format!("{nanos}-{}", std::process::id()));
    format!("{deployment}-verify-{}", &hex::encode(digest)[..10])
}

/// Restores a backup into a scratch container from the server's image, on
/// a scratch volume, with the destination mounted read-only, and returns
/// the agent's report. The scratch container and volume are removed before
/// this returns, whatever happened.
pub async fn verify(
    docker: &Docker,
    target: &VerifyTarget<'_>,
    id: Option<&str>,
) -> anyhow::Result<Report> {
    if let BackupDestination::Volume(volume) = target.destination
        // Mounting a volume that does not exist would create an empty one.
        && !objects::volume_exists(docker, volume).await?
    {
        bail!("backup volume `{volume}` does not exist, so there is no backup to verify")
    }
    let name = scratch_name(target.deployment);
    // Interrupted, the scratch objects are removed all the same.
    let result = tokio::select! {
        result = verify_in(docker, target, &name, "verify", id) => result,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    let cleanup = remove_scratch(docker, &name).await;
    let report = result?;
    cleanup?;
    Ok(report)
}

/// Restores a backup into scratch container `name` on the new volume
/// `name` and checks it; both carry `org.pgspec.role` `role`. The caller
/// removes them.
pub(super) async fn verify_in(
    docker: &Docker,
    target: &VerifyTarget<'_>,
    name: &str,
    role: &str,
    id: Option<&str>,
) -> anyhow::Result<Report> {
    // The scratch server's password is made up here and used once.
    let password = hex::encode(Sha256::digest(format!("{name}-{:?}", SystemTime::now())));
    create_scratch(
        docker,
        &Scratch {
            target,
            name,
            role,
            network: None,
            password: &password,
            mount_destination: true,
        },
    )
    .await?;
    let mut arguments = vec![
        "check",
        "--deployment",
        target.deployment,
        "--user",
        target.superuser,
        "--host",
        "127.0.0.1",
    ];
    if let Some(id) = id {
        arguments.extend(["--id", id]);
    }
    exec_agent_json(docker, name, &arguments, "the restore check").await
}

/// A scratch server: a container of the image, initialised like the
/// server pgspec runs, on a new volume of the same name.
pub struct Scratch<'a> {
    /// The deployment, the image, the superuser and the backup destination
    /// (mounted read-only at `BACKUP_MOUNT`).
    pub target: &'a VerifyTarget<'a>,
    pub name: &'a str,
    /// `org.pgspec.role` of the container and the volume.
    pub role: &'a str,
    /// A network to join (the deployment's, to reach the old server of an
    /// upgrade); none otherwise.
    pub network: Option<&'a str>,
    /// The superuser's password, also in the agent's password file.
    pub password: &'a str,
    /// Mount the backup destination (read-only) for a restore.
    pub mount_destination: bool,
}

/// Creates the scratch volume and container, copies the agent in, and
/// starts it; the caller removes both.
pub async fn create_scratch(docker: &Docker, scratch: &Scratch<'_>) -> anyhow::Result<()> {
    let target = scratch.target;
    let name = scratch.name;
    let mut scratch_labels = object_labels(target.deployment);
    scratch_labels.insert(labels::ROLE.to_owned(), scratch.role.to_owned());
    objects::create_volume(
        docker,
        target.deployment,
        name,
        &[(labels::ROLE, scratch.role)],
    )
    .await
    .context("cannot create the scratch volume")?;
    // The scratch data directory goes where the image keeps PGDATA.
    let layout = image::inspect(docker, target.image)
        .await?
        .with_context(|| format!("image `{}` is not local", target.image))?
        .data_layout();
    let mut mounts = vec![Mount {
        target: Some(layout.mount.clone()),
        source: Some(name.to_owned()),
        typ: Some(MountType::VOLUME),
        ..Mount::default()
    }];
    if scratch.mount_destination {
        mounts.push(destination_mount(target.destination, true));
    }
    let body = ContainerCreateBody {
        image: Some(target.image.to_owned()),
        env: Some(vec![
            format!("POSTGRES_USER={}", target.superuser),
            format!("POSTGRES_PASSWORD_FILE={PASSWORD_FILE}"),
            "POSTGRES_INITDB_ARGS=--auth-host=scram-sha-256 --auth-local=trust".to_owned(),
            format!("PGPASSFILE={PGPASS_PATH}"),
            format!("PGDATA={}", layout.pgdata),
        ]),
        labels: Some(scratch_labels),
        host_config: Some(HostConfig {
            mounts: Some(mounts),
            // Nothing outside needs to reach a scratch server.
            network_mode: Some(scratch.network.unwrap_or("none").to_owned()),
            ..HostConfig::default()
        }),
        ..ContainerCreateBody::default()
    };
    let pgpass = pgpass_line(None, scratch.password)?;
    containers::create(docker, name, body)
        .await
        .context("cannot create the scratch container")?;
    let binary = agent_binary().await?;
    let files = [
        Entry::file(AGENT_PATH, 0o755, &binary),
        Entry::file(PASSWORD_FILE, 0o600, scratch.password.as_bytes()),
        Entry::file(PGPASS_PATH, 0o600, pgpass.as_bytes()),
    ];
    upload(docker, name, &files).await?;
    containers::start(docker, name)
        .await
        .context("cannot start the scratch container")?;
    Ok(())
}

/// Runs the agent in a container, with its output forwarded; fails on a
/// non-zero exit and returns the JSON it printed, decoded.
pub async fn exec_agent_json<T: serde::de::DeserializeOwned>(
    docker: &Docker,
    name: &str,
    arguments: &[&str],
    what: &str,
) -> anyhow::Result<T> {
    let output = containers::exec(docker, name, &agent_command(arguments), true).await?;
    if output.code != 0 {
        bail!(
            "{what} in container `{name}` failed (exit code {}, output above)",
            output.code
        );
    }
    serde_json::from_str(&output.stdout).with_context(|| {
        format!(
            "cannot read the answer of {what} from container `{name}`: {}",
            output.stderr.trim()
        )
    })
}

/// Removes the scratch container (with force: it holds nothing of value)
/// and then its volume.
pub async fn remove_scratch(docker: &Docker, name: &str) -> anyhow::Result<()> {
    // Its anonymous volumes go with it; the scratch volume goes next.
    containers::remove_throwaway(docker, name).await?;
    Ok(objects::remove_volume(docker, name).await?)
}

/// Prepares the empty volume `volume` for point-in-time recovery to
/// `recovery`: in a throwaway container of the server's image, with the
/// destination mounted read-only, the agent unpacks the newest base backup
/// consistent before the target into the image's data directory, copies
/// the archived WAL it needs beside it and writes the recovery settings
/// and `recovery.signal` (see `backup::agent::prepare_recovery`). A server
/// container of that image started on the volume then replays to exactly
/// the target, promotes and opens read-write; it needs no archive mounted.
/// The volume must exist and be empty; it is never removed here, and the
/// throwaway container is removed whatever happened.
pub async fn prepare_recovery(
    docker: &Docker,
    target: &VerifyTarget<'_>,
    recovery: &super::agent::RecoveryTarget,
    volume: &str,
) -> anyhow::Result<super::agent::Prepared> {
    if let BackupDestination::Volume(destination) = target.destination
        && !objects::volume_exists(docker, destination).await?
    {
        bail!("backup volume `{destination}` does not exist, so there is nothing to recover from")
    }
    if !objects::volume_exists(docker, volume).await? {
        bail!("volume `{volume}` does not exist; create it empty before preparing a recovery")
    }
    let layout = image::inspect(docker, target.image)
        .await?
        .with_context(|| format!("image `{}` is not local", target.image))?
        .data_layout();
    let name = format!("{}-recover", scratch_name(target.deployment));
    containers::create_throwaway(
        docker,
        target.deployment,
        &name,
        "recover",
        ContainerCreateBody {
            image: Some(target.image.to_owned()),
            entrypoint: Some(vec!["sleep".to_owned(), "86400".to_owned()]),
            cmd: Some(Vec::new()),
            user: Some("0:0".to_owned()),
            host_config: Some(HostConfig {
                mounts: Some(vec![
                    Mount {
                        target: Some(layout.mount.clone()),
                        source: Some(volume.to_owned()),
                        typ: Some(MountType::VOLUME),
                        ..Mount::default()
                    },
                    destination_mount(target.destination, true),
                ]),
                network_mode: Some("none".to_owned()),
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        },
    )
    .await
    .context("cannot create the recovery container")?;
    let outcome = async {
        let binary = agent_binary().await?;
        upload(docker, &name, &[Entry::file(AGENT_PATH, 0o755, &binary)]).await?;
        containers::start(docker, &name).await?;
        let target_argument = recovery.argument();
        let command = agent_command(&[
            "recover",
            "--deployment",
            target.deployment,
            "--pgdata",
            &layout.pgdata,
            "--target",
            &target_argument,
        ]);
        let output = containers::exec(docker, &name, &command, true).await?;
        if output.code != 0 {
            bail!(
                "preparing the recovery in `{name}` failed (exit code {}): {}",
                output.code,
                output.stderr.trim()
            );
        }
        serde_json::from_str(&output.stdout)
            .context("cannot read what the recovery preparation reported")
    }
    .await;
    let removed = containers::remove_throwaway(docker, &name).await;
    let prepared = outcome?;
    removed?;
    Ok(prepared)
}
