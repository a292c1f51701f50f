//! The `pgspec status --json` document (issue 25): its shape, from a fixed
//! set of facts, is a reviewed snapshot. Scripts read it; a change to it
//! raises `format_version`.

use std::collections::BTreeMap;

use pgspec::model::Thresholds;
use pgspec::model::monitoring::{
    BackupFacts, CertificateFacts, ContainerFacts, DiskFacts, PoolFacts, PoolerFacts,
    RoleConnections, ServerFacts, StatusFacts, VerificationFacts, evaluate,
};

fn facts() -> StatusFacts {
    StatusFacts {
        containers: vec![
            ContainerFacts {
                role: "server".to_owned(),
                name: "ledger-postgres".to_owned(),
                state: "running".to_owned(),
                health: Some("healthy".to_owned()),
                restarts: 0,
                image: "postgres:17.2".to_owned(),
            },
            ContainerFacts {
                role: "pooler".to_owned(),
                name: "ledger-pgbouncer".to_owned(),
                state: "running".to_owned(),
                health: None,
                restarts: 2,
                image: "edoburu/pgbouncer:1.23".to_owned(),
            },
            ContainerFacts {
                role: "backup".to_owned(),
                name: "ledger-backup".to_owned(),
                state: "missing".to_owned(),
                ..ContainerFacts::default()
            },
        ],
        server: Some(ServerFacts {
            version: "17.2".to_owned(),
            uptime_seconds: 93_784,
            max_connections: 100,
            connections_by_state: BTreeMap::from([
                ("active".to_owned(), 3),
                ("idle".to_owned(), 70),
                ("idle in transaction".to_owned(), 1),
            ]),
            roles: vec![
                RoleConnections {
                    role: "crawler".to_owned(),
                    connections: 60,
                    limit: Some(64),
                },
                RoleConnections {
                    role: "postgres".to_owned(),
                    connections: 14,
                    limit: None,
                },
            ],
            longest_query_seconds: Some(4.2),
            longest_transaction_seconds: Some(400.0),
            deadlocks: 0,
            database_sizes: BTreeMap::from([
                ("crawl".to_owned(), 1_234_567_890),
                ("postgres".to_owned(), 7_627_283),
            ]),
        }),
        server_error: None,
        disk: Some(DiskFacts {
            path: "/var/lib/postgresql/data".to_owned(),
            mount: "/var/lib/postgresql/data".to_owned(),
            size_bytes: 107_374_182_400,
            used_bytes: 90_000_000_000,
            available_bytes: 12_000_000_000,
        }),
        disk_error: None,
        pooler: Some(PoolerFacts {
            clients: 120,
            max_client_conn: 1000,
            pools: vec![PoolFacts {
                database: "crawl".to_owned(),
                user: "crawler".to_owned(),
                clients: 118,
                waiting: 2,
                servers: 20,
                pool_size: Some(20),
            }],
        }),
        pooler_error: None,
        backups: vec![
            BackupFacts {
                schedule: "nightly".to_owned(),
                cron: "0 2 * * *".to_owned(),
                period_seconds: Some(86_400),
                last_good: Some("20260102T020000Z-nightly".to_owned()),
                last_good_age_seconds: Some(36_000),
                last_verification: Some(VerificationFacts {
                    backup: "20260102T020000Z-nightly".to_owned(),
                    ok: true,
                    failed: 0,
                    checks: 5,
                    age_seconds: Some(30_000),
                }),
            },
            BackupFacts {
                schedule: "roles".to_owned(),
                cron: "@hourly".to_owned(),
                period_seconds: Some(3600),
                last_good: Some("20260101T000000Z-roles".to_owned()),
                last_good_age_seconds: Some(8000),
                last_verification: Some(VerificationFacts {
                    backup: "20260101T000000Z-roles".to_owned(),
                    ok: false,
                    failed: 1,
                    checks: 2,
                    age_seconds: Some(7000),
                }),
            },
        ],
        backups_error: None,
        certificate: Some(CertificateFacts {
            subject: "CN=ledger-postgres".to_owned(),
            fingerprint: "SHA256:0123456789abcdef".to_owned(),
            expires: "2026-01-22".to_owned(),
            days_left: 20,
        }),
        archive: None,
    }
}

#[test]
fn status_json_shape() {
    let report = evaluate("ledger", facts(), &Thresholds::default());
    insta::assert_json_snapshot!(report);
}

#[test]
fn an_unreachable_server_is_a_red_line() {
    let facts = StatusFacts {
        server_error: Some(
            "cannot connect to PostgreSQL at `postgres@127.0.0.1:5433/postgres`".to_owned(),
        ),
        ..StatusFacts::default()
    };
    let report = evaluate("ledger", facts, &Thresholds::default());
    insta::assert_json_snapshot!(report);
}
