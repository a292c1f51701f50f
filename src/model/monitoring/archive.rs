//! The WAL archive's line in `pgspec status`: the recoverable window and
//! the recovery-point lag, judged. Pure.

use serde::{Deserialize, Serialize};

use super::{Level, StatusLine, duration_text, line};

/// The WAL archive of a `physical` schedule, as `status` reads it (the
/// window in words, computed where the backups are known).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ArchiveFacts {
    /// The recoverable window in words, when there is one.
    pub window: Option<String>,
    /// Why nothing is recoverable, when nothing is.
    pub not_recoverable: Option<String>,
    /// Whether the archiver streams on its slot now.
    pub streaming: bool,
    /// Seconds the archive is behind the server, when known.
    pub lag_seconds: Option<f64>,
}

/// Red when the archiver does not stream (the window stops growing),
/// yellow when nothing is recoverable yet, green otherwise.
pub(super) fn archive_line(archive: &ArchiveFacts) -> StatusLine {
    let what = match (&archive.window, &archive.not_recoverable) {
        (Some(window), _) => format!("recoverable {window}"),
        (None, why) => format!(
            "nothing recoverable yet: {}",
            why.as_deref().unwrap_or("unknown")
        ),
    };
    let lag = archive
        .lag_seconds
        .map(|seconds| format!(", lag {}", duration_text(seconds)))
        .unwrap_or_default();
    let (level, text) = match (archive.streaming, &archive.window) {
        (false, _) => (Level::Red, format!("the archiver is not streaming; {what}")),
        (true, None) => (Level::Yellow, what),
        (true, Some(_)) => (Level::Green, format!("{what}{lag}")),
    };
    line("backup", "WAL archive", level, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_archive_is_red_when_it_stops_and_yellow_when_nothing_is_recoverable() {
        let streaming = ArchiveFacts {
            window: Some("from 2026-11-28 03:00:42 to 2026-11-29 12:04:10 UTC".to_owned()),
            not_recoverable: None,
            streaming: true,
            lag_seconds: Some(0.0),
        };
        let green = archive_line(&streaming);
        assert_eq!(green.level, Level::Green);
        assert!(
            green.text.starts_with("recoverable from 2026-11-28"),
            "{}",
            green.text
        );
        let stopped = archive_line(&ArchiveFacts {
            streaming: false,
            ..streaming.clone()
        });
        assert_eq!(stopped.level, Level::Red);
        let empty = archive_line(&ArchiveFacts {
            window: None,
            not_recoverable: Some("no successful base backup".to_owned()),
            ..streaming
        });
        assert_eq!(empty.level, Level::Yellow);
        assert_eq!(
            empty.text,
            "nothing recoverable yet: no successful base backup"
        );
    }
}
