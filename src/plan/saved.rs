//! Saved plans: a plan plus the spec it came from and the fingerprint of the
//! live state it was made against. `apply PLANFILE` refuses a saved plan
//! whose fingerprint no longer matches what is live.
//!
//! A saved plan holds secret references only, never values.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::access::Access;
use crate::model::monitoring::exporter::{Exporter, ExporterKind};
use crate::model::replicas::Replication;
use crate::model::upgrade::UpgradeFacts;
use crate::model::{
    Backup, Container, Database, Deployment, Desired, Image, Pooler, Role, ServerInfo, Setting, Tls,
};
use crate::plan::{FORMAT_VERSION, Plan};

/// The `format` field of every saved plan, so other JSON is recognised.
pub const FORMAT: &str = "pgspec-saved-plan";

/// A plan written by `plan --out`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedPlan {
    pub format: String,
    pub format_version: u32,
    pub pgspec_version: String,
    pub spec: Desired,
    /// `fingerprint` of the live deployment the plan was made from.
    pub live_fingerprint: String,
    pub plan: Plan,
}

/// Why a saved plan cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SavedPlanError {
    /// The file is not JSON of the saved-plan shape.
    #[error("not a pgspec saved plan")]
    Malformed(#[source] serde_json::Error),
    /// The file is JSON but of another kind or version.
    #[error(
        "saved plan format `{format}` version {version} is not supported (expected `{FORMAT}` version {FORMAT_VERSION})"
    )]
    Unsupported { format: String, version: u32 },
}

impl SavedPlan {
    pub fn new(spec: Desired, live: &Deployment, plan: Plan) -> Self {
        SavedPlan {
            format: FORMAT.to_owned(),
            format_version: FORMAT_VERSION,
            pgspec_version: env!("CARGO_PKG_VERSION").to_owned(),
            spec,
            live_fingerprint: fingerprint(live),
            plan,
        }
    }

    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self)
            .unwrap_or_else(|error| panic!("a saved plan always serializes: {error}"));
        text.push('\n');
        text
    }

    pub fn from_json(text: &str) -> Result<Self, SavedPlanError> {
        let saved: SavedPlan = serde_json::from_str(text).map_err(SavedPlanError::Malformed)?;
        if saved.format != FORMAT || saved.format_version != FORMAT_VERSION {
            return Err(SavedPlanError::Unsupported {
                format: saved.format,
                version: saved.format_version,
            });
        }
        Ok(saved)
    }
}

/// A stable hash of a live deployment: equal states give equal strings.
/// The container's health verdict is left out: it moves on its own (a new
/// container goes from `starting` to `healthy` within seconds), only adds a
/// note to a plan, and would otherwise make a plan stale between reading it
/// and approving it. So are the databases' sizes a pending upgrade reads,
/// which move with every write and only feed the plan's estimate.
pub fn fingerprint(live: &Deployment) -> String {
    // Maps are BTreeMaps and lists are sorted by `live`, so the JSON text is
    // canonical for equal states. Hashed as it is written: at scale the
    // text runs to megabytes, and this runs while the plan is held.
    let mut hasher = std::io::BufWriter::with_capacity(1 << 16, Hasher(Sha256::new()));
    serde_json::to_writer(&mut hasher, &Steady::of(live))
        .unwrap_or_else(|error| panic!("a deployment always serializes: {error}"));
    let digest = hasher
        .into_inner()
        .unwrap_or_else(|error| panic!("hashing cannot fail: {error}"))
        .0
        .finalize();
    format!("sha256:{}", hex::encode(digest))
}

/// A live state as its fingerprint reads it: written exactly as
/// `Deployment` writes itself, borrowing every field, but with the
/// container's health verdict and the upgrade's database sizes left out
/// (only those two small parts are copied to leave them out; a copy of the
/// whole state would double it at scale).
#[derive(Serialize)]
struct Steady<'a> {
    name: &'a String,
    #[serde(skip_serializing_if = "Option::is_none")]
    container: Option<Cow<'a, Container>>,
    #[serde(skip_serializing_if = "empty")]
    settings: &'a BTreeMap<String, Setting>,
    #[serde(skip_serializing_if = "empty")]
    roles: &'a BTreeMap<String, Role>,
    #[serde(skip_serializing_if = "empty")]
    databases: &'a BTreeMap<String, Database>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pooler: Option<&'a Pooler>,
    #[serde(skip_serializing_if = "Option::is_none")]
    backup: Option<&'a Backup>,
    #[serde(skip_serializing_if = "Option::is_none")]
    access: Option<&'a Access>,
    #[serde(skip_serializing_if = "empty")]
    exporters: &'a BTreeMap<ExporterKind, Exporter>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replication: Option<&'a Replication>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<&'a Tls>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server: Option<&'a ServerInfo>,
    #[serde(skip_serializing_if = "empty")]
    images: &'a BTreeMap<String, Image>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upgrade: Option<Cow<'a, UpgradeFacts>>,
}

