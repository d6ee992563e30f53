//! Resolving what a caller said against the systems of record.
//!
//! A spoken code reaches the agent through speech recognition: "A B C one two three" may arrive
//! as "a BC123", "ABC 1, 2, 3" or "ABC 1 2 4" (a misheard digit); a name as "Jondo", "Jon Doe" or
//! "Doe, John". The slot extractor proposes readings of the code (best first); this module
//! decides which record, if any, the caller most plausibly means, and how sure that is:
//!
//! - **Act**: a reading equals a record's code and the caller is verified for that record (the
//!   name matches it exactly, or the line the call comes from owns it).
//! - **Confirm**: the record is the only plausible one, but either the code was not heard
//!   exactly (a small, letter/digit-confusion-weighted edit distance) or the name only sounds
//!   like the record's (phonetic or string similarity). The master reads the record back and
//!   asks before acting.
//! - **NotFound**: nothing plausible, or several records equally plausible. Only records the
//!   caller is verified for (by name or by line) are ever read back: a code that matches
//!   someone else's record reveals nothing.
//!
//! Pure functions; `strsim`'s Levenshtein similarity and `rphonetic`'s Double Metaphone for names.

use rphonetic::DoubleMetaphone;

/// Letters and digits that sound alike over a telephone line: a substitution inside one group
/// costs half an edit. The "E-set" rhymes (B C D E G P T V Z and "three"), "eight" with A H J K,
/// M/N, F/S/X ("ef", "es", "ex", "six"), I/Y/five, O/zero/four ("oh", "for"), Q/U/W/two
/// ("queue", "you", "two"), one/nine.
const CONFUSABLE: &[&str] = &[
    "BCDEGPTVZ3",
    "AHJK8",
    "MN",
    "FSX6",
    "IY5",
    "O04",
    "QUW2",
    "19",
];

/// The largest weighted distance at which a record is still offered for confirmation.
pub const MAX_CODE_DISTANCE: f32 = 1.0;
/// The same when the caller said the record's name exactly: two slips of the ear.
pub const MAX_CODE_DISTANCE_NAMED: f32 = 2.0;
/// Whole-name similarity at or above which a name that was heard badly ("Dondo", "Millie Clark"
/// for Emily Clarke) still counts as part of the record's, never for "Jane Roe" against "John Doe"
/// (0.43 as a whole) or "Mark Stone" (0.22).
const FAINT_SIMILARITY: f64 = 0.55;
/// Normalised Levenshtein similarity at or above which two names (or name words) of four letters
/// or more count as the same name ("Smyth"/"Smith" 0.8, "Clark"/"Clarke" 0.83).
const NAME_SIMILARITY: f64 = 0.75;

fn confusable(a: char, b: char) -> bool {
    CONFUSABLE.iter().any(|g| g.contains(a) && g.contains(b))
}

