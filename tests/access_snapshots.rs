//! Issue #17: plans for client authentication rules as people and programs
//! read them. Each case is a desired spec (YAML), a live state (JSON, as
//! `live::observe` records it) and a reviewed snapshot of the text and
//! JSON: rules in sync, a rule edited by hand and one added, a file with a
//! line the server rejects, rules that would lock pgspec out (and refuse
//! the pooler and backup containers), and a port published beyond the
//! loopback with no narrower rule.

mod plan_check;

/// Diffs a spec against a recorded live state and snapshots both renderings.
fn check(name: &str, desired_yaml: &str, live_json: &str) {
    let (text, json) = plan_check::renderings(desired_yaml, live_json);
    insta::assert_snapshot!(format!("{name}_text"), text);
    insta::assert_snapshot!(format!("{name}_json"), json);
}

/// threadr's rules from its runbook, on the ledger container.
fn spec(bind_address: &str, access: &str) -> String {
    format!(
        r#"
version: 1
name: threadr
postgres:
  image: postgres:15.8
  bind_address: {bind_address}
  superuser: {{ password: {{ env: THREADR_PG_PASSWORD }} }}
roles:
  - {{ name: threadr, login: true }}
  - {{ name: replicator, login: true, replication: true }}
databases:
  - name: threadr
{access}"#
    )
}

const THREADR_RULES: &str = r#"access:
  - { type: local, database: all, user: postgres, method: peer }
  - { type: local, database: all, user: threadr, method: md5 }
  - { type: host, database: all, user: threadr, address: 127.0.0.1/32, method: md5 }
  - { type: host, database: all, user: threadr, address: 10.0.0.0/8, method: md5 }
  - { type: host, database: all, user: threadr, address: 172.16.0.0/12, method: md5 }
  - { type: host, database: replication, user: replicator, address: 10.0.0.0/8, method: md5 }
  - { type: host, database: all, user: postgres, address: 172.16.0.0/12, method: scram-sha-256 }
"#;

/// The rules as `pg_hba_file_rules` reports threadr's, in JSON.
const LIVE_THREADR_RULES: &str = r#"[
    { "type": "local", "databases": ["all"], "users": ["postgres"], "method": "peer" },
    { "type": "local", "databases": ["all"], "users": ["threadr"], "method": "md5" },
    { "type": "host", "databases": ["all"], "users": ["threadr"], "address": "127.0.0.1/32", "method": "md5" },
    { "type": "host", "databases": ["all"], "users": ["threadr"], "address": "10.0.0.0/8", "method": "md5" },
    { "type": "host", "databases": ["all"], "users": ["threadr"], "address": "172.16.0.0/12", "method": "md5" },
    { "type": "host", "databases": ["replication"], "users": ["replicator"], "address": "10.0.0.0/8", "method": "md5" },
    { "type": "host", "databases": ["all"], "users": ["postgres"], "address": "172.16.0.0/12", "method": "scram-sha-256" }
]"#;

/// A running threadr server whose rules are `rules` (JSON) with `errors`,
/// reached by pgspec from the deployment network's gateway.
fn live(bind_address: &str, rules: &str, errors: &str) -> String {
    format!(
        r#"{{ "name": "threadr",
             "container": {{ "name": "threadr-postgres", "image": "postgres:15.8", "port": 5432,
                            "bind_address": "{bind_address}", "volume": "threadr-pgdata",
                            "data_mount": "/var/lib/postgresql/data", "pgdata": "/var/lib/postgresql/data",
                            "data_kind": "volume", "superuser": "postgres", "state": "running",
                            "id": "abc", "image_id": "sha256:1", "data_major": 15, "volume_exists": true,
                            "network": "threadr-net", "network_subnet": "172.18.0.0/16",
                            "network_exists": true, "restart_policy": "unless-stopped",
                            "health_check": ["CMD", "pg_isready", "--quiet", "--host", "127.0.0.1", "--port", "5432", "--dbname", "postgres", "--username", "postgres"] }},
             "server": {{ "version_num": 150008, "current_user": "postgres" }},
             "roles": {{
                 "postgres": {{ "name": "postgres", "login": true, "superuser": true, "createdb": true, "createrole": true,
                                "replication": true, "bypassrls": true, "inherit": true, "connection_limit": -1 }},
                 "threadr": {{ "name": "threadr", "login": true, "superuser": false, "createdb": false, "createrole": false,
                               "replication": false, "bypassrls": false, "inherit": true, "connection_limit": -1, "managed": true }},
                 "replicator": {{ "name": "replicator", "login": true, "superuser": false, "createdb": false, "createrole": false,
                                  "replication": true, "bypassrls": false, "inherit": true, "connection_limit": -1, "managed": true }} }},
             "databases": {{
                 "postgres": {{ "name": "postgres", "owner": "postgres" }},
                 "threadr": {{ "name": "threadr", "owner": "postgres" }} }},
             "access": {{ "rules": {rules}, "errors": {errors},
                         "file": "/var/lib/postgresql/data/pg_hba.conf",
                         "session": {{ "address": "172.18.0.1", "user": "postgres", "database": "postgres" }} }} }}"#
    )
}

