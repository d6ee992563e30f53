//! Spoken and written codes ("A B C one two three", "ABC-123") and digit strings.

use super::*;

/// One sub-word of the input, split on any punctuation except apostrophes.
pub(super) struct Piece {
    orig: String,
    lower: String,
    /// The word this piece ends had punctuation after it ("oh," "oh.").
    trail: bool,
}

pub(super) fn pieces(text: &str) -> Vec<Piece> {
    let text = normalize_apostrophes(text);
    let text = X_RAY.replace_all(&text, "xray");
    let mut out = Vec::new();
    for word in text.split_whitespace().take(MAX_TOKENS) {
        let trails = word.ends_with(|c: char| !c.is_alphanumeric() && c != '\'');
        let parts: Vec<&str> = word
            .split(|c: char| !(c.is_alphanumeric() || c == '\''))
            .map(|p| p.trim_matches('\''))
            .filter(|p| !p.is_empty())
            .collect();
        for (k, part) in parts.iter().enumerate() {
            out.push(Piece {
                orig: part.to_string(),
                lower: part.to_lowercase(),
                trail: trails && k + 1 == parts.len(),
            });
            if out.len() >= MAX_PIECES {
                return out;
            }
        }
        // A sentence ends a code ("the last digit is a four. A B C one two four"), but the
        // period of a spelled initial does not ("A.B.C. one two three").
        let core = word.trim_end_matches(|c: char| !c.is_alphanumeric());
        if word.len() > core.len()
            && word[core.len()..].contains(['.', '?', '!'])
            && core.chars().filter(|c| c.is_alphanumeric()).count() > 1
            && !core.contains('.')
        {
            out.push(Piece {
                orig: ".".into(),
                lower: ".".into(),
                trail: false,
            });
        }
    }
    out
}

/// "B as in boy", "B for boy", "B like boy" → "B": the example word only repeats the letter.
pub(super) fn drop_spelling_aids(pieces: Vec<Piece>) -> Vec<Piece> {
    let mut keep = vec![true; pieces.len()];
    let mut i = 0;
    while i < pieces.len() {
        let lower = pieces[i].lower.as_str();
        let letter = lower
            .chars()
            .next()
            .filter(|c| c.is_ascii_alphabetic() && lower.len() == 1);
        let word = |k: usize| pieces.get(k).map_or("", |p| p.lower.as_str());
        let aid_len = match (word(i + 1), word(i + 2)) {
            ("as", "in" | "for") => 2,
            ("for" | "like", _) => 1,
            _ => 0,
        };
        let example = word(i + aid_len + 1);
        if letter.is_some() && aid_len > 0 && example.len() > 1 && example.chars().next() == letter
        {
            for k in &mut keep[i + 1..=i + aid_len + 1] {
                *k = false;
            }
            i += aid_len + 2;
        } else {
            i += 1;
        }
    }
    pieces
        .into_iter()
        .zip(keep)
        .filter_map(|(p, k)| k.then_some(p))
        .collect()
}

/// A classified piece on the code/digit path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Slot {
    /// Not code material; ends a run.
    Break,
    /// Code material. `strong`: certainly meant as code (digits, spelled letters, "ABC");
    /// `spelled`: a single spoken symbol (or a "double"/"triple" group).
    Unit {
        s: String,
        strong: bool,
        spelled: bool,
    },
    /// "oh"/"o": a zero between digits; "o" is otherwise the letter O.
    Oh {
        letter: bool,
        repeated: bool,
        /// Punctuation follows: the end of a spoken number ("nine oh.").
        trail: bool,
    },
    /// "a"/"i": letters only when spelled next to other single symbols.
    Article(char),
    /// A short lowercase word ("abc"): code material only right next to digits.
    Weak(String),
}

pub(super) fn unit(s: impl Into<String>, spelled: bool) -> Slot {
    Slot::Unit {
        s: s.into(),
        strong: true,
        spelled,
    }
}

