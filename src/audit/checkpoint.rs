//! Signed checkpoints of the disclosure log: (log id, tree size, root, time) signed with the
//! gateway's Ed25519 key, written as a C2SP signed-note-like text anyone can check with the
//! exported public key.
//!
//! The private key never leaves `SigningKey` (not in Debug, errors or logs); the key file is
//! created with mode 0600. Parsing accepts only the exact text `to_note` writes.

use crate::audit::merkle::Hash;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Name on the signature line of a note.
pub const SIGNER_NAME: &str = "ketenpoort";
const SIG_LINE_PREFIX: &str = "\u{2014} ";

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("key file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("key file {0} does not hold an Ed25519 PKCS#8 key")]
    BadKeyFile(String),
    #[error("not a valid Ed25519 PKCS#8 key")]
    BadKey,
    #[error("no secure randomness available")]
    Random,
    #[error("log id must be non-empty printable text without spaces or line breaks")]
    BadLogId,
    #[error("checkpoint note is malformed: {0}")]
    Malformed(&'static str),
    #[error("checkpoint is signed by key {found}, expected {expected}")]
    UnknownKey { expected: String, found: String },
    #[error("checkpoint signature does not verify")]
    BadSignature,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub log_id: String,
    pub tree_size: u64,
    pub root: Hash,
    pub timestamp_ms: i64,
}

impl Checkpoint {
    /// The signed text: `<log_id>\n<tree_size>\n<base64 root>\n<timestamp_ms>\n`.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n{}\n",
            self.log_id,
            self.tree_size,
            B64.encode(self.root),
            self.timestamp_ms
        )
    }

    /// For configuration checks: a log id that keeps the note parseable.
    pub fn check_log_id(log_id: &str) -> Result<(), CheckpointError> {
        if !log_id.is_empty()
            && log_id
                .chars()
                .all(|c| !c.is_control() && !c.is_whitespace())
        {
            Ok(())
        } else {
            Err(CheckpointError::BadLogId)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    /// 64-byte Ed25519 signature over `checkpoint.body()`.
    pub signature: Vec<u8>,
    /// Hex of the first 4 bytes of SHA-256(public key).
    pub key_id: String,
}

impl SignedCheckpoint {
    /// `body + "\n— ketenpoort <key_id> <base64 signature>\n"`.
    pub fn to_note(&self) -> String {
        format!(
            "{}\n{}{} {} {}\n",
            self.checkpoint.body(),
            SIG_LINE_PREFIX,
            SIGNER_NAME,
            self.key_id,
            B64.encode(&self.signature)
        )
    }

    /// Parses a note; anything `to_note` would not have written byte for byte is refused.
    /// Does not check the signature (see `verify_checkpoint`).
    pub fn from_note(s: &str) -> Result<Self, CheckpointError> {
        use CheckpointError::Malformed;
        let (body, sig_part) = s
            .split_once("\n\n")
            .ok_or(Malformed("no blank line before the signature"))?;
        let mut lines = body.split('\n');
        let mut next = |what| lines.next().ok_or(Malformed(what));
        let log_id = next("missing log id")?;
        let tree_size = next("missing tree size")?;
        let root = next("missing root")?;
        let timestamp = next("missing timestamp")?;
        if lines.next().is_some() {
            return Err(Malformed("extra lines in the body"));
        }
        Checkpoint::check_log_id(log_id).map_err(|_| Malformed("bad log id"))?;
        let tree_size: u64 = tree_size.parse().map_err(|_| Malformed("bad tree size"))?;
        let root: Hash = B64
            .decode(root)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or(Malformed("root is not 32 bytes of base64"))?;
        let timestamp_ms: i64 = timestamp.parse().map_err(|_| Malformed("bad timestamp"))?;

        let sig_line = sig_part
            .strip_suffix('\n')
            .ok_or(Malformed("note does not end with a line break"))?;
        let rest = sig_line
            .strip_prefix(SIG_LINE_PREFIX)
            .ok_or(Malformed("signature line does not start with an em dash"))?;
        let mut fields = rest.split(' ');
        if fields.next() != Some(SIGNER_NAME) {
            return Err(Malformed("unknown signer name"));
        }
        let key_id = fields.next().ok_or(Malformed("missing key id"))?;
        let signature = fields.next().ok_or(Malformed("missing signature"))?;
        if fields.next().is_some() {
            return Err(Malformed("extra fields on the signature line"));
        }
        if key_id.len() != 8
            || !key_id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(Malformed("key id is not 8 lowercase hex digits"));
        }
        let signature = B64
            .decode(signature)
            .ok()
            .filter(|s| s.len() == 64)
            .ok_or(Malformed("signature is not 64 bytes of base64"))?;
        let parsed = SignedCheckpoint {
            checkpoint: Checkpoint {
                log_id: log_id.to_string(),
                tree_size,
                root,
                timestamp_ms,
            },
            signature,
            key_id: key_id.to_string(),
        };
        // Rejects non-canonical numbers and base64 ("+5", "007", padding variants).
        if parsed.to_note() != s {
            return Err(Malformed("not in canonical form"));
        }
        Ok(parsed)
    }
}

