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
    "um", "uh", "er", "erm", "hmm", "oh", "ah", "please", "i'm", "im", "so", "just", "can", "you",
    "could", "would", "hey", "okay", "ok", "well", "a", "the", "sir", "ma'am",
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
    if is(REPEAT) {
        Some(Act::Repeat)
    } else if is(DROP) {
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

/// Cues of a change of mind about the task ("actually, cancel it instead", "rather").
pub fn changes_mind(text: &str) -> bool {
    let toks = slots::tokens(text);
    toks.iter()
        .any(|t| matches!(t.as_str(), "instead" | "actually" | "rather"))
        || toks.windows(2).any(|w| w[0] == "change" && w[1] == "of")
}

/// Clauses of an utterance that may each be a request: "confirm my reservation and what's my
/// bill?" → two. Splits on sentence ends and on "and also", "and what", "also", "then"; never
/// inside short clauses (a name like "John and Jane").
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
        let lower = w
            .trim_matches(|c: char| !c.is_alphanumeric() && c != '\'')
            .to_lowercase();
        let next = words
            .get(i + 1)
            .map(|n| {
                n.trim_matches(|c: char| !c.is_alphanumeric() && c != '\'')
                    .to_lowercase()
            })
            .unwrap_or_default();
        let splits_before = (lower == "and"
            && matches!(
                next.as_str(),
                "also"
                    | "what"
                    | "what's"
                    | "whats"
                    | "how"
                    | "can"
                    | "could"
                    | "i"
                    | "i'd"
                    | "i'm"
                    | "then"
                    | "when"
                    | "is"
                    | "please"
            ))
            || lower == "also"
            || lower == "plus";
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
    }
}
