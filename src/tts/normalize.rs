//! Text normalisation for speech: turns written forms into the words a person would say, so a
//! synthesiser (espeak-ng in particular) reads them right.
//!
//! [`for_speech`] rewrites, in this order:
//!
//! 1. Markdown / JSON-ish symbols: links `[text](url)` → `text`; `*`, `#`, `{`, `}`, backticks
//!    and list bullets are dropped (espeak would say "asterisk"); `#` before a digit becomes
//!    "number"; `~` before a digit becomes "about" (espeak would say "tilde").
//! 2. A few abbreviations espeak reads letter by letter: "e.g.", "i.e.", "etc.", "vs.".
//! 3. Money: "$125.50" → "125 dollars and 50 cents", "$25.00" → "25 dollars",
//!    "$1,234.05" → "1234 dollars and 5 cents", "$2.5 million" → "2.5 million dollars"
//!    (also `€` and `£`). espeak alone says "dollar one hundred twenty five point five zero".
//! 4. ISO dates: "2025-12-01" → "December 1st, 2025" (an ISO time part becomes "at HH:MM" and
//!    goes through rule 5). Invalid dates are left alone. espeak alone says "dash" twice.
//! 5. Clock times: "15:00" / "3:00 PM" → "3 PM", "11:30" → "11 30 AM", "9:05" → "9 oh 5 AM".
//!    A bare time is read as 24-hour. Digits plus upper-case "AM"/"PM" is the form espeak reads
//!    best: it says "three p m" and "eleven thirty a m" (checked with `espeak-ng -x`), whereas
//!    "11:30" alone gives no AM/PM and "9 05" says "nine zero five".
//! 6. North-American phone numbers ("(555) 123-4567", "555-123-4567", "+1 555.123.4567") are
//!    spelled digit by digit in groups: "5 5 5, 1 2 3, 4 5 6 7".
//! 7. Codes — one upper-case token of 4–10 letters and digits with at least one of each, e.g.
//!    "ABC123" — are spelled character by character. The letter A is written "eigh": espeak
//!    reads a lone "A" followed by another word as the article "uh" (phonemes `a#`), so
//!    "A B C 1 2 3" would be heard as "uh bee cee one two three"; "eigh" gives the letter name
//!    (`'eI`). Every other letter reads right as a lone capital.
//! 8. Whitespace runs collapse to one space (newlines are kept as single newlines).
//!
//! Ordinals such as "1st" are kept (espeak reads them). Ordinary words are never changed. The
//! function never panics, and input beyond [`MAX_INPUT_CHARS`] is dropped (cut at a word
//! boundary) so one call's work is bounded; all patterns run in linear time (`regex` crate).

use std::sync::LazyLock;

use chrono::{Datelike, NaiveDate};
use regex::{Captures, Regex};

/// Input longer than this many characters is truncated (at the last whitespace before the
/// limit). A spoken turn is a few sentences; callers with more text should split it first.
pub const MAX_INPUT_CHARS: usize = 20_000;

/// Compiles one of this module's fixed patterns.
fn re(pattern: &str) -> Regex {
    // Invariant: every pattern below is a literal checked by the unit tests, so it compiles.
    Regex::new(pattern).expect("built-in normalisation pattern is a valid regex")
}

static MD_LINK: LazyLock<Regex> = LazyLock::new(|| re(r"\[([^\]\n]*)\]\([^)\n]*\)"));
static BULLET: LazyLock<Regex> = LazyLock::new(|| re(r"(?m)^[ \t]*(?:[-*+•]|>+)[ \t]+"));
static ABBREV: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)\b(e\.g|i\.e|etc|vs)\."));
static MONEY: LazyLock<Regex> = LazyLock::new(|| {
    re(r"([$€£])(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?(?:\s+(thousand|million|billion|trillion)\b)?")
});
static ISO_DATE: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}:\d{2})(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?")
});
static CLOCK: LazyLock<Regex> =
    LazyLock::new(|| re(r"(\d{1,2}):(\d{2})(?::\d{2})?(?:\s*([AaPp])\.?\s?[Mm]\b(\.)?)?"));
