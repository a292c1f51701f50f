//! Plans: what apply would change, why, and how.
//!
//! `diff` compares a desired and a live `Deployment` and returns a `Plan`;
//! `order` puts its actions in dependency order; `render` turns it into text
//! or JSON; `saved` writes it to a file with the fingerprint of the live
//! state it came from; `simulate` is an in-memory model of apply used by the
//! property tests. Nothing here does I/O or is async.

pub mod diff;
pub mod markdown;
pub mod order;
pub mod render;
pub mod saved;
pub mod simulate;

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::address::ObjectKind;
use crate::model::{Container, Pooler};
use crate::secret::Secret;

pub use diff::diff;
pub use simulate::simulate;

/// Version of the plan JSON format (`pgspec plan --json`) and of saved plans.
pub const FORMAT_VERSION: u32 = 1;

/// An ordered list of actions, plus what was seen but is not pgspec's to
/// change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub deployment: String,
    pub actions: Vec<Action>,
    /// Live objects the spec does not mention; reported, never touched.
    #[serde(default)]
    pub unmanaged: Vec<String>,
    /// Things the user should know that change nothing (creation-time
    /// differences, unverifiable passwords, objects planned after a start).
    #[serde(default)]
    pub notes: Vec<Note>,
    /// Problems that make the plan impossible to apply.
    #[serde(default)]
    pub errors: Vec<PlanError>,
    /// Indexes whose tables do not exist yet: the application's migrations
    /// create them. Not an error and not an action: apply does everything
    /// else, and the apply after the migrations builds them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting: Vec<Waiting>,
}

impl Plan {
    /// Whether apply has actions to run.
    pub fn has_changes(&self) -> bool {
        !self.actions.is_empty()
    }

    /// Whether the deployment is not yet what the spec says: actions to
    /// run, or indexes waiting for their tables (plan's detailed exit code
    /// and drift report both).
    pub fn is_pending(&self) -> bool {
        self.has_changes() || !self.waiting.is_empty()
    }

    pub fn summary(&self) -> Summary {
        Summary::count(self.actions.iter().map(|action| action.kind))
    }

    /// Adds an action with its text and lists trimmed to their length. A
    /// plan at scale holds tens of thousands of actions, built by
    /// `format!`, which reserves up to twice what it writes; the kinds of
    /// object there can be thousands of go through here. The list grows by
    /// a quarter at a time rather than doubling, so that at most a fifth of
    /// it stands empty.
    pub fn add(&mut self, mut action: Action) {
        action.shrink_to_fit();
        if self.actions.len() == self.actions.capacity() {
            self.actions.reserve_exact(self.actions.len() / 4 + 16);
        }
        self.actions.push(action);
    }
}

/// An index waiting for its table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    pub address: String,
    /// `schema.table`.
    pub table: String,
    /// The existing table closest in name, when the database already holds
    /// tables and one is close enough to be a misspelling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closest: Option<String>,
}

/// Counts of actions by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub add: usize,
    pub change: usize,
    pub replace: usize,
    pub destroy: usize,
    pub restart: usize,
}

impl Summary {
    /// Counts actions by kind.
    pub fn count(kinds: impl IntoIterator<Item = ActionKind>) -> Summary {
        let mut summary = Summary::default();
        for kind in kinds {
            match kind {
                ActionKind::Create => summary.add += 1,
                // Adopting changes nothing but what an update would.
                ActionKind::Update | ActionKind::Adopt => summary.change += 1,
                ActionKind::Replace | ActionKind::Upgrade => summary.replace += 1,
                ActionKind::Delete => summary.destroy += 1,
                ActionKind::Restart => summary.restart += 1,
            }
        }
        summary
    }
}

/// A note attached to an address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Note {
    pub address: String,
    pub message: String,
}

/// A reason the plan cannot be applied, attached to an address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PlanError {
    pub address: String,
    pub message: String,
}

