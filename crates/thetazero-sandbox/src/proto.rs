//! The messages between the server and a worker process, and how they are framed on the pipes between them: a 4-byte little-endian length, then one JSON message, an object whose one key names the message. It must refuse anything malformed or oversized rather than guess: a worker may be compromised, so the server treats every frame as hostile input.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::broker::{CallArgs, CallReply};
use crate::host::HostFn;
use crate::job::RunSpec;
use crate::report::ExecutionReport;

/// The largest frame either side accepts. Inputs, outputs, call arguments
/// and replies are each capped far below this by the run's limits.
pub(crate) const MAX_FRAME: usize = 64 << 20;

/// Server to worker.
#[derive(Debug, Serialize, Deserialize)]
// Externally tagged: a message is read in one pass, where an internal tag
// would first buffer the whole message (a run's report) to find it.
#[serde(rename_all = "snake_case")]
pub(crate) enum ToWorker {
    /// Start a run. `run` is the server's id for it, unique per worker.
    Start { run: u64, spec: Box<RunSpec> },
    /// The settled value of a host call the worker sent.
    Reply {
        run: u64,
        call: u32,
        reply: CallReply,
    },
    /// Stop a run (kill, halt, shutdown); the engine's interrupt sees it.
    Cancel { run: u64 },
    /// A host call of the run is waiting for a human (`true`) or no longer.
    Approval { run: u64, waiting: bool },
}

/// Worker to server.
#[derive(Debug, Serialize, Deserialize)]
// Externally tagged: a message is read in one pass, where an internal tag
// would first buffer the whole message (a run's report) to find it.
#[serde(rename_all = "snake_case")]
pub(crate) enum FromWorker {
    /// Confinement is in force; the worker takes runs now.
    Ready { pid: u32 },
    /// Confinement failed; the worker exits after this.
    Refused { reason: String },
    /// A counted host call for the server's broker.
    Call {
        run: u64,
        call: u32,
        f: HostFn,
        args: CallArgs,
    },
    /// The engine took the run for the first time, `ago_us` before this
    /// frame was written: its deadline starts then (time queued behind the
    /// account's other runs does not count). A worker announces a start with
    /// its next frame, or when its engine thread next goes idle, and within
    /// a sentinel beat at the latest: a run that ends at once crosses the
    /// channel once.
    Started {
        run: u64,
        #[serde(default)]
        ago_us: u64,
    },
    /// The run is entirely suspended on approvals (`true`), or runs again.
    Paused { run: u64, paused: bool },
    /// A cancelled run that was not on the engine thread: it will run no
    /// more code, so the kill is confirmed now.
    Stopped { run: u64 },
    /// The sentinel's heartbeat: which run holds the engine thread, and for
    /// how long it has.
    Beat { on_thread: Option<u64>, for_ms: u64 },
    /// The run ended; its report as the engine built it.
    Ended {
        run: u64,
        report: Box<ExecutionReport>,
    },
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("the other side closed the channel")]
    Closed,
    #[error("frame of {0} bytes is larger than allowed")]
    TooLarge(usize),
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("channel error: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one message; `Closed` at a clean end between frames.
pub(crate) async fn read<R, T>(r: &mut R, buf: &mut Vec<u8>) -> Result<T, FrameError>
where
    R: AsyncRead + Unpin,
    T: for<'de> Deserialize<'de>,
{
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    buf.clear();
    buf.resize(len, 0);
    r.read_exact(buf).await?;
    let message = serde_json::from_slice(buf).map_err(|e| FrameError::Malformed(e.to_string()));
    // A large frame's buffer is not kept for the next one.
    if buf.capacity() > 1 << 20 {
        *buf = Vec::new();
    }
    message
}

/// Encodes one message as a frame.
pub(crate) fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, FrameError> {
    let mut out = vec![0u8; 4];
    serde_json::to_writer(&mut out, message).map_err(|e| FrameError::Malformed(e.to_string()))?;
    let len = out.len() - 4;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    out[..4].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(out)
}

/// A frame for a worker, and what to release once it is written (the bytes
/// a run's broker held for it).
pub(crate) struct OutFrame {
    pub bytes: Vec<u8>,
    pub written: Option<Box<dyn FnOnce() + Send>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_and_refusals() {
        let frame = encode(&ToWorker::Cancel { run: 7 }).unwrap();
        let mut buf = Vec::new();
        let got: ToWorker = read(&mut frame.as_slice(), &mut buf).await.unwrap();
        assert!(matches!(got, ToWorker::Cancel { run: 7 }));

        // Too large: refused before reading the body.
        let mut big = ((MAX_FRAME + 1) as u32).to_le_bytes().to_vec();
        big.extend_from_slice(b"{}");
        let r: Result<ToWorker, _> = read(&mut big.as_slice(), &mut buf).await;
        assert!(matches!(r, Err(FrameError::TooLarge(_))));

        // Garbage of the right length.
        let mut junk = 5u32.to_le_bytes().to_vec();
        junk.extend_from_slice(b"\xff\x00abc");
        let r: Result<ToWorker, _> = read(&mut junk.as_slice(), &mut buf).await;
        assert!(matches!(r, Err(FrameError::Malformed(_))));

        // Cut short inside a frame is an error, at a boundary a clean close.
        let r: Result<ToWorker, _> = read(&mut &frame[..frame.len() - 1], &mut buf).await;
        assert!(matches!(
            r,
            Err(FrameError::Closed) | Err(FrameError::Io(_))
        ));
        let r: Result<ToWorker, _> = read(&mut &b""[..], &mut buf).await;
        assert!(matches!(r, Err(FrameError::Closed)));
    }
}
