//! Answers to the agent's questions: choices from a list ("the second one") and yes/no.

use super::*;

/// A position in a list the agent read out: "the second one" → `Nth(2)`, "the last one" → `Last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ordinal {
    /// 1-based.
    Nth(usize),
    Last,
}

/// A choice from a list: "the first one" → `Nth(1)`, "second", "the 2nd", "number two", "option
/// three", "the last one" → `Last`. Only ordinals and "number/option/choice N" count, not bare
/// numbers ("the personal one" → `None`). Positions such as "second to last" are `None`.
pub fn extract_ordinal(text: &str) -> Option<Ordinal> {
    let toks = content_tokens(text);
    let t = |k: usize| toks.get(k).map_or("", String::as_str);
    for i in 0..toks.len() {
        let prev = if i > 0 { t(i - 1) } else { "" };
        let w = t(i);
        if matches!(w, "number" | "option" | "choice" | "item") {
            let next = t(i + 1);
            let n = if is_digits(next) && next.len() <= 4 {
                next.parse::<i64>().ok()
            } else {
                number_words_at(&toks, i + 1, 3).map(|(v, _)| v)
            };
            if let Some(n) = n
                .filter(|n| (1..=1000).contains(n))
                .and_then(|n| usize::try_from(n).ok())
            {
                return Some(Ordinal::Nth(n));
            }
            continue;
        }
        if matches!(w, "last" | "final") {
            let next = t(i + 1);
            let time_word = matches!(
                strip_possessive(next),
                "name"
                    | "names"
                    | "month"
                    | "week"
                    | "weekend"
                    | "year"
                    | "night"
                    | "time"
                    | "minute"
                    | "second"
                    | "call"
                    | "payment"
                    | "bill"
                    | "statement"
            ) || lookup(MONTHS, next).is_some()
                || lookup(WEEKDAYS, next).is_some();
            if prev == "at" || time_word {
                continue;
            }
            return Some(Ordinal::Last);
        }
        if let Some((n, used)) = ordinal_at(&toks, i) {
            let next = t(i + used);
            if next == "last" || (next == "to" && t(i + used + 1) == "last") {
                return None;
            }
            if n == 2 && matches!(prev, "a" | "one" | "per" | "just" | "split") {
                continue;
            }
            if n == 1
                && (prev == "at"
                    || matches!(next, "name" | "names" | "time")
                    || (next == "of" && t(i + used + 1) == "all"))
            {
                continue;
            }
            if n <= 1000 {
                return Some(Ordinal::Nth(n));
            }
        }
    }
    None
}

/// Yes/no: "yes", "yeah", "yep", "sure", "correct", "that's right", "please do", "go ahead",
/// "absolutely", "ok" → `Some(true)`; "no", "nope", "nah", "don't", "not now", "no thanks",
/// "that's all", "cancel that" → `Some(false)`. A negative anywhere wins ("yes, no, not yet" →
/// false); uncertainty ("I'm not sure", "I don't know", "maybe") → `None`. Whole words only.
pub fn extract_yes_no(text: &str) -> Option<bool> {
    let toks: Vec<String> = word_tokens(text)
        .into_iter()
        .map(|t| t.replace('\'', ""))
        .collect();
    let (mut yes, mut no, mut unsure) = (false, false, false);
    let mut i = 0;
    while i < toks.len() {
        let rest = &toks[i..];
        let best = YES_NO_PHRASES
            .iter()
            .filter(|(p, _)| {
                p.len() <= rest.len() && p.iter().zip(rest).all(|(a, b)| *a == b.as_str())
            })
            .max_by_key(|(p, _)| p.len());
        match best {
            Some((p, polarity)) => {
                match polarity {
                    Polarity::Yes => yes = true,
                    Polarity::No => no = true,
                    Polarity::Unsure => unsure = true,
                }
                i += p.len();
            }
            None => i += 1,
        }
    }
    if no {
        Some(false)
    } else if unsure {
        None
    } else if yes {
        Some(true)
    } else {
        None
    }
}
