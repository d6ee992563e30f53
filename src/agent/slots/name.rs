//! People's names from speech: cues ("the name is", "under"), bare names, title case.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NameMode {
    /// After "name is"/"under": any uncommon word.
    Strong,
    /// After "it's"/"this is": the word must look like a name.
    Weak,
    /// No cue at all: the whole utterance must be the name.
    Bare,
}

pub(super) struct NameTok {
    core: String,
    lower: String,
    /// Followed by , . ; : ! ? — a name does not continue past it.
    ends_clause: bool,
}

pub(super) fn name_tokens(text: &str) -> Vec<NameTok> {
    let mut out: Vec<NameTok> = Vec::new();
    for w in text.split_whitespace().take(MAX_TOKENS) {
        let core = trim_punct(w);
        let trail_start = w.trim_end_matches(|c: char| !c.is_alphanumeric()).len();
        let ends_clause = w
            .get(trail_start..)
            .is_some_and(|t| t.contains([',', '.', ';', ':', '!', '?']));
        if core.is_empty() {
            if ends_clause && let Some(last) = out.last_mut() {
                last.ends_clause = true;
            }
            continue;
        }
        out.push(NameTok {
            core: core.to_string(),
            lower: core.to_lowercase(),
            ends_clause,
        });
    }
    out
}

pub(super) fn is_name_word(t: &NameTok, mode: NameMode, mixed_case: bool, first: bool) -> bool {
    let core = t.core.as_str();
    let letters = core.chars().filter(|c| c.is_alphabetic()).count();
    if letters == 0
        || !core
            .chars()
            .all(|c| c.is_alphabetic() || c == '\'' || c == '-')
    {
        return false;
    }
    let lower = t.lower.as_str();
    if COMMON.contains(lower) || NAME_FILLERS.contains(&lower) {
        return false;
    }
    let starts_upper = core.chars().next().is_some_and(char::is_uppercase);
    if letters == 1 {
        // A middle initial ("John D. Smith").
        return !first && starts_upper;
    }
    match mode {
        NameMode::Strong => true,
        NameMode::Weak | NameMode::Bare if mixed_case => {
            starts_upper && core.chars().any(char::is_lowercase)
        }
        NameMode::Weak | NameMode::Bare => !lower.ends_with("ing"),
    }
}

/// "john" → "John", "o'brien" → "O'Brien", "mary-jane" → "Mary-Jane"; "McDonald" is kept.
pub(super) fn title_case(word: &str) -> String {
    let starts_upper = word.chars().next().is_some_and(char::is_uppercase);
    if starts_upper && word.chars().any(char::is_lowercase) {
        return word.to_string();
    }
    let mut out = String::with_capacity(word.len());
    let mut cap_next = true;
    let mut seg_len = 0;
    for c in word.chars() {
        match c {
            '-' => {
                out.push(c);
                cap_next = true;
                seg_len = 0;
            }
            '\'' => {
                out.push(c);
                cap_next = seg_len == 1;
                seg_len = 0;
            }
            _ => {
                if cap_next {
                    out.extend(c.to_uppercase());
                } else {
                    out.extend(c.to_lowercase());
                }
                cap_next = false;
                seg_len += 1;
            }
        }
    }
    out
}

/// Up to four name words from `k`; returns them and the index after the last one.
pub(super) fn collect_name(
    toks: &[NameTok],
    mut k: usize,
    mode: NameMode,
    mixed_case: bool,
) -> Option<(Vec<String>, usize)> {
    while toks.get(k).is_some_and(|t| {
        NAME_FILLERS.contains(&t.lower.as_str()) || NAME_TITLES.contains(&t.lower.as_str())
    }) {
        k += 1;
    }
    let mut words: Vec<String> = Vec::new();
    let mut particles = 0;
    while let Some(t) = toks.get(k) {
        if words.len() >= 4 {
            break;
        }
        let first = words.is_empty();
        if !first
            && !t.ends_clause
            && NAME_PARTICLES.contains(&t.lower.as_str())
            && toks
                .get(k + 1)
                .is_some_and(|n| is_name_word(n, mode, mixed_case, false))
        {
            words.push(t.core.clone());
            particles += 1;
            k += 1;
            continue;
        }
        if !is_name_word(t, mode, mixed_case, first) {
            break;
        }
        words.push(title_case(&t.core));
        particles = 0;
        k += 1;
        if t.ends_clause {
            break;
        }
    }
    // A trailing particle (cut off by the four-word limit) is not part of the name.
    for _ in 0..particles {
        words.pop();
        k -= 1;
    }
    (!words.is_empty()).then_some((words, k))
}

/// A person's name: "it's John Doe", "the name is John Doe", "name's john doe", "my name is John
/// Doe", "under John Doe", "John Doe" alone, "sure it's ABC123 and the name is John Doe" → "John
/// Doe". Title-cased, at most four words, stops at common words (and, please, ...) and clause
/// punctuation, never contains digits, never a filler such as "it's" or "yes". `None` if nothing
/// name-like.
pub fn extract_name(text: &str) -> Option<String> {
    let clipped = normalize_apostrophes(clip(text));
    let toks = name_tokens(&clipped);
    let lowers: Vec<&str> = toks.iter().map(|t| t.lower.as_str()).collect();
    let mixed_case =
        clipped.chars().any(char::is_uppercase) && clipped.chars().any(char::is_lowercase);
    for (cues, mode) in [
        (STRONG_NAME_CUES, NameMode::Strong),
        (WEAK_NAME_CUES, NameMode::Weak),
    ] {
        for i in 0..toks.len() {
            let rest = lowers.get(i..).unwrap_or(&[]);
            if let Some(cue) = cues.iter().find(|c| rest.starts_with(c))
                && let Some((words, _)) = collect_name(&toks, i + cue.len(), mode, mixed_case)
            {
                return Some(words.join(" "));
            }
        }
    }
    // Past "yes", "sure", "hi", … at the start.
    let lead = toks
        .iter()
        .take_while(|t| BARE_LEADING.contains(&t.lower.as_str()))
        .count();
    // "Tom Becker here, …": a name that introduces the caller.
    if let Some((words, end)) = collect_name(&toks, lead, NameMode::Weak, mixed_case)
        && toks.get(end).is_some_and(|t| t.lower == "here")
        && words.len() >= 2
    {
        return Some(words.join(" "));
    }
    // "It's in Jane Smith's name": the words before a possessive "name".
    for i in 0..toks.len() {
        if toks.get(i + 1).is_some_and(|t| t.lower == "name")
            && let Some(last) = toks[i].core.strip_suffix("'s")
        {
            let mut words = vec![title_case(last)];
            let mut k = i;
            while k > 0 && words.len() < 4 {
                let t = &toks[k - 1];
                if t.ends_clause || !is_name_word(t, NameMode::Weak, mixed_case, false) {
                    break;
                }
                words.insert(0, title_case(&t.core));
                k -= 1;
            }
            if words.len() >= 2 && is_name_word(&toks[i], NameMode::Weak, mixed_case, false) {
                return Some(words.join(" "));
            }
        }
    }
    // No cue: the utterance itself must be just a name ("John Doe", "Sure, John Doe, thanks").
    let (words, end) = collect_name(&toks, lead, NameMode::Bare, mixed_case)?;
    let rest_polite = toks
        .get(end..)
        .unwrap_or(&[])
        .iter()
        .all(|t| POLITE.contains(&t.lower.as_str()));
    (words.len() >= 2 && rest_polite).then(|| words.join(" "))
}
