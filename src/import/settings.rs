//! Settings written with ALTER SYSTEM, and setting values as a person
//! writes them in YAML (also for per-role and per-database settings).

use std::collections::{BTreeMap, BTreeSet};

use crate::model::Setting;
use crate::model::notation::list_items;
use crate::spec::file::SettingValue;

use super::Importer;

/// Settings the server keeps in lists; imported as YAML lists.
const LIST_SETTINGS: &[&str] = &[
    "shared_preload_libraries",
    "session_preload_libraries",
    "local_preload_libraries",
];

impl Importer<'_> {
    /// Settings written with ALTER SYSTEM, as written.
    pub(super) fn settings(&mut self) -> BTreeMap<String, SettingValue> {
        let mut settings = BTreeMap::new();
        let Some(written) = &self.survey.system_settings else {
            self.note(
                "postgres",
                "settings are not imported: the connecting role cannot read the configuration \
                 files (it needs to be a superuser or a member of pg_read_all_settings)"
                    .to_owned(),
            );
            return settings;
        };
        let live_settings = &self.survey.deployment.settings;
        let mut notes = Vec::new();
        for (name, file_setting) in written {
            let live = live_settings.get(name);
            // A value for a restart-only setting is reported as "could not be
            // applied" until the restart; it is written, not rejected.
            let waiting = file_setting.error.as_deref() == Some("setting could not be applied");
            if let Some(error) = file_setting.error.as_ref().filter(|_| !waiting) {
                notes.push(format!(
                    "`{name} = {}` in postgresql.auto.conf is not imported: the server rejects \
                     it ({error})",
                    file_setting.value
                ));
                continue;
            }
            let source = live.and_then(|setting| setting.source.as_deref());
            if matches!(source, Some("command line") | Some("environment variable")) {
                notes.push(format!(
                    "`{name}` is not imported: the server's {} sets it, which overrides ALTER \
                     SYSTEM",
                    source.unwrap_or_default()
                ));
                continue;
            }
            if !file_setting.applied {
                let restart =
                    live.and_then(|setting| setting.context.as_deref()) == Some("postmaster");
                notes.push(format!(
                    "`{name}` is written but waits for a {}; the plan says so until then",
                    if restart { "restart" } else { "reload" }
                ));
            }
            settings.insert(name.clone(), setting_value(name, &file_setting.value, live));
        }
        for note in notes {
            self.note("postgres.settings", note);
        }
        settings
    }

    /// `shared_preload_libraries` as the spec will say it (written with
    /// ALTER SYSTEM), if it says it.
    pub(super) fn written_preload(&self) -> Option<&str> {
        self.survey
            .system_settings
            .as_ref()?
            .get("shared_preload_libraries")
            .map(|setting| setting.value.as_str())
    }

    /// The libraries the server loads, or will at its next start.
    pub(super) fn preloaded_libraries(&self) -> BTreeSet<String> {
        let value = match self.written_preload() {
            Some(value) => value.to_owned(),
            None => self
                .survey
                .deployment
                .settings
                .get("shared_preload_libraries")
                .map(|setting: &Setting| {
                    setting
                        .pending_value
                        .clone()
                        .unwrap_or_else(|| setting.value.clone())
                })
                .unwrap_or_default(),
        };
        list_items(&value)
            .into_iter()
            .map(|item| {
                let base = item.rsplit('/').next().unwrap_or(&item).to_owned();
                base.trim_end_matches(".so").to_owned()
            })
            .collect()
    }
}

/// A setting's text as a person writes it in YAML: `on`/`off` as
/// booleans, plain numbers as numbers, library lists as lists, anything
/// else (values with units, names) as text.
pub(super) fn setting_value(name: &str, text: &str, live: Option<&Setting>) -> SettingValue {
    if LIST_SETTINGS.contains(&name) {
        let items = list_items(text);
        if items.iter().all(|item| !item.contains(['\'', ' ', '"'])) {
            return SettingValue::List(items);
        }
        return SettingValue::Text(text.to_owned());
    }
    let vartype = live.and_then(|setting| setting.vartype.as_deref());
    if vartype == Some("bool") {
        match text.trim().to_ascii_lowercase().as_str() {
            "on" | "true" | "yes" | "1" => return SettingValue::Bool(true),
            "off" | "false" | "no" | "0" => return SettingValue::Bool(false),
            _ => {}
        }
    }
    if matches!(vartype, None | Some("integer") | Some("real")) {
        if let Ok(number) = text.parse::<i64>()
            && number.to_string() == text
        {
            return SettingValue::Integer(number);
        }
        if vartype == Some("real")
            && let Ok(number) = text.parse::<f64>()
            && number.to_string() == text
        {
            return SettingValue::Float(number);
        }
    }
    SettingValue::Text(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setting_values_take_their_yaml_type() {
        let typed = |vartype: &str| Setting {
            vartype: Some(vartype.to_owned()),
            ..Setting::default()
        };
        assert_eq!(
            setting_value("max_connections", "200", Some(&typed("integer"))),
            SettingValue::Integer(200)
        );
        assert_eq!(
            setting_value("shared_buffers", "256MB", Some(&typed("integer"))),
            SettingValue::Text("256MB".to_owned())
        );
        assert_eq!(
            setting_value("jit", "off", Some(&typed("bool"))),
            SettingValue::Bool(false)
        );
        assert_eq!(
            setting_value("random_page_cost", "1.1", Some(&typed("real"))),
            SettingValue::Float(1.1)
        );
        assert_eq!(
            setting_value(
                "shared_preload_libraries",
                "pg_stat_statements, auto_explain",
                None
            ),
            SettingValue::List(vec![
                "pg_stat_statements".to_owned(),
                "auto_explain".to_owned()
            ])
        );
        assert_eq!(
            setting_value("search_path", "\"$user\", public", Some(&typed("string"))),
            SettingValue::Text("\"$user\", public".to_owned())
        );
    }
}
