//! Schemas and privileges: each object's ACL exploded with `aclexplode`,
//! `acldefault` standing in for a NULL ACL, one query per kind of object.

use std::collections::{BTreeMap, BTreeSet};

use tokio_postgres::{Client, Row};

use super::query_error;
use crate::live::ObserveError;
use crate::model::{Acl, AclObject, Schema};

/// A grantee's name, `PUBLIC` for the pseudo-role with oid 0.
const GRANTEE: &str = "CASE WHEN a.grantee = 0 THEN 'PUBLIC' \
                       ELSE pg_get_userbyid(a.grantee)::text END";

/// The privileges of one grantee, aggregated over the rows `aclexplode`
/// gives (NULL when the ACL is empty).
const PRIVILEGES: &str = "array_agg(a.privilege_type ORDER BY a.privilege_type) \
                          FILTER (WHERE a.privilege_type IS NOT NULL)";

/// Collects `(object, grantee, privilege)` rows into sorted ACLs. An object
/// whose ACL is empty still appears, with no grantees.
#[derive(Default)]
pub struct AclBuilder {
    objects: BTreeMap<AclObject, BTreeMap<String, BTreeSet<String>>>,
}

impl AclBuilder {
    pub fn add(&mut self, object: AclObject, grantee: Option<String>, privilege: Option<String>) {
        self.add_all(object, grantee, privilege.into_iter().collect());
    }

    /// Adds what one grantee holds on `object`, read as one row.
    pub fn add_all(&mut self, object: AclObject, grantee: Option<String>, privileges: Vec<String>) {
        let grantees = self.objects.entry(object).or_default();
        if let Some(grantee) = grantee
            && !privileges.is_empty()
        {
            grantees.entry(grantee).or_default().extend(privileges);
        }
    }

    pub fn build(self) -> Vec<Acl> {
        self.objects
            .into_iter()
            .map(|(object, grantees)| Acl {
                object,
                privileges: grantees
                    .into_iter()
                    .map(|(grantee, privileges)| (grantee, privileges.into_iter().collect()))
                    .collect(),
            })
            .collect()
    }
}

/// Privileges on every database, by database (read on the maintenance
/// database).
pub async fn observe_databases(
    client: &Client,
    database: &str,
) -> Result<BTreeMap<String, Acl>, ObserveError> {
    let rows = client
        .query(
            &format!(
                "SELECT d.datname::text, {GRANTEE}, a.privilege_type \
                 FROM pg_database d \
                 LEFT JOIN LATERAL aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a \
                   ON true \
                 WHERE NOT d.datistemplate ORDER BY 1"
            ),
            &[],
        )
        .await
        .map_err(query_error("database privileges", database))?;
    let mut by_database: BTreeMap<String, AclBuilder> = BTreeMap::new();
    for row in rows {
        by_database
            .entry(row.get(0))
            .or_default()
            .add(AclObject::Database, row.get(1), row.get(2));
    }
    Ok(by_database
        .into_iter()
        .filter_map(|(name, builder)| builder.build().into_iter().next().map(|acl| (name, acl)))
        .collect())
}

/// Schemas, their owners and their privileges, and the privileges on
/// tables, sequences and functions in `schemas` plus default privileges.
pub struct Contents {
    pub schemas: BTreeMap<String, Schema>,
    pub acls: Vec<Acl>,
}

