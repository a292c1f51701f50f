//! Observing a whole deployment, not only what a spec names: the entry
//! point of `pgspec import`.
//!
//! `live::observe` reads the scope of a spec. Here the scope is everything
//! on the server: every database, every schema's privileges, every setting
//! written with `ALTER SYSTEM`. The objects are read by `live::postgres`
//! exactly as a plan reads them (a scope deployment names them all), so an
//! imported spec is compared with the same live model it was made from.
//! Next to that, one query per kind reads the facts only an import needs:
//! the parts of each index, object owners, what belongs to an extension,
//! which roles have a password, and the settings in `postgresql.auto.conf`.
//!
//! Invariant: only reads, like the rest of `live`.

use std::collections::BTreeMap;

use futures_util::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use crate::engine::container::SERVER_PORT;
use crate::engine::{Docker, labels};
use crate::live::docker;
use crate::live::postgres::query_error;
use crate::live::{ObserveError, Target, backup, pooler, postgres};
use crate::model::{
    Backup, Container, Database, Deployment, Grant, GrantTarget, Image, Pooler, Setting, index_key,
};

/// How many databases are read at once.
const CONCURRENT_DATABASES: usize = 8;

/// The default collation (`DEFAULT_COLLATION_OID`).
const DEFAULT_COLLATION: u32 = 100;

/// Which container to read.
#[derive(Debug, Clone)]
pub enum ContainerSelector {
    /// A container by its Docker name.
    Name(String),
    /// The server container carrying `org.pgspec.deployment=<name>`.
    Deployment(String),
}

/// What Docker holds for a deployment's server container.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ContainerSurvey {
    /// The deployment's name: the container's `org.pgspec.deployment`
    /// label, or its name without `-postgres`.
    pub deployment: String,
    /// Whether pgspec created the container (it carries pgspec's labels).
    pub labelled: bool,
    /// The port is one Docker picked, not one the container asks for;
    /// `container.port` is the one it picked.
    pub ephemeral_port: bool,
    pub container: Container,
    pub images: BTreeMap<String, Image>,
    /// The image of the `<deployment>-pgbouncer` container, when one exists.
    pub pooler_image: Option<String>,
    /// The backup container's schedules and destination, when it exists.
    pub backup: Option<Backup>,
    /// The pooler, once `observe_pooler` has read it.
    pub pooler: Option<Pooler>,
    /// The streaming replicas, once `observe_replicas` has read them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<crate::model::replicas::Replication>,
}

/// Finds and reads the server container; `None` when no container has
/// that name or label.
pub async fn observe_container(
    engine: &Docker,
    selector: &ContainerSelector,
) -> Result<Option<ContainerSurvey>, ObserveError> {
    let name = match selector {
        ContainerSelector::Name(name) => name.clone(),
        ContainerSelector::Deployment(deployment) => {
            match find_by_label(engine, deployment).await? {
                Some(name) => name,
                None => return Ok(None),
            }
        }
    };
    let Some(inspect) = crate::engine::container::inspect(engine, &name).await? else {
        return Ok(None);
    };
    let config = inspect.config.clone().unwrap_or_default();
    let container_labels = config.labels.clone().unwrap_or_default();
    let labelled = container_labels.contains_key(labels::DEPLOYMENT);
    let deployment = container_labels
        .get(labels::DEPLOYMENT)
        .cloned()
        .unwrap_or_else(|| {
            name.strip_suffix("-postgres")
                .unwrap_or(name.as_str())
                .to_owned()
        });
    // The data mount: the named volume where PGDATA lives.
    let mounts = inspect.mounts.clone().unwrap_or_default();
    let data_mount = mounts
        .iter()
        .filter(|mount| mount.name.is_some())
        .find(|mount| {
            mount
                .destination
                .as_deref()
                .is_some_and(|destination| destination.starts_with("/var/lib/postgresql"))
        })
        .or_else(|| mounts.iter().find(|mount| mount.name.is_some()));
    let want = Container {
        name: name.clone(),
        image: config.image.clone().unwrap_or_default(),
        volume: data_mount
            .and_then(|mount| mount.name.clone())
            .unwrap_or_default(),
        data_mount: data_mount
            .and_then(|mount| mount.destination.clone())
            .unwrap_or_default(),
        network: format!("{deployment}-net"),
        ..Container::default()
    };
    let observed = docker::observe(engine, &deployment, &want).await?;
    let mut container = observed.container.unwrap_or(want);
    // A port Docker picked (`-p 127.0.0.1::5432`) is configured as 0; the
    // server is reached on the port it picked.
    let ephemeral_port = container.port == 0;
    if ephemeral_port {
        container.port =
            crate::engine::container::published(&inspect, SERVER_PORT).map_or(0, |(_, port)| port);
    }

    let pooler_name = format!("{deployment}-pgbouncer");
    let pooler_image = crate::engine::container::inspect(engine, &pooler_name)
        .await?
        .and_then(|inspect| inspect.config)
        .and_then(|config| config.image);
    let scope = Deployment {
        name: deployment.clone(),
        container: Some(container.clone()),
        ..Deployment::default()
    };
    let backup = backup::observe(engine, &scope).await?;
    Ok(Some(ContainerSurvey {
        deployment,
        labelled,
        ephemeral_port,
        container,
        images: observed.images,
        pooler_image,
        backup,
        pooler: None,
        replication: None,
    }))
}

