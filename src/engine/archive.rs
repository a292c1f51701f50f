//! Tar archives, the form in which the engine takes files into a container
//! and gives them back: one builder and one reader for every caller.
//!
//! Pure: no I/O.

use std::io::Read;

/// One entry of an archive to unpack at `/` in a container.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    /// Absolute path inside the container.
    pub path: &'a str,
    pub mode: u32,
    /// `None` for a directory.
    pub bytes: Option<&'a [u8]>,
    /// Owner; root unless set. Unpacking an entry over an existing file or
    /// directory gives it this owner and mode.
    pub uid: u64,
    pub gid: u64,
    /// Modification time in seconds since the epoch.
    pub mtime: u64,
}

impl<'a> Entry<'a> {
    /// A regular file, owned by root.
    pub fn file(path: &'a str, mode: u32, bytes: &'a [u8]) -> Self {
        Entry {
            path,
            mode,
            bytes: Some(bytes),
            uid: 0,
            gid: 0,
            mtime: 0,
        }
    }

    /// A directory, owned by root.
    pub fn directory(path: &'a str, mode: u32) -> Self {
        Entry {
            bytes: None,
            ..Entry::file(path, mode, &[])
        }
    }

    /// The same entry with another owner.
    pub fn owned_by(self, uid: u64, gid: u64) -> Self {
        Entry { uid, gid, ..self }
    }

    /// The same entry with a modification time.
    pub fn modified_at(self, mtime: u64) -> Self {
        Entry { mtime, ..self }
    }
}

/// Builds an archive of `entries`, in order.
pub fn build(entries: &[Entry<'_>]) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        let bytes = entry.bytes.unwrap_or_default();
        if entry.bytes.is_none() {
            header.set_entry_type(tar::EntryType::Directory);
        }
        header.set_mode(entry.mode);
        header.set_uid(entry.uid);
        header.set_gid(entry.gid);
        header.set_mtime(entry.mtime);
        header.set_size(bytes.len() as u64);
        header.set_cksum();
        builder.append_data(&mut header, entry.path.trim_start_matches('/'), bytes)?;
    }
    builder.into_inner()
}

/// Builds an archive of root-owned `files` preceded by their parent
/// directories: a directory holding only files nobody else may read is
/// root's alone (0700), any other 0755. Unpacking it sets those modes on
/// directories that already exist, so use it only for directories pgspec
/// owns.
pub fn build_with_parents(files: &[Entry<'_>]) -> std::io::Result<Vec<u8>> {
    let mut directories: Vec<Entry<'_>> = Vec::new();
    for file in files {
        let Some((parent, _)) = file.path.rsplit_once('/') else {
            continue;
        };
        if parent.is_empty() {
            continue;
        }
        let mode = if file.mode & 0o077 == 0 { 0o700 } else { 0o755 };
        if !directories.iter().any(|directory| directory.path == parent) {
            directories.push(Entry::directory(parent, mode));
        }
    }
    directories.extend(files.iter().cloned());
    build(&directories)
}

/// What the engine reports of one entry of an archive it sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    /// Path as archived (relative, the requested path's last segment first).
    pub path: String,
    pub uid: u64,
    pub gid: u64,
    /// Permission bits (`0o600`).
    pub mode: u32,
    pub mtime: Option<u64>,
    pub regular: bool,
}

/// The entries of an archive, in order; what cannot be read ends the list.
pub fn entries(archive: &[u8]) -> Vec<EntryInfo> {
    let mut reader = tar::Archive::new(archive);
    let Ok(entries) = reader.entries() else {
        return Vec::new();
    };
    entries
        .map_while(Result::ok)
        .map(|entry| {
            let header = entry.header();
            EntryInfo {
                path: entry
                    .path()
                    .map(|path| path.display().to_string())
                    .unwrap_or_default(),
                uid: header.uid().unwrap_or(0),
                gid: header.gid().unwrap_or(0),
                mode: header.mode().unwrap_or(0) & 0o7777,
                mtime: header.mtime().ok(),
                regular: header.entry_type() == tar::EntryType::Regular,
            }
        })
        .collect()
}