static PHONE: LazyLock<Regex> =
    LazyLock::new(|| re(r"(\+?1[ .-]?)?(?:\((\d{3})\)[ ]?|(\d{3})[ .-])(\d{3})[ .-](\d{4})"));
static CODE: LazyLock<Regex> = LazyLock::new(|| re(r"\b[A-Z0-9]{4,10}\b"));
static SPACES: LazyLock<Regex> = LazyLock::new(|| re(r"[ \t\u{a0}]+"));
static NEWLINES: LazyLock<Regex> = LazyLock::new(|| re(r"[ \t]*\n[\s]*"));

/// Rewrites `text` into words a person would say (see the module docs for the rules).
pub fn for_speech(text: &str) -> String {
    let text = cap_input(text);
    let text = strip_markup(text);
    let text = replace_checked(&ABBREV, &text, abbreviation);
    let text = replace_checked(&MONEY, &text, money);
    let text = replace_checked(&ISO_DATE, &text, iso_date);
    let text = replace_checked(&CLOCK, &text, clock);
    let text = replace_checked(&PHONE, &text, phone);
    let text = replace_checked(&CODE, &text, code);
    let text = NEWLINES.replace_all(&text, "\n");
    let text = SPACES.replace_all(&text, " ");
    text.trim().to_string()
}

/// The sentences of `texts` that are said as written: each string is cut after `.` `?` `!`,
/// and a sentence is kept when it starts with a capital, ends with one of those, has at least
/// two words and no `{placeholder}` (so field names, patterns and sentences with a caller's data
/// in them are not). In first-seen order, without repeats.
pub fn fixed_sentences<'a>(texts: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = vec![];
    for text in texts {
        let mut start = 0;
        let chars: Vec<(usize, char)> = text.char_indices().collect();
        for (i, &(at, c)) in chars.iter().enumerate() {
            let next = chars.get(i + 1).map(|&(_, n)| n);
            if matches!(c, '.' | '?' | '!') && next.is_none_or(char::is_whitespace) {
                let end = at + c.len_utf8();
                let sentence = text[start..end].trim();
                start = end;
                let fixed = sentence.chars().next().is_some_and(char::is_uppercase)
                    && sentence.split_whitespace().count() >= 2
                    && !sentence.contains(['{', '}'])
                    && !out.iter().any(|s| s == sentence);
                if fixed {
                    out.push(sentence.to_string());
                }
            }
        }
    }
    out
}

/// Keeps at most [`MAX_INPUT_CHARS`] characters, cutting at the last whitespace if there is one.
fn cap_input(text: &str) -> &str {
    match text.char_indices().nth(MAX_INPUT_CHARS) {
        None => text,
        Some((cut, _)) => {
            let head = &text[..cut];
            match head.rfind(char::is_whitespace) {
                Some(space) if space > 0 => &head[..space],
                _ => head,
            }
        }
    }
}

/// Rule 1: markdown links, bullets and symbols espeak would read aloud.
fn strip_markup(text: &str) -> String {
    let text = MD_LINK.replace_all(text, "$1");
    let text = BULLET.replace_all(&text, "");
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let next_is_digit = chars.peek().is_some_and(char::is_ascii_digit);
        match c {
            '#' if next_is_digit => out.push_str("number "),
            '~' if next_is_digit => out.push_str("about "),
            '*' | '#' | '`' => {}
            '{' | '}' => out.push(' '),
            _ => out.push(c),
        }
    }
    out
}

