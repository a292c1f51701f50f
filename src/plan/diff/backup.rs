//! Diff of the backup container (`backup.<deployment>-backup`): its image,
//! network, agent version, destination and every schedule field, read from
//! its labels. The agent reads its schedules when it starts, so any change
//! replaces the container; the backups on the destination stay.

use std::collections::BTreeSet;

use crate::model::DiffOptions;
use crate::model::address::ObjectKind;
use crate::model::{
    Backup, BackupAgent, BackupDestination, BackupSchedule, Container, Deployment, address,
};
use crate::plan::{Action, ActionKind, Change, DockerStep, Plan, PlanError, Risk, Step};

/// The address of a deployment's backup container.
pub fn backup_address(deployment: &str) -> String {
    format!(
        "backup.{}",
        address::name(&crate::model::backup::container_name(deployment))
    )
}

/// The desired backup agent: the server's image, network and superuser,
/// and this pgspec.
pub fn desired_agent(deployment: &str, server: &Container) -> BackupAgent {
    BackupAgent {
        name: crate::model::backup::container_name(deployment),
        image: server.image.clone(),
        network: server.network.clone(),
        server: server.name.clone(),
        superuser: server.superuser.clone(),
        superuser_password: server.superuser_password.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        running: true,
        image_id: String::new(),
        password_matches: None,
    }
}

/// Diffs the backup container.
pub(super) fn diff(
    desired: &Deployment,
    live: &Deployment,
    options: &DiffOptions,
    plan: &mut Plan,
) {
    let address = backup_address(&desired.name);
    let have = live.backup.as_ref();
    let have_agent = have.and_then(|backup| backup.agent.as_ref());
    let Some(want) = &desired.backup else {
        if let Some(agent) = have_agent {
            if options.prune {
                plan.actions.push(Action {
                    address,
                    object: ObjectKind::Backup,
                    kind: ActionKind::Delete,
                    reason: "no `backup` in the spec, and pruning is on; the backups stay"
                        .to_owned(),
                    risk: Risk::none(),
                    changes: vec![Change::new("image", Some(agent.image.clone()), None)],
                    steps: vec![Step::Docker(DockerStep::RemoveContainer {
                        name: agent.name.clone(),
                    })],
                });
            } else {
                plan.unmanaged.push(address);
            }
        }
        return;
    };
    let Some(server) = &desired.container else {
        plan.errors.push(PlanError {
            address,
            message: "scheduled backups run in a container beside the server, so they need \
                      `postgres.image`; pgspec runs no backups for a server it does not manage"
                .to_owned(),
        });
        return;
    };
    let want_agent = desired_agent(&desired.name, server);
    let destination_exists = have.is_some_and(|backup| backup.destination_exists);
    let mut steps: Vec<Step> = Vec::new();
    if let BackupDestination::Volume(volume) = &want.destination
        && !destination_exists
    {
        steps.push(Step::Docker(DockerStep::CreateVolume {
            name: volume.clone(),
        }));
    }
    let create = Step::Docker(DockerStep::CreateBackupContainer {
        backup: Box::new(Backup {
            agent: Some(want_agent.clone()),
            destination_exists: true,
            ..want.clone()
        }),
    });

    let check = Step::Docker(DockerStep::CheckBackupAgent {
        image: want_agent.image.clone(),
    });
    let Some(have_agent) = have_agent else {
        steps.push(check);
        steps.push(create);
        let mut changes = vec![
            Change::new("image", None, Some(want_agent.image.clone())),
            Change::new(
                "destination",
                None,
                Some(crate::model::backup::destination_label(&want.destination)),
            ),
        ];
        changes.extend(schedule_changes(&Default::default(), &want.schedules));
        plan.actions.push(Action {
            address,
            object: ObjectKind::Backup,
            kind: ActionKind::Create,
            reason: "declared in the spec, no backup container exists".to_owned(),
            risk: Risk::none(),
            changes,
            steps,
        });
        return;
    };
    let have = have.unwrap_or_else(|| unreachable!("an agent comes with its backup"));

    let mut changes = Vec::new();
    let mut compare = |field: &'static str, old: &str, new: &str| {
        if old != new {
            changes.push(Change::new(
                field,
                Some(old.to_owned()).filter(|old| !old.is_empty()),
                Some(new.to_owned()),
            ));
        }
    };
    compare("image", &have_agent.image, &want_agent.image);
    compare("network", &have_agent.network, &want_agent.network);
    compare("server", &have_agent.server, &want_agent.server);
    compare("superuser", &have_agent.superuser, &want_agent.superuser);
    compare("agent_version", &have_agent.version, &want_agent.version);
    compare(
        "destination",
        &crate::model::backup::destination_label(&have.destination),
        &crate::model::backup::destination_label(&want.destination),
    );
    if have_agent.image == want_agent.image
        && let Some(change) =
            super::container::image_id_change(live, &want_agent.image, &have_agent.image_id)
    {
        changes.push(change);
    }
    if have_agent.password_matches == Some(false) {
        // The agent would fail to log in at its next backup.
        changes.push(Change::sensitive("superuser_password"));
    }
    changes.extend(schedule_changes(&have.schedules, &want.schedules));

    if !changes.is_empty() {
        let mut replace = vec![
            check,
            Step::Docker(DockerStep::RemoveContainer {
                name: have_agent.name.clone(),
            }),
        ];
        replace.push(create);
        steps.extend(replace);
        plan.actions.push(Action {
            address,
            object: ObjectKind::Backup,
            kind: ActionKind::Replace,
            reason: format!(
                "the backup agent reads its schedules when it starts, so a new container \
                 takes over; backups on {} are kept",
                describe_destination(&want.destination)
            ),
            risk: Risk::none(),
            changes,
            steps,
        });
    } else if !have_agent.running {
        steps.push(Step::Docker(DockerStep::StartContainer {
            name: want_agent.name.clone(),
        }));
        plan.actions.push(Action {
            address,
            object: ObjectKind::Backup,
            kind: ActionKind::Update,
            reason: "the backup container is stopped, so no scheduled backup runs".to_owned(),
            risk: Risk::none(),
            changes: vec![Change::new(
                "state",
                Some("stopped".to_owned()),
                Some("running".to_owned()),
            )],
            steps,
        });
    } else if !steps.is_empty() {
        plan.actions.push(Action {
            address,
            object: ObjectKind::Backup,
            kind: ActionKind::Update,
            reason: "the destination volume is missing".to_owned(),
            risk: Risk::none(),
            changes: vec![Change::new(
                "destination",
                None,
                Some(crate::model::backup::destination_label(&want.destination)),
            )],
            steps,
        });
    } else {
        let mut findings = Vec::new();
        let mut steps = Vec::new();
        if let Some(finding) = archiver_drift(want, have) {
            findings.push(finding);
            steps.push(Step::Docker(DockerStep::RestartContainer {
                name: want_agent.name.clone(),
            }));
        }
        findings.extend(restore_test_drift(want, have));
        if !findings.is_empty() {
            let (reasons, changes): (Vec<String>, Vec<Change>) = findings.into_iter().unzip();
            plan.actions.push(Action {
                address,
                object: ObjectKind::Backup,
                kind: ActionKind::Update,
                reason: reasons.join("; "),
                risk: Risk::none(),
                changes,
                steps,
            });
        }
    }
}