/// Weighted edit distance between two codes (case-insensitive): insertions and deletions cost
/// 1, a substitution 1, or 0.5 between characters that sound alike on the phone.
pub fn code_distance(said: &str, record: &str) -> f32 {
    let a: Vec<char> = said.chars().map(|c| c.to_ascii_uppercase()).collect();
    let b: Vec<char> = record.chars().map(|c| c.to_ascii_uppercase()).collect();
    let mut prev: Vec<f32> = (0..=b.len()).map(|j| j as f32).collect();
    let mut cur = vec![0.0f32; b.len() + 1];
    for (i, &ca) in a.iter().enumerate() {
        cur[0] = (i + 1) as f32;
        for (j, &cb) in b.iter().enumerate() {
            let sub = if ca == cb {
                0.0
            } else if confusable(ca, cb) {
                0.5
            } else {
                1.0
            };
            cur[j + 1] = (prev[j] + sub).min(prev[j + 1] + 1.0).min(cur[j] + 1.0);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// How well a name the caller said matches a record's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NameMatch {
    None,
    /// Some of the record's name words, the same or sounding the same ("Jane" or "Jane Royal"
    /// for "Jane Roe"): enough to offer a confirmation when the code is exact, never alone.
    Partial,
    /// The record's surname is among the words said, the rest is not ("James Smith" or
    /// "Millie Clark" for Jane Smith or Emily Clarke): with a code heard nearly, a read-back.
    Surname,
    /// Sounds like the record's name or nearly spelled like it ("Jondo", "Jon Doe", "Jane Smyth").
    Close,
    /// The same words, in any order, ignoring case and punctuation ("Doe, John").
    Exact,
}

fn name_words(name: &str) -> Vec<String> {
    name.split(|c: char| !c.is_alphabetic() && c != '\'')
        .map(|w| w.replace('\'', "").to_lowercase())
        .filter(|w| !w.is_empty())
        .collect()
}

fn sounds_alike(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    if a.chars().count().min(b.chars().count()) >= 4
        && strsim::normalized_levenshtein(a, b) >= NAME_SIMILARITY
    {
        return true;
    }
    let metaphone = DoubleMetaphone::new(Some(6));
    let ea = metaphone.double_metaphone(a);
    let eb = metaphone.double_metaphone(b);
    let codes_a = [ea.primary(), ea.alternate()];
    let codes_b = [eb.primary(), eb.alternate()];
    codes_a
        .iter()
        .any(|x| !x.is_empty() && codes_b.iter().any(|y| x == y))
}

/// One whole name sounds like the start of the other ("General" for "Jane Roe": JNRL / JNR),
/// at least three consonant sounds long: a faint match, only ever used with an exact code.
fn sounds_like_start(a: &str, b: &str) -> bool {
    let metaphone = DoubleMetaphone::new(Some(8));
    let (ea, eb) = (metaphone.double_metaphone(a), metaphone.double_metaphone(b));
    let (pa, pb) = (ea.primary(), eb.primary());
    let (short, long) = if pa.len() <= pb.len() {
        (pa, pb)
    } else {
        (pb, pa)
    };
    short.len() >= 3 && long.starts_with(&short)
}

/// Compares a spoken name with a record's name.
pub fn name_match(said: &str, record: &str) -> NameMatch {
    let s = name_words(said);
    let r = name_words(record);
    if s.is_empty() || r.is_empty() {
        return NameMatch::None;
    }
    let mut ss = s.clone();
    let mut rs = r.clone();
    ss.sort();
    rs.sort();
    if ss == rs {
        return NameMatch::Exact;
    }
    // Run together or split differently ("Jondo" / "John Doe"): compare the whole names.
    let (sj, rj) = (s.concat(), r.concat());
    let mut r_rev = r.clone();
    r_rev.reverse();
    if sounds_alike(&sj, &rj) || sounds_alike(&sj, &r_rev.concat()) {
        return NameMatch::Close;
    }
    // Word by word, each said word matching a distinct record word.
    let mut used = vec![false; r.len()];
    let mut matched = 0;
    for w in &s {
        if let Some(k) = (0..r.len()).find(|&k| !used[k] && sounds_alike(w, &r[k])) {
            used[k] = true;
            matched += 1;
        }
    }
    if matched == s.len() && matched == r.len() {
        NameMatch::Close
    } else if r.len() > 1
        && used.last() == Some(&true)
        && s.len() <= r.len() + 1
        && r.last().is_some_and(|w| w.chars().count() >= 3)
    {
        NameMatch::Surname
    } else if (matched > 0 && s.len() <= r.len() + 1)
        || strsim::normalized_levenshtein(&sj, &rj) >= FAINT_SIMILARITY
        || sounds_like_start(&sj, &rj)
    {
        // Part of the name ("Jane", "Jane Royal" for Jane Roe): enough, with the exact code,
        // to read the record back and ask.
        NameMatch::Partial
    } else {
        NameMatch::None
    }
}

/// A record as the resolver sees it.
pub trait Identified {
    fn code(&self) -> &str;
    fn holder(&self) -> &str;
    /// The caller's line is the record's own (the phone line identifies its caller).
    fn owned_by(&self, caller_id: &str) -> bool;
}

/// What the caller most plausibly means.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution<'a, R> {
    /// Exact code and a verified caller: act at once.
    Act(&'a R),
    /// The only plausible record, not heard exactly: read it back and ask.
    Confirm(&'a R),
    /// Nothing plausible, or a tie.
    NotFound,
}

/// Picks the record meant by `readings` (code readings, best first) and `name` among
/// `records`, for the caller on `caller_id`.
pub fn resolve<'a, R: Identified>(
    readings: &[String],
    name: Option<&str>,
    caller_id: &str,
    records: &'a [R],
) -> Resolution<'a, R> {
    let name_of = |r: &R| name.map_or(NameMatch::None, |n| name_match(n, r.holder()));
    // 1. A reading that is exactly a record's code.
    let exact: Vec<&R> = records
        .iter()
        .filter(|r| readings.iter().any(|c| c.eq_ignore_ascii_case(r.code())))
        .collect();
    if !exact.is_empty() {
        let best = exact.iter().copied().max_by_key(|r| {
            // Prefer the record the caller is verified for, then the best reading.
            let rank = readings
                .iter()
                .position(|c| c.eq_ignore_ascii_case(r.code()))
                .unwrap_or(usize::MAX);
            (name_of(r), r.owned_by(caller_id), std::cmp::Reverse(rank))
        });
        if let Some(r) = best {
            match name_of(r) {
                NameMatch::Exact => return Resolution::Act(r),
                _ if r.owned_by(caller_id) => return Resolution::Act(r),
                NameMatch::Close | NameMatch::Surname | NameMatch::Partial => {
                    return Resolution::Confirm(r);
                }
                // Someone else's code: perhaps a near code is the caller's own.
                NameMatch::None => {}
            }
        }
    }
    // 2. Among the records the caller is verified for (the name matches, or the line owns
    //    them), the nearest code, if it is near enough for how well the name matched, and
    //    unique. A name said exactly carries a code heard with two slips ("LM9054" for LMN905);
    //    a name that sounds alike, or the surname, one slip. A code whose letters were lost
    //    but whose digits all came through ("the 456", "M905") is one slip.
    let mut scored: Vec<(f32, &R)> = records
        .iter()
        .filter_map(|r| {
            let allowed = match name_of(r) {
                NameMatch::Exact => MAX_CODE_DISTANCE_NAMED,
                NameMatch::Close | NameMatch::Surname => MAX_CODE_DISTANCE,
                _ if r.owned_by(caller_id) => MAX_CODE_DISTANCE,
                _ => return None,
            };
            let named = name_of(r) >= NameMatch::Surname;
            let d = readings
                .iter()
                .map(|c| {
                    let d = code_distance(c, r.code());
                    if named && digits_came_through(c, r.code()) {
                        d.min(MAX_CODE_DISTANCE)
                    } else {
                        d
                    }
                })
                .fold(f32::INFINITY, f32::min);
            (d <= allowed).then_some((d, r))
        })
        .collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0));
    match scored.as_slice() {
        [] => Resolution::NotFound,
        [(d0, _), (d1, _), ..] if d1 <= d0 => Resolution::NotFound,
        [(_, r), ..] => Resolution::Confirm(r),
    }
}

