//! Sizes, durations and cron expressions as the spec writes them.
//!
//! Three notations meet in a spec: Docker's memory sizes (`512MiB`, `8g`),
//! PostgreSQL's units for settings (`256MB`, `10min`, case-sensitive like the
//! server) and cron expressions for backups. Each parser here is a pure
//! function from text to a typed value or a [`UnitError`] that says what
//! would have been accepted. Nothing here knows which setting a value
//! belongs to; `spec::validate` decides that.

use std::fmt;

use croner::parser::{CronParser, Seconds, Year};

/// Why a size, duration or cron expression was rejected. The message names
/// the value; `help`, when set, says what would have worked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitError {
    pub message: String,
    pub help: Option<String>,
}

impl UnitError {
    fn new(message: impl Into<String>) -> Self {
        UnitError {
            message: message.into(),
            help: None,
        }
    }

    fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

impl fmt::Display for UnitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UnitError {}

/// Which kind of quantity a PostgreSQL unit measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitClass {
    Memory,
    Time,
}

impl UnitClass {
    /// `memory` or `time`, for messages.
    pub fn noun(self) -> &'static str {
        match self {
            UnitClass::Memory => "memory",
            UnitClass::Time => "time",
        }
    }
}

/// A PostgreSQL setting value written as a number with a unit (`256MB`,
/// `1.5s`).
#[derive(Debug, Clone, PartialEq)]
pub struct PgQuantity {
    /// The number as written.
    pub number: f64,
    /// The unit as written (`MB`, `min`).
    pub unit: String,
    pub class: UnitClass,
    /// The value in the class's base unit: bytes for memory, microseconds
    /// for time.
    pub base: f64,
}

/// PostgreSQL's memory units (`guc.c`, `memory_unit_conversion_table`).
/// Matching is case-sensitive there, and so it is here.
const PG_MEMORY_UNITS: &[(&str, f64)] = &[
    ("B", 1.0),
    ("kB", 1024.0),
    ("MB", 1024.0 * 1024.0),
    ("GB", 1024.0 * 1024.0 * 1024.0),
    ("TB", 1024.0 * 1024.0 * 1024.0 * 1024.0),
];

/// PostgreSQL's time units (`time_unit_conversion_table`), in microseconds.
const PG_TIME_UNITS: &[(&str, f64)] = &[
    ("us", 1.0),
    ("ms", 1_000.0),
    ("s", 1_000_000.0),
    ("min", 60.0 * 1_000_000.0),
    ("h", 3_600.0 * 1_000_000.0),
    ("d", 86_400.0 * 1_000_000.0),
];

/// Spellings people reach for that PostgreSQL rejects, and the unit it
/// wants instead.
const PG_UNIT_ALIASES: &[(&str, &str)] = &[
    ("b", "B"),
    ("byte", "B"),
    ("bytes", "B"),
    ("k", "kB"),
    ("kb", "kB"),
    ("kib", "kB"),
    ("mib", "MB"),
    ("gib", "GB"),
    ("tib", "TB"),
    ("g", "GB"),
    ("t", "TB"),
    ("usec", "us"),
    ("usecs", "us"),
    ("microsecond", "us"),
    ("microseconds", "us"),
    ("msec", "ms"),
    ("msecs", "ms"),
    ("millisecond", "ms"),
    ("milliseconds", "ms"),
    ("sec", "s"),
    ("secs", "s"),
    ("second", "s"),
    ("seconds", "s"),
    ("mins", "min"),
    ("minute", "min"),
    ("minutes", "min"),
    ("hr", "h"),
    ("hrs", "h"),
    ("hour", "h"),
    ("hours", "h"),
    ("day", "d"),
    ("days", "d"),
];

