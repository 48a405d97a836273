//! The gateway's secrets: payload encryption at rest (AES-256-GCM) and the subject pseudonym key (HMAC-SHA-256).
//!
//! Keys are created on first start (mode 0600) and never logged. Nothing outside this module sees key bytes
//! except the policy stage, which derives per-receiver pseudonym keys from the pseudonym secret.

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, NONCE_LEN};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("key file {0} does not hold 32 bytes")]
    BadLength(String),
    #[error("no secure randomness available")]
    Random,
    #[error("payload cannot be decrypted (wrong key or altered ciphertext)")]
    Decrypt,
}

pub struct Keys {
    payload: LessSafeKey,
    pseudonym_secret: Vec<u8>,
    subject_key: hmac::Key,
    rng: SystemRandom,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(<redacted>)")
    }
}

/// Reads a 32-byte secret, creating it with fresh randomness when the file does not exist.
pub fn load_or_create_secret(path: &Path) -> Result<Vec<u8>, KeyError> {
    let io = |source| KeyError::Io {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read(path) {
        Ok(bytes) if bytes.len() == 32 => Ok(bytes),
        Ok(_) => Err(KeyError::BadLength(path.display().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            let mut key = vec![0u8; 32];
            SystemRandom::new()
                .fill(&mut key)
                .map_err(|_| KeyError::Random)?;
            write_private(path, &key).map_err(io)?;
            Ok(key)
        }
        Err(e) => Err(io(e)),
    }
}

pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

impl Keys {
    pub fn load_or_create(dir: &Path) -> Result<Keys, KeyError> {
        let payload = load_or_create_secret(&dir.join("payload.key"))?;
        let pseudonym = load_or_create_secret(&dir.join("pseudonym.key"))?;
        Ok(Keys::from_secrets(&payload, &pseudonym))
    }

    pub fn from_secrets(payload: &[u8], pseudonym: &[u8]) -> Keys {
        let unbound = UnboundKey::new(&aead::AES_256_GCM, payload).expect("a 32-byte AES-256 key");
        Keys {
            payload: LessSafeKey::new(unbound),
            subject_key: hmac::Key::new(hmac::HMAC_SHA256, &derive(pseudonym, b"log-subject")),
            pseudonym_secret: pseudonym.to_vec(),
            rng: SystemRandom::new(),
        }
    }

    /// Encrypts a payload; `aad` binds it to its message id so rows cannot be swapped.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| KeyError::Random)?;
        let mut out = plaintext.to_vec();
        self.payload
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut out,
            )
            .map_err(|_| KeyError::Random)?;
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&out);
        Ok(sealed)
    }

    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyError> {
        if sealed.len() < NONCE_LEN {
            return Err(KeyError::Decrypt);
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| KeyError::Decrypt)?;
        let mut buf = rest.to_vec();
        let plain = self
            .payload
            .open_in_place(nonce, Aad::from(aad), &mut buf)
            .map_err(|_| KeyError::Decrypt)?;
        Ok(plain.to_vec())
    }

    /// The log's and the privacy officer's key for a pupil: the same for PGN and BSN (the same number).
    pub fn subject_pseudonym(&self, number: &str) -> String {
        hex::encode(&hmac::sign(&self.subject_key, number.as_bytes()).as_ref()[..16])
    }

    /// The secret the policy stage derives per-receiver pseudonyms from.
    pub fn pseudonym_secret(&self) -> &[u8] {
        &self.pseudonym_secret
    }
}

fn derive(secret: &[u8], label: &[u8]) -> Vec<u8> {
    let k = hmac::Key::new(hmac::HMAC_SHA256, secret);
    hmac::sign(&k, label).as_ref().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys::from_secrets(&[7u8; 32], &[9u8; 32])
    }

    #[test]
    fn seal_open_round_trip_and_aad_binding() {
        let k = keys();
        let sealed = k.seal(b"CANARY-SECRET", b"msg-1").unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"CANARY"));
        assert_eq!(k.open(&sealed, b"msg-1").unwrap(), b"CANARY-SECRET");
        assert!(k.open(&sealed, b"msg-2").is_err());
        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(k.open(&flipped, b"msg-1").is_err());
    }

    #[test]
    fn subject_pseudonym_is_stable_keyed_and_not_the_number() {
        let a = keys().subject_pseudonym("628194821");
        assert_eq!(a, keys().subject_pseudonym("628194821"));
        assert_ne!(a, keys().subject_pseudonym("252760189"));
        assert_ne!(
            a,
            Keys::from_secrets(&[7u8; 32], &[8u8; 32]).subject_pseudonym("628194821")
        );
        assert!(!a.contains("628194821"));
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn secrets_are_created_once_and_reloaded() {
        let dir = std::env::temp_dir().join(format!("kp-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let a = load_or_create_secret(&dir.join("x.key")).unwrap();
        let b = load_or_create_secret(&dir.join("x.key")).unwrap();
        assert_eq!(a, b);
        std::fs::write(dir.join("short.key"), b"abc").unwrap();
        assert!(load_or_create_secret(&dir.join("short.key")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