/// The server container of a deployment, by label: the one that is not
/// the pooler or the backup agent.
async fn find_by_label(engine: &Docker, deployment: &str) -> Result<Option<String>, ObserveError> {
    let names =
        crate::engine::container::names_with_label(engine, labels::DEPLOYMENT, deployment).await?;
    let preferred = format!("{deployment}-postgres");
    if names.contains(&preferred) {
        return Ok(Some(preferred));
    }
    Ok(names.into_iter().find(|name| {
        !name.ends_with("-pgbouncer") && !name.ends_with("-backup") && !name.contains("-verify")
    }))
}

/// Reads the PgBouncer container beside the server the way a plan reads
/// it: its configuration through the admin console (as the server's
/// superuser), its served databases and its auth file, for the login roles
/// of `live`. `None` when there is no pooler container.
pub async fn observe_pooler(
    engine: &Docker,
    target: &Target,
    survey: &ContainerSurvey,
    live: &Deployment,
) -> Result<Option<Pooler>, ObserveError> {
    let Some(image) = &survey.pooler_image else {
        return Ok(None);
    };
    let scope = Deployment {
        name: survey.deployment.clone(),
        container: Some(survey.container.clone()),
        pooler: Some(Pooler {
            image: image.clone(),
            ..Pooler::default()
        }),
        roles: live.roles.clone(),
        ..Deployment::default()
    };
    let observed = pooler::observe(engine, target, &scope).await?;
    Ok(observed.map(|observed| observed.pooler))
}

/// The deployment's streaming replicas (containers and slots); `None` when
/// it has none.
pub async fn observe_replicas(
    engine: &Docker,
    target: &Target,
    survey: &ContainerSurvey,
) -> Result<Option<crate::model::replicas::Replication>, ObserveError> {
    let scope = Deployment {
        name: survey.deployment.clone(),
        container: Some(survey.container.clone()),
        ..Deployment::default()
    };
    super::replicas::observe(engine, target, &scope, true).await
}

/// How to reach the server in a container: its published port on the
/// address it is bound to, as its superuser.
pub fn container_target(container: &Container) -> Target {
    Target {
        host: match container.bind_address.as_str() {
            "0.0.0.0" | "" => "127.0.0.1".to_owned(),
            "::" => "::1".to_owned(),
            address => address.to_owned(),
        },
        port: container.port,
        user: container.superuser.clone(),
        password: None,
        database: "postgres".to_owned(),
        ssl: Default::default(),
        route: Default::default(),
    }
}

