//! Signed checkpoints: the C2SP `tlog-checkpoint` body inside a C2SP
//! `signed-note` signed with Ed25519, the key strings, and a signer that
//! refuses to sign a checkpoint inconsistent with the last one it signed.
//! Must not store keys anywhere: loading and saving them is the caller's job.

use std::fmt;

use ed25519_dalek::SigningKey;
use rand_core::OsRng;
use signed_note::{Note, NoteError, StandardSigner, StandardVerifier, VerifierList};
use thiserror::Error;

use crate::encoding::{b64, hash_b64};
use crate::merkle::{self, Hash, HashReader, MerkleError, MAX_TREE_SIZE};

/// Largest signed note we parse; checkpoints and receipts are far smaller.
pub const MAX_NOTE_BYTES: usize = 64 * 1024;

#[derive(Debug, Error)]
pub enum CheckpointError {
    #[error("malformed verifier key")]
    BadVerifierKey,
    #[error("malformed signer key")]
    BadSignerKey,
    #[error("key name {0:?} is not valid (no spaces or '+')")]
    BadKeyName(String),
    #[error("malformed signed note")]
    MalformedNote,
    #[error("note is not signed by the expected key")]
    UnknownKey,
    #[error("note signature does not verify")]
    BadSignature,
    #[error("malformed checkpoint body")]
    MalformedCheckpoint,
    #[error("checkpoint origin {got:?} is not the expected {want:?}")]
    OriginMismatch { want: String, got: String },
    #[error("signing failed: {0}")]
    Signing(String),
}

/// A public verifier key in C2SP form: `name+hex(keyid)+base64(0x01||pubkey)`.
#[derive(Clone)]
pub struct VerifierKey {
    text: String,
    verifier: StandardVerifier,
}

