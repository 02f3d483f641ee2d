//! `TestWitness`: a local C2SP tlog-witness on 127.0.0.1 for tests only. It
//! checks log signatures and consistency proofs with thetazero-audit and
//! cosigns with its own key. Must never be used outside tests: it keeps its
//! state in memory and its "timestamps" are a counter.

// Test support may unwrap: a panic is how tests fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};
use sha2::{Digest as _, Sha256};
use thetazero_audit::{merkle, Hash, VerifierKey};

/// How the witness behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Honest,
    /// Cosigns a different message than the checkpoint it was sent.
    BadCosignature,
    /// Accepts the request and never answers.
    Hang,
    /// Answers every request with this status.
    Status(u16),
}

struct Inner {
    logs: HashMap<String, VerifierKey>,
    seen: HashMap<String, (u64, Hash)>,
    mode: Mode,
    clock: u64,
    requests: Vec<String>,
}

pub struct TestWitness {
    pub name: String,
    pub signing_key: SigningKey,
    /// The submission prefix clients are configured with.
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestWitness {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The C2SP verifier key of an Ed25519 cosigner: type 0x04 (cosignature/v1).
pub fn cosigner_vkey(name: &str, key: &SigningKey) -> String {
    let mut raw = vec![0x04];
    raw.extend_from_slice(&key.verifying_key().to_bytes());
    format!(
        "{name}+{:08x}+{}",
        key_id(name, &raw),
        STANDARD.encode(&raw)
    )
}

fn key_id(name: &str, raw: &[u8]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update(raw);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

impl TestWitness {
    /// Starts a witness trusting `logs` (origin, log verifier key).
    pub async fn start(name: &str, seed: u8, logs: &[(&str, VerifierKey)]) -> Self {
        let inner = Arc::new(Mutex::new(Inner {
            logs: logs
                .iter()
                .map(|(o, k)| (o.to_string(), k.clone()))
                .collect(),
            seen: HashMap::new(),
            mode: Mode::Honest,
            clock: 1_700_000_000,
            requests: Vec::new(),
        }));
        let signing_key = SigningKey::from_bytes(&[seed; 32]);
        let app = Router::new()
            .route("/w/add-checkpoint", post(add_checkpoint))
            .with_state((inner.clone(), name.to_owned(), signing_key.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        TestWitness {
            name: name.to_owned(),
            signing_key,
            url: format!("http://{addr}/w"),
            inner,
            task,
        }
    }

    pub fn vkey(&self) -> String {
        cosigner_vkey(&self.name, &self.signing_key)
    }

    pub fn set_mode(&self, mode: Mode) {
        self.inner.lock().unwrap().mode = mode;
    }

    /// The size the witness holds for `origin`, 0 if none.
    pub fn size(&self, origin: &str) -> u64 {
        self.inner
            .lock()
            .unwrap()
            .seen
            .get(origin)
            .map_or(0, |s| s.0)
    }

    /// Every request body received, in order.
    pub fn requests(&self) -> Vec<String> {
        self.inner.lock().unwrap().requests.clone()
    }
}

type AppState = (Arc<Mutex<Inner>>, String, SigningKey);

fn status(code: u16) -> Response {
    StatusCode::from_u16(code).unwrap().into_response()
}

fn conflict(size: u64) -> Response {
    (
        StatusCode::CONFLICT,
        [(header::CONTENT_TYPE, "text/x.tlog.size")],
        format!("{size}\n"),
    )
        .into_response()
}

async fn add_checkpoint(State((inner, name, key)): State<AppState>, body: Bytes) -> Response {
    let mode = {
        let mut g = inner.lock().unwrap();
        g.requests.push(String::from_utf8_lossy(&body).into_owned());
        g.mode
    };
    match mode {
        Mode::Hang => std::future::pending::<()>().await,
        Mode::Status(code) => return status(code),
        Mode::Honest | Mode::BadCosignature => {}
    }
    let Ok(text) = std::str::from_utf8(&body) else {
        return status(400);
    };
    let Some((head, note)) = text.split_once("\n\n") else {
        return status(400);
    };
    let mut lines = head.split('\n');
    let Some(old) = lines
        .next()
        .and_then(|l| l.strip_prefix("old "))
        .and_then(|n| n.parse::<u64>().ok())
    else {
        return status(400);
    };
    let mut proof = Vec::new();
    for l in lines {
        let Some(h) = STANDARD
            .decode(l)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
        else {
            return status(400);
        };
        proof.push(Hash(h));
    }
    if proof.len() > 63 {
        return status(400);
    }
    let origin = note.split('\n').next().unwrap_or("");

    let mut g = inner.lock().unwrap();
    let Some(vkey) = g.logs.get(origin).cloned() else {
        return status(404);
    };
    let Ok(cp) = vkey.open_checkpoint(note, Some(origin)) else {
        return status(403);
    };
    if old > cp.size {
        return status(400);
    }
    let known = g.seen.get(origin).copied();
    let known_size = known.map_or(0, |k| k.0);
    if old != known_size {
        return conflict(known_size);
    }
    match known {
        None if !proof.is_empty() => return status(422),
        None => {}
        Some((size, root)) if size == cp.size => {
            if root != cp.root {
                return conflict(size);
            }
            if !proof.is_empty() {
                return status(422);
            }
        }
        Some((size, root)) => {
            let checked = merkle::verify_consistency(&proof, size, root, cp.size, cp.root);
            if checked.is_err() {
                return status(422);
            }
        }
    }
    g.seen.insert(origin.to_owned(), (cp.size, cp.root));
    g.clock += 1;
    let ts = g.clock;
    drop(g);

    // The body the log signed: the note up to its blank line.
    let Some((cp_text, _)) = note.split_once("\n\n") else {
        return status(400);
    };
    let mut signed = format!("{cp_text}\n");
    if mode == Mode::BadCosignature {
        signed.push_str("tampered\n");
    }
    let msg = format!("cosignature/v1\ntime {ts}\n{signed}");
    let sig = key.sign(msg.as_bytes());
    let mut raw = vec![0x04];
    raw.extend_from_slice(&key.verifying_key().to_bytes());
    let mut blob = key_id(&name, &raw).to_be_bytes().to_vec();
    blob.extend_from_slice(&ts.to_be_bytes());
    blob.extend_from_slice(&sig.to_bytes());
    // A line from a key the client does not know comes first; the client
    // must skip it.
    let stranger = "— stranger.example/w AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
    (
        StatusCode::OK,
        format!("{stranger}— {name} {}\n", STANDARD.encode(blob)),
    )
        .into_response()
}
