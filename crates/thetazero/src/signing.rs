//! The deployment's Ed25519 signing key: created at first start, stored with
//! owner-only permissions, shared by every replica through one file.
//!
//! The file holds one line in the C2SP signed-note private-key form
//! (`PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || seed)>`), so standard
//! tooling can read it. A key file that others can read is refused.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};

const ALG_ED25519: u8 = 0x01;

pub struct DeploymentKey {
    pub name: String,
    pub key: SigningKey,
}

/// The 4-byte key id C2SP signed notes use: SHA-256(name || "\n" || 0x01 || pubkey).
pub fn key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(public);
    let digest = h.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

impl DeploymentKey {
    fn encode(&self) -> String {
        let public = self.key.verifying_key().to_bytes();
        let mut material = vec![ALG_ED25519];
        material.extend_from_slice(&self.key.to_bytes());
        format!(
            "PRIVATE+KEY+{}+{}+{}",
            self.name,
            hex_id(key_id(&self.name, &public)),
            STANDARD.encode(material)
        )
    }

    fn decode(text: &str) -> Result<DeploymentKey> {
        let parts: Vec<&str> = text.trim().splitn(5, '+').collect();
        let [p, k, name, id, material] = parts.as_slice() else {
            bail!("not a signed-note private key");
        };
        if *p != "PRIVATE" || *k != "KEY" {
            bail!("not a signed-note private key");
        }
        let material = STANDARD
            .decode(material)
            .context("key material is not base64")?;
        let Some((&ALG_ED25519, seed)) = material.split_first() else {
            bail!("only Ed25519 keys are supported");
        };
        let seed: [u8; 32] = seed.try_into().context("Ed25519 seed must be 32 bytes")?;
        let key = DeploymentKey {
            name: name.to_string(),
            key: SigningKey::from_bytes(&seed),
        };
        if hex_id(key_id(name, &key.key.verifying_key().to_bytes())) != *id {
            bail!("key id does not match the key");
        }
        Ok(key)
    }

    /// The public verifier key in C2SP form: `name+hex(id)+base64(0x01||pub)`.
    pub fn verifier(&self) -> String {
        let public = self.key.verifying_key().to_bytes();
        let mut material = vec![ALG_ED25519];
        material.extend_from_slice(&public);
        format!(
            "{}+{}+{}",
            self.name,
            hex_id(key_id(&self.name, &public)),
            STANDARD.encode(material)
        )
    }
}

fn hex_id(id: [u8; 4]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// Loads the key at `path`, creating it (mode 0600) if it does not exist.
pub fn load_or_create(path: &Path, name: &str) -> Result<(DeploymentKey, bool)> {
    match fs::metadata(path) {
        Ok(meta) => {
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                bail!(
                    "signing key {} is readable by others (mode {:o}); run: chmod 600 {}",
                    path.display(),
                    mode & 0o777,
                    path.display()
                );
            }
            let text = fs::read_to_string(path)
                .with_context(|| format!("reading signing key {}", path.display()))?;
            let key = DeploymentKey::decode(&text)
                .with_context(|| format!("signing key {} is malformed", path.display()))?;
            Ok((key, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = DeploymentKey {
                name: name.to_string(),
                key: SigningKey::generate(&mut rand::rngs::OsRng),
            };
            write_private(path, &format!("{}\n", key.encode()))
                .with_context(|| format!("writing signing key {}", path.display()))?;
            Ok((key, true))
        }
        Err(e) => Err(e).with_context(|| format!("reading signing key {}", path.display())),
    }
}

/// Writes a new file readable only by its owner; never replaces one.
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_key_round_trips_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        let (a, created) = load_or_create(&path, "thetazero").unwrap();
        assert!(created);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (b, created) = load_or_create(&path, "ignored").unwrap();
        assert!(!created);
        assert_eq!(a.key.to_bytes(), b.key.to_bytes());
        assert_eq!(a.verifier(), b.verifier());
        assert!(a.verifier().starts_with("thetazero+"));
    }

    #[test]
    fn key_material_with_plus_signs_round_trips() {
        // Base64 uses '+': the material must not be split on it.
        for _ in 0..64 {
            let key = DeploymentKey {
                name: "tz".into(),
                key: SigningKey::generate(&mut rand::rngs::OsRng),
            };
            let back = DeploymentKey::decode(&key.encode()).unwrap();
            assert_eq!(back.key.to_bytes(), key.key.to_bytes());
        }
    }

    #[test]
    fn refuses_readable_or_corrupt_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        load_or_create(&path, "tz").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_create(&path, "tz").err().unwrap().to_string();
        assert!(err.contains("readable by others"), "{err}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        fs::write(&path, text.replace("+KEY+tz+", "+KEY+other+")).unwrap();
        let err = format!("{:#}", load_or_create(&path, "tz").err().unwrap());
        assert!(err.contains("key id does not match"), "{err}");
    }
}
