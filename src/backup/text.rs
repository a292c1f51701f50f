//! Backups as people read them: the `backup list` table, the `backup
//! verify` report, sizes. Pure.

use super::agent::Report;
use super::manifest::{Entry, Manifest};
pub use crate::model::notation::human_size;

/// What the agent finds in a deployment's WAL archive.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ArchiveState {
    /// The oldest segment the archive holds.
    #[serde(default)]
    pub oldest_segment: Option<String>,
    /// The newest segment archived or being archived.
    pub newest_segment: Option<String>,
    /// When it was last written (RFC 3339, UTC).
    pub newest_at: Option<String>,
}

/// What `backup list --json` says about WAL streaming.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ArchiveReport {
    /// The recoverable window, when there is one.
    pub window: Option<super::window::Window>,
    /// Why nothing is recoverable, when nothing is.
    pub not_recoverable: Option<String>,
    /// What the agent found in the archive.
    pub archive: ArchiveState,
    /// The archiver's slot as the server reports it; `None` when it could
    /// not be read.
    pub archiver: Option<crate::model::Archiver>,
}

/// The recoverable window and the archiver's lag, for `backup list --json`.
pub fn archive_report(
    entries: &[Entry],
    state: &ArchiveState,
    archiver: Option<&crate::model::Archiver>,
) -> ArchiveReport {
    let manifests: Vec<Manifest> = entries
        .iter()
        .filter_map(|entry| entry.manifest.clone())
        .collect();
    let window = super::window::recoverable_window(&manifests, state);
    ArchiveReport {
        not_recoverable: window.as_ref().err().map(ToString::to_string),
        window: window.ok(),
        archive: state.clone(),
        archiver: archiver.cloned(),
    }
}

/// The lines `backup list` adds for WAL streaming: the recoverable window,
/// from the end of the oldest base backup the archive carries forward to
/// the newest archived WAL, and the recovery-point lag the server reports
/// for the archiver.
pub fn archive_text(
    entries: &[Entry],
    state: &ArchiveState,
    archiver: Option<&crate::model::Archiver>,
) -> String {
    let report = archive_report(entries, state, archiver);
    let mut text = match (&report.window, &report.not_recoverable) {
        (Some(window), _) => format!(
            "WAL archive: recoverable {}\n",
            super::window::window_phrase(window)
        ),
        (None, why) => format!(
            "WAL archive: nothing recoverable yet: {}\n",
            why.as_deref().unwrap_or("unknown")
        ),
    };
    text.push_str(&match archiver {
        None => "recovery-point lag: unknown (the server's slot could not be read)\n".to_owned(),
        Some(archiver) if !archiver.slot_exists => {
            "recovery-point lag: unknown, the archiver's slot does not exist (archiver never \
             started)\n"
                .to_owned()
        }
        Some(archiver) if !archiver.active => {
            "recovery-point lag: growing, the archiver is not streaming (slot inactive)\n"
                .to_owned()
        }
        Some(archiver) => match archiver.lag_seconds {
            Some(seconds) => format!(
                "recovery-point lag: {seconds:.0} s ({} bytes of WAL not yet archived), streaming\n",
                archiver.lag_bytes.unwrap_or(0).max(0)
            ),
            None => format!(
                "recovery-point lag: {} bytes of WAL not yet archived, streaming\n",
                archiver.lag_bytes.unwrap_or(0).max(0)
            ),
        },
    });
    text
}

/// What a restore to a point in time will do, for its preview.
pub struct PitrPreview<'a> {
    pub deployment: &'a str,
    pub target: &'a super::agent::RecoveryTarget,
    pub base: &'a Manifest,
    pub window: &'a super::window::Window,
    /// The server container and its data volume.
    pub server: &'a str,
    pub volume: &'a str,
    pub backup_container: &'a str,
    pub names: &'a super::restore::RestoreNames,
    /// Where the archive of the old timeline goes, below the destination.
    pub archive: &'a str,
    pub archive_aside: &'a str,
    /// The schedule whose new base backup is taken afterwards.
    pub schedule: &'a str,
}

/// The preview of `backup restore --to-time|--to-lsn`.
pub fn pitr_preview(preview: &PitrPreview<'_>) -> String {
    let base = preview.base;
    format!(
        "pgspec will restore deployment `{deployment}` to {target}.\n  \
         recoverable window: {window}\n  \
         base backup `{id}` (taken {taken}, {size}) is replayed with the archived WAL up to \
         the target in a scratch server on the new volume `{scratch}`, while the server runs\n  \
         then the backup container `{agent}` and the server `{server}` stop, the data volume \
         `{volume}` is copied whole into the new volume `{kept}` (kept), and its data is \
         replaced by the recovered data; the server's configuration files stay\n  \
         the server opens a new timeline: the WAL archive `{archive}` in the destination is \
         moved aside to `{aside}` (kept), the archiver starts a new one, and a base backup of schedule \
         `{schedule}` is taken at once\n  \
         everything written after the target is only in `{kept}`\n",
        deployment = preview.deployment,
        target = super::window::describe_target(preview.target),
        window = super::window::window_phrase(preview.window),
        id = base.id,
        taken = super::window::plain_time(&base.started_at),
        size = human_size(base.size_bytes),
        scratch = preview.names.scratch,
        agent = preview.backup_container,
        server = preview.server,
        volume = preview.volume,
        kept = preview.names.kept,
        archive = preview.archive,
        aside = preview.archive_aside,
        schedule = preview.schedule,
    )
}