/// A setting written with `ALTER SYSTEM`, as `postgresql.auto.conf` holds
/// it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileSetting {
    pub value: String,
    /// Whether the server runs with it (false: waiting for a restart, or
    /// rejected).
    pub applied: bool,
    /// Why the server did not take it, when it did not.
    pub error: Option<String>,
}

/// A relation (table, view, sequence, …) with what an import needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Relation {
    /// `r`, `p`, `v`, `m`, `f` or `S`.
    pub kind: String,
    pub owner: String,
    /// It belongs to an extension.
    pub extension: bool,
}

/// A function with what an import needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Function {
    pub schema: String,
    pub name: String,
    pub arguments: String,
    pub owner: String,
    pub extension: bool,
}

/// One key (or INCLUDE column) of an index, from the catalogs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IndexKey {
    pub column: Option<String>,
    /// The expression as `pg_get_indexdef` prints it.
    pub expression: Option<String>,
    /// The operator class, when it is not the default one, qualified when
    /// it is not visible on the search path.
    pub opclass: Option<String>,
    /// The collation, when it is not the key's own.
    pub collation: Option<String>,
    pub descending: bool,
    pub nulls_first: bool,
}

/// An index taken apart.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IndexParts {
    pub schema: String,
    pub table: String,
    pub name: String,
    pub method: String,
    pub unique: bool,
    pub nulls_not_distinct: bool,
    /// Key columns first, then the INCLUDE columns.
    pub keys: Vec<IndexKey>,
    pub key_count: usize,
    pub predicate: Option<String>,
    /// Storage parameters as `name=value`.
    pub options: Vec<String>,
    /// An index of a partition, attached to its parent's index.
    pub partition: bool,
    /// The table is partitioned.
    pub on_partitioned_table: bool,
}

/// What an import needs of one database beyond the live model.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DatabaseSurvey {
    /// Schema → whether it belongs to an extension.
    pub schemas: BTreeMap<String, bool>,
    /// Schema → name → relation.
    pub relations: BTreeMap<String, BTreeMap<String, Relation>>,
    pub functions: Vec<Function>,
    /// By `model::index_key`.
    pub indexes: BTreeMap<String, IndexParts>,
}

/// Everything on a server, as an import reads it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Survey {
    /// The live deployment with every database, schema and privilege read.
    pub deployment: Deployment,
    /// The role created by initdb (oid 10).
    pub bootstrap_superuser: String,
    /// The role the survey connected as.
    pub current_user: String,
    /// Roles with a stored password, each with whether it is an MD5 hash;
    /// `None` when `pg_authid` is not readable.
    pub passwords: Option<BTreeMap<String, bool>>,
    /// Settings in `postgresql.auto.conf`; `None` when the configuration
    /// files are not readable.
    pub system_settings: Option<BTreeMap<String, FileSetting>>,
    /// Encoding and locale new databases get (those of `template1`).
    pub template_encoding: Option<String>,
    pub template_locale: Option<String>,
    /// (role, database) pairs with settings for that role in that database.
    pub role_database_settings: Vec<(String, String)>,
    pub databases: BTreeMap<String, DatabaseSurvey>,
}

