//! The trial's secrets: the allocation seed, the identity key and the
//! checkpoint signing key, and the files that hold them.
//!
//! The seed decides every allocation; the database holds only a commitment to
//! it (SHA-256 under a domain tag) until `reveal`. The identity secret keys the
//! hash of NHS numbers and is never revealed. Key files are created with mode
//! 0600 and refused if they are symbolic links or readable by group or others.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The trial key: what `randomise` needs and an outsider must not see.
#[derive(Clone)]
pub struct TrialKey {
    /// Trial id the key belongs to.
    pub trial: String,
    /// The allocation seed (ChaCha20 key).
    pub seed: [u8; 32],
    /// Secret from which the identity key is derived.
    pub identity_secret: [u8; 32],
}

impl std::fmt::Debug for TrialKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TrialKey {{ trial: {:?}, .. }}", self.trial)
    }
}

/// How the keys were made; recorded in the log so that a trial created with a
/// fixed seed for a demonstration can never pass for a live one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrigin {
    /// Drawn from the operating system's random source.
    Random,
    /// Derived from a seed given on the command line (tests and demonstrations).
    Given,
}

impl KeyOrigin {
    /// `random` or `given`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyOrigin::Random => "random",
            KeyOrigin::Given => "given",
        }
    }
}

fn tagged(tag: &str, data: &[u8]) -> [u8; 32] {
    Sha256::new().chain_update(tag.as_bytes()).chain_update(data).finalize().into()
}

/// The public commitment to a seed: SHA-256("chancery/v1/seed-commitment" ‖ seed), hex.
pub fn seed_commitment(seed: &[u8; 32]) -> String {
    hex::encode(tagged("chancery/v1/seed-commitment", seed))
}

/// Parses a 64-digit hex seed.
pub fn parse_seed(hex_text: &str) -> Result<[u8; 32]> {
    let bytes = hex::decode(hex_text.trim())
        .map_err(|_| Error::Input("--seed must be 64 hexadecimal digits (32 bytes)".to_string()))?;
    bytes.try_into().map_err(|_| Error::Input("--seed must be 64 hexadecimal digits (32 bytes)".to_string()))
}

impl TrialKey {
    /// Fresh random secrets.
    pub fn random(trial: &str) -> Result<(TrialKey, SigningKey)> {
        let mut buf = [0u8; 96];
        getrandom::fill(&mut buf)
            .map_err(|e| Error::Key(format!("the operating system's random source failed: {e}")))?;
        let mut seed = [0; 32];
        let mut identity_secret = [0; 32];
        let mut signing = [0; 32];
        seed.copy_from_slice(&buf[..32]);
        identity_secret.copy_from_slice(&buf[32..64]);
        signing.copy_from_slice(&buf[64..]);
        Ok((TrialKey { trial: trial.into(), seed, identity_secret }, SigningKey::from_bytes(&signing)))
    }

    /// Secrets derived from a given seed, for tests and demonstrations: the
    /// identity and signing secrets are then derivable from the seed, which is
    /// why the log records the key origin as `given`.
    pub fn from_given_seed(trial: &str, seed: [u8; 32]) -> (TrialKey, SigningKey) {
        let identity_secret = tagged("chancery/v1/given-identity-secret", &seed);
        let signing = tagged("chancery/v1/given-signing-secret", &seed);
        (TrialKey { trial: trial.into(), seed, identity_secret }, SigningKey::from_bytes(&signing))
    }

    /// The HMAC key for identity hashes: HMAC-SHA-256(identity secret, "chancery/v1/identity-key").
    pub fn identity_key(&self) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.identity_secret).expect("any key length");
        mac.update(b"chancery/v1/identity-key");
        mac.finalize().into_bytes().into()
    }

    /// Writes the key file (mode 0600, never overwriting).
    pub fn write(&self, path: &Path) -> Result<()> {
        let text = format!(
            "# chancery trial key: it decides every allocation. Keep it secret and backed up;\n\
             # never put it in the database folder you share, in email or in version control.\n\
             format = chancery-trial-key/1\ntrial = {}\nseed = {}\nidentity = {}\n",
            self.trial,
            hex::encode(self.seed),
            hex::encode(self.identity_secret)
        );
        write_secret(path, &text)
    }

    /// Reads a key file, refusing unsafe permissions.
    pub fn read(path: &Path) -> Result<TrialKey> {
        let fields = read_secret(path, "chancery-trial-key/1")?;
        let get = |k: &str| {
            fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).ok_or_else(|| {
                Error::Key(format!(
                    "key file {}: no `{k}` line; the file is damaged, restore it from your backup",
                    path.display()
                ))
            })
        };
        let hex32 = |k: &str| -> Result<[u8; 32]> {
            let v = get(k)?;
            hex::decode(&v).ok().and_then(|b| b.try_into().ok()).ok_or_else(|| {
                Error::Key(format!(
                    "key file {}: `{k}` is not 64 hex digits; restore it from your backup",
                    path.display()
                ))
            })
        };
        Ok(TrialKey { trial: get("trial")?, seed: hex32("seed")?, identity_secret: hex32("identity")? })
    }
}

/// The default key path for a database: `<db>.key`.
pub fn default_key_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(".key");
    PathBuf::from(s)
}

/// The signing key path beside a trial key: `<key>.signing`.
pub fn signing_key_path(key: &Path) -> PathBuf {
    let mut s = key.as_os_str().to_owned();
    s.push(".signing");
    PathBuf::from(s)
}

/// Writes the checkpoint signing key (mode 0600, never overwriting).
pub fn write_signing_key(path: &Path, trial: &str, key: &SigningKey) -> Result<()> {
    let text = format!(
        "# chancery checkpoint signing key: signs the statements the trial hands to auditors. Keep it secret.\n\
         format = chancery-signing-key/1\ntrial = {trial}\nsecret = {}\npublic = {}\n",
        hex::encode(key.to_bytes()),
        hex::encode(key.verifying_key().to_bytes())
    );
    write_secret(path, &text)
}

