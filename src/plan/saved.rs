//! Saved plans: a plan plus the spec it came from and the fingerprint of the
//! live state it was made against. `apply PLANFILE` refuses a saved plan
//! whose fingerprint no longer matches what is live.
//!
//! A saved plan holds secret references only, never values.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::Deployment;
use crate::model::Desired;
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
    // canonical for equal states.
    let moving = live
        .container
        .as_ref()
        .is_some_and(|container| container.health.is_some())
        || live
            .upgrade
            .as_ref()
            .is_some_and(|facts| !facts.database_sizes.is_empty());
    // Hashed as it is written: at scale the JSON text of a live state runs
    // to megabytes, and this runs while the plan is held.
    let mut hasher = std::io::BufWriter::with_capacity(1 << 16, Hasher(Sha256::new()));
    let written = if moving {
        let mut steady = live.clone();
        if let Some(container) = &mut steady.container {
            container.health = None;
        }
        if let Some(facts) = &mut steady.upgrade {
            facts.database_sizes.clear();
        }
        serde_json::to_writer(&mut hasher, &steady)
    } else {
        serde_json::to_writer(&mut hasher, live)
    };
    written.unwrap_or_else(|error| panic!("a deployment always serializes: {error}"));
    let digest = hasher
        .into_inner()
        .unwrap_or_else(|error| panic!("hashing cannot fail: {error}"))
        .0
        .finalize();
    format!("sha256:{}", hex::encode(digest))
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
