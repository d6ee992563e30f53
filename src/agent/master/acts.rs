//! Conversation acts that are not requests: asking the bot to repeat itself, dropping the task in
//! hand, greetings and thanks, and the cues of a correction ("no, I said …") or a change of mind
//! ("actually, cancel it instead"). Rasa's conversation-repair patterns are the reference users
//! know. Pure functions over the caller's words.

use crate::agent::slots;

/// What a whole utterance does, when it is not a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// "Say that again", "sorry?", "what was that?"
    Repeat,
    /// "Forget it", "never mind", "scratch that": drop the task in hand.
    Drop,
    Hello,
    HowAreYou,
    Thanks,
}

/// Hesitations and politeness around an act ("um, sorry, what?").
const FILLERS: &[&str] = &[
    "um", "uh", "er", "erm", "hmm", "oh", "ah", "ugh", "please", "i'm", "im", "so", "just", "can",
    "you", "wait", "actually", "no", "let's", "lets", "there", "could", "would", "hey", "okay",
    "ok", "well", "a", "the", "sir", "ma'am",
];

const REPEAT: &[&[&str]] = &[
    &["say", "that", "again"],
    &["say", "it", "again"],
    &["say", "again"],
    &["repeat", "that"],
    &["repeat", "it"],
    &["repeat"],
    &["come", "again"],
    &["pardon"],
    &["pardon", "me"],
    &["sorry"],
    &["sorry", "what"],
    &["sorry", "what", "was", "that"],
    &["what"],
    &["what", "was", "that"],
    &["what", "did", "you", "say"],
    &["i", "didn't", "catch", "that"],
    &["i", "didn't", "hear", "that"],
    &["i", "didn't", "hear", "you"],
    &["i", "missed", "that"],
    &["one", "more", "time"],
    &["excuse", "me"],
    &["huh"],
    &["cut", "out"],
    &["breaking", "up"],
    &["didn't", "hear"],
];

const DROP: &[&[&str]] = &[
    &["forget", "it"],
    &["forget", "that"],
    &["forget", "about", "it"],
    &["never", "mind"],
    &["nevermind"],
    &["scratch", "that"],
    &["cancel", "that"],
    &["stop"],
    &["don't", "bother"],
    &["leave", "it"],
    &["i", "changed", "my", "mind"],
    &["don't", "worry", "about", "it"],
    &["drop", "it"],
    &["skip", "it"],
    &["forget", "the", "whole", "thing"],
    &["doesn't", "matter"],
    &["don't", "want", "to", "do", "that"],
];

const HELLO: &[&[&str]] = &[
    &["hi"],
    &["hello"],
    &["hey"],
    &["hi", "there"],
    &["hello", "there"],
    &["good", "morning"],
    &["good", "afternoon"],
    &["good", "evening"],
];

const HOW_ARE_YOU: &[&[&str]] = &[
    &["how", "are", "you"],
    &["how", "are", "you", "doing"],
    &["how's", "it", "going"],
    &["how", "is", "it", "going"],
];

const THANKS: &[&[&str]] = &[
    &["thanks"],
    &["thank", "you"],
    &["thank", "you", "so", "much"],
    &["thanks", "a", "lot"],
    &["great", "thanks"],
    &["perfect", "thanks"],
    &["cheers"],
];