/// Reads the checkpoint signing key.
pub fn read_signing_key(path: &Path) -> Result<SigningKey> {
    let fields = read_secret(path, "chancery-signing-key/1")?;
    let secret = fields
        .iter()
        .find(|(k, _)| k == "secret")
        .and_then(|(_, v)| hex::decode(v).ok())
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| {
            Error::Key(format!(
                "signing key file {}: no valid `secret` line; restore it from your backup",
                path.display()
            ))
        })?;
    Ok(SigningKey::from_bytes(&secret))
}

fn write_secret(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            Error::Key(format!(
                "key file {} already exists; chancery never overwrites a key (move it away or choose another --key)",
                path.display()
            ))
        } else {
            Error::Io { context: format!("creating key file {}", path.display()), source: e }
        }
    })?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(Error::io(format!("writing key file {}", path.display())))
}

/// The mode of the files chancery makes that hold trial data: the database
/// (and so its `-wal` and `-shm`, which SQLite gives the database's mode),
/// backups, and exports, analyses and reports unless the user asks for
/// another. Pseudonymised health data: owner only, like the keys.
pub const DATA_FILE_MODE: u32 = 0o600;

/// Creates a new file with exactly `mode` (whatever the umask), refusing to
/// replace anything that exists, symbolic links included.
pub fn create_new_file(path: &Path, mode: u32) -> std::io::Result<fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let f = fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(path)?;
    // The umask may have taken bits the user asked for: set them as given.
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    Ok(f)
}

/// Reads a file mode given on the command line (`--mode 0640`): octal, read
/// and write bits only (never execute or set-id).
pub fn parse_mode(text: &str) -> std::result::Result<u32, String> {
    match u32::from_str_radix(text, 8) {
        // Trial data is never writable by anyone but its owner.
        Ok(m) if m & !0o666 == 0 && m & 0o022 != 0 && !text.is_empty() => Err(format!(
            "--mode {text} would let others change trial data; give at most 0644 (owner writes; group and others may read)"
        )),
        Ok(m) if m & !0o644 == 0 && !text.is_empty() => Ok(m),
        _ => Err(format!(
            "{text:?} is not a file mode: give octal read/write bits such as 0600 (owner only, the default) or 0640"
        )),
    }
}

fn read_secret(path: &Path, format: &str) -> Result<Vec<(String, String)>> {
    use std::os::unix::fs::PermissionsExt;
    let meta = fs::symlink_metadata(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::Key(format!("key file {} not found; give the trial's key with --key FILE", path.display()))
        } else {
            Error::Io { context: format!("reading key file {}", path.display()), source: e }
        }
    })?;
    if meta.file_type().is_symlink() {
        return Err(Error::Key(format!("key file {} is a symbolic link; give the real file's path", path.display())));
    }
    if !meta.is_file() {
        return Err(Error::Key(format!("key file {} is not a regular file", path.display())));
    }
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(Error::Key(format!(
            "key file {} is readable by others (mode {:o}); run `chmod 600 {}` and check who may have read it",
            path.display(),
            mode & 0o777,
            path.display()
        )));
    }
    let text = fs::read_to_string(path).map_err(Error::io(format!("reading key file {}", path.display())))?;
    let fields: Vec<(String, String)> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && l.contains('='))
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())))
        .collect();
    if !fields.iter().any(|(k, v)| k == "format" && v == format) {
        return Err(Error::Key(format!("{} is not a {format} file; check the path", path.display())));
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Outputs may be shared for reading, never writable by others.
    /// See: `--mode 0666` was accepted for exports of trial data.
    #[test]
    fn an_output_mode_lets_no_one_but_the_owner_write() {
        assert_eq!(parse_mode("0600"), Ok(0o600));
        assert_eq!(parse_mode("0640"), Ok(0o640));
        assert_eq!(parse_mode("644"), Ok(0o644));
        for writable in ["0666", "0660", "0602", "0622"] {
            let e = parse_mode(writable).unwrap_err();
            assert!(e.contains("would let others change trial data"), "{writable}: {e}");
        }
        assert!(parse_mode("0777").unwrap_err().contains("is not a file mode"));
        assert!(parse_mode("rw").unwrap_err().contains("is not a file mode"));
        assert!(parse_mode("").is_err());
    }

    #[test]
    fn key_files_round_trip_with_mode_0600_and_are_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.key");
        let (k, _) = TrialKey::from_given_seed("t", [7; 32]);
        k.write(&path).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let back = TrialKey::read(&path).unwrap();
        assert_eq!(back.seed, k.seed);
        assert_eq!(back.identity_secret, k.identity_secret);
        assert!(k.write(&path).unwrap_err().to_string().contains("already exists"));
    }

    #[test]
    fn a_readable_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.key");
        TrialKey::from_given_seed("t", [7; 32]).0.write(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let e = TrialKey::read(&path).unwrap_err().to_string();
        assert!(e.contains("readable by others") && e.contains("chmod 600"), "{e}");
    }

    #[test]
    fn a_symlinked_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.key");
        TrialKey::from_given_seed("t", [7; 32]).0.write(&path).unwrap();
        let link = dir.path().join("link.key");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(TrialKey::read(&link).unwrap_err().to_string().contains("symbolic link"));
    }

    #[test]
    fn the_commitment_opens_only_with_its_seed() {
        assert_eq!(seed_commitment(&[1; 32]), seed_commitment(&[1; 32]));
        assert_ne!(seed_commitment(&[1; 32]), seed_commitment(&[2; 32]));
    }
}
