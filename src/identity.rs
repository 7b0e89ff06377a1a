//! Identity values (NHS numbers): validation, and the keyed hash that is the
//! only form in which they are kept.
//!
//! A direct identifier never reaches the database: the log and the tables hold
//! HMAC-SHA-256(identity key, normalised value), enough to refuse a second
//! randomisation of the same person at any site, useless without the key.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Normalises and checks a UK NHS number: spaces and hyphens are removed; the
/// result must be 10 digits whose 10th is the modulus-11 check digit (weights
/// 10 down to 2 on the first nine; 11 − (sum mod 11), with 11 → 0 and 10 invalid).
/// Returns `None` for an invalid number.
pub fn normalise_nhs_number(raw: &str) -> Option<String> {
    let digits: String = raw.chars().filter(|c| *c != ' ' && *c != '-').collect();
    if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if is_never_issued(&digits) {
        return None;
    }
    let d: Vec<u32> = digits.bytes().map(|b| u32::from(b - b'0')).collect();
    let sum: u32 = d[..9].iter().zip((2..=10).rev()).map(|(x, w)| x * w).sum();
    let check = match 11 - sum % 11 {
        11 => 0,
        10 => return None,
        c => c,
    };
    (check == d[9]).then_some(digits)
}

/// Whether a number is one the NHS never issues though its check digit holds:
/// all ten digits the same (0000000000, 9999999999: placeholders and test
/// entries, for which every digit is its own check digit).
pub fn is_never_issued(raw: &str) -> bool {
    let mut digits = raw.bytes().filter(|&b| b != b' ' && b != b'-');
    let first = digits.next();
    first.is_some_and(|f| f.is_ascii_digit()) && digits.clone().count() == 9 && digits.all(|b| Some(b) == first)
}

/// The keyed hash of a normalised identity value, lowercase hex.
pub fn identity_hash(key: &[u8; 32], normalised: &str) -> String {
    IdentityHasher::new(key).hash(normalised)
}

/// HMAC-SHA-256 keyed once, for hashing many identity values.
#[derive(Clone)]
pub struct IdentityHasher {
    keyed: Hmac<Sha256>,
}

impl IdentityHasher {
    /// Keys the hasher.
    pub fn new(key: &[u8; 32]) -> IdentityHasher {
        IdentityHasher { keyed: <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length") }
    }

    /// The keyed hash of a normalised identity value, lowercase hex.
    pub fn hash(&self, normalised: &str) -> String {
        let mut mac = self.keyed.clone();
        mac.update(normalised.as_bytes());
        crate::log::lower_hex(&mac.finalize().into_bytes())
    }
}

/// Makes a valid NHS number from a nine-digit stem, choosing the check digit;
/// returns `None` when the stem has no valid check digit. Used by simulations.
pub fn nhs_number_from_stem(stem: u32) -> Option<String> {
    let s = format!("{stem:09}");
    if s.len() != 9 {
        return None;
    }
    let sum: u32 = s.bytes().zip((2..=10).rev()).map(|(b, w)| u32::from(b - b'0') * w).sum();
    let check = match 11 - sum % 11 {
        11 => 0,
        10 => return None,
        c => c,
    };
    let n = format!("{s}{check}");
    (!is_never_issued(&n)).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_valid_and_invalid_nhs_numbers() {
        // 943 476 5919 is the NHS's published example of a valid number.
        assert_eq!(normalise_nhs_number("943 476 5919").as_deref(), Some("9434765919"));
        assert_eq!(normalise_nhs_number("943-476-5919").as_deref(), Some("9434765919"));
        assert_eq!(normalise_nhs_number("9434765918"), None, "wrong check digit");
        assert_eq!(normalise_nhs_number("943476591"), None, "nine digits");
        assert_eq!(normalise_nhs_number("94347659190"), None, "eleven digits");
        assert_eq!(normalise_nhs_number("94347a5919"), None);
        assert_eq!(normalise_nhs_number(""), None);
    }

    #[test]
    fn numbers_of_one_repeated_digit_are_never_issued() {
        // Each passes the modulus-11 check: the check digit of d×9 is d.
        for d in 0..10 {
            let n = d.to_string().repeat(10);
            assert_eq!(normalise_nhs_number(&n), None, "{n}");
            assert!(is_never_issued(&format!("{} {} {}", &n[..3], &n[3..6], &n[6..])));
        }
        assert!(!is_never_issued("9434765919"));
        assert!(!is_never_issued("999999999"));
    }

    #[test]
    fn check_digit_ten_is_invalid() {
        // 000000001x: sum = 1*2 = 2, 11 - 2 = 9 → valid check 9.
        assert!(normalise_nhs_number("0000000019").is_some());
        // A stem whose check would be 10 (sum mod 11 == 1): 000000006 → 6 × 2 = 12.
        assert_eq!(nhs_number_from_stem(6), None);
        for d in 0..10 {
            assert_eq!(normalise_nhs_number(&format!("000000006{d}")), None);
        }
    }

    #[test]
    fn generated_numbers_validate() {
        let mut made = 0;
        for stem in 100_000_000..100_000_200 {
            if let Some(n) = nhs_number_from_stem(stem) {
                assert_eq!(normalise_nhs_number(&n), Some(n));
                made += 1;
            }
        }
        assert!(made > 150);
    }

    #[test]
    fn the_hash_is_keyed() {
        let a = identity_hash(&[1; 32], "9434765919");
        assert_eq!(a.len(), 64);
        assert_ne!(a, identity_hash(&[2; 32], "9434765919"));
        assert!(!a.contains("9434765919"));
    }
}