/// The act a whole utterance performs, if it is nothing but that act (fillers aside).
pub fn classify(text: &str) -> Option<Act> {
    let toks = slots::tokens(text);
    let core: Vec<&str> = toks
        .iter()
        .map(String::as_str)
        .filter(|t| !FILLERS.contains(t))
        .collect();
    // Patterns are compared with the fillers dropped on both sides.
    let same = |p: &[&str], words: &[&str]| {
        let p: Vec<&str> = p.iter().copied().filter(|t| !FILLERS.contains(t)).collect();
        p == words
    };
    let is = |table: &[&[&str]]| table.iter().any(|p| same(p, &core));
    // "Hi, how are you?" is one act: answer the question.
    let without_hello: Vec<&str> = core
        .iter()
        .copied()
        .skip_while(|t| matches!(*t, "hi" | "hello" | "hey" | "there"))
        .collect();
    if core.is_empty() {
        return None;
    }
    // A repeat or drop phrase with little else around it ("Huh? You cut out there.").
    let around = |table: &[&[&str]]| {
        table.iter().any(|p| {
            let p: Vec<&str> = p.iter().copied().filter(|t| !FILLERS.contains(t)).collect();
            // Not "what …": "sorry, what time is check-in?" is a question of its own.
            (p.len() >= 2 || matches!(p.first(), Some(&"huh" | &"pardon")))
                && !p.contains(&"what")
                && p.len() <= core.len()
                && (0..=core.len() - p.len()).any(|i| core[i..i + p.len()] == p[..])
                && core.len() - p.len() <= 3
        })
    };
    if is(REPEAT) || around(REPEAT) {
        Some(Act::Repeat)
    } else if is(DROP) || around(DROP) {
        Some(Act::Drop)
    } else if HOW_ARE_YOU.iter().any(|p| same(p, &without_hello)) {
        Some(Act::HowAreYou)
    } else if is(HELLO) {
        Some(Act::Hello)
    } else if is(THANKS) {
        Some(Act::Thanks)
    } else {
        None
    }
}

/// Words that open an answer without carrying it ("no, sorry, …", "well, actually, …").
const OPENERS: &[&str] = &[
    "no", "nope", "nah", "sorry", "oh", "um", "uh", "wait", "actually", "well", "hold", "on",
    "hang", "yeah", "yes", "ok", "okay", "so", "and", "but", "hmm", "one", "more", "thing", "also",
    "oops",
];

/// Splits "No, sorry, the name is John Doe" into (said no, "the name is John Doe"): whether the
/// utterance opens with a no, and what follows the opening words (empty when nothing does).
pub fn strip_opening(text: &str) -> (bool, String) {
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut no = false;
    let mut k = 0;
    while let Some(w) = words.get(k) {
        let t = w
            .trim_matches(|c: char| !c.is_alphanumeric() && c != '\'')
            .to_lowercase();
        if t.is_empty() {
            k += 1;
            continue;
        }
        if !OPENERS.contains(&t.as_str()) {
            break;
        }
        no |= matches!(t.as_str(), "no" | "nope" | "nah");
        k += 1;
    }
    (no, words[k.min(words.len())..].join(" "))
}

/// Whether the words after an opening "no" only close the call ("no thanks", "no, that's all,
/// goodbye"): nothing in them asks for anything.
pub fn only_closing(rest: &str) -> bool {
    const CLOSING: &[&str] = &[
        "right",
        "correct",
        "thanks",
        "thank",
        "you",
        "that's",
        "thats",
        "that",
        "is",
        "it",
        "all",
        "everything",
        "i'm",
        "im",
        "good",
        "fine",
        "bye",
        "goodbye",
        "have",
        "a",
        "nice",
        "great",
        "day",
        "for",
        "now",
        "today",
        "all",
        "set",
        "done",
        "very",
        "much",
        "so",
        "cheers",
        "one",
        "take",
        "care",
        "nothing",
        "else",
        "we're",
        "were",
        "i",
        "think",
        "sorry",
        "okay",
        "ok",
    ];
    slots::tokens(rest)
        .iter()
        .all(|t| CLOSING.contains(&t.as_str()))
}

/// Cues that the caller is correcting something already said ("no, I said", "I meant",
/// "actually", "the name is actually", "not X").
pub fn corrects(text: &str) -> bool {
    let toks = slots::tokens(text);
    let has = |p: &[&str]| {
        toks.windows(p.len())
            .any(|w| w.iter().zip(p).all(|(a, b)| a == b))
    };
    [
        &["i", "said"][..],
        &["i", "meant"],
        &["i", "mean"],
        &["actually"],
        &["not"],
        &["wrong"],
        &["no"],
        &["sorry"],
        &["correction"],
        &["should", "be"],
        &["it's", "actually"],
        &["instead"],
    ]
    .iter()
    .any(|p| has(p))
}