pub(super) fn spoken_digit(l: &str) -> Option<char> {
    lookup(DIGIT_WORDS, l)
}

pub(super) fn single_ascii_digit(l: &str) -> Option<char> {
    let mut chars = l.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if c.is_ascii_digit() => Some(c),
        _ => None,
    }
}

pub(super) fn letter_word(l: &str) -> Option<char> {
    lookup(NATO, l)
}

/// The single symbol a piece stands for, for "double"/"triple".
pub(super) fn single_symbol(p: &Piece, digits_only: bool) -> Option<char> {
    if let Some(d) = spoken_digit(&p.lower).or_else(|| single_ascii_digit(&p.lower)) {
        return Some(d);
    }
    if digits_only {
        return None;
    }
    let mut chars = p.lower.chars();
    if let (Some(c), None) = (chars.next(), chars.next())
        && c.is_ascii_alphabetic()
    {
        return Some(c.to_ascii_uppercase());
    }
    letter_word(&p.lower)
}

pub(super) fn classify_piece(p: &Piece, caps_reliable: bool, digits_only: bool) -> Slot {
    let l = p.lower.as_str();
    match l {
        "oh" => {
            return Slot::Oh {
                letter: false,
                repeated: false,
                trail: p.trail,
            };
        }
        "o" => {
            return Slot::Oh {
                letter: !digits_only,
                repeated: false,
                trail: p.trail,
            };
        }
        _ => {}
    }
    if let Some(d) = spoken_digit(l) {
        return unit(d.to_string(), true);
    }
    if let Some(v) = lookup(TEENS, l) {
        return unit(v.to_string(), true);
    }
    if is_digits(l) {
        return unit(l, l.len() == 1);
    }
    if digits_only {
        return Slot::Break;
    }
    if let Some(c) = letter_word(l) {
        return unit(c.to_string(), true);
    }
    if !p.orig.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Slot::Break;
    }
    let upper = p.orig.to_ascii_uppercase();
    if p.orig.bytes().any(|b| b.is_ascii_digit()) {
        // Mixed letters and digits ("ABC123", "a1b2"): code material, unless it is an
        // ordinal or a time ("2nd", "7pm", "1990s").
        if NUMBER_SUFFIXED.is_match(l) {
            return Slot::Break;
        }
        return unit(upper, false);
    }
    if l.len() == 1 {
        return match upper.chars().next() {
            Some(c) if l == "a" || l == "i" => Slot::Article(c),
            Some(c) => unit(c.to_string(), true),
            None => Slot::Break,
        };
    }
    if l.len() >= 3 && caps_reliable && p.orig.bytes().all(|b| b.is_ascii_uppercase()) {
        return unit(upper, false);
    }
    if (2..=4).contains(&l.len()) && !COMMON.contains(l) {
        return Slot::Weak(upper);
    }
    Slot::Break
}

pub(super) fn ends_with_digit(s: Option<&Slot>) -> bool {
    matches!(s, Some(Slot::Unit { s, .. }) if s.chars().last().is_some_and(|c| c.is_ascii_digit()))
}

pub(super) fn starts_with_digit(s: Option<&Slot>) -> bool {
    matches!(s, Some(Slot::Unit { s, .. }) if s.chars().next().is_some_and(|c| c.is_ascii_digit()))
}