/// Hex of the first 4 bytes of SHA-256(public key), as on a note's signature line.
pub fn key_id(public_key: &[u8; 32]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, public_key);
    hex::encode(&d.as_ref()[..4])
}

pub struct SigningKey {
    pair: Ed25519KeyPair,
    key_id: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey(key_id={}, <redacted>)", self.key_id)
    }
}

/// `<path>.pub`, next to the key file.
pub fn public_key_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".pub");
    PathBuf::from(p)
}

impl SigningKey {
    /// Reads the PKCS#8 key file, or creates it (mode 0600) with a fresh key. Either way (re)writes
    /// `<path>.pub` with the raw public key in base64 if it is missing or differs.
    pub fn load_or_create(path: &Path) -> Result<SigningKey, CheckpointError> {
        let io = |p: &Path| {
            let p = p.display().to_string();
            move |source| CheckpointError::Io { path: p, source }
        };
        let key = match std::fs::read(path) {
            Ok(der) => SigningKey::from_pkcs8(&der)
                .map_err(|_| CheckpointError::BadKeyFile(path.display().to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let der = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                    .map_err(|_| CheckpointError::Random)?;
                write_atomically(path, der.as_ref(), 0o600).map_err(io(path))?;
                SigningKey::from_pkcs8(der.as_ref())?
            }
            Err(e) => return Err(io(path)(e)),
        };
        let pub_path = public_key_path(path);
        let pub_text = format!("{}\n", B64.encode(key.public_key()));
        if std::fs::read_to_string(&pub_path).ok().as_deref() != Some(pub_text.as_str()) {
            write_atomically(&pub_path, pub_text.as_bytes(), 0o644).map_err(io(&pub_path))?;
        }
        Ok(key)
    }

    pub fn from_pkcs8(der: &[u8]) -> Result<SigningKey, CheckpointError> {
        let pair =
            Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|_| CheckpointError::BadKey)?;
        let mut pk = [0u8; 32];
        pk.copy_from_slice(pair.public_key().as_ref());
        Ok(SigningKey {
            key_id: key_id(&pk),
            pair,
        })
    }

