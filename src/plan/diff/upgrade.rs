//! A declared major version upgrade (`postgres.upgrade`): the plan of a
//! spec whose image runs another PostgreSQL major version than the data
//! directory on the volume. Two container actions: the data moves to the
//! new major version (`UpgradeData`, which keeps the old data in a volume
//! of its own), then the container is replaced by one of the new image,
//! as any replace. Without the declaration the change stays a plan error.

use crate::model::address::ObjectKind;
use crate::model::{
    Container, Deployment, UpgradeMethod, address, notation, upgrade, upgrade_kept_volume,
};
use crate::plan::{Action, ActionKind, Change, DockerStep, Note, Plan, PlanError, Risk, Step};

use super::adoption;
use super::container::{replace_changes, start_steps};

/// Plans the upgrade of `have`'s data to `to_major`; returns whether the
/// plan can go on into the server.
pub(super) fn plan_upgrade(
    desired: &Deployment,
    have: &Container,
    want: &Container,
    method: UpgradeMethod,
    (from_major, to_major): (u32, u32),
    live: &Deployment,
    plan: &mut Plan,
) -> bool {
    let address = address::container(&want.name);
    let mut refuse = |message: String| {
        plan.errors.push(PlanError {
            address: address.clone(),
            message,
        });
        false
    };
    if to_major < from_major {
        return refuse(format!(
            "image `{}` runs PostgreSQL {to_major}, older than the data directory's \
             {from_major}: PostgreSQL cannot move data to an older major version; restore a \
             backup taken with {to_major} instead",
            want.image
        ));
    }
    let removed = crate::model::settings::removed_between(
        desired.settings.keys().map(String::as_str),
        from_major,
        to_major,
    );
    if !removed.is_empty() {
        let listed: Vec<String> = removed
            .iter()
            .map(|(name, major, instead)| {
                format!("`{name}` (removed in PostgreSQL {major}; {instead})")
            })
            .collect();
        return refuse(format!(
            "the spec sets {} that PostgreSQL {to_major} does not have: the new server would \
             not start with it. Take it out of `postgres.settings` first",
            listed.join(", ")
        ));
    }
    if let Some(message) = extension_error(want, live) {
        return refuse(message);
    }
    if !adoption::belongs(have, want) {
        return refuse(format!(
            "container `{}` was not created by pgspec nor adopted: apply the spec with its \
             current image first, so that pgspec adopts it, then change the image",
            have.name
        ));
    }
    let server_data_directory = live
        .server
        .as_ref()
        .and_then(|server| server.data_directory.as_deref());
    if let Some(reason) = have
        .data_home()
        .unproven(&want.volume, server_data_directory)
    {
        return refuse(super::container::unproven_message(have, want, &reason));
    }
    if let Some(note) = unchecked_extensions(want, live) {
        plan.notes.push(Note {
            address: address.clone(),
            message: note,
        });
    }
    let kept = upgrade_kept_volume(&want.volume, from_major);
    let pooler = paused_pooler(desired, live);
    let UpgradeMethod::DumpRestore = method;
    plan.actions.push(Action {
        address: address.clone(),
        object: ObjectKind::Container,
        kind: ActionKind::Upgrade,
        reason: format!(
            "PostgreSQL {from_major} -> {to_major} by dump and restore, as \
             `postgres.upgrade` declares: writes stop for the copy ({}), {}; the old data is \
             kept in volume `{kept}`, never written to again nor removed by pgspec (to roll \
             back: `postgres.image` back to the old image and `postgres.volume: {kept}`)",
            writes_stopped(pooler.as_deref()),
            downtime(live)
        ),
        risk: Risk {
            locks: vec!["every table against writes, for the copy".to_owned()],
            restart: true,
            reconnects: true,
        },
        changes: vec![
            Change::new(
                "major",
                Some(from_major.to_string()),
                Some(to_major.to_string()),
            ),
            Change::new("kept", None, Some(format!("volume `{kept}`"))),
        ],
        steps: vec![Step::Docker(DockerStep::UpgradeData {
            container: Box::new(want.clone()),
            from_major,
            to_major,
            kept,
            pooler: pooler.clone(),
        })],
    });
    let mut steps = vec![Step::Docker(DockerStep::RemoveContainer {
        name: want.name.clone(),
    })];
    steps.extend(start_steps(want));
    if let Some(name) = pooler {
        steps.push(Step::Docker(DockerStep::ResumePooler { name }));
    }
    plan.actions.push(Action {
        address,
        object: ObjectKind::Container,
        kind: ActionKind::Replace,
        reason: format!(
            "the container of PostgreSQL {from_major} makes way for one of `{}` on the \
             upgraded data",
            want.image
        ),
        risk: Risk {
            locks: Vec::new(),
            restart: true,
            reconnects: true,
        },
        changes: replace_changes(have, want),
        steps,
    });
    true
}