/// The last restore test of each schedule, as `backup list` prints it
/// under its table; empty when none was recorded.
pub fn restore_test_lines(entries: &[Entry]) -> String {
    let mut seen = std::collections::BTreeSet::new();
    let mut text = String::new();
    for manifest in entries.iter().filter_map(|entry| entry.manifest.as_ref()) {
        let Some(verification) = &manifest.verification else {
            continue;
        };
        if !seen.insert(manifest.schedule.clone()) {
            continue;
        }
        text.push_str(&format!(
            "last restore test of `{}`: backup {} {} at {} UTC ({})\n",
            manifest.schedule,
            manifest.id,
            if verification.ok { "ok" } else { "FAILED" },
            verification
                .verified_at
                .replace('T', " ")
                .trim_end_matches('Z'),
            if verification.ok {
                format!("{} check(s)", verification.checks)
            } else {
                format!(
                    "{} of {} check(s) failed",
                    verification.failed, verification.checks
                )
            }
        ));
    }
    if text.is_empty() {
        text
    } else {
        format!("\n{text}")
    }
}

/// The `backup list` table.
pub fn list_table(entries: &[Entry]) -> String {
    let mut rows = vec![[
        "ID".to_owned(),
        "TIME (UTC)".to_owned(),
        "KIND".to_owned(),
        "DATABASES".to_owned(),
        "SIZE".to_owned(),
        "STATUS".to_owned(),
    ]];
    for entry in entries {
        let row = match &entry.manifest {
            Some(manifest) => [
                entry.id.clone(),
                manifest
                    .started_at
                    .replace('T', " ")
                    .trim_end_matches('Z')
                    .to_owned(),
                format!("{}/{}", manifest.kind, manifest.format),
                databases_text(manifest),
                human_size(manifest.size_bytes),
                entry.status.as_str().to_owned(),
            ],
            None => [
                entry.id.clone(),
                "-".to_owned(),
                "-".to_owned(),
                "-".to_owned(),
                "-".to_owned(),
                entry.status.as_str().to_owned(),
            ],
        };
        rows.push(row);
    }
    let widths: Vec<usize> = (0..6)
        .map(|column| rows.iter().map(|row| row[column].len()).max().unwrap_or(0))
        .collect();
    let mut text = String::new();
    for row in &rows {
        let line = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect::<Vec<_>>()
            .join("  ");
        text.push_str(line.trim_end());
        text.push('\n');
    }
    if entries.is_empty() {
        text.push_str("(no backups yet)\n");
    }
    text
}

fn databases_text(manifest: &Manifest) -> String {
    let mut names: Vec<&str> = Vec::new();
    if manifest.globals.is_some() {
        names.push("(globals)");
    }
    names.extend(
        manifest
            .databases
            .iter()
            .map(|database| database.name.as_str()),
    );
    if names.is_empty() {
        "-".to_owned()
    } else {
        names.join(",")
    }
}

/// What `backup run` took, a line per backup.
pub fn taken(manifests: &[Manifest]) -> String {
    let mut text = String::new();
    for manifest in manifests {
        text.push_str(&format!(
            "{} {} ({} {}, {}): {}\n",
            manifest.id,
            manifest.status.as_str(),
            manifest.kind,
            manifest.format,
            databases_text(manifest),
            human_size(manifest.size_bytes),
        ));
        if let Some(error) = &manifest.error {
            text.push_str(&format!("  error: {error}\n"));
        }
    }
    text
}

/// The `backup verify` report as text.
pub fn report_text(report: &Report) -> String {
    let mut text = format!(
        "backup {} ({}/{}, taken {}):\n",
        report.id, report.kind, report.format, report.started_at
    );
    for check in &report.checks {
        text.push_str(&format!(
            "  {:<6} {}: {}\n",
            if check.ok { "ok" } else { "FAILED" },
            check.subject,
            check.detail
        ));
    }
    text.push_str(if report.ok() {
        "verified: the backup restores and matches what was recorded when it was taken\n"
    } else {
        "NOT verified\n"
    });
    text
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::backup::manifest::{Status, sample};

    #[test]
    fn sizes_take_the_largest_unit_below_them() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }

    #[test]
    fn the_list_aligns_its_columns_and_shows_incomplete_backups() {
        let started = chrono::Utc
            .with_ymd_and_hms(2026, 11, 22, 3, 0, 0)
            .single()
            .expect("valid time");
        let mut manifest = sample(started, "ledger", Status::Ok);
        manifest.size_bytes = 2048;
        let entries = [
            Entry {
                id: manifest.id.clone(),
                status: Status::Ok,
                manifest: Some(manifest.clone()),
            },
            Entry {
                id: "20261122T040000Z-nightly".to_owned(),
                status: Status::Incomplete,
                manifest: None,
            },
        ];
        let table = list_table(&entries);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines[0].starts_with("ID "), "{table}");
        assert!(lines[1].contains("2026-11-22 03:00:00"), "{table}");
        assert!(lines[1].contains("2.0 KiB"), "{table}");
        assert!(lines[2].ends_with("incomplete"), "{table}");
        // The status column starts at the same place on every line.
        let column = |line: &str, word: &str| line.find(word).expect("word");
        assert_eq!(column(lines[0], "STATUS"), column(lines[1], "ok"));
        assert_eq!(
            list_table(&[]),
            "ID  TIME (UTC)  KIND  DATABASES  SIZE  STATUS\n(no backups yet)\n"
        );

        manifest.status = Status::Failed;
        manifest.error = Some("pg_dump: connection refused".to_owned());
        let taken_text = taken(&[manifest]);
        assert!(taken_text.contains(": 2.0 KiB\n"), "{taken_text}");
        assert!(
            taken_text.contains("  error: pg_dump: connection refused\n"),
            "{taken_text}"
        );
    }
}
