//! Issue 18: plans for streaming replicas as people read them. The spec
//! below is converged in memory (diff, then the simulated apply) so that
//! each case changes one thing of the live state: new replicas, a stopped
//! one (drift), one whose slot or volume is gone (re-cloned), one no
//! longer declared (container and slot removed, volume kept), a rolling
//! minor image update (replicas first, the read-only pool moved), a raised
//! and a lowered `max_connections`, and lag beyond `max_lag`.

use std::path::Path;

use pgspec::model::replicas::Replica;
use pgspec::model::{ContainerState, Deployment, Desired, Image, Pooler};
use pgspec::plan::{self, render};

fn spec(image: &str, count: u32, max_connections: u32) -> String {
    format!(
        r#"
version: 1
name: chat
postgres:
  image: {image}
  superuser: {{ password: {{ env: CHAT_PG_PASSWORD }} }}
  settings: {{ max_connections: {max_connections} }}
access:
  - {{ type: local, database: all, user: all, method: trust }}
  - {{ type: host, database: all, user: all, address: all, method: scram-sha-256 }}
replicas:
  count: {count}
  role: replicator
  max_lag: 16MB
pooler:
  image: pgbouncer:1
  databases:
    chat_ro: {{ database: chat, target: replica }}
roles:
  - {{ name: replicator, login: true, replication: true, password: {{ env: CHAT_REPLICATION_PASSWORD }} }}
databases:
  - name: chat
"#
    )
}

fn desired(yaml: &str) -> Desired {
    pgspec::spec::load_str(Path::new("spec.yaml"), yaml)
        .and_then(|loaded| loaded.validate())
        .unwrap_or_else(|diagnostics| panic!("{}", diagnostics.render(false)))
        .spec
}

/// A server that runs, with nothing of the spec in it yet.
fn empty_live() -> Deployment {
    serde_json::from_str(
        r#"{ "name": "chat",
             "container": { "name": "chat-postgres", "image": "postgres:17.2", "port": 5432,
                            "bind_address": "127.0.0.1", "volume": "chat-pgdata",
                            "data_mount": "/var/lib/postgresql/data", "pgdata": "/var/lib/postgresql/data", "data_kind": "volume", "superuser": "postgres",
                            "state": "running", "id": "abc", "image_id": "sha256:1", "data_major": 17,
                            "volume_exists": true, "network": "chat-net", "network_exists": true,
                            "restart_policy": "unless-stopped",
                            "health_check": ["CMD", "pg_isready", "--quiet", "--host", "127.0.0.1", "--port", "5432", "--dbname", "postgres", "--username", "postgres"] },
             "images": { "postgres:17.2": { "id": "sha256:1" }, "postgres:17.4": { "id": "sha256:4" } },
             "server": { "version_num": 170002, "current_user": "postgres" },
             "settings": { "max_connections": { "value": "100" } },
             "roles": {
                 "postgres": { "name": "postgres", "login": true, "superuser": true, "createdb": true,
                               "createrole": true, "replication": true, "bypassrls": true,
                               "inherit": true, "connection_limit": -1 } } }"#,
    )
    .expect("live json")
}

/// The live state after applying `spec` to `live`, in memory, until the
/// plan is empty.
fn converged(spec: &Desired, mut live: Deployment) -> Deployment {
    for _ in 0..4 {
        let plan = plan::diff(&spec.deployment, &live, &spec.options);
        if plan.actions.is_empty() {
            return live;
        }
        live = plan::simulate(&live, &plan);
    }
    let plan = plan::diff(&spec.deployment, &live, &spec.options);
    panic!("does not converge: {plan:#?}");
}

fn text(spec: &Desired, live: &Deployment) -> String {
    let plan = plan::diff(&spec.deployment, live, &spec.options);
    render::text(
        &plan,
        render::TextOptions {
            color: false,
            show_unmanaged: false,
        },
    )
}

fn replica<'a>(live: &'a mut Deployment, name: &str) -> &'a mut Replica {
    live.replication
        .as_mut()
        .and_then(|replication| replication.replicas.get_mut(name))
        .expect("a live replica")
}

