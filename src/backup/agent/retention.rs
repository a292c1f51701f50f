//! Removing what retention selects: `backup::prune::select_pruned` decides
//! from the manifests alone, and this deletes exactly those directories.

use std::path::Path;

use anyhow::Context;
use chrono::Utc;

use crate::backup::AgentConfig;
use crate::backup::manifest::{self, Entry};
use crate::backup::prune::{self, Retention, Scope};
use crate::model::BackupSchedule;

/// Removes what retention selects among this deployment's backups of this
/// schedule; `just_taken` is the backup this run took. Which directories
/// may go is decided by `prune::select_pruned` alone, from the manifests.
pub(super) async fn prune(
    config: &AgentConfig,
    schedule: &BackupSchedule,
    root: &Path,
    just_taken: &str,
) -> anyhow::Result<Vec<String>> {
    let entries: Vec<Entry> =
        manifest::read_all(root).with_context(|| format!("cannot read `{}`", root.display()))?;
    let scope = Scope {
        deployment: &config.deployment,
        schedule: &schedule.name,
        just_taken: Some(just_taken),
    };
    let retention = Retention {
        days: schedule.retention_days,
        max_count: schedule.max_count,
        min_count: schedule.min_count,
    };
    let pruned = prune::select_pruned(&entries, &scope, retention, Utc::now());
    for id in &pruned {
        let path = root.join(id);
        tokio::fs::remove_dir_all(&path)
            .await
            .with_context(|| format!("cannot remove `{}`", path.display()))?;
    }
    Ok(pruned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::agent::fixtures::{config, directory_names, write_backup};
    use crate::backup::manifest::Status;

    /// The agent removes from disk exactly what `prune::select_pruned`
    /// selects: with `max_count: 1`, the older good backup, and nothing of
    /// another deployment, without a manifest, or not a backup at all.
    #[tokio::test]
    async fn prune_removes_only_the_selected_directories() {
        let root = tempfile::tempdir().expect("a temporary directory");
        let root = root.path();
        let config = config();
        write_backup(root, "20260101T000000Z-nightly", "ledger", Status::Ok);
        write_backup(root, "20260102T000000Z-nightly", "ledger", Status::Ok);
        write_backup(root, "20260103T000000Z-nightly", "ledger", Status::Failed);
        write_backup(root, "20250101T000000Z-nightly", "another", Status::Ok);
        std::fs::create_dir(root.join("20240101T000000Z-nightly")).expect("create a directory");
        std::fs::create_dir(root.join("lost+found")).expect("create a directory");
        let pruned = prune(
            &config,
            &config.schedules["nightly"],
            root,
            "20260103T000000Z-nightly",
        )
        .await
        .expect("prune");
        assert_eq!(pruned, ["20260101T000000Z-nightly"]);
        assert_eq!(
            directory_names(root),
            [
                "20240101T000000Z-nightly",
                "20250101T000000Z-nightly",
                "20260102T000000Z-nightly",
                "20260103T000000Z-nightly",
                "lost+found",
            ]
        );
    }
}