/// With `postgres.upgrade` declared and an image that is not local, the
/// plan cannot know whether the image changes the major version, nor read
/// its extensions: it says so (apply pulls the image and refuses a major
/// version change it was not planned for).
pub(super) fn image_not_local(want: &Container, live: &Deployment, plan: &mut Plan) {
    let running = live
        .container
        .as_ref()
        .is_some_and(|have| have.state != crate::model::ContainerState::Missing);
    if want.upgrade.is_none() || !running || live.images.contains_key(&want.image) {
        return;
    }
    plan.notes.push(Note {
        address: address::container(&want.name),
        message: format!(
            "image `{}` is not local, so the plan cannot tell whether it runs another major \
             version, nor check its extensions: apply pulls it and refuses a major version \
             change this plan does not show. `docker pull` it and plan again to plan an \
             upgrade",
            want.image
        ),
    });
}

/// The pooler container the upgrade pauses: the spec's, running and
/// answering on its admin console.
fn paused_pooler(desired: &Deployment, live: &Deployment) -> Option<String> {
    desired.pooler.as_ref()?;
    let have = live.pooler.as_ref()?;
    (have.state == crate::model::ContainerState::Running && have.console_error.is_none())
        .then(|| desired.pooler_container())
}

/// How writes are stopped for the copy.
fn writes_stopped(pooler: Option<&str>) -> String {
    match pooler {
        Some(name) => format!(
            "PgBouncer in `{name}` is paused, so that its clients wait instead of failing (up \
             to its `query_wait_timeout`), and the old server is read-only until it stops; \
             PgBouncer resumes once the new server answers"
        ),
        None => "the old server is read-only until it stops".to_owned(),
    }
}

/// The expected write downtime, from the databases' sizes.
fn downtime(live: &Deployment) -> String {
    match live
        .upgrade
        .as_ref()
        .filter(|facts| !facts.database_sizes.is_empty())
    {
        Some(facts) => {
            let size = facts.total_size();
            format!(
                "expected {} for {} in {} database(s) (pg_database_size), assuming {}/s for \
                 pg_dump, pg_restore and the index builds together",
                upgrade::copy_time_text(size),
                notation::human_size(size),
                facts.database_sizes.len(),
                notation::human_size(upgrade::ASSUMED_COPY_BYTES_PER_SECOND)
            )
        }
        None => "the time pg_dump and pg_restore take for every database".to_owned(),
    }
}

/// The plan error of extensions the old server has and the new image
/// cannot take.
fn extension_error(want: &Container, live: &Deployment) -> Option<String> {
    let problems = live.upgrade.as_ref()?.extension_problems();
    (!problems.is_empty()).then(|| {
        format!(
            "image `{}` cannot take the old server's extensions: {}. Use an image that ships \
             them, or drop them from the old server first",
            want.image,
            problems.join("; ")
        )
    })
}

