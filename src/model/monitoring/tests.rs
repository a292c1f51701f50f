//! The judgement of `status` lines against thresholds.

use super::*;

fn defaults() -> Threshold {
    Thresholds::default().connections
}

#[test]
fn connection_levels_follow_the_runbook_defaults() {
    let threshold = defaults();
    assert_eq!(threshold.level(69, 100), Level::Green);
    assert_eq!(threshold.level(70, 100), Level::Yellow);
    assert_eq!(threshold.level(89, 100), Level::Yellow);
    assert_eq!(threshold.level(90, 100), Level::Red);
    assert_eq!(threshold.level(120, 100), Level::Red);
}

#[test]
fn no_limit_is_green_and_a_zero_limit_in_use_is_red() {
    assert_eq!(defaults().level(500, -1), Level::Green);
    assert_eq!(defaults().level(0, 0), Level::Green);
    assert_eq!(defaults().level(1, 0), Level::Red);
}

#[test]
fn percentages_parse_with_or_without_the_sign() {
    assert_eq!(parse_percent("70%"), Ok(70.0));
    assert_eq!(parse_percent(" 12.5 % "), Ok(12.5));
    assert_eq!(parse_percent("90"), Ok(90.0));
    assert!(parse_percent("120%").is_err());
    assert!(parse_percent("lots").is_err());
    assert!(parse_percent("-1%").is_err());
}

fn server() -> ServerFacts {
    ServerFacts {
        version: "17.2".to_owned(),
        uptime_seconds: 3700,
        max_connections: 10,
        connections_by_state: BTreeMap::from([("idle".to_owned(), 2), ("active".to_owned(), 1)]),
        roles: vec![RoleConnections {
            role: "app".to_owned(),
            connections: 2,
            limit: Some(2),
        }],
        longest_query_seconds: Some(2.0),
        longest_transaction_seconds: None,
        deadlocks: 0,
        database_sizes: BTreeMap::from([("app".to_owned(), 7_700_000)]),
    }
}

#[test]
fn the_worst_line_sets_the_level() {
    let facts = StatusFacts {
        server: Some(server()),
        ..StatusFacts::default()
    };
    let report = evaluate("demo", facts, &Thresholds::default());
    // The role at its limit is red; the server at 30 % is green.
    assert_eq!(report.level, Level::Red);
    let levels: Vec<_> = report
        .lines
        .iter()
        .map(|line| (line.item.as_str(), line.level))
        .collect();
    assert!(levels.contains(&("max_connections", Level::Green)));
    assert!(levels.contains(&("app", Level::Red)));
}

#[test]
fn the_spec_thresholds_replace_the_defaults() {
    let mut facts = StatusFacts {
        server: Some(server()),
        ..StatusFacts::default()
    };
    facts.server.as_mut().unwrap().roles.clear();
    let low = Thresholds {
        connections: Threshold {
            warn_percent: 5.0,
            critical_percent: 10.0,
        },
        ..Thresholds::default()
    };
    assert_eq!(
        evaluate("demo", facts.clone(), &Thresholds::default()).level,
        Level::Green
    );
    assert_eq!(evaluate("demo", facts, &low).level, Level::Red);
}

#[test]
fn containers_are_judged_by_state_health_and_restarts() {
    let running = ContainerFacts {
        role: "server".to_owned(),
        name: "demo-postgres".to_owned(),
        state: "running".to_owned(),
        health: Some("healthy".to_owned()),
        restarts: 0,
        image: "postgres:17".to_owned(),
    };
    assert_eq!(container_line(&running).level, Level::Green);
    let restarted = ContainerFacts {
        restarts: 3,
        ..running.clone()
    };
    assert_eq!(container_line(&restarted).level, Level::Yellow);
    let unhealthy = ContainerFacts {
        health: Some("unhealthy".to_owned()),
        ..running.clone()
    };
    assert_eq!(container_line(&unhealthy).level, Level::Red);
    let exited = ContainerFacts {
        state: "exited".to_owned(),
        ..running
    };
    assert_eq!(container_line(&exited).level, Level::Red);
}