impl VerifierKey {
    pub fn parse(s: &str) -> Result<Self, CheckpointError> {
        let s = s.trim_end_matches(['\n', '\r']);
        if s.len() > 1024 {
            return Err(CheckpointError::BadVerifierKey);
        }
        let verifier = StandardVerifier::new(s).map_err(|_| CheckpointError::BadVerifierKey)?;
        Ok(VerifierKey {
            text: s.to_owned(),
            verifier,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn name(&self) -> &str {
        signed_note::Verifier::name(&self.verifier)
    }

    pub fn key_id(&self) -> u32 {
        signed_note::Verifier::key_id(&self.verifier)
    }

    /// Verifies a signed note and returns its text (the body, with its final
    /// newline). Signatures by other keys are ignored, as the spec requires;
    /// a note with no valid signature by this key is rejected.
    pub fn open(&self, note: &[u8]) -> Result<Vec<u8>, CheckpointError> {
        if note.len() > MAX_NOTE_BYTES {
            return Err(CheckpointError::MalformedNote);
        }
        let n = Note::from_bytes(note).map_err(|_| CheckpointError::MalformedNote)?;
        let list = VerifierList::new(vec![Box::new(self.verifier.clone())]);
        match n.verify(&list) {
            Ok(_) => Ok(n.text().to_vec()),
            Err(NoteError::UnverifiedNote) => Err(CheckpointError::UnknownKey),
            Err(NoteError::InvalidSignature { .. }) => Err(CheckpointError::BadSignature),
            Err(_) => Err(CheckpointError::MalformedNote),
        }
    }

    /// Verifies a signed checkpoint note and parses its body. The origin must
    /// equal `origin` when one is given.
    pub fn open_checkpoint(
        &self,
        note: &str,
        origin: Option<&str>,
    ) -> Result<Checkpoint, CheckpointError> {
        let text = self.open(note.as_bytes())?;
        let cp = Checkpoint::parse_body(&text)?;
        if let Some(want) = origin {
            if cp.origin != want {
                return Err(CheckpointError::OriginMismatch {
                    want: want.to_owned(),
                    got: cp.origin,
                });
            }
        }
        Ok(cp)
    }
}

impl fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifierKey({})", self.text)
    }
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl PartialEq for VerifierKey {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

/// The log's private signing key. Its string form is the C2SP/Go note signer
/// key `PRIVATE+KEY+name+hex(keyid)+base64(0x01||seed)`.
pub struct AuditSigner {
    name: String,
    key: SigningKey,
    signer: StandardSigner,
    vkey: VerifierKey,
}

impl AuditSigner {
    /// A fresh key for `name` (conventionally the log origin's host/path).
    pub fn generate(name: &str) -> Result<Self, CheckpointError> {
        Self::from_signing_key(name, SigningKey::generate(&mut OsRng))
    }

    pub fn from_signing_key(name: &str, key: SigningKey) -> Result<Self, CheckpointError> {
        if !signed_note::is_key_name_valid(name) {
            return Err(CheckpointError::BadKeyName(name.to_owned()));
        }
        let text = signer_key_string(name, &key);
        let signer = StandardSigner::new(&text).map_err(|_| CheckpointError::BadSignerKey)?;
        let vkey = VerifierKey::parse(&signed_note::new_ed25519_verifier_key(
            name,
            &key.verifying_key(),
        ))?;
        Ok(AuditSigner {
            name: name.to_owned(),
            key,
            signer,
            vkey,
        })
    }

    /// Parses a signer key string.
    pub fn parse(s: &str) -> Result<Self, CheckpointError> {
        let s = s.trim_end_matches(['\n', '\r']);
        // Validates the whole string, key id included.
        StandardSigner::new(s).map_err(|_| CheckpointError::BadSignerKey)?;
        let mut parts = s.splitn(5, '+');
        let (Some(_), Some(_), Some(name), Some(_), Some(key64)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(CheckpointError::BadSignerKey);
        };
        let raw = crate::encoding::unb64(key64).ok_or(CheckpointError::BadSignerKey)?;
        let seed: [u8; 32] = raw
            .get(1..)
            .and_then(|k| k.try_into().ok())
            .ok_or(CheckpointError::BadSignerKey)?;
        Self::from_signing_key(name, SigningKey::from_bytes(&seed))
    }

    /// The signer key string. It is a secret: store it with restrictive
    /// permissions.
    pub fn to_key_string(&self) -> String {
        signer_key_string(&self.name, &self.key)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn verifier_key(&self) -> VerifierKey {
        self.vkey.clone()
    }

    /// A bare Ed25519 signature over `message` (for envelopes such as DSSE,
    /// whose verifiers check it with the verifier key's public half).
    pub fn sign_raw(&self, message: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer as _;
        self.key.sign(message).to_bytes()
    }

    /// Signs `text` (which must end in a newline) as a signed note.
    pub fn sign_note(&self, text: &[u8]) -> Result<String, CheckpointError> {
        let mut n = Note::new(text, &[]).map_err(|_| CheckpointError::MalformedNote)?;
        n.add_sigs(&[&self.signer])
            .map_err(|e| CheckpointError::Signing(e.to_string()))?;
        String::from_utf8(n.to_bytes()).map_err(|_| CheckpointError::MalformedNote)
    }
}

impl fmt::Debug for AuditSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuditSigner({}, ..)", self.name)
    }
}

fn signer_key_string(name: &str, key: &SigningKey) -> String {
    let mut pubkey = vec![0x01];
    pubkey.extend_from_slice(&key.verifying_key().to_bytes());
    let mut private = vec![0x01];
    private.extend_from_slice(&key.to_bytes());
    format!(
        "PRIVATE+KEY+{}+{:08x}+{}",
        name,
        signed_note::key_id(name, &pubkey),
        b64(&private)
    )
}

/// A tree head: origin, size and root.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// The C2SP checkpoint body: `origin\nsize\nbase64(root)\n`.
    pub fn body(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.size, hash_b64(&self.root))
    }

    /// Parses a checkpoint body. Extension lines are accepted by the format
    /// but we issue none, so they are refused here rather than ignored.
    pub fn parse_body(text: &[u8]) -> Result<Self, CheckpointError> {
        let cp = tlog_tiles::Checkpoint::from_bytes(text)
            .map_err(|_| CheckpointError::MalformedCheckpoint)?;
        if !cp.extension().is_empty() || cp.size() > MAX_TREE_SIZE {
            return Err(CheckpointError::MalformedCheckpoint);
        }
        let parsed = Checkpoint {
            origin: cp.origin().to_owned(),
            size: cp.size(),
            root: *cp.hash(),
        };
        // tlog_tiles accepts some alternative spellings (for example a
        // leading '+' or zeros in the size); one spelling per checkpoint.
        if parsed.body().as_bytes() != text {
            return Err(CheckpointError::MalformedCheckpoint);
        }
        Ok(parsed)
    }

