//! Properties of the diff, checked with generated deployments and the
//! in-memory model of apply (`plan::simulate`): convergence, idempotence,
//! determinism and safety.

use std::collections::BTreeMap;

use pgspec::model::DiffOptions;
use pgspec::model::access;
use pgspec::model::{
    Acl, AclObject, AvailableExtension, Container, ContainerState, Database, Deployment, Extension,
    Grant, GrantTarget, PasswordState, Role, Schema, ServerInfo, Setting,
};
use pgspec::plan::{self, ActionKind, render};
use pgspec::secret::Secret;
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
        current_user: None,
        data_directory: None,
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
            desired_grants(),
            live_acls("postgres".to_owned()),
            (
                role_settings(),
                proptest::option::of(proptest::option::of(proptest::sample::select(
                    &["app", "postgres"][..],
                ))),
            ),
        ),
        0..3,
    )
    .prop_map(move |databases| {
        databases
            .into_iter()
            .map(
                |(name, (extensions, database_owner, grants, acls, (settings, audit)))| {
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
                    let database_owner = if owner {
                        Some(database_owner.unwrap_or("postgres").to_owned())
                    } else {
                        database_owner.map(str::to_owned)
                    };
                    // The desired side states grants; the live side (`owner`
                    // set) holds privileges, the `public` schema and tables.
                    let (grants, acls, schemas) = if owner {
                        let acls = acls
                            .into_iter()
                            .map(|acl| match acl.object {
                                AclObject::Default { schema, object, .. } => Acl {
                                    object: AclObject::Default {
                                        schema,
                                        object,
                                        for_role: database_owner.clone().unwrap_or_default(),
                                    },
                                    ..acl
                                },
                                _ => acl,
                            })
                            .collect();
                        let schemas = BTreeMap::from([(
                            "public".to_owned(),
                            Schema {
                                name: "public".to_owned(),
                                owner: Some("pg_database_owner".to_owned()),
                            },
                        )]);
                        (Vec::new(), acls, schemas)
                    } else {
                        (grants, Vec::new(), BTreeMap::new())
                    };
                    // A schema with an awkward name, owned or not; live always
                    // knows the owner.
                    let mut schemas = schemas;
                    if let Some(audit_owner) = audit {
                        let schema_owner = match (owner, audit_owner) {
                            (true, None) => Some("postgres".to_owned()),
                            (_, audit_owner) => audit_owner.map(str::to_owned),
                        };
                        schemas.insert(
                            "Audit Schema".to_owned(),
                            Schema {
                                name: "Audit Schema".to_owned(),
                                owner: schema_owner,
                            },
                        );
                    }
                    let database = Database {
                        name: name.clone(),
                        owner: database_owner,
                        extensions,
                        grants,
                        acls,
                        schemas,
                        settings,
                        ..Database::default()
                    };
                    (name, database)
                },
            )
            .collect()
    })
}

const ROLES: &[&str] = &["app", "reporting", "Odd Role", "x\"; DROP ROLE y; --"];
const PARENTS: &[&str] = &["pg_read_all_data", "app"];
const GRANTEES: &[&str] = &["reporting", "PUBLIC", "Odd \"Grantee\"/x.y"];
const TABLES: &[&str] = &["items", "Odd \"Table\"/t.u"];

/// Settings as the live server describes them: name, unit, type, context.
const SETTINGS: &[(&str, Option<&str>, &str, &str)] = &[
    ("shared_buffers", Some("8kB"), "integer", "postmaster"),
    ("work_mem", Some("kB"), "integer", "user"),
    ("statement_timeout", Some("ms"), "integer", "user"),
    ("jit", None, "bool", "user"),
    ("shared_preload_libraries", None, "string", "postmaster"),
];

/// Spellings of values for each setting, desired and live alike.
fn setting_values(name: &str) -> &'static [&'static str] {
    match name {
        "shared_buffers" => &["128MB", "16384", "256MB", "32768", "262144kB"],
        "work_mem" => &["4MB", "4096", "8MB", "8192"],
        "statement_timeout" => &["30s", "30000", "1min", "0"],
        "jit" => &["on", "off", "true", "false"],
        _ => &["pg_stat_statements", "pg_stat_statements, auto_explain", ""],
    }
}

