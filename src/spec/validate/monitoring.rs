//! Checks and lowering of the `monitoring` section: the thresholds of
//! `pgspec status`.

use super::checker::Checker;
use crate::model::{Monitoring, Threshold};
use crate::spec::file::{MonitoringSpec, PercentThresholdSpec};

impl Checker<'_> {
    pub(super) fn check_monitoring(&mut self, monitoring: &MonitoringSpec) {
        let Some(thresholds) = &monitoring.thresholds else {
            return;
        };
        if let Some(connections) = &thresholds.connections {
            self.check_percent_threshold("monitoring.thresholds.connections", connections);
        }
    }

    fn check_percent_threshold(&mut self, path: &str, threshold: &PercentThresholdSpec) {
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
        let defaults = Monitoring::default().thresholds.connections;
        let warn = values[0].unwrap_or(defaults.warn_percent);
        let critical = values[1].unwrap_or(defaults.critical_percent);
        if (values[0].is_some() || values[1].is_some()) && warn > critical {
            let field = if values[1].is_some() {
                "critical"
            } else {
                "warn"
            };
            self.error(
                &format!("{path}.{field}"),
                format!("`critical` ({critical}%) is below `warn` ({warn}%)"),
            )
            .help = Some(
                "a line turns yellow at `warn` and red at `critical`: critical must be at least warn"
                    .to_owned(),
            );
        }
    }
}

/// The thresholds the spec sets, pgspec's defaults for the rest. Only
/// called on a checked spec.
pub(super) fn lower_monitoring(monitoring: Option<&MonitoringSpec>) -> Monitoring {
    let mut lowered = Monitoring::default();
    let connections = monitoring
        .and_then(|monitoring| monitoring.thresholds.as_ref())
        .and_then(|thresholds| thresholds.connections.as_ref());
    if let Some(connections) = connections {
        let defaults = lowered.thresholds.connections;
        let percent = |value: &Option<crate::spec::file::Percent>, default: f64| {
            value
                .as_ref()
                .and_then(|value| value.value().ok())
                .unwrap_or(default)
        };
        lowered.thresholds.connections = Threshold {
            warn_percent: percent(&connections.warn, defaults.warn_percent),
            critical_percent: percent(&connections.critical, defaults.critical_percent),
        };
    }
    lowered
}
