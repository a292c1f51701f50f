//! Backups against the real engine and the locally built PostgreSQL 15 and
//! 17 images (issue #7): a schedule that runs with no pgspec process, `backup
//! run`, `list` and `verify` on a crawl-ledger deployment, a truncated dump
//! and a wrong row count failing verification, retention keeping the newest
//! three, and a schedule change as drift until applied.

mod common;

use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::query_parameters::{ListContainersOptions, ListVolumesOptions, TagImageOptions};
use common::{
    Cleanup, Workdir, arg, connect, docker, free_port, pgspec, postgres_image, unique_name,
};

const PASSWORD_ENV: &str = "PGSPEC_IT_BACKUP_PASSWORD";

/// The bound the issue sets on the first scheduled backup.
const SCHEDULE_TIMEOUT: Duration = Duration::from_secs(120);

struct Deployment {
    name: String,
    port: u16,
    password: String,
    /// The server's image; the local test image unless a test retags it.
    image: String,
    work: Workdir,
    cleanup: Cleanup,
}

impl Deployment {
    fn new(major: u32) -> Deployment {
        let name = unique_name("bk");
        let mut cleanup = Cleanup::default();
        cleanup.containers.push(format!("{name}-backup"));
        cleanup.containers.push(format!("{name}-postgres"));
        cleanup.volumes.push(format!("{name}-pgdata"));
        cleanup.volumes.push(format!("{name}-backups"));
        cleanup.networks.push(format!("{name}-net"));
        Deployment {
            port: free_port(),
            password: format!("pw:{}", unique_name("secret")),
            work: Workdir::new(),
            image: postgres_image(major),
            name,
            cleanup,
        }
    }

    fn backup_container(&self) -> String {
        format!("{}-backup", self.name)
    }

    /// Writes the spec with one schedule `nightly` and returns its path.
    fn spec(&self, cron: &str) -> String {
        self.spec_with_retention(cron, "{ days: 30, min_count: 3 }")
    }

    /// The spec with one schedule `nightly` kept by `retention`.
    fn spec_with_retention(&self, cron: &str, retention: &str) -> String {
        let backup = format!(
            "backup:\n  schedules:\n    - name: nightly\n      schedule: \"{cron}\"\n      \
             retention: {retention}\n  \
             destination: {{ volume: {name}-backups }}\n",
            name = self.name
        );
        self.write_spec(&backup)
    }

    /// The same deployment without a `backup` section.
    fn spec_without_backup(&self) -> String {
        self.write_spec("")
    }

    fn write_spec(&self, backup: &str) -> String {
        let text = format!(
            "version: 1\nname: {name}\npostgres:\n  image: {image}\n  port: {port}\n  \
             superuser: {{ password: {{ env: {PASSWORD_ENV} }} }}\n\
             databases:\n  - name: crawl\n{backup}",
            name = self.name,
            image = self.image,
            port = self.port,
        );
        arg(&self.work.write("spec.yaml", &text)).to_owned()
    }

    fn pgspec(&self, args: &[&str]) -> common::Run {
        pgspec(args, &[(PASSWORD_ENV, self.password.as_str())])
    }

    /// A crawl ledger with `rows` rows and a second, small table.
    async fn seed(&self, rows: i64) {
        let client = connect(self.port, &self.password, "crawl")
            .await
            .expect("connect to crawl");
        client
            .batch_execute(&format!(
                "CREATE TABLE crawl_ledger (id bigserial PRIMARY KEY, source text NOT NULL, \
                   url text NOT NULL, state text NOT NULL, metadata jsonb, \
                   fetched_at timestamptz DEFAULT now());
                 INSERT INTO crawl_ledger (source, url, state, metadata)
                   SELECT 'source-' || (i % 7), 'https://example.org/' || i,
                          (ARRAY['new', 'fetched', 'done'])[1 + i % 3],
                          jsonb_build_object('depth', i % 5)
                   FROM generate_series(1, {rows}) AS i;
                 CREATE TABLE sources (name text PRIMARY KEY);
                 INSERT INTO sources SELECT DISTINCT source FROM crawl_ledger;"
            ))
            .await
            .expect("seed the crawl ledger");
    }

