//! Checks and lowering of the `monitoring` section: the thresholds of
//! `pgspec status`.

use super::checker::Checker;
use crate::model::{FreeThreshold, Monitoring, Threshold};
use crate::spec::file::{MonitoringSpec, PercentThresholdSpec};

impl Checker<'_> {
    pub(super) fn check_monitoring(&mut self, monitoring: &MonitoringSpec) {
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
