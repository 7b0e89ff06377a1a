//! Signed checkpoints: short statements of the log's length and head that the
//! trial hands to outsiders, so that truncation and wholesale rewriting become
//! detectable.
//!
//! A hash chain shows that nothing inside the log was changed, but an insider
//! can cut off its tail or rebuild it whole; only a head held outside the
//! operator's control catches that. A checkpoint is five lines of text and an
//! Ed25519 signature over their exact bytes, under the key whose public half
//! is in the log's first entry (docs/SPEC.md §7):
//!
//! ```text
//! chancery-checkpoint/1
//! trial: work-health-ips
//! log-length: 1234
//! head: 3f…(64 hex digits)
//! time: 2026-03-02T09:00:00.000000Z
//! signature: 9a…(128 hex digits)
//! ```

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::clock::Timestamp;

/// The first line of every checkpoint.
pub const HEADER: &str = "chancery-checkpoint/1";

/// A signed statement of the log's length and head at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Trial id.
    pub trial: String,
    /// Number of log entries covered.
    pub length: u64,
    /// Hash of entry `length − 1`, lowercase hex.
    pub head: String,
    /// When it was made, in the log's time format.
    pub time: String,
    /// Ed25519 signature over [`Checkpoint::statement`].
    pub signature: [u8; 64],
}

impl Checkpoint {
    /// Makes and signs a checkpoint.
    pub fn sign(trial: &str, length: u64, head: &str, time: Timestamp, key: &SigningKey) -> Checkpoint {
        let mut c = Checkpoint {
            trial: trial.to_string(),
            length,
            head: head.to_string(),
            time: time.to_log_text(),
            signature: [0; 64],
        };
        c.signature = key.sign(c.statement().as_bytes()).to_bytes();
        c
    }

    /// The exact bytes that are signed: the first five lines, each ending in `\n`.
    pub fn statement(&self) -> String {
        format!(
            "{HEADER}\ntrial: {}\nlog-length: {}\nhead: {}\ntime: {}\n",
            self.trial, self.length, self.head, self.time
        )
    }

    /// The checkpoint file's text: the statement and the signature line.
    pub fn to_text(&self) -> String {
        format!("{}signature: {}\n", self.statement(), hex::encode(self.signature))
    }

    /// Parses a checkpoint file strictly: exactly the six lines, in order.
    pub fn parse(text: &str) -> Result<Checkpoint, String> {
        let lines: Vec<&str> = text.strip_suffix('\n').unwrap_or(text).split('\n').collect();
        if lines.len() != 6 || lines[0] != HEADER {
            return Err(format!(
                "not a checkpoint: expected six lines starting {HEADER:?} (trial, log-length, head, time, signature)"
            ));
        }
        let field = |i: usize, name: &str| {
            lines[i]
                .strip_prefix(name)
                .and_then(|r| r.strip_prefix(": "))
                .ok_or_else(|| format!("line {}: expected `{name}: …`", i + 1))
        };
        let trial = field(1, "trial")?.to_string();
        let length_text = field(2, "log-length")?;
        let length: u64 = length_text
            .parse()
            .ok()
            .filter(|n: &u64| *n > 0 && n.to_string() == length_text)
            .ok_or_else(|| "line 3: log-length must be a positive whole number".to_string())?;
        let head = field(3, "head")?.to_string();
        if head.len() != 64 || !head.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err("line 4: head must be 64 lowercase hex digits".into());
        }
        let time = field(4, "time")?.to_string();
        let signature: [u8; 64] = hex::decode(field(5, "signature")?)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| "line 6: signature must be 128 hex digits".to_string())?;
        let c = Checkpoint { trial, length, head, time, signature };
        if c.to_text() != text {
            return Err("not in canonical form (check line endings and spacing)".into());
        }
        Ok(c)
    }

    /// Whether the signature is valid under the public key (hex, 32 bytes), by
    /// Ed25519's strict verification (RFC 8032, no malleable signatures).
    pub fn signature_valid(&self, public_key_hex: &str) -> bool {
        let Some(key) = hex::decode(public_key_hex)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .and_then(|b| VerifyingKey::from_bytes(&b).ok())
        else {
            return false;
        };
        key.verify_strict(self.statement().as_bytes(), &Signature::from_bytes(&self.signature)).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_round_trips_and_its_signature_binds_every_field() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let public = hex::encode(key.verifying_key().to_bytes());
        let t = Timestamp::parse("2026-03-02T09:00:00Z").unwrap();
        let c = Checkpoint::sign("t", 12, &"ab".repeat(32), t, &key);
        let back = Checkpoint::parse(&c.to_text()).unwrap();
        assert_eq!(back, c);
        assert!(back.signature_valid(&public));
        let mut longer = c.clone();
        longer.length = 13;
        assert!(!longer.signature_valid(&public));
        assert!(!c.signature_valid(&hex::encode(SigningKey::from_bytes(&[8; 32]).verifying_key().to_bytes())));
        assert!(Checkpoint::parse(&c.to_text().replace('\n', "\r\n")).is_err());
        assert!(Checkpoint::parse(&c.to_text().replace("log-length: 12", "log-length: 012")).is_err());
    }
}
