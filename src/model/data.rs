//! Where a server container keeps its data directory, and how to tell
//! whether it is on pgspec's named volume.
//!
//! The layout comes from the image itself — the `PGDATA` in its environment
//! and the volumes it declares — never from its tag: `postgres:latest`,
//! `postgres@sha256:…` and `myorg/pg:prod` say nothing about where the data
//! lives. The official image keeps `PGDATA=/var/lib/postgresql/data` under
//! `VOLUME /var/lib/postgresql/data` up to PostgreSQL 17, and
//! `PGDATA=/var/lib/postgresql/18/docker` under `VOLUME /var/lib/postgresql`
//! from 18 on. pgspec mounts its volume where the image declares the volume
//! that holds `PGDATA` and sets `PGDATA` explicitly, so the data directory
//! is on the named volume for any image and never on an anonymous one that
//! a replaced container takes with it.
//!
//! Invariant: no I/O; the proof itself is made from observed facts.

use serde::{Deserialize, Serialize};

/// `PGDATA` of an image that does not set one: the official image's value
/// up to PostgreSQL 17, and what its entrypoint falls back to.
pub const DEFAULT_PGDATA: &str = "/var/lib/postgresql/data";

/// Where pgspec puts the superuser password file in a server container it
/// creates. The image reads it through `POSTGRES_PASSWORD_FILE`, so the
/// password never shows in `docker inspect`.
pub const PASSWORD_FILE: &str = "/etc/pgspec/superuser-password";

/// Where the data directory lives inside a container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataLayout {
    /// The data directory (`PGDATA`).
    pub pgdata: String,
    /// Where the named volume is mounted: `pgdata` itself or a directory
    /// above it.
    pub mount: String,
}

impl DataLayout {
    /// The layout an image asks for: its `PGDATA` (or the default), on the
    /// deepest volume it declares that holds `PGDATA`, or on `PGDATA` itself
    /// when it declares none.
    pub fn of_image(pgdata: Option<&str>, volumes: &[String]) -> DataLayout {
        let pgdata = pgdata
            .map(normalise)
            .filter(|pgdata| pgdata.starts_with('/') && pgdata.len() > 1)
            .unwrap_or_else(|| DEFAULT_PGDATA.to_owned());
        let mount = volumes
            .iter()
            .map(|volume| normalise(volume))
            .filter(|volume| volume.len() > 1 && contains(volume, &pgdata))
            .max_by_key(String::len)
            .unwrap_or_else(|| pgdata.clone());
        DataLayout { pgdata, mount }
    }
}

/// A path without trailing slashes (`/` stays `/`).
fn normalise(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// Whether `path` is `directory` or below it.
pub fn contains(directory: &str, path: &str) -> bool {
    let directory = normalise(directory);
    let path = normalise(path);
    path == directory
        || directory == "/"
        || path
            .strip_prefix(&directory)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// One mount of a live container, as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// `volume`, `bind`, `tmpfs`, …
    pub kind: String,
    /// The volume's name (named or anonymous); empty for other kinds.
    pub name: String,
    pub destination: String,
}

/// The mount a path inside a container is on: the deepest one holding it.
pub fn covering_mount<'a>(mounts: &'a [MountInfo], path: &str) -> Option<&'a MountInfo> {
    mounts
        .iter()
        .filter(|mount| !mount.destination.is_empty() && contains(&mount.destination, path))
        .max_by_key(|mount| normalise(&mount.destination).len())
}

/// Where a live container's data directory is, as far as the engine and the
/// server tell.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataHome {
    /// `PGDATA` in the container's environment.
    pub pgdata: String,
    /// The kind of mount holding it (`volume`, `bind`, `tmpfs`), empty when
    /// it is in the container's own file system.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// The volume's name when `kind` is `volume`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub volume: String,
    /// Where that mount is.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mount: String,
}

impl DataHome {
    /// Where the data directory of a container with these mounts and this
    /// `PGDATA` lives.
    pub fn locate(pgdata: &str, mounts: &[MountInfo]) -> DataHome {
        let mount = covering_mount(mounts, pgdata);
        DataHome {
            pgdata: pgdata.to_owned(),
            kind: mount.map(|mount| mount.kind.clone()).unwrap_or_default(),
            volume: mount
                .filter(|mount| mount.kind == "volume")
                .map(|mount| mount.name.clone())
                .unwrap_or_default(),
            mount: mount
                .map(|mount| mount.destination.clone())
                .unwrap_or_default(),
        }
    }

    /// Why the data directory is not proven to be on `volume`, or `None`
    /// when it is. `server_data_directory` is what a running server says
    /// (`SHOW data_directory`); `None` when it is not running or did not
    /// say.
    pub fn unproven(&self, volume: &str, server_data_directory: Option<&str>) -> Option<String> {
        let place = match self.kind.as_str() {
            "" => {
                "in the container's own file system, which is removed with the container".to_owned()
            }
            "volume" if self.volume == volume => {
                return match server_data_directory {
                    Some(directory) if !contains(&self.mount, directory) => Some(format!(
                        "the running server uses the data directory `{directory}`, which is \
                         outside volume `{volume}` (mounted at `{}`)",
                        self.mount
                    )),
                    _ => None,
                };
            }
            "volume" if looks_anonymous(&self.volume) => format!(
                "on the anonymous volume `{}` mounted at `{}`, which is removed with the \
                 container",
                short(&self.volume),
                self.mount
            ),
            "volume" => format!(
                "on volume `{}` mounted at `{}`, not on the spec's volume `{volume}`",
                self.volume, self.mount
            ),
            kind => format!(
                "on a {kind} mount at `{}`, not on the spec's volume `{volume}`",
                self.mount
            ),
        };
        Some(format!("its data directory `{}` is {place}", self.pgdata))
    }
}