    /// Runs a shell command in the backup container.
    async fn shell(&self, docker: &Docker, script: &str) -> String {
        let output = pgspec::engine::container::exec(
            docker,
            &self.backup_container(),
            &["sh".to_owned(), "-c".to_owned(), script.to_owned()],
            false,
        )
        .await
        .expect("exec in the backup container");
        assert_eq!(output.code, 0, "{script}: {}", output.stderr);
        output.stdout
    }

    /// Backup ids in the destination that have a manifest, oldest first.
    async fn finished_backups(&self, docker: &Docker) -> Vec<String> {
        let listing = self
            .shell(
                docker,
                "cd /backups && ls -d */manifest.json 2>/dev/null || true",
            )
            .await;
        let mut ids: Vec<String> = listing
            .lines()
            .filter_map(|line| line.strip_suffix("/manifest.json"))
            .map(str::to_owned)
            .collect();
        ids.sort();
        ids
    }

    /// Every name in the destination but the lock file, sorted.
    async fn destination(&self, docker: &Docker) -> Vec<String> {
        let listing = self
            .shell(
                docker,
                "ls -1A /backups | grep -vx .pgspec-backup.lock || true",
            )
            .await;
        let mut names: Vec<String> = listing.lines().map(str::to_owned).collect();
        names.sort();
        names
    }

    async fn stop_server(&self, docker: &Docker) {
        docker
            .stop_container(&format!("{}-postgres", self.name), None)
            .await
            .expect("stop the server");
    }

    /// Starts the server again and waits, within a bound, until it answers.
    async fn start_server(&self, docker: &Docker) {
        docker
            .start_container(&format!("{}-postgres", self.name), None)
            .await
            .expect("start the server");
        let started = Instant::now();
        while connect(self.port, &self.password, "postgres")
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < SCHEDULE_TIMEOUT,
                "the server did not come back"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn labels(&self, docker: &Docker) -> std::collections::HashMap<String, String> {
        docker
            .inspect_container(&self.backup_container(), None)
            .await
            .expect("inspect the backup container")
            .config
            .and_then(|config| config.labels)
            .unwrap_or_default()
    }

    /// No scratch container or volume of a `verify` is left behind.
    async fn assert_no_scratch(&self, docker: &Docker) {
        let prefix = format!("{}-verify-", self.name);
        let containers = docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                ..ListContainersOptions::default()
            }))
            .await
            .expect("list containers");
        for container in containers {
            for name in container.names.unwrap_or_default() {
                assert!(!name.contains(&prefix), "scratch container left: {name}");
            }
        }
        let volumes = docker
            .list_volumes(None::<ListVolumesOptions>)
            .await
            .expect("list volumes");
        for volume in volumes.volumes.unwrap_or_default() {
            assert!(
                !volume.name.starts_with(&prefix),
                "scratch volume left: {}",
                volume.name
            );
        }
    }
}