/// The note of extensions the plan could not check against the new image.
fn unchecked_extensions(want: &Container, live: &Deployment) -> Option<String> {
    let why = match &live.upgrade {
        Some(facts) if facts.image_extensions.is_some() => return None,
        Some(facts) => facts.unread.clone().unwrap_or_default(),
        None => "the old server's were not read".to_owned(),
    };
    Some(format!(
        "the old server's extensions are checked against image `{}` when apply runs, before \
         writes stop: the plan could not read them ({why})",
        want.image
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ContainerState, DiffOptions, Image};

    const DATA: &str = "/var/lib/postgresql/data";

    fn desired(image: &str) -> Deployment {
        Deployment {
            name: "ledger".to_owned(),
            container: Some(Container {
                name: "ledger-postgres".to_owned(),
                image: image.to_owned(),
                port: 5432,
                bind_address: "127.0.0.1".to_owned(),
                volume: "ledger-pgdata".to_owned(),
                superuser: "postgres".to_owned(),
                network: "ledger-net".to_owned(),
                restart_policy: "unless-stopped".to_owned(),
                health_check: Container::server_health_check("postgres"),
                upgrade: Some(UpgradeMethod::DumpRestore),
                ..Container::default()
            }),
            ..Deployment::default()
        }
    }

    /// The server on `major`, with every image local.
    fn live(major: u32) -> Deployment {
        let mut live = desired(&format!("postgres:{major}"));
        if let Some(container) = &mut live.container {
            container.upgrade = None;
            container.data_mount = DATA.to_owned();
            container.pgdata = DATA.to_owned();
            container.data_kind = "volume".to_owned();
            container.state = ContainerState::Running;
            container.data_major = Some(major);
            container.volume_exists = true;
            container.network_exists = true;
            container.config_hash = container.creation_hash();
        }
        live.images = [15, 17]
            .map(|major| {
                (
                    format!("postgres:{major}"),
                    Image {
                        id: format!("sha256:{major}"),
                        pg_major: Some(major),
                        pgdata: Some(DATA.to_owned()),
                        volumes: vec![DATA.to_owned()],
                    },
                )
            })
            .into();
        live.server = Some(crate::model::ServerInfo {
            version_num: major * 10_000,
            data_directory: Some(DATA.to_owned()),
            ..crate::model::ServerInfo::default()
        });
        live
    }

    #[test]
    fn an_upgrade_moves_the_data_then_replaces_the_container_and_converges() {
        let want = desired("postgres:17");
        let before = live(15);
        let plan = crate::plan::diff(&want, &before, &DiffOptions::default());
        assert!(plan.errors.is_empty(), "{:?}", plan.errors);
        let kinds: Vec<ActionKind> = plan.actions.iter().map(|action| action.kind).collect();
        assert_eq!(kinds, [ActionKind::Upgrade, ActionKind::Replace]);
        let after = crate::plan::simulate(&before, &plan);
        let again = crate::plan::diff(&want, &after, &DiffOptions::default());
        assert!(again.errors.is_empty(), "{:?}", again.errors);
        assert!(again.actions.is_empty(), "{:?}", again.actions);
    }

    #[test]
    fn no_upgrade_goes_to_an_older_major_version_or_without_the_declaration() {
        let plan = crate::plan::diff(&desired("postgres:15"), &live(17), &DiffOptions::default());
        assert!(plan.actions.is_empty(), "{:?}", plan.actions);
        assert!(
            plan.errors[0]
                .message
                .contains("older than the data directory's 17")
        );

        let mut undeclared = desired("postgres:17");
        if let Some(container) = &mut undeclared.container {
            container.upgrade = None;
        }
        let plan = crate::plan::diff(&undeclared, &live(15), &DiffOptions::default());
        assert!(plan.actions.is_empty(), "{:?}", plan.actions);
        assert!(plan.errors[0].message.contains("Declare one"));
    }

    #[test]
    fn a_setting_the_new_major_version_removed_is_a_plan_error() {
        let mut want = desired("postgres:17");
        want.settings.insert(
            "old_snapshot_threshold".to_owned(),
            crate::model::Setting::default(),
        );
        let plan = crate::plan::diff(&want, &live(15), &DiffOptions::default());
        assert!(
            !plan
                .actions
                .iter()
                .any(|action| action.kind == ActionKind::Upgrade),
            "{:?}",
            plan.actions
        );
        assert!(
            plan.errors.iter().any(|error| error
                .message
                .contains("`old_snapshot_threshold` (removed in PostgreSQL 17; no replacement)")),
            "{:?}",
            plan.errors
        );
    }

    #[test]
    fn an_extension_the_new_image_lacks_is_a_plan_error_and_sizes_give_the_downtime() {
        let want = desired("postgres:17");
        let mut before = live(15);
        let catalog = crate::model::upgrade::image_extensions(&[
            (
                "pg_trgm.control".to_owned(),
                Some("default_version = '1.6'\n".to_owned()),
            ),
            ("pg_trgm--1.6.sql".to_owned(), None),
        ]);
        before.upgrade = Some(crate::model::upgrade::UpgradeFacts {
            database_sizes: [("shop".to_owned(), 3 << 30)].into(),
            installed: [(
                "shop".to_owned(),
                [
                    ("pg_trgm".to_owned(), "1.6".to_owned()),
                    ("pgspec_only_old".to_owned(), "1.0".to_owned()),
                ]
                .into(),
            )]
            .into(),
            image_extensions: Some(catalog),
            unread: None,
        });
        let plan = crate::plan::diff(&want, &before, &DiffOptions::default());
        assert!(plan.actions.is_empty(), "{:?}", plan.actions);
        assert!(
            plan.errors[0]
                .message
                .contains("extension `pgspec_only_old` 1.0 (in `shop`) is not in the new image"),
            "{:?}",
            plan.errors
        );

        if let Some(facts) = &mut before.upgrade {
            facts.installed.clear();
        }
        let plan = crate::plan::diff(&want, &before, &DiffOptions::default());
        assert!(plan.errors.is_empty(), "{:?}", plan.errors);
        assert!(plan.notes.is_empty(), "{:?}", plan.notes);
        assert!(
            plan.actions[0]
                .reason
                .contains("expected about 60 s for 3.0 GiB in 1 database(s)"),
            "{}",
            plan.actions[0].reason
        );
    }

    #[test]
    fn an_image_that_is_not_local_is_a_note() {
        let want = desired("postgres:18");
        let plan = crate::plan::diff(&want, &live(15), &DiffOptions::default());
        assert!(
            plan.notes
                .iter()
                .any(|note| note.message.contains("image `postgres:18` is not local")),
            "{:?}",
            plan.notes
        );
        let plan = crate::plan::diff(&desired("postgres:17"), &live(15), &DiffOptions::default());
        assert!(
            !plan
                .notes
                .iter()
                .any(|note| note.message.contains("is not local")),
            "{:?}",
            plan.notes
        );
    }

    #[test]
    fn a_running_pooler_is_paused_for_the_copy_and_resumed_after_the_replace() {
        let mut want = desired("postgres:17");
        want.pooler = Some(crate::model::Pooler {
            image: "pgbouncer:1".to_owned(),
            port: 6432,
            ..crate::model::Pooler::default()
        });
        let mut before = live(15);
        before.pooler = Some(crate::model::Pooler {
            image: "pgbouncer:1".to_owned(),
            port: 6432,
            ..crate::model::Pooler::default()
        });
        let plan = crate::plan::diff(&want, &before, &DiffOptions::default());
        let steps = |kind: ActionKind| -> Vec<Step> {
            plan.actions
                .iter()
                .filter(|action| action.kind == kind && action.object == ObjectKind::Container)
                .flat_map(|action| action.steps.clone())
                .collect()
        };
        assert!(
            matches!(
                &steps(ActionKind::Upgrade)[..],
                [Step::Docker(DockerStep::UpgradeData { pooler: Some(name), .. })]
                    if name == "ledger-pgbouncer"
            ),
            "{:?}",
            plan.actions
        );
        assert!(
            matches!(
                steps(ActionKind::Replace).last(),
                Some(Step::Docker(DockerStep::ResumePooler { name })) if name == "ledger-pgbouncer"
            ),
            "{:?}",
            plan.actions
        );

        // A pause an interrupted apply left is resumed by the next plan.
        let mut paused = crate::plan::simulate(&before, &plan);
        if let Some(pooler) = &mut paused.pooler {
            pooler.paused = true;
        }
        let plan = crate::plan::diff(&want, &paused, &DiffOptions::default());
        assert!(
            plan.actions
                .iter()
                .any(|action| action.object == ObjectKind::Pooler
                    && action
                        .steps
                        .iter()
                        .any(|step| matches!(step, Step::Docker(DockerStep::ResumePooler { .. })))),
            "{:?}",
            plan.actions
        );
        let after = crate::plan::simulate(&paused, &plan);
        assert!(!after.pooler.is_some_and(|pooler| pooler.paused));
    }
}
