//! Plan output for the backup container (issue #7): a desired spec (YAML),
//! a live state (JSON, as `live::observe` records it) and a reviewed
//! snapshot of the rendered text and JSON.

mod plan_check;

/// Diffs a spec against a recorded live state and snapshots both renderings.
fn check(name: &str, desired_yaml: &str, live_json: &str) {
    let (text, json) = plan_check::renderings(desired_yaml, live_json);
    insta::assert_snapshot!(format!("{name}_text"), text);
    insta::assert_snapshot!(format!("{name}_json"), json);
}

fn spec(cron: &str) -> String {
    format!(
        r#"
version: 1
name: ledger
postgres:
  image: postgres:17.2
  port: 5433
  superuser: {{ password: {{ env: LEDGER_PG_PASSWORD }} }}
databases:
  - name: crawl
backup:
  schedules:
    - name: nightly
      schedule: "{cron}"
      retention: {{ days: 30, min_count: 3 }}
    - name: roles
      schedule: "@hourly"
      kind: globals
      format: plain
  destination: {{ volume: ledger-backups }}
"#
    )
}

/// The server as it runs, in sync with `spec`.
const LIVE_SERVER: &str = r#"
  "container": { "name": "ledger-postgres", "image": "postgres:17.2", "port": 5433,
                 "bind_address": "127.0.0.1", "volume": "ledger-pgdata",
                 "data_mount": "/var/lib/postgresql/data", "pgdata": "/var/lib/postgresql/data", "data_kind": "volume", "superuser": "postgres",
                 "state": "running", "id": "abc", "image_id": "sha256:1", "data_major": 17,
                 "volume_exists": true, "network": "ledger-net", "network_exists": true,
                 "restart_policy": "unless-stopped",
                 "health_check": ["CMD", "pg_isready", "--quiet", "--host", "127.0.0.1", "--port", "5432", "--dbname", "postgres", "--username", "postgres"] },
  "images": { "postgres:17.2": { "id": "sha256:1", "pg_major": 17, "pgdata": "/var/lib/postgresql/data", "volumes": ["/var/lib/postgresql/data"] } },
  "server": { "version_num": 170002, "available_extensions": {} },
  "databases": { "crawl": { "name": "crawl", "owner": "postgres" } },
"#;

