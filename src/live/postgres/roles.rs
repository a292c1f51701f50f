//! Roles, their per-role settings, passwords and memberships: one query
//! each, on the maintenance database.

use std::collections::BTreeMap;

use tokio_postgres::Client;

use crate::live::ObserveError;
use crate::model::{Deployment, MANAGED_MARK, Membership, PasswordState, Role};

use super::password;

/// What the maintenance connection may read.
pub struct Access {
    /// `pg_authid` is readable (superuser): passwords can be checked.
    pub authid: bool,
    /// PostgreSQL 16+: memberships have INHERIT and SET options.
    pub membership_options: bool,
}

fn query_error(
    what: &'static str,
    database: &str,
) -> impl FnOnce(tokio_postgres::Error) -> ObserveError {
    let database = database.to_owned();
    move |source| ObserveError::Query {
        database,
        what,
        source,
    }
}

/// Reads every role except PostgreSQL's own `pg_*` roles.
pub async fn observe(
    client: &Client,
    database: &str,
    access: &Access,
    desired: &Deployment,
) -> Result<BTreeMap<String, Role>, ObserveError> {
    let rows = client
        .query(
            "SELECT r.rolname::text, r.rolcanlogin, r.rolsuper, r.rolcreatedb, r.rolcreaterole, \
                    r.rolreplication, r.rolbypassrls, r.rolinherit, r.rolconnlimit::int8, \
                    CASE WHEN r.rolvaliduntil IS NULL THEN NULL \
                         WHEN r.rolvaliduntil = 'infinity' THEN 'infinity' \
                         ELSE to_char(r.rolvaliduntil, 'YYYY-MM-DD\"T\"HH24:MI:SSOF') END, \
                    coalesce(shobj_description(r.oid, 'pg_authid') = $1, false), \
                    coalesce(s.setconfig, '{}') \
             FROM pg_roles r \
             LEFT JOIN pg_db_role_setting s ON s.setrole = r.oid AND s.setdatabase = 0 \
             WHERE r.rolname !~ '^pg_' \
             ORDER BY 1",
            &[&MANAGED_MARK],
        )
        .await
        .map_err(query_error("roles", database))?;
    let mut roles = BTreeMap::new();
    for row in rows {
        let name: String = row.get(0);
        let config: Vec<String> = row.get(11);
        roles.insert(
            name.clone(),
            Role {
                name,
                login: row.get(1),
                superuser: row.get(2),
                createdb: row.get(3),
                createrole: row.get(4),
                replication: row.get(5),
                bypassrls: row.get(6),
                inherit: row.get(7),
                connection_limit: row.get(8),
                valid_until: row.get(9),
                managed: row.get(10),
                settings: parse_config(&config),
                ..Role::default()
            },
        );
    }

    let membership_sql = if access.membership_options {
        "SELECT pg_get_userbyid(m.member)::text, pg_get_userbyid(m.roleid)::text, \
                pg_get_userbyid(m.grantor)::text, m.admin_option, m.inherit_option, m.set_option \
         FROM pg_auth_members m ORDER BY 1, 2, 3"
    } else {
        "SELECT pg_get_userbyid(m.member)::text, pg_get_userbyid(m.roleid)::text, \
                pg_get_userbyid(m.grantor)::text, m.admin_option, NULL::bool, NULL::bool \
         FROM pg_auth_members m ORDER BY 1, 2, 3"
    };
    let rows = client
        .query(membership_sql, &[])
        .await
        .map_err(query_error("role memberships", database))?;
    for row in rows {
        let member: String = row.get(0);
        let Some(role) = roles.get_mut(&member) else {
            continue;
        };
        let membership = Membership {
            role: row.get(1),
            grantor: row.get(2),
            admin: row.get(3),
            inherit: row.get(4),
            set: row.get(5),
        };
        if !role.member_of.contains(&membership.role) {
            role.member_of.push(membership.role.clone());
        }
        role.memberships.push(membership);
    }
    for role in roles.values_mut() {
        role.member_of.sort();
        role.memberships.sort();
    }

    check_passwords(client, database, access, desired, &mut roles).await?;
    Ok(roles)
}

/// Checks the stored password of every desired role that names a secret
/// and exists, recording only the outcome on the live role.
async fn check_passwords(
    client: &Client,
    database: &str,
    access: &Access,
    desired: &Deployment,
    roles: &mut BTreeMap<String, Role>,
) -> Result<(), ObserveError> {
    let wanted: Vec<&str> = desired
        .roles
        .values()
        .filter(|role| role.password.is_some() && roles.contains_key(&role.name))
        .map(|role| role.name.as_str())
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    if !access.authid {
        for name in wanted {
            if let Some(role) = roles.get_mut(name) {
                role.password_state = Some(PasswordState::Unverifiable);
            }
        }
        return Ok(());
    }
    let rows = client
        .query(
            "SELECT rolname::text, rolpassword FROM pg_authid WHERE rolname = ANY($1)",
            &[&wanted],
        )
        .await
        .map_err(query_error("role passwords", database))?;
    let stored: BTreeMap<String, Option<String>> = rows
        .into_iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    for name in wanted {
        let Some(secret) = desired
            .roles
            .get(name)
            .and_then(|role| role.password.as_ref())
        else {
            continue;
        };
        let value = secret.resolve().map_err(|source| ObserveError::Secret {
            purpose: "password of a role in the spec",
            source,
        })?;
        let verifier = stored.get(name).cloned().flatten();
        if let Some(role) = roles.get_mut(name) {
            role.password_state = Some(password::check(verifier.as_deref(), &value));
        }
    }
    Ok(())
}

/// Splits `setconfig` entries (`name=value`) into a map.
pub fn parse_config(config: &[String]) -> BTreeMap<String, String> {
    config
        .iter()
        .filter_map(|entry| entry.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}