#[test]
fn rules_in_sync_have_nothing_to_do() {
    check(
        "access_in_sync",
        &spec("127.0.0.1", THREADR_RULES),
        &live("127.0.0.1", LIVE_THREADR_RULES, "[]"),
    );
}

#[test]
fn a_rule_edited_by_hand_and_one_added_are_drift() {
    let edited = LIVE_THREADR_RULES
        .replace(
            r#""10.0.0.0/8", "method": "md5" },"#,
            r#""10.0.0.0/8", "method": "trust" },"#,
        )
        .replace(
            "\n]",
            r#",
    { "type": "host", "databases": ["all"], "users": ["all"], "address": "all", "method": "trust" }
]"#,
        );
    check(
        "access_drift",
        &spec("127.0.0.1", THREADR_RULES),
        &live("127.0.0.1", &edited, "[]"),
    );
}

#[test]
fn lines_the_server_rejects_are_shown_and_rewritten() {
    check(
        "access_rejected_line",
        &spec("127.0.0.1", THREADR_RULES),
        &live(
            "127.0.0.1",
            LIVE_THREADR_RULES,
            r#"[{ "line": 12, "message": "peer authentication is only supported on local sockets" }]"#,
        ),
    );
}

#[test]
fn rules_that_refuse_pgspec_are_an_error_and_the_services_are_named() {
    let rules = r#"access:
  - { type: local, database: all, user: postgres, method: peer }
  - { type: host, database: all, user: postgres, address: all, method: reject }
  - { type: host, database: all, user: threadr, address: 10.0.0.0/8, method: scram-sha-256 }
backup:
  schedule: "0 1 * * *"
  destination: { volume: threadr-backups }
pooler:
  image: pgspec-test/pgbouncer:1
"#;
    check(
        "access_lockout",
        &spec("127.0.0.1", rules),
        &live("127.0.0.1", LIVE_THREADR_RULES, "[]"),
    );
    let allowed = format!("{rules}access_lockout: allow\n");
    let plan = plan_check::plan(
        &spec("127.0.0.1", &allowed),
        &live("127.0.0.1", LIVE_THREADR_RULES, "[]"),
    );
    assert!(
        plan.errors
            .iter()
            .all(|error| !error.message.contains("lock pgspec out")),
        "{:?}",
        plan.errors
    );
}

#[test]
fn a_port_published_beyond_the_loopback_without_narrower_rules_is_noted() {
    check(
        "access_open_port",
        &spec(
            "0.0.0.0",
            "access:\n  - { type: host, database: all, user: all, address: all, method: scram-sha-256 }\n",
        ),
        &live("0.0.0.0", LIVE_THREADR_RULES, "[]"),
    );
    // Rules narrower than `all` silence the note; so does the loopback.
    let narrow = plan_check::plan(
        &spec("0.0.0.0", THREADR_RULES),
        &live("0.0.0.0", LIVE_THREADR_RULES, "[]"),
    );
    assert!(narrow.notes.is_empty(), "{:?}", narrow.notes);
    let without = plan_check::plan(&spec("127.0.0.1", ""), &live("127.0.0.1", "[]", "[]"));
    assert!(without.notes.is_empty(), "{:?}", without.notes);
    assert!(without.actions.is_empty(), "{:?}", without.actions);
}
