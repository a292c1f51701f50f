//! Checks and lowering of the `monitoring` section: the thresholds of
//! `pgspec status`.

use super::checker::Checker;
use crate::model::monitoring::exporter::{DEFAULT_ROLE, Exporter, ExporterKind};
use crate::model::{Deployment, Role};
use crate::model::{FreeThreshold, Monitoring, Threshold};
use crate::secret::Secret;
use crate::spec::file::{ExporterSpec, MonitoringSpec, PercentThresholdSpec, SpecFile};

impl Checker<'_> {
    pub(super) fn check_monitoring(&mut self, file: &SpecFile, monitoring: &MonitoringSpec) {
        if let Some(exporter) = &monitoring.exporter {
            self.check_exporter(file, exporter);
        }
        let Some(thresholds) = &monitoring.thresholds else {
            return;
        };
        let defaults = Monitoring::default().thresholds;
        if let Some(connections) = &thresholds.connections {
            let default = (
                defaults.connections.warn_percent,
                defaults.connections.critical_percent,
            );
            self.check_percent_threshold(
                "monitoring.thresholds.connections",
                connections,
                default,
                Direction::Rising,
            );
        }
        if let Some(disk_free) = &thresholds.disk_free {
            let default = (
                defaults.disk_free.warn_percent,
                defaults.disk_free.critical_percent,
            );
            self.check_percent_threshold(
                "monitoring.thresholds.disk_free",
                disk_free,
                default,
                Direction::Falling,
            );
        }
    }

    fn check_exporter(&mut self, file: &SpecFile, exporter: &ExporterSpec) {
        let path = "monitoring.exporter";
        if exporter.image.trim().is_empty() {
            self.error(&format!("{path}.image"), "image is empty");
        }
        if file
            .postgres
            .as_ref()
            .and_then(|postgres| postgres.image.as_ref())
            .is_none()
        {
            self.error(path, "`monitoring.exporter` needs `postgres.image`")
                .help = Some(
                "the exporters run beside the server container pgspec manages and reach it by \
                 name on the deployment's network"
                    .to_owned(),
            );
        }
        self.check_port(&format!("{path}.port"), exporter.port);
        self.check_port(&format!("{path}.pooler_port"), exporter.pooler_port);
        match exporter.pooler_image.as_deref().map(str::trim) {
            Some("") => {
                self.error(&format!("{path}.pooler_image"), "image is empty");
            }
            Some(_) if file.pooler.is_none() => {
                self.error(
                    &format!("{path}.pooler_image"),
                    "a pooler exporter needs a `pooler`",
                );
            }
            None if exporter.pooler_port.is_some() => {
                self.error(
                    &format!("{path}.pooler_port"),
                    "`pooler_port` publishes the pooler exporter, which needs `pooler_image`",
                );
            }
            _ => {}
        }
        if let (Some(port), Some(pooler_port)) = (exporter.port, exporter.pooler_port)
            && port == pooler_port
        {
            self.error(
                &format!("{path}.pooler_port"),
                format!("both exporters publish port {port}"),
            );
        }
        let role = exporter.role.as_deref().unwrap_or(DEFAULT_ROLE);
        if exporter.role.is_some() {
            self.check_identifier(&format!("{path}.role"), role, "role");
        }
        if file.roles.iter().any(|declared| declared.name == role) {
            self.error(
                &format!("{path}.role"),
                format!("role `{role}` is declared in `roles` too"),
            )
            .help = Some(
                "pgspec creates the monitoring role with LOGIN and pg_monitor only; name a role \
                 `roles` does not declare"
                    .to_owned(),
            );
        }
    }

    fn check_percent_threshold(
        &mut self,
        path: &str,
        threshold: &PercentThresholdSpec,
        (default_warn, default_critical): (f64, f64),
        direction: Direction,
    ) {
        let mut values = [None, None];
        for (slot, field, value) in [
            (0, "warn", &threshold.warn),
            (1, "critical", &threshold.critical),
        ] {
            if let Some(value) = value {
                match value.value() {
                    Ok(percent) => values[slot] = Some(percent),
                    Err(message) => {
                        self.error(&format!("{path}.{field}"), message).help =
                            Some("write a percentage such as `70%`".to_owned());
                    }
                }
            }
        }
        let warn = values[0].unwrap_or(default_warn);
        let critical = values[1].unwrap_or(default_critical);
        let field = if values[1].is_some() {
            "critical"
        } else {
            "warn"
        };
        let stated = values[0].is_some() || values[1].is_some();
        match direction {
            Direction::Rising if stated && warn > critical => {
                self.error(
                    &format!("{path}.{field}"),
                    format!("`critical` ({critical}%) is below `warn` ({warn}%)"),
                )
                .help = Some(
                    "a line turns yellow at `warn` and red at `critical`: critical must be at \
                     least warn"
                        .to_owned(),
                );
            }
            Direction::Falling if stated && warn < critical => {
                self.error(
                    &format!("{path}.{field}"),
                    format!("`critical` ({critical}%) is above `warn` ({warn}%)"),
                )
                .help = Some(
                    "free space turns yellow below `warn` and red below `critical`: critical \
                     must be at most warn"
                        .to_owned(),
                );
            }
            _ => {}
        }
    }
}