/// Classifies pieces into code material. `digits_only` keeps only digit material.
pub(super) fn resolve_slots(pieces: &[Piece], caps_reliable: bool, digits_only: bool) -> Vec<Slot> {
    // Pass 1: classify, folding "twenty three" and "double five" into one unit.
    let mut slots = Vec::with_capacity(pieces.len());
    let mut i = 0;
    while i < pieces.len() {
        let p = &pieces[i];
        let next = pieces.get(i + 1);
        if let Some(t) = lookup(TENS, &p.lower) {
            let tens = t / 10;
            let u = next
                .and_then(|n| spoken_digit(&n.lower).or_else(|| single_ascii_digit(&n.lower)))
                .filter(|&c| c != '0');
            match u {
                Some(u) => {
                    slots.push(unit(format!("{tens}{u}"), true));
                    i += 2;
                }
                None => {
                    slots.push(unit(format!("{tens}0"), true));
                    i += 1;
                }
            }
            continue;
        }
        // "four hundred" → 400, "twenty three hundred" → 2300.
        if p.lower == "hundred"
            && let Some(Slot::Unit { s, .. }) = slots.last_mut()
            && (1..=2).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_digit())
        {
            s.push_str("00");
            i += 1;
            continue;
        }
        let repeat = match p.lower.as_str() {
            "double" => 2,
            "triple" => 3,
            _ => 0,
        };
        if repeat > 0 {
            match next {
                Some(q)
                    if repeat == 2 && !digits_only && matches!(q.lower.as_str(), "u" | "you") =>
                {
                    slots.push(unit("W", true));
                    i += 2;
                }
                Some(q) if matches!(q.lower.as_str(), "oh" | "o") => {
                    let letter = !digits_only && q.lower == "o";
                    let trail = q.trail;
                    slots.extend((0..repeat).map(|_| Slot::Oh {
                        letter,
                        repeated: true,
                        trail,
                    }));
                    i += 2;
                }
                Some(q) => match single_symbol(q, digits_only) {
                    Some(c) => {
                        slots.push(unit(c.to_string().repeat(repeat), true));
                        i += 2;
                    }
                    None => {
                        slots.push(Slot::Break);
                        i += 1;
                    }
                },
                None => {
                    slots.push(Slot::Break);
                    i += 1;
                }
            }
            continue;
        }
        slots.push(classify_piece(p, caps_reliable, digits_only));
        i += 1;
    }

    // Pass 2: "oh"/"o" between digits is zero; a lone "o" is the letter O.
    let mut i = 0;
    while i < slots.len() {
        if !matches!(slots[i], Slot::Oh { .. }) {
            i += 1;
            continue;
        }
        let start = i;
        while matches!(slots.get(i), Some(Slot::Oh { .. })) {
            i += 1;
        }
        let prev_digit = start > 0 && ends_with_digit(slots.get(start - 1));
        let next_digit = starts_with_digit(slots.get(i));
        let repeated = slots[start..i]
            .iter()
            .any(|s| matches!(s, Slot::Oh { repeated: true, .. }));
        // "two four six eight one oh." / "five five oh, please": the number ends with it.
        let ends = matches!(slots[i - 1], Slot::Oh { trail: true, .. })
            || (i == slots.len() && matches!(slots[i - 1], Slot::Oh { letter: false, .. }));
        let zero = (prev_digit && (next_digit || ends)) || (repeated && (prev_digit || next_digit));
        for s in &mut slots[start..i] {
            let letter = matches!(s, Slot::Oh { letter: true, .. });
            *s = if zero {
                unit("0", true)
            } else if letter {
                unit("O", true)
            } else {
                Slot::Break
            };
        }
    }

    // Pass 3: "a"/"i" count as letters only beside other single spoken symbols ("a b c").
    let spelled =
        |s: Option<&Slot>| matches!(s, Some(Slot::Unit { spelled: true, .. } | Slot::Article(_)));
    let article_ok: Vec<bool> = (0..slots.len())
        .map(|k| {
            matches!(slots[k], Slot::Article(_))
                && ((k > 0 && spelled(slots.get(k - 1))) || spelled(slots.get(k + 1)))
        })
        .collect();
    for (s, ok) in slots.iter_mut().zip(article_ok) {
        if let Slot::Article(c) = *s {
            *s = if ok {
                unit(c.to_string(), true)
            } else {
                Slot::Break
            };
        }
    }

    // Pass 4: a short lowercase word ("abc") counts only right next to digits ("abc 123").
    let has_digit = |s: Option<&Slot>| matches!(s, Some(Slot::Unit { s, .. }) if s.bytes().any(|b| b.is_ascii_digit()));
    let weak_ok: Vec<bool> = (0..slots.len())
        .map(|k| {
            matches!(slots[k], Slot::Weak(_))
                && ((k > 0 && has_digit(slots.get(k - 1))) || has_digit(slots.get(k + 1)))
        })
        .collect();
    for (s, ok) in slots.iter_mut().zip(weak_ok) {
        if let Slot::Weak(w) = s {
            *s = if ok {
                Slot::Unit {
                    s: std::mem::take(w),
                    strong: false,
                    spelled: false,
                }
            } else {
                Slot::Break
            };
        }
    }
    slots
}

