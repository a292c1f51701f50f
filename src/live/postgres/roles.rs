//! Roles, their per-role settings, passwords and memberships: one query
//! each, on the maintenance database.

use std::collections::BTreeMap;

use tokio_postgres::Client;

use super::query_error;
use crate::live::ObserveError;
use crate::model::{Deployment, Membership, PasswordState, Role, marks_own};

use super::password;
use crate::secret::SecretValue;

/// What the maintenance connection may read.
pub struct Access {
    /// `pg_authid` is readable (superuser): passwords can be checked.
    pub authid: bool,
    /// PostgreSQL 16+: memberships have INHERIT and SET options.
    pub membership_options: bool,
}

/// Reads every role except PostgreSQL's own `pg_*` roles. Passwords that
/// need hashing to be checked come back as `PasswordChecks` to run while
/// the other catalog queries are under way; every other password state is
/// already recorded.
pub async fn observe(
    client: &Client,
    database: &str,
    access: &Access,
    desired: &Deployment,
) -> Result<(BTreeMap<String, Role>, PasswordChecks), ObserveError> {
    let rows = client
        .query(
            "SELECT r.rolname::text, r.rolcanlogin, r.rolsuper, r.rolcreatedb, r.rolcreaterole, \
                    r.rolreplication, r.rolbypassrls, r.rolinherit, r.rolconnlimit::int8, \
                    CASE WHEN r.rolvaliduntil IS NULL THEN NULL \
                         WHEN r.rolvaliduntil = 'infinity' THEN 'infinity' \
                         ELSE to_char(r.rolvaliduntil, 'YYYY-MM-DD\"T\"HH24:MI:SSOF') END, \
                    coalesce(shobj_description(r.oid, 'pg_authid'), ''), \
                    coalesce(s.setconfig, '{}') \
             FROM pg_roles r \
             LEFT JOIN pg_db_role_setting s ON s.setrole = r.oid AND s.setdatabase = 0 \
             WHERE r.rolname !~ '^pg_' \
             ORDER BY 1",
            &[],
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
                managed: marks_own(row.get(10), &desired.name, desired.container.is_some()),
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

    let checks = password_checks(client, database, access, desired, &mut roles).await?;
    Ok((roles, checks))
}

/// Stored passwords still to be checked against the spec's secrets: a
/// PBKDF2 of 4 096 rounds or more each, the one part of observing that
/// costs CPU rather than waiting on the server.
#[derive(Default)]
pub struct PasswordChecks {
    pending: Vec<(String, Option<String>, SecretValue)>,
}

impl PasswordChecks {
    /// Runs the checks on every core; the outcome for each role by name.
    pub fn run(self) -> Vec<(String, PasswordState)> {
        let threads = std::thread::available_parallelism().map_or(1, |count| count.get());
        let chunk = self.pending.len().div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            let workers: Vec<_> = self
                .pending
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|(name, verifier, secret)| {
                                (name.clone(), password::check(verifier.as_deref(), secret))
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|worker| {
                    worker
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        })
    }
}

/// Reads the stored password of every desired role that names a secret and
/// exists. Roles whose password needs no hashing to judge (none stored, MD5,
/// unreadable) get their state here; the rest are returned to be checked.
async fn password_checks(
    client: &Client,
    database: &str,
    access: &Access,
    desired: &Deployment,
    roles: &mut BTreeMap<String, Role>,
) -> Result<PasswordChecks, ObserveError> {
    let wanted: Vec<&str> = desired
        .roles
        .values()
        .filter(|role| role.password.is_some() && roles.contains_key(&role.name))
        .map(|role| role.name.as_str())
        .collect();
    let mut checks = PasswordChecks::default();
    if wanted.is_empty() {
        return Ok(checks);
    }
    if !access.authid {
        for name in wanted {
            if let Some(role) = roles.get_mut(name) {
                role.password_state = Some(PasswordState::Unverifiable);
            }
        }
        return Ok(checks);
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
        match password::without_hashing(verifier.as_deref()) {
            Some(state) => {
                if let Some(role) = roles.get_mut(name) {
                    role.password_state = Some(state);
                }
            }
            None => checks.pending.push((name.to_owned(), verifier, value)),
        }
    }
    Ok(checks)
}

/// Splits `setconfig` entries (`name=value`) into a map.
pub fn parse_config(config: &[String]) -> BTreeMap<String, String> {
    config
        .iter()
        .filter_map(|entry| entry.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}
