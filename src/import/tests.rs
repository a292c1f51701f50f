//! The tests of a whole import, and the small live deployment they import.

use super::{ImportOptions, import};
use crate::live::all::{DatabaseSurvey, Survey};
use crate::model::{Database, Role, Setting};
use crate::spec::file::ConnectionSpec;

/// A small live deployment: roles, one database with grants of every
/// kind, extensions and an index, settings written with ALTER SYSTEM.
fn survey() -> Survey {
    use crate::live::all::{FileSetting, IndexKey, IndexParts, Relation};
    use crate::model::{Acl, AclObject, AvailableExtension, Extension, Index, Schema, ServerInfo};
    let names = |items: &[&str]| items.iter().map(|item| (*item).to_owned()).collect();
    let acl = |object: AclObject, entries: &[(&str, &[&str])]| Acl {
        object,
        privileges: entries
            .iter()
            .map(|(grantee, privileges)| ((*grantee).to_owned(), names(privileges)))
            .collect(),
    };
    // What ALL grants on a table of the fixture's PostgreSQL 17.
    let all_table = crate::model::privileges::all_privileges("tables", 170_002);
    let role = |name: &str, login: bool| Role {
        name: name.to_owned(),
        login,
        inherit: true,
        connection_limit: -1,
        ..Role::default()
    };
    let setting = |value: &str, vartype: &str, context: &str| Setting {
        value: value.to_owned(),
        vartype: Some(vartype.to_owned()),
        context: Some(context.to_owned()),
        source: Some("configuration file".to_owned()),
        ..Setting::default()
    };
    let file_setting = |value: &str, applied: bool, error: Option<&str>| FileSetting {
        value: value.to_owned(),
        applied,
        error: error.map(str::to_owned),
    };
    let app = Database {
        name: "app".to_owned(),
        owner: Some("app".to_owned()),
        connection_limit: Some(-1),
        encoding: Some("UTF8".to_owned()),
        locale: Some("C.UTF-8".to_owned()),
        extensions: [
            ("plpgsql", "1.0", "pg_catalog"),
            ("pg_trgm", "1.6", "public"),
            ("hstore", "1.7", "s"),
        ]
        .into_iter()
        .map(|(name, version, schema)| {
            (
                name.to_owned(),
                Extension {
                    name: name.to_owned(),
                    version: Some(version.to_owned()),
                    schema: Some(schema.to_owned()),
                    managed: false,
                },
            )
        })
        .collect(),
        schemas: [("public", "pg_database_owner"), ("s", "app")]
            .into_iter()
            .map(|(name, owner)| {
                (
                    name.to_owned(),
                    Schema {
                        name: name.to_owned(),
                        owner: Some(owner.to_owned()),
                    },
                )
            })
            .collect(),
        acls: vec![
            acl(
                AclObject::Database,
                &[
                    ("app", &["CONNECT", "CREATE", "TEMPORARY"]),
                    ("PUBLIC", &["CONNECT"]),
                    ("readers", &["CONNECT"]),
                ],
            ),
            acl(
                AclObject::Schema {
                    schema: "public".to_owned(),
                },
                &[
                    ("pg_database_owner", &["CREATE", "USAGE"]),
                    ("PUBLIC", &["USAGE"]),
                ],
            ),
            acl(
                AclObject::Schema {
                    schema: "s".to_owned(),
                },
                &[("app", &["CREATE", "USAGE"]), ("readers", &["USAGE"])],
            ),
            acl(
                AclObject::Table {
                    schema: "s".to_owned(),
                    name: "t1".to_owned(),
                },
                &[("app", all_table), ("readers", &["SELECT"])],
            ),
            acl(
                AclObject::Table {
                    schema: "s".to_owned(),
                    name: "t2".to_owned(),
                },
                &[
                    ("app", all_table),
                    ("readers", &["SELECT"]),
                    ("app_rw", all_table),
                ],
            ),
            acl(
                AclObject::Default {
                    schema: "s".to_owned(),
                    object: "tables".to_owned(),
                    for_role: "app".to_owned(),
                },
                &[("readers", &["SELECT"])],
            ),
            acl(
                AclObject::Default {
                    schema: String::new(),
                    object: "functions".to_owned(),
                    for_role: "app".to_owned(),
                },
                &[("app", &["EXECUTE"])],
            ),
        ],
        indexes: [(
            "s.idx_t1_a".to_owned(),
            Index {
                name: "idx_t1_a".to_owned(),
                schema: "s".to_owned(),
                table: "t1".to_owned(),
                ..Index::default()
            },
        )]
        .into_iter()
        .collect(),
        ..Database::default()
    };
    let app_survey = DatabaseSurvey {
        schemas: [("public".to_owned(), false), ("s".to_owned(), false)]
            .into_iter()
            .collect(),
        relations: [(
            "s".to_owned(),
            ["t1", "t2"]
                .into_iter()
                .map(|name| {
                    (
                        name.to_owned(),
                        Relation {
                            kind: "r".to_owned(),
                            owner: "app".to_owned(),
                            extension: false,
                        },
                    )
                })
                .collect(),
        )]
        .into_iter()
        .collect(),
        functions: Vec::new(),
        indexes: [(
            "s.idx_t1_a".to_owned(),
            IndexParts {
                schema: "s".to_owned(),
                table: "t1".to_owned(),
                name: "idx_t1_a".to_owned(),
                method: "btree".to_owned(),
                key_count: 1,
                predicate: Some("(a > 0)".to_owned()),
                keys: vec![IndexKey {
                    column: Some("a".to_owned()),
                    descending: true,
                    nulls_first: true,
                    ..IndexKey::default()
                }],
                ..IndexParts::default()
            },
        )]
        .into_iter()
        .collect(),
    };
    let postgres = Database {
        name: "postgres".to_owned(),
        owner: Some("postgres".to_owned()),
        connection_limit: Some(-1),
        encoding: Some("UTF8".to_owned()),
        locale: Some("C.UTF-8".to_owned()),
        ..Database::default()
    };
    Survey {
        deployment: crate::model::Deployment {
            settings: [
                ("work_mem", setting("8192", "integer", "user")),
                ("shared_buffers", setting("16384", "integer", "postmaster")),
                ("jit", setting("off", "bool", "user")),
            ]
            .into_iter()
            .map(|(name, setting)| (name.to_owned(), setting))
            .collect(),
            roles: [
                Role {
                    superuser: true,
                    createdb: true,
                    createrole: true,
                    replication: true,
                    bypassrls: true,
                    ..role("postgres", true)
                },
                Role {
                    member_of: names(&["readers"]),
                    settings: [("statement_timeout".to_owned(), "30s".to_owned())]
                        .into_iter()
                        .collect(),
                    ..role("app", true)
                },
                role("app_rw", true),
                role("readers", false),
                Role {
                    connection_limit: 5,
                    ..role("legacy", true)
                },
            ]
            .into_iter()
            .map(|role| (role.name.clone(), role))
            .collect(),
            databases: [("app".to_owned(), app), ("postgres".to_owned(), postgres)]
                .into_iter()
                .collect(),
            server: Some(ServerInfo {
                version_num: 170_002,
                current_user: Some("postgres".to_owned()),
                data_directory: None,
                available_extensions: [
                    ("pg_trgm", "1.6", &["1.5", "1.6"][..]),
                    ("hstore", "1.8", &["1.7", "1.8"][..]),
                ]
                .into_iter()
                .map(|(name, default, versions)| {
                    (
                        name.to_owned(),
                        AvailableExtension {
                            default_version: Some(default.to_owned()),
                            versions: names(versions),
                            requires: Vec::new(),
                        },
                    )
                })
                .collect(),
            }),
            ..crate::model::Deployment::default()
        },
        bootstrap_superuser: "postgres".to_owned(),
        current_user: "postgres".to_owned(),
        passwords: Some(
            [
                ("postgres", false),
                ("app", false),
                ("app_rw", false),
                ("legacy", true),
            ]
            .into_iter()
            .map(|(name, md5)| (name.to_owned(), md5))
            .collect(),
        ),
        system_settings: Some(
            [
                ("work_mem", file_setting("8MB", true, None)),
                (
                    "shared_buffers",
                    file_setting("256MB", false, Some("setting could not be applied")),
                ),
                ("jit", file_setting("off", true, None)),
                (
                    "bogus",
                    file_setting("x", false, Some("unrecognized parameter")),
                ),
            ]
            .into_iter()
            .map(|(name, setting)| (name.to_owned(), setting))
            .collect(),
        ),
        template_encoding: Some("UTF8".to_owned()),
        template_locale: Some("C.UTF-8".to_owned()),
        role_database_settings: vec![("app".to_owned(), "postgres".to_owned())],
        databases: [
            ("app".to_owned(), app_survey),
            ("postgres".to_owned(), DatabaseSurvey::default()),
        ]
        .into_iter()
        .collect(),
    }
}

