//! Who is calling: the one rule for a caller id, wherever it comes from (a provider's stream
//! parameters, the softphone page, the text API, the command line).
//!
//! A caller id is 1 to [`MAX_BYTES`] bytes of printable text without surrounding space. What a
//! network peer sends is [`normalize`]d to that (control characters removed, cut at a character
//! boundary), so no caller id ends a call; the engine takes only ids that already follow it
//! ([`is_valid`]), so an API client that sends a bad one gets a clear 400.

/// The longest caller id, in bytes (what the store's indexes and the logs are sized for).
pub const MAX_BYTES: usize = 64;

/// The caller of a call that names none: the demo customer, who has records in the demo data.
pub const DEMO_CALLER: &str = "user_789";

/// `raw` as a caller id: control characters dropped, surrounding space trimmed, cut to
/// [`MAX_BYTES`] at a character boundary. None when nothing printable is left.
pub fn normalize(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len().min(MAX_BYTES));
    for c in raw.trim().chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > MAX_BYTES {
            break;
        }
        out.push(c);
    }
    let trimmed = out.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

/// Whether `id` follows the rule as it is.
pub fn is_valid(id: &str) -> bool {
    normalize(id).as_deref() == Some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_dropped_and_long_ids_cut_at_a_character() {
        assert_eq!(
            normalize(" +1 415\u{0}555\n0100 ").as_deref(),
            Some("+1 4155550100")
        );
        let wide = "é".repeat(64);
        let n = normalize(&wide).unwrap();
        assert_eq!(n.len(), 64);
        assert_eq!(n.chars().count(), 32);
        assert!(is_valid(&n));
        assert_eq!(normalize("\u{7}\t \r\n"), None);
        assert_eq!(normalize(""), None);
        assert!(!is_valid(" user_1"));
        assert!(!is_valid("a\u{1b}b"));
        assert!(!is_valid(&"x".repeat(65)));
        assert!(is_valid(DEMO_CALLER));
    }
}
