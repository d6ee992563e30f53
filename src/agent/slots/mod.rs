//! Slot extraction: spoken transcripts → typed values.
//!
//! Callers reach Switchboard through speech recognition (whisper), so every value the agent
//! needs — booking codes, names, dates, billing months, menu choices, yes/no answers, amounts,
//! digit strings — arrives as loosely cased, loosely punctuated spoken English ("a b c one two
//! three", "December first", "a hundred twenty five dollars fifty"). This module turns such text
//! into typed values so the rest of the agent never parses free text itself.
//!
//! Guarantees:
//! - every function is pure: no I/O, no mutable global state (only lazily built constant regexes
//!   and word tables);
//! - no function panics, whatever the input (empty, unicode, huge);
//! - work is bounded: only the first [`MAX_INPUT_BYTES`] bytes and [`MAX_TOKENS`] words of an
//!   input are looked at;
//! - when a value cannot be read with reasonable confidence the answer is `None`, not a guess
//!   (e.g. ordinary words are never spelled out into a code).

use std::collections::HashSet;
use std::sync::LazyLock;

use chrono::{Datelike, Days, NaiveDate, Weekday};
use regex::Regex;

/// Only this many bytes of an input are considered (cut back to a char boundary).
pub const MAX_INPUT_BYTES: usize = 4096;
/// Only this many whitespace-separated words of an input are considered.
pub const MAX_TOKENS: usize = 200;
/// Cap on sub-word pieces (words split on '-', '.', ...) for the code and digit paths.
const MAX_PIECES: usize = 2 * MAX_TOKENS;
/// Longest run of pieces tried as one code, and longest code string tried against a pattern.
const MAX_CODE_UNITS: usize = 32;
const MAX_CODE_CHARS: usize = 64;

mod answer;
mod code;
mod date;
mod name;
mod number;
mod tables;
#[cfg(test)]
mod tests;
mod urgency;

pub use answer::*;
pub use code::*;
pub use date::*;
pub use name::*;
pub use number::*;
use tables::*;
pub use urgency::*;

// ---------------------------------------------------------------------------------------------
// Tokenizing
// ---------------------------------------------------------------------------------------------

/// The first [`MAX_INPUT_BYTES`] bytes of `text`, cut back to a char boundary.
pub(super) fn clip(text: &str) -> &str {
    if text.len() <= MAX_INPUT_BYTES {
        return text;
    }
    let mut end = MAX_INPUT_BYTES;
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or("")
}

/// Typographic apostrophes and backticks → `'`.
pub(super) fn normalize_apostrophes(text: &str) -> String {
    text.chars()
        .map(|c| {
            if matches!(c, '\u{2018}' | '\u{2019}' | '\u{02BC}' | '`') {
                '\''
            } else {
                c
            }
        })
        .collect()
}

pub(super) fn trim_punct(word: &str) -> &str {
    word.trim_matches(|c: char| !c.is_alphanumeric())
}

/// Lowercase, strip punctuation around words (inner punctuation such as "abc-123", "it's",
/// "125.50" is kept), split on whitespace. At most [`MAX_TOKENS`] tokens.
pub fn tokens(text: &str) -> Vec<String> {
    normalize_apostrophes(clip(text))
        .split_whitespace()
        .map(trim_punct)
        .filter(|t| !t.is_empty())
        .take(MAX_TOKENS)
        .map(str::to_lowercase)
        .collect()
}

/// [`tokens`], with hyphenated words split ("twenty-five" → "twenty", "five").
pub(super) fn word_tokens(text: &str) -> Vec<String> {
    tokens(text)
        .iter()
        .flat_map(|t| {
            t.split('-')
                .map(trim_punct)
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// [`word_tokens`] without hesitations ("december, uh, the fifth").
pub(super) fn content_tokens(text: &str) -> Vec<String> {
    word_tokens(text)
        .into_iter()
        .filter(|t| !NAME_FILLERS.contains(&t.as_str()))
        .collect()
}

pub(super) fn lookup<T: Copy>(table: &[(&str, T)], key: &str) -> Option<T> {
    table.iter().find(|(k, _)| *k == key).map(|&(_, v)| v)
}

pub(super) fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

pub(super) fn strip_possessive(s: &str) -> &str {
    s.strip_suffix("'s").unwrap_or(s)
}