impl<'a> Steady<'a> {
    fn of(live: &'a Deployment) -> Steady<'a> {
        // No `..`: a field added to `Deployment` does not compile until it
        // is written here too.
        let Deployment {
            name,
            container,
            settings,
            roles,
            databases,
            pooler,
            backup,
            access,
            exporters,
            replication,
            tls,
            server,
            images,
            upgrade,
        } = live;
        Steady {
            name,
            container: container.as_ref().map(|container| {
                if container.health.is_none() {
                    Cow::Borrowed(container)
                } else {
                    Cow::Owned(Container {
                        health: None,
                        ..container.clone()
                    })
                }
            }),
            settings,
            roles,
            databases,
            pooler: pooler.as_ref(),
            backup: backup.as_ref(),
            access: access.as_ref(),
            exporters,
            replication: replication.as_ref(),
            tls: tls.as_ref(),
            server: server.as_ref(),
            images,
            upgrade: upgrade.as_ref().map(|facts| {
                if facts.database_sizes.is_empty() {
                    Cow::Borrowed(facts)
                } else {
                    Cow::Owned(UpgradeFacts {
                        database_sizes: BTreeMap::new(),
                        ..facts.clone()
                    })
                }
            }),
        }
    }
}

fn empty<K, V>(map: &&BTreeMap<K, V>) -> bool {
    map.is_empty()
}

/// A SHA-256 that text can be written into.
struct Hasher(Sha256);

impl std::io::Write for Hasher {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Database, Extension};

    #[test]
    fn fingerprint_moves_with_live_state() {
        let mut live = Deployment {
            name: "app".into(),
            ..Deployment::default()
        };
        let before = fingerprint(&live);
        assert_eq!(before, fingerprint(&live.clone()));
        let mut database = Database {
            name: "app".into(),
            ..Database::default()
        };
        database.extensions.insert(
            "pg_trgm".into(),
            Extension {
                name: "pg_trgm".into(),
                version: Some("1.6".into()),
                ..Extension::default()
            },
        );
        live.databases.insert("app".into(), database);
        assert_ne!(before, fingerprint(&live));
        // Hashed as it is written, the digest is that of the whole JSON
        // text: saved plans of earlier versions keep their fingerprints.
        let text = serde_json::to_vec(&live).unwrap();
        assert_eq!(
            fingerprint(&live),
            format!("sha256:{}", hex::encode(Sha256::digest(&text)))
        );
    }

    #[test]
    fn the_steady_view_writes_every_field_as_the_deployment_does() {
        let mut live = Deployment {
            name: "app".into(),
            container: Some(Container::default()),
            pooler: Some(Pooler::default()),
            backup: Some(Backup::default()),
            access: Some(Access::default()),
            replication: Some(Replication::default()),
            tls: Some(Tls::default()),
            server: Some(ServerInfo::default()),
            upgrade: Some(UpgradeFacts::default()),
            ..Deployment::default()
        };
        live.settings.insert("work_mem".into(), Setting::default());
        live.roles.insert("app".into(), Role::default());
        live.databases.insert("app".into(), Database::default());
        live.exporters.insert(
            ExporterKind::Postgres,
            Exporter {
                kind: ExporterKind::Postgres,
                image: "exporter:1".into(),
                port: Some(9187),
                bind_address: "127.0.0.1".into(),
                role: "monitor".into(),
                password: None,
                state: Default::default(),
                image_id: "sha256:1".into(),
                config_hash: "1".into(),
                password_matches: Some(true),
            },
        );
        live.images.insert("postgres:17".into(), Image::default());
        assert_eq!(
            serde_json::to_string(&Steady::of(&live)).unwrap(),
            serde_json::to_string(&live).unwrap()
        );
    }

    #[test]
    fn fingerprint_ignores_the_health_verdict() {
        let starting = Deployment {
            name: "app".into(),
            container: Some(crate::model::Container {
                name: "app-postgres".into(),
                health: Some("starting".into()),
                ..crate::model::Container::default()
            }),
            ..Deployment::default()
        };
        let mut healthy = starting.clone();
        if let Some(container) = &mut healthy.container {
            container.health = Some("healthy".into());
        }
        assert_eq!(fingerprint(&starting), fingerprint(&healthy));
        let mut moved = healthy.clone();
        if let Some(container) = &mut moved.container {
            container.port = 5433;
        }
        assert_ne!(fingerprint(&healthy), fingerprint(&moved));
    }

    #[test]
    fn fingerprint_ignores_the_sizes_an_upgrade_reads_but_not_its_extensions() {
        let facts = crate::model::upgrade::UpgradeFacts {
            database_sizes: [("app".to_owned(), 8_000_000)].into(),
            ..Default::default()
        };
        let before = Deployment {
            name: "app".into(),
            upgrade: Some(facts),
            ..Deployment::default()
        };
        let mut written = before.clone();
        if let Some(facts) = &mut written.upgrade {
            facts.database_sizes.insert("app".to_owned(), 9_000_000);
        }
        assert_eq!(fingerprint(&before), fingerprint(&written));
        let mut extended = written.clone();
        if let Some(facts) = &mut extended.upgrade {
            facts.installed.insert(
                "app".to_owned(),
                [("pg_trgm".to_owned(), "1.6".to_owned())].into(),
            );
        }
        assert_ne!(fingerprint(&written), fingerprint(&extended));
    }

    #[test]
    fn rejects_other_json() {
        assert!(matches!(
            SavedPlan::from_json("{\"a\": 1}"),
            Err(SavedPlanError::Malformed(_))
        ));
    }
}
