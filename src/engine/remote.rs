//! Reaching a port on an SSH engine's host: `ssh -W host:port`, the stdio
//! forward OpenSSH has built in, one `ssh` process per connection, spawned
//! the way the Docker CLI spawns its own `ssh … docker system dial-stdio`.
//! Nothing runs on the remote side but sshd.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::process::{ChildStdin, ChildStdout, Command};

/// How long `ssh` may take to reach the host (`-o ConnectTimeout`).
pub const SSH_CONNECT_TIMEOUT_S: u64 = 30;

/// `[user@]host[:port]` of an `ssh://` engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshDestination {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

impl SshDestination {
    /// Parses the part after `ssh://`.
    pub fn parse(text: &str) -> SshDestination {
        let authority = text.split('/').next().unwrap_or(text);
        let (user, rest) = match authority.rsplit_once('@') {
            Some((user, rest)) => (Some(user.to_owned()), rest),
            None => (None, authority),
        };
        let (host, port) = match rest.strip_prefix('[') {
            Some(bracketed) => {
                let (host, after) = bracketed.split_once(']').unwrap_or((bracketed, ""));
                (host, after.strip_prefix(':').and_then(|p| p.parse().ok()))
            }
            None => match rest.rsplit_once(':') {
                Some((host, port)) if port.parse::<u16>().is_ok() => (host, port.parse().ok()),
                _ => (rest, None),
            },
        };
        SshDestination {
            user,
            host: host.to_owned(),
            port,
        }
    }

    /// The arguments of `ssh` up to the destination, as the Docker CLI
    /// passes them.
    pub fn ssh_args(&self) -> Vec<String> {
        let mut args = vec![
            "-o".to_owned(),
            format!("ConnectTimeout={SSH_CONNECT_TIMEOUT_S}"),
            "-o".to_owned(),
            "BatchMode=yes".to_owned(),
            "-T".to_owned(),
        ];
        if let Some(user) = &self.user {
            args.extend(["-l".to_owned(), user.clone()]);
        }
        if let Some(port) = self.port {
            args.extend(["-p".to_owned(), port.to_string()]);
        }
        args
    }
}

impl std::fmt::Display for SshDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ssh://")?;
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        write!(f, "{}", self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

/// A byte stream to `host:port` as seen from the SSH host: `ssh`'s stdout
/// and stdin. The `ssh` process ends when the stream is dropped (its stdin
/// closes) and is reaped in the background.
pub struct SshStream {
    stdout: ChildStdout,
    stdin: ChildStdin,
}

/// Opens a stdio forward to `host:port` on the SSH host.
pub fn forward(destination: &SshDestination, host: &str, port: u16) -> std::io::Result<SshStream> {
    let target = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut child = Command::new("ssh")
        .args(destination.ssh_args())
        .arg("-W")
        .arg(target)
        .arg("--")
        .arg(&destination.host)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let (Some(stdout), Some(stdin)) = (child.stdout.take(), child.stdin.take()) else {
        return Err(std::io::Error::other("ssh gave no pipes"));
    };
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
    Ok(SshStream { stdout, stdin })
}

impl AsyncRead for SshStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stdout).poll_read(cx, buf)
    }
}

impl AsyncWrite for SshStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stdin).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stdin).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stdin).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_parse_like_the_docker_cli() {
        let full = SshDestination::parse("deploy@db1.internal:2222");
        assert_eq!(full.user.as_deref(), Some("deploy"));
        assert_eq!(full.host, "db1.internal");
        assert_eq!(full.port, Some(2222));
        assert_eq!(full.to_string(), "ssh://deploy@db1.internal:2222");
        let bare = SshDestination::parse("db1");
        assert_eq!(
            (bare.user, bare.host.as_str(), bare.port),
            (None, "db1", None)
        );
        let v6 = SshDestination::parse("root@[::1]:22");
        assert_eq!((v6.host.as_str(), v6.port), ("::1", Some(22)));
        let args = full.ssh_args();
        assert!(args.contains(&"-p".to_owned()) && args.contains(&"deploy".to_owned()));
    }
}