/// Replaces every match of `re` in `text` with `f(captures, text)`; a `None` keeps the match as
/// written. `f` gets the whole text to check what surrounds the match (the `regex` crate has no
/// look-around).
fn replace_checked(
    re: &Regex,
    text: &str,
    mut f: impl FnMut(&Captures, &str) -> Option<String>,
) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut last = 0;
    for caps in re.captures_iter(text) {
        let Some(whole) = caps.get(0) else { continue };
        if let Some(replacement) = f(&caps, text) {
            out.push_str(&text[last..whole.start()]);
            out.push_str(&replacement);
            last = whole.end();
        }
    }
    out.push_str(&text[last..]);
    out
}

/// The character just before byte `at` in `text`.
fn char_before(text: &str, at: usize) -> Option<char> {
    text.get(..at).and_then(|s| s.chars().next_back())
}

/// The character at byte `at` in `text`.
fn char_at(text: &str, at: usize) -> Option<char> {
    text.get(at..).and_then(|s| s.chars().next())
}

/// True when the match ending at `end` closes a sentence: end of text, or whitespace followed by
/// an upper-case letter or the end. Used to keep a full stop that an abbreviation swallowed.
fn sentence_ends_at(text: &str, end: usize) -> bool {
    let rest = text.get(end..).unwrap_or("");
    let trimmed = rest.trim_start();
    if trimmed.is_empty() {
        return true;
    }
    trimmed.len() < rest.len() && trimmed.starts_with(|c: char| c.is_uppercase())
}

/// True when `c` would make a match part of a longer token.
fn joins_token(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || c == '_')
}

/// Byte range of the whole match.
fn span(caps: &Captures) -> (usize, usize) {
    caps.get(0).map_or((0, 0), |m| (m.start(), m.end()))
}

/// The text of capture group `i`, or "".
fn group<'t>(caps: &Captures<'t>, i: usize) -> &'t str {
    caps.get(i).map_or("", |m| m.as_str())
}

/// Rule 2.
fn abbreviation(caps: &Captures, text: &str) -> Option<String> {
    let (_, end) = span(caps);
    let words = match group(caps, 1).to_ascii_lowercase().as_str() {
        "e.g" => "for example",
        "i.e" => "that is",
        "etc" => "etcetera",
        "vs" => "versus",
        _ => return None,
    };
    let stop = if sentence_ends_at(text, end) { "." } else { "" };
    Some(format!("{words}{stop}"))
}

/// Rule 3.
fn money(caps: &Captures, text: &str) -> Option<String> {
    let (_, end) = span(caps);
    let after = char_at(text, end);
    // "$1,23" or "$5x": not an amount we understand.
    if joins_token(after)
        || (after == Some(',') && char_at(text, end + 1).is_some_and(|c| c.is_ascii_digit()))
    {
        return None;
    }
    let (one, many, sub_one, sub_many) = match group(caps, 1) {
        "$" => ("dollar", "dollars", "cent", "cents"),
        "€" => ("euro", "euros", "cent", "cents"),
        "£" => ("pound", "pounds", "penny", "pence"),
        _ => return None,
    };
    let whole: String = group(caps, 2)
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let whole = whole.trim_start_matches('0');
    let whole = if whole.is_empty() { "0" } else { whole };
    let fraction = caps.get(3).map(|m| m.as_str());
    if let Some(scale) = caps.get(4) {
        let number = fraction.map_or_else(|| whole.to_string(), |f| format!("{whole}.{f}"));
        return Some(format!("{number} {} {many}", scale.as_str()));
    }
    let cents: u32 = match fraction {
        None => 0,
        Some(f) if f.len() == 1 => f.parse::<u32>().ok()? * 10,
        Some(f) if f.len() == 2 => f.parse().ok()?,
        Some(f) => return Some(format!("{whole}.{f} {many}")),
    };
    let unit = if whole == "1" { one } else { many };
    let sub = if cents == 1 { sub_one } else { sub_many };
    Some(match (whole, cents) {
        (_, 0) => format!("{whole} {unit}"),
        ("0", _) => format!("{cents} {sub}"),
        _ => format!("{whole} {unit} and {cents} {sub}"),
    })
}

