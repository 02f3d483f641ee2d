//! The deployment's Ed25519 signing key: created at first start, stored with
//! owner-only permissions, shared by every replica through one file.
//!
//! The file holds one line in the C2SP signed-note private-key form
//! (`PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || seed)>`), read and
//! written by `thetazero-audit`, so standard note tooling reads it too. A key
//! file that others can read is refused.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{bail, Context, Result};
use thetazero_audit::AuditSigner;

pub struct DeploymentKey {
    /// The key in its string form (secret).
    pub secret: String,
    /// The public verifier key, `name+hex(id)+base64(0x01||pub)`.
    pub verifier: String,
}

impl DeploymentKey {
    fn from_secret(secret: &str) -> Result<DeploymentKey> {
        let signer = AuditSigner::parse(secret.trim()).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(DeploymentKey {
            secret: signer.to_key_string(),
            verifier: signer.verifier_key().as_str().to_string(),
        })
    }
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
            let key = DeploymentKey::from_secret(&text)
                .with_context(|| format!("signing key {} is malformed", path.display()))?;
            Ok((key, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let signer = AuditSigner::generate(name).map_err(|e| anyhow::anyhow!("{e}"))?;
            let key = DeploymentKey::from_secret(&signer.to_key_string())?;
            write_private(path, &format!("{}\n", key.secret))
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
        assert_eq!(a.secret, b.secret);
        assert_eq!(a.verifier, b.verifier);
        assert!(a.verifier.starts_with("thetazero+"));
        assert!(a.secret.starts_with("PRIVATE+KEY+thetazero+"));
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
        assert!(err.contains("malformed"), "{err}");
    }
}