/// Reads one database's schemas and privileges. Tables, sequences and
/// functions are read only in `schemas` (those the desired grants name).
pub async fn observe(
    client: &Client,
    database: &str,
    schemas: &[String],
) -> Result<Contents, ObserveError> {
    let mut acls = AclBuilder::default();
    let rows = client
        .query(
            &format!(
                "SELECT n.nspname::text, pg_get_userbyid(n.nspowner)::text, {GRANTEE}, \
                        a.privilege_type \
                 FROM pg_namespace n \
                 LEFT JOIN LATERAL aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a \
                   ON true \
                 WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema' \
                 ORDER BY 1"
            ),
            &[],
        )
        .await
        .map_err(query_error("schemas", database))?;
    let mut found = BTreeMap::new();
    for row in rows {
        let name: String = row.get(0);
        found.entry(name.clone()).or_insert_with(|| Schema {
            name: name.clone(),
            owner: Some(row.get(1)),
        });
        acls.add(AclObject::Schema { schema: name }, row.get(2), row.get(3));
    }

    if !schemas.is_empty() {
        // Every kind GRANT … ON ALL TABLES IN SCHEMA covers: tables,
        // partitioned tables, views, materialized views, foreign tables —
        // but not the members of extensions (pg_stat_statements' views in
        // public): those keep the privileges their extension gives them.
        // One row per grantee of a table, its privileges in an array: a
        // row per privilege is eight times as many rows.
        let rows = client
            .query(
                &format!(
                    "SELECT n.nspname::text, c.relname::text, c.relkind = 'S', {GRANTEE}, \
                            {PRIVILEGES} \
                     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                     LEFT JOIN LATERAL aclexplode(coalesce(c.relacl, acldefault( \
                         CASE WHEN c.relkind = 'S' THEN 's'::\"char\" ELSE 'r'::\"char\" END, \
                         c.relowner))) a ON true \
                     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND n.nspname = ANY($1) \
                       AND NOT EXISTS (SELECT 1 FROM pg_depend d \
                                       WHERE d.classid = 'pg_class'::regclass \
                                         AND d.objid = c.oid AND d.deptype = 'e') \
                     GROUP BY 1, 2, 3, 4 ORDER BY 1, 2"
                ),
                &[&schemas],
            )
            .await
            .map_err(query_error("table and sequence privileges", database))?;
        for row in rows {
            let (schema, name): (String, String) = (row.get(0), row.get(1));
            let object = if row.get::<_, bool>(2) {
                AclObject::Sequence { schema, name }
            } else {
                AclObject::Table { schema, name }
            };
            acls.add_all(object, row.get(3), privileges(&row, 4));
        }

        let rows = client
            .query(
                &format!(
                    "SELECT n.nspname::text, p.proname::text, \
                            pg_get_function_identity_arguments(p.oid), {GRANTEE}, \
                            {PRIVILEGES} \
                     FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
                     LEFT JOIN LATERAL aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a \
                       ON true \
                     WHERE p.prokind = 'f' AND n.nspname = ANY($1) \
                       AND NOT EXISTS (SELECT 1 FROM pg_depend d \
                                       WHERE d.classid = 'pg_proc'::regclass \
                                         AND d.objid = p.oid AND d.deptype = 'e') \
                     GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3"
                ),
                &[&schemas],
            )
            .await
            .map_err(query_error("function privileges", database))?;
        for row in rows {
            acls.add_all(
                AclObject::Function {
                    schema: row.get(0),
                    name: row.get(1),
                    arguments: row.get(2),
                },
                row.get(3),
                privileges(&row, 4),
            );
        }
    }

    let rows = client
        .query(
            &format!(
                "SELECT pg_get_userbyid(d.defaclrole)::text, coalesce(n.nspname::text, ''), \
                        d.defaclobjtype::text, {GRANTEE}, a.privilege_type \
                 FROM pg_default_acl d \
                 LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace \
                 LEFT JOIN LATERAL aclexplode(d.defaclacl) a ON true \
                 ORDER BY 1, 2, 3"
            ),
            &[],
        )
        .await
        .map_err(query_error("default privileges", database))?;
    for row in rows {
        let object = default_object(&row);
        acls.add(object, row.get(3), row.get(4));
    }

    Ok(Contents {
        schemas: found,
        acls: acls.build(),
    })
}

/// The privileges of one grantee on one object, aggregated in the query
/// (`PRIVILEGES`): none for an object whose ACL is empty.
fn privileges(row: &Row, column: usize) -> Vec<String> {
    row.get::<_, Option<Vec<String>>>(column)
        .unwrap_or_default()
}

/// `pg_default_acl.defaclobjtype` as the spec names it.
fn default_object(row: &Row) -> AclObject {
    let kind: String = row.get(2);
    let object = match kind.as_str() {
        "r" => "tables",
        "S" => "sequences",
        "f" => "functions",
        "T" => "types",
        "n" => "schemas",
        other => other,
    };
    AclObject::Default {
        schema: row.get(1),
        object: object.to_owned(),
        for_role: row.get(0),
    }
}
