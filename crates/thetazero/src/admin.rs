//! The operator's local channel to a running server, and the lock that says
//! one process holds an SQLite store.
//!
//! `thetazero serve` takes an exclusive lock on `<database>.lock` before it
//! opens an SQLite database, and listens on `admin.sock` in its data
//! directory (mode 0600 in a 0700 directory; a peer of another user is turned
//! away). `thetazero keys recover` asks the server over that socket when it
//! answers, so the server, which owns the audit log, appends the event; when
//! nothing answers and the lock is free, it takes the lock and does the same
//! work itself.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;
use thetazero_core::audit::{AuditAction, AuditEvent};
use thetazero_core::model::{AccountId, ApiKey};
use thetazero_core::store::Store;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// The socket's file name in the data directory.
pub const SOCKET: &str = "admin.sock";

/// The largest request line the socket reads.
const MAX_LINE: usize = 4096;

/// How long the socket waits for a request line.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET)
}

/// The SQLite database file a `sqlite://` URL names, if it names one.
pub fn sqlite_path(database_url: &str) -> Option<PathBuf> {
    database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))
        .map(PathBuf::from)
}

/// An exclusive lock on an SQLite store, held as long as this value lives.
pub struct StoreLock {
    _file: File,
}

/// Takes the store's lock; `Ok(None)` when another process holds it.
pub fn try_lock_store(db: &Path) -> Result<Option<StoreLock>> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    let path = PathBuf::from(name);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("opening the lock file {}", path.display()))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(StoreLock { _file: file })),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Ok(None),
        Err(e) => {
            Err(std::io::Error::from(e)).with_context(|| format!("locking {}", path.display()))
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Is anyone there?
    Ping,
    /// Mint a new owner key for an account.
    RecoverKey { account_id: AccountId },
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Response {
    fn error(code: &str, message: impl Into<String>) -> Response {
        Response {
            ok: false,
            key_id: None,
            prefix: None,
            secret: None,
            code: Some(code.into()),
            message: Some(message.into()),
        }
    }
}

/// Why a recovery did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    #[error("no account {0}")]
    NoAccount(AccountId),
    #[error("{0}")]
    Store(#[from] thetazero_core::store::StoreError),
}

/// Mints a new owner key for `account`, with its `key_created` event in the
/// same transaction. `via` says how the operator asked (`socket`, `offline`).
pub async fn recover_owner_key(
    store: &dyn Store,
    account: AccountId,
    via: &'static str,
) -> Result<(ApiKey, String), RecoverError> {
    if store.get_account(account).await?.is_none() {
        return Err(RecoverError::NoAccount(account));
    }
    let generated = thetazero_runtime::keys::generate_key();
    let key = store
        .create_key_audited(
            generated.owner(account, "recovered owner"),
            Box::new(move |key| {
                vec![AuditEvent::new(
                    account,
                    AuditAction::KeyCreated,
                    format!(
                        "owner API key {} ({}) created by the operator's key recovery",
                        key.name, key.prefix
                    ),
                )
                .payload(json!({
                    "created_key_id": key.id,
                    "scopes": ["owner"],
                    "recovery": true,
                    "via": via,
                }))]
            }),
        )
        .await?;
    Ok((key, generated.secret))
}

/// Listens on the data directory's socket; answers until the process ends.
/// Answers `None` (and logs why) when another live server already answers
/// there.
pub async fn listen(data_dir: &Path, store: Arc<dyn Store>) -> Result<Option<PathBuf>> {
    use std::os::unix::fs::PermissionsExt;
    let path = socket_path(data_dir);
    if UnixStream::connect(&path).await.is_ok() {
        tracing::warn!(path = %path.display(), "another server answers on this admin socket; not listening on it");
        return Ok(None);
    }
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing stale {}", path.display())),
    }
    let listener = UnixListener::bind(&path)
        .with_context(|| format!("listening on the admin socket {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", path.display()))?;
    let me = rustix::process::getuid().as_raw();
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, most likely: wait, do not spin.
                    tracing::warn!(error = %e, "admin socket: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    continue;
                }
            };
            let store = store.clone();
            tokio::spawn(async move {
                if let Err(e) = answer(stream, store.as_ref(), me).await {
                    tracing::warn!(error = %e, "admin socket request failed");
                }
            });
        }
    });
    Ok(Some(path))
}

async fn answer(stream: UnixStream, store: &dyn Store, me: u32) -> Result<()> {
    let peer = stream.peer_cred()?.uid();
    let (read, mut write) = stream.into_split();
    let response = if peer != me {
        tracing::warn!(
            uid = peer,
            "admin socket: a peer of another user was turned away"
        );
        Response::error(
            "forbidden",
            "only the server's own user may use this socket",
        )
    } else {
        let mut line = Vec::new();
        let mut reader = BufReader::new(read).take(MAX_LINE as u64 + 1);
        // A peer that never finishes its line does not hold a task forever.
        tokio::time::timeout(READ_TIMEOUT, reader.read_until(b'\n', &mut line))
            .await
            .map_err(|_| anyhow::anyhow!("the request line did not arrive in time"))??;
        match serde_json::from_slice::<Request>(&line) {
            Err(e) => Response::error("invalid_request", format!("bad request: {e}")),
            Ok(Request::Ping) => Response {
                ok: true,
                key_id: None,
                prefix: None,
                secret: None,
                code: None,
                message: None,
            },
            Ok(Request::RecoverKey { account_id }) => {
                match recover_owner_key(store, account_id, "socket").await {
                    Ok((key, secret)) => {
                        tracing::warn!(
                            account_id = account_id.get(),
                            key_id = key.id.get(),
                            "a new owner key was recovered through the admin socket"
                        );
                        Response {
                            ok: true,
                            key_id: Some(key.id.get()),
                            prefix: Some(key.prefix),
                            secret: Some(secret),
                            code: None,
                            message: None,
                        }
                    }
                    Err(RecoverError::NoAccount(id)) => {
                        Response::error("not_found", format!("no account {id}"))
                    }
                    Err(RecoverError::Store(e)) => Response::error("internal_error", e.to_string()),
                }
            }
        }
    };
    let mut out = serde_json::to_vec(&response)?;
    out.push(b'\n');
    write.write_all(&out).await?;
    write.shutdown().await?;
    Ok(())
}

/// Sends one request to the server on `path`; `Ok(None)` when no server
/// answers there.
pub async fn ask(path: &Path, request: &Request) -> Result<Option<Response>> {
    tokio::time::timeout(std::time::Duration::from_secs(60), exchange(path, request))
        .await
        .map_err(|_| anyhow::anyhow!("the server on {} did not answer in time", path.display()))?
}

async fn exchange(path: &Path, request: &Request) -> Result<Option<Response>> {
    let stream = match UnixStream::connect(path).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e).with_context(|| format!("connecting to {}", path.display())),
    };
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    write.write_all(&line).await?;
    let mut answer = Vec::new();
    BufReader::new(read)
        .take(1 << 16)
        .read_until(b'\n', &mut answer)
        .await?;
    if answer.is_empty() {
        bail!(
            "the server on {} closed the socket without answering",
            path.display()
        );
    }
    Ok(Some(serde_json::from_slice(&answer).with_context(
        || {
            format!(
                "the server on {} answered something unreadable",
                path.display()
            )
        },
    )?))
}