/// One change to one object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "StoredAction")]
pub struct Action {
    /// The object, named the same way everywhere: `role.reporting`,
    /// `database.app/extension.pg_trgm`, `container.ledger-postgres`.
    pub address: String,
    /// The kind of object `address` names. Not written: plan JSON and
    /// saved plans hold the address, and loading derives the kind from it.
    #[serde(skip_serializing)]
    pub object: ObjectKind,
    pub kind: ActionKind,
    pub reason: String,
    pub risk: Risk,
    pub changes: Vec<Change>,
    pub steps: Vec<Step>,
}

/// An action as plan JSON and saved plans hold it: everything but the kind
/// of object, which its address names.
#[derive(Deserialize)]
struct StoredAction {
    address: String,
    kind: ActionKind,
    reason: String,
    risk: Risk,
    changes: Vec<Change>,
    steps: Vec<Step>,
}

impl TryFrom<StoredAction> for Action {
    type Error = String;

    fn try_from(stored: StoredAction) -> Result<Action, String> {
        let object = ObjectKind::of(&stored.address).ok_or_else(|| {
            format!(
                "the address `{}` names no kind of object pgspec plans",
                stored.address
            )
        })?;
        Ok(Action {
            address: stored.address,
            object,
            kind: stored.kind,
            reason: stored.reason,
            risk: stored.risk,
            changes: stored.changes,
            steps: stored.steps,
        })
    }
}

impl Action {
    /// Frees what its strings and lists reserved beyond their length.
    fn shrink_to_fit(&mut self) {
        self.address.shrink_to_fit();
        self.reason.shrink_to_fit();
        shrink_all(&mut self.risk.locks);
        self.changes.shrink_to_fit();
        for change in &mut self.changes {
            for value in [&mut change.old, &mut change.new].into_iter().flatten() {
                value.shrink_to_fit();
            }
        }
        self.steps.shrink_to_fit();
        for step in &mut self.steps {
            match step {
                Step::Sql { statements, .. } => shrink_all(statements),
                Step::BuildIndex {
                    table,
                    statements,
                    concurrently,
                    ..
                } => {
                    table.shrink_to_fit();
                    shrink_all(statements);
                    shrink_all(concurrently);
                }
                _ => {}
            }
        }
    }
}

/// Shrinks a list of strings and each string in it to fit.
fn shrink_all(strings: &mut Vec<String>) {
    strings.shrink_to_fit();
    for string in strings {
        string.shrink_to_fit();
    }
}

#[cfg(test)]
impl Action {
    /// An action with nothing but an address and a kind, for tests of how
    /// actions are ordered and shown.
    pub(crate) fn bare(address: &str, kind: ActionKind) -> Action {
        Action {
            address: address.to_owned(),
            object: ObjectKind::of(address).expect("a test address names a kind of object"),
            kind,
            reason: String::new(),
            risk: Risk::none(),
            changes: Vec::new(),
            steps: Vec::new(),
        }
    }
}

/// What an action does to its object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    Create,
    Update,
    /// A container pgspec did not create, which matches the spec, becomes
    /// the deployment's: joined to its network and updated in place, never
    /// restarted or recreated.
    Adopt,
    /// The data moves to another PostgreSQL major version (a declared
    /// upgrade); the container is replaced by the action after it.
    Upgrade,
    Replace,
    Delete,
    Restart,
}

/// What an action costs the running deployment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Risk {
    /// Locks taken, e.g. `SHARE UPDATE EXCLUSIVE on public.items`.
    #[serde(default)]
    pub locks: Vec<String>,
    /// The server restarts.
    #[serde(default)]
    pub restart: bool,
    /// Clients are disconnected and must reconnect.
    #[serde(default)]
    pub reconnects: bool,
}

impl Risk {
    pub fn none() -> Self {
        Risk::default()
    }

    pub fn is_none(&self) -> bool {
        self.locks.is_empty() && !self.restart && !self.reconnects
    }
}

/// One field's `old -> new`. A sensitive change carries no values at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Most fields are named by a literal (`login`, `definition`); a plan at
    /// scale holds one change or more per object, so those are not copied.
    pub field: Cow<'static, str>,
    pub old: Option<String>,
    pub new: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sensitive: bool,
}

