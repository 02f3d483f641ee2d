//! The command-hook anchor: runs the operator's program with the checkpoint
//! note on stdin and takes the first stdout line as the external reference.
//! Must never run anything through a shell, wait past its timeout, or read
//! unbounded output from the child.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use crate::{Anchor, AnchorError, AnchorReceipt, AnchorRequest};

/// Most stdout accepted from a hook: it prints one reference line.
pub const STDOUT_LIMIT_BYTES: usize = 4096;
/// How much of the end of stderr is kept for the error message.
pub const STDERR_TAIL_BYTES: usize = 2048;
/// Longest external reference accepted.
pub const MAX_REF_BYTES: usize = 512;

/// Runs `program` with `args` (no shell, no PATH lookup when the path is
/// absolute, which the configuration requires). The environment is
/// inherited, because hooks need their own credentials, plus
/// `THETAZERO_ANCHOR_ORIGIN`, `THETAZERO_ANCHOR_SIZE` and
/// `THETAZERO_ANCHOR_PREVIOUS_SIZE`.
#[derive(Clone, Debug)]
pub struct CommandAnchor {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub timeout: Duration,
}

impl CommandAnchor {
    pub fn new(program: PathBuf, args: Vec<String>, timeout: Duration) -> Self {
        CommandAnchor {
            program,
            args,
            timeout,
        }
    }
}

/// Reads at most `limit` bytes, failing as soon as there are more, so a
/// runaway hook is stopped rather than drained until the timeout.
async fn read_capped<R: AsyncRead + Unpin>(mut r: R, limit: usize) -> Result<Vec<u8>, AnchorError> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = r
            .read(&mut buf)
            .await
            .map_err(|e| AnchorError::CommandIo(e.to_string()))?;
        if n == 0 {
            return Ok(out);
        }
        if out.len() + n > limit {
            return Err(AnchorError::CommandOutputTooLarge { limit });
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// Reads everything, keeping only the last `keep` bytes: stderr is
/// diagnostics, and its end is where the reason usually is.
async fn read_tail<R: AsyncRead + Unpin>(mut r: R, keep: usize) -> Result<Vec<u8>, AnchorError> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = r
            .read(&mut buf)
            .await
            .map_err(|e| AnchorError::CommandIo(e.to_string()))?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
        if out.len() > keep {
            out.drain(..out.len() - keep);
        }
    }
}

fn describe(status: ExitStatus) -> String {
    match status.code() {
        Some(c) => format!("exit status {c}"),
        None => "killed by a signal".to_owned(),
    }
}

/// The reference is the first line: printable, non-empty, bounded.
fn parse_ref(stdout: &[u8]) -> Result<String, AnchorError> {
    let bad = |m: &str| AnchorError::CommandBadOutput(m.to_owned());
    let text = std::str::from_utf8(stdout).map_err(|_| bad("stdout is not UTF-8"))?;
    let line = text.split('\n').next().unwrap_or("");
    let line = line.strip_suffix('\r').unwrap_or(line).trim();
    if line.is_empty() {
        return Err(bad("the first stdout line is empty"));
    }
    if line.len() > MAX_REF_BYTES {
        return Err(bad("the reference is too long"));
    }
    if line.chars().any(char::is_control) {
        return Err(bad("the reference contains control characters"));
    }
    Ok(line.to_owned())
}

#[async_trait]
impl Anchor for CommandAnchor {
    fn kind(&self) -> &'static str {
        "command"
    }

    async fn anchor(&self, req: AnchorRequest) -> Result<AnchorReceipt, AnchorError> {
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .env("THETAZERO_ANCHOR_ORIGIN", &req.origin)
            .env("THETAZERO_ANCHOR_SIZE", req.size.to_string())
            .env(
                "THETAZERO_ANCHOR_PREVIOUS_SIZE",
                req.previous_size.to_string(),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // If this future is dropped (caller cancelled), the child goes.
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| AnchorError::CommandSpawn(format!("{}: {e}", self.program.display())))?;
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(AnchorError::CommandIo("child pipes missing".into()));
        };
        let note = req.checkpoint_note.clone();
        let write = async move {
            // A hook that exits without reading stdin closes the pipe; that
            // is its choice, not an error, so the write result is ignored
            // when it is a broken pipe.
            match stdin.write_all(note.as_bytes()).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                Err(e) => return Err(AnchorError::CommandIo(e.to_string())),
            }
            drop(stdin);
            Ok(())
        };
        let run = async {
            let (_, out, err) = tokio::try_join!(
                write,
                read_capped(stdout, STDOUT_LIMIT_BYTES),
                read_tail(stderr, STDERR_TAIL_BYTES),
            )?;
            let status = child
                .wait()
                .await
                .map_err(|e| AnchorError::CommandIo(e.to_string()))?;
            Ok::<_, AnchorError>((status, out, err))
        };
        let outcome = tokio::time::timeout(self.timeout, run).await;
        let (status, out, err) = match outcome {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => {
                // Too much output or a pipe error: stop the hook now.
                let _ = child.kill().await;
                return Err(e);
            }
            Err(_) => {
                let _ = child.kill().await;
                return Err(AnchorError::Timeout(self.timeout));
            }
        };
        if !status.success() {
            let tail = String::from_utf8_lossy(&err).trim().to_owned();
            return Err(AnchorError::CommandFailed {
                status: describe(status),
                stderr_tail: tail,
            });
        }
        let external_ref = parse_ref(&out)?;
        Ok(AnchorReceipt {
            external_ref: Some(external_ref),
            cosignature: None,
            detail: serde_json::json!({
                "program": self.program.display().to_string(),
                "checkpoint_size": req.size,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        assert_eq!(parse_ref(b"0xabc\n").unwrap(), "0xabc");
        assert_eq!(parse_ref(b"0xabc\r\nmore\n").unwrap(), "0xabc");
        assert_eq!(parse_ref(b"  tx-1  \n").unwrap(), "tx-1");
        for bad in [&b""[..], b"\n", b"\nx\n", b"\xff\n", b"a\x07b\n"] {
            assert!(parse_ref(bad).is_err(), "{bad:?}");
        }
        assert!(parse_ref(&[b'a'; MAX_REF_BYTES]).is_ok());
        assert!(parse_ref(&[b'a'; MAX_REF_BYTES + 1]).is_err());
    }

    #[tokio::test]
    async fn readers_cap_and_keep_the_tail() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(read_capped(&data[..], 10_000).await.unwrap(), data);
        assert_eq!(
            read_capped(&data[..], 9_999).await.unwrap_err(),
            AnchorError::CommandOutputTooLarge { limit: 9_999 }
        );
        assert_eq!(read_tail(&data[..], 100).await.unwrap(), &data[9_900..]);
        assert_eq!(read_tail(&b"short"[..], 100).await.unwrap(), b"short");
    }
}