fn desired_settings() -> impl Strategy<Value = std::collections::BTreeMap<String, Setting>> {
    proptest::collection::btree_map(
        proptest::sample::select(SETTINGS).prop_map(|(name, ..)| name.to_owned()),
        0..8usize,
        0..4,
    )
    .prop_map(|chosen| {
        chosen
            .into_iter()
            .map(|(name, index)| {
                let values = setting_values(&name);
                let value = values[index % values.len()].to_owned();
                (
                    name,
                    Setting {
                        value,
                        ..Setting::default()
                    },
                )
            })
            .collect()
    })
}

fn live_settings() -> impl Strategy<Value = std::collections::BTreeMap<String, Setting>> {
    proptest::collection::vec((0..8usize, proptest::option::of(0..8usize)), SETTINGS.len())
        .prop_map(|indexes| {
            SETTINGS
                .iter()
                .zip(indexes)
                .map(|((name, unit, vartype, context), (value, pending))| {
                    let values = setting_values(name);
                    // The server reports numbers in the setting's unit.
                    let live_value =
                        |index: usize| {
                            let text = values[index % values.len()];
                            match *name {
                                "shared_buffers"
                                    if text.ends_with("MB") || text.ends_with("kB") =>
                                {
                                    if text == "128MB" { "16384" } else { "32768" }
                                }
                                "work_mem" if text.ends_with("MB") => {
                                    if text == "4MB" {
                                        "4096"
                                    } else {
                                        "8192"
                                    }
                                }
                                "statement_timeout" if text == "30s" => "30000",
                                "statement_timeout" if text == "1min" => "60000",
                                "jit" if text == "true" => "on",
                                "jit" if text == "false" => "off",
                                _ => text,
                            }
                            .to_owned()
                        };
                    (
                        (*name).to_owned(),
                        Setting {
                            value: live_value(value),
                            unit: unit.map(str::to_owned),
                            vartype: Some((*vartype).to_owned()),
                            context: Some((*context).to_owned()),
                            source: Some("default".to_owned()),
                            pending_restart: pending.is_some() && *context == "postmaster",
                            pending_value: pending
                                .map(|index| values[index % values.len()].to_owned()),
                        },
                    )
                })
                .collect()
        })
}

fn role_settings() -> impl Strategy<Value = std::collections::BTreeMap<String, String>> {
    proptest::collection::btree_map(
        proptest::sample::select(&["statement_timeout", "work_mem"][..]).prop_map(str::to_owned),
        0..8usize,
        0..3,
    )
    .prop_map(|chosen| {
        chosen
            .into_iter()
            .map(|(name, index)| {
                let values = setting_values(&name);
                let value = values[index % values.len()].to_owned();
                (name, value)
            })
            .collect()
    })
}

fn role(live: bool) -> impl Strategy<Value = Role> {
    (
        proptest::collection::vec(any::<bool>(), 6),
        proptest::sample::select(&[-1i64, 5, 20][..]),
        role_settings(),
        proptest::sample::subsequence(PARENTS, 0..=PARENTS.len()),
        any::<bool>(),
        proptest::sample::select(
            &[
                PasswordState::Matches,
                PasswordState::Differs,
                PasswordState::Md5,
                PasswordState::Missing,
                PasswordState::Unverifiable,
            ][..],
        ),
    )
        .prop_map(
            move |(flags, connection_limit, settings, member_of, password, state)| Role {
                name: String::new(),
                login: flags[0],
                createdb: flags[1],
                createrole: flags[2],
                replication: flags[3],
                bypassrls: flags[4],
                inherit: flags[5],
                connection_limit,
                settings,
                member_of: member_of.into_iter().map(str::to_owned).collect(),
                password: (!live && password).then(|| Secret::env("PGSPEC_PROPERTY_PASSWORD")),
                password_state: (live && password).then_some(state),
                managed: live && password,
                ..Role::default()
            },
        )
}