impl Change {
    pub fn new(
        field: impl Into<Cow<'static, str>>,
        old: Option<String>,
        new: Option<String>,
    ) -> Self {
        Change {
            field: field.into(),
            old,
            new,
            sensitive: false,
        }
    }

    /// A change whose values must never be shown.
    pub fn sensitive(field: impl Into<Cow<'static, str>>) -> Self {
        Change {
            field: field.into(),
            old: None,
            new: None,
            sensitive: true,
        }
    }
}

/// One statement or API call an action runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Step {
    /// SQL in one database. With `transaction`, all statements commit
    /// together; without, each runs on its own (CREATE DATABASE, ALTER
    /// SYSTEM, CREATE INDEX CONCURRENTLY cannot run in a transaction).
    Sql {
        /// The database to run in; `None` is the maintenance database pgspec
        /// connects to first (for cluster-wide statements).
        database: Option<String>,
        statements: Vec<String>,
        transaction: bool,
    },
    /// Set a role's password to a SCRAM verifier computed from the secret at
    /// apply time; the plan holds only the reference.
    SetPassword { role: String, secret: Secret },
    /// Mark an index pgspec built as its own, with the stamp that lets
    /// later plans trust it without canonicalising it again
    /// (`model::IndexStamp`): `spec` is the hash of the definition it ran;
    /// the hash of the server's definition is computed by the server.
    StampIndex {
        /// The deployment the stamp names (empty in saved plans of
        /// versions before stamps named it).
        #[serde(default)]
        deployment: String,
        database: String,
        schema: String,
        name: String,
        spec: String,
    },
    /// Build an index on a table small enough that a plain `CREATE INDEX`,
    /// which holds writes back for the moment it takes, beats the waits of a
    /// concurrent build. One transaction locks `table` in SHARE mode, checks
    /// that it still takes at most `max_bytes` (`pg_relation_size`) and runs
    /// `statements` (drop a leftover under the name, build the index). A
    /// table that grew past `max_bytes` since the plan is not locked any
    /// longer: `concurrently` runs instead, statement by statement.
    BuildIndex {
        database: String,
        /// `schema.table`, quoted.
        table: String,
        max_bytes: i64,
        statements: Vec<String>,
        concurrently: Vec<String>,
    },
    /// Create an extension, in one transaction that first checks it is not
    /// installed: one that is there already (made by someone else since the
    /// plan, or copied from the template of a new database) is left as it
    /// is and not marked as pgspec's. `statement` is a plain `CREATE
    /// EXTENSION`, so one created by a racing session makes it fail rather
    /// than be claimed; `mark` is the comment written when it did create it.
    CreateExtension {
        database: String,
        name: String,
        statement: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mark: Option<String>,
    },
    /// Write the client authentication rules into the file the server
    /// reads (its `hba_file`, asked at apply time) in `container`, have
    /// the server check the file (`pg_hba_file_rules`), and reload it; a
    /// file the server rejects is replaced by the one it had, byte for
    /// byte, and nothing is reloaded.
    WriteAccessRules {
        container: String,
        rules: Vec<crate::model::access::AccessRule>,
    },
    /// A Docker Engine call.
    Docker(DockerStep),
}

