//! How the master phrases choices and fills its own sentences: options read out ("You have a
//! Personal Account ending in 4567 or a Business Account ending in 7890."), which option the
//! caller picked, and `{placeholder}` lines from the template.

use crate::agent::protocol::ClarOption;
use crate::agent::slots::{self, Ordinal};
use crate::agent::speech;

/// Words that never set one option apart from another.
pub(super) const STOP: &[&str] = &[
    "the",
    "one",
    "this",
    "that",
    "about",
    "your",
    "with",
    "account",
    "ending",
    "priority",
    "please",
    "reservation",
];

/// Fills `{name}` placeholders of a template line from `vars`.
pub fn fill(line: &str, vars: &[(&str, &str)]) -> String {
    let mut out = line.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

/// "You can say Personal Account ending in 4567, or Business Account ending in 7890."
pub fn options_sentence(options: &[ClarOption]) -> String {
    let labels: Vec<String> = options
        .iter()
        .map(|o| speech::speakable_label(&o.label))
        .collect();
    match labels.len() {
        0 => String::new(),
        2 => format!(
            "You have {} or {}.",
            with_article(&labels[0]),
            with_article(&labels[1])
        ),
        _ => format!("You can say {}.", speech::join_spoken(&labels, "or")),
    }
}

fn with_article(label: &str) -> String {
    let first = label.chars().next().map(|c| c.to_ascii_lowercase());
    let lower = label.to_lowercase();
    if lower.starts_with("reservation ")
        || lower.starts_with("the ")
        || first.is_some_and(|c| c.is_ascii_digit())
    {
        return label.to_string();
    }
    if label.split_whitespace().count() == 2 && lower.ends_with(" priority") {
        return label.to_string();
    }
    match first {
        Some('a' | 'e' | 'i' | 'o' | 'u') => format!("an {label}"),
        Some(_) => format!("a {label}"),
        None => String::new(),
    }
}

/// Which option did the caller pick? By ordinal ("the first one"), by value, or by the words
/// that set one label apart from the others ("the personal one", "the one ending in 7890").
pub fn match_option(text: &str, options: &[ClarOption]) -> Option<usize> {
    if options.is_empty() {
        return None;
    }
    if let Some(i) = match_option_words(text, options) {
        return Some(i);
    }
    if let Some(digits) = slots::extract_digits(text) {
        let hits: Vec<usize> = options
            .iter()
            .enumerate()
            .filter(|(_, o)| o.label.contains(&digits) || o.value.contains(&digits))
            .map(|(i, _)| i)
            .collect();
        if hits.len() == 1 {
            return Some(hits[0]);
        }
    }
    match slots::extract_ordinal(text)? {
        Ordinal::Nth(n) if n >= 1 && n <= options.len() => Some(n - 1),
        Ordinal::Last => Some(options.len() - 1),
        _ => None,
    }
}

/// The option the caller names by the words that set it apart from the others ("the personal
/// one", "business"), if exactly one.
pub fn match_option_words(text: &str, options: &[ClarOption]) -> Option<usize> {
    let toks = slots::tokens(text);
    // Distinctive words first: "the business one" is not an ordinal.
    let label_words: Vec<Vec<String>> = options
        .iter()
        .map(|o| {
            let mut w = slots::tokens(&o.label);
            w.extend(slots::tokens(&o.value.replace('_', " ")));
            w.retain(|x| !STOP.contains(&x.as_str()) && x != "in" && x != "a" && x != "an");
            w
        })
        .collect();
    let scores: Vec<usize> = label_words
        .iter()
        .enumerate()
        .map(|(i, words)| {
            words
                .iter()
                .filter(|w| {
                    // Only words that set this option apart from every other count.
                    label_words
                        .iter()
                        .enumerate()
                        .all(|(j, other)| j == i || !other.contains(w))
                })
                .filter(|w| toks.contains(w))
                .count()
        })
        .collect();
    let best = *scores.iter().max()?;
    if best > 0 && scores.iter().filter(|s| **s == best).count() == 1 {
        return scores.iter().position(|s| *s == best);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accounts() -> Vec<ClarOption> {
        vec![
            ClarOption {
                value: "acc_456".into(),
                label: "Personal Account (ending in 4567)".into(),
            },
            ClarOption {
                value: "acc_789".into(),
                label: "Business Account (ending in 7890)".into(),
            },
        ]
    }

    #[test]
    fn clarification_answers_by_label_value_and_ordinal() {
        let o = accounts();
        assert_eq!(match_option("The personal one", &o), Some(0));
        assert_eq!(match_option("business please", &o), Some(1));
        assert_eq!(match_option("the first one", &o), Some(0));
        assert_eq!(match_option("the second one", &o), Some(1));
        assert_eq!(match_option("the last one", &o), Some(1));
        assert_eq!(
            match_option("the one ending in seven eight nine zero", &o),
            Some(1)
        );
        assert_eq!(match_option("acc 456", &o), Some(0));
        assert_eq!(match_option("the account", &o), None);
        assert_eq!(match_option("the fifth one", &o), None);
        assert_eq!(match_option("", &o), None);
    }

    #[test]
    fn options_are_spoken_naturally() {
        assert_eq!(
            options_sentence(&accounts()),
            "You have a Personal Account ending in 4567 or a Business Account ending in 7890."
        );
    }
}
