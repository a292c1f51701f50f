//! One `help:` line for an apply that failed: what the failing error means
//! and what to run next, read from PostgreSQL's SQLSTATE or from how the
//! connection to the server ended.
//!
//! Only the first PostgreSQL error in the chain is read; without one, an
//! observe error's own help is used. An error this module does not
//! recognise gets no hint rather than a guess. It only reads errors.

use std::io::ErrorKind;

use tokio_postgres::error::SqlState;

use crate::sql::quote_ident;

/// What a hint may say about how pgspec reaches the server.
#[derive(Debug, Clone, Copy, Default)]
pub struct Connection<'a> {
    /// The role pgspec connects as, when it could be resolved.
    pub role: Option<&'a str>,
    /// Whether pgspec runs the server's container, and so starts it again.
    pub runs_container: bool,
}

impl Connection<'_> {
    /// `ALTER ROLE … SET name = value` for the role pgspec connects as.
    fn alter_role(&self, setting: &str, value: &str) -> String {
        let role = self.role.map_or_else(|| "<role>".to_owned(), quote_ident);
        format!("`ALTER ROLE {role} SET {setting} = {value}`")
    }
}

/// The help line for an apply error's cause, if there is one.
pub fn help(error: &anyhow::Error, connection: Connection<'_>) -> Option<String> {
    if let Some(postgres) = error
        .chain()
        .find_map(|cause| cause.downcast_ref::<tokio_postgres::Error>())
    {
        return for_postgres(postgres, connection);
    }
    error
        .chain()
        .find_map(crate::live::help_for)
        .map(str::to_owned)
}

fn for_postgres(error: &tokio_postgres::Error, connection: Connection<'_>) -> Option<String> {
    if let Some(db_error) = error.as_db_error() {
        return for_state(db_error.code(), db_error.message(), connection);
    }
    let io_kind = std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<std::io::Error>())
        .map(std::io::Error::kind);
    if error.is_closed() || io_kind.is_some_and(is_connection_lost) {
        return Some(server_lost(connection));
    }
    None
}

/// I/O errors that mean the server, or the way to it, went away.
fn is_connection_lost(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::ConnectionRefused
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
            | ErrorKind::NotConnected
            | ErrorKind::UnexpectedEof
            | ErrorKind::TimedOut
    )
}

fn server_lost(connection: Connection<'_>) -> String {
    let next = if connection.runs_container {
        "run `pgspec apply` again: it starts the container if it is down and does what remains"
    } else {
        "once it is back, run `pgspec apply` again to do what remains"
    };
    format!("the connection to the server was lost (it stopped, restarted or crashed); {next}")
}