/// English ordinal suffix for a day of the month.
fn ordinal_suffix(n: u32) -> &'static str {
    match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    }
}

/// Rule 4.
fn iso_date(caps: &Captures, text: &str) -> Option<String> {
    let (start, end) = span(caps);
    if joins_token(char_before(text, start)) || joins_token(char_at(text, end)) {
        return None;
    }
    let year: i32 = group(caps, 1).parse().ok()?;
    let month: u32 = group(caps, 2).parse().ok()?;
    let day: u32 = group(caps, 3).parse().ok()?;
    let date = NaiveDate::from_ymd_opt(year, month, day)?;
    let mut out = format!(
        "{} {}{}, {}",
        date.format("%B"),
        date.day(),
        ordinal_suffix(date.day()),
        date.year()
    );
    if let Some(time) = caps.get(4) {
        out.push_str(" at ");
        out.push_str(time.as_str());
    }
    Some(out)
}

/// Rule 5.
fn clock(caps: &Captures, text: &str) -> Option<String> {
    let (start, end) = span(caps);
    let before = char_before(text, start);
    if joins_token(before) || matches!(before, Some(':' | '.' | ',')) {
        return None;
    }
    if joins_token(char_at(text, end)) || char_at(text, end) == Some(':') {
        return None;
    }
    let hour: u32 = group(caps, 1).parse().ok()?;
    let minute: u32 = group(caps, 2).parse().ok()?;
    if minute > 59 {
        return None;
    }
    let pm = match caps.get(3).map(|m| m.as_str()) {
        Some("p" | "P") if (1..=12).contains(&hour) => true,
        Some("a" | "A") if (1..=12).contains(&hour) => false,
        // No suffix, or a suffix that contradicts a 24-hour hour ("15:00 PM"): read as 24-hour.
        _ if hour <= 23 => hour >= 12,
        _ => return None,
    };
    let hour12 = match hour % 12 {
        0 => 12,
        h => h,
    };
    let minutes = match minute {
        0 => String::new(),
        1..=9 => format!(" oh {minute}"),
        _ => format!(" {minute}"),
    };
    let meridiem = if pm { "PM" } else { "AM" };
    // A dotted "p.m." at a sentence end also carried the sentence's full stop.
    let stop = if caps.get(4).is_some() && sentence_ends_at(text, end) {
        "."
    } else {
        ""
    };
    Some(format!("{hour12}{minutes} {meridiem}{stop}"))
}

/// Writes each character of `s` separated by spaces, the letter A as "eigh" (see rule 7).
fn spell(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for c in s.chars() {
        if !out.is_empty() {
            out.push(' ');
        }
        if c == 'A' {
            out.push_str("eigh");
        } else {
            out.push(c);
        }
    }
    out
}

/// Rule 6.
fn phone(caps: &Captures, text: &str) -> Option<String> {
    let (start, end) = span(caps);
    let before = char_before(text, start);
    if joins_token(before) || matches!(before, Some('-' | '.' | '+' | '$' | '€' | '£')) {
        return None;
    }
    if joins_token(char_at(text, end)) {
        return None;
    }
    let area = caps.get(2).or(caps.get(3)).map_or("", |m| m.as_str());
    let mut groups = Vec::with_capacity(4);
    if caps.get(1).is_some() {
        groups.push("1".to_string());
    }
    for g in [area, group(caps, 4), group(caps, 5)] {
        groups.push(spell(g));
    }
    Some(groups.join(", "))
}

