//! The floors pgspec is measured against.
//!
//! Apply from empty: the statements pgspec ran, read back from the server's
//! statement log (`log_statement = all`, the database in each line's
//! prefix), replayed as one psql script by psql inside a fresh server of
//! the same image, on the same tables. Reads pgspec sent with the extended
//! protocol (its catalog queries) are not in the script; every statement
//! that changed something is.
//!
//! Plan: the server-side time of the catalog queries (from
//! pg_stat_statements, in the caller) plus the PBKDF2 work of checking each
//! declared password, divided by the cores.

use std::time::{Duration, Instant};

use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::query_parameters::LogsOptions;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::BenchServer;

/// The prefix of every server log line: the database between markers.
pub const LOG_LINE_PREFIX: &str = "@@%d@@ ";

/// How many lines the server has logged so far.
pub async fn log_lines(server: &BenchServer) -> usize {
    server_log(server).await.lines().count()
}

async fn server_log(server: &BenchServer) -> String {
    let docker = crate::common::docker().await;
    let mut stream = docker.logs(
        &server.name,
        Some(LogsOptions {
            stdout: true,
            stderr: true,
            ..LogsOptions::default()
        }),
    );
    let mut text = String::new();
    while let Some(chunk) = stream.next().await {
        text.push_str(&String::from_utf8_lossy(
            &chunk.expect("read the server log").into_bytes(),
        ));
    }
    text
}

/// The simple-protocol statements the server ran after line `from` of its
/// log, with the database each ran in.
pub async fn statements_since(server: &BenchServer, from: usize) -> Vec<(String, String)> {
    let log = server_log(server).await;
    let lines: Vec<&str> = log.lines().skip(from).collect();
    parse_statements(&lines)
}

/// Statements of a `log_statement = all` log whose lines start with
/// [`LOG_LINE_PREFIX`]; a statement's further lines start with a tab.
fn parse_statements(lines: &[&str]) -> Vec<(String, String)> {
    let mut statements: Vec<(String, String)> = Vec::new();
    let mut open = false;
    for line in lines {
        if let Some(rest) = line.strip_prefix("@@") {
            open = false;
            let Some((database, message)) = rest.split_once("@@ ") else {
                continue;
            };
            if let Some(statement) = message.strip_prefix("LOG:  statement: ") {
                statements.push((database.to_owned(), statement.to_owned()));
                open = true;
            }
        } else if let (true, Some(more)) = (open, line.strip_prefix('\t')) {
            let last = statements.last_mut().expect("an open statement");
            last.1.push('\n');
            last.1.push_str(more);
        } else {
            open = false;
        }
    }
    statements
}

/// One psql script: `\connect` whenever the database changes.
pub fn script(statements: &[(String, String)]) -> String {
    let mut text = String::from("\\set ON_ERROR_STOP on\n");
    let mut current = String::new();
    for (database, statement) in statements {
        if *database != current {
            text.push_str(&format!("\\connect {database}\n"));
            current.clone_from(database);
        }
        text.push_str(statement.trim_end().trim_end_matches(';'));
        text.push_str(";\n");
    }
    text
}

/// Runs `script` with psql inside the server's container and returns the
/// wall time.
pub async fn replay(server: &BenchServer, script: &str) -> Duration {
    let docker = crate::common::docker().await;
    let exec = docker
        .create_exec(
            &server.name,
            CreateExecOptions {
                cmd: Some(vec![
                    "psql", "-X", "-q", "-U", "postgres", "-d", "postgres", "-f", "-",
                ]),
                attach_stdin: Some(true),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..CreateExecOptions::default()
            },
        )
        .await
        .expect("create the psql exec");
    let started = Instant::now();
    let StartExecResults::Attached {
        mut output,
        mut input,
    } = docker.start_exec(&exec.id, None).await.expect("start psql")
    else {
        panic!("psql exec did not attach");
    };
    let writer = {
        let script = script.to_owned();
        tokio::spawn(async move {
            input
                .write_all(script.as_bytes())
                .await
                .expect("write the script");
            input.shutdown().await.expect("close psql's input");
        })
    };
    let mut messages = String::new();
    while let Some(chunk) = output.next().await {
        messages.push_str(&chunk.expect("psql output").to_string());
    }
    let elapsed = started.elapsed();
    writer.await.expect("script writer");
    let code = docker
        .inspect_exec(&exec.id)
        .await
        .expect("inspect psql")
        .exit_code;
    assert_eq!(code, Some(0), "the replayed script failed: {messages}");
    elapsed
}

/// Single-thread time of checking `n` declared passwords against their
/// SCRAM-SHA-256 verifiers (PBKDF2 of 4 096 rounds each), with pgspec's own
/// check: the work a plan does for `n` roles with passwords.
pub fn pbkdf2(n: usize) -> Duration {
    let verifier = postgres_protocol::password::scram_sha_256(b"bench-role-secret");
    let secret = pgspec::secret::SecretValue::from_env_value("bench-role-secret".to_owned());
    let started = Instant::now();
    for _ in 0..n {
        std::hint::black_box(pgspec::live::postgres::password::check(
            Some(std::hint::black_box(&verifier)),
            &secret,
        ));
    }
    started.elapsed()
}
