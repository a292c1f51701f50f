//! `pgspec backup restore --into`, inside the backup container: one
//! database of a backup restored into a new database on the live server,
//! with the image's own tools and the dump files where the agent keeps
//! them. Nothing that exists is touched: the target database must not
//! exist, and one this restore created and could not fill is dropped again.

use std::path::Path;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::list;
use super::server::ServerAddress;
use super::verify::restore_dump;
use crate::backup::manifest::{Entry, Manifest, Status};
use crate::sql::quote_ident;

/// What a database restore did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restored {
    /// The backup restored from.
    pub id: String,
    /// The database as the backup has it.
    pub database: String,
    /// The database it was restored into.
    pub into: String,
    pub detail: String,
}

/// The backup to restore `database` from: `id`, or the newest successful
/// one that holds the database's dump.
pub fn pick<'a>(
    entries: &'a [Entry],
    id: Option<&str>,
    database: &str,
) -> anyhow::Result<&'a Manifest> {
    let holds = |manifest: &Manifest| {
        manifest
            .databases
            .iter()
            .any(|entry| entry.name == database)
    };
    let manifest = match id {
        Some(id) => {
            let entry = entries
                .iter()
                .find(|entry| entry.id == id)
                .with_context(|| format!("no backup `{id}` in the destination"))?;
            let manifest = entry.manifest.as_ref().with_context(|| {
                format!("backup `{id}` has no manifest: it was cut off before it finished")
            })?;
            if manifest.status != Status::Ok {
                bail!("backup `{id}` failed when it was taken; it cannot be restored");
            }
            if !holds(manifest) {
                bail!(
                    "backup `{id}` holds no dump of database `{database}` (it has {})",
                    names(manifest)
                );
            }
            manifest
        }
        None => entries
            .iter()
            .filter(|entry| entry.status == Status::Ok)
            .filter_map(|entry| entry.manifest.as_ref())
            .find(|manifest| holds(manifest))
            .with_context(|| {
                format!("the destination holds no successful backup of database `{database}`")
            })?,
    };
    if manifest.kind == "data" {
        bail!(
            "backup `{}` is data-only: it holds no table definitions to restore into a new \
             database",
            manifest.id
        );
    }
    Ok(manifest)
}

fn names(manifest: &Manifest) -> String {
    if manifest.databases.is_empty() {
        return "no database".to_owned();
    }
    manifest
        .databases
        .iter()
        .map(|entry| format!("`{}`", entry.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Restores `database` from backup `id` (default: the newest that has it)
/// into the new database `into`, owned by `owner` when given.
pub async fn restore_database(
    root: &Path,
    deployment: &str,
    id: Option<&str>,
    database: &str,
    into: &str,
    owner: Option<&str>,
    address: &ServerAddress,
) -> anyhow::Result<Restored> {
    let entries = list(root, deployment)?;
    let manifest = pick(&entries, id, database)?;
    let dump = manifest
        .databases
        .iter()
        .find(|entry| entry.name == database)
        .map(|entry| root.join(&manifest.id).join(&entry.dump))
        .context("the backup's manifest lists the database without its dump")?;
    let maintenance = address.connect("postgres").await?;
    let exists = maintenance
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&into])
        .await
        .context("cannot read pg_database")?
        .is_some();
    if exists {
        bail!(
            "database `{into}` exists; a restore never writes into an existing database. Name \
             another with --into, or drop it yourself"
        );
    }
    // template0: a dump carries its own extensions and objects, and
    // whatever was added to template1 would collide with them.
    let mut create = format!("CREATE DATABASE {} TEMPLATE template0", quote_ident(into));
    if let Some(owner) = owner {
        create.push_str(&format!(" OWNER {}", quote_ident(owner)));
    }
    maintenance
        .batch_execute(&create)
        .await
        .with_context(|| format!("cannot create database `{into}`"))?;
    match restore_dump(address, &manifest.format, &dump, into).await {
        Ok(detail) => Ok(Restored {
            id: manifest.id.clone(),
            database: database.to_owned(),
            into: into.to_owned(),
            detail,
        }),
        Err(error) => {
            // Only what this restore created goes.
            let dropped = maintenance
                .batch_execute(&format!("DROP DATABASE {}", quote_ident(into)))
                .await;
            let note = match dropped {
                Ok(()) => format!("the database `{into}` it created was dropped again"),
                Err(drop) => {
                    format!("the database `{into}` it created could not be dropped: {drop}")
                }
            };
            Err(error.context(format!(
                "cannot restore database `{database}` from backup `{}` ({note})",
                manifest.id
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::agent::fixtures::at;
    use crate::backup::manifest::{DatabaseEntry, sample};

    fn entry(started: &str, status: Status, databases: &[&str]) -> Entry {
        let mut manifest = sample(at(started), "ledger", status);
        manifest.databases = databases
            .iter()
            .map(|name| DatabaseEntry {
                name: (*name).to_owned(),
                dump: format!("{name}.dump"),
                tables: Default::default(),
            })
            .collect();
        Entry {
            id: manifest.id.clone(),
            status,
            manifest: Some(manifest),
        }
    }

    #[test]
    fn the_newest_good_backup_holding_the_database_is_picked() {
        // Newest first, as the agent lists them.
        let entries = [
            entry("2026-01-03T00:00:00Z", Status::Failed, &["app"]),
            entry("2026-01-02T00:00:00Z", Status::Ok, &["other"]),
            entry("2026-01-01T00:00:00Z", Status::Ok, &["app", "other"]),
        ];
        let picked = |id: Option<&str>, database: &str| {
            pick(&entries, id, database)
                .map(|manifest| manifest.id.clone())
                .map_err(|error| error.to_string())
        };
        assert_eq!(
            picked(None, "app").as_deref(),
            Ok("20260101T000000Z-nightly")
        );
        assert_eq!(
            picked(None, "other").as_deref(),
            Ok("20260102T000000Z-nightly")
        );
        assert_eq!(
            picked(Some("20260103T000000Z-nightly"), "app").unwrap_err(),
            "backup `20260103T000000Z-nightly` failed when it was taken; it cannot be restored"
        );
        assert_eq!(
            picked(Some("20260102T000000Z-nightly"), "app").unwrap_err(),
            "backup `20260102T000000Z-nightly` holds no dump of database `app` (it has `other`)"
        );
        assert_eq!(
            picked(None, "nope").unwrap_err(),
            "the destination holds no successful backup of database `nope`"
        );
    }
}
