//! Checks of the `pooler` section: the PgBouncer container, its pool sizes
//! and timeouts, and whether its pools fit in `max_connections`.

use std::collections::BTreeSet;

use super::checker::Checker;
use crate::spec::file::{PoolerSpec, SettingValue, SpecFile};
use crate::spec::load::join_key;
use crate::units;

/// The pooler's counts, each by its name in the spec and in PgBouncer.
pub(super) fn counts(pooler: &PoolerSpec) -> [(&'static str, Option<i64>); 5] {
    [
        ("default_pool_size", pooler.default_pool_size),
        ("min_pool_size", pooler.min_pool_size),
        ("reserve_pool_size", pooler.reserve_pool_size),
        ("max_client_conn", pooler.max_client_conn),
        ("max_db_connections", pooler.max_db_connections),
    ]
}

/// The pooler's timeouts as written (PostgreSQL durations, seconds when
/// bare), each by its name in the spec and in PgBouncer.
pub(super) fn timeouts(pooler: &PoolerSpec) -> [(&'static str, Option<&str>); 3] {
    [
        ("server_idle_timeout", pooler.server_idle_timeout.as_deref()),
        ("server_lifetime", pooler.server_lifetime.as_deref()),
        ("query_wait_timeout", pooler.query_wait_timeout.as_deref()),
    ]
}

impl Checker<'_> {
    pub(super) fn check_pooler(&mut self, file: &SpecFile, pooler: &PoolerSpec) {
        self.check_port("pooler.port", pooler.port);
        match pooler.image.as_deref().map(str::trim) {
            Some("") => {
                self.error("pooler.image", "image is empty");
            }
            Some(_) => {}
            None => {
                self.error("pooler", "`pooler.image` is required").help = Some(
                    "name an image that runs PgBouncer on /etc/pgbouncer/pgbouncer.ini \
                     (pgspec writes that file and the auth file into the container), \
                     e.g. `edoburu/pgbouncer`, or `pgspec-test/pgbouncer:1` from scripts/images.sh"
                        .to_owned(),
                );
            }
        }
        let postgres = file.postgres.as_ref();
        let server_port = postgres.and_then(|postgres| postgres.port).unwrap_or(5432);
        let bind =
            |address: Option<&String>| address.map_or("127.0.0.1", String::as_str).to_owned();
        let pooler_bind = bind(pooler.bind_address.as_ref());
        let server_bind = bind(postgres.and_then(|postgres| postgres.bind_address.as_ref()));
        let overlap = pooler_bind == server_bind
            || [&pooler_bind, &server_bind]
                .iter()
                .any(|address| matches!(address.as_str(), "0.0.0.0" | "::"));
        if pooler.port.unwrap_or(6432) == server_port
            && overlap
            && postgres.is_some_and(|postgres| postgres.image.is_some())
        {
            self.error(
                "pooler.port",
                format!("the pooler and the server both publish port {server_port}"),
            )
            .help = Some("give `pooler.port` or `postgres.port` another port".to_owned());
        }
        if postgres
            .and_then(|postgres| postgres.image.as_ref())
            .is_none()
        {
            self.error("pooler", "`pooler` needs `postgres.image`").help = Some(
                "the pooler runs beside the server container pgspec manages and reaches it by \
                 name on the deployment's network"
                    .to_owned(),
            );
        }
        for (field, value) in counts(pooler) {
            self.check_at_least(&join_key("pooler", field), value, 0, &format!("`{field}`"));
        }
        for (field, value) in timeouts(pooler) {
            if let Some(value) = value {
                match units::parse_pg_time(value, "s") {
                    Ok(micros) if micros < 0.0 => {
                        self.error(&join_key("pooler", field), format!("`{field}` is negative"));
                    }
                    Ok(_) => {}
                    Err(error) => {
                        self.error(
                            &join_key("pooler", field),
                            format!("`{field}`: {}", error.message),
                        )
                        .help = error.help;
                    }
                }
            }
        }
        let declared: BTreeSet<&str> = file
            .databases
            .iter()
            .map(|database| database.name.as_str())
            .collect();
        for (name, overrides) in &pooler.databases {
            let path = join_key("pooler.databases", name);
            self.check_identifier(&path, name, "database");
            self.check_at_least(
                &join_key(&path, "pool_size"),
                overrides.pool_size,
                0,
                "`pool_size`",
            );
            self.check_at_least(
                &join_key(&path, "max_db_connections"),
                overrides.max_db_connections,
                0,
                "`max_db_connections`",
            );
            if !declared.is_empty()
                && !declared.contains(name.as_str())
                && overrides.database.is_none()
            {
                self.warning(
                    &path,
                    format!(
                        "pooler settings for database `{name}`, which the spec does not declare"
                    ),
                );
            }
        }

        // PgBouncer keeps one pool per database and user. Each can open its
        // pool size plus the reserve on the server, up to the database's
        // `max_db_connections`; together they must fit in what
        // `max_connections` leaves after the reserved connections.
        let setting = |name: &str, default: i64| {
            postgres
                .and_then(|postgres| postgres.settings.get(name))
                .and_then(|value| match value {
                    SettingValue::Integer(number) => Some(*number),
                    SettingValue::Text(text) => text.trim().parse().ok(),
                    _ => None,
                })
                .unwrap_or(default)
        };
        let max_connections = setting("max_connections", 100);
        let superuser_reserved = setting("superuser_reserved_connections", 3);
        let reserved = setting("reserved_connections", 0);
        let available = max_connections - superuser_reserved - reserved;
        let default_pool_size = pooler.default_pool_size.unwrap_or(20);
        let reserve = pooler.reserve_pool_size.unwrap_or(0);
        let users = file
            .roles
            .iter()
            .filter(|role| role.login == Some(true))
            .count()
            .max(1) as i64;
        let names: Vec<&str> = if file.databases.is_empty() {
            vec![""]
        } else {
            file.databases
                .iter()
                .map(|database| database.name.as_str())
                .collect()
        };
        let total: i64 = names
            .iter()
            .map(|name| {
                let overrides = pooler.databases.get(*name);
                let pools = (overrides
                    .and_then(|overrides| overrides.pool_size)
                    .unwrap_or(default_pool_size)
                    + reserve)
                    * users;
                match overrides
                    .and_then(|overrides| overrides.max_db_connections)
                    .or(pooler.max_db_connections)
                {
                    Some(cap) if cap > 0 => pools.min(cap),
                    _ => pools,
                }
            })
            .sum();
        if total > available {
            let mut reserved_text =
                format!("`superuser_reserved_connections` ({superuser_reserved})");
            if reserved > 0 {
                reserved_text.push_str(&format!(" and `reserved_connections` ({reserved})"));
            }
            self.warning(
                "pooler.default_pool_size",
                format!(
                    "pooler pools can open {total} server connections, more than the {available} \
                     that `max_connections` ({max_connections}) leaves after {reserved_text}"
                ),
            )
            .help = Some(format!(
                "each database has a pool per login role ({users} here) of its pool size plus \
                 `reserve_pool_size`; lower the pool sizes, set `max_db_connections`, or raise \
                 `max_connections`"
            ));
        }
    }
}
