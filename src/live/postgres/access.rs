//! The client authentication rules the server reads, from
//! `pg_hba_file_rules` (which parses the file on disk, errors included),
//! and how pgspec's own session reached the server, for the lockout guard.
//!
//! Read only when the spec has an `access` section: the view is the
//! superuser's by default.

use tokio_postgres::Client;

use super::query_error;
use crate::live::ObserveError;
use crate::model::access::{Access, AccessRule, Cidr, RuleError, Session};

/// The rules, the file's rejected lines, the file's path and the session.
pub async fn observe(client: &Client, maintenance: &str) -> Result<Access, ObserveError> {
    // The columns PostgreSQL 15 and 17 both have (16 added `rule_number`
    // and `file_name`); pgspec writes one file without includes, whose line
    // numbers give the order.
    let rules = client.query(
        "SELECT line_number, type, database, user_name, address, netmask, auth_method, \
                options, error \
         FROM pg_catalog.pg_hba_file_rules \
         ORDER BY line_number",
        &[],
    );
    let session = client.query_one(
        "SELECT host(inet_client_addr()), current_user::text, current_database()::text, \
                coalesce((SELECT ssl FROM pg_catalog.pg_stat_ssl \
                          WHERE pid = pg_backend_pid()), false), \
                current_setting('hba_file')",
        &[],
    );
    let (rules, session) = tokio::join!(rules, session);
    let rules = rules.map_err(query_error("client authentication rules", maintenance))?;
    let session = session.map_err(query_error("the session's client address", maintenance))?;
    let mut access = Access {
        file: session.get(4),
        session: Some(Session {
            address: session.get(0),
            user: session.get(1),
            database: session.get(2),
            ssl: session.get(3),
        }),
        ..Access::default()
    };
    for row in rules {
        let line: i32 = row.get(0);
        if let Some(message) = row.get::<_, Option<String>>(8) {
            access.errors.push(RuleError {
                line: u32::try_from(line).unwrap_or_default(),
                message,
            });
            continue;
        }
        let address: Option<String> = row.get(4);
        let netmask: Option<String> = row.get(5);
        let address = match (address, netmask) {
            (Some(address), Some(netmask)) => Some(
                Cidr::from_netmask(&address, &netmask)
                    .map_or_else(|| format!("{address}/{netmask}"), |cidr| cidr.to_string()),
            ),
            (address, _) => address,
        };
        let options: Option<Vec<String>> = row.get(7);
        access.rules.push(AccessRule {
            kind: row.get::<_, Option<String>>(1).unwrap_or_default(),
            databases: row.get::<_, Option<Vec<String>>>(2).unwrap_or_default(),
            users: row.get::<_, Option<Vec<String>>>(3).unwrap_or_default(),
            address,
            method: row.get::<_, Option<String>>(6).unwrap_or_default(),
            options: options
                .unwrap_or_default()
                .into_iter()
                .map(|option| match option.split_once('=') {
                    Some((name, value)) => (name.to_owned(), value.to_owned()),
                    None => (option, String::new()),
                })
                .collect(),
        });
    }
    Ok(access)
}
