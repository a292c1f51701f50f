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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file below the directory, nested ones too, sorted, with size
    /// and SHA-256; the manifest and its partial copy are not part of it.
    #[test]
    fn files_are_measured_without_the_manifest() {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let directory = directory.path();
        let write = |path: &str, text: &str| {
            let path = directory.join(path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).expect("create a directory");
            }
            std::fs::write(path, text).expect("write a file");
        };
        write("globals.sql", "");
        write("02-b.dir/toc.dat", "toc");
        write("01-a.dump", "dump");
        write(MANIFEST_FILE, "{}");
        write(&format!("{MANIFEST_FILE}.partial"), "{");
        let files = measure(directory).expect("measure");
        let listed: Vec<(&str, u64)> = files
            .iter()
            .map(|file| (file.path.as_str(), file.size_bytes))
            .collect();
        assert_eq!(
            listed,
            [
                ("01-a.dump", 4),
                ("02-b.dir/toc.dat", 3),
                ("globals.sql", 0)
            ]
        );
        assert_eq!(
            files[0].sha256,
            "b6ca0868bca6a2926b70aa1a71592038d9030fe26d4214edcfbd6cf41f2f4654"
        );
        assert_eq!(
            files[2].sha256,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