/// Splits `  12.5 MB ` into the number text and the unit text, the way
/// PostgreSQL's `parse_int`/`parse_real` read a value: a number, optional
/// blanks, a unit, optional blanks. `None` when the text does not start
/// with a number or has something after the unit.
fn split_number_unit(text: &str) -> Option<(&str, &str)> {
    let trimmed = text.trim();
    let bytes = trimmed.as_bytes();
    let mut end = 0;
    if end < bytes.len() && (bytes[end] == b'+' || bytes[end] == b'-') {
        end += 1;
    }
    let digits_start = end;
    while end < bytes.len() && (bytes[end].is_ascii_digit() || bytes[end] == b'.') {
        end += 1;
    }
    let number = &trimmed[..end];
    let digits = &trimmed[digits_start..end];
    if digits.is_empty() || digits == "." || digits.matches('.').count() > 1 {
        return None;
    }
    let unit = trimmed[end..].trim_start();
    if !unit
        .chars()
        .all(|character| character.is_ascii_alphabetic())
    {
        return None;
    }
    Some((number, unit))
}

/// Reads a setting value that may carry a PostgreSQL unit.
///
/// - `Ok(None)`: not a number with a unit (a bare number, `on`, `stderr`,
///   `pg_catalog.english`); nothing to check here.
/// - `Ok(Some(quantity))`: a number with a unit PostgreSQL accepts.
/// - `Err`: a number followed by letters PostgreSQL would reject (`256mb`,
///   `10 minutes`, `1sec`), with a suggestion when one is obvious.
pub fn parse_pg_quantity(text: &str) -> Result<Option<PgQuantity>, UnitError> {
    let Some((number_text, unit)) = split_number_unit(text) else {
        return Ok(None);
    };
    if unit.is_empty() {
        return Ok(None);
    }
    let number: f64 = number_text
        .parse()
        .map_err(|_| UnitError::new(format!("`{}` is not a number", number_text)))?;
    let known = PG_MEMORY_UNITS
        .iter()
        .map(|(name, factor)| (name, factor, UnitClass::Memory))
        .chain(
            PG_TIME_UNITS
                .iter()
                .map(|(name, factor)| (name, factor, UnitClass::Time)),
        )
        .find(|(name, _, _)| **name == unit);
    if let Some((name, factor, class)) = known {
        return Ok(Some(PgQuantity {
            number,
            unit: (*name).to_owned(),
            class,
            base: number * factor,
        }));
    }
    Err(unknown_unit_error(text.trim(), number_text, unit))
}

/// The error for a unit PostgreSQL does not know, with the closest unit it
/// does know.
fn unknown_unit_error(text: &str, number_text: &str, unit: &str) -> UnitError {
    let message = format!("`{text}` has a unit PostgreSQL does not accept");
    let valid_units = "memory units are `B`, `kB`, `MB`, `GB`, `TB`; \
                       time units are `us`, `ms`, `s`, `min`, `h`, `d`";
    if unit == "m" || unit == "M" {
        return UnitError::new(message).with_help(format!(
            "`{unit}` is ambiguous: write `{number_text}min` for minutes or `{number_text}MB` for megabytes"
        ));
    }
    let lower = unit.to_ascii_lowercase();
    let case_match = PG_MEMORY_UNITS
        .iter()
        .chain(PG_TIME_UNITS)
        .map(|(name, _)| *name)
        .find(|name| name.to_ascii_lowercase() == lower);
    let suggestion = case_match.or_else(|| {
        PG_UNIT_ALIASES
            .iter()
            .find(|(alias, _)| *alias == lower)
            .map(|(_, unit)| *unit)
    });
    match suggestion {
        Some(suggested) if case_match.is_some() => UnitError::new(message).with_help(format!(
            "did you mean `{number_text}{suggested}`? PostgreSQL's units are case-sensitive"
        )),
        Some(suggested) => {
            UnitError::new(message).with_help(format!("did you mean `{number_text}{suggested}`?"))
        }
        None => UnitError::new(message).with_help(valid_units),
    }
}

/// Parses a PostgreSQL memory value (`256MB`, `1.5GB`) into bytes. A bare
/// number is rejected because its meaning depends on the setting's own unit.
pub fn parse_pg_memory(text: &str) -> Result<f64, UnitError> {
    match parse_pg_quantity(text)? {
        Some(PgQuantity {
            class: UnitClass::Memory,
            base,
            ..
        }) => Ok(base),
        Some(quantity) => Err(UnitError::new(format!(
            "`{}` is a time, expected a memory size",
            text.trim()
        ))
        .with_help(format!(
            "`{}` is a time unit; memory units are `B`, `kB`, `MB`, `GB`, `TB`",
            quantity.unit
        ))),
        None => Err(
            UnitError::new(format!("`{}` is not a memory size", text.trim()))
                .with_help("write a number with a unit: `256MB`, `1GB`"),
        ),
    }
}