/// Scheduled restore tests that failed, or are overdue. Apply cannot fix
/// them: the finding stays until a test passes (`backup agent verify-now`
/// runs one at once).
fn restore_test_drift(want: &Backup, have: &Backup) -> Vec<(String, Change)> {
    let mut findings = Vec::new();
    for (name, schedule) in &want.schedules {
        if schedule.verify.is_none() {
            continue;
        }
        let Some(test) = have.restore_tests.get(name) else {
            continue;
        };
        let field = format!("schedules.{name}.restore_test");
        if test.ok == Some(false) {
            findings.push((
                format!(
                    "the last restore test of schedule `{name}` failed{}; `pgspec backup \
                     list` shows it and `pgspec backup verify` says why",
                    test.verified_at
                        .as_deref()
                        .map(|at| format!(" ({at})"))
                        .unwrap_or_default()
                ),
                Change::new(
                    field.clone(),
                    Some("failed".to_owned()),
                    Some("ok".to_owned()),
                ),
            ));
        } else if test.overdue {
            findings.push((
                format!("schedule `{name}` has had no restore test since its `verify` time passed"),
                Change::new(field, Some("overdue".to_owned()), Some("ok".to_owned())),
            ));
        }
    }
    findings
}

/// WAL streaming that is not what the spec asks: an archiver that has
/// stopped (its slot missing or inactive), or one further behind than
/// `max_lag`. A restart of the backup container restarts `pg_receivewal`.
fn archiver_drift(want: &Backup, have: &Backup) -> Option<(String, Change)> {
    let streams = want
        .schedules
        .values()
        .any(|schedule| schedule.kind == "physical");
    let archiver = have.archiver.as_ref().filter(|_| streams)?;
    if !archiver.slot_exists || !archiver.active {
        return Some((
            format!(
                "the WAL archiver is not streaming (replication slot `{}` {}), so nothing \
                 written since can be recovered; the server keeps the WAL while the slot \
                 exists. The backup container's log says why; `no pg_hba.conf entry for \
                 replication connection` means the server needs `host replication {} all \
                 scram-sha-256`",
                crate::model::backup::slot_name(&have_name(have)),
                if archiver.slot_exists {
                    "inactive"
                } else {
                    "missing"
                },
                have.agent
                    .as_ref()
                    .map_or("postgres", |agent| agent.superuser.as_str())
            ),
            Change::new(
                "archiver",
                Some("stopped".to_owned()),
                Some("streaming".to_owned()),
            ),
        ));
    }
    let (Some(max), Some(lag)) = (want.max_lag_seconds, archiver.lag_seconds) else {
        return None;
    };
    (lag > max as f64).then(|| {
        (
            format!(
                "the WAL archive is {} behind the server, more than `max_lag` allows",
                seconds_text(lag)
            ),
            Change::new(
                "recovery_point_lag",
                Some(seconds_text(lag)),
                Some(format!("<= {}", seconds_text(max as f64))),
            ),
        )
    })
}