fn roles(live: bool) -> impl Strategy<Value = std::collections::BTreeMap<String, Role>> {
    proptest::collection::btree_map(
        proptest::sample::select(ROLES).prop_map(str::to_owned),
        role(live),
        0..3,
    )
    .prop_map(|roles| {
        roles
            .into_iter()
            .map(|(name, role)| (name.clone(), Role { name, ..role }))
            .collect()
    })
}

/// Privilege subsets for a kind of object.
fn privileges(kind: &'static [&'static str]) -> impl Strategy<Value = Vec<String>> {
    proptest::sample::subsequence(kind, 0..=kind.len())
        .prop_map(|chosen| chosen.into_iter().map(str::to_owned).collect())
}

const DATABASE_PRIVILEGES: &[&str] = &["CONNECT", "CREATE", "TEMPORARY"];
const SCHEMA_PRIVILEGES: &[&str] = &["CREATE", "USAGE"];
const TABLE_PRIVILEGES: &[&str] = &["DELETE", "INSERT", "SELECT", "UPDATE"];

fn targets() -> Vec<(GrantTarget, &'static [&'static str])> {
    let public = || "public".to_owned();
    vec![
        (GrantTarget::Database, DATABASE_PRIVILEGES),
        (GrantTarget::Schema { schema: public() }, SCHEMA_PRIVILEGES),
        (
            GrantTarget::Tables {
                schema: public(),
                names: None,
            },
            TABLE_PRIVILEGES,
        ),
        (
            GrantTarget::Tables {
                schema: public(),
                names: Some(vec!["items".to_owned()]),
            },
            TABLE_PRIVILEGES,
        ),
        (
            GrantTarget::Default {
                schema: public(),
                object: "tables".to_owned(),
                for_role: None,
            },
            TABLE_PRIVILEGES,
        ),
    ]
}

fn desired_grants() -> impl Strategy<Value = Vec<Grant>> {
    proptest::collection::btree_map(
        (proptest::sample::select(GRANTEES), 0..targets().len()),
        proptest::sample::subsequence(TABLE_PRIVILEGES, 1..=2),
        0..4,
    )
    .prop_map(|chosen| {
        let targets = targets();
        chosen
            .into_iter()
            .map(|((grantee, target), table_privileges)| {
                let (target, kind) = targets[target].clone();
                // Privileges that fit the kind of object, never none.
                let mut privileges: Vec<String> = if kind == TABLE_PRIVILEGES {
                    table_privileges.into_iter().map(str::to_owned).collect()
                } else {
                    vec![kind[table_privileges.len() % kind.len()].to_owned()]
                };
                privileges.sort();
                Grant {
                    grantee: grantee.to_owned(),
                    target,
                    privileges,
                }
            })
            .collect()
    })
}