    pub fn public_key(&self) -> [u8; 32] {
        let mut pk = [0u8; 32];
        pk.copy_from_slice(self.pair.public_key().as_ref());
        pk
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The log id must pass `Checkpoint::check_log_id`, or the note will not parse back.
    pub fn sign(&self, cp: Checkpoint) -> SignedCheckpoint {
        debug_assert!(Checkpoint::check_log_id(&cp.log_id).is_ok());
        let signature = self.pair.sign(cp.body().as_bytes()).as_ref().to_vec();
        SignedCheckpoint {
            checkpoint: cp,
            signature,
            key_id: self.key_id.clone(),
        }
    }
}

/// Checks that `sc` names this key and that its signature covers exactly its checkpoint.
pub fn verify_checkpoint(
    public_key: &[u8; 32],
    sc: &SignedCheckpoint,
) -> Result<(), CheckpointError> {
    let expected = key_id(public_key);
    if sc.key_id != expected {
        return Err(CheckpointError::UnknownKey {
            expected,
            found: sc.key_id.clone(),
        });
    }
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(sc.checkpoint.body().as_bytes(), &sc.signature)
        .map_err(|_| CheckpointError::BadSignature)
}

/// Writes a new file under a temporary name, syncs it, renames it into place and syncs the
/// directory, so a crash never leaves a half-written key.
fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let result = (|| {
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::merkle::{leaf_hash, root_of};

    fn test_key() -> SigningKey {
        let der = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        SigningKey::from_pkcs8(der.as_ref()).unwrap()
    }

    fn checkpoint() -> Checkpoint {
        let leaves: Vec<_> = (0..5u8).map(|i| leaf_hash(&[i])).collect();
        Checkpoint {
            log_id: "ketenpoort.test/log".into(),
            tree_size: 5,
            root: root_of(&leaves),
            timestamp_ms: 1_767_225_600_123,
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "ketenpoort-checkpoint-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn body_has_the_documented_lines() {
        let cp = checkpoint();
        let body = cp.body();
        let lines: Vec<&str> = body.split('\n').collect();
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[0], cp.log_id);
        assert_eq!(lines[1], "5");
        assert_eq!(B64.decode(lines[2]).unwrap(), cp.root);
        assert_eq!(lines[3], "1767225600123");
        assert_eq!(lines[4], "");
    }

    #[test]
    fn signature_verifies_and_any_change_breaks_it() {
        let key = test_key();
        let pk = key.public_key();
        let sc = key.sign(checkpoint());
        assert_eq!(sc.signature.len(), 64);
        assert_eq!(sc.key_id, key_id(&pk));
        verify_checkpoint(&pk, &sc).unwrap();

        type Change = fn(&mut SignedCheckpoint);
        let changed: [(&str, Change); 6] = [
            ("size", |s| s.checkpoint.tree_size += 1),
            ("root", |s| s.checkpoint.root[31] ^= 0x80),
            ("log id", |s| s.checkpoint.log_id.push('x')),
            ("timestamp", |s| s.checkpoint.timestamp_ms -= 1),
            ("signature", |s| s.signature[10] ^= 0x01),
            ("short signature", |s| s.signature.truncate(63)),
        ];
        for (what, change) in changed {
            let mut bad = sc.clone();
            change(&mut bad);
            assert!(
                matches!(
                    verify_checkpoint(&pk, &bad),
                    Err(CheckpointError::BadSignature)
                ),
                "{what} change accepted"
            );
        }

        let other = test_key();
        assert!(matches!(
            verify_checkpoint(&other.public_key(), &sc),
            Err(CheckpointError::UnknownKey { .. })
        ));
        // Another key that claims this key's id still fails on the signature.
        let mut impostor = other.sign(checkpoint());
        impostor.key_id = sc.key_id.clone();
        assert!(matches!(
            verify_checkpoint(&pk, &impostor),
            Err(CheckpointError::BadSignature)
        ));
    }

    #[test]
    fn note_round_trips_and_verifies() {
        let key = test_key();
        let sc = key.sign(checkpoint());
        let note = sc.to_note();
        assert!(note.starts_with(&sc.checkpoint.body()));
        assert!(note.contains(&format!("\n\n\u{2014} ketenpoort {} ", sc.key_id)));
        let back = SignedCheckpoint::from_note(&note).unwrap();
        assert_eq!(back, sc);
        verify_checkpoint(&key.public_key(), &back).unwrap();

        let negative = key.sign(Checkpoint {
            log_id: "x".into(),
            tree_size: 0,
            root: root_of(&[]),
            timestamp_ms: -1,
        });
        assert_eq!(
            SignedCheckpoint::from_note(&negative.to_note()).unwrap(),
            negative
        );
    }

    #[test]
    fn altered_notes_are_refused_or_fail_verification() {
        let key = test_key();
        let sc = key.sign(checkpoint());
        let note = sc.to_note();
        let malformed = [
            note.replace("\n5\n", "\n+5\n"),
            note.replace("\n5\n", "\n05\n"),
            note.replace("\n5\n", "\n-5\n"),
            note.replace("\n\n", "\n"),
            note.replace('\u{2014}', "-"),
            note.replace("ketenpoort ", "other "),
            note.replace(&sc.key_id, "ABCDEF12"),
            note.replace(&sc.key_id, "abc"),
            note.trim_end().to_string(),
            format!("{note}\n"),
            format!("extra\n{note}"),
            note.replacen("ketenpoort.test/log", "", 1),
            note.replacen("ketenpoort.test/log", "two words", 1),
            note.replace(&B64.encode(sc.checkpoint.root), "AAAA"),
            note.replace(&B64.encode(&sc.signature), "AAAA"),
            note.replace(&B64.encode(&sc.signature), &B64.encode([0u8; 65])),
            String::new(),
            "\n\n".to_string(),
        ];
        for m in &malformed {
            assert!(SignedCheckpoint::from_note(m).is_err(), "accepted: {m:?}");
        }
        // Well-formed but changed: parses, then fails verification.
        let changed = note.replace("\n5\n", "\n6\n");
        let parsed = SignedCheckpoint::from_note(&changed).unwrap();
        assert!(verify_checkpoint(&key.public_key(), &parsed).is_err());
    }

    #[test]
    fn load_or_create_creates_then_reloads_the_same_key() {
        let dir = temp_dir("load");
        let path = dir.join("keys").join("checkpoint.key");
        let first = SigningKey::load_or_create(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let pub_text = std::fs::read_to_string(public_key_path(&path)).unwrap();
        assert_eq!(
            B64.decode(pub_text.trim_end()).unwrap(),
            first.public_key().to_vec()
        );
        let again = SigningKey::load_or_create(&path).unwrap();
        assert_eq!(again.public_key(), first.public_key());
        let sc = again.sign(checkpoint());
        verify_checkpoint(&first.public_key(), &sc).unwrap();

        std::fs::remove_file(public_key_path(&path)).unwrap();
        SigningKey::load_or_create(&path).unwrap();
        assert_eq!(
            std::fs::read_to_string(public_key_path(&path)).unwrap(),
            pub_text
        );

        std::fs::write(&path, b"not a key").unwrap();
        assert!(matches!(
            SigningKey::load_or_create(&path),
            Err(CheckpointError::BadKeyFile(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn debug_output_hides_the_key() {
        let key = test_key();
        let shown = format!("{key:?}");
        assert!(shown.contains(key.key_id()));
        assert!(!shown.contains(&B64.encode(key.public_key())));
    }
}
