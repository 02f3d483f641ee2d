//! The client side of C2SP `tlog-witness` (`POST <prefix>/add-checkpoint`)
//! and the check of the cosignature it returns. Must not report success
//! before the witness's signature over our checkpoint verifies, and must not
//! follow redirects or send anything but the request body the spec defines.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{Signature, VerifyingKey};
use thetazero_audit::{Checkpoint, VerifierKey};

use crate::{Anchor, AnchorError, AnchorReceipt, AnchorRequest, ConfigError};

/// The spec forbids clients from sending more proof lines than this.
pub const MAX_PROOF_LINES: usize = 63;

/// Largest witness response read; a cosignature line is about 150 bytes and
/// a witness sends one per key it holds.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024;

/// Longest 409 body read for the witness's size; the rest is not needed.
const MAX_CONFLICT_BYTES: usize = 256;

const ALG_ED25519: u8 = 0x01;
const ALG_COSIGNATURE_V1: u8 = 0x04;

/// Which signature a witness key produces, from the type byte of its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WitnessKeyKind {
    /// C2SP `tlog-cosignature` Ed25519 cosignature/v1 (key type 0x04): a
    /// timestamped signature over `cosignature/v1\ntime <t>\n<body>`. This
    /// is what `tlog-witness` requires.
    CosignatureV1,
    /// A plain C2SP signed-note Ed25519 signature (key type 0x01) over the
    /// checkpoint body, as older witnesses produced. Accepted only when the
    /// operator configured a key of that type.
    NoteEd25519,
}

/// A witness's public key in C2SP verifier-key form,
/// `name+hex(keyid)+base64(type||pubkey)`, with type 0x04 (cosignature/v1)
/// or 0x01 (signed-note Ed25519).
#[derive(Clone)]
pub struct WitnessKey {
    text: String,
    name: String,
    key_id: u32,
    kind: WitnessKeyKind,
    key: VerifyingKey,
}