/// Spoken alphanumeric code -> canonical uppercase string.
///
/// Handles letters spoken singly ("A B C"), the NATO alphabet ("alpha bravo charlie", "x-ray",
/// "juliett"), digit words ("one two three", "oh"/"o" as 0 between digits, "double five" = 55,
/// "triple 7", "twenty three" = 23), written forms ("abc 123", "ABC-123", "a.b.c. one-two-three")
/// and mixtures. Returns the first run of tokens (leftmost start, then longest) that,
/// concatenated, fully matches `pattern` (anchored or not, it must match the whole candidate).
///
/// Ordinary words are never codes: a pure-letter word of 3+ letters counts only when written in
/// capitals ("ABC") in a transcript that also has lowercase, or as a short uncommon word right
/// next to digits ("abc 123"); every candidate contains at least one certain code token.
pub fn extract_code(text: &str, pattern: &Regex) -> Option<String> {
    let clipped = clip(text);
    let pieces = drop_spelling_aids(pieces(clipped));
    // In an all-caps transcript capitals say nothing about intent.
    let caps_reliable = clipped.chars().any(|c| c.is_ascii_lowercase())
        || pieces
            .iter()
            .filter(|p| p.orig.len() >= 3 && p.orig.bytes().all(|b| b.is_ascii_alphabetic()))
            .count()
            <= 2;
    let slots = resolve_slots(&pieces, caps_reliable, false);
    if !slots.iter().any(|s| matches!(s, Slot::Unit { .. })) {
        return None;
    }
    // Field patterns are anchored ("^[A-Z0-9]{6}$"): a match is a whole match. For any other,
    // the leftmost match must cover the candidate (no regex is compiled per call).
    let src = pattern.as_str();
    let anchored = src.starts_with('^') && src.ends_with('$') && !src.contains('|');
    let full_match = |s: &str| {
        if anchored {
            pattern.is_match(s)
        } else {
            pattern
                .find(s)
                .is_some_and(|m| m.start() == 0 && m.end() == s.len())
        }
    };
    let is_unit = |s: &Slot| matches!(s, Slot::Unit { .. });
    let mut i = 0;
    while i < slots.len() {
        if !is_unit(&slots[i]) {
            i += 1;
            continue;
        }
        let run_end = (i..slots.len())
            .find(|&k| !is_unit(&slots[k]))
            .unwrap_or(slots.len());
        for start in i..run_end {
            let max_end = run_end.min(start + MAX_CODE_UNITS);
            for end in (start + 1..=max_end).rev() {
                let run = &slots[start..end];
                if !run
                    .iter()
                    .any(|s| matches!(s, Slot::Unit { strong: true, .. }))
                {
                    continue;
                }
                let candidate: String = run
                    .iter()
                    .filter_map(|s| match s {
                        Slot::Unit { s, .. } => Some(s.as_str()),
                        _ => None,
                    })
                    .collect();
                if candidate.len() <= MAX_CODE_CHARS && full_match(&candidate) {
                    return Some(candidate);
                }
            }
        }
        i = run_end;
    }
    None
}