/// Reads everything on the server `target` reaches. `databases` limits
/// the databases read inside (empty: all of them).
pub async fn observe_all(target: &Target, databases: &[String]) -> Result<Survey, ObserveError> {
    let client = target.connect_to_read().await?;
    let maintenance = target.database.clone();
    let row = client
        .query_one(
            "SELECT (SELECT rolname::text FROM pg_roles WHERE oid = 10), current_user::text, \
                    has_table_privilege('pg_catalog.pg_authid', 'SELECT'), \
                    has_table_privilege('pg_catalog.pg_file_settings', 'SELECT'), \
                    pg_encoding_to_char(t.encoding)::text, t.datcollate::text, \
                    has_function_privilege('pg_catalog.pg_hba_file_rules()', 'EXECUTE') \
             FROM pg_database t WHERE t.datname = 'template1'",
            &[],
        )
        .await
        .map_err(query_error("the server", &maintenance))?;
    let bootstrap_superuser: String = row.get(0);
    let current_user: String = row.get(1);
    let authid: bool = row.get(2);
    let file_settings: bool = row.get(3);
    let hba_rules: bool = row.get(6);

    let passwords = if authid {
        let rows = client
            .query(
                "SELECT rolname::text, rolpassword LIKE 'md5%' FROM pg_authid \
                 WHERE rolpassword IS NOT NULL ORDER BY 1",
                &[],
            )
            .await
            .map_err(query_error("role passwords", &maintenance))?;
        Some(
            rows.into_iter()
                .map(|row| (row.get(0), row.get(1)))
                .collect(),
        )
    } else {
        None
    };
    let system_settings = if file_settings {
        Some(auto_conf_settings(&client, &maintenance).await?)
    } else {
        None
    };
    let rows = client
        .query(
            "SELECT pg_get_userbyid(s.setrole)::text, d.datname::text \
             FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase \
             WHERE s.setrole <> 0 ORDER BY 1, 2",
            &[],
        )
        .await
        .map_err(query_error("role settings per database", &maintenance))?;
    let role_database_settings = rows
        .into_iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let rows = client
        .query(
            "SELECT datname::text FROM pg_database \
             WHERE NOT datistemplate AND datallowconn ORDER BY 1",
            &[],
        )
        .await
        .map_err(query_error("databases", &maintenance))?;
    let names: Vec<String> = rows
        .into_iter()
        .map(|row| row.get::<_, String>(0))
        .filter(|name| databases.is_empty() || databases.contains(name))
        .collect();
    drop(client);

    let inside: Vec<(String, DatabaseSurvey)> = stream::iter(names)
        .map(|name| async move {
            let survey = observe_database(&target.with_database(&name), &name).await?;
            Ok::<_, ObserveError>((name, survey))
        })
        .buffer_unordered(CONCURRENT_DATABASES)
        .try_collect()
        .await?;
    let inside: BTreeMap<String, DatabaseSurvey> = inside.into_iter().collect();

    // The scope: a deployment naming every setting, database and schema,
    // so that `live::postgres` reads them all.
    let mut scope = Deployment {
        name: "import".to_owned(),
        ..Deployment::default()
    };
    let mut setting_names: Vec<String> = system_settings
        .as_ref()
        .map(|settings: &BTreeMap<String, FileSetting>| settings.keys().cloned().collect())
        .unwrap_or_default();
    setting_names.push("shared_preload_libraries".to_owned());
    for name in setting_names {
        scope.settings.insert(name, Setting::default());
    }
    for (name, survey) in &inside {
        let grants = survey
            .schemas
            .keys()
            .map(|schema| Grant {
                grantee: String::new(),
                target: GrantTarget::Tables {
                    schema: schema.clone(),
                    names: None,
                },
                privileges: Vec::new(),
            })
            .collect();
        scope.databases.insert(
            name.clone(),
            Database {
                name: name.clone(),
                grants,
                ..Database::default()
            },
        );
    }
    // The client authentication rules, where the role may read them.
    if hba_rules {
        scope.access = Some(crate::model::access::Access::default());
    }
    let observed = postgres::observe(target, &scope).await?;
    let mut deployment = Deployment {
        name: String::new(),
        access: observed.access,
        settings: observed.settings,
        roles: observed.roles,
        databases: observed.databases,
        server: Some(observed.server),
        ..Deployment::default()
    };
    // Only the databases read inside are part of the survey.
    deployment
        .databases
        .retain(|name, _| inside.contains_key(name));

    Ok(Survey {
        deployment,
        bootstrap_superuser,
        current_user,
        passwords,
        system_settings,
        template_encoding: row.get(4),
        template_locale: row.get(5),
        role_database_settings,
        databases: inside,
    })
}