/// Rule 7.
fn code(caps: &Captures, text: &str) -> Option<String> {
    let token = group(caps, 0);
    let (start, end) = span(caps);
    // `\b` already treats "é" etc. as word characters; also skip decimals and dotted names.
    let dotted_after = char_at(text, end) == Some('.')
        && char_at(text, end + 1).is_some_and(|c| c.is_ascii_alphanumeric());
    if dotted_after || matches!(char_before(text, start), Some('.' | '$' | '€' | '£')) {
        return None;
    }
    let has_letter = token.chars().any(|c| c.is_ascii_uppercase());
    let has_digit = token.chars().any(|c| c.is_ascii_digit());
    if !has_letter || !has_digit {
        return None;
    }
    let letters = token.trim_start_matches(|c: char| c.is_ascii_digit());
    if letters.len() < token.len() && matches!(letters, "ST" | "ND" | "RD" | "TH") {
        return None; // an upper-case ordinal such as "21ST"
    }
    Some(spell(token))
}

#[cfg(test)]
mod tests {
    #[test]
    fn fixed_sentences_are_the_ones_said_as_written() {
        let got = super::fixed_sentences([
            "Which account would you like? You have {accounts}.",
            "account_id",
            "[A-Z]{3}[0-9]{3}",
            "Thanks. I still need {fields}.",
            "Which account would you like?",
            "It costs 3.50 dollars. Okay!",
            "yes.",
        ]);
        assert_eq!(
            got,
            vec!["Which account would you like?", "It costs 3.50 dollars.",]
        );
    }

    use super::*;

    #[test]
    fn brief_examples() {
        assert_eq!(for_speech("$125.50"), "125 dollars and 50 cents");
        assert_eq!(for_speech("$25.00"), "25 dollars");
        assert_eq!(for_speech("$1,234.05"), "1234 dollars and 5 cents");
        assert_eq!(for_speech("2025-12-01"), "December 1st, 2025");
        assert_eq!(for_speech("15:00"), "3 PM");
        assert_eq!(for_speech("3:00 PM"), "3 PM");
        assert_eq!(for_speech("11:30"), "11 30 AM");
        // Deliberate: "eigh", not "A" — espeak reads a lone "A" before a word as "uh".
        assert_eq!(for_speech("ABC123"), "eigh B C 1 2 3");
        assert_eq!(for_speech("XYZ789"), "X Y Z 7 8 9");
        assert_eq!(for_speech("Check-in on the 1st."), "Check-in on the 1st.");
    }

    #[test]
    fn money() {
        assert_eq!(for_speech("It costs $1."), "It costs 1 dollar.");
        assert_eq!(for_speech("$0.50 fee"), "50 cents fee");
        assert_eq!(for_speech("$1.01"), "1 dollar and 1 cent");
        assert_eq!(for_speech("$3.5"), "3 dollars and 50 cents");
        assert_eq!(
            for_speech("a $2.5 million deal"),
            "a 2.5 million dollars deal"
        );
        assert_eq!(for_speech("$0.125"), "0.125 dollars");
        assert_eq!(for_speech("£12.99"), "12 pounds and 99 pence");
        assert_eq!(for_speech("€1,000"), "1000 euros");
        assert_eq!(
            for_speech("Total: $125.50, thanks"),
            "Total: 125 dollars and 50 cents, thanks"
        );
        assert_eq!(for_speech("$5x"), "$5x");
    }

    #[test]
    fn dates() {
        assert_eq!(for_speech("on 2025-12-02."), "on December 2nd, 2025.");
        assert_eq!(for_speech("2026-01-03"), "January 3rd, 2026");
        assert_eq!(
            for_speech("2025-03-11 and 2025-03-22"),
            "March 11th, 2025 and March 22nd, 2025"
        );
        assert_eq!(
            for_speech("2025-12-01T15:00:00Z"),
            "December 1st, 2025 at 3 PM"
        );
        assert_eq!(for_speech("2025-02-30"), "2025-02-30");
        assert_eq!(for_speech("2025-13-01"), "2025-13-01");
        assert_eq!(for_speech("id 12025-12-011"), "id 12025-12-011");
    }