/// Cues of a change of mind about the task ("actually, cancel it instead", "on second thought",
/// "let's not", "I've changed my mind").
pub fn changes_mind(text: &str) -> bool {
    let toks = slots::tokens(text);
    let has = |p: &[&str]| {
        toks.windows(p.len())
            .any(|w| w.iter().zip(p).all(|(a, b)| a == b))
    };
    toks.iter()
        .any(|t| matches!(t.as_str(), "instead" | "actually" | "rather" | "forget"))
        || [
            &["change", "of"][..],
            &["changed", "my", "mind"],
            &["second", "thought"],
            &["you", "know", "what"],
            &["let's", "not"],
            &["don't", "bother"],
            &["not", "bother"],
        ]
        .iter()
        .any(|p| has(p))
}

/// Words that may open a clause without carrying it ("and oh, how much …", "then I need …").
const CLAUSE_OPENERS: &[&str] = &[
    "and", "also", "then", "oh", "um", "uh", "so", "well", "plus", "but", "first", "second",
];

/// Words that start a request ("and what's my bill", "and can you …").
const REQUEST_STARTS: &[&str] = &[
    "what", "what's", "whats", "how", "can", "could", "would", "i", "i'd", "i'm", "when", "is",
    "please", "tell", "find", "give", "check", "make", "confirm", "cancel", "book", "pay", "where",
    "do", "does", "will",
];

fn bare(w: &str) -> String {
    w.trim_matches(|c: char| !c.is_alphanumeric() && c != '\'')
        .to_lowercase()
}

/// Clauses of an utterance that may each be a request: "confirm my reservation and what's my
/// bill?" → two. Splits at sentence ends, before "and" (or "and also", "and oh", …) when a
/// request follows, before "also"/"plus", and before "then" after a comma; never inside short
/// clauses (a name like "John and Jane").
pub fn request_clauses(text: &str) -> Vec<String> {
    let mut out: Vec<String> = vec![];
    let mut current: Vec<&str> = vec![];
    let words: Vec<&str> = text.split_whitespace().take(slots::MAX_TOKENS).collect();
    let flush = |cur: &mut Vec<&str>, out: &mut Vec<String>| {
        if cur.len() >= 2 {
            out.push(cur.join(" "));
        } else if let (Some(last), false) = (out.last_mut(), cur.is_empty()) {
            last.push(' ');
            last.push_str(&cur.join(" "));
        }
        cur.clear();
    };
    for (i, w) in words.iter().enumerate() {
        let lower = bare(w);
        let splits_before = match lower.as_str() {
            "and" => {
                let mut k = i + 1;
                let mut skipped = false;
                while words
                    .get(k)
                    .is_some_and(|n| CLAUSE_OPENERS.contains(&bare(n).as_str()))
                {
                    skipped = true;
                    k += 1;
                }
                skipped
                    || words
                        .get(k)
                        .is_some_and(|n| REQUEST_STARTS.contains(&bare(n).as_str()))
            }
            "also" | "plus" => true,
            "then" => i > 0 && words[i - 1].ends_with(','),
            _ => false,
        };
        if splits_before && current.len() >= 3 {
            flush(&mut current, &mut out);
        }
        current.push(w);
        if w.ends_with(['.', '?', '!']) && current.len() >= 3 {
            flush(&mut current, &mut out);
        }
    }
    flush(&mut current, &mut out);
    out
}