/// Parses a PostgreSQL time value (`1s`, `10min`) into microseconds. A bare
/// number counts in `bare_unit` (one of PostgreSQL's time units), because
/// settings and PgBouncer each have their own default unit.
pub fn parse_pg_time(text: &str, bare_unit: &str) -> Result<f64, UnitError> {
    if let Some((number_text, "")) = split_number_unit(text) {
        let number: f64 = number_text.parse().map_err(|_| {
            UnitError::new(format!("`{}` is not a duration", text.trim()))
                .with_help("write a number with a unit: `500ms`, `10s`, `10min`")
        })?;
        let factor = PG_TIME_UNITS
            .iter()
            .find(|(name, _)| *name == bare_unit)
            .map_or(1.0, |(_, factor)| *factor);
        return Ok(number * factor);
    }
    match parse_pg_quantity(text)? {
        Some(PgQuantity {
            class: UnitClass::Time,
            base,
            ..
        }) => Ok(base),
        Some(quantity) => Err(UnitError::new(format!(
            "`{}` is a memory size, expected a duration",
            text.trim()
        ))
        .with_help(format!(
            "`{}` is a memory unit; time units are `us`, `ms`, `s`, `min`, `h`, `d`",
            quantity.unit
        ))),
        None => Err(
            UnitError::new(format!("`{}` is not a duration", text.trim()))
                .with_help("write a number with a unit: `500ms`, `10s`, `10min`"),
        ),
    }
}