/// The entries of `postgresql.auto.conf`, the last one of a name winning.
async fn auto_conf_settings(
    client: &Client,
    database: &str,
) -> Result<BTreeMap<String, FileSetting>, ObserveError> {
    let rows = client
        .query(
            "SELECT name::text, setting, applied, error FROM pg_file_settings \
             WHERE sourcefile LIKE '%postgresql.auto.conf' AND name IS NOT NULL \
             ORDER BY seqno",
            &[],
        )
        .await
        .map_err(query_error("postgresql.auto.conf", database))?;
    let mut settings = BTreeMap::new();
    for row in rows {
        let name: String = row.get(0);
        settings.insert(
            name,
            FileSetting {
                value: row.get::<_, Option<String>>(1).unwrap_or_default(),
                applied: row.get(2),
                error: row.get(3),
            },
        );
    }
    Ok(settings)
}

/// Reads owners, extension membership and index parts of one database.
async fn observe_database(target: &Target, database: &str) -> Result<DatabaseSurvey, ObserveError> {
    let client = target.connect_to_read().await?;
    let member = |catalog: &str, column: &str| {
        format!(
            "EXISTS (SELECT FROM pg_depend d WHERE d.classid = '{catalog}'::regclass \
             AND d.objid = {column} AND d.deptype = 'e')"
        )
    };
    let system = "n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'";
    let rows = client
        .query(
            &format!(
                "SELECT n.nspname::text, {} FROM pg_namespace n WHERE {system} ORDER BY 1",
                member("pg_namespace", "n.oid")
            ),
            &[],
        )
        .await
        .map_err(query_error("schemas", database))?;
    let schemas = rows
        .into_iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();

    let rows = client
        .query(
            &format!(
                "SELECT n.nspname::text, c.relname::text, c.relkind::text, \
                        pg_get_userbyid(c.relowner)::text, {} \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND {system} \
                 ORDER BY 1, 2",
                member("pg_class", "c.oid")
            ),
            &[],
        )
        .await
        .map_err(query_error("relations", database))?;
    let mut relations: BTreeMap<String, BTreeMap<String, Relation>> = BTreeMap::new();
    for row in rows {
        relations.entry(row.get(0)).or_default().insert(
            row.get(1),
            Relation {
                kind: row.get(2),
                owner: row.get(3),
                extension: row.get(4),
            },
        );
    }

    let rows = client
        .query(
            &format!(
                "SELECT n.nspname::text, p.proname::text, \
                        pg_get_function_identity_arguments(p.oid), \
                        pg_get_userbyid(p.proowner)::text, {} \
                 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
                 WHERE p.prokind = 'f' AND {system} ORDER BY 1, 2, 3",
                member("pg_proc", "p.oid")
            ),
            &[],
        )
        .await
        .map_err(query_error("functions", database))?;
    let functions = rows
        .into_iter()
        .map(|row| Function {
            schema: row.get(0),
            name: row.get(1),
            arguments: row.get(2),
            owner: row.get(3),
            extension: row.get(4),
        })
        .collect();

    let indexes = index_parts(&client, database).await?;
    Ok(DatabaseSurvey {
        schemas,
        relations,
        functions,
        indexes,
    })
}