/// Whether a line worsens as its value rises (connections in use) or falls
/// (free space).
#[derive(Clone, Copy)]
enum Direction {
    Rising,
    Falling,
}

/// The thresholds the spec sets, pgspec's defaults for the rest. Only
/// called on a checked spec.
pub(super) fn lower_monitoring(monitoring: Option<&MonitoringSpec>) -> Monitoring {
    let mut lowered = Monitoring::default();
    let thresholds = monitoring.and_then(|monitoring| monitoring.thresholds.as_ref());
    let percent = |value: &Option<crate::spec::file::Percent>, default: f64| {
        value
            .as_ref()
            .and_then(|value| value.value().ok())
            .unwrap_or(default)
    };
    if let Some(connections) = thresholds.and_then(|thresholds| thresholds.connections.as_ref()) {
        let defaults = lowered.thresholds.connections;
        lowered.thresholds.connections = Threshold {
            warn_percent: percent(&connections.warn, defaults.warn_percent),
            critical_percent: percent(&connections.critical, defaults.critical_percent),
        };
    }
    if let Some(disk_free) = thresholds.and_then(|thresholds| thresholds.disk_free.as_ref()) {
        let defaults = lowered.thresholds.disk_free;
        lowered.thresholds.disk_free = FreeThreshold {
            warn_percent: percent(&disk_free.warn, defaults.warn_percent),
            critical_percent: percent(&disk_free.critical, defaults.critical_percent),
        };
    }
    lowered
}

/// The exporters of `monitoring.exporter`, their monitoring role (LOGIN, a
/// member of `pg_monitor`, nothing else) and, for the pooler's exporter,
/// PgBouncer's `stats_users`. Only called on a checked spec.
pub(super) fn lower_exporter(
    monitoring: Option<&MonitoringSpec>,
    base: &std::path::Path,
    deployment: &mut Deployment,
) {
    let Some(spec) = monitoring.and_then(|monitoring| monitoring.exporter.as_ref()) else {
        return;
    };
    let role = spec.role.clone().unwrap_or_else(|| DEFAULT_ROLE.to_owned());
    let password = Secret::from_ref(&spec.password, base);
    let bind_address = spec
        .bind_address
        .clone()
        .unwrap_or_else(|| "127.0.0.1".to_owned());
    let port = |port: Option<i64>| port.and_then(|port| u16::try_from(port).ok());
    let exporter = |kind, image: &str, port| Exporter {
        kind,
        image: image.to_owned(),
        port,
        bind_address: bind_address.clone(),
        role: role.clone(),
        password: Some(password.clone()),
        state: Default::default(),
        image_id: String::new(),
        config_hash: String::new(),
        password_matches: None,
    };
    deployment.exporters.insert(
        ExporterKind::Postgres,
        exporter(ExporterKind::Postgres, &spec.image, port(spec.port)),
    );
    if let (Some(image), Some(pooler)) = (&spec.pooler_image, &mut deployment.pooler) {
        deployment.exporters.insert(
            ExporterKind::Pgbouncer,
            exporter(ExporterKind::Pgbouncer, image, port(spec.pooler_port)),
        );
        pooler
            .settings
            .insert("stats_users".to_owned(), role.clone());
    }
    deployment.roles.insert(
        role.clone(),
        Role {
            name: role,
            login: true,
            inherit: true,
            connection_limit: -1,
            password: Some(password),
            member_of: vec!["pg_monitor".to_owned()],
            ..Role::default()
        },
    );
}