#[test]
fn pools_are_judged_by_their_size_and_waiting_clients() {
    let pool = PoolFacts {
        database: "app".to_owned(),
        user: "app".to_owned(),
        clients: 3,
        waiting: 0,
        servers: 2,
        pool_size: Some(20),
    };
    let pooler = PoolerFacts {
        clients: 3,
        max_client_conn: 100,
        pools: vec![pool.clone()],
    };
    let judge = |pooler: PoolerFacts| {
        let mut lines = Vec::new();
        pooler_lines(&pooler, &Thresholds::default(), &mut lines);
        lines.iter().map(|line| line.level).collect::<Vec<_>>()
    };
    assert_eq!(judge(pooler.clone()), [Level::Green, Level::Green]);
    let waiting = PoolerFacts {
        pools: vec![PoolFacts {
            waiting: 1,
            ..pool.clone()
        }],
        ..pooler.clone()
    };
    assert_eq!(judge(waiting), [Level::Green, Level::Yellow]);
    let full = PoolerFacts {
        clients: 95,
        pools: vec![PoolFacts {
            servers: 20,
            ..pool
        }],
        ..pooler
    };
    assert_eq!(judge(full), [Level::Red, Level::Red]);
}

#[test]
fn backups_age_against_their_period() {
    let daily = |age: Option<i64>| BackupFacts {
        schedule: "nightly".to_owned(),
        cron: "0 2 * * *".to_owned(),
        period_seconds: Some(86_400),
        last_good: age.map(|_| "20260102T020000Z-nightly".to_owned()),
        last_good_age_seconds: age,
        last_verification: None,
    };
    let level = |age| backup_line(&daily(age)).level;
    assert_eq!(level(Some(3600)), Level::Green);
    // One period plus a tenth of it.
    assert_eq!(level(Some(86_400 + 8640)), Level::Green);
    assert_eq!(level(Some(86_400 + 8641)), Level::Yellow);
    assert_eq!(level(Some(2 * 86_400 + 8641)), Level::Red);
    assert_eq!(level(None), Level::Yellow);
    assert_eq!(backup_grace(900), BACKUP_GRACE_MIN_SECONDS);
}

#[test]
fn ages_and_sizes_read_like_people_write_them() {
    assert_eq!(duration_text(12.4), "12 s");
    assert_eq!(duration_text(3700.0), "1 h 1 min");
    assert_eq!(duration_text(200_000.0), "2 d 7 h");
    assert_eq!(crate::model::notation::human_size(7_700_000), "7.3 MiB");
    assert_eq!(
        age_line("q", Some(61.0), QUERY_WARN_SECONDS, QUERY_CRITICAL_SECONDS).level,
        Level::Yellow
    );
}

#[test]
fn df_output_parses_and_free_space_is_judged() {
    let output = "Filesystem     1024-blocks     Used Available Capacity Mounted on\n\
                  /dev/sda1        1000000   850000    100000      90% /var/lib/postgresql/data\n";
    let disk = DiskFacts::from_df("/var/lib/postgresql/data", output).expect("parses");
    assert_eq!(disk.size_bytes, 1_024_000_000);
    assert_eq!(disk.available_bytes, 102_400_000);
    assert_eq!(disk.mount, "/var/lib/postgresql/data");
    // 100000 of 950000 usable: 10.5 % free is yellow, under 10 % red.
    let threshold = FreeThreshold::default();
    assert_eq!(disk_line(&disk, &threshold).level, Level::Yellow);
    assert_eq!(threshold.level(99, 1000), Level::Red);
    assert_eq!(threshold.level(200, 1000), Level::Green);
    assert_eq!(threshold.level(0, 0), Level::Red);
    let spaced = "Filesystem 1024-blocks Used Available Capacity Mounted on\n\
                  my disk 10 5 5 50% /data\n";
    let disk = DiskFacts::from_df("/data", spaced).expect("a device name with a space");
    assert_eq!(disk.used_bytes, 5 * 1024);
    assert!(DiskFacts::from_df("/data", "df: /data: No such file\n").is_none());
}

#[test]
fn a_failed_verification_is_red_and_none_yellow() {
    let backup = |verification: Option<VerificationFacts>| BackupFacts {
        schedule: "nightly".to_owned(),
        cron: "0 2 * * *".to_owned(),
        period_seconds: Some(86_400),
        last_good: Some("20260102T020000Z-nightly".to_owned()),
        last_good_age_seconds: Some(3600),
        last_verification: verification,
    };
    let passed = VerificationFacts {
        backup: "20260102T020000Z-nightly".to_owned(),
        ok: true,
        failed: 0,
        checks: 4,
        age_seconds: Some(60),
    };
    assert_eq!(verification_line(&backup(None)).level, Level::Yellow);
    assert_eq!(
        verification_line(&backup(Some(passed.clone()))).level,
        Level::Green
    );
    let failed = VerificationFacts {
        ok: false,
        failed: 1,
        ..passed
    };
    let report = evaluate(
        "demo",
        StatusFacts {
            backups: vec![backup(Some(failed))],
            ..StatusFacts::default()
        },
        &Thresholds::default(),
    );
    assert_eq!(report.level, Level::Red);
    assert_eq!(report.lines[1].item, "nightly verified");
}