/// Every index outside the system schemas, one row per key.
async fn index_parts(
    client: &Client,
    database: &str,
) -> Result<BTreeMap<String, IndexParts>, ObserveError> {
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int4", &[])
        .await
        .map_err(query_error("the server version", database))?
        .get(0);
    let nulls_not_distinct = if version >= 150_000 {
        "i.indnullsnotdistinct"
    } else {
        "false"
    };
    let rows = client
        .query(
            &format!(
                "SELECT n.nspname::text, t.relname::text, c.relname::text, am.amname::text, \
                        i.indisunique, {nulls_not_distinct}, i.indnkeyatts::int4, \
                        pg_get_expr(i.indpred, i.indrelid, true), \
                        coalesce(c.reloptions, '{{}}'::text[]), c.relispartition, \
                        t.relkind = 'p', \
                        k.position::int4, a.attname::text, \
                        CASE WHEN i.indkey[k.position - 1] = 0 \
                             THEN pg_get_indexdef(i.indexrelid, k.position, true) END, \
                        opc.opcname::text, opcn.nspname::text, opc.opcdefault, \
                        pg_opclass_is_visible(opc.oid), \
                        coll.collname::text, colln.nspname::text, \
                        coll.oid::int8, coalesce(a.attcollation, 0)::int8, \
                        coalesce(i.indoption[k.position - 1], 0)::int4 \
                 FROM pg_index i \
                 JOIN pg_class c ON c.oid = i.indexrelid \
                 JOIN pg_class t ON t.oid = i.indrelid \
                 JOIN pg_namespace n ON n.oid = t.relnamespace \
                 JOIN pg_am am ON am.oid = c.relam \
                 CROSS JOIN LATERAL generate_series(1, i.indnatts::int4) AS k(position) \
                 LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid \
                      AND a.attnum = i.indkey[k.position - 1] AND i.indkey[k.position - 1] <> 0 \
                 LEFT JOIN pg_opclass opc ON k.position <= i.indnkeyatts \
                      AND opc.oid = i.indclass[k.position - 1] \
                 LEFT JOIN pg_namespace opcn ON opcn.oid = opc.opcnamespace \
                 LEFT JOIN pg_collation coll ON k.position <= i.indnkeyatts \
                      AND coll.oid = i.indcollation[k.position - 1] \
                 LEFT JOIN pg_namespace colln ON colln.oid = coll.collnamespace \
                 WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema' \
                 ORDER BY 1, 3, k.position"
            ),
            &[],
        )
        .await
        .map_err(query_error("index parts", database))?;
    let mut indexes: BTreeMap<String, IndexParts> = BTreeMap::new();
    for row in rows {
        let schema: String = row.get(0);
        let name: String = row.get(2);
        let parts = indexes
            .entry(index_key(&schema, &name))
            .or_insert_with(|| IndexParts {
                schema: schema.clone(),
                table: row.get(1),
                name: name.clone(),
                method: row.get(3),
                unique: row.get(4),
                nulls_not_distinct: row.get(5),
                key_count: usize::try_from(row.get::<_, i32>(6)).unwrap_or_default(),
                predicate: row.get(7),
                options: row.get(8),
                partition: row.get(9),
                on_partitioned_table: row.get(10),
                keys: Vec::new(),
            });
        let position = usize::try_from(row.get::<_, i32>(11)).unwrap_or_default();
        let column: Option<String> = row.get(12);
        let expression: Option<String> = row.get(13);
        let opclass = match (
            row.get::<_, Option<String>>(14),
            row.get::<_, Option<String>>(15),
            row.get::<_, Option<bool>>(16),
            row.get::<_, Option<bool>>(17),
        ) {
            (Some(name), Some(schema), Some(false), visible) => {
                Some(if visible == Some(true) || schema == "pg_catalog" {
                    name
                } else {
                    format!("{schema}.{name}")
                })
            }
            _ => None,
        };
        let collation_oid: Option<i64> = row.get(20);
        let column_collation: i64 = row.get(21);
        let own_collation = if column.is_some() {
            column_collation
        } else {
            i64::from(DEFAULT_COLLATION)
        };
        let collation = match (
            row.get::<_, Option<String>>(18),
            row.get::<_, Option<String>>(19),
            collation_oid,
        ) {
            (Some(name), Some(schema), Some(oid)) if oid != own_collation && oid != 0 => {
                Some(if schema == "pg_catalog" {
                    name
                } else {
                    format!("{schema}.{name}")
                })
            }
            _ => None,
        };
        let option: i32 = row.get(22);
        let is_key = position <= parts.key_count;
        parts.keys.push(IndexKey {
            column,
            expression,
            opclass: opclass.filter(|_| is_key),
            collation: collation.filter(|_| is_key),
            descending: is_key && option & 1 != 0,
            nulls_first: is_key && option & 2 != 0,
        });
    }
    Ok(indexes)
}