/// The privileges live holds in one database: on the database, `public`,
/// its tables, and default privileges of the owner.
fn live_acls(owner: String) -> impl Strategy<Value = Vec<Acl>> {
    proptest::collection::vec(
        (
            privileges(DATABASE_PRIVILEGES),
            privileges(SCHEMA_PRIVILEGES),
            privileges(TABLE_PRIVILEGES),
            privileges(TABLE_PRIVILEGES),
            privileges(TABLE_PRIVILEGES),
        ),
        GRANTEES.len(),
    )
    .prop_map(move |per_grantee| {
        let public = || "public".to_owned();
        let mut objects: Vec<(AclObject, usize)> = vec![
            (AclObject::Database, 0),
            (AclObject::Schema { schema: public() }, 1),
            (
                AclObject::Table {
                    schema: public(),
                    name: TABLES[0].to_owned(),
                },
                2,
            ),
            (
                AclObject::Table {
                    schema: public(),
                    name: TABLES[1].to_owned(),
                },
                3,
            ),
            (
                AclObject::Default {
                    schema: public(),
                    object: "tables".to_owned(),
                    for_role: owner.clone(),
                },
                4,
            ),
        ];
        objects.sort();
        objects
            .into_iter()
            .map(|(object, column)| Acl {
                object,
                privileges: GRANTEES
                    .iter()
                    .zip(&per_grantee)
                    .map(|(grantee, held)| {
                        let held = match column {
                            0 => &held.0,
                            1 => &held.1,
                            2 => &held.2,
                            3 => &held.3,
                            _ => &held.4,
                        };
                        ((*grantee).to_owned(), held.clone())
                    })
                    .filter(|(_, held)| !held.is_empty())
                    .collect(),
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
        // The data directory is on the named volume, as observe proves it
        // for the containers pgspec makes.
        pgdata: "/var/lib/postgresql/data".to_owned(),
        data_kind: "volume".to_owned(),
        memory_bytes: Some(memory_gib << 30),
        superuser: "postgres".to_owned(),
        state,
        volume_exists: true,
        ..Container::default()
    }
}

/// Client authentication rules from a small pool, some not in the
/// server's notation (`fd00:0::/8`) or missing an option the server adds
/// (`cert`), so that convergence goes through the canonical form.
fn access_rules() -> impl Strategy<Value = Option<access::Access>> {
    let rule = |kind: &str, user: &str, address: Option<&str>, method: &str| access::AccessRule {
        kind: kind.to_owned(),
        databases: vec!["all".to_owned()],
        users: vec![user.to_owned()],
        address: address.map(str::to_owned),
        method: method.to_owned(),
        options: Default::default(),
    };
    let pool = vec![
        rule("local", "postgres", None, "peer"),
        rule("host", "app", Some("10.0.0.0/8"), "scram-sha-256"),
        rule("host", "app", Some("fd00:0::/8"), "md5"),
        rule("hostssl", "+staff", Some("all"), "cert"),
        rule("host", "all", Some("all"), "scram-sha-256"),
    ];
    proptest::option::of(
        proptest::collection::vec(proptest::sample::select(pool), 0..4).prop_map(|rules| {
            access::Access {
                rules,
                ..access::Access::default()
            }
        }),
    )
}

fn deployments() -> impl Strategy<Value = (Deployment, Deployment, DiffOptions)> {
    (
        databases(desired_extension(), false),
        databases(live_extension(), true),
        any::<bool>(),
        (
            desired_settings(),
            live_settings(),
            roles(false),
            roles(true),
        ),
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
        (access_rules(), access_rules()),
    )
        .prop_map(
            |(
                desired_databases,
                live_databases,
                prune,
                (desired_settings, live_settings, desired_roles, live_roles),
                live_container,
                (desired_access, live_access),
            )| {
                let desired = Deployment {
                    name: "prop".to_owned(),
                    container: Some(container(ContainerState::Running, 2, "postgres:17.2")),
                    settings: desired_settings,
                    roles: desired_roles,
                    databases: desired_databases,
                    access: desired_access,
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
                    settings: live_settings,
                    roles: live_roles,
                    databases: live_databases,
                    access: live_access.map(|access| access::Access {
                        rules: access
                            .rules
                            .iter()
                            .map(access::AccessRule::canonical)
                            .collect(),
                        ..access
                    }),
                    server: Some(server()),
                    ..Deployment::default()
                };
                (
                    desired,
                    live,
                    DiffOptions {
                        prune,
                        ..DiffOptions::default()
                    },
                )
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
        let mut live = live;
        // A value waiting in the configuration files is a change about to
        // happen, not part of a settled deployment.
        for setting in live.settings.values_mut() {
            setting.pending_value = None;
            setting.pending_restart = false;
        }
        let mut desired = live.clone();
        desired.server = None;
        if let Some(container) = &mut desired.container {
            container.state = ContainerState::Running;
        }
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
                match path.as_slice() {
                    [(kind, role)] if kind == "role" => {
                        let role = &live.roles[role];
                        prop_assert!(role.managed && !role.superuser);
                    }
                    [(_, database), (_, extension)] => {
                        prop_assert!(live.databases[database].extensions[extension].managed);
                    }
                    _ => prop_assert!(false, "unexpected delete: {}", action.address),
                }
            }
        }
    }
}
