//! Contributor identity: one Ed25519 key pair in a PKCS#8 PEM file (mode 0600).
//!
//! The same key signs submissions and authenticates calls (it is the `ic-agent`
//! identity), so the caller principal is the self-authenticating principal of the key.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use candid::Principal;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use rand::RngCore;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{0} already exists; refusing to overwrite a key (move it away or pick another --identity path)")]
    Exists(PathBuf),
    #[error("no identity at {0}; create one with `flic keygen`")]
    Missing(PathBuf),
    #[error("{path} is readable by group or others (mode {mode:o}); run `chmod 600 {path}`")]
    Permissions { path: PathBuf, mode: u32 },
    #[error("{path} is not an Ed25519 PKCS#8 PEM key: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A loaded contributor key.
pub struct Identity {
    key: SigningKey,
}

impl Identity {
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// A fresh key from the operating system's randomness.
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        rand::rng().fill_bytes(&mut seed);
        Self::from_seed(seed)
    }

    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// DER `SubjectPublicKeyInfo` of the public key, as the IC expects it.
    pub fn public_key_der(&self) -> Vec<u8> {
        flic_protocol::submission::ed25519_der(&self.verifying_key().to_bytes()).to_vec()
    }

    /// The self-authenticating principal of the key: the caller the canister sees.
    pub fn principal(&self) -> Principal {
        Principal::self_authenticating(self.public_key_der())
    }

    /// The raw 32-byte secret, for building an `ic-agent` identity. Never print it.
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// Writes the key as PKCS#8 PEM with mode 0600, refusing to overwrite.
    pub fn write_new(&self, path: &Path) -> Result<(), IdentityError> {
        let io = |source| IdentityError::Io {
            path: path.to_path_buf(),
            source,
        };
        if path.exists() {
            return Err(IdentityError::Exists(path.to_path_buf()));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let pem =
            self.key
                .to_pkcs8_pem(Default::default())
                .map_err(|e| IdentityError::Malformed {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?;
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => IdentityError::Exists(path.to_path_buf()),
            _ => io(e),
        })?;
        file.write_all(pem.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)
    }

    /// Reads a PEM key, refusing files that group or others can read.
    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => IdentityError::Missing(path.to_path_buf()),
            _ => IdentityError::Io {
                path: path.to_path_buf(),
                source: e,
            },
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(IdentityError::Permissions {
                    path: path.to_path_buf(),
                    mode,
                });
            }
        }
        let _ = meta;
        let pem = std::fs::read_to_string(path).map_err(|source| IdentityError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let key = SigningKey::from_pkcs8_pem(&pem).map_err(|e| IdentityError::Malformed {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(Self { key })
    }
}

/// `$FLIC_HOME/identity.pem`, else `$HOME/.config/flic/identity.pem`.
pub fn default_identity_path() -> PathBuf {
    if let Some(home) = std::env::var_os("FLIC_HOME") {
        return PathBuf::from(home).join("identity.pem");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".config").join("flic").join("identity.pem")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keygen_writes_0600_refuses_overwrite_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("id.pem");
        let id = Identity::from_seed([7; 32]);
        id.write_new(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        assert!(matches!(
            Identity::generate().write_new(&path),
            Err(IdentityError::Exists(_))
        ));
        let loaded = Identity::load(&path).unwrap();
        assert_eq!(loaded.principal(), id.principal());
        assert_eq!(loaded.secret_bytes(), [7; 32]);
    }

    #[cfg(unix)]
    #[test]
    fn load_refuses_group_readable_keys() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id.pem");
        Identity::from_seed([1; 32]).write_new(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(
            Identity::load(&path),
            Err(IdentityError::Permissions { mode: 0o640, .. })
        ));
    }

    #[test]
    fn load_reports_missing_and_malformed_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none.pem");
        assert!(matches!(
            Identity::load(&path),
            Err(IdentityError::Missing(_))
        ));
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        options
            .open(&path)
            .unwrap()
            .write_all(b"not a key")
            .unwrap();
        assert!(matches!(
            Identity::load(&path),
            Err(IdentityError::Malformed { .. })
        ));
    }

    #[test]
    fn principal_matches_ic_agent_basic_identity() {
        use ic_agent::Identity as _;
        let id = Identity::from_seed([42; 32]);
        let agent_id = ic_agent::identity::BasicIdentity::from_raw_key(&id.secret_bytes());
        assert_eq!(agent_id.sender().unwrap(), id.principal());
    }
}