/// Docker Engine calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum DockerStep {
    CreateVolume {
        name: String,
    },
    /// The deployment's bridge network; containers reach each other by name.
    CreateNetwork {
        name: String,
    },
    /// Attach an existing container to the deployment's network, in
    /// place, where it answers to `aliases` too (an existing network the
    /// spec names with aliases).
    ConnectNetwork {
        network: String,
        container: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        aliases: Vec<String>,
    },
    /// Attach the server container to a network pgspec does not own,
    /// where it answers to `aliases` too. With `reconnect` it is detached
    /// first: the engine changes an attachment's aliases only by connecting
    /// it again, which drops the connections made over that network. The
    /// server keeps running.
    JoinNetwork {
        network: String,
        container: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        aliases: Vec<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        reconnect: bool,
    },
    /// Record the adoption of a server container pgspec did not create on
    /// a network it does not own: the mark file (`model::ADOPTED_MARK`)
    /// naming `deployment`, written into the container's data directory
    /// as its owner. The server keeps running and ignores the file.
    MarkAdopted {
        container: String,
        deployment: String,
    },
    /// A declared major version upgrade of the data on the container's
    /// volume (`dump-restore`): a scratch server of the new image on a new
    /// volume, on the deployment's network; the extensions the old server
    /// has checked against the new image; the old server made read-only;
    /// the roles and every database copied with the new image's tools and
    /// compared (row counts, sequence values); then, with both servers
    /// stopped, the volume's data kept in `kept` and replaced by the new
    /// server's. The old container stays, stopped, for the replace after it.
    UpgradeData {
        container: Box<Container>,
        from_major: u32,
        to_major: u32,
        kept: String,
        /// The pooler container whose databases are paused (`PAUSE`) for
        /// the copy; the `ResumePooler` after the replace resumes them, or
        /// this step when the copy fails.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pooler: Option<String>,
    },
    /// Before anything of the live container is touched: pull and inspect
    /// the image, read where it keeps its data directory, check the major
    /// version of the data on the volume, prove that the live container's
    /// data directory is on the named volume, and check — in a container
    /// created from the new image but never started — that the new container
    /// will find the same data directory. Any doubt stops the apply with the
    /// old server still running.
    PrepareContainer {
        container: Box<Container>,
    },
    /// Create the server container from the desired config (labels
    /// included), with the data layout read from its image.
    CreateContainer {
        container: Box<Container>,
    },
    /// After a replace or a recreate on an existing volume: the server that
    /// came up runs on the same data directory (same system identifier)
    /// and has every database it had; otherwise apply stops at once.
    VerifyData {
        name: String,
        /// Databases the server had when the plan was made.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        databases: Vec<String>,
    },
    StartContainer {
        name: String,
    },
    /// Fast shutdown with a timeout, then remove; the volume stays.
    RemoveContainer {
        name: String,
    },
    /// `docker update`: resources in place.
    UpdateResources {
        name: String,
        nano_cpus: Option<i64>,
        memory_bytes: Option<i64>,
        #[serde(default)]
        restart_policy: Option<String>,
        /// The CPU weight; `None` leaves it as it is.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cpu_shares: Option<i64>,
        /// The memory reservation; `None` leaves it as it is.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        memory_reservation_bytes: Option<i64>,
    },
    RestartContainer {
        name: String,
    },
    /// Wait until the server accepts connections.
    WaitReady {
        name: String,
    },
    /// Create the backup container from `backup.agent` (labels carry the
    /// schedules), with the agent, its configuration and the superuser's
    /// password file copied in, then start it and wait for the agent.
    /// Before the backup container is created or replaced: the agent (the
    /// pgspec binary) starts in a throwaway container of the image, so an
    /// image it cannot run in (musl, an older glibc, another architecture)
    /// stops the apply before the old backup container is touched.
    CheckBackupAgent {
        image: String,
    },
    CreateBackupContainer {
        backup: Box<crate::model::Backup>,
    },
    /// Create the PgBouncer container, stopped, on the deployment network:
    /// its configuration is written before it starts.
    CreatePooler {
        name: String,
        pooler: Box<Pooler>,
        network: String,
    },
    /// Write `pgbouncer.ini` and the auth file into the pooler container. The
    /// auth file holds the SCRAM verifiers of `config.users`, read from the
    /// server's `pg_authid` at apply time; the plan names only the roles.
    WritePoolerConfig {
        name: String,
        config: Box<PoolerConfig>,
    },
    /// Start the pooler container and wait until its admin console answers.
    StartPooler {
        name: String,
    },
    /// `RELOAD` through PgBouncer's admin console: the written configuration
    /// takes effect and connected clients stay connected.
    ReloadPooler {
        name: String,
    },
    /// `RESUME` through PgBouncer's admin console: clients held since a
    /// `PAUSE` go on to the server. A PgBouncer that is not paused is left
    /// as it is.
    ResumePooler {
        name: String,
    },
    /// Stop and remove the pooler container; it holds no data.
    RemovePooler {
        name: String,
    },
    /// Create a metrics exporter container, stopped, on the deployment
    /// network, with `environment` (no password in it) and the
    /// `org.pgspec.config-hash` label.
    CreateExporter {
        name: String,
        exporter: Box<crate::model::monitoring::exporter::Exporter>,
        network: String,
        environment: Vec<String>,
        config_hash: String,
    },
    /// Write the monitoring role's password into the exporter container as
    /// files only the exporter's user may read; the plan holds the reference.
    WriteExporterPassword {
        name: String,
        secret: crate::secret::Secret,
    },
    /// Start the exporter container, or restart it when it runs, so that it
    /// reads its password file again.
    RestartExporter {
        name: String,
    },
    /// Stop and remove an exporter container; it holds no data.
    RemoveExporter {
        name: String,
    },
    /// A replica's data: its volume created when missing (else emptied: a
    /// replica holds nothing the server lacks), then, in a throwaway
    /// container of its image on the deployment's network, `pg_basebackup`
    /// from `server` as `role` on the replica's slot, `standby.signal`, and
    /// `primary_conninfo` naming a password file in the data directory.
    /// The plan holds only the password's reference.
    CloneReplica {
        replica: Box<crate::model::replicas::Replica>,
        server: String,
        role: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret: Option<Secret>,
    },
    /// Create and start a replica's container on its volume.
    CreateReplica {
        replica: Box<crate::model::replicas::Replica>,
    },
    /// Start a stopped replica, or restart a running one.
    RestartReplica {
        name: String,
    },
    /// Wait until the server streams WAL to the replica on `slot`.
    WaitStreaming {
        name: String,
        slot: String,
    },
    /// Stop and remove a replica's container; its volume stays.
    RemoveReplica {
        name: String,
    },
    /// Drop a replica's replication slot on the server, once no walsender
    /// holds it.
    DropReplicaSlot {
        slot: String,
    },
    /// Remove a replica's volume (`prune: true`): it holds a copy of the
    /// server's data, nothing else.
    RemoveReplicaVolume {
        name: String,
    },
    /// Write the server's certificate, key and CA into `pgspec-tls` in the
    /// data directory of container `name`, owned by the server's user and
    /// the keys readable by it alone. A generated certificate is issued at
    /// apply time by the CA kept there (made first when there is none);
    /// files are read from the spec's references at apply time. The plan
    /// holds only references.
    WriteTls {
        name: String,
        source: Box<crate::model::TlsSource>,
    },
}