/// Formats microseconds as a whole or decimal number of seconds, the way
/// PgBouncer's configuration takes durations (`600`, `0.5`).
pub fn seconds_text(microseconds: f64) -> String {
    let seconds = microseconds / 1_000_000.0;
    if seconds.fract() == 0.0 {
        format!("{}", seconds as i64)
    } else {
        // Trim the float noise that a division leaves: PgBouncer reads at
        // most microseconds.
        let text = format!("{seconds:.6}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// Parses a Docker memory size into bytes: a bare number of bytes, or a
/// number with `b`, `k`, `m`, `g`, `t`, `p`, optionally followed by `b` or
/// `ib`, case-insensitive. Docker counts every unit in powers of 1024
/// (`8G` = `8GB` = `8GiB`), and so does pgspec.
pub fn parse_docker_memory(text: &str) -> Result<i64, UnitError> {
    let help = "write a number of bytes or a size with a unit: `512MiB`, `8GiB`, `1.5GiB`";
    let not_a_size = || UnitError::new(format!("`{}` is not a memory size", text.trim()));
    let Some((number_text, unit)) = split_number_unit(text) else {
        return Err(not_a_size().with_help(help));
    };
    let number: f64 = number_text
        .parse()
        .map_err(|_| not_a_size().with_help(help))?;
    if number < 0.0 {
        return Err(UnitError::new(format!(
            "memory size `{}` is negative",
            text.trim()
        )));
    }
    let lower = unit.to_ascii_lowercase();
    let prefix = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b').filter(|rest| !rest.is_empty()))
        .unwrap_or(&lower);
    let power = match prefix {
        "" | "b" => 0,
        "k" => 1,
        "m" => 2,
        "g" => 3,
        "t" => 4,
        "p" => 5,
        _ => return Err(not_a_size().with_help(help)),
    };
    let bytes = (number * 1024f64.powi(power)).round();
    if bytes > i64::MAX as f64 {
        return Err(UnitError::new(format!(
            "memory size `{}` is too large",
            text.trim()
        )));
    }
    Ok(bytes as i64)
}

/// Cron macros pgspec accepts, with the 5-field expression each stands for.
const CRON_MACROS: &[(&str, &str)] = &[
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

/// Checks a backup schedule: five fields (minute hour day-of-month month
/// day-of-week) or one of `@yearly`, `@annually`, `@monthly`, `@weekly`,
/// `@daily`, `@midnight`, `@hourly`. Returns the 5-field form.
pub fn check_cron(expression: &str) -> Result<String, UnitError> {
    let trimmed = expression.trim();
    if trimmed.starts_with('@') {
        return CRON_MACROS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(trimmed))
            .map(|(_, fields)| (*fields).to_owned())
            .ok_or_else(|| {
                UnitError::new(format!("unknown cron macro `{trimmed}`")).with_help(
                    "use `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`, \
                     `@midnight` or `@hourly`, or five fields",
                )
            });
    }
    let fields = trimmed.split_whitespace().count();
    if fields == 6 || fields == 7 {
        return Err(UnitError::new(format!(
            "cron expression `{trimmed}` has {fields} fields; pgspec takes 5, without seconds"
        ))
        .with_help("write `minute hour day-of-month month day-of-week`, e.g. `0 2 * * *`"));
    }
    if fields != 5 {
        return Err(UnitError::new(format!(
            "cron expression `{trimmed}` has {fields} fields, expected 5"
        ))
        .with_help("write `minute hour day-of-month month day-of-week`, e.g. `0 2 * * *`"));
    }
    let parser = CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build();
    match parser.parse(trimmed) {
        Ok(_) => Ok(trimmed.split_whitespace().collect::<Vec<_>>().join(" ")),
        Err(error) => {
            let detail = error.to_string();
            let detail = detail.trim_end_matches('.');
            let mut lowered = detail.chars();
            let detail = match lowered.next() {
                Some(first) => first.to_lowercase().chain(lowered).collect::<String>(),
                None => String::new(),
            };
            Err(UnitError::new(format!(
                "invalid cron expression `{trimmed}`: {detail}"
            ))
            .with_help("fields are minute (0-59), hour (0-23), day of month (1-31), month (1-12), day of week (0-7)"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: i64 = 1024 * 1024;
    const GIB: i64 = 1024 * MIB;

    #[test]
    fn docker_memory_counts_in_powers_of_1024() {
        assert_eq!(parse_docker_memory("512MiB"), Ok(512 * MIB));
        assert_eq!(parse_docker_memory("8GiB"), Ok(8 * GIB));
        assert_eq!(parse_docker_memory("1.5GiB"), Ok(3 * GIB / 2));
        assert_eq!(parse_docker_memory("1048576"), Ok(MIB));
        assert_eq!(parse_docker_memory("8G"), Ok(8 * GIB));
        assert_eq!(parse_docker_memory("8GB"), Ok(8 * GIB));
        assert_eq!(parse_docker_memory("8g"), Ok(8 * GIB));
        assert_eq!(parse_docker_memory("256m"), Ok(256 * MIB));
        assert_eq!(parse_docker_memory("10b"), Ok(10));
        assert_eq!(parse_docker_memory(" 64 KiB "), Ok(64 * 1024));
    }

    #[test]
    fn docker_memory_rejects_nonsense() {
        for text in ["", "lots", "8 XB", "8GiBs", "1.2.3G", "-1G", "G8"] {
            assert!(parse_docker_memory(text).is_err(), "{text}");
        }
        let error = parse_docker_memory("8 gigs").expect_err("not a size");
        assert_eq!(error.message, "`8 gigs` is not a memory size");
        assert!(error.help.is_some());
    }

    #[test]
    fn pg_units_are_case_sensitive_like_the_server() {
        let quantity = parse_pg_quantity("256MB")
            .expect("valid")
            .expect("has unit");
        assert_eq!(quantity.class, UnitClass::Memory);
        assert_eq!(quantity.base, 256.0 * 1024.0 * 1024.0);
        let error = parse_pg_quantity("256mb").expect_err("lower-case mb");
        assert_eq!(
            error.message,
            "`256mb` has a unit PostgreSQL does not accept"
        );
        assert_eq!(
            error.help.as_deref(),
            Some("did you mean `256MB`? PostgreSQL's units are case-sensitive")
        );
        let error = parse_pg_quantity("64KB").expect_err("upper-case KB");
        assert_eq!(
            error.help.as_deref(),
            Some("did you mean `64kB`? PostgreSQL's units are case-sensitive")
        );
    }

    #[test]
    fn pg_accepts_blanks_between_number_and_unit_and_fractions() {
        let quantity = parse_pg_quantity("256 MB").expect("valid").expect("unit");
        assert_eq!(quantity.unit, "MB");
        let quantity = parse_pg_quantity("1.5GB").expect("valid").expect("unit");
        assert_eq!(quantity.base, 1.5 * 1024.0 * 1024.0 * 1024.0);
    }

    #[test]
    fn pg_time_units() {
        for (text, micros) in [
            ("1s", 1e6),
            ("10min", 600e6),
            ("250ms", 250e3),
            ("5us", 5.0),
            ("2h", 7200e6),
            ("1d", 86400e6),
        ] {
            let quantity = parse_pg_quantity(text).expect("valid").expect("unit");
            assert_eq!(quantity.class, UnitClass::Time, "{text}");
            assert_eq!(quantity.base, micros, "{text}");
        }
    }

    #[test]
    fn pg_rejects_spelled_out_units_with_a_hint() {
        let error = parse_pg_quantity("10 minutes").expect_err("spelled out");
        assert_eq!(error.help.as_deref(), Some("did you mean `10min`?"));
        let error = parse_pg_quantity("1sec").expect_err("sec");
        assert_eq!(error.help.as_deref(), Some("did you mean `1s`?"));
        let error = parse_pg_quantity("5m").expect_err("m");
        assert!(error.help.expect("help").contains("ambiguous"));
        let error = parse_pg_quantity("5 parsecs").expect_err("unknown");
        assert!(error.help.expect("help").contains("memory units are"));
    }

    #[test]
    fn values_without_units_are_not_quantities() {
        for text in [
            "200",
            "0.9",
            "on",
            "stderr",
            "pg_catalog.english",
            "$user, public",
            "TLSv1.2",
            "",
            "-1",
        ] {
            assert_eq!(parse_pg_quantity(text), Ok(None), "{text}");
        }
    }

    #[test]
    fn pg_memory_and_time_check_the_class() {
        assert_eq!(parse_pg_memory("1kB"), Ok(1024.0));
        assert!(parse_pg_memory("1s").is_err());
        assert!(parse_pg_memory("100").is_err());
        assert_eq!(parse_pg_time("10min", "s"), Ok(600e6));
        assert_eq!(parse_pg_time("600", "s"), Ok(600e6));
        assert_eq!(parse_pg_time("600", "ms"), Ok(600e3));
        assert!(parse_pg_time("1MB", "s").is_err());
        assert!(parse_pg_time("soon", "s").is_err());
    }

    #[test]
    fn seconds_text_is_whole_or_decimal() {
        assert_eq!(seconds_text(600e6), "600");
        assert_eq!(seconds_text(500e3), "0.5");
        assert_eq!(seconds_text(0.0), "0");
    }

    #[test]
    fn cron_takes_five_fields_and_macros() {
        assert_eq!(check_cron("0 2 * * *"), Ok("0 2 * * *".to_owned()));
        assert_eq!(check_cron(" 0  2 * * 1-5 "), Ok("0 2 * * 1-5".to_owned()));
        assert_eq!(check_cron("*/15 * * * *"), Ok("*/15 * * * *".to_owned()));
        assert_eq!(check_cron("0 3 * * SUN"), Ok("0 3 * * SUN".to_owned()));
        for (name, fields) in CRON_MACROS {
            assert_eq!(check_cron(name).as_deref(), Ok(*fields), "{name}");
        }
        assert_eq!(check_cron("@DAILY"), Ok("0 0 * * *".to_owned()));
    }

    #[test]
    fn cron_rejects_seconds_and_bad_fields() {
        let error = check_cron("0 0 2 * * *").expect_err("six fields");
        assert_eq!(
            error.message,
            "cron expression `0 0 2 * * *` has 6 fields; pgspec takes 5, without seconds"
        );
        assert!(check_cron("0 2 * *").is_err());
        assert!(check_cron("61 2 * * *").is_err());
        assert!(check_cron("0 25 * * *").is_err());
        assert!(check_cron("@fortnightly").is_err());
        assert!(check_cron("").is_err());
        let error = check_cron("0 2 * * banana").expect_err("bad weekday");
        assert!(
            error.message.starts_with("invalid cron expression"),
            "{error}"
        );
    }
}