    /// Signs this checkpoint with no consistency check. Prefer
    /// [`CheckpointSigner`], which refuses to sign a fork.
    pub fn sign(&self, key: &AuditSigner) -> Result<String, CheckpointError> {
        if self.origin.is_empty() || self.origin.contains('\n') || self.size > MAX_TREE_SIZE {
            return Err(CheckpointError::MalformedCheckpoint);
        }
        key.sign_note(self.body().as_bytes())
    }
}

/// Why a [`CheckpointSigner`] refused to sign.
#[derive(Debug, Error)]
pub enum SignRefusal {
    #[error("size {new} is smaller than the last signed size {last}")]
    Shrink { last: u64, new: u64 },
    #[error("root at size {size} differs from the root already signed at that size")]
    Fork { size: u64 },
    #[error("no valid consistency proof from size {last} to {new}")]
    Inconsistent { last: u64, new: u64 },
    #[error("origin {got:?} is not this log's origin {want:?}")]
    WrongOrigin { want: String, got: String },
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Merkle(#[from] MerkleError),
}

/// Signs checkpoints for one log, never one inconsistent with the last it
/// signed. After a restart, [`CheckpointSigner::resume`] from the last
/// signed checkpoint the server stored.
#[derive(Debug)]
pub struct CheckpointSigner {
    key: AuditSigner,
    origin: String,
    last: Option<Checkpoint>,
}

impl CheckpointSigner {
    pub fn new(key: AuditSigner, origin: &str) -> Self {
        CheckpointSigner {
            key,
            origin: origin.to_owned(),
            last: None,
        }
    }

    /// Resumes from the last checkpoint this key signed, which is verified.
    pub fn resume(key: AuditSigner, origin: &str, last_note: &str) -> Result<Self, SignRefusal> {
        let last = key
            .verifier_key()
            .open_checkpoint(last_note, Some(origin))?;
        Ok(CheckpointSigner {
            key,
            origin: origin.to_owned(),
            last: Some(last),
        })
    }

    pub fn last(&self) -> Option<&Checkpoint> {
        self.last.as_ref()
    }

    pub fn verifier_key(&self) -> VerifierKey {
        self.key.verifier_key()
    }

    /// Signs (size, root) if `proof` shows the last signed tree is a prefix
    /// of it. Signing the same tree again is allowed (anchoring repeats the
    /// latest checkpoint so silence is visible).
    pub fn sign(&mut self, size: u64, root: Hash, proof: &[Hash]) -> Result<String, SignRefusal> {
        if let Some(last) = &self.last {
            if size < last.size {
                return Err(SignRefusal::Shrink {
                    last: last.size,
                    new: size,
                });
            }
            if size == last.size && root != last.root {
                return Err(SignRefusal::Fork { size });
            }
            if size > last.size && last.size > 0 {
                merkle::verify_consistency(proof, last.size, last.root, size, root).map_err(
                    |_| SignRefusal::Inconsistent {
                        last: last.size,
                        new: size,
                    },
                )?;
            }
        }
        let cp = Checkpoint {
            origin: self.origin.clone(),
            size,
            root,
        };
        let note = cp.sign(&self.key)?;
        self.last = Some(cp);
        Ok(note)
    }

