//! The files of a backup with their sizes and SHA-256, as the manifest
//! records them when a backup is taken and `verify` checks them.

use std::path::Path;

use anyhow::Context;
use sha2::{Digest, Sha256};

use crate::backup::manifest::{FileEntry, MANIFEST_FILE};

/// Every file below a backup directory but the manifest, with size and
/// SHA-256, sorted by path.
pub(super) fn measure(directory: &Path) -> anyhow::Result<Vec<FileEntry>> {
    let mut files = Vec::new();
    let mut pending = vec![directory.to_path_buf()];
    while let Some(current) = pending.pop() {
        for item in std::fs::read_dir(&current)
            .with_context(|| format!("cannot read `{}`", current.display()))?
        {
            let item = item.with_context(|| format!("cannot read `{}`", current.display()))?;
            let path = item.path();
            if item.file_type()?.is_dir() {
                pending.push(path);
                continue;
            }
            let relative = path
                .strip_prefix(directory)
                .unwrap_or(&path)
                .display()
                .to_string();
            if relative.starts_with(MANIFEST_FILE) {
                continue;
            }
            let (size_bytes, sha256) = checksum(&path)?;
            files.push(FileEntry {
                path: relative,
                size_bytes,
                sha256,
            });
        }
    }
    files.sort_by(|left, right| left.path.cmp(&right.path));
    Ok(files)
}

fn checksum(path: &Path) -> anyhow::Result<(u64, String)> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open `{}`", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 16];
    let mut size = 0;
    loop {
        let read = std::io::Read::read(&mut file, &mut buffer)
            .with_context(|| format!("cannot read `{}`", path.display()))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        size += read as u64;
    }
    Ok((size, hex::encode(hasher.finalize())))
}