/// The converged two-replica deployment, with its pooler running and its
/// pools where the spec sends them.
fn steady() -> (Desired, Deployment) {
    let spec = desired(&spec("postgres:17.2", 2, 100));
    let mut live = empty_live();
    for _ in 0..4 {
        live = plan::simulate(&live, &plan::diff(&spec.deployment, &live, &spec.options));
        // What the in-memory apply leaves out: PgBouncer reports the
        // settings pgspec always writes.
        if let Some(pooler) = &mut live.pooler {
            pooler.settings.extend(Pooler::base_settings("postgres"));
        }
    }
    let live = converged(&spec, live);
    (spec, live)
}

#[test]
fn new_replicas_are_cloned_with_their_slots_and_the_pool_goes_to_the_first() {
    let spec = desired(&spec("postgres:17.2", 2, 100));
    insta::assert_snapshot!("replicas_new", text(&spec, &empty_live()));
}

#[test]
fn a_converged_deployment_plans_nothing() {
    let (spec, live) = steady();
    assert!(
        plan::diff(&spec.deployment, &live, &spec.options)
            .actions
            .is_empty()
    );
    let pooler = live.pooler.as_ref().expect("a pooler");
    assert_eq!(pooler.served["chat_ro"].host, "chat-replica-1");
    assert_eq!(pooler.served["chat_ro"].database, "chat");
}

#[test]
fn drift_stopped_not_streaming_lost_slot_and_lost_volume() {
    let (spec, mut live) = steady();
    replica(&mut live, "1").state = ContainerState::Stopped;
    replica(&mut live, "2").slot_exists = false;
    insta::assert_snapshot!("replicas_stopped_and_slot_gone", text(&spec, &live));

    let (spec, mut live) = steady();
    replica(&mut live, "1").streaming = false;
    let gone = replica(&mut live, "2");
    gone.volume_exists = false;
    gone.state = ContainerState::Missing;
    insta::assert_snapshot!("replicas_not_streaming_and_volume_gone", text(&spec, &live));
}

#[test]
fn fewer_replicas_keep_the_volume_unless_pruning() {
    let (_, live) = steady();
    let spec = desired(&spec("postgres:17.2", 1, 100));
    insta::assert_snapshot!("replicas_fewer", text(&spec, &live));
    let spec = desired(&format!("prune: true\n{}", spec_text(1)));
    insta::assert_snapshot!("replicas_fewer_pruned", text(&spec, &live));
}

fn spec_text(count: u32) -> String {
    spec("postgres:17.2", count, 100)
}

#[test]
fn rolling_minor_update_goes_replica_by_replica_then_the_server() {
    let (_, mut live) = steady();
    live.images.insert(
        "postgres:17.4".to_owned(),
        Image {
            id: "sha256:4".to_owned(),
            ..Image::default()
        },
    );
    let spec = desired(&spec("postgres:17.4", 2, 100));
    let plan = plan::diff(&spec.deployment, &live, &spec.options);
    let order: Vec<&str> = plan
        .actions
        .iter()
        .map(|action| action.address.as_str())
        .collect();
    assert_eq!(
        order[..3],
        ["replica.1", "replica.2", "container.chat-postgres"]
    );
    insta::assert_snapshot!("replicas_rolling_update", text(&spec, &live));
}

#[test]
fn max_connections_rises_on_replicas_first_and_falls_on_the_server_first() {
    let (_, live) = steady();
    let raised = desired(&spec("postgres:17.2", 2, 200));
    insta::assert_snapshot!("replicas_max_connections_raised", text(&raised, &live));
    let (_, mut live) = steady();
    live.settings.get_mut("max_connections").expect("set").value = "200".to_owned();
    let lowered = desired(&spec("postgres:17.2", 2, 50));
    let plan = plan::diff(&lowered.deployment, &live, &lowered.options);
    let order: Vec<&str> = plan
        .actions
        .iter()
        .map(|action| action.address.as_str())
        .collect();
    let server = order
        .iter()
        .position(|address| address.starts_with("container."));
    let first = order
        .iter()
        .position(|address| address.starts_with("replica."));
    assert!(server < first, "{order:?}");
    insta::assert_snapshot!("replicas_max_connections_lowered", text(&lowered, &live));
}

#[test]
fn lag_beyond_max_lag_is_a_note() {
    let (spec, mut live) = steady();
    replica(&mut live, "2").lag_bytes = Some(64 * 1024 * 1024);
    let plan = plan::diff(&spec.deployment, &live, &spec.options);
    assert!(plan.actions.is_empty());
    insta::assert_snapshot!("replicas_lag_note", text(&spec, &live));
}
