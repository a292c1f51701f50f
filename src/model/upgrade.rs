//! What a pending major version upgrade needs to know of the live
//! deployment beyond what every plan reads: the databases' sizes (for the
//! plan's estimate of the write downtime), the extensions installed in
//! every database, and the extensions the new image ships, read from its
//! control files and scripts without starting it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// The copy rate the plan's estimate assumes: pg_dump, pg_restore and the
/// index builds together, on one local engine, in bytes per second.
pub const ASSUMED_COPY_BYTES_PER_SECOND: u64 = 50 * 1024 * 1024;

/// What only a pending upgrade reads, read when the spec declares
/// `postgres.upgrade` and the image runs another major version than the
/// data directory. Live only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UpgradeFacts {
    /// `pg_database_size` of every database but the templates, in bytes;
    /// a database pgspec's role may not measure is left out.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub database_sizes: BTreeMap<String, u64>,
    /// The extensions installed in every database the role may connect to:
    /// database -> extension -> version.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub installed: BTreeMap<String, BTreeMap<String, String>>,
    /// The new image's extensions, by name; `None` when they could not be
    /// read (`unread` says why) and apply checks them instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_extensions: Option<BTreeMap<String, ImageExtension>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unread: Option<String>,
}

/// One extension as an image's extension directory has it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageExtension {
    /// `default_version` of its control file: what `CREATE EXTENSION`
    /// without a version, as pg_dump writes it, installs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_version: Option<String>,
    /// Versions with an install script (`name--1.2.sql`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub installable: Vec<String>,
    /// Update scripts (`name--1.1--1.2.sql`) as (from, to).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub updates: Vec<(String, String)>,
}

impl UpgradeFacts {
    /// The total size of the databases measured.
    pub fn total_size(&self) -> u64 {
        self.database_sizes.values().sum()
    }

    /// Every extension the old server has that the new image cannot take,
    /// one line each, naming the databases it is installed in; empty when
    /// all can be restored (or the image's extensions were not read).
    pub fn extension_problems(&self) -> Vec<String> {
        let Some(catalog) = &self.image_extensions else {
            return Vec::new();
        };
        // extension -> version -> databases
        let mut wanted: BTreeMap<&str, BTreeMap<&str, Vec<&str>>> = BTreeMap::new();
        for (database, extensions) in &self.installed {
            for (name, version) in extensions {
                wanted
                    .entry(name)
                    .or_default()
                    .entry(version)
                    .or_default()
                    .push(database);
            }
        }
        let mut problems = Vec::new();
        for (name, versions) in wanted {
            for (version, databases) in versions {
                let found = catalog.get(name);
                let why = match found {
                    None => "is not in the new image".to_owned(),
                    Some(extension) => match extension.cannot_take(version) {
                        Some(why) => why,
                        None => continue,
                    },
                };
                let databases: Vec<String> = databases
                    .iter()
                    .map(|database| format!("`{database}`"))
                    .collect();
                problems.push(format!(
                    "extension `{name}` {version} (in {}) {why}",
                    databases.join(", ")
                ));
            }
        }
        problems
    }
}

impl ImageExtension {
    /// Why the new image cannot restore an extension installed at
    /// `version`: pg_dump writes `CREATE EXTENSION` without a version, so
    /// the restore installs the default version; that is right when it is
    /// the old version, when the image can update the old version to it, or
    /// when the image knows the old version at all.
    pub fn cannot_take(&self, version: &str) -> Option<String> {
        let Some(default) = &self.default_version else {
            return Some(
                "has no `default_version` in the new image's control file, so the restore \
                 cannot create it"
                    .to_owned(),
            );
        };
        if default == version
            || self.installable.iter().any(|known| known == version)
            || self.updates.iter().any(|(_, to)| to == version)
            || self.reaches(version, default)
        {
            return None;
        }
        Some(format!(
            "is at {default} in the new image, which has no update from {version} to it"
        ))
    }

    /// Whether update scripts lead from `from` to `to`.
    fn reaches(&self, from: &str, to: &str) -> bool {
        let mut seen = BTreeSet::from([from]);
        let mut next = vec![from];
        while let Some(at) = next.pop() {
            for (start, end) in &self.updates {
                if start == at && seen.insert(end.as_str()) {
                    if end == to {
                        return true;
                    }
                    next.push(end);
                }
            }
        }
        false
    }
}