fn live(backup: &str) -> String {
    format!(r#"{{ "name": "ledger", {LIVE_SERVER} {backup} }}"#)
}

const LIVE_AGENT: &str = r#"
  "agent": { "name": "ledger-backup", "image": "postgres:17.2", "network": "ledger-net",
             "server": "ledger-postgres", "superuser": "postgres", "version": "0.1.0",
             "running": true, "image_id": "sha256:1" },
  "destination_exists": true
"#;

const LIVE_SCHEDULES: &str = r#"
  "destination": { "volume": "ledger-backups" },
  "schedules": {
    "nightly": { "name": "nightly", "cron": "0 2 * * *", "kind": "full", "format": "custom",
                 "databases": ["crawl"], "retention_days": 30, "min_count": 3 },
    "roles": { "name": "roles", "cron": "0 * * * *", "kind": "globals", "format": "plain",
               "databases": ["crawl"] } },
"#;

#[test]
fn backup_container_is_created_with_its_volume() {
    check(
        "backup_create",
        &spec("0 2 * * *"),
        &live(r#""backup": { "destination": { "volume": "" }, "schedules": {} }"#),
    );
}

#[test]
fn backup_in_sync_has_nothing_to_do() {
    check(
        "backup_in_sync",
        &spec("0 2 * * *"),
        &live(&format!(r#""backup": {{ {LIVE_SCHEDULES} {LIVE_AGENT} }}"#)),
    );
}

#[test]
fn schedule_change_replaces_the_backup_container() {
    check(
        "backup_schedule_change",
        &spec("30 4 * * 1-5"),
        &live(&format!(r#""backup": {{ {LIVE_SCHEDULES} {LIVE_AGENT} }}"#)),
    );
}

#[test]
fn stopped_backup_container_is_started() {
    let agent = LIVE_AGENT.replace(r#""running": true"#, r#""running": false"#);
    check(
        "backup_stopped",
        &spec("0 2 * * *"),
        &live(&format!(r#""backup": {{ {LIVE_SCHEDULES} {agent} }}"#)),
    );
}

/// Base backups and WAL streaming with a one-hour recovery point (#19).
const PHYSICAL_SPEC: &str = r#"
version: 1
name: ledger
postgres:
  image: postgres:17.2
  port: 5433
  superuser: { password: { env: LEDGER_PG_PASSWORD } }
databases:
  - name: crawl
backup:
  schedules:
    - { name: base, schedule: "0 3 * * *", kind: physical }
  max_lag: 1h
  destination: { volume: ledger-backups }
"#;

fn live_physical(archiver: &str) -> String {
    live(&format!(
        r#""backup": {{
  "destination": {{ "volume": "ledger-backups" }},
  "schedules": {{
    "base": {{ "name": "base", "cron": "0 3 * * *", "kind": "physical", "format": "tar",
              "databases": [] }} }},
  "archiver": {archiver},
  {LIVE_AGENT} }}"#
    ))
}

#[test]
fn streaming_archiver_within_max_lag_is_in_sync() {
    check(
        "backup_archiver_in_sync",
        PHYSICAL_SPEC,
        &live_physical(
            r#"{ "slot_exists": true, "active": true, "lag_bytes": 0, "lag_seconds": 0.0 }"#,
        ),
    );
}

#[test]
fn stopped_archiver_is_drift() {
    check(
        "backup_archiver_stopped",
        PHYSICAL_SPEC,
        &live_physical(
            r#"{ "slot_exists": true, "active": false, "lag_bytes": 4096, "lag_seconds": null }"#,
        ),
    );
}

#[test]
fn archive_lagging_beyond_max_lag_is_drift() {
    check(
        "backup_archiver_lagging",
        PHYSICAL_SPEC,
        &live_physical(
            r#"{ "slot_exists": true, "active": true, "lag_bytes": 99999, "lag_seconds": 5400.0 }"#,
        ),
    );
}

/// A failed scheduled restore test and an overdue one are drift that apply
/// cannot fix: an action without steps (#19).
#[test]
fn failed_and_overdue_restore_tests_are_drift() {
    let spec = PHYSICAL_SPEC.replace(
        "kind: physical }",
        "kind: physical, verify: \"0 4 1 * *\" }\n    - { name: nightly, schedule: \"0 2 * * *\", verify: \"0 5 1 * *\" }",
    );
    let live = live(&format!(
        r#""backup": {{
  "destination": {{ "volume": "ledger-backups" }},
  "schedules": {{
    "base": {{ "name": "base", "cron": "0 3 * * *", "kind": "physical", "format": "tar",
              "databases": [], "verify": "0 4 1 * *" }},
    "nightly": {{ "name": "nightly", "cron": "0 2 * * *", "kind": "full", "format": "custom",
                 "databases": ["crawl"], "verify": "0 5 1 * *" }} }},
  "archiver": {{ "slot_exists": true, "active": true, "lag_bytes": 0, "lag_seconds": 0.0 }},
  "restore_tests": {{
    "base": {{ "backup": "20261130T030000Z-base", "verified_at": "2026-12-01T04:10:00Z",
              "ok": false, "overdue": false }},
    "nightly": {{ "backup": "20261130T020000Z-nightly", "overdue": true }} }},
  {LIVE_AGENT} }}"#
    ));
    check("backup_restore_tests_drift", &spec, &live);
}

/// `backup restore --to-time`'s preview and `backup list`'s lines about
/// the WAL archive (issue #19): the recoverable window, from the end of the
/// oldest base backup the archive carries forward to the newest archived
/// WAL, and the lag.
#[test]
fn point_in_time_restore_preview_and_recoverable_window() {
    use pgspec::backup::agent::RecoveryTarget;
    use pgspec::backup::manifest::Entry;
    use pgspec::backup::restore::RestoreNames;
    use pgspec::backup::text::{ArchiveState, PitrPreview, archive_text, pitr_preview};
    use pgspec::backup::window::{base_backup_for, parse_target_time, recoverable_window};

    let base = |day: u32, end_lsn: &str| {
        serde_json::json!({
            "id": format!("202611{day:02}T030000Z-base"),
            "status": "ok",
            "manifest": {
                "format_version": 1, "id": format!("202611{day:02}T030000Z-base"),
                "deployment": "ledger", "schedule": "base",
                "started_at": format!("2026-11-{day:02}T03:00:00Z"),
                "finished_at": format!("2026-11-{day:02}T03:00:42Z"),
                "kind": "physical", "format": "tar", "status": "ok",
                "server_version": "17.2", "pgspec_version": "0.1.0",
                "base_backup": { "timeline": 1, "start_lsn": "0/2000028", "end_lsn": end_lsn,
                                 "start_wal": "000000010000000000000002",
                                 "wal_segment_bytes": 16777216, "system_identifier": "7" },
                "databases": [], "files": [], "size_bytes": 31457280
            }
        })
    };
    let entries: Vec<Entry> = serde_json::from_value(serde_json::json!([
        base(29, "0/9000100"),
        base(28, "0/3000100"),
    ]))
    .expect("entries");
    let archive = ArchiveState {
        oldest_segment: Some("000000010000000000000003".to_owned()),
        newest_segment: Some("00000001000000000000000C".to_owned()),
        newest_at: Some("2026-11-29T12:04:10Z".to_owned()),
    };
    let archiver = pgspec::model::Archiver {
        slot_exists: true,
        active: true,
        lag_bytes: Some(0),
        lag_seconds: Some(0.0),
    };
    insta::assert_snapshot!(
        "backup_list_recoverable_window",
        archive_text(&entries, &archive, Some(&archiver))
    );

    let manifests: Vec<_> = entries
        .iter()
        .filter_map(|entry| entry.manifest.clone())
        .collect();
    let target = RecoveryTarget::Time(parse_target_time("2026-11-29 12:00:00+00").expect("a time"));
    let window = recoverable_window(&manifests, &archive).expect("a window");
    let chosen = base_backup_for("ledger", &manifests, &archive, &target).expect("a base backup");
    let names = RestoreNames::new("ledger", "ledger-pgdata", "20261130T061500Z");
    insta::assert_snapshot!(
        "backup_restore_to_time_preview",
        pitr_preview(&PitrPreview {
            deployment: "ledger",
            target: &target,
            base: chosen,
            window: &window,
            server: "ledger-postgres",
            volume: "ledger-pgdata",
            backup_container: "ledger-backup",
            names: &names,
            archive: "wal/ledger",
            archive_aside: "wal/ledger-before-restore-20261130t061500z",
            schedule: "base",
        })
    );
    let refused = base_backup_for(
        "ledger",
        &manifests,
        &archive,
        &RecoveryTarget::Lsn("0/D000000".to_owned()),
    )
    .expect_err("beyond the archive");
    insta::assert_snapshot!("backup_restore_to_lsn_beyond_the_archive", refused);
}