/// The deployment a live backup belongs to, from its container's name.
fn have_name(have: &Backup) -> String {
    have.agent
        .as_ref()
        .and_then(|agent| agent.name.strip_suffix("-backup"))
        .unwrap_or_default()
        .to_owned()
}

/// Whole seconds, minutes or hours, as `max_lag` is written.
fn seconds_text(seconds: f64) -> String {
    let seconds = seconds.round() as u64;
    if seconds >= 3600 && seconds.is_multiple_of(3600) {
        format!("{}h", seconds / 3600)
    } else if seconds >= 60 && seconds.is_multiple_of(60) {
        format!("{}min", seconds / 60)
    } else {
        format!("{seconds}s")
    }
}

fn describe_destination(destination: &BackupDestination) -> String {
    match destination {
        BackupDestination::Volume(name) => format!("volume `{name}`"),
        BackupDestination::Directory(path) => format!("directory `{path}`"),
    }
}

fn retention_text(schedule: &BackupSchedule) -> String {
    let mut parts = Vec::new();
    if let Some(days) = schedule.retention_days {
        parts.push(format!("days={days}"));
    }
    if let Some(max) = schedule.max_count {
        parts.push(format!("max_count={max}"));
    }
    if let Some(min) = schedule.min_count {
        parts.push(format!("min_count={min}"));
    }
    if parts.is_empty() {
        "keep all".to_owned()
    } else {
        parts.join(" ")
    }
}

