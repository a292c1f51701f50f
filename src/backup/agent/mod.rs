//! The backup agent: what runs inside the backup container (and inside a
//! `verify` scratch container), as the hidden `pgspec backup agent`.
//!
//! It schedules, dumps with the image's own `pg_dump`/`pg_dumpall`, writes
//! manifests, removes what `prune` selects, lists, and checks a restore. It
//! talks to Docker not at all and to PostgreSQL only through the server
//! address it is given; it writes only below the destination it is given.
//!
//! One file per part: `cron` (when schedules are due), `scheduler` (the
//! loop), `take` (a backup and its manifest), `retention` (removing what
//! `backup::prune` selects), `verify` (the restore check), `server` (the
//! connection and client tools) and `files` (sizes and checksums).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::manifest::{self, Entry, MANIFEST_FILE, Verification};

mod cron;
mod files;
mod physical;
mod recover;
mod restore;
mod retention;
mod scheduled;
mod scheduler;
mod server;
mod take;
mod upgrade;
mod verify;

#[cfg(test)]
pub(crate) mod fixtures;

pub use cron::period as cron_period;
pub use physical::{archive_state, parse_lsn, segment_name};
pub use recover::{Prepared, RECOVERY_WAL, RecoveryTarget, prepare as prepare_recovery};
pub use restore::{Restored, pick as pick_for_database, restore_database};
pub use scheduled::{restore_tests, verify_now};
pub use scheduler::schedule;
pub use server::ServerAddress;
pub use take::once;
pub use upgrade::copy as upgrade_copy;
pub use verify::{Check, Report, check};

/// The backups of a deployment in a destination, newest first, plus
/// incomplete ones whose deployment cannot be told.
pub fn list(root: &Path, deployment: &str) -> anyhow::Result<Vec<Entry>> {
    Ok(manifest::read_all(root)
        .with_context(|| format!("cannot read `{}`", root.display()))?
        .into_iter()
        .filter(|entry| {
            entry
                .manifest
                .as_ref()
                .is_none_or(|manifest| manifest.deployment == deployment)
        })
        .collect())
}

/// Records what `backup verify` found in the manifest of backup `id` of
/// `deployment`, written anew through a rename as when the backup was taken.
/// Only a backup this deployment's list holds is touched.
pub fn record_verification(
    root: &Path,
    deployment: &str,
    id: &str,
    verification: Verification,
) -> anyhow::Result<()> {
    let Some(entry) = list(root, deployment)?
        .into_iter()
        .find(|entry| entry.id == id)
    else {
        bail!("no backup `{id}` of deployment `{deployment}` in the destination");
    };
    let Some(mut manifest) = entry.manifest else {
        bail!("backup `{id}` has no manifest: it was cut off before it finished");
    };
    manifest.verification = Some(verification);
    let mut text = serde_json::to_string_pretty(&manifest).context("cannot encode the manifest")?;
    text.push('\n');
    let directory = root.join(&entry.id);
    let partial = directory.join(format!("{MANIFEST_FILE}.partial"));
    std::fs::write(&partial, text)
        .with_context(|| format!("cannot write `{}`", partial.display()))?;
    let path = directory.join(MANIFEST_FILE);
    std::fs::rename(&partial, &path).with_context(|| format!("cannot write `{}`", path.display()))
}

/// The destination directory inside a container.
pub fn root() -> PathBuf {
    PathBuf::from(super::BACKUP_MOUNT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::manifest::Status;
    use fixtures::write_backup;

    /// A deployment's list holds its own backups, newest first, and then the
    /// incomplete ones, whose deployment cannot be told; never another's.
    #[test]
    fn a_list_holds_this_deployments_backups_and_incomplete_ones() {
        let root = tempfile::tempdir().expect("a temporary directory");
        let root = root.path();
        write_backup(root, "20260101T000000Z-nightly", "ledger", Status::Ok);
        write_backup(root, "20260102T000000Z-nightly", "another", Status::Ok);
        write_backup(root, "20260103T000000Z-nightly", "ledger", Status::Failed);
        std::fs::create_dir(root.join("20260104T000000Z-nightly")).expect("create a directory");
        std::fs::create_dir(root.join("lost+found")).expect("create a directory");
        let listed: Vec<(String, Status)> = list(root, "ledger")
            .expect("list")
            .into_iter()
            .map(|entry| (entry.id, entry.status))
            .collect();
        assert_eq!(
            listed,
            [
                ("20260103T000000Z-nightly".to_owned(), Status::Failed),
                ("20260101T000000Z-nightly".to_owned(), Status::Ok),
                ("20260104T000000Z-nightly".to_owned(), Status::Incomplete),
            ]
        );
    }

    #[test]
    fn a_verification_is_recorded_in_the_manifest() {
        let root = tempfile::tempdir().expect("a temporary directory");
        let root = root.path();
        write_backup(root, "20260101T000000Z-nightly", "ledger", Status::Ok);
        write_backup(root, "20260102T000000Z-nightly", "another", Status::Ok);
        let verification = Verification {
            verified_at: "2026-01-05T10:00:00Z".to_owned(),
            ok: false,
            checks: 3,
            failed: 1,
            pgspec_version: "0".to_owned(),
        };
        record_verification(
            root,
            "ledger",
            "20260101T000000Z-nightly",
            verification.clone(),
        )
        .expect("record");
        let listed = list(root, "ledger").expect("list");
        let manifest = listed[0].manifest.as_ref().expect("a manifest");
        assert_eq!(manifest.verification.as_ref(), Some(&verification));
        assert_eq!(manifest.status, Status::Ok);
        // Another deployment's backup is not touched.
        assert!(
            record_verification(root, "ledger", "20260102T000000Z-nightly", verification).is_err()
        );
    }
}
