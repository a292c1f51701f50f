//! The metrics exporter containers (`monitoring.exporter`): created stopped
//! on the deployment network, the monitoring role's password written in as
//! files only the image's user may read, then started.
//!
//! Invariant: the password never reaches the container's environment,
//! labels or command line (what `docker inspect` shows).

use std::collections::HashMap;

use anyhow::Context;
use bollard::models::{
    ContainerCreateBody, HostConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};

use crate::engine::archive::Entry;
use crate::engine::container as containers;
use crate::engine::{Docker, files, image, labels, object_labels};
use crate::model::backup::pgpass_line;
use crate::model::monitoring::exporter::{
    Exporter, PASSWORD_DIRECTORY, PASSWORD_FILE, PGPASS_FILE,
};
use crate::secret::Secret;

/// Creates the exporter container, not started.
pub async fn create(
    docker: &Docker,
    deployment: &str,
    name: &str,
    exporter: &Exporter,
    network: &str,
    environment: &[String],
    config_hash: &str,
) -> anyhow::Result<()> {
    image::ensure(docker, &exporter.image).await?;
    let listen = format!("{}/tcp", exporter.kind.listen_port());
    let mut container_labels = object_labels(deployment);
    container_labels.insert(labels::CONFIG_HASH.to_owned(), config_hash.to_owned());
    container_labels.insert(
        labels::ROLE.to_owned(),
        format!("{}-exporter", exporter.kind.as_str()),
    );
    let port_bindings = exporter.port.map(|port| {
        HashMap::from([(
            listen.clone(),
            Some(vec![PortBinding {
                host_ip: Some(exporter.bind_address.clone()),
                host_port: Some(port.to_string()),
            }]),
        )])
    });
    let body = ContainerCreateBody {
        image: Some(exporter.image.clone()),
        env: Some(environment.to_vec()),
        labels: Some(container_labels),
        exposed_ports: Some(vec![listen]),
        host_config: Some(HostConfig {
            port_bindings,
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            network_mode: Some(network.to_owned()).filter(|network| !network.is_empty()),
            ..HostConfig::default()
        }),
        ..ContainerCreateBody::default()
    };
    containers::create(docker, name, body).await?;
    Ok(())
}

/// Writes the password as the file itself (`DATA_SOURCE_PASS_FILE`) and as
/// a libpq password file (`PGPASSFILE`), both 0600 in a 0700 directory
/// owned by the user the image runs as: libpq ignores a password file
/// anyone else may read.
pub async fn write_password(docker: &Docker, name: &str, secret: &Secret) -> anyhow::Result<()> {
    let password = secret
        .resolve()
        .with_context(|| format!("cannot read the monitoring role's password for `{name}`"))?;
    let (uid, gid) = owner(docker, name).await?;
    let pgpass = pgpass_line(None, password.expose())
        .with_context(|| format!("cannot write the monitoring role's password for `{name}`"))?;
    let entries = [
        Entry::directory("/etc/pgspec", 0o755),
        Entry::directory(PASSWORD_DIRECTORY, 0o700).owned_by(uid, gid),
        Entry::file(PASSWORD_FILE, 0o600, password.expose().as_bytes()).owned_by(uid, gid),
        Entry::file(PGPASS_FILE, 0o600, pgpass.as_bytes()).owned_by(uid, gid),
    ];
    files::upload_entries(
        docker,
        name,
        &entries,
        "the monitoring role's password files",
    )
    .await
}

/// The uid and gid the container runs as: its `User` (a name, looked up in
/// the image's `/etc/passwd`, or numbers), root when it names none.
async fn owner(docker: &Docker, name: &str) -> anyhow::Result<(u64, u64)> {
    let inspect = containers::inspect(docker, name)
        .await?
        .with_context(|| format!("container `{name}` does not exist"))?;
    let user = inspect
        .config
        .and_then(|config| config.user)
        .unwrap_or_default();
    let (user, group) = match user.split_once(':') {
        Some((user, group)) => (user.to_owned(), Some(group.to_owned())),
        None => (user, None),
    };
    if user.is_empty() || user == "root" {
        return Ok((0, 0));
    }
    let numeric_group = group.as_deref().and_then(|group| group.parse::<u64>().ok());
    if let Ok(uid) = user.parse::<u64>() {
        return Ok((uid, numeric_group.unwrap_or(uid)));
    }
    let passwd = files::read_text(docker, name, "/etc/passwd")
        .await
        .with_context(|| format!("cannot read /etc/passwd of container `{name}`"))?;
    let (uid, gid) = passwd_entry(&passwd, &user).with_context(|| {
        format!("container `{name}` runs as `{user}`, whom its /etc/passwd does not know")
    })?;
    Ok((uid, numeric_group.unwrap_or(gid)))
}

/// The uid and gid of `user` in an `/etc/passwd`.
fn passwd_entry(passwd: &str, user: &str) -> Option<(u64, u64)> {
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() >= 4 && fields[0] == user)
            .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_is_found_in_passwd() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      prometheus:x:100:101::/var/lib/prometheus:/usr/sbin/nologin\n";
        assert_eq!(passwd_entry(passwd, "prometheus"), Some((100, 101)));
        assert_eq!(passwd_entry(passwd, "nobody"), None);
    }
}