/// The extensions of an image's extension directory, from the names of its
/// files and the text of its control files (`files`: file name, and the
/// text for `*.control` files).
pub fn image_extensions(files: &[(String, Option<String>)]) -> BTreeMap<String, ImageExtension> {
    let mut catalog: BTreeMap<String, ImageExtension> = BTreeMap::new();
    for (file, text) in files {
        // Secondary control files (`name--1.2.control`) are left out.
        if let Some(name) = file.strip_suffix(".control")
            && !name.contains("--")
            && !name.is_empty()
        {
            catalog.entry(name.to_owned()).or_default().default_version =
                text.as_deref().and_then(default_version);
        }
    }
    for (file, _) in files {
        // An extension's name never holds `--`: the first one ends it.
        let Some((name, versions)) = file
            .strip_suffix(".sql")
            .and_then(|stem| stem.split_once("--"))
        else {
            continue;
        };
        let Some(extension) = catalog.get_mut(name) else {
            continue;
        };
        match versions.split_once("--") {
            None => extension.installable.push(versions.to_owned()),
            Some((from, to)) => extension.updates.push((from.to_owned(), to.to_owned())),
        }
    }
    for extension in catalog.values_mut() {
        extension.installable.sort();
        extension.updates.sort();
    }
    catalog
}

/// `default_version` of a control file (`default_version = '1.6'`).
fn default_version(control: &str) -> Option<String> {
    control.lines().find_map(|line| {
        let line = line.split('#').next()?.trim();
        let (key, value) = line.split_once('=')?;
        (key.trim() == "default_version")
            .then(|| value.trim().trim_matches('\'').trim().to_owned())
            .filter(|value| !value.is_empty())
    })
}

/// The time a copy of `bytes` takes at the assumed rate, as people read it
/// (`about 3 min`); a copy never takes less than about 10 s, the new
/// server's start and the roles.
pub fn copy_time_text(bytes: u64) -> String {
    let seconds = (bytes / ASSUMED_COPY_BYTES_PER_SECOND).max(10);
    match seconds {
        0..90 => format!("about {} s", (seconds + 5) / 10 * 10),
        90..5400 => format!("about {} min", seconds.div_ceil(60)),
        _ => format!("about {:.1} h", seconds as f64 / 3600.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(names: &[&str]) -> Vec<(String, Option<String>)> {
        names
            .iter()
            .map(|name| {
                let text = name.ends_with(".control").then(|| {
                    "# comment\ncomment = 'x'\ndefault_version = '1.6' # the newest\n".to_owned()
                });
                (name.to_string(), text)
            })
            .collect()
    }

    #[test]
    fn the_catalog_comes_from_control_files_and_script_names() {
        let catalog = image_extensions(&files(&[
            "pg_trgm.control",
            "pg_trgm--1.3.sql",
            "pg_trgm--1.3--1.4.sql",
            "pg_trgm--1.4--1.5.sql",
            "pg_trgm--1.5--1.6.sql",
            "uuid-ossp.control",
            "uuid-ossp--1.1.sql",
            "orphan--1.0.sql",
            "README",
        ]));
        assert_eq!(catalog.keys().collect::<Vec<_>>(), ["pg_trgm", "uuid-ossp"]);
        let trgm = &catalog["pg_trgm"];
        assert_eq!(trgm.default_version.as_deref(), Some("1.6"));
        assert_eq!(trgm.installable, ["1.3"]);
        assert_eq!(trgm.cannot_take("1.6"), None);
        assert_eq!(trgm.cannot_take("1.3"), None);
        assert_eq!(trgm.cannot_take("1.4"), None);
        assert_eq!(
            trgm.cannot_take("1.7").as_deref(),
            Some("is at 1.6 in the new image, which has no update from 1.7 to it")
        );
    }

    #[test]
    fn problems_name_the_extension_its_version_and_its_databases() {
        let facts = UpgradeFacts {
            installed: BTreeMap::from([
                (
                    "shop".to_owned(),
                    BTreeMap::from([
                        ("pg_trgm".to_owned(), "1.6".to_owned()),
                        ("postgis".to_owned(), "3.4.2".to_owned()),
                    ]),
                ),
                (
                    "stats".to_owned(),
                    BTreeMap::from([("postgis".to_owned(), "3.4.2".to_owned())]),
                ),
            ]),
            image_extensions: Some(image_extensions(&files(&[
                "pg_trgm.control",
                "pg_trgm--1.6.sql",
            ]))),
            ..UpgradeFacts::default()
        };
        assert_eq!(
            facts.extension_problems(),
            ["extension `postgis` 3.4.2 (in `shop`, `stats`) is not in the new image"]
        );
        let unread = UpgradeFacts {
            image_extensions: None,
            ..facts
        };
        assert!(unread.extension_problems().is_empty());
    }

    #[test]
    fn copy_time_is_rounded_for_people() {
        assert_eq!(copy_time_text(0), "about 10 s");
        assert_eq!(copy_time_text(3_000 * 1024 * 1024), "about 60 s");
        assert_eq!(copy_time_text(100 * 1024 * 1024 * 1024), "about 35 min");
        assert_eq!(copy_time_text(1024 * 1024 * 1024 * 1024), "about 5.8 h");
    }
}