/// The record's digits (three or more) came through whole in what was heard, while its letters
/// were lost or misheard ("the 456" or "M905" for LMN905, "2317" for GHJ317 with one digit
/// added): the reading has no more letters than the record, its letters are near the record's,
/// and its digits are the record's, with at most one extra digit at either end.
fn digits_came_through(said: &str, record: &str) -> bool {
    let digits = |s: &str| -> String { s.chars().filter(char::is_ascii_digit).collect() };
    let letters = |s: &str| -> String {
        s.chars()
            .filter(char::is_ascii_alphabetic)
            .map(|c| c.to_ascii_uppercase())
            .collect()
    };
    let (sd, rd) = (digits(said), digits(record));
    if rd.len() < 3 || !said.chars().all(|c| c.is_ascii_alphanumeric()) {
        return false;
    }
    let digits_ok =
        sd == rd || (sd.len() == rd.len() + 1 && (sd.ends_with(&rd) || sd.starts_with(&rd)));
    let (sl, rl) = (letters(said), letters(record));
    // Letters heard must be a near, not longer, version of the record's: lost ones are free.
    let letters_ok = sl.len() <= rl.len()
        && code_distance(&sl, &rl) - (rl.len() - sl.len()) as f32 <= MAX_CODE_DISTANCE;
    digits_ok && letters_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Rec(&'static str, &'static str, &'static str);
    impl Identified for Rec {
        fn code(&self) -> &str {
            self.0
        }
        fn holder(&self) -> &str {
            self.1
        }
        fn owned_by(&self, caller_id: &str) -> bool {
            self.2 == caller_id
        }
    }

    fn records() -> Vec<Rec> {
        vec![
            Rec("ABC123", "John Doe", "user_789"),
            Rec("ABC124", "Mark Stone", "user_433"),
            Rec("DEF456", "Jane Smith", "user_402"),
            Rec("KLM482", "Priya Patel", "user_417"),
            Rec("XYZ789", "Jane Roe", "user_555"),
        ]
    }

    fn r(codes: &[&str]) -> Vec<String> {
        codes.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn distance_weighs_sound_alike_characters_half() {
        assert_eq!(code_distance("ABC123", "ABC123"), 0.0);
        assert_eq!(code_distance("ABD123", "ABC123"), 0.5);
        assert_eq!(code_distance("ABC125", "ABC123"), 1.0);
        assert_eq!(code_distance("BC123", "ABC123"), 1.0);
        assert_eq!(code_distance("KLN482", "KLM482"), 0.5);
        assert!(code_distance("XYZ789", "ABC123") > 5.0);
    }

    #[test]
    fn names_match_exactly_closely_partly_or_not() {
        assert_eq!(name_match("John Doe", "John Doe"), NameMatch::Exact);
        assert_eq!(name_match("doe, john", "John Doe"), NameMatch::Exact);
        assert_eq!(name_match("Jondo", "John Doe"), NameMatch::Close);
        assert_eq!(name_match("Jon Doe", "John Doe"), NameMatch::Close);
        assert_eq!(name_match("Jane Smyth", "Jane Smith"), NameMatch::Close);
        assert_eq!(name_match("Pria Patel", "Priya Patel"), NameMatch::Close);
        assert_eq!(name_match("Jane", "Jane Smith"), NameMatch::Partial);
        assert_eq!(name_match("Jane Royal", "Jane Roe"), NameMatch::Partial);
        assert_eq!(name_match("Mark Jones", "Jane Smith"), NameMatch::None);
        assert_eq!(name_match("Dondo", "John Doe"), NameMatch::Partial);
        // Double Metaphone hears "Jane" and "John" alike: with the exact code that is a read-back.
        assert_eq!(name_match("Jane Roe", "John Doe"), NameMatch::Partial);
        assert_eq!(name_match("Mary Roe", "John Doe"), NameMatch::None);
        assert_eq!(name_match("Mark Stone", "John Doe"), NameMatch::None);
        assert_eq!(name_match("", "John Doe"), NameMatch::None);
    }

    #[test]
    fn exact_code_and_name_act_at_once() {
        let recs = records();
        let got = resolve(&r(&["ABC123"]), Some("John Doe"), "user_000", &recs);
        assert_eq!(got, Resolution::Act(&recs[0]));
        // Another reading of the code ("a BC123" → ABC123) is as good as the first.
        let got = resolve(
            &r(&["BC1234", "ABC123"]),
            Some("John Doe"),
            "user_000",
            &recs,
        );
        assert_eq!(got, Resolution::Act(&recs[0]));
        // The owner's own line needs no name.
        let got = resolve(&r(&["ABC123"]), None, "user_789", &recs);
        assert_eq!(got, Resolution::Act(&recs[0]));
    }

    #[test]
    fn near_matches_are_confirmed_first() {
        let recs = records();
        let got = resolve(&r(&["ABC123"]), Some("Jondo"), "user_000", &recs);
        assert_eq!(got, Resolution::Confirm(&recs[0]));
        let got = resolve(&r(&["KLN482"]), Some("Priya Patel"), "user_000", &recs);
        assert_eq!(got, Resolution::Confirm(&recs[3]));
        let got = resolve(&r(&["DEF456"]), Some("Jane"), "user_000", &recs);
        assert_eq!(got, Resolution::Confirm(&recs[2]));
    }

    #[test]
    fn a_name_said_well_carries_a_code_heard_badly() {
        let recs = records();
        // whisper lost the letters ("the 456") but every digit came through; the surname too.
        let got = resolve(&r(&["456"]), Some("James Smith"), "user_000", &recs);
        assert_eq!(got, Resolution::Confirm(&recs[2]));
        let got = resolve(&r(&["789"]), Some("Jane Rowe"), "user_000", &recs);
        assert_eq!(got, Resolution::Confirm(&recs[4]));
        // One digit too many at the front ("2317" for GHJ317) is still the same digits.
        assert!(digits_came_through("2317", "GHJ317"));
        assert!(digits_came_through("M905", "LMN905"));
        assert!(!digits_came_through("QQQ456", "DEF456"));
        assert!(!digits_came_through("45", "DEF456"));
        // Two slips with the exact name; a name only sounding alike allows one.
        let got = resolve(&r(&["KL4832"]), Some("Priya Patel"), "user_000", &recs);
        assert_eq!(got, Resolution::Confirm(&recs[3]));
        let got = resolve(&r(&["KL4832"]), Some("Pria Patel"), "user_000", &recs);
        assert_eq!(got, Resolution::NotFound);
        // The surname and a code one confusion away ("Martyr Stone, APC124").
        assert_eq!(name_match("Martyr Stone", "Mark Stone"), NameMatch::Surname);
        let got = resolve(&r(&["APC124"]), Some("Martyr Stone"), "user_000", &recs);
        assert_eq!(got, Resolution::Confirm(&recs[1]));
        // The exact code and a name that sounds like the start of the holder's ("General").
        let got = resolve(&r(&["XYZ789"]), Some("General"), "user_000", &recs);
        assert_eq!(got, Resolution::Confirm(&recs[4]));
    }

    #[test]
    fn the_right_digits_under_other_letters_or_names_reveal_nothing() {
        let recs = records();
        // The holder's name, but clearly different letters.
        let got = resolve(&r(&["QQQ456"]), Some("Jane Smith"), "user_000", &recs);
        assert_eq!(got, Resolution::NotFound);
        // The digits alone, with a first name only or another name.
        let got = resolve(&r(&["456"]), Some("Jane"), "user_000", &recs);
        assert_eq!(got, Resolution::NotFound);
        let got = resolve(&r(&["456"]), Some("Mark Jones"), "user_000", &recs);
        assert_eq!(got, Resolution::NotFound);
        // Nearly the code, and a first name that is the holder's.
        let got = resolve(&r(&["DEF457"]), Some("Jane"), "user_000", &recs);
        assert_eq!(got, Resolution::NotFound);
    }

    fn two_of_mine() -> Vec<Rec> {
        vec![
            Rec("ABC123", "John Doe", "user_789"),
            Rec("ABC124", "John Doe", "user_789"),
        ]
    }

    #[test]
    fn a_near_code_is_offered_only_for_the_callers_own_record() {
        let recs = records();
        // "ABC125, John Doe": ABC124 is as near, but only ABC123 is John Doe's.
        let got = resolve(&r(&["ABC125"]), Some("John Doe"), "user_000", &recs);
        assert_eq!(got, Resolution::Confirm(&recs[0]));
        // John Doe's code with Mark Stone's name: Mark Stone's own ABC124 is one digit away.
        let got = resolve(&r(&["ABC123"]), Some("Mark Stone"), "user_000", &recs);
        assert_eq!(got, Resolution::Confirm(&recs[1]));
    }

    #[test]
    fn a_wrong_code_or_name_reveals_nothing() {
        let recs = records();
        // Right code, someone else's name (and no record of that name near it).
        let got = resolve(&r(&["DEF456"]), Some("Mark Stone"), "user_000", &recs);
        assert_eq!(got, Resolution::NotFound);
        // Equally near two of the caller's records: a tie is not a match.
        let mine = two_of_mine();
        let got = resolve(&r(&["ABC125"]), None, "user_789", &mine);
        assert_eq!(got, Resolution::NotFound);
        // Near a record, but the name is not its holder's.
        let got = resolve(&r(&["KLN482"]), Some("John Doe"), "user_000", &recs);
        assert_eq!(got, Resolution::NotFound);
        // Far from everything.
        let got = resolve(&r(&["QQQ999"]), Some("John Doe"), "user_000", &recs);
        assert_eq!(got, Resolution::NotFound);
        // A partial name is never enough for a code that was not heard exactly.
        let got = resolve(&r(&["DEF457"]), Some("Jane"), "user_000", &recs);
        assert_eq!(got, Resolution::NotFound);
    }
}