/// The content of the archive's first entry, at most `limit` bytes, when it
/// is a regular file.
pub fn first_file(archive: &[u8], limit: usize) -> Option<Vec<u8>> {
    let mut reader = tar::Archive::new(archive);
    let entry = reader.entries().ok()?.next()?.ok()?;
    if entry.header().entry_type() != tar::EntryType::Regular {
        return None;
    }
    let mut content = Vec::new();
    entry.take(limit as u64).read_to_end(&mut content).ok()?;
    Some(content)
}

/// What [`scan`] found: each file's name with the content kept, if any.
pub type Scanned = Vec<(String, Option<Vec<u8>>)>;

/// Reads an archive as it streams: the file name (last path segment) of
/// every entry, with the content of those `keep` picks (at most `limit`
/// bytes each); the rest of each file is skipped, however large. What
/// cannot be read ends the list, and says so with `false`.
pub fn scan(reader: impl Read, keep: impl Fn(&str) -> bool, limit: usize) -> (Scanned, bool) {
    let mut archive = tar::Archive::new(reader);
    let Ok(entries) = archive.entries() else {
        return (Vec::new(), false);
    };
    let mut found = Vec::new();
    for entry in entries {
        let Ok(entry) = entry else {
            return (found, false);
        };
        let Ok(path) = entry.path() else {
            return (found, false);
        };
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let content = if entry.header().entry_type() == tar::EntryType::Regular && keep(&name) {
            let mut content = Vec::new();
            if entry.take(limit as u64).read_to_end(&mut content).is_err() {
                return (found, false);
            }
            Some(content)
        } else {
            None
        };
        found.push((name, content));
    }
    (found, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_come_back_as_they_went_in_with_their_parents_first() {
        let archive = build_with_parents(&[
            Entry::file("/etc/pgspec/pgpass", 0o600, b"secret"),
            Entry::file("/opt/pgspec/bin/pgspec", 0o755, b"\x7fELF"),
        ])
        .expect("builds");
        let listed = entries(&archive);
        let paths: Vec<&str> = listed.iter().map(|entry| entry.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "etc/pgspec",
                "opt/pgspec/bin",
                "etc/pgspec/pgpass",
                "opt/pgspec/bin/pgspec"
            ]
        );
        assert!(!listed[0].regular && listed[2].regular);
        let mut reader = tar::Archive::new(archive.as_slice());
        let modes: Vec<u32> = reader
            .entries()
            .expect("entries")
            .map(|entry| entry.expect("entry").header().mode().expect("mode"))
            .collect();
        // A directory of secrets is root's alone.
        assert_eq!(modes, [0o700, 0o755, 0o600, 0o755]);
    }

    #[test]
    fn owner_and_time_are_kept_and_the_first_file_is_read_within_the_limit() {
        let archive = build(
            &[Entry::file("/etc/pgbouncer/userlist.txt", 0o600, b"abcdef")
                .owned_by(70, 71)
                .modified_at(1_700_000_000)],
        )
        .expect("builds");
        let listed = entries(&archive);
        assert_eq!(
            listed,
            [EntryInfo {
                path: "etc/pgbouncer/userlist.txt".to_owned(),
                uid: 70,
                gid: 71,
                mode: 0o600,
                mtime: Some(1_700_000_000),
                regular: true,
            }]
        );
        assert_eq!(first_file(&archive, 3).as_deref(), Some(&b"abc"[..]));
        let directory = build(&[Entry::directory("/etc/x", 0o755)]).expect("builds");
        assert_eq!(first_file(&directory, 10), None);
        assert_eq!(first_file(b"not a tar", 10), None);
    }

    #[test]
    fn a_scan_names_every_file_and_reads_only_those_it_keeps() {
        let archive = build(&[
            Entry::directory("/extension", 0o755),
            Entry::file(
                "/extension/pg_trgm.control",
                0o644,
                b"default_version = '1.6'",
            ),
            Entry::file("/extension/pg_trgm--1.6.sql", 0o644, &[b'x'; 2048]),
        ])
        .expect("builds");
        let (files, whole) = scan(archive.as_slice(), |name| name.ends_with(".control"), 8);
        assert!(whole);
        assert_eq!(
            files,
            [
                ("extension".to_owned(), None),
                ("pg_trgm.control".to_owned(), Some(b"default_".to_vec())),
                ("pg_trgm--1.6.sql".to_owned(), None),
            ]
        );
        let (files, whole) = scan(&archive[..1024], |_| false, 8);
        assert!(!whole, "{files:?}");
    }
}