    /// Computes the root at `size` and the proof from the last signed size
    /// from stored hashes, then signs. The check still bites: if the stored
    /// history was rewritten, the proof fails against the signed root.
    pub fn sign_from_store<R: HashReader + ?Sized>(
        &mut self,
        size: u64,
        r: &R,
    ) -> Result<String, SignRefusal> {
        let root = merkle::root(size, r)?;
        let proof = match &self.last {
            Some(last) if last.size > 0 && last.size < size => {
                merkle::consistency_proof(last.size, size, r)?
            }
            _ => Vec::new(),
        };
        self.sign(size, root, &proof)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::MemoryHashStore;

    // The example from Go's golang.org/x/mod/sumdb/note documentation, the
    // implementation C2SP signed-note was written from.
    const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const PETER_SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const PETER_TEXT: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
    const PETER_NOTE: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    // The example in the C2SP signed-note specification itself. The spec
    // publishes no verifier key for it, so it can only be parsed, and a
    // verifier holding any other key must reject it as unknown.
    const C2SP_NOTE: &str = "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned è subito sera.\n\n— quasimodo.example/salvatore NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n";

    #[test]
    fn signed_note_examples() {
        let vkey = VerifierKey::parse(PETER_VKEY).unwrap();
        assert_eq!(vkey.name(), "PeterNeumann");
        assert_eq!(vkey.key_id(), 0xc74f20a3);
        assert_eq!(
            vkey.open(PETER_NOTE.as_bytes()).unwrap(),
            PETER_TEXT.as_bytes()
        );

        // Signing is deterministic in Ed25519: our signer reproduces the note.
        let signer = AuditSigner::parse(PETER_SKEY).unwrap();
        assert_eq!(signer.to_key_string(), PETER_SKEY);
        assert_eq!(signer.verifier_key().as_str(), PETER_VKEY);
        assert_eq!(signer.sign_note(PETER_TEXT.as_bytes()).unwrap(), PETER_NOTE);

        let c2sp = Note::from_bytes(C2SP_NOTE.as_bytes()).unwrap();
        assert_eq!(
            c2sp.text(),
            "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned è subito sera.\n".as_bytes()
        );
        assert!(matches!(
            vkey.open(C2SP_NOTE.as_bytes()),
            Err(CheckpointError::UnknownKey)
        ));
    }

    fn check_open(note: &str, want: &str) {
        let vkey = VerifierKey::parse(PETER_VKEY).unwrap();
        let got = vkey.open(note.as_bytes());
        assert!(
            format!("{got:?}").contains(want),
            "{note:?}: got {got:?}, want {want}"
        );
    }

    #[test]
    fn note_negative_cases() {
        check_open(PETER_NOTE, "Ok");
        check_open(&PETER_NOTE.replace("problem,", "problem;"), "BadSignature");
        check_open(&PETER_NOTE.replace("x08go", "x08gp"), "UnknownKey");
        check_open(&PETER_NOTE.replace("yBwJnAM", "yBwKnAM"), "BadSignature");
        check_open(
            &PETER_NOTE.replace("— PeterNeumann", "— PeterNeuman"),
            "UnknownKey",
        );
        check_open(&PETER_NOTE.replace("\n\n—", "\n—"), "MalformedNote");
        check_open(&PETER_NOTE.replace("—", "--"), "MalformedNote");
        check_open(
            &PETER_NOTE.replace("answer", "answer\u{7}"),
            "MalformedNote",
        );
        check_open("", "MalformedNote");
        check_open("\n\n", "MalformedNote");
        check_open(&"a".repeat(MAX_NOTE_BYTES + 1), "MalformedNote");
        check_open(PETER_TEXT, "MalformedNote");
    }

    #[test]
    fn key_strings() {
        for bad in [
            "",
            "PeterNeumann",
            "PeterNeumann+c74f20a3",
            "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "PeterNeumann+c74f20a3+AhpC2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T",
            "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            PETER_SKEY,
        ] {
            assert!(VerifierKey::parse(bad).is_err(), "{bad:?} accepted");
        }
        for bad in [
            "",
            PETER_VKEY,
            "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEK",
            "PRIVATE+KEY+PeterNeumann+00000000+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
        ] {
            assert!(AuditSigner::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(AuditSigner::generate("has space").is_err());
        assert!(AuditSigner::generate("has+plus").is_err());
        let k = AuditSigner::generate("example.com/audit/7").unwrap();
        let again = AuditSigner::parse(&k.to_key_string()).unwrap();
        assert_eq!(again.verifier_key(), k.verifier_key());
    }

    fn check_body(body: &str, ok: bool) {
        assert_eq!(
            Checkpoint::parse_body(body.as_bytes()).is_ok(),
            ok,
            "{body:?}"
        );
    }

    #[test]
    fn checkpoint_bodies() {
        let root = crate::encoding::hash_b64(&Hash([0xfe; 32]));
        check_body(&format!("example.com/log\n923748\n{root}\n"), true);
        check_body(&format!("example.com/log\n0923748\n{root}\n"), false);
        check_body(&format!("example.com/log\n+923748\n{root}\n"), false);
        check_body(&format!("example.com/log\n-1\n{root}\n"), false);
        check_body(&format!("example.com/log\n923748\n{root}"), false);
        check_body(
            &format!("example.com/log\n923748\n{root}\nextension\n"),
            false,
        );
        check_body(&format!("\n923748\n{root}\n"), false);
        check_body("example.com/log\n923748\nAAAA\n", false);
        check_body(&format!("example.com/log\n{}\n{root}\n", u64::MAX), false);
        check_body("", false);
    }

    fn store(n: u32) -> MemoryHashStore {
        let mut s = MemoryHashStore::new();
        for i in 0..n {
            s.push(&i.to_be_bytes()).unwrap();
        }
        s
    }

    #[test]
    fn signer_refuses_inconsistent_checkpoints() {
        let s = store(50);
        let other = {
            let mut o = store(5);
            o.push(b"forked").unwrap();
            for i in 6..50u32 {
                o.push(&i.to_be_bytes()).unwrap();
            }
            o
        };
        let key = AuditSigner::generate("example.com/audit/1").unwrap();
        let vkey = key.verifier_key();
        let mut signer = CheckpointSigner::new(key, "example.com/audit/1");
        let note = signer.sign_from_store(20, &s).unwrap();
        let cp = vkey
            .open_checkpoint(&note, Some("example.com/audit/1"))
            .unwrap();
        assert_eq!((cp.size, cp.root), (20, s.root_at(20)));

        // Same tree again is fine; a fork at the same size is not.
        signer.sign_from_store(20, &s).unwrap();
        assert!(matches!(
            signer.sign(20, s.root_at(21), &[]),
            Err(SignRefusal::Fork { size: 20 })
        ));
        // A tree that rewrote history has no valid proof from size 20.
        let bad_proof = merkle::consistency_proof(20, 40, &other).unwrap();
        assert!(matches!(
            signer.sign(40, other.root_at(40), &bad_proof),
            Err(SignRefusal::Inconsistent { .. })
        ));
        assert!(matches!(
            signer.sign_from_store(40, &other),
            Err(SignRefusal::Inconsistent { .. })
        ));
        assert!(matches!(
            signer.sign(40, s.root_at(40), &[]),
            Err(SignRefusal::Inconsistent { .. })
        ));
        // The real extension is signed; then shrinking is refused.
        let note40 = signer.sign_from_store(40, &s).unwrap();
        assert!(matches!(
            signer.sign_from_store(30, &s),
            Err(SignRefusal::Shrink { last: 40, new: 30 })
        ));

        // After a restart the signer resumes from its last note.
        let key = AuditSigner::parse(&signer.key.to_key_string()).unwrap();
        let mut resumed = CheckpointSigner::resume(key, "example.com/audit/1", &note40).unwrap();
        assert!(matches!(
            resumed.sign_from_store(39, &s),
            Err(SignRefusal::Shrink { .. })
        ));
        resumed.sign_from_store(50, &s).unwrap();
        let key = AuditSigner::generate("example.com/audit/1").unwrap();
        assert!(CheckpointSigner::resume(key, "example.com/audit/1", &note40).is_err());
    }

    impl MemoryHashStore {
        fn root_at(&self, n: u64) -> Hash {
            merkle::root(n, self).unwrap()
        }
    }

    #[test]
    fn origin_is_checked() {
        let key = AuditSigner::generate("example.com/audit/1").unwrap();
        let note = Checkpoint {
            origin: "example.com/audit/1".into(),
            size: 3,
            root: Hash([9; 32]),
        }
        .sign(&key)
        .unwrap();
        let v = key.verifier_key();
        assert!(v
            .open_checkpoint(&note, Some("example.com/audit/1"))
            .is_ok());
        assert!(matches!(
            v.open_checkpoint(&note, Some("example.com/audit/2")),
            Err(CheckpointError::OriginMismatch { .. })
        ));
        let bad = Checkpoint {
            origin: "two\nlines".into(),
            size: 3,
            root: Hash([9; 32]),
        };
        assert!(bad.sign(&key).is_err());
    }
}
