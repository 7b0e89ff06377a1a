//! The rules for free text that people type and the log keeps for ever:
//! reasons (status changes, corrections, re-consent, the reveal) and user
//! names. One rule everywhere: no control characters (a terminal escape
//! sequence in a reason would run in every auditor's terminal that prints
//! it), and one length limit.

/// The longest reason accepted, in characters.
pub const REASON_MAX_CHARS: usize = 500;
/// The longest user name accepted, in characters.
pub const USER_MAX_CHARS: usize = 64;

/// The first control character in `text`: which (as U+XXXX) and at which
/// character (from 1).
fn control_character(text: &str) -> Option<String> {
    text.chars()
        .enumerate()
        .find(|(_, c)| c.is_control())
        .map(|(i, c)| format!("a control character (U+{:04X}) at character {}", c as u32, i + 1))
}

/// A reason given with `flag` (e.g. `--reason`), trimmed: 1 to
/// [`REASON_MAX_CHARS`] characters, none of them a control character.
/// `Err`: the message, saying what to give instead.
pub fn reason(flag: &str, text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("{flag} is empty; every change needs a reason, e.g. {flag} \"asked by phone\""));
    }
    if let Some(c) = control_character(text) {
        return Err(format!("{flag} contains {c}; give printable text on one line"));
    }
    let n = text.chars().count();
    if n > REASON_MAX_CHARS {
        return Err(format!("{flag} is {n} characters long; give at most {REASON_MAX_CHARS}"));
    }
    Ok(text.to_string())
}

/// A user name for the log: 1 to [`USER_MAX_CHARS`] characters, none of them
/// a control character. An empty name is what the command line passes when
/// neither `--user` nor `$USER` gives one.
pub fn user(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err(
            "no user to record in the log: --user is empty, or not given and $USER is unset; give --user NAME".into()
        );
    }
    if let Some(c) = control_character(name) {
        return Err(format!("the user name contains {c}; give printable characters with --user"));
    }
    let n = name.chars().count();
    if n > USER_MAX_CHARS {
        return Err(format!("the user name is {n} characters long; give at most {USER_MAX_CHARS} with --user"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_is_trimmed_printable_and_bounded() {
        assert_eq!(reason("--reason", "  moved away ").unwrap(), "moved away");
        assert!(reason("--reason", " ").unwrap_err().contains("needs a reason"));
        let e = reason("--reason", "ok\u{1b}[31m").unwrap_err();
        assert!(e.contains("U+001B") && e.contains("character 3"), "{e}");
        assert!(reason("--reason", "line\nbreak").unwrap_err().contains("U+000A"));
        assert!(reason("--reason", &"é".repeat(500)).is_ok());
        assert!(reason("--reason", &"é".repeat(501)).unwrap_err().contains("501 characters"));
    }

    #[test]
    fn a_user_is_non_empty_printable_and_bounded() {
        assert!(user("ana").is_ok());
        assert!(user("").unwrap_err().contains("$USER is unset"));
        assert!(user("a\u{7}").unwrap_err().contains("U+0007"));
        assert!(user(&"a".repeat(65)).unwrap_err().contains("65 characters"));
    }
}