    #[test]
    fn times() {
        assert_eq!(for_speech("at 9:05"), "at 9 oh 5 AM");
        assert_eq!(for_speech("00:00"), "12 AM");
        assert_eq!(for_speech("12:00"), "12 PM");
        assert_eq!(for_speech("12:15 am"), "12 15 AM");
        assert_eq!(for_speech("23:45"), "11 45 PM");
        assert_eq!(for_speech("3:30pm"), "3 30 PM");
        assert_eq!(
            for_speech("Come at 3:00 p.m. Bring ID."),
            "Come at 3 PM. Bring ID."
        );
        assert_eq!(for_speech("at 3:00 p.m. sharp"), "at 3 PM sharp");
        assert_eq!(for_speech("Open 10:30:15 daily"), "Open 10 30 AM daily");
        assert_eq!(for_speech("at 3:00 amazing"), "at 3 AM amazing");
        assert_eq!(for_speech("24:00 and 7:99"), "24:00 and 7:99");
    }

    #[test]
    fn phones_and_codes() {
        assert_eq!(
            for_speech("Call 555-123-4567."),
            "Call 5 5 5, 1 2 3, 4 5 6 7."
        );
        assert_eq!(for_speech("(555) 123-4567"), "5 5 5, 1 2 3, 4 5 6 7");
        assert_eq!(for_speech("+1 555.123.4567"), "1, 5 5 5, 1 2 3, 4 5 6 7");
        assert_eq!(
            for_speech("Your code is QZ7A9K."),
            "Your code is Q Z 7 eigh 9 K."
        );
        // Not codes: too short/long, lower case, no digit, no letter, ordinal.
        for kept in [
            "AB12x",
            "A1B",
            "ABCDEFGHIJ12",
            "abc123",
            "NASA",
            "20251",
            "the 21ST",
            "USB",
        ] {
            assert_eq!(for_speech(kept), kept);
        }
    }

    #[test]
    fn markup_and_abbreviations() {
        assert_eq!(
            for_speech("**Great!** Your `booking` is {confirmed}"),
            "Great! Your booking is confirmed"
        );
        assert_eq!(
            for_speech("# Summary\n- first item\n* second item"),
            "Summary\nfirst item\nsecond item"
        );
        assert_eq!(
            for_speech("See [our site](https://x.example) now"),
            "See our site now"
        );
        assert_eq!(
            for_speech("order #4521 in ~5 minutes"),
            "order number 4521 in about 5 minutes"
        );
        assert_eq!(
            for_speech("fruit, e.g. apples, etc. and more"),
            "fruit, for example apples, etcetera and more"
        );
        assert_eq!(
            for_speech("Bring snacks, drinks, etc. Then go."),
            "Bring snacks, drinks, etcetera. Then go."
        );
        assert_eq!(
            for_speech("them vs. us, i.e. war"),
            "them versus us, that is war"
        );
    }

    #[test]
    fn ordinary_words_untouched() {
        let s = "Hello, I'd like to book a table for two people tomorrow evening, please.";
        assert_eq!(for_speech(s), s);
        assert_eq!(for_speech("  spaced   out\t text  "), "spaced out text");
        assert_eq!(for_speech(""), "");
    }

    #[test]
    fn never_panics_and_caps_work() {
        let odd = [
            "$",
            "$,",
            "$.",
            "$1.",
            ":",
            "1:",
            "99:99",
            "-",
            "é:00",
            "$1,2",
            "#",
            "~",
            "[](",
            "2025-",
            "ÀB12€3:00",
            "\u{0}",
        ];
        for s in odd {
            let _ = for_speech(s);
        }
        let huge = "word 12:30 $5 ".repeat(10_000);
        let out = for_speech(&huge);
        assert!(out.chars().count() < MAX_INPUT_CHARS * 2);
        assert!(out.starts_with("word 12 30 PM 5 dollars word"));
        let unbroken = "x".repeat(MAX_INPUT_CHARS + 10);
        assert_eq!(for_speech(&unbroken).len(), MAX_INPUT_CHARS);
    }
}