/// A request as the router should read it: without its opening "and oh, then", without the
/// codes and the name spelled in it, and without a short aside about urgency ("No rush, but …"),
/// none of which says what is asked.
pub fn routing_text(clause: &str) -> String {
    let name_words: Vec<String> = slots::extract_name(clause)
        .map(|n| n.split_whitespace().map(|w| w.to_lowercase()).collect())
        .unwrap_or_default();
    let parts: Vec<&str> = clause
        .split([',', ';', '.', '!'])
        .filter(|p| {
            let aside = p.split_whitespace().count() <= 4 && slots::extract_urgency(p).is_some();
            !p.trim().is_empty() && !aside
        })
        .collect();
    let joined = parts.join(",");
    let words: Vec<&str> = joined.split_whitespace().collect();
    let start = words
        .iter()
        .position(|w| !CLAUSE_OPENERS.contains(&bare(w).as_str()))
        .unwrap_or(words.len());
    let kept: Vec<&str> = words[start..]
        .iter()
        .filter(|w| {
            let b = bare(w);
            let letter = w.trim_matches(|c: char| !c.is_alphanumeric());
            !(b.chars().any(|c| c.is_ascii_digit())
                || (b.chars().count() == 1 && !matches!(letter, "a" | "I"))
                || name_words.contains(&b)
                || matches!(
                    b.as_str(),
                    "one"
                        | "two"
                        | "three"
                        | "four"
                        | "five"
                        | "six"
                        | "seven"
                        | "eight"
                        | "nine"
                        | "zero"
                        | "oh"
                ))
        })
        .copied()
        .collect();
    if kept.is_empty() {
        clause.to_string()
    } else {
        kept.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acts_are_whole_utterances() {
        for t in [
            "Say that again?",
            "sorry?",
            "Sorry, what?",
            "Could you repeat that please?",
            "pardon me",
            "What was that?",
        ] {
            assert_eq!(classify(t), Some(Act::Repeat), "{t}");
        }
        for t in [
            "Forget it.",
            "never mind",
            "Oh, scratch that.",
            "cancel that",
        ] {
            assert_eq!(classify(t), Some(Act::Drop), "{t}");
        }
        assert_eq!(classify("Hi,"), Some(Act::Hello));
        assert_eq!(classify("Hello there."), Some(Act::Hello));
        assert_eq!(classify("Hi, how are you?"), Some(Act::HowAreYou));
        assert_eq!(classify("Thank you."), Some(Act::Thanks));
        for t in [
            "Sorry, what time is check-in?",
            "What about parking?",
            "No, not that one",
            "Sorry, the name is John Doe",
            "What's my bill this month?",
            "Hi, I want to confirm my reservation",
            "cancel my reservation",
            "",
        ] {
            assert_eq!(classify(t), None, "{t}");
        }
    }

    #[test]
    fn openings_are_split_from_what_follows() {
        assert_eq!(
            strip_opening("No, sorry, the name is John Doe"),
            (true, "the name is John Doe".to_string())
        );
        assert_eq!(
            strip_opening("No, that's all."),
            (true, "that's all.".to_string())
        );
        assert!(only_closing("that's all, thanks, bye"));
        assert!(!only_closing("the name is John Doe"));
        assert!(!only_closing("what's my bill this month?"));
        assert_eq!(
            strip_opening("Yes, what's my bill?"),
            (false, "what's my bill?".to_string())
        );
    }

    #[test]
    fn corrections_and_changes_of_mind_have_cues() {
        assert!(corrects("No, I said A B C one two four"));
        assert!(corrects("the name is actually Jane Smith"));
        assert!(!corrects("the name is Jane Smith"));
        assert!(changes_mind("actually, cancel it instead"));
        assert!(!changes_mind("cancel my reservation"));
    }

    #[test]
    fn two_requests_in_one_breath_are_two_clauses() {
        assert_eq!(
            request_clauses("Confirm my reservation ABC123 and also what's my bill this month?"),
            [
                "Confirm my reservation ABC123",
                "and also what's my bill this month?"
            ]
        );
        assert_eq!(
            request_clauses("Can you confirm my booking? And what's my bill?"),
            ["Can you confirm my booking?", "And what's my bill?"]
        );
        assert_eq!(
            request_clauses("It's under John and Jane Doe"),
            ["It's under John and Jane Doe"]
        );
        assert_eq!(
            request_clauses("Confirm it, ABC123, John Doe, and oh, how much is my bill?").len(),
            2
        );
        assert_eq!(
            request_clauses("make sure it's good, then I need my bill for this month.").len(),
            2
        );
        assert_eq!(
            routing_text("and oh, is reservation A B C one two three still on"),
            "is reservation still on"
        );
        assert_eq!(
            routing_text("No rush, but the lamp by the bed is out."),
            "the lamp by the bed is out"
        );
        assert_eq!(
            routing_text("make sure reservation ABC123 for John Doe is good"),
            "make sure reservation for is good"
        );
    }
}