/// The fields of a schedule as plan lines, `schedules.<name>.<field>`.
fn schedule_fields(schedule: &BackupSchedule) -> [(&'static str, String); 6] {
    [
        ("cron", schedule.cron.clone()),
        ("kind", schedule.kind.clone()),
        ("format", schedule.format.clone()),
        (
            "databases",
            if schedule.databases.is_empty() {
                "(all)".to_owned()
            } else {
                schedule.databases.join(", ")
            },
        ),
        ("retention", retention_text(schedule)),
        (
            "verify",
            schedule
                .verify
                .clone()
                .unwrap_or_else(|| "(never)".to_owned()),
        ),
    ]
}

fn schedule_changes(
    have: &std::collections::BTreeMap<String, BackupSchedule>,
    want: &std::collections::BTreeMap<String, BackupSchedule>,
) -> Vec<Change> {
    let names: BTreeSet<&String> = have.keys().chain(want.keys()).collect();
    let mut changes = Vec::new();
    for name in names {
        let old = have.get(name).map(schedule_fields);
        let new = want.get(name).map(schedule_fields);
        for index in 0..6 {
            let old_value = old.as_ref().map(|fields| fields[index].1.clone());
            let new_value = new.as_ref().map(|fields| fields[index].1.clone());
            let never = |value: &Option<String>| value.clone().unwrap_or("(never)".to_owned());
            // A schedule without a restore test, added or removed, says
            // nothing about one.
            let quiet = index == 5 && never(&old_value) == never(&new_value);
            if old_value != new_value && !quiet {
                let field = old
                    .as_ref()
                    .or(new.as_ref())
                    .map_or("", |fields| fields[index].0);
                changes.push(Change::new(
                    format!("schedules.{name}.{field}"),
                    old_value,
                    new_value,
                ));
            }
        }
    }
    changes
}

/// What live looks like after a backup action ran, for `plan::simulate`.
pub fn simulate(next: &mut Deployment, action: &Action) {
    if action.kind == ActionKind::Delete {
        next.backup = None;
        return;
    }
    for step in &action.steps {
        let Step::Docker(call) = step else { continue };
        match call {
            DockerStep::CreateVolume { .. } => {
                next.backup
                    .get_or_insert_with(Backup::default)
                    .destination_exists = true;
            }
            DockerStep::RemoveContainer { .. } => {
                if let Some(backup) = &mut next.backup {
                    backup.agent = None;
                }
            }
            DockerStep::CreateBackupContainer { backup } => {
                let mut created = (**backup).clone();
                if let Some(agent) = &mut created.agent {
                    agent.superuser_password = None;
                    agent.running = true;
                    agent.image_id = next
                        .images
                        .get(&agent.image)
                        .map(|image| image.id.clone())
                        .unwrap_or_default();
                }
                next.backup = Some(created);
            }
            DockerStep::StartContainer { .. } => {
                if let Some(agent) = next
                    .backup
                    .as_mut()
                    .and_then(|backup| backup.agent.as_mut())
                {
                    agent.running = true;
                }
            }
            DockerStep::RestartContainer { .. } => {
                // A restarted agent streams again.
                if let Some(backup) = &mut next.backup {
                    backup.archiver = None;
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Image;

    fn schedule(cron: &str) -> BackupSchedule {
        crate::model::backup::sample_schedule(cron)
    }

    fn desired(cron: &str) -> Deployment {
        Deployment {
            name: "ledger".to_owned(),
            container: Some(Container {
                name: "ledger-postgres".to_owned(),
                image: "postgres:17".to_owned(),
                network: "ledger-net".to_owned(),
                superuser: "postgres".to_owned(),
                ..Container::default()
            }),
            backup: Some(Backup {
                destination: BackupDestination::Volume("ledger-backups".to_owned()),
                schedules: [("nightly".to_owned(), schedule(cron))].into(),
                ..Backup::default()
            }),
            ..Deployment::default()
        }
    }

    fn plan(desired: &Deployment, live: &Deployment) -> Plan {
        let mut plan = Plan::default();
        diff(desired, live, &DiffOptions::default(), &mut plan);
        plan
    }

    #[test]
    fn a_new_backup_container_converges_and_a_schedule_change_replaces_it() {
        let want = desired("0 2 * * *");
        let mut live = Deployment {
            name: "ledger".to_owned(),
            images: [(
                "postgres:17".to_owned(),
                Image {
                    id: "sha256:abc".to_owned(),
                    pg_major: Some(17),
                    ..Image::default()
                },
            )]
            .into(),
            backup: Some(Backup::default()),
            ..Deployment::default()
        };
        let first = plan(&want, &live);
        assert_eq!(first.actions.len(), 1);
        assert_eq!(first.actions[0].kind, ActionKind::Create);
        assert_eq!(first.actions[0].address, "backup.ledger-backup");
        for action in &first.actions {
            simulate(&mut live, action);
        }
        assert!(plan(&want, &live).actions.is_empty(), "converges");

        let changed = plan(&desired("*/5 * * * *"), &live);
        assert_eq!(changed.actions.len(), 1);
        assert_eq!(changed.actions[0].kind, ActionKind::Replace);
        assert_eq!(
            changed.actions[0].changes,
            [Change::new(
                "schedules.nightly.cron",
                Some("0 2 * * *".to_owned()),
                Some("*/5 * * * *".to_owned())
            )]
        );
    }

    #[test]
    fn a_stale_password_file_replaces_the_container_without_showing_it() {
        let want = desired("0 2 * * *");
        let mut live = Deployment {
            backup: Some(Backup::default()),
            ..Deployment::default()
        };
        for action in &plan(&want, &live).actions {
            simulate(&mut live, action);
        }
        if let Some(agent) = live
            .backup
            .as_mut()
            .and_then(|backup| backup.agent.as_mut())
        {
            agent.password_matches = Some(false);
        }
        let stale = plan(&want, &live);
        assert_eq!(stale.actions.len(), 1);
        assert_eq!(stale.actions[0].kind, ActionKind::Replace);
        assert_eq!(
            stale.actions[0].changes,
            [Change::sensitive("superuser_password")]
        );
    }

    #[test]
    fn backups_need_a_managed_server() {
        let mut want = desired("0 2 * * *");
        want.container = None;
        let plan = plan(&want, &Deployment::default());
        assert!(plan.actions.is_empty());
        assert_eq!(plan.errors.len(), 1);
    }
}