/// Docker names an anonymous volume with 64 hexadecimal digits.
fn looks_anonymous(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|byte| byte.is_ascii_hexdigit())
}

fn short(name: &str) -> &str {
    if looks_anonymous(name) {
        &name[..12]
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volumes(paths: &[&str]) -> Vec<String> {
        paths.iter().map(|path| (*path).to_owned()).collect()
    }

    #[test]
    fn layout_comes_from_the_image_not_the_tag() {
        // Up to 17.
        assert_eq!(
            DataLayout::of_image(
                Some("/var/lib/postgresql/data"),
                &volumes(&["/var/lib/postgresql/data"])
            ),
            DataLayout {
                pgdata: "/var/lib/postgresql/data".into(),
                mount: "/var/lib/postgresql/data".into(),
            }
        );
        // 18 on: the volume is above PGDATA.
        assert_eq!(
            DataLayout::of_image(
                Some("/var/lib/postgresql/18/docker"),
                &volumes(&["/var/lib/postgresql"])
            ),
            DataLayout {
                pgdata: "/var/lib/postgresql/18/docker".into(),
                mount: "/var/lib/postgresql".into(),
            }
        );
        // No declared volume: the data directory itself.
        assert_eq!(
            DataLayout::of_image(Some("/srv/pg/"), &[]),
            DataLayout {
                pgdata: "/srv/pg".into(),
                mount: "/srv/pg".into(),
            }
        );
        // A volume elsewhere does not hold the data.
        assert_eq!(
            DataLayout::of_image(Some("/srv/pg"), &volumes(&["/var/lib/postgresql/data"])).mount,
            "/srv/pg"
        );
        // No PGDATA at all, or a relative one: the official default.
        assert_eq!(DataLayout::of_image(None, &[]).pgdata, DEFAULT_PGDATA);
        assert_eq!(
            DataLayout::of_image(Some("data"), &[]).pgdata,
            DEFAULT_PGDATA
        );
        // The deepest declared volume holding PGDATA wins.
        assert_eq!(
            DataLayout::of_image(
                Some("/var/lib/postgresql/18/docker"),
                &volumes(&[
                    "/var/lib",
                    "/var/lib/postgresql",
                    "/var/lib/postgresql/data"
                ])
            )
            .mount,
            "/var/lib/postgresql"
        );
    }

    #[test]
    fn contains_compares_whole_path_segments() {
        assert!(contains(
            "/var/lib/postgresql",
            "/var/lib/postgresql/18/docker"
        ));
        assert!(contains("/var/lib/postgresql/", "/var/lib/postgresql"));
        assert!(!contains(
            "/var/lib/postgresql/data",
            "/var/lib/postgresql/database"
        ));
        assert!(!contains("/var/lib/postgresql/data", "/var/lib/postgresql"));
    }

    fn mount(kind: &str, name: &str, destination: &str) -> MountInfo {
        MountInfo {
            kind: kind.into(),
            name: name.into(),
            destination: destination.into(),
        }
    }

    const ANONYMOUS: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn data_on_the_named_volume_is_proven() {
        let home = DataHome::locate(
            "/var/lib/postgresql/18/docker",
            &[mount("volume", "app-pgdata", "/var/lib/postgresql")],
        );
        assert_eq!(home.unproven("app-pgdata", None), None);
        assert_eq!(
            home.unproven("app-pgdata", Some("/var/lib/postgresql/18/docker")),
            None
        );
    }

    #[test]
    fn data_on_an_anonymous_volume_is_not() {
        // What a tag-guessed mount did to an image with the 18 layout: the
        // named volume at /var/lib/postgresql/data, PGDATA on the image's
        // anonymous volume above it.
        let home = DataHome::locate(
            "/var/lib/postgresql/18/docker",
            &[
                mount("volume", "app-pgdata", "/var/lib/postgresql/data"),
                mount("volume", ANONYMOUS, "/var/lib/postgresql"),
            ],
        );
        let reason = home.unproven("app-pgdata", None).unwrap_or_default();
        assert!(
            reason.contains("anonymous volume `0123456789ab`"),
            "{reason}"
        );
        assert!(reason.contains("/var/lib/postgresql/18/docker"), "{reason}");
    }

    #[test]
    fn other_homes_are_not_proven() {
        assert!(
            DataHome::locate("/var/lib/postgresql/data", &[])
                .unproven("app-pgdata", None)
                .is_some_and(|reason| reason.contains("container's own file system"))
        );
        assert!(
            DataHome::locate(
                "/var/lib/postgresql/data",
                &[mount("bind", "", "/var/lib/postgresql/data")]
            )
            .unproven("app-pgdata", None)
            .is_some_and(|reason| reason.contains("bind mount"))
        );
        assert!(
            DataHome::locate(
                "/var/lib/postgresql/data",
                &[mount("volume", "other", "/var/lib/postgresql/data")]
            )
            .unproven("app-pgdata", None)
            .is_some_and(|reason| reason.contains("volume `other`"))
        );
        // The volume is right but the server runs elsewhere (`-D`, a
        // config_file).
        assert!(
            DataHome::locate(
                "/var/lib/postgresql/data",
                &[mount("volume", "app-pgdata", "/var/lib/postgresql/data")]
            )
            .unproven("app-pgdata", Some("/tmp/elsewhere"))
            .is_some_and(|reason| reason.contains("/tmp/elsewhere"))
        );
    }
}