/// Digits only, spoken or written: "four five six seven" -> "4567", "ending in 4567" -> "4567",
/// "forty five sixty seven" -> "4567", "double five" -> "55". Returns the longest run (the first
/// one on ties).
pub fn extract_digits(text: &str) -> Option<String> {
    let slots = resolve_slots(&pieces(clip(text)), true, true);
    let mut best = String::new();
    let mut current = String::new();
    for slot in slots.iter().chain(std::iter::once(&Slot::Break)) {
        match slot {
            Slot::Unit { s, .. } => current.push_str(s),
            _ => {
                if current.len() > best.len() {
                    best = std::mem::take(&mut current);
                }
                current.clear();
            }
        }
    }
    (!best.is_empty()).then_some(best)
}

/// Words that, next to other code material, stand for a letter or digit they sound like:
/// whisper writes what it hears ("for" for 4, "see" for C, "are" for R).
const SOUND_ALIKES: &[(&str, &str)] = &[
    ("for", "4"),
    ("fore", "4"),
    ("to", "2"),
    ("too", "2"),
    ("won", "1"),
    ("ate", "8"),
    ("see", "C"),
    ("sea", "C"),
    ("cee", "C"),
    ("are", "R"),
    ("ar", "R"),
    ("you", "U"),
    ("why", "Y"),
    ("be", "B"),
    ("pea", "P"),
    ("pee", "P"),
    ("tea", "T"),
    ("eye", "I"),
    ("ex", "X"),
    ("em", "M"),
    ("en", "N"),
    ("el", "L"),
    ("ell", "L"),
    ("ay", "A"),
    ("eh", "A"),
];

/// Words whisper writes for a spoken "A" at the start of a code ("a BC123", "of BC123").
const LEADING_A: &[&str] = &["a", "of", "eh", "hey", "ah", "uh", "ay"];

/// Whether a word (punctuation trimmed) is certainly code material: it has a digit, is a single
/// letter or digit word, a spelled letter, or a short capitalised group ("ABC").
fn codeish(word: &str) -> bool {
    let l = word.to_lowercase();
    word.bytes().any(|b| b.is_ascii_digit())
        || (word.len() == 1 && word.bytes().all(|b| b.is_ascii_alphabetic()))
        || spoken_digit(&l).is_some()
        || letter_word(&l).is_some()
        || ((2..=4).contains(&word.len()) && word.bytes().all(|b| b.is_ascii_uppercase()))
}

