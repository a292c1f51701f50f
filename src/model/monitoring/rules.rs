//! `pgspec monitoring rules`: the spec's thresholds as a Prometheus alert
//! rules file, over the metrics the exporters of `monitoring.exporter`
//! serve, so that alerts and `pgspec status` judge alike.
//!
//! The metric names are those of prometheus-community's postgres_exporter
//! (`pg_up`, `pg_stat_activity_count`, `pg_settings_max_connections`,
//! `pg_stat_activity_max_tx_duration`, `pg_stat_database_deadlocks`) and of
//! Debian's prometheus-pgbouncer-exporter (`pgbouncer_pools`). Free disk
//! space and backup age have no metric from these exporters: `status`
//! judges them, and the file says so.
//!
//! Pure: the text is a function of the spec and the selector.

use std::fmt::Write as _;

use super::exporter::ExporterKind;
use super::{TRANSACTION_CRITICAL_SECONDS, TRANSACTION_WARN_SECONDS, Thresholds};
use crate::model::Deployment;

/// One alerting rule.
struct Rule {
    alert: String,
    expr: String,
    duration: &'static str,
    severity: &'static str,
    summary: String,
}

/// The rules file of `deployment` judged by `thresholds`. `selector` is put
/// inside every metric's braces (`job="ledger"`), to tell this deployment's
/// series from others' on a shared Prometheus; empty, it matches all.
pub fn alert_rules(deployment: &Deployment, thresholds: &Thresholds, selector: &str) -> String {
    let matcher = if selector.trim().is_empty() {
        String::new()
    } else {
        format!("{{{}}}", selector.trim())
    };
    let metric = |name: &str| format!("{name}{matcher}");
    let prefix = camel(&deployment.name);
    let connections = format!(
        "sum({}) / max({}) * 100",
        metric("pg_stat_activity_count"),
        metric("pg_settings_max_connections")
    );
    let connection = &thresholds.connections;
    let mut rules = vec![
        Rule {
            alert: format!("{prefix}PostgresExporterDown"),
            expr: format!("absent({})", metric("pg_up")),
            duration: "5m",
            severity: "critical",
            summary: "the PostgreSQL exporter serves no metrics".to_owned(),
        },
        Rule {
            alert: format!("{prefix}PostgresDown"),
            expr: format!("{} == 0", metric("pg_up")),
            duration: "1m",
            severity: "critical",
            summary: "the exporter cannot reach the server".to_owned(),
        },
        Rule {
            alert: format!("{prefix}ConnectionsWarning"),
            expr: format!("{connections} >= {}", number(connection.warn_percent)),
            duration: "5m",
            severity: "warning",
            summary: format!(
                "connections at {} % of max_connections or more",
                number(connection.warn_percent)
            ),
        },
        Rule {
            alert: format!("{prefix}ConnectionsCritical"),
            expr: format!("{connections} >= {}", number(connection.critical_percent)),
            duration: "5m",
            severity: "critical",
            summary: format!(
                "connections at {} % of max_connections or more",
                number(connection.critical_percent)
            ),
        },
        Rule {
            alert: format!("{prefix}LongTransactionWarning"),
            expr: format!(
                "max({}) >= {}",
                metric("pg_stat_activity_max_tx_duration"),
                number(TRANSACTION_WARN_SECONDS)
            ),
            duration: "1m",
            severity: "warning",
            summary: "a transaction has been open for 5 minutes or more".to_owned(),
        },
        Rule {
            alert: format!("{prefix}LongTransactionCritical"),
            expr: format!(
                "max({}) >= {}",
                metric("pg_stat_activity_max_tx_duration"),
                number(TRANSACTION_CRITICAL_SECONDS)
            ),
            duration: "1m",
            severity: "critical",
            summary: "a transaction has been open for an hour or more".to_owned(),
        },
        Rule {
            alert: format!("{prefix}Deadlocks"),
            expr: format!(
                "sum(increase({}[1h])) > 0",
                metric("pg_stat_database_deadlocks")
            ),
            duration: "0m",
            severity: "warning",
            summary: "deadlocks in the last hour".to_owned(),
        },
    ];
    if deployment.exporters.contains_key(&ExporterKind::Pgbouncer) {
        rules.push(Rule {
            alert: format!("{prefix}PgbouncerExporterDown"),
            expr: format!("absent({})", metric("pgbouncer_pools")),
            duration: "5m",
            severity: "critical",
            summary: "the PgBouncer exporter serves no metrics".to_owned(),
        });
    }

    let mut text = format!(
        "# Prometheus alert rules of deployment `{name}`, written by `pgspec monitoring rules`\n\
         # from the thresholds of its spec (connections warn {warn} %, critical {critical} %),\n\
         # which `pgspec status` applies too. Free disk space (warn under {disk_warn} %,\n\
         # critical under {disk_critical} % free) and backup age have no metric from the exporters\n\
         # pgspec runs: `pgspec status` checks them.\n\
         groups:\n  - name: {group}\n    rules:\n",
        name = deployment.name,
        warn = number(connection.warn_percent),
        critical = number(connection.critical_percent),
        disk_warn = number(thresholds.disk_free.warn_percent),
        disk_critical = number(thresholds.disk_free.critical_percent),
        group = quoted(&format!("pgspec-{}", deployment.name)),
    );
    for rule in rules {
        let _ = write!(
            text,
            "      - alert: {alert}\n        expr: {expr}\n        for: {duration}\n        \
             labels:\n          severity: {severity}\n          deployment: {deployment}\n        \
             annotations:\n          summary: {summary}\n",
            alert = quoted(&rule.alert),
            expr = quoted(&rule.expr),
            duration = rule.duration,
            severity = rule.severity,
            deployment = quoted(&deployment.name),
            summary = quoted(&format!("{}: {}", deployment.name, rule.summary)),
        );
    }
    text
}

/// A YAML single-quoted scalar.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `70`, `12.5`.
fn number(value: f64) -> String {
    let text = format!("{value}");
    text.strip_suffix(".0").map(str::to_owned).unwrap_or(text)
}

/// An alert name part from a deployment name: `crawl-ledger` → `CrawlLedger`;
/// anything but ASCII letters and digits separates words.
fn camel(name: &str) -> String {
    name.split(|character: char| !character.is_ascii_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(|word| {
            let mut characters = word.chars();
            characters
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + characters.as_str())
                .unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_read_as_prometheus_wants_them() {
        assert_eq!(camel("crawl-ledger"), "CrawlLedger");
        assert_eq!(camel("ish_chat2"), "IshChat2");
        assert_eq!(number(70.0), "70");
        assert_eq!(number(12.5), "12.5");
        assert_eq!(quoted("it's"), "'it''s'");
    }
}
