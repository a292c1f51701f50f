//! Files in and out of containers (running, stopped or only created)
//! through the engine's archive endpoints.

use bollard::query_parameters::{DownloadFromContainerOptions, UploadToContainerOptions};

use super::archive::{self, Entry, EntryInfo};
use super::{Docker, EngineError, STREAM_STALL, is_not_found, next_within};

/// The most of a file [`read_file`] reads: the files pgspec reads back are
/// control files, password files and PgBouncer's auth file, which holds a
/// line of about 150 bytes per role.
pub const READ_FILE_LIMIT: usize = 16 * 1024 * 1024;

/// Unpacks `archive` at `/` in `container`; `what` names the files for the
/// error ("the superuser password file").
pub async fn upload(
    docker: &Docker,
    container: &str,
    archive: Vec<u8>,
    what: &str,
) -> Result<(), EngineError> {
    docker
        .upload_to_container(
            container,
            Some(UploadToContainerOptions {
                path: "/".to_owned(),
                ..UploadToContainerOptions::default()
            }),
            bollard::body_full(archive.into()),
        )
        .await
        .map_err(EngineError::call(format!(
            "copy {what} into container `{container}`"
        )))
}

/// Builds an archive of `entries` and unpacks it at `/` in `container`.
pub async fn upload_entries(
    docker: &Docker,
    container: &str,
    entries: &[Entry<'_>],
    what: &str,
) -> anyhow::Result<()> {
    let archive = archive::build(entries)
        .map_err(|error| anyhow::anyhow!("cannot build the archive of {what}: {error}"))?;
    Ok(upload(docker, container, archive, what).await?)
}

/// The archive of `path` in `container`, at most `limit` bytes of it (and a
/// little more for the tar headers); `None` when the path does not exist.
pub async fn download(
    docker: &Docker,
    container: &str,
    path: &str,
    limit: usize,
) -> Result<Option<Vec<u8>>, EngineError> {
    let what = || format!("read `{path}` in container `{container}`");
    let mut archive = Vec::new();
    let mut stream = docker.download_from_container(
        container,
        Some(DownloadFromContainerOptions {
            path: path.to_owned(),
        }),
    );
    loop {
        let chunk = match next_within(&mut stream, STREAM_STALL).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(source) => {
                return Err(EngineError::Stalled {
                    what: what(),
                    source,
                });
            }
        };
        match chunk {
            Ok(bytes) => {
                archive.extend_from_slice(&bytes);
                if archive.len() > limit + 4096 {
                    break;
                }
            }
            Err(error) if is_not_found(&error) => return Ok(None),
            Err(source) => {
                return Err(EngineError::Call {
                    what: what(),
                    source,
                });
            }
        }
    }
    Ok(Some(archive))
}

/// One regular file of a container, at most [`READ_FILE_LIMIT`] bytes;
/// `None` when it does not exist or is not a regular file.
pub async fn read_file(
    docker: &Docker,
    container: &str,
    path: &str,
) -> Result<Option<Vec<u8>>, EngineError> {
    Ok(download(docker, container, path, READ_FILE_LIMIT)
        .await?
        .and_then(|archive| archive::first_file(&archive, READ_FILE_LIMIT)))
}

/// [`read_file`] as text, with any failure to read it as `None`: for
/// callers to whom an unreadable file means "not as pgspec wrote it".
pub async fn read_text(docker: &Docker, container: &str, path: &str) -> Option<String> {
    let bytes = read_file(docker, container, path).await.ok()??;
    String::from_utf8(bytes).ok()
}

/// The entries of a directory of a container (the directory itself first);
/// empty when it cannot be read.
pub async fn list(docker: &Docker, container: &str, path: &str) -> Vec<EntryInfo> {
    match download(docker, container, path, READ_FILE_LIMIT).await {
        Ok(Some(archive)) => archive::entries(&archive),
        _ => Vec::new(),
    }
}

/// The files of a directory of a container, streamed through the archive
/// endpoint: each file's name, with the content of those `keep` picks (at
/// most `limit` bytes each); the others are skipped as they arrive, so a
/// directory of any size is read in little memory. `None` when the path
/// does not exist; with `false` when the archive broke off (the files
/// before the break).
pub async fn scan_directory(
    docker: &Docker,
    container: &str,
    path: &str,
    keep: fn(&str) -> bool,
    limit: usize,
) -> Result<Option<(archive::Scanned, bool)>, EngineError> {
    let what = || format!("read `{path}` in container `{container}`");
    let mut stream = docker.download_from_container(
        container,
        Some(DownloadFromContainerOptions {
            path: path.to_owned(),
        }),
    );
    let (sender, receiver) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    let reader = tokio::task::spawn_blocking(move || {
        archive::scan(
            Chunks {
                receiver,
                chunk: Vec::new(),
                at: 0,
            },
            keep,
            limit,
        )
    });
    loop {
        let chunk = match next_within(&mut stream, STREAM_STALL).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(source) => {
                return Err(EngineError::Stalled {
                    what: what(),
                    source,
                });
            }
        };
        match chunk {
            // A reader that stopped early has what it could read.
            Ok(bytes) => {
                if sender.send(bytes.to_vec()).await.is_err() {
                    break;
                }
            }
            Err(error) if is_not_found(&error) => return Ok(None),
            Err(source) => {
                return Err(EngineError::Call {
                    what: what(),
                    source,
                });
            }
        }
    }
    drop(sender);
    Ok(Some(reader.await.unwrap_or_else(|error| {
        std::panic::resume_unwind(error.into_panic())
    })))
}

/// The chunks of a stream as a blocking reader.
struct Chunks {
    receiver: tokio::sync::mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    at: usize,
}

impl std::io::Read for Chunks {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.receiver.blocking_recv() {
                Some(chunk) => {
                    self.chunk = chunk;
                    self.at = 0;
                }
                None => return Ok(0),
            }
        }
        let count = buffer.len().min(self.chunk.len() - self.at);
        buffer[..count].copy_from_slice(&self.chunk[self.at..self.at + count]);
        self.at += count;
        Ok(count)
    }
}