/// A backup every minute, with pgspec gone: the first one appears within
/// the two minutes, and the schedule shows in the labels.
async fn schedule_runs_without_pgspec(major: u32) {
    let docker = docker().await;
    let deployment = Deployment::new(major);
    // Rows first, so that whichever minute the first backup falls on, it
    // holds them.
    let spec = deployment.spec_without_backup();
    deployment
        .pgspec(&["apply", "-f", &spec, "--auto-approve"])
        .expect(0);
    deployment.seed(2_000).await;
    let spec = deployment.spec("* * * * *");
    deployment
        .pgspec(&["apply", "-f", &spec, "--auto-approve"])
        .expect(0);
    let labels = deployment.labels(&docker).await;
    let schedule = labels
        .get("org.pgspec.backup.schedule.nightly")
        .expect("schedule label");
    assert!(schedule.contains("\"cron\":\"* * * * *\""), "{schedule}");
    assert!(schedule.contains("\"retention_days\":30"), "{schedule}");
    assert!(schedule.contains("\"min_count\":3"), "{schedule}");
    assert_eq!(
        labels.get("org.pgspec.backup.destination"),
        Some(&format!("volume:{}-backups", deployment.name))
    );

    // No pgspec process runs from here on: only the engine is asked.
    let started = Instant::now();
    let id = loop {
        if let Some(id) = deployment.finished_backups(&docker).await.pop() {
            break id;
        }
        assert!(
            started.elapsed() < SCHEDULE_TIMEOUT,
            "no scheduled backup within two minutes; agent log:\n{}",
            pgspec::engine::container::last_logs(&docker, &deployment.backup_container()).await
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let manifest = deployment
        .shell(&docker, &format!("cat /backups/{id}/manifest.json"))
        .await;
    let manifest: serde_json::Value = serde_json::from_str(&manifest).expect("manifest json");
    assert_eq!(manifest["status"], "ok", "{manifest}");
    assert_eq!(manifest["schedule"], "nightly");
    assert_eq!(manifest["databases"][0]["name"], "crawl");
    assert_eq!(
        manifest["databases"][0]["tables"]["public.crawl_ledger"], 2_000,
        "{manifest}"
    );
}

for_each_major!(
    scheduled_backup_within_two_minutes,
    super::schedule_runs_without_pgspec
);

/// `backup run`, `list` and `verify` on a crawl ledger; a truncated dump and
/// a wrong row count fail `verify` loudly, and no scratch object is left.
async fn run_list_verify(major: u32) {
    let docker = docker().await;
    let deployment = Deployment::new(major);
    // Once a year: only `backup run` takes backups in this test.
    let spec = deployment.spec("0 3 1 1 *");
    deployment
        .pgspec(&["apply", "-f", &spec, "--auto-approve"])
        .expect(0);
    deployment.seed(5_000).await;

    let run = deployment.pgspec(&["backup", "run", "-f", &spec]).expect(0);
    assert!(run.stdout.contains(" ok (full custom"), "{}", run.stdout);
    let first = deployment.finished_backups(&docker).await;
    assert_eq!(first.len(), 1, "{first:?}");
    let id = &first[0];

    let list = deployment
        .pgspec(&["backup", "list", "-f", &spec])
        .expect(0);
    let row = list
        .stdout
        .lines()
        .find(|line| line.starts_with(id.as_str()))
        .unwrap_or_else(|| panic!("{id} not listed:\n{}", list.stdout));
    for expected in ["full/custom", "(globals),crawl", "KiB", " ok"] {
        assert!(row.contains(expected), "{expected} missing from: {row}");
    }

    let verify = deployment
        .pgspec(&["backup", "verify", "-f", &spec])
        .expect(0);
    assert!(
        verify
            .stdout
            .contains("2 table(s), 5007 rows, every count matches"),
        "{}",
        verify.stdout
    );
    assert!(verify.stdout.contains("pg_restore finished without errors"));
    deployment.assert_no_scratch(&docker).await;

    // A wrong count in the manifest: the restore works, the rows do not
    // match what the manifest says.
    deployment
        .shell(
            &docker,
            &format!(
                "sed -i 's/\"public.crawl_ledger\": 5000/\"public.crawl_ledger\": 5001/' \
                 /backups/{id}/manifest.json"
            ),
        )
        .await;
    let miscounted = deployment
        .pgspec(&["backup", "verify", "-f", &spec, id])
        .expect(1);
    assert!(
        miscounted
            .stdout
            .contains("`public.crawl_ledger` has 5000 rows, 5001 when backed up"),
        "{}",
        miscounted.stdout
    );
    assert!(miscounted.stderr.contains("failed verification"));

    // A truncated dump.
    deployment
        .shell(
            &docker,
            &format!("truncate -s 4096 /backups/{id}/01-crawl.dump"),
        )
        .await;
    let truncated = deployment
        .pgspec(&["backup", "verify", "-f", &spec, id])
        .expect(1);
    assert!(
        truncated.stdout.contains("is 4096 bytes but was"),
        "{}",
        truncated.stdout
    );
    assert!(
        truncated.stdout.contains("FAILED database `crawl` restore"),
        "{}",
        truncated.stdout
    );
    assert!(
        truncated.stderr.contains("failed verification"),
        "{}",
        truncated.stderr
    );
    deployment.assert_no_scratch(&docker).await;
}

for_each_major!(run_list_verify_on_a_crawl_ledger, super::run_list_verify);

/// Retention `days: 30, min_count: 3`: backups older than 30 days go, but
/// the newest three stay even when one of them is old.
async fn retention_keeps_newest_three(major: u32) {
    let docker = docker().await;
    let deployment = Deployment::new(major);
    let spec = deployment.spec("0 3 1 1 *");
    deployment
        .pgspec(&["apply", "-f", &spec, "--auto-approve"])
        .expect(0);
    deployment.seed(100).await;
    for _ in 0..4 {
        deployment.pgspec(&["backup", "run", "-f", &spec]).expect(0);
    }
    let taken = deployment.finished_backups(&docker).await;
    assert_eq!(taken.len(), 4, "{taken:?}");
    // Age the three oldest to 2020 (newest of them first); the fourth is
    // today's.
    for (id, day) in taken.iter().take(3).zip(["01", "02", "03"]) {
        deployment
            .shell(
                &docker,
                &format!(
                    "sed -i 's/\"started_at\": \"[^\"]*\"/\"started_at\": \"2020-01-{day}T00:00:00Z\"/' \
                     /backups/{id}/manifest.json"
                ),
            )
            .await;
    }
    deployment.pgspec(&["backup", "run", "-f", &spec]).expect(0);
    let kept = deployment.finished_backups(&docker).await;
    assert_eq!(kept.len(), 3, "{kept:?}");
    // The two oldest went; the one aged to 2020-01-03 is among the newest
    // three and stays.
    assert!(
        !kept.contains(&taken[0]) && !kept.contains(&taken[1]),
        "{kept:?}"
    );
    assert!(
        kept.contains(&taken[2]) && kept.contains(&taken[3]),
        "{kept:?}"
    );
}

for_each_major!(
    retention_removes_old_but_keeps_newest_three,
    super::retention_keeps_newest_three
);

/// Issue 15, part 3: retention never removes the last good backups, and
/// never a directory that is not this deployment's and schedule's.
///
/// Next to the agent's own backups, the destination holds what retention
/// must never touch: another deployment's backup, another schedule's, a
/// directory without a manifest, one with a corrupt manifest and a stray
/// directory. Backups stamped in 2020 stand for a clock that jumped years
/// ahead: the agent sees the same thing either way, backups far older than
/// its clock. With `days: 30, max_count: 2`:
/// - failed runs, with the clock years past the newest good backup, remove
///   no good one (before: every one, and the untouchables with them);
/// - a good run removes the good backups more than 30 days older than it,
///   but itself stays, and later failed runs never push it out under
///   `max_count` (before: the two newest failed ones took its place);
/// - a `days` past any time is a validate error, and the agent given one
///   anyway keeps everything instead of overflowing.
#[test]
fn retention_never_removes_the_last_good_backups() {
    common::block_on(async {
        let docker = docker().await;
        let deployment = Deployment::new(17);
        let huge = deployment.spec_with_retention("0 3 1 1 *", "{ days: 999999999999999 }");
        let refused = deployment.pgspec(&["validate", "-f", &huge]).expect(1);
        assert!(
            refused
                .stderr
                .contains("(backup.schedules[0].retention.days)"),
            "{}",
            refused.stderr
        );

        let spec = deployment.spec_with_retention("0 3 1 1 *", "{ days: 30, max_count: 2 }");
        deployment
            .pgspec(&["apply", "-f", &spec, "--auto-approve"])
            .expect(0);
        deployment.seed(50).await;
        deployment.pgspec(&["backup", "run", "-f", &spec]).expect(0);
        let template_id = deployment.finished_backups(&docker).await[0].clone();
        let template: pgspec::backup::manifest::Manifest = serde_json::from_str(
            &deployment
                .shell(
                    &docker,
                    &format!("cat /backups/{template_id}/manifest.json"),
                )
                .await,
        )
        .expect("manifest json");

        // Copies of the real backup under other ids, each with the manifest
        // `edit` makes (none when it returns `None`).
        let seed =
            |id: &'static str,
             edit: &dyn Fn(&mut pgspec::backup::manifest::Manifest) -> Option<String>| {
                let mut manifest = template.clone();
                manifest.id = id.to_owned();
                let text = edit(&mut manifest);
                let write = match text {
                    Some(text) => format!(
                        "cat > /backups/{id}/manifest.json <<'PGSPEC_END'\n{text}\nPGSPEC_END\n"
                    ),
                    None => format!("rm /backups/{id}/manifest.json\n"),
                };
                format!("cp -a /backups/{template_id} /backups/{id}\n{write}")
            };
        let json = |manifest: &pgspec::backup::manifest::Manifest| {
            Some(serde_json::to_string_pretty(manifest).expect("encode a manifest"))
        };
        let at = |day: &str| format!("2020-01-{day}T00:00:00Z");
        let script = [
            seed("20200101T000000Z-nightly", &|manifest| {
                manifest.deployment = "another-deployment".to_owned();
                manifest.started_at = at("01");
                json(manifest)
            }),
            seed("20200102T000000Z-weekly", &|manifest| {
                manifest.schedule = "weekly".to_owned();
                manifest.started_at = at("02");
                json(manifest)
            }),
            seed("20200103T000000Z-nightly", &|manifest| {
                manifest.started_at = at("03");
                json(manifest)
            }),
            seed("20200104T000000Z-nightly", &|manifest| {
                manifest.started_at = at("04");
                manifest.status = pgspec::backup::manifest::Status::Failed;
                json(manifest)
            }),
            seed("20200105T000000Z-nightly", &|_| None),
            seed("20200106T000000Z-nightly", &|_| {
                Some("{ \"deployment\": \"cut off".to_owned())
            }),
            seed("20200107T000000Z-nightly", &|manifest| {
                manifest.started_at = at("07");
                json(manifest)
            }),
            "mkdir /backups/keep-me && echo data > /backups/keep-me/file\n".to_owned(),
            format!("rm -r /backups/{template_id}\n"),
        ]
        .concat();
        deployment.shell(&docker, &script).await;
        let untouchable = [
            "20200101T000000Z-nightly",
            "20200102T000000Z-weekly",
            "20200105T000000Z-nightly",
            "20200106T000000Z-nightly",
            "keep-me",
        ];
        let (old_good, old_failed, newest_old_good) = (
            "20200103T000000Z-nightly",
            "20200104T000000Z-nightly",
            "20200107T000000Z-nightly",
        );
        let expected = |names: &[&str]| {
            let mut names: Vec<String> = untouchable
                .iter()
                .chain(names)
                .map(|name| (*name).to_owned())
                .collect();
            names.sort();
            names
        };
        let new_since = |before: &[String], after: &[String]| -> Vec<String> {
            after
                .iter()
                .filter(|name| !before.contains(name))
                .cloned()
                .collect()
        };

        // Failed runs with the clock six years past the newest good backup.
        deployment.stop_server(&docker).await;
        let mut failed = Vec::new();
        for _ in 0..3 {
            let known = deployment.destination(&docker).await;
            deployment.pgspec(&["backup", "run", "-f", &spec]).expect(1);
            failed.extend(new_since(&known, &deployment.destination(&docker).await));
        }
        failed.sort();
        assert_eq!(failed.len(), 3, "{failed:?}");
        // Failed backups are capped at two apart from good ones: the oldest
        // failed ones went, every good one stayed.
        let remaining = deployment.destination(&docker).await;
        assert_eq!(
            remaining,
            expected(&[old_good, newest_old_good, &failed[1], &failed[2]]),
            "old failed backup: {old_failed}"
        );

        // A good run: the old good backups are six years older than it.
        deployment.start_server(&docker).await;
        let known = deployment.destination(&docker).await;
        deployment.pgspec(&["backup", "run", "-f", &spec]).expect(0);
        let good = new_since(&known, &deployment.destination(&docker).await);
        assert_eq!(good.len(), 1, "{good:?}");
        assert_eq!(
            deployment.destination(&docker).await,
            expected(&[&failed[1], &failed[2], &good[0]])
        );

        // Failed runs never push the only good backup out.
        deployment.stop_server(&docker).await;
        let mut later_failed = Vec::new();
        for _ in 0..2 {
            let known = deployment.destination(&docker).await;
            deployment.pgspec(&["backup", "run", "-f", &spec]).expect(1);
            later_failed.extend(new_since(&known, &deployment.destination(&docker).await));
        }
        later_failed.sort();
        assert_eq!(later_failed.len(), 2, "{later_failed:?}");
        assert_eq!(
            deployment.destination(&docker).await,
            expected(&[&good[0], &later_failed[0], &later_failed[1]])
        );

        // The agent told a `days` that validate refuses keeps everything
        // but what `max_count` caps.
        deployment
            .shell(
                &docker,
                "sed -i 's/\"retention_days\": 30/\"retention_days\": 999999999999999/' \
                 /etc/pgspec/backup.json && grep -q 999999999999999 /etc/pgspec/backup.json",
            )
            .await;
        let known = deployment.destination(&docker).await;
        let agent = pgspec::engine::container::exec(
            &docker,
            &deployment.backup_container(),
            &pgspec::backup::docker::agent_command(&["once"]),
            false,
        )
        .await
        .expect("run the agent");
        assert_eq!(agent.code, 0, "{}", agent.stderr);
        let newest_failed = new_since(&known, &deployment.destination(&docker).await);
        assert_eq!(newest_failed.len(), 1, "{newest_failed:?}");
        assert_eq!(
            deployment.destination(&docker).await,
            expected(&[&good[0], &later_failed[1], &newest_failed[0]])
        );
    });
}

/// A stopped backup container and a schedule change are drift until
/// applied; then the new backup container carries the new schedule and the
/// backups taken before are still there, also when the server is replaced.
async fn schedule_change_is_drift(major: u32) {
    let docker = docker().await;
    let deployment = Deployment::new(major);
    let spec = deployment.spec("0 2 * * *");
    deployment
        .pgspec(&["apply", "-f", &spec, "--auto-approve"])
        .expect(0);
    deployment.pgspec(&["drift", "-f", &spec]).expect(0);

    // A stopped backup container runs no schedule: drift, and apply
    // starts it.
    docker
        .stop_container(&deployment.backup_container(), None)
        .await
        .expect("stop the backup container");
    let stopped = deployment.pgspec(&["drift", "-f", &spec]).expect(2);
    assert!(
        stopped.stdout.contains("~ state = stopped -> running"),
        "{}",
        stopped.stdout
    );
    deployment
        .pgspec(&["apply", "-f", &spec, "--auto-approve"])
        .expect(0);
    deployment.pgspec(&["drift", "-f", &spec]).expect(0);

    deployment.pgspec(&["backup", "run", "-f", &spec]).expect(0);
    let before = deployment.finished_backups(&docker).await;
    assert_eq!(before.len(), 1);

    let spec = deployment.spec("30 4 * * 1-5");
    let drift = deployment.pgspec(&["drift", "-f", &spec]).expect(2);
    let address = format!("backup.{}-backup", deployment.name);
    assert!(
        drift.stdout.contains(&format!("-/+ {address}"))
            || drift
                .stdout
                .contains(&format!("# {address} must be replaced")),
        "{}",
        drift.stdout
    );
    assert!(
        drift
            .stdout
            .contains("~ schedules.nightly.cron = 0 2 * * * -> 30 4 * * 1-5"),
        "{}",
        drift.stdout
    );
    let labels = deployment.labels(&docker).await;
    assert!(labels["org.pgspec.backup.schedule.nightly"].contains("\"cron\":\"0 2 * * *\""));

    deployment
        .pgspec(&["apply", "-f", &spec, "--auto-approve"])
        .expect(0);
    let labels = deployment.labels(&docker).await;
    assert!(
        labels["org.pgspec.backup.schedule.nightly"].contains("\"cron\":\"30 4 * * 1-5\""),
        "{labels:?}"
    );
    deployment.pgspec(&["drift", "-f", &spec]).expect(0);
    assert_eq!(deployment.finished_backups(&docker).await, before);
    let list = deployment
        .pgspec(&["backup", "list", "-f", &spec])
        .expect(0);
    assert!(list.stdout.contains(&before[0]), "{}", list.stdout);

    // A new server container (the same image under another tag replaces
    // it, and the backup container with it): the backups stay, and the
    // agent dumps the new server by name.
    let mut moved = deployment;
    let alternate = format!("pgspec-test/postgres:{major}-{}", moved.name);
    docker
        .tag_image(
            &moved.image,
            Some(TagImageOptions {
                repo: Some("pgspec-test/postgres".to_owned()),
                tag: Some(format!("{major}-{}", moved.name)),
            }),
        )
        .await
        .expect("tag image");
    moved.cleanup.image_tags.push(alternate.clone());
    moved.image = alternate;
    let spec = moved.spec("30 4 * * 1-5");
    let plan = moved.pgspec(&["plan", "-f", &spec]).expect(0);
    for replaced in [
        format!("-/+ container.{}-postgres", moved.name),
        format!("-/+ backup.{}-backup", moved.name),
    ] {
        assert!(plan.stdout.contains(&replaced), "{}", plan.stdout);
    }
    moved
        .pgspec(&["apply", "-f", &spec, "--auto-approve"])
        .expect(0);
    moved.pgspec(&["backup", "run", "-f", &spec]).expect(0);
    let after = moved.finished_backups(&docker).await;
    assert_eq!(after.len(), 2, "{after:?}");
    assert_eq!(after[0], before[0]);
}

for_each_major!(
    schedule_change_is_drift_until_applied,
    super::schedule_change_is_drift
);

/// Plain and directory formats, globals-only and data-only schedules, and a
/// host directory as the destination: each is checked as far as it can be.
async fn formats_and_directory_destination(major: u32) {
    let docker = docker().await;
    let deployment = Deployment::new(major);
    let destination = deployment.work.path("backups");
    let backup = format!(
        "backup:\n  schedules:\n    \
         - {{ name: plain, schedule: \"0 3 1 1 *\", format: plain }}\n    \
         - {{ name: dir, schedule: \"0 3 1 1 *\", format: directory, kind: full }}\n    \
         - {{ name: roles, schedule: \"0 3 1 1 *\", kind: globals, format: plain }}\n    \
         - {{ name: data, schedule: \"0 3 1 1 *\", kind: data }}\n  \
         destination: {{ directory: {} }}\n",
        destination.display()
    );
    let spec = deployment.write_spec(&backup);
    deployment
        .pgspec(&["apply", "-f", &spec, "--auto-approve"])
        .expect(0);
    deployment.seed(1_000).await;
    let run = deployment.pgspec(&["backup", "run", "-f", &spec]).expect(0);
    assert_eq!(
        run.stdout
            .lines()
            .filter(|line| line.contains(" ok ("))
            .count(),
        4,
        "{}",
        run.stdout
    );

    // The backups are on the host, where the spec said.
    let mut ids: Vec<String> = std::fs::read_dir(&destination)
        .expect("read the destination directory")
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().join("manifest.json").is_file())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    ids.sort();
    assert_eq!(ids.len(), 4, "{ids:?}");
    for id in &ids {
        let verify = deployment
            .pgspec(&["backup", "verify", "-f", &spec, id])
            .expect(0);
        if id.ends_with("-roles") {
            assert!(
                verify.stdout.contains("ok     globals"),
                "{}",
                verify.stdout
            );
        } else if id.ends_with("-data") {
            // Data alone cannot be restored into an empty server.
            assert!(
                verify
                    .stdout
                    .contains("data-only archive: table of contents read, not restored"),
                "{}",
                verify.stdout
            );
        } else {
            assert!(
                verify
                    .stdout
                    .contains("2 table(s), 1007 rows, every count matches"),
                "{}",
                verify.stdout
            );
        }
    }
    deployment.assert_no_scratch(&docker).await;
}

for_each_major!(
    plain_directory_and_globals_backups_verify,
    super::formats_and_directory_destination
);

/// Issue 16: an agent binary that cannot run in the image fails the apply
/// before the backup container is created or replaced: a throwaway
/// container of the image runs the agent first. `/bin/false` is an ELF
/// executable that exits 1 at once, as an agent built for another C library
/// fails to start.
#[test]
fn agent_that_cannot_run_fails_the_apply() {
    common::block_on(async {
        let docker = docker().await;
        let deployment = Deployment::new(17);
        let spec = deployment.spec("0 2 * * *");
        let apply = pgspec(
            &["apply", "-f", &spec, "--auto-approve"],
            &[
                (PASSWORD_ENV, deployment.password.as_str()),
                ("PGSPEC_BACKUP_AGENT", "/bin/false"),
            ],
        )
        .expect(1);
        assert!(
            apply.stderr.contains(
                "the pgspec backup agent cannot start in image `pgspec-test/postgres:17`"
            ) && apply.stderr.contains("PGSPEC_BACKUP_AGENT"),
            "{}",
            apply.stderr
        );
        assert!(apply.stderr.contains("create `backup."), "{}", apply.stderr);
        // Nothing of the backup was made, and the check container is gone.
        assert!(
            docker
                .inspect_container(&deployment.backup_container(), None)
                .await
                .is_err()
        );
        assert!(
            docker
                .inspect_container(&format!("{}-backup-agent-check", deployment.name), None)
                .await
                .is_err()
        );

        // A working backup container is not replaced by one whose agent
        // cannot start: the old one keeps its schedule.
        deployment
            .pgspec(&["apply", "-f", &spec, "--auto-approve"])
            .expect(0);
        let before = docker
            .inspect_container(&deployment.backup_container(), None)
            .await
            .expect("backup container")
            .id;
        let changed = deployment.spec("30 4 * * *");
        pgspec(
            &["apply", "-f", &changed, "--auto-approve"],
            &[
                (PASSWORD_ENV, deployment.password.as_str()),
                ("PGSPEC_BACKUP_AGENT", "/bin/false"),
            ],
        )
        .expect(1);
        let after = docker
            .inspect_container(&deployment.backup_container(), None)
            .await
            .expect("the old backup container is still there");
        assert_eq!(after.id, before);
        assert_eq!(after.state.and_then(|state| state.running), Some(true));
    });
}

/// A backup taken while the server is down is recorded as failed, listed
/// as such, and skipped by `verify`, which checks the newest good one.
#[test]
fn failed_backup_is_listed_and_skipped_by_verify() {
    common::block_on(async {
        let docker = docker().await;
        let deployment = Deployment::new(17);
        let spec = deployment.spec("0 3 1 1 *");
        deployment
            .pgspec(&["apply", "-f", &spec, "--auto-approve"])
            .expect(0);
        deployment.seed(300).await;
        deployment.pgspec(&["backup", "run", "-f", &spec]).expect(0);
        let good = deployment.finished_backups(&docker).await;
        assert_eq!(good.len(), 1);

        docker
            .stop_container(&format!("{}-postgres", deployment.name), None)
            .await
            .expect("stop the server");
        let failed = deployment.pgspec(&["backup", "run", "-f", &spec]).expect(1);
        assert!(
            failed.stdout.contains(" failed (full custom"),
            "{}",
            failed.stdout
        );
        assert!(failed.stdout.contains("error: "), "{}", failed.stdout);
        assert!(
            failed.stderr.contains("1 backup(s) failed"),
            "{}",
            failed.stderr
        );
        let list = deployment
            .pgspec(&["backup", "list", "-f", &spec])
            .expect(0);
        let statuses: Vec<&str> = list
            .stdout
            .lines()
            .skip(1)
            .filter_map(|line| line.split_whitespace().last())
            .collect();
        assert_eq!(statuses, ["failed", "ok"], "{}", list.stdout);

        let verify = deployment
            .pgspec(&["backup", "verify", "-f", &spec])
            .expect(0);
        assert!(
            verify.stdout.starts_with(&format!("backup {} ", good[0])),
            "{}",
            verify.stdout
        );
    });
}

/// The superuser's password changed (by hand, then in the spec's secret):
/// the password file in the backup container is stale, which is drift,
/// shown without the password; apply replaces the container and backups
/// work again.
#[test]
fn superuser_password_rotation_replaces_the_backup_container() {
    common::block_on(async {
        let docker = docker().await;
        let mut deployment = Deployment::new(17);
        let spec = deployment.spec("0 3 1 1 *");
        deployment
            .pgspec(&["apply", "-f", &spec, "--auto-approve"])
            .expect(0);
        deployment.seed(10).await;
        deployment.pgspec(&["backup", "run", "-f", &spec]).expect(0);

        let rotated = format!("rotated:{}", unique_name("secret"));
        connect(deployment.port, &deployment.password, "postgres")
            .await
            .expect("connect")
            .batch_execute(&format!("ALTER ROLE postgres PASSWORD '{rotated}'"))
            .await
            .expect("rotate the superuser password");
        deployment.password = rotated.clone();
        let stale = deployment.pgspec(&["backup", "run", "-f", &spec]).expect(1);
        assert!(
            stale.stdout.contains("password authentication failed"),
            "{}",
            stale.stdout
        );
        let drift = deployment.pgspec(&["drift", "-f", &spec]).expect(2);
        assert!(
            drift
                .stdout
                .contains(&format!("-/+ backup.{}-backup", deployment.name))
                && drift.stdout.contains("superuser_password"),
            "{}",
            drift.stdout
        );
        assert!(!drift.stdout.contains(&rotated), "{}", drift.stdout);
        deployment
            .pgspec(&["apply", "-f", &spec, "--auto-approve"])
            .expect(0);
        deployment.pgspec(&["drift", "-f", &spec]).expect(0);
        deployment.pgspec(&["backup", "run", "-f", &spec]).expect(0);
        let backups = deployment.finished_backups(&docker).await;
        assert_eq!(backups.len(), 3, "{backups:?}");
    });
}
