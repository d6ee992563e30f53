//! How urgent the caller says something is: "it's really urgent", "asap", "not urgent",
//! "whenever you get a chance", "medium, I guess".

use super::*;

/// A priority as a support ticket takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    Low,
    Medium,
    High,
}

impl Urgency {
    pub fn as_str(self) -> &'static str {
        match self {
            Urgency::Low => "low",
            Urgency::Medium => "medium",
            Urgency::High => "high",
        }
    }
}

/// Phrases, matched on tokens with apostrophes removed; the longest match at a position wins, so
/// "not urgent" is low rather than "urgent".
pub(super) const URGENCY_PHRASES: &[(&[&str], Urgency)] = &[
    (&["not", "urgent"], Urgency::Low),
    (&["isnt", "urgent"], Urgency::Low),
    (&["not", "that", "urgent"], Urgency::Low),
    (&["not", "very", "urgent"], Urgency::Low),
    (&["not", "really", "urgent"], Urgency::Low),
    (&["not", "an", "emergency"], Urgency::Low),
    (&["not", "a", "big", "deal"], Urgency::Medium),
    (&["kind", "of", "important"], Urgency::Medium),
    (&["fairly", "important"], Urgency::Medium),
    (&["pretty", "important"], Urgency::Medium),
    (&["no", "rush"], Urgency::Low),
    (&["no", "hurry"], Urgency::Low),
    (&["whenever"], Urgency::Low),
    (&["when", "you", "get", "a", "chance"], Urgency::Low),
    (&["low", "priority"], Urgency::Low),
    (&["low"], Urgency::Low),
    (&["not", "important"], Urgency::Low),
    (&["can", "wait"], Urgency::Low),
    (&["medium"], Urgency::Medium),
    (&["medium", "priority"], Urgency::Medium),
    (&["moderate"], Urgency::Medium),
    (&["normal", "priority"], Urgency::Medium),
    (&["fairly", "urgent"], Urgency::Medium),
    (&["somewhat", "urgent"], Urgency::Medium),
    (&["kind", "of", "urgent"], Urgency::Medium),
    (&["sort", "of", "urgent"], Urgency::Medium),
    (&["a", "bit", "urgent"], Urgency::Medium),
    (&["later", "today"], Urgency::Medium),
    (&["sometime", "today"], Urgency::Medium),
    (&["urgent"], Urgency::High),
    (&["urgently"], Urgency::High),
    (&["asap"], Urgency::High),
    (&["hurry"], Urgency::High),
    (&["quickly"], Urgency::High),
    (&["as", "soon", "as", "possible"], Urgency::High),
    (&["right", "away"], Urgency::High),
    (&["right", "now"], Urgency::High),
    (&["immediately"], Urgency::High),
    (&["emergency"], Urgency::High),
    (&["critical"], Urgency::High),
    (&["high", "priority"], Urgency::High),
    (&["high"], Urgency::High),
    (&["top", "priority"], Urgency::High),
];

/// The urgency the caller states, if any: the strongest stated wins ("not a big deal but it
/// needs fixing right away" → high).
pub fn extract_urgency(text: &str) -> Option<Urgency> {
    let toks: Vec<String> = word_tokens(text)
        .into_iter()
        .map(|t| t.replace('\'', ""))
        .collect();
    let mut best: Option<Urgency> = None;
    let mut i = 0;
    while i < toks.len() {
        let rest = &toks[i..];
        let hit = URGENCY_PHRASES
            .iter()
            .filter(|(p, _)| {
                p.len() <= rest.len() && p.iter().zip(rest).all(|(a, b)| *a == b.as_str())
            })
            .max_by_key(|(p, _)| p.len());
        match hit {
            Some((p, u)) => {
                best = Some(best.map_or(*u, |b| b.max_by_rank(*u)));
                i += p.len();
            }
            None => i += 1,
        }
    }
    best
}

impl Urgency {
    fn rank(self) -> u8 {
        match self {
            Urgency::Low => 0,
            Urgency::Medium => 1,
            Urgency::High => 2,
        }
    }

    fn max_by_rank(self, other: Urgency) -> Urgency {
        if other.rank() > self.rank() {
            other
        } else {
            self
        }
    }
}