/// Everything PgBouncer's configuration is made of; `apply::pooler` renders
/// it as `pgbouncer.ini`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PoolerConfig {
    /// The server, by container name on the deployment network.
    pub server_host: String,
    pub server_port: u16,
    /// Databases served, with their overrides. Empty: every database, through
    /// a `*` fallback entry.
    pub databases: BTreeMap<String, BTreeMap<String, String>>,
    /// PgBouncer settings from the spec.
    pub settings: BTreeMap<String, String>,
    /// PgBouncer's `admin_users`: the superuser pgspec connects as.
    pub admin_user: String,
    /// Roles whose SCRAM verifiers go into the auth file.
    pub users: Vec<String>,
    /// Pools of `databases` that go to another database or host than the
    /// server's database of their name: a read-only pool on a replica.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub routes: BTreeMap<String, crate::model::PoolRoute>,
    /// Where the server's certificate and key come from, when it has TLS:
    /// the same files go into the pooler (a generated one copied from the
    /// server's data directory at apply time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Box<crate::model::TlsSource>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kind_of_object_is_not_written_and_is_read_back_from_the_address() {
        let action = Action::bare("database.app/extension.pg_trgm", ActionKind::Create);
        let json = serde_json::to_value(&action).expect("an action serializes");
        assert!(json.get("object").is_none(), "{json}");
        let loaded: Action = serde_json::from_value(json).expect("an action loads");
        assert_eq!(loaded.object, ObjectKind::Extension);
        assert_eq!(loaded, action);

        let mut unknown = serde_json::to_value(&action).expect("an action serializes");
        unknown["address"] = "volume.x".into();
        assert!(serde_json::from_value::<Action>(unknown).is_err());
    }
}