/// The hint for an error the server reported. `message` is the server's
/// primary message; it only refines a hint, since the server may write it in
/// another language.
fn for_state(code: &SqlState, message: &str, connection: Connection<'_>) -> Option<String> {
    let again = "then run `pgspec apply` again";
    let hint = if *code == SqlState::QUERY_CANCELED {
        if message.contains("statement timeout") {
            format!(
                "the statement ran longer than statement_timeout allows (index builds on large \
                 tables can take hours): raise it for the role pgspec connects as, e.g. {} \
                 (0 is no limit), {again}",
                connection.alter_role("statement_timeout", "'1h'")
            )
        } else {
            format!(
                "the statement was cancelled, by statement_timeout or by another session \
                 (pg_cancel_backend); if it was statement_timeout, raise it for the role pgspec \
                 connects as, e.g. {}, {again}",
                connection.alter_role("statement_timeout", "'1h'")
            )
        }
    } else if *code == SqlState::DISK_FULL {
        format!(
            "the server's disk is full: free space on the disk that holds the file named above \
             (the data directory's volume or a tablespace; an index build needs room for the new \
             index and its sort files), {again}"
        )
    } else if *code == SqlState::CONFIGURATION_LIMIT_EXCEEDED && message.contains("temp_file_limit")
    {
        format!(
            "the statement needed more temporary file space than temp_file_limit allows (index \
             builds sort on disk beyond maintenance_work_mem): raise it for the role pgspec \
             connects as, e.g. {} (-1 is no limit), {again}",
            connection.alter_role("temp_file_limit", "'100GB'")
        )
    } else if *code == SqlState::CONFIGURATION_LIMIT_EXCEEDED {
        format!("a limit in the server's configuration stopped the statement: raise it, {again}")
    } else if *code == SqlState::OUT_OF_MEMORY {
        format!(
            "the server ran out of memory: give it more, or lower maintenance_work_mem for the \
             role pgspec connects as, e.g. {}, {again}",
            connection.alter_role("maintenance_work_mem", "'256MB'")
        )
    } else if *code == SqlState::TOO_MANY_CONNECTIONS {
        format!(
            "the server has no free connection slot: close idle sessions or raise \
             max_connections, {again}"
        )
    } else if *code == SqlState::LOCK_NOT_AVAILABLE {
        format!(
            "another session held a conflicting lock for longer than lock_timeout: let it \
             finish, or pass a longer `--lock-timeout`, {again}"
        )
    } else if *code == SqlState::READ_ONLY_SQL_TRANSACTION {
        "the server only accepts reads (a standby, or default_transaction_read_only is on): \
         point pgspec at the primary"
            .to_owned()
    } else if *code == SqlState::ADMIN_SHUTDOWN
        || *code == SqlState::CRASH_SHUTDOWN
        || *code == SqlState::CANNOT_CONNECT_NOW
        || code.code().starts_with("08")
    {
        server_lost(connection)
    } else {
        return None;
    };
    Some(hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    const AS_POSTGRES: Connection<'static> = Connection {
        role: Some("postgres"),
        runs_container: false,
    };

    fn hint(code: SqlState, message: &str) -> String {
        for_state(&code, message, AS_POSTGRES).unwrap_or_default()
    }

    #[test]
    fn statement_timeout_names_the_setting_and_the_role() {
        let hint = hint(
            SqlState::QUERY_CANCELED,
            "canceling statement due to statement timeout",
        );
        assert!(hint.starts_with("the statement ran longer than statement_timeout"));
        assert!(hint.contains(r#"`ALTER ROLE "postgres" SET statement_timeout = '1h'`"#));
        assert!(hint.ends_with("then run `pgspec apply` again"));
    }

    #[test]
    fn a_cancel_in_another_language_still_mentions_statement_timeout() {
        let hint = hint(
            SqlState::QUERY_CANCELED,
            "annulation de la requête à cause du délai écoulé pour l'exécution de l'instruction",
        );
        assert!(hint.contains("by statement_timeout or by another session"));
    }

    #[test]
    fn disk_and_limits() {
        assert!(
            hint(
                SqlState::DISK_FULL,
                "could not extend file: No space left on device"
            )
            .starts_with("the server's disk is full")
        );
        let temp = hint(
            SqlState::CONFIGURATION_LIMIT_EXCEEDED,
            "temporary file size exceeds temp_file_limit (1024kB)",
        );
        assert!(temp.contains(r#"`ALTER ROLE "postgres" SET temp_file_limit = '100GB'`"#));
        assert!(
            hint(SqlState::CONFIGURATION_LIMIT_EXCEEDED, "something else")
                .starts_with("a limit in the server's configuration")
        );
    }

    #[test]
    fn a_role_that_could_not_be_resolved_is_a_placeholder() {
        let connection = Connection::default();
        let hint = for_state(
            &SqlState::QUERY_CANCELED,
            "canceling statement due to statement timeout",
            connection,
        )
        .unwrap_or_default();
        assert!(hint.contains("`ALTER ROLE <role> SET statement_timeout = '1h'`"));
    }

    #[test]
    fn a_role_name_is_quoted() {
        let connection = Connection {
            role: Some(r#"ad"min"#),
            runs_container: false,
        };
        assert_eq!(
            connection.alter_role("statement_timeout", "0"),
            r#"`ALTER ROLE "ad""min" SET statement_timeout = 0`"#
        );
    }

    #[test]
    fn shutdowns_and_connection_failures_are_a_lost_server() {
        for code in [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::CONNECTION_FAILURE,
        ] {
            assert!(
                hint(code.clone(), "terminating connection").starts_with(
                    "the connection to the server was lost (it stopped, restarted or crashed); \
                     once it is back"
                ),
                "{code:?}"
            );
        }
        let container = Connection {
            role: Some("postgres"),
            runs_container: true,
        };
        assert!(
            for_state(&SqlState::ADMIN_SHUTDOWN, "", container)
                .unwrap_or_default()
                .contains("it starts the container if it is down")
        );
    }

    #[test]
    fn lost_connections_by_io_kind() {
        assert!(is_connection_lost(ErrorKind::ConnectionReset));
        assert!(is_connection_lost(ErrorKind::UnexpectedEof));
        assert!(!is_connection_lost(ErrorKind::PermissionDenied));
    }

    #[test]
    fn unknown_states_get_no_hint() {
        assert_eq!(
            for_state(
                &SqlState::UNDEFINED_TABLE,
                "relation does not exist",
                AS_POSTGRES
            ),
            None
        );
        assert_eq!(
            for_state(
                &SqlState::INSUFFICIENT_PRIVILEGE,
                "permission denied",
                AS_POSTGRES
            ),
            None
        );
    }

    #[test]
    fn an_error_without_a_postgres_cause_gets_no_hint() {
        let error = anyhow::anyhow!("cannot create volume `x`").context("outer");
        assert_eq!(help(&error, AS_POSTGRES), None);
    }

    #[test]
    fn an_observe_error_keeps_its_own_help() {
        let unreachable = crate::live::ObserveError::Engine(
            crate::engine::EngineError::Unreachable(bollard::errors::Error::RequestTimeoutError),
        );
        let expected = unreachable.help().map(str::to_owned);
        assert!(expected.is_some());
        let error = anyhow::Error::new(unreachable).context("cannot create volume `x`");
        assert_eq!(help(&error, AS_POSTGRES), expected);
    }
}