#[test]
fn a_live_deployment_becomes_a_tidy_spec() {
    let options = ImportOptions {
        name: "ledger".to_owned(),
        connection: Some(ConnectionSpec {
            host: Some("db.internal".to_owned()),
            port: Some(5432),
            user: Some("postgres".to_owned()),
            ..ConnectionSpec::default()
        }),
        role_pattern: Some("*".to_owned()),
        schema_url: "../schema/pgspec.schema.json".to_owned(),
        ..ImportOptions::default()
    };
    let imported = import(&survey(), &options);
    let variables: Vec<&str> = imported
        .variables
        .iter()
        .map(|variable| variable.name.as_str())
        .collect();
    assert_eq!(
        variables,
        [
            "PGSPEC_PASSWORD_APP",
            "PGSPEC_PASSWORD_APP_RW",
            "PGSPEC_PASSWORD_LEGACY"
        ]
    );
    let text = imported.render();
    // What it writes is a valid spec.
    crate::spec::load_str(std::path::Path::new("imported.yaml"), &text)
        .and_then(|loaded| loaded.validate())
        .unwrap_or_else(|diagnostics| panic!("{}", diagnostics.render(false)));
    insta::assert_snapshot!(text);
}

#[test]
fn a_role_pattern_leaves_references_out_with_a_note() {
    let options = ImportOptions {
        name: "ledger".to_owned(),
        role_pattern: Some("app*".to_owned()),
        schema_url: "schema.json".to_owned(),
        ..ImportOptions::default()
    };
    let imported = import(&survey(), &options);
    let roles: Vec<&str> = imported
        .file
        .roles
        .iter()
        .map(|role| role.name.as_str())
        .collect();
    assert_eq!(roles, ["app", "app_rw"]);
    assert!(imported.file.roles[0].member_of.is_empty());
    let text = imported.render();
    assert!(
        text.contains("its membership in `readers` is left out"),
        "{text}"
    );
    assert!(
        text.contains("grants to `readers` on tables in schema `s` are left out"),
        "{text}"
    );
    assert!(
        text.contains("Roles not matching --role-pattern: `legacy`, `readers`."),
        "{text}"
    );
}
