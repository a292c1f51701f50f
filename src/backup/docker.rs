//! Host side of backups through the Docker Engine: create the backup
//! container, run the agent in it (`docker exec`), and run a restore check
//! in a scratch container that is removed afterwards, failure or not.
//!
//! Invariant: never removes the destination. The only objects removed
//! here are the scratch container and volume that `verify` made.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bollard::Docker;
use bollard::exec::StartExecResults;
use bollard::models::{
    ContainerCreateBody, ExecConfig, HostConfig, Mount, MountType, RestartPolicy,
    RestartPolicyNameEnum, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, RemoveVolumeOptions, UploadToContainerOptions,
};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use super::agent::Report;
use super::{
    AGENT_PATH, AgentConfig, BACKUP_MOUNT, CONFIG_PATH, PGPASS_PATH, SERVER_PORT, labels,
    pgpass_line, schedule_labels,
};
use crate::apply::docker::{PASSWORD_FILE, object_labels};
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

/// A file to copy into a container.
struct Upload<'a> {
    path: &'a str,
    mode: u32,
    bytes: &'a [u8],
}

/// A tar archive of files (with their parent directories) to unpack at `/`.
fn archive(files: &[Upload<'_>]) -> anyhow::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut directories: Vec<(String, u32)> = Vec::new();
    for file in files {
        let parent = std::path::Path::new(file.path)
            .parent()
            .map(|parent| parent.display().to_string())
            .unwrap_or_default();
        // Secrets' directory is root's only; the binary's is world-readable.
        let mode = if file.mode & 0o077 == 0 { 0o700 } else { 0o755 };
        if !parent.is_empty() && parent != "/" && !directories.iter().any(|(dir, _)| *dir == parent)
        {
            directories.push((parent, mode));
        }
    }
    for (directory, mode) in &directories {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(*mode);
        header.set_size(0);
        header.set_cksum();
        builder
            .append_data(
                &mut header,
                directory.trim_start_matches('/'),
                std::io::empty(),
            )
            .context("cannot build the archive for the container")?;
    }
    for file in files {
        let mut header = tar::Header::new_gnu();
        header.set_mode(file.mode);
        header.set_size(file.bytes.len() as u64);
        header.set_cksum();
        builder
            .append_data(&mut header, file.path.trim_start_matches('/'), file.bytes)
            .context("cannot build the archive for the container")?;
    }
    builder
        .into_inner()
        .context("cannot build the archive for the container")
}

async fn upload(docker: &Docker, container: &str, archive: Vec<u8>) -> anyhow::Result<()> {
    docker
        .upload_to_container(
            container,
            Some(UploadToContainerOptions {
                path: "/".to_owned(),
                ..UploadToContainerOptions::default()
            }),
            bollard::body_full(archive.into()),
        )
        .await
        .with_context(|| format!("cannot copy the backup agent into container `{container}`"))
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
    docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(agent.name.clone()),
                ..CreateContainerOptions::default()
            }),
            body,
        )
        .await
        .with_context(|| format!("cannot create container `{}`", agent.name))?;
    let pgpass = password
        .as_ref()
        .map(|password| pgpass_line(password.expose()))
        .unwrap_or_default();
    let files = [
        Upload {
            path: AGENT_PATH,
            mode: 0o755,
            bytes: &binary,
        },
        Upload {
            path: CONFIG_PATH,
            mode: 0o600,
            bytes: &config_text,
        },
        Upload {
            path: PGPASS_PATH,
            mode: 0o600,
            bytes: pgpass.as_bytes(),
        },
    ];
    upload(docker, &agent.name, archive(&files)?).await?;
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
    crate::apply::docker::ensure_image(docker, image).await?;
    let binary = agent_binary().await?;
    let name = format!("{deployment}-backup-agent-check");
    crate::apply::docker::create_throwaway(
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
        let files = [Upload {
            path: AGENT_PATH,
            mode: 0o755,
            bytes: &binary,
        }];
        upload(docker, &name, archive(&files)?).await?;
        docker
            .start_container(&name, None)
            .await
            .with_context(|| format!("cannot start container `{name}`"))?;
        let mut wait = docker.wait_container(
            &name,
            None::<bollard::query_parameters::WaitContainerOptions>,
        );
        let code = match tokio::time::timeout(AGENT_CHECK_TIMEOUT, wait.next()).await {
            Ok(Some(Ok(response))) => response.status_code,
            // The engine reports a non-zero exit as an error of the wait.
            Ok(Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. }))) => code,
            Ok(Some(Err(error))) => {
                return Err(error).with_context(|| format!("cannot wait for `{name}`"));
            }
            Ok(None) => -1,
            Err(_) => bail!(
                "the backup agent check in `{name}` did not finish within {}s",
                AGENT_CHECK_TIMEOUT.as_secs()
            ),
        };
        if code != 0 {
            bail!(
                "the pgspec backup agent cannot start in image `{image}` (exit code {code}); \
                 the agent is {which}, a Linux build for this machine's C library, and an image \
                 with another C library (musl, as in the official `-alpine` images), an older \
                 glibc or another architecture cannot run it. Use a Debian-based image, or \
                 point {AGENT_BINARY_ENV} at a build that runs there (a static musl build: \
                 `cargo build --release --target x86_64-unknown-linux-musl`). Nothing of the \
                 backup was changed\n{}",
                crate::apply::docker::last_logs(docker, &name).await,
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
    let removed = crate::apply::docker::remove_throwaway(docker, &name).await;
    outcome?;
    removed
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
    docker
        .start_container(name, None)
        .await
        .with_context(|| format!("cannot start container `{name}`"))?;
    let started = Instant::now();
    let command = agent_command(&["list", "--deployment", deployment]);
    loop {
        let inspect = docker.inspect_container(name, None).await.ok();
        let restarts = inspect
            .as_ref()
            .and_then(|inspect| inspect.restart_count)
            .unwrap_or(0);
        let running = inspect
            .and_then(|inspect| inspect.state)
            .and_then(|state| state.running)
            .unwrap_or(false);
        let last_error = if running {
            match tokio::time::timeout(AGENT_ANSWER_TIMEOUT, exec(docker, name, &command)).await {
                Ok(Ok(output)) if output.code == 0 => return Ok(()),
                Ok(Ok(output)) => format!("exit code {}: {}", output.code, output.stderr.trim()),
                Ok(Err(error)) => format!("{error:#}"),
                Err(_) => format!(
                    "`backup agent list` did not finish within {} s",
                    AGENT_ANSWER_TIMEOUT.as_secs()
                ),
            }
        } else {
            "the container is not running".to_owned()
        };
        if started.elapsed() > AGENT_READY_TIMEOUT || restarts >= 2 {
            bail!(
                "the backup agent in `{name}` does not run ({last_error}); is `{}` a Linux build \
                 for the engine's architecture? ({AGENT_BINARY_ENV} names another)\n{}",
                AGENT_PATH,
                crate::apply::docker::last_logs(docker, name).await
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// What a `docker exec` printed and how it ended.
pub struct ExecOutput {
    pub code: i64,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a command in a running container and collects its output.
pub async fn exec(
    docker: &Docker,
    container: &str,
    command: &[String],
) -> anyhow::Result<ExecOutput> {
    exec_with(docker, container, command, false).await
}

/// Like [`exec`], and writes each line of the command's stderr (the agent's
/// progress) to our stderr as it arrives.
pub async fn exec_forwarding_stderr(
    docker: &Docker,
    container: &str,
    command: &[String],
) -> anyhow::Result<ExecOutput> {
    exec_with(docker, container, command, true).await
}

async fn exec_with(
    docker: &Docker,
    container: &str,
    command: &[String],
    forward: bool,
) -> anyhow::Result<ExecOutput> {
    let created = docker
        .create_exec(
            container,
            ExecConfig {
                cmd: Some(command.to_vec()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..ExecConfig::default()
            },
        )
        .await
        .with_context(|| format!("cannot run the backup agent in container `{container}`"))?;
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    match docker
        .start_exec(&created.id, None)
        .await
        .with_context(|| format!("cannot run the backup agent in container `{container}`"))?
    {
        StartExecResults::Attached { mut output, .. } => {
            while let Some(chunk) = output.next().await {
                match chunk.with_context(|| {
                    format!("lost the backup agent's output in container `{container}`")
                })? {
                    bollard::container::LogOutput::StdOut { message } => {
                        stdout.extend_from_slice(&message)
                    }
                    bollard::container::LogOutput::StdErr { message } => {
                        if forward {
                            let start = stderr.len();
                            stderr.extend_from_slice(&message);
                            forward_lines(&stderr, start, message.len());
                        } else {
                            stderr.extend_from_slice(&message);
                        }
                    }
                    _ => {}
                }
            }
            // The last line, when it had no newline.
            if forward
                && let Some(last) = stderr.split(|byte| *byte == b'\n').next_back()
                && !last.is_empty()
            {
                crate::output::status(&String::from_utf8_lossy(last));
            }
        }
        StartExecResults::Detached => {}
    }
    let inspect = docker
        .inspect_exec(&created.id)
        .await
        .with_context(|| format!("cannot read how the agent ended in container `{container}`"))?;
    Ok(ExecOutput {
        code: inspect.exit_code.unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    })
}

/// Writes the lines completed by the `added` bytes at `start` of `buffer`.
fn forward_lines(buffer: &[u8], start: usize, added: usize) {
    for line in completed_lines(buffer, start, added) {
        crate::output::status(&String::from_utf8_lossy(line));
    }
}

/// The lines of `buffer` that the `added` bytes at `start` complete.
fn completed_lines(buffer: &[u8], start: usize, added: usize) -> Vec<&[u8]> {
    // A line starts after the last newline before the new bytes.
    let line_start = buffer[..start]
        .iter()
        .rposition(|byte| *byte == b'\n')
        .map_or(0, |position| position + 1);
    let end = start + added;
    match buffer[start..end].iter().rposition(|byte| *byte == b'\n') {
        Some(position) => buffer[line_start..start + position]
            .split(|byte| *byte == b'\n')
            .collect(),
        None => Vec::new(),
    }
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
    if let BackupDestination::Volume(volume) = target.destination {
        // Mounting a volume that does not exist would create an empty one.
        match docker.inspect_volume(volume).await {
            Ok(_) => {}
            Err(error) if crate::live::docker::is_not_found(&error) => {
                bail!("backup volume `{volume}` does not exist, so there is no backup to verify")
            }
            Err(error) => {
                return Err(error).with_context(|| format!("cannot inspect volume `{volume}`"));
            }
        }
    }
    let name = scratch_name(target.deployment);
    // Interrupted, the scratch objects are removed all the same.
    let result = tokio::select! {
        result = verify_in(docker, target, &name, id) => result,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    let cleanup = remove_scratch(docker, &name).await;
    let report = result?;
    cleanup?;
    Ok(report)
}

async fn verify_in(
    docker: &Docker,
    target: &VerifyTarget<'_>,
    name: &str,
    id: Option<&str>,
) -> anyhow::Result<Report> {
    let mut scratch_labels = object_labels(target.deployment);
    scratch_labels.insert(labels::ROLE.to_owned(), "verify".to_owned());
    docker
        .create_volume(VolumeCreateRequest {
            name: Some(name.to_owned()),
            labels: Some(scratch_labels.clone()),
            ..VolumeCreateRequest::default()
        })
        .await
        .with_context(|| format!("cannot create scratch volume `{name}`"))?;
    // The scratch data directory goes where the image keeps PGDATA.
    let layout = crate::live::docker::image_from_inspect(
        docker
            .inspect_image(target.image)
            .await
            .with_context(|| format!("cannot inspect image `{}`", target.image))?,
    )
    .data_layout();
    // The scratch server's password is made up here and used once.
    let password = hex::encode(Sha256::digest(format!("{name}-{:?}", SystemTime::now())));
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
            mounts: Some(vec![
                Mount {
                    target: Some(layout.mount.clone()),
                    source: Some(name.to_owned()),
                    typ: Some(MountType::VOLUME),
                    ..Mount::default()
                },
                destination_mount(target.destination, true),
            ]),
            // Nothing outside needs to reach a scratch server.
            network_mode: Some("none".to_owned()),
            ..HostConfig::default()
        }),
        ..ContainerCreateBody::default()
    };
    docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(name.to_owned()),
                ..CreateContainerOptions::default()
            }),
            body,
        )
        .await
        .with_context(|| format!("cannot create scratch container `{name}`"))?;
    let binary = agent_binary().await?;
    let pgpass = pgpass_line(&password);
    let files = [
        Upload {
            path: AGENT_PATH,
            mode: 0o755,
            bytes: &binary,
        },
        Upload {
            path: PASSWORD_FILE,
            mode: 0o600,
            bytes: password.as_bytes(),
        },
        Upload {
            path: PGPASS_PATH,
            mode: 0o600,
            bytes: pgpass.as_bytes(),
        },
    ];
    upload(docker, name, archive(&files)?).await?;
    docker
        .start_container(name, None)
        .await
        .with_context(|| format!("cannot start scratch container `{name}`"))?;
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
    let output = exec_forwarding_stderr(docker, name, &agent_command(&arguments)).await?;
    if output.code != 0 {
        bail!(
            "the restore check in scratch container `{name}` failed (exit code {}, output above)",
            output.code
        );
    }
    serde_json::from_str(&output.stdout).with_context(|| {
        format!(
            "cannot read the restore check's report from scratch container `{name}`: {}",
            output.stderr.trim()
        )
    })
}

/// Removes the scratch container (with force: it holds nothing of value)
/// and then its volume.
async fn remove_scratch(docker: &Docker, name: &str) -> anyhow::Result<()> {
    // Its anonymous volumes go with it; the scratch volume goes next.
    crate::apply::docker::remove_throwaway(docker, name).await?;
    match docker
        .remove_volume(name, None::<RemoveVolumeOptions>)
        .await
    {
        Ok(()) => Ok(()),
        Err(error) if crate::live::docker::is_not_found(&error) => Ok(()),
        Err(error) => Err(error).with_context(|| format!("cannot remove scratch volume `{name}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::completed_lines;

    #[test]
    fn stderr_is_forwarded_a_whole_line_at_a_time() {
        let buffer = b"backing up da";
        assert!(completed_lines(buffer, 0, buffer.len()).is_empty());
        let buffer = b"backing up database `a`\nbackup `x`: ok\npart";
        let lines = completed_lines(buffer, 13, buffer.len() - 13);
        assert_eq!(
            lines,
            [&b"backing up database `a`"[..], &b"backup `x`: ok"[..]]
        );
        let buffer = b"one\ntwo\n";
        assert_eq!(completed_lines(buffer, 4, 4), [&b"two"[..]]);
    }
}