impl WitnessKey {
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        let s = s.trim_end_matches(['\n', '\r']);
        let bad = |why: &str| ConfigError::BadKey(why.to_owned());
        if s.len() > 1024 {
            return Err(bad("too long"));
        }
        let (name, rest) = s.split_once('+').ok_or_else(|| bad("no '+'"))?;
        let (id_hex, key64) = rest.split_once('+').ok_or_else(|| bad("no key id"))?;
        if !signed_note::is_key_name_valid(name) {
            return Err(bad("invalid name"));
        }
        if id_hex.len() != 8 || !id_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("key id is not 8 hex digits"));
        }
        let key_id = u32::from_str_radix(id_hex, 16).map_err(|_| bad("bad key id"))?;
        let raw = STANDARD.decode(key64).map_err(|_| bad("bad base64"))?;
        let (kind, pubkey) = match raw.split_first() {
            Some((&ALG_COSIGNATURE_V1, k)) => (WitnessKeyKind::CosignatureV1, k),
            Some((&ALG_ED25519, k)) => (WitnessKeyKind::NoteEd25519, k),
            Some(_) => return Err(bad("unsupported key type")),
            None => return Err(bad("empty key")),
        };
        if signed_note::key_id(name, &raw) != key_id {
            return Err(bad("key id does not match name and key"));
        }
        let bytes: [u8; 32] = pubkey
            .try_into()
            .map_err(|_| bad("Ed25519 key is not 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| bad("invalid Ed25519 key"))?;
        Ok(WitnessKey {
            text: s.to_owned(),
            name: name.to_owned(),
            key_id,
            kind,
            key,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    pub fn kind(&self) -> WitnessKeyKind {
        self.kind
    }

    /// Checks one signature (the bytes after the 4-byte key id) over the
    /// checkpoint `body`. Returns the cosignature timestamp, if any.
    fn verify(&self, body: &[u8], sig: &[u8]) -> Result<Option<u64>, String> {
        match self.kind {
            WitnessKeyKind::CosignatureV1 => {
                let (ts, sig) = sig
                    .split_first_chunk::<8>()
                    .ok_or("cosignature shorter than its timestamp")?;
                let ts = u64::from_be_bytes(*ts);
                // tlog-cosignature: the timestamp MUST NOT exceed 2^63 - 1.
                if ts > i64::MAX as u64 {
                    return Err("cosignature timestamp out of range".into());
                }
                let sig = Signature::from_slice(sig).map_err(|_| "not an Ed25519 signature")?;
                self.key
                    .verify_strict(&cosignature_v1_message(ts, body), &sig)
                    .map_err(|_| "cosignature/v1 signature does not verify".to_owned())?;
                Ok(Some(ts))
            }
            WitnessKeyKind::NoteEd25519 => {
                let sig = Signature::from_slice(sig).map_err(|_| "not an Ed25519 signature")?;
                self.key
                    .verify_strict(body, &sig)
                    .map_err(|_| "note signature does not verify".to_owned())?;
                Ok(None)
            }
        }
    }
}

impl From<VerifierKey> for WitnessKey {
    /// A signed-note verifier key (type 0x01), for witnesses that sign the
    /// checkpoint body as a plain note.
    fn from(k: VerifierKey) -> Self {
        // VerifierKey only holds well-formed type 0x01 keys, which parse
        // here too; fall back to a key that verifies nothing otherwise.
        match WitnessKey::parse(k.as_str()) {
            Ok(w) => w,
            Err(_) => unreachable_key(k.as_str()),
        }
    }
}

/// A key no signature can match (key id 0 under an impossible name), used
/// only if the two parsers ever disagree, so that disagreement fails closed.
fn unreachable_key(text: &str) -> WitnessKey {
    WitnessKey {
        text: text.to_owned(),
        name: String::new(),
        key_id: 0,
        kind: WitnessKeyKind::NoteEd25519,
        key: VerifyingKey::default(),
    }
}

impl fmt::Debug for WitnessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WitnessKey({})", self.text)
    }
}

impl PartialEq for WitnessKey {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

/// The message an Ed25519 cosignature/v1 signs: `cosignature/v1\n`,
/// `time <t>\n`, then the checkpoint note body with its final newline.
pub fn cosignature_v1_message(timestamp: u64, body: &[u8]) -> Vec<u8> {
    let mut m = format!("cosignature/v1\ntime {timestamp}\n").into_bytes();
    m.extend_from_slice(body);
    m
}

/// A C2SP tlog-witness client for one witness.
#[derive(Clone, Debug)]
pub struct WitnessAnchor {
    endpoint: String,
    key: WitnessKey,
    timeout: Duration,
    client: reqwest::Client,
}

impl WitnessAnchor {
    /// `url` is the witness's submission prefix; requests go to
    /// `<url>/add-checkpoint`.
    pub fn new(url: &str, key: WitnessKey, timeout: Duration) -> Result<Self, ConfigError> {
        let prefix = url.trim_end_matches('/');
        let scheme_ok = prefix.starts_with("http://") || prefix.starts_with("https://");
        let parsed = reqwest::Url::parse(prefix).ok().filter(|_| scheme_ok);
        let Some(parsed) = parsed else {
            return Err(ConfigError::BadUrl(url.to_owned()));
        };
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .tcp_user_timeout(None)
            // A redirected POST could carry the checkpoint somewhere the
            // operator did not configure.
            .redirect(reqwest::redirect::Policy::none());
        // Proxy settings from the environment apply to remote witnesses
        // only: a witness on this machine must be reached directly.
        if is_loopback(&parsed) {
            builder = builder.no_proxy();
        }
        let client = builder
            .build()
            .map_err(|e| ConfigError::HttpClient(e.to_string()))?;
        Ok(WitnessAnchor {
            endpoint: format!("{prefix}/add-checkpoint"),
            key,
            timeout,
            client,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn key(&self) -> &WitnessKey {
        &self.key
    }

    async fn post(&self, body: String) -> Result<(u16, Vec<u8>), AnchorError> {
        let net = |e: reqwest::Error| {
            if e.is_timeout() {
                AnchorError::Timeout(self.timeout)
            } else {
                AnchorError::Network(error_chain(&e))
            }
        };
        let mut resp = self
            .client
            .post(&self.endpoint)
            .body(body)
            .send()
            .await
            .map_err(net)?;
        let status = resp.status().as_u16();
        let limit = if status == 409 {
            MAX_CONFLICT_BYTES
        } else {
            MAX_RESPONSE_BYTES
        };
        let mut out = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(net)? {
            if out.len() + chunk.len() > limit {
                if status == 200 {
                    return Err(AnchorError::WitnessBadResponse(format!(
                        "response larger than {limit} bytes"
                    )));
                }
                // Other answers are classified by status; their body is
                // only a hint, so a long one is cut rather than refused.
                let room = limit - out.len();
                out.extend_from_slice(&chunk[..room]);
                break;
            }
            out.extend_from_slice(&chunk);
        }
        Ok((status, out))
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Checks the request and returns the checkpoint note's body and the
/// `add-checkpoint` request body.
fn request_body(req: &AnchorRequest) -> Result<(Vec<u8>, String), AnchorError> {
    let bad = |m: String| AnchorError::InvalidRequest(m);
    let note = signed_note::Note::from_bytes(req.checkpoint_note.as_bytes())
        .map_err(|_| bad("checkpoint is not a signed note".into()))?;
    let body = note.text().to_vec();
    let cp =
        Checkpoint::parse_body(&body).map_err(|_| bad("note body is not a checkpoint".into()))?;
    if cp.origin != req.origin {
        return Err(bad(format!(
            "checkpoint origin {:?} is not {:?}",
            cp.origin, req.origin
        )));
    }
    if cp.size != req.size {
        return Err(bad(format!(
            "checkpoint size {} is not the request size {}",
            cp.size, req.size
        )));
    }
    if req.previous_size > req.size {
        return Err(bad(format!(
            "previous size {} is larger than size {}",
            req.previous_size, req.size
        )));
    }
    let proof_must_be_empty = req.previous_size == 0 || req.previous_size == req.size;
    if proof_must_be_empty && !req.consistency_proof.is_empty() {
        return Err(bad(
            "a proof from size 0 or to the same size must be empty".into()
        ));
    }
    if !proof_must_be_empty && req.consistency_proof.is_empty() {
        return Err(bad("missing consistency proof".into()));
    }
    if req.consistency_proof.len() > MAX_PROOF_LINES {
        return Err(bad(format!(
            "{} proof lines, more than the {MAX_PROOF_LINES} a witness accepts",
            req.consistency_proof.len()
        )));
    }
    let mut out = format!("old {}\n", req.previous_size);
    for h in &req.consistency_proof {
        out.push_str(&STANDARD.encode(h));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&req.checkpoint_note);
    Ok((body, out))
}

/// Finds and checks our witness's signature among the response lines.
/// Lines from other keys are ignored, as the spec requires of clients; a
/// line claiming our key that does not verify is an error.
fn check_cosignatures(
    key: &WitnessKey,
    body: &[u8],
    response: &[u8],
) -> Result<(String, Option<u64>), AnchorError> {
    let malformed = |m: &str| AnchorError::WitnessBadResponse(m.to_owned());
    let text = std::str::from_utf8(response).map_err(|_| malformed("not UTF-8"))?;
    let lines = text
        .strip_suffix('\n')
        .ok_or_else(|| malformed("does not end in a newline"))?;
    let mut found = None;
    for line in lines.split('\n') {
        let sig = signed_note::Signature::from_bytes(line.as_bytes())
            .map_err(|_| malformed("a line is not a note signature"))?;
        if sig.name() != key.name() || sig.id() != key.key_id() {
            continue;
        }
        let ts = key
            .verify(body, sig.signature())
            .map_err(AnchorError::WitnessBadCosignature)?;
        found.get_or_insert((line.to_owned(), ts));
    }
    found.ok_or_else(|| {
        AnchorError::WitnessBadCosignature(format!(
            "no signature by {}+{:08x} in the response",
            key.name(),
            key.key_id()
        ))
    })
}

/// The witness's size from a 409 body: a decimal and a newline (the spec's
/// `text/x.tlog.size`). The content type is not required: the body's exact
/// shape is checked instead.
fn parse_size(body: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(body).ok()?.strip_suffix('\n')?;
    let canonical = s == "0" || (!s.is_empty() && !s.starts_with('0'));
    if !canonical || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn conflict(req: &AnchorRequest, body: &[u8]) -> AnchorError {
    match parse_size(body) {
        Some(n) if n == req.size && req.previous_size == req.size => {
            AnchorError::WitnessRootMismatch { size: n }
        }
        Some(n) if n == req.previous_size => AnchorError::WitnessConflict(format!(
            "witness reported the size {n} that was sent as the old size"
        )),
        Some(n) => AnchorError::WitnessSizeMismatch { witness_size: n },
        None => AnchorError::WitnessConflict("409 without a tree size body".into()),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s.chars().take(500).collect()
}

#[async_trait]
impl Anchor for WitnessAnchor {
    fn kind(&self) -> &'static str {
        "witness"
    }

    async fn anchor(&self, req: AnchorRequest) -> Result<AnchorReceipt, AnchorError> {
        let (cp_body, body) = request_body(&req)?;
        // reqwest's timeout covers the whole exchange; this one also bounds
        // anything it might not (a body trickled forever).
        let (status, resp) = tokio::time::timeout(self.timeout, self.post(body))
            .await
            .map_err(|_| AnchorError::Timeout(self.timeout))??;
        match status {
            200 => {
                let (line, ts) = check_cosignatures(&self.key, &cp_body, &resp)?;
                Ok(AnchorReceipt {
                    external_ref: None,
                    cosignature: Some(line),
                    detail: serde_json::json!({
                        "witness": self.key.name(),
                        "witness_key": self.key.as_str(),
                        "signature_type": match self.key.kind() {
                            WitnessKeyKind::CosignatureV1 => "cosignature/v1",
                            WitnessKeyKind::NoteEd25519 => "signed-note/ed25519",
                        },
                        "timestamp": ts,
                        "checkpoint_size": req.size,
                        "previous_size": req.previous_size,
                    }),
                })
            }
            400 => Err(AnchorError::WitnessBadRequest),
            403 => Err(AnchorError::WitnessForbidden),
            404 => Err(AnchorError::WitnessUnknownLog),
            409 => Err(conflict(&req, &resp)),
            422 => Err(AnchorError::WitnessBadProof),
            408 | 429 | 500..=599 => Err(AnchorError::WitnessUnavailable { status }),
            _ => Err(AnchorError::WitnessUnexpectedStatus { status }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer as _, SigningKey};
    use thetazero_audit::{AuditSigner, Hash};

    fn vkey(name: &str, alg: u8, sk: &SigningKey) -> String {
        let mut raw = vec![alg];
        raw.extend_from_slice(&sk.verifying_key().to_bytes());
        let id = signed_note::key_id(name, &raw);
        format!("{name}+{id:08x}+{}", STANDARD.encode(&raw))
    }

    fn request(size: u64, previous_size: u64, proof: Vec<[u8; 32]>) -> AnchorRequest {
        let log = AuditSigner::from_signing_key("log.example/a", SigningKey::from_bytes(&[7; 32]))
            .unwrap();
        let note = Checkpoint {
            origin: "log.example/a".into(),
            size,
            root: Hash([3; 32]),
        }
        .sign(&log)
        .unwrap();
        AnchorRequest {
            origin: "log.example/a".into(),
            checkpoint_note: note,
            size,
            previous_size,
            consistency_proof: proof,
        }
    }

    #[test]
    fn request_body_shape() {
        let req = request(5, 2, vec![[0; 32], [0xff; 32]]);
        let (body, out) = request_body(&req).unwrap();
        assert_eq!(
            body,
            format!("log.example/a\n5\n{}\n", STANDARD.encode([3; 32])).as_bytes()
        );
        let want = format!(
            "old 2\n{}\n{}\n\n{}",
            STANDARD.encode([0; 32]),
            STANDARD.encode([0xff; 32]),
            req.checkpoint_note
        );
        assert_eq!(out, want);
        let (_, first) = request_body(&request(5, 0, vec![])).unwrap();
        assert!(first.starts_with("old 0\n\nlog.example/a\n5\n"), "{first}");
    }

    fn check_invalid(req: AnchorRequest, want: &str) {
        match request_body(&req) {
            Err(AnchorError::InvalidRequest(m)) => assert!(m.contains(want), "{m}"),
            other => panic!("want InvalidRequest({want}), got {other:?}"),
        }
    }

    #[test]
    fn invalid_requests() {
        check_invalid(request(5, 6, vec![]), "larger than size");
        check_invalid(request(5, 0, vec![[0; 32]]), "must be empty");
        check_invalid(request(5, 5, vec![[0; 32]]), "must be empty");
        check_invalid(request(5, 3, vec![]), "missing");
        check_invalid(request(5, 3, vec![[0; 32]; 64]), "64 proof lines");
        let mut r = request(5, 0, vec![]);
        r.origin = "log.example/b".into();
        check_invalid(r, "origin");
        let mut r = request(5, 0, vec![]);
        r.size = 6;
        check_invalid(r, "size 5");
        let mut r = request(5, 0, vec![]);
        r.checkpoint_note = "log.example/a\n5\n".into();
        check_invalid(r, "signed note");
        assert!(request_body(&request(5, 4, vec![[1; 32]; 63])).is_ok());
    }

    fn cosign_line(name: &str, sk: &SigningKey, ts: u64, msg_body: &[u8]) -> String {
        let mut raw = vec![ALG_COSIGNATURE_V1];
        raw.extend_from_slice(&sk.verifying_key().to_bytes());
        let id = signed_note::key_id(name, &raw);
        let sig = sk.sign(&cosignature_v1_message(ts, msg_body));
        let mut blob = id.to_be_bytes().to_vec();
        blob.extend_from_slice(&ts.to_be_bytes());
        blob.extend_from_slice(&sig.to_bytes());
        format!("— {name} {}", STANDARD.encode(blob))
    }

    #[test]
    fn cosignature_checks() {
        let sk = SigningKey::from_bytes(&[9; 32]);
        let other = SigningKey::from_bytes(&[10; 32]);
        let key = WitnessKey::parse(&vkey("w.example/1", ALG_COSIGNATURE_V1, &sk)).unwrap();
        assert_eq!(key.kind(), WitnessKeyKind::CosignatureV1);
        let body = b"log.example/a\n5\nAAAA\n";
        let good = cosign_line("w.example/1", &sk, 1_700_000_000, body);
        let foreign = cosign_line("w.example/2", &other, 1, body);

        let ok = |resp: String| check_cosignatures(&key, body, resp.as_bytes());
        let (line, ts) = ok(format!("{good}\n")).unwrap();
        assert_eq!((line.as_str(), ts), (good.as_str(), Some(1_700_000_000)));
        // Unknown keys are skipped, in any position.
        assert!(ok(format!("{foreign}\n{good}\n")).is_ok());
        assert_eq!(
            ok(format!("{foreign}\n")).unwrap_err().code(),
            "witness_bad_cosignature"
        );
        // Our key over another body, or another key under our name.
        let wrong_body = cosign_line("w.example/1", &sk, 1, b"log.example/a\n6\nAAAA\n");
        assert_eq!(
            ok(format!("{wrong_body}\n")).unwrap_err().code(),
            "witness_bad_cosignature"
        );
        let impostor = cosign_line("w.example/1", &other, 1, body);
        // The impostor's key id differs, so it is an unknown key: no match.
        assert_eq!(
            ok(format!("{impostor}\n")).unwrap_err().code(),
            "witness_bad_cosignature"
        );
        assert_eq!(ok(good.clone()).unwrap_err().code(), "witness_bad_response");
        assert_eq!(
            ok(format!("{good}\n\n")).unwrap_err().code(),
            "witness_bad_response"
        );
        assert_eq!(
            ok("hello\n".into()).unwrap_err().code(),
            "witness_bad_response"
        );
        assert_eq!(ok("\n".into()).unwrap_err().code(), "witness_bad_response");

        // A plain note signature does not pass as a cosignature/v1, and a
        // type 0x01 key checks the plain form.
        let note_key = WitnessKey::parse(&vkey("w.example/1", ALG_ED25519, &sk)).unwrap();
        let mut blob = note_key.key_id().to_be_bytes().to_vec();
        blob.extend_from_slice(&sk.sign(body).to_bytes());
        let plain = format!("— w.example/1 {}\n", STANDARD.encode(blob));
        assert!(check_cosignatures(&note_key, body, plain.as_bytes()).is_ok());
        assert!(check_cosignatures(&note_key, body, format!("{good}\n").as_bytes()).is_err());
    }

    #[test]
    fn witness_keys() {
        let sk = SigningKey::from_bytes(&[9; 32]);
        let good = vkey("w.example/1", ALG_COSIGNATURE_V1, &sk);
        assert!(WitnessKey::parse(&good).is_ok());
        for bad in [
            String::new(),
            "w.example/1".into(),
            good.replace("w.example/1", "w.example/2"),
            vkey("w.example/1", 0x02, &sk),
            vkey("has space", ALG_COSIGNATURE_V1, &sk),
            good.trim_end_matches('=').to_owned() + "A",
        ] {
            assert!(WitnessKey::parse(&bad).is_err(), "{bad:?} accepted");
        }
        let note = VerifierKey::parse(&vkey("w.example/1", ALG_ED25519, &sk)).unwrap();
        let w = WitnessKey::from(note);
        assert_eq!(
            (w.kind(), w.name()),
            (WitnessKeyKind::NoteEd25519, "w.example/1")
        );
    }

    #[test]
    fn loopback_hosts() {
        for (u, want) in [
            ("http://127.0.0.1:9/w", true),
            ("http://127.3.4.5/w", true),
            ("http://[::1]:8080/w", true),
            ("http://LOCALHOST/w", true),
            ("https://witness.example/w", false),
            ("http://10.0.0.1/w", false),
            ("http://localhost.example/w", false),
        ] {
            let parsed = reqwest::Url::parse(u).unwrap();
            assert_eq!(is_loopback(&parsed), want, "{u}");
        }
    }

    #[test]
    fn conflict_bodies() {
        let r = request(10, 4, vec![[0; 32]]);
        assert_eq!(
            conflict(&r, b"7\n"),
            AnchorError::WitnessSizeMismatch { witness_size: 7 }
        );
        assert_eq!(conflict(&r, b"0\n").witness_size(), Some(0));
        for bad in [&b"07\n"[..], b"7", b"", b"-1\n", b"7\n8\n", b"x\n"] {
            assert_eq!(conflict(&r, bad).code(), "witness_conflict", "{bad:?}");
        }
        assert_eq!(conflict(&r, b"4\n").code(), "witness_conflict");
        let same = request(10, 10, vec![]);
        assert_eq!(
            conflict(&same, b"10\n"),
            AnchorError::WitnessRootMismatch { size: 10 }
        );
    }
}
