//! Properties of the diff, checked with generated deployments and the
//! in-memory model of apply (`plan::simulate`): convergence, idempotence,
//! determinism and safety.

use std::collections::BTreeMap;

use pgspec::model::{
    AvailableExtension, Container, ContainerState, Database, Deployment, Extension, ServerInfo,
};
use pgspec::plan::{self, ActionKind, render};
use pgspec::spec::DiffOptions;
use proptest::prelude::*;

const EXTENSIONS: &[&str] = &[
    "pg_trgm",
    "hstore",
    "uuid-ossp",
    "Odd Name",
    "x\"; DROP TABLE t; --",
];
const DATABASES: &[&str] = &["app", "Ünïcode db", "a/b", "postgres"];
const VERSIONS: &[&str] = &["1.0", "1.1", "2.0"];

fn server() -> ServerInfo {
    ServerInfo {
        version_num: 170_000,
        available_extensions: EXTENSIONS
            .iter()
            .map(|name| {
                (
                    (*name).to_owned(),
                    AvailableExtension {
                        default_version: Some("2.0".to_owned()),
                        versions: VERSIONS
                            .iter()
                            .map(|version| (*version).to_owned())
                            .collect(),
                        requires: Vec::new(),
                    },
                )
            })
            .collect(),
    }
}

fn desired_extension() -> impl Strategy<Value = Extension> {
    (
        proptest::option::of(proptest::sample::select(VERSIONS)),
        proptest::option::of(proptest::sample::select(&["public", "ext"][..])),
    )
        .prop_map(|(version, schema)| Extension {
            name: String::new(),
            version: version.map(str::to_owned),
            schema: schema.map(str::to_owned),
            managed: false,
        })
}

fn live_extension() -> impl Strategy<Value = Extension> {
    (
        proptest::sample::select(VERSIONS),
        proptest::sample::select(&["public", "ext"][..]),
        any::<bool>(),
    )
        .prop_map(|(version, schema, managed)| Extension {
            name: String::new(),
            version: Some(version.to_owned()),
            schema: Some(schema.to_owned()),
            managed,
        })
}

fn databases(
    extension: impl Strategy<Value = Extension>,
    owner: bool,
) -> impl Strategy<Value = BTreeMap<String, Database>> {
    proptest::collection::btree_map(
        proptest::sample::select(DATABASES).prop_map(str::to_owned),
        (
            proptest::collection::btree_map(
                proptest::sample::select(EXTENSIONS).prop_map(str::to_owned),
                extension,
                0..4,
            ),
            proptest::option::of(proptest::sample::select(&["postgres", "app_owner"][..])),
        ),
        0..3,
    )
    .prop_map(move |databases| {
        databases
            .into_iter()
            .map(|(name, (extensions, database_owner))| {
                let extensions = extensions
                    .into_iter()
                    .map(|(extension_name, extension)| {
                        (
                            extension_name.clone(),
                            Extension {
                                name: extension_name,
                                ..extension
                            },
                        )
                    })
                    .collect();
                let database = Database {
                    name: name.clone(),
                    owner: if owner {
                        Some(database_owner.unwrap_or("postgres").to_owned())
                    } else {
                        database_owner.map(str::to_owned)
                    },
                    extensions,
                    ..Database::default()
                };
                (name, database)
            })
            .collect()
    })
}

fn container(state: ContainerState, memory_gib: i64, image: &str) -> Container {
    Container {
        name: "prop-postgres".to_owned(),
        image: image.to_owned(),
        port: 5432,
        bind_address: "127.0.0.1".to_owned(),
        volume: "prop-pgdata".to_owned(),
        data_mount: "/var/lib/postgresql/data".to_owned(),
        memory_bytes: Some(memory_gib << 30),
        superuser: "postgres".to_owned(),
        state,
        volume_exists: true,
        ..Container::default()
    }
}

fn deployments() -> impl Strategy<Value = (Deployment, Deployment, DiffOptions)> {
    (
        databases(desired_extension(), false),
        databases(live_extension(), true),
        any::<bool>(),
        proptest::option::of((
            proptest::sample::select(
                &[
                    ContainerState::Running,
                    ContainerState::Stopped,
                    ContainerState::Missing,
                ][..],
            ),
            1..3i64,
            proptest::sample::select(&["postgres:17.1", "postgres:17.2"][..]),
        )),
    )
        .prop_map(
            |(desired_databases, live_databases, prune, live_container)| {
                let desired = Deployment {
                    name: "prop".to_owned(),
                    container: Some(container(ContainerState::Running, 2, "postgres:17.2")),
                    databases: desired_databases,
                    ..Deployment::default()
                };
                let live = Deployment {
                    name: "prop".to_owned(),
                    container: Some(match live_container {
                        Some((state, memory, image)) => container(state, memory, image),
                        None => Container {
                            state: ContainerState::Missing,
                            volume_exists: false,
                            ..container(ContainerState::Missing, 2, "")
                        },
                    }),
                    databases: live_databases,
                    server: Some(server()),
                    ..Deployment::default()
                };
                (desired, live, DiffOptions { prune })
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Applying a plan, then planning again, gives nothing to do.
    #[test]
    fn apply_converges((desired, live, options) in deployments()) {
        let first = plan::diff(&desired, &live, &options);
        prop_assert!(first.errors.is_empty(), "{:?}", first.errors);
        let after = plan::simulate(&live, &first);
        let second = plan::diff(&desired, &after, &options);
        prop_assert!(
            second.actions.is_empty(),
            "second plan not empty:\n{}",
            render::text(&second, render::TextOptions::default())
        );
    }

    /// A live deployment used as the desired one has nothing to do.
    #[test]
    fn deployment_against_itself_is_empty((_desired, live, options) in deployments()) {
        let mut desired = live.clone();
        desired.server = None;
        if let Some(container) = &mut desired.container {
            container.state = ContainerState::Running;
        }
        let mut live = live;
        if let Some(container) = &mut live.container {
            container.state = ContainerState::Running;
        }
        let plan = plan::diff(&desired, &live, &options);
        prop_assert!(plan.actions.is_empty(), "{}", render::text(&plan, render::TextOptions::default()));
    }

    /// The same inputs render to the same bytes.
    #[test]
    fn rendering_is_deterministic((desired, live, options) in deployments()) {
        let one = plan::diff(&desired, &live, &options);
        let two = plan::diff(&desired.clone(), &live.clone(), &options);
        prop_assert_eq!(render::json(&one), render::json(&two));
        prop_assert_eq!(
            render::text(&one, render::TextOptions::default()),
            render::text(&two, render::TextOptions::default())
        );
    }

    /// No plan drops a database, and nothing is deleted unless pruning is on
    /// and pgspec created it.
    #[test]
    fn plans_never_drop_data_or_others_objects((desired, live, options) in deployments()) {
        let plan = plan::diff(&desired, &live, &options);
        for action in &plan.actions {
            for step in &action.steps {
                let text = format!("{step:?}").to_uppercase();
                prop_assert!(!text.contains("DROP DATABASE"), "{text}");
                prop_assert!(!text.contains("CASCADE"), "{text}");
                prop_assert!(!text.contains("REMOVEVOLUME"), "{text}");
            }
            if action.kind == ActionKind::Delete {
                prop_assert!(options.prune, "delete without pruning: {}", action.address);
                let path = pgspec::model::address::parse(&action.address);
                let (database, extension) = (&path[0].1, &path[1].1);
                prop_assert!(live.databases[database].extensions[extension].managed);
            }
        }
    }
}