/// Readings of a code in `text`, best first, each fully matching `pattern`: as written; with a
/// leading "a"/"of" joined to a code that starts with letters ("a BC123" → ABC123); with words
/// that sound like a letter or digit beside other code material read as that symbol ("ABC one
/// two three for" → ABC1234, "see" → C); and with `aliases` (spoken names for a prefix, such as
/// "british airways" → BA) replaced. Distinct readings only. When none matches, the longest
/// run of code material with a digit (three symbols or more) is the one reading, for a search of
/// the nearest record ("say BC 123" → BC123); empty when there is none.
pub fn code_readings(text: &str, pattern: &Regex, aliases: &[(String, String)]) -> Vec<String> {
    let clipped = clip(text);
    let mut base = clipped.to_string();
    if !aliases.is_empty() {
        let lower = base.to_lowercase();
        for (spoken, code) in aliases {
            let spoken = spoken.to_lowercase();
            if let Some(at) = lower.find(&spoken)
                && lower.is_char_boundary(at + spoken.len())
                && base.is_char_boundary(at)
                && base.is_char_boundary(at + spoken.len())
            {
                // "Lufthansa flight four hundred": the word between name and number goes too.
                let mut end = at + spoken.len();
                let after = &lower[end..];
                let skip = after.len() - after.trim_start().len();
                for word in ["flight number", "flight", "number"] {
                    if after.trim_start().starts_with(word) {
                        end += skip + word.len();
                        break;
                    }
                }
                if base.is_char_boundary(end) {
                    base.replace_range(at..end, &format!(" {code} "));
                }
                break;
            }
        }
    }
    let words: Vec<&str> = base.split_whitespace().take(MAX_TOKENS).collect();
    let core = |w: &str| w.trim_matches(|c: char| !c.is_alphanumeric()).to_string();
    // Leading "a": "a BC123" → "ABC123".
    let mut joined: Vec<String> = Vec::with_capacity(words.len());
    let mut i = 0;
    let mut changed_a = false;
    while i < words.len() {
        let w = core(words[i]);
        let next = words.get(i + 1).map(|n| core(n)).unwrap_or_default();
        let starts_caps = next.chars().next().is_some_and(|c| c.is_ascii_uppercase())
            && next.chars().take_while(char::is_ascii_uppercase).count() <= 3
            && next
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if LEADING_A.contains(&w.to_lowercase().as_str()) && starts_caps && codeish(&next) {
            joined.push(format!("A{next}"));
            changed_a = true;
            i += 2;
            continue;
        }
        joined.push(words[i].to_string());
        i += 1;
    }
    // Sound-alikes beside code material.
    let alike = |ws: &[String]| -> Option<Vec<String>> {
        let cores: Vec<String> = ws.iter().map(|w| core(w)).collect();
        let mut out = ws.to_vec();
        let mut changed = false;
        for k in 0..ws.len() {
            let l = cores[k].to_lowercase();
            let Some((_, sym)) = SOUND_ALIKES.iter().find(|(w, _)| *w == l) else {
                continue;
            };
            let near = |j: Option<usize>| {
                j.and_then(|j| cores.get(j)).is_some_and(|c| {
                    codeish(c) && !SOUND_ALIKES.iter().any(|(w, _)| *w == c.to_lowercase())
                })
            };
            if near(k.checked_sub(1)) || near(Some(k + 1)) {
                out[k] = (*sym).to_string();
                changed = true;
            }
        }
        changed.then_some(out)
    };
    let original: Vec<String> = words.iter().map(|w| w.to_string()).collect();
    let mut variants: Vec<Vec<String>> = vec![original.clone()];
    if changed_a {
        variants.push(joined.clone());
    }
    if let Some(v) = alike(&original) {
        variants.push(v);
    }
    if changed_a && let Some(v) = alike(&joined) {
        variants.push(v);
    }
    let mut out: Vec<String> = Vec::new();
    for v in variants {
        if let Some(code) = extract_code(&v.join(" "), pattern)
            && !out.contains(&code)
        {
            out.push(code);
        }
    }
    if out.is_empty()
        && let Some(run) = longest_run(&base)
    {
        out.push(run);
    }
    out
}

/// The longest run of code material in `text` that has a digit and three symbols or more.
fn longest_run(text: &str) -> Option<String> {
    // Ordinary words written in lower or title case ("John", "say") end a run here.
    let pieces: Vec<Piece> = drop_spelling_aids(pieces(text))
        .into_iter()
        .map(|p| {
            let word = p.orig.len() >= 3
                && p.orig.bytes().all(|b| b.is_ascii_alphabetic())
                && p.orig.bytes().skip(1).all(|b| b.is_ascii_lowercase())
                && spoken_digit(&p.lower).is_none()
                && letter_word(&p.lower).is_none()
                && lookup(TEENS, &p.lower).is_none()
                && lookup(TENS, &p.lower).is_none();
            if word {
                Piece {
                    orig: ".".into(),
                    lower: ".".into(),
                    trail: false,
                }
            } else {
                p
            }
        })
        .collect();
    let slots = resolve_slots(&pieces, true, false);
    let mut best = String::new();
    let mut current = String::new();
    for slot in slots.iter().chain(std::iter::once(&Slot::Break)) {
        match slot {
            Slot::Unit { s, .. } => current.push_str(s),
            _ => {
                if current.len() > best.len() && current.bytes().any(|b| b.is_ascii_digit()) {
                    best = std::mem::take(&mut current);
                }
                current.clear();
            }
        }
    }
    (best.len() >= 3 && best.len() <= MAX_CODE_CHARS).then_some(best)
}
