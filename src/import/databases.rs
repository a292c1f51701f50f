//! Databases with their owners, settings, extensions and schemas; their
//! grants and indexes come from `grants` and `indexes`.

use crate::live::all::DatabaseSurvey;
use crate::model::{Database, PRELOADED_EXTENSIONS};
use crate::spec::file::{DatabaseSpec, ExtensionEntry, ExtensionSpec, SchemaEntry, SchemaSpec};

use super::settings::setting_value;
use super::{Importer, grants, indexes};

impl Importer<'_> {
    /// Every surveyed database but a `postgres` that holds nothing of its
    /// own, with notes on what is left out.
    pub(super) fn databases(&mut self) -> Vec<DatabaseSpec> {
        let mut specs = Vec::new();
        let mut left_out = Vec::new();
        for (name, live) in &self.survey.deployment.databases {
            let Some(survey) = self.survey.databases.get(name) else {
                continue;
            };
            let path = format!("databases[{}]", specs.len());
            let (spec, notes) = self.database(live, survey);
            let named = self.options.databases.contains(name);
            if name == "postgres"
                && !named
                && !self.options.include_system
                && self.pristine(&spec, &notes)
            {
                left_out.push(name.clone());
                continue;
            }
            for note in notes {
                self.note(&path, note);
            }
            specs.push(spec);
        }
        if !left_out.is_empty() {
            self.header.push(
                "The `postgres` database holds nothing but what initdb put there and is left \
                 out (--include-system imports it)."
                    .to_owned(),
            );
        }
        specs
    }

    /// Whether a database spec says nothing beyond what initdb made.
    fn pristine(&self, spec: &DatabaseSpec, notes: &[String]) -> bool {
        notes.is_empty()
            && spec
                .owner
                .as_ref()
                .is_none_or(|owner| *owner == self.survey.bootstrap_superuser)
            && spec.connection_limit.is_none()
            && spec.encoding.is_none()
            && spec.locale.is_none()
            && spec.settings.is_empty()
            && spec.extensions.is_empty()
            && spec.schemas.is_empty()
            && spec.grants.is_empty()
            && spec.indexes.is_empty()
    }

    fn database(&self, live: &Database, survey: &DatabaseSurvey) -> (DatabaseSpec, Vec<String>) {
        let mut notes = Vec::new();
        let owner = live.owner.clone().filter(|owner| {
            let known = self.is_known(owner);
            if !known {
                notes.push(format!(
                    "its owner `{owner}` is not imported, so the spec leaves the owner alone"
                ));
            }
            known
        });
        let live_settings = &self.survey.deployment.settings;
        let mut spec = DatabaseSpec {
            name: live.name.clone(),
            owner: owner.clone(),
            connection_limit: live.connection_limit.filter(|limit| *limit != -1),
            encoding: live
                .encoding
                .clone()
                .filter(|encoding| Some(encoding) != self.survey.template_encoding.as_ref()),
            locale: live
                .locale
                .clone()
                .filter(|locale| Some(locale) != self.survey.template_locale.as_ref()),
            settings: live
                .settings
                .iter()
                .map(|(name, value)| {
                    (
                        name.clone(),
                        setting_value(name, value, live_settings.get(name)),
                    )
                })
                .collect(),
            ..DatabaseSpec::default()
        };
        spec.extensions = self.extensions(live, &mut notes);
        spec.schemas = self.schemas(live, survey, &mut notes);
        let known = |role: &str| self.is_known(role);
        let context = grants::Context {
            live,
            survey,
            owner: owner.as_deref(),
            version_num: self.version_num(),
            include_system: self.options.include_system,
            known: &known,
        };
        let (grants, grant_notes) = grants::grants(&context);
        spec.grants = grants;
        notes.extend(grant_notes);
        let (indexes, index_notes) = indexes::indexes(live, survey, self.options.include_system);
        spec.indexes = indexes;
        notes.extend(index_notes);
        (spec, notes)
    }

    fn extensions(&self, live: &Database, notes: &mut Vec<String>) -> Vec<ExtensionEntry> {
        let server = self.survey.deployment.server.as_ref();
        let preloaded = self.preloaded_libraries();
        let mut entries = Vec::new();
        for (name, extension) in &live.extensions {
            if name == "plpgsql" {
                continue;
            }
            if PRELOADED_EXTENSIONS.contains(&name.as_str()) && !preloaded.contains(name) {
                notes.push(format!(
                    "extension `{name}` is left out: it needs `{name}` in \
                     shared_preload_libraries, which the server {} list",
                    if self.written_preload().is_some() {
                        "(as written with ALTER SYSTEM) does not"
                    } else {
                        "does not"
                    }
                ));
                continue;
            }
            let available = server.and_then(|server| server.available_extensions.get(name));
            let version = extension.version.clone().filter(|version| {
                let default = available.and_then(|available| available.default_version.as_ref());
                if default == Some(version) {
                    return false;
                }
                let installable =
                    available.is_some_and(|available| available.versions.contains(version));
                if !installable {
                    notes.push(format!(
                        "extension `{name}` runs version {version}, which this server can no \
                         longer install; the spec accepts whatever version is installed"
                    ));
                }
                installable
            });
            let schema = extension.schema.clone().filter(|schema| schema != "public");
            entries.push(if version.is_none() && schema.is_none() {
                ExtensionEntry::Name(name.clone())
            } else {
                ExtensionEntry::Full(ExtensionSpec {
                    name: name.clone(),
                    version,
                    schema,
                })
            });
        }
        entries
    }

    fn schemas(
        &self,
        live: &Database,
        survey: &DatabaseSurvey,
        notes: &mut Vec<String>,
    ) -> Vec<SchemaEntry> {
        let mut entries = Vec::new();
        for (name, schema) in &live.schemas {
            let from_extension = survey.schemas.get(name) == Some(&true);
            if from_extension && !self.options.include_system {
                continue;
            }
            let owner = schema.owner.clone().unwrap_or_default();
            if name == "public" && owner == "pg_database_owner" {
                continue;
            }
            if !self.is_known(&owner) {
                notes.push(format!(
                    "schema `{name}` is owned by `{owner}`, which is not imported; the spec \
                     leaves its owner alone"
                ));
                entries.push(SchemaEntry::Name(name.clone()));
                continue;
            }
            // A schema created without an owner belongs to the role pgspec
            // connects as.
            entries.push(if owner == self.survey.current_user {
                SchemaEntry::Name(name.clone())
            } else {
                SchemaEntry::Full(SchemaSpec {
                    name: name.clone(),
                    owner: Some(owner),
                })
            });
        }
        entries
    }
}
