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

// ---------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------

/// A date as the caller meant it: one day, or a span such as "next week".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateSpec {
    Day(NaiveDate),
    Range { start: NaiveDate, end: NaiveDate },
}

/// A calendar month, e.g. a billing period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct YearMonth {
    pub year: i32,
    pub month: u32,
}

impl YearMonth {
    /// "2025-01".
    pub fn to_string_ym(&self) -> String {
        format!("{:04}-{:02}", self.year, self.month)
    }

    /// Parses "2025-01" (also "2025-1"); `None` for anything else or a month outside 1..=12.
    pub fn parse(s: &str) -> Option<YearMonth> {
        let c = YM_EXACT.captures(s.trim())?;
        ym_from_strs(c.get(1)?.as_str(), c.get(2)?.as_str())
    }

    fn of(date: NaiveDate) -> YearMonth {
        YearMonth {
            year: date.year(),
            month: date.month(),
        }
    }

    fn prev(self) -> YearMonth {
        if self.month <= 1 {
            YearMonth {
                year: self.year.saturating_sub(1),
                month: 12,
            }
        } else {
            YearMonth {
                year: self.year,
                month: self.month - 1,
            }
        }
    }

    fn next(self) -> YearMonth {
        if self.month >= 12 {
            YearMonth {
                year: self.year.saturating_add(1),
                month: 1,
            }
        } else {
            YearMonth {
                year: self.year,
                month: self.month + 1,
            }
        }
    }
}

/// A position in a list the agent read out: "the second one" → `Nth(2)`, "the last one" → `Last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ordinal {
    /// 1-based.
    Nth(usize),
    Last,
}

// ---------------------------------------------------------------------------------------------
// Constant tables and regexes
// ---------------------------------------------------------------------------------------------

fn re(pattern: &str) -> Regex {
    // Invariant: only called with the constant patterns below, all of which are valid.
    Regex::new(pattern).expect("constant slot regex is valid")
}

static X_RAY: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)\bx-ray\b"));
static ISO_DATE: LazyLock<Regex> =
    LazyLock::new(|| re(r"\b([0-9]{4})[-/.]([0-9]{1,2})[-/.]([0-9]{1,2})\b"));
static SLASH_DATE: LazyLock<Regex> =
    LazyLock::new(|| re(r"\b([0-9]{1,2})/([0-9]{1,2})(?:/([0-9]{4}|[0-9]{2}))?\b"));
static ISO_YM: LazyLock<Regex> = LazyLock::new(|| re(r"\b([0-9]{4})-([0-9]{1,2})\b"));
static YM_EXACT: LazyLock<Regex> = LazyLock::new(|| re(r"^([0-9]{4})-([0-9]{1,2})$"));
static NUMERIC: LazyLock<Regex> =
    LazyLock::new(|| re(r"^([0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.([0-9]+))?$"));
static NUMBER_SUFFIXED: LazyLock<Regex> = LazyLock::new(|| re(r"^[0-9]+(?:st|nd|rd|th|am|pm|s)$"));
static ORD_SUFFIX: LazyLock<Regex> = LazyLock::new(|| re(r"^([0-9]{1,4})(?:st|nd|rd|th)$"));

const NATO: &[(&str, char)] = &[
    ("alpha", 'A'),
    ("alfa", 'A'),
    ("bravo", 'B'),
    ("charlie", 'C'),
    ("delta", 'D'),
    ("echo", 'E'),
    ("foxtrot", 'F'),
    ("golf", 'G'),
    ("hotel", 'H'),
    ("india", 'I'),
    ("juliet", 'J'),
    ("juliett", 'J'),
    ("kilo", 'K'),
    ("lima", 'L'),
    ("mike", 'M'),
    ("november", 'N'),
    ("oscar", 'O'),
    ("papa", 'P'),
    ("quebec", 'Q'),
    ("romeo", 'R'),
    ("sierra", 'S'),
    ("tango", 'T'),
    ("uniform", 'U'),
    ("victor", 'V'),
    ("whiskey", 'W'),
    ("whisky", 'W'),
    ("xray", 'X'),
    ("yankee", 'Y'),
    ("zulu", 'Z'),
    // Letter names as the recognizer sometimes writes them.
    ("aitch", 'H'),
    ("bee", 'B'),
    ("dee", 'D'),
    ("gee", 'G'),
    ("jay", 'J'),
    ("kay", 'K'),
    ("ess", 'S'),
    ("tee", 'T'),
    ("vee", 'V'),
    ("cue", 'Q'),
    ("queue", 'Q'),
    ("eff", 'F'),
    ("zed", 'Z'),
    ("zee", 'Z'),
];

const DIGIT_WORDS: &[(&str, char)] = &[
    ("zero", '0'),
    ("one", '1'),
    ("two", '2'),
    ("three", '3'),
    ("four", '4'),
    ("five", '5'),
    ("six", '6'),
    ("seven", '7'),
    ("eight", '8'),
    ("nine", '9'),
    ("niner", '9'),
];

const TEENS: &[(&str, i64)] = &[
    ("ten", 10),
    ("eleven", 11),
    ("twelve", 12),
    ("thirteen", 13),
    ("fourteen", 14),
    ("fifteen", 15),
    ("sixteen", 16),
    ("seventeen", 17),
    ("eighteen", 18),
    ("nineteen", 19),
];

const TENS: &[(&str, i64)] = &[
    ("twenty", 20),
    ("thirty", 30),
    ("forty", 40),
    ("fourty", 40),
    ("fifty", 50),
    ("sixty", 60),
    ("seventy", 70),
    ("eighty", 80),
    ("ninety", 90),
];

const SCALES: &[(&str, i64)] = &[
    ("thousand", 1_000),
    ("million", 1_000_000),
    ("billion", 1_000_000_000),
];

const ORDINAL_WORDS: &[(&str, usize)] = &[
    ("first", 1),
    ("second", 2),
    ("third", 3),
    ("fourth", 4),
    ("fifth", 5),
    ("sixth", 6),
    ("seventh", 7),
    ("eighth", 8),
    ("ninth", 9),
    ("tenth", 10),
    ("eleventh", 11),
    ("twelfth", 12),
    ("thirteenth", 13),
    ("fourteenth", 14),
    ("fifteenth", 15),
    ("sixteenth", 16),
    ("seventeenth", 17),
    ("eighteenth", 18),
    ("nineteenth", 19),
    ("twentieth", 20),
    ("thirtieth", 30),
    ("fortieth", 40),
    ("fiftieth", 50),
    ("sixtieth", 60),
    ("seventieth", 70),
    ("eightieth", 80),
    ("ninetieth", 90),
    ("hundredth", 100),
];

const MONTHS: &[(&str, u32)] = &[
    ("january", 1),
    ("jan", 1),
    ("february", 2),
    ("feb", 2),
    ("march", 3),
    ("mar", 3),
    ("april", 4),
    ("apr", 4),
    ("may", 5),
    ("june", 6),
    ("jun", 6),
    ("july", 7),
    ("jul", 7),
    ("august", 8),
    ("aug", 8),
    ("september", 9),
    ("sep", 9),
    ("sept", 9),
    ("october", 10),
    ("oct", 10),
    ("november", 11),
    ("nov", 11),
    ("december", 12),
    ("dec", 12),
];

const WEEKDAYS: &[(&str, Weekday)] = &[
    ("monday", Weekday::Mon),
    ("tuesday", Weekday::Tue),
    ("tues", Weekday::Tue),
    ("wednesday", Weekday::Wed),
    ("weds", Weekday::Wed),
    ("thursday", Weekday::Thu),
    ("thurs", Weekday::Thu),
    ("friday", Weekday::Fri),
    ("saturday", Weekday::Sat),
    ("sunday", Weekday::Sun),
];

const DOLLAR_WORDS: &[&str] = &[
    "dollar", "dollars", "buck", "bucks", "usd", "euro", "euros", "pound", "pounds",
];
const CENT_WORDS: &[&str] = &["cent", "cents", "penny", "pennies", "pence"];

/// Everyday words: never a name, never part of a code. Lowercase, apostrophes as `'`,
/// whitespace-separated; `label:` words only group the list.
const COMMON_WORDS: &str = "
    function_words:
    a about above after again against all also am an and any are aren't as at back be because
    been before being below between both but by can can't cannot could couldn't did didn't do
    does doesn't doing don't dont down during each either else ever every few for from further
    had has have having he he's her here here's hers him his how i i'd i'll i'm i've id if im in
    into is isn't it it's its itself just let let's lets me mine more most much must my myself
    neither no nor not now of off on once only or other our ours out over own per same she she's
    should so some such than that that's thats the their them then there there's these they
    they're this those through thru till to too under until up upon us very via was wasn't we
    we'd we're we've were what what's when where which while who who's whom whose why will with
    within without won't would wouldn't you you're your yours yourself yet ya yo ye
    answers_fillers_courtesy:
    yes yeah yep yup yea yah nope nah ok okay sure right correct wrong fine good great thanks
    thank please hi hello hey um umm uh uhh er erm ah oh hmm mhm huh well like actually really
    maybe sorry alright perfect awesome absolutely definitely exactly indeed true false course
    bye goodbye cool nice wow anyway basically also probably certainly totally guess hope
    welcome excuse pardon sir madam ma'am mr mrs ms miss dr mister agent person human someone
    somebody anyone anybody nobody nothing something anything everything everyone everybody
    again still already soon later late early never always sometimes often ready done new old
    big small little lot lots bit many few more less least best better worse last next first
    second third fourth fifth other another same different each both half whole full free open
    closed busy available possible sure happy sad glad wait hold moment minute minutes hour
    hours quick quickly fast slow slowly here there home work office way thing things stuff kind
    sort type part lot
    call_center_vocabulary:
    name names named called call calling phone number numbers code codes booking book booked
    reservation reservations reserve account accounts order orders confirmation confirm
    confirmed ticket tickets flight flights bill bills billing payment payments pay paid card
    cards credit debit bank balance statement invoice charge charges fee fees refund money cash
    email address room rooms table seat seats gate row unit apt suite floor zip pin ref box line
    step page item plan case file acct ext tel fax cell mobile help support service problem
    issue question answer check cancel change update want need needs get got go going gone come
    coming see know think mean said say says tell told give make made take look looking try
    trying find found keep put use used ask asked speak talk talking hear listen wanted would
    like love let put show send sent move set start stop end finish work works working happen
    happened sign
    time_words:
    today tonight tomorrow yesterday day days week weeks weekend month months year years time
    times morning afternoon evening night noon date dates current previous past coming following
    ago am pm st nd rd th usd dollar dollars cent cents buck bucks euro euros pound pounds lbs
    kg km mph min mins sec secs hrs jan feb mar apr jun jul aug sep sept oct nov dec january
    february march april may june july august september october november december monday tuesday
    tues
    wednesday weds wed thursday thurs thu friday fri saturday sat sunday sun mon tue
    numbers:
    zero one two three four five six seven eight nine ten eleven twelve hundred thousand million
    double triple point twenty thirty forty fifty sixty seventy eighty ninety once twice both
    none
";

static COMMON: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    COMMON_WORDS
        .split_whitespace()
        .filter(|w| !w.ends_with(':'))
        .collect()
});

/// Hesitations skipped between a name cue and the name ("my name is, uh, John").
const NAME_FILLERS: &[&str] = &["uh", "um", "umm", "uhh", "er", "erm", "ah", "hmm", "well"];
/// Titles skipped before a name ("I am Dr. Smith" → "Smith").
const NAME_TITLES: &[&str] = &[
    "mr",
    "mrs",
    "ms",
    "miss",
    "mister",
    "dr",
    "doctor",
    "professor",
    "prof",
];
/// Lowercase surname particles kept inside a name ("Ludwig van Beethoven").
const NAME_PARTICLES: &[&str] = &[
    "van", "von", "de", "del", "der", "da", "di", "du", "la", "le", "bin", "ibn",
];
/// Words that may precede a bare name ("Sure, John Doe").
const BARE_LEADING: &[&str] = &[
    "yes", "yeah", "yep", "sure", "ok", "okay", "um", "uh", "umm", "er", "so", "well", "hi",
    "hello", "hey", "oh", "alright", "right",
];
/// Words that may follow a bare name ("John Doe, thanks").
const POLITE: &[&str] = &["please", "thanks", "thank", "you", "bye", "goodbye"];

/// Cues after which a name follows; anything not a common word is accepted as a name.
const STRONG_NAME_CUES: &[&[&str]] = &[
    &["under", "the", "name", "of"],
    &["under", "the", "name"],
    &["under", "name"],
    &["name", "is"],
    &["name", "was"],
    &["name's"],
    &["under"],
    &["call", "me"],
];
/// Cues that often precede other things ("it's fine"); the name must look like one (capitalised).
const WEAK_NAME_CUES: &[&[&str]] = &[
    &["it", "is"],
    &["this", "is"],
    &["i", "am"],
    &["it's"],
    &["its"],
    &["i'm"],
    &["im"],
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Polarity {
    Yes,
    No,
    Unsure,
}

/// Yes/no phrases, matched on tokens with apostrophes removed; the longest match at a position
/// wins, so "not sure" is uncertainty rather than "not" + "sure".
const YES_NO_PHRASES: &[(&[&str], Polarity)] = &[
    // uncertainty
    (&["not", "sure"], Polarity::Unsure),
    (&["not", "really", "sure"], Polarity::Unsure),
    (&["not", "so", "sure"], Polarity::Unsure),
    (&["not", "too", "sure"], Polarity::Unsure),
    (&["dont", "know"], Polarity::Unsure),
    (&["do", "not", "know"], Polarity::Unsure),
    (&["not", "certain"], Polarity::Unsure),
    (&["unsure"], Polarity::Unsure),
    (&["maybe"], Polarity::Unsure),
    (&["perhaps"], Polarity::Unsure),
    (&["dunno"], Polarity::Unsure),
    (&["no", "idea"], Polarity::Unsure),
    (&["no", "clue"], Polarity::Unsure),
    (&["let", "me", "think"], Polarity::Unsure),
    // negative
    (&["no"], Polarity::No),
    (&["nope"], Polarity::No),
    (&["nah"], Polarity::No),
    (&["naw"], Polarity::No),
    (&["negative"], Polarity::No),
    (&["never"], Polarity::No),
    (&["dont"], Polarity::No),
    (&["do", "not"], Polarity::No),
    (&["not", "now"], Polarity::No),
    (&["not", "yet"], Polarity::No),
    (&["not", "really"], Polarity::No),
    (&["not", "at", "all"], Polarity::No),
    (&["not", "right"], Polarity::No),
    (&["not", "correct"], Polarity::No),
    (&["not", "okay"], Polarity::No),
    (&["not", "ok"], Polarity::No),
    (&["not", "interested"], Polarity::No),
    (&["incorrect"], Polarity::No),
    (&["wrong"], Polarity::No),
    (&["thats", "all"], Polarity::No),
    (&["that", "is", "all"], Polarity::No),
    (&["that", "will", "be", "all"], Polarity::No),
    (&["thatll", "be", "all"], Polarity::No),
    (&["thats", "everything"], Polarity::No),
    (&["nothing", "else"], Polarity::No),
    (&["cancel", "that"], Polarity::No),
    (&["never", "mind"], Polarity::No),
    (&["nevermind"], Polarity::No),
    (&["of", "course", "not"], Polarity::No),
    (&["certainly", "not"], Polarity::No),
    (&["absolutely", "not"], Polarity::No),
    (&["definitely", "not"], Polarity::No),
    (&["rather", "not"], Polarity::No),
    (&["no", "way"], Polarity::No),
    // positive
    (&["no", "problem"], Polarity::Yes),
    (&["no", "worries"], Polarity::Yes),
    (&["not", "a", "problem"], Polarity::Yes),
    (&["dont", "mind"], Polarity::Yes),
    (&["why", "not"], Polarity::Yes),
    (&["yes"], Polarity::Yes),
    (&["yeah"], Polarity::Yes),
    (&["yep"], Polarity::Yes),
    (&["yup"], Polarity::Yes),
    (&["yea"], Polarity::Yes),
    (&["yah"], Polarity::Yes),
    (&["uh", "huh"], Polarity::Yes),
    (&["mhm"], Polarity::Yes),
    (&["mm", "hmm"], Polarity::Yes),
    (&["sure"], Polarity::Yes),
    (&["correct"], Polarity::Yes),
    (&["thats", "right"], Polarity::Yes),
    (&["that", "is", "right"], Polarity::Yes),
    (&["exactly"], Polarity::Yes),
    (&["please", "do"], Polarity::Yes),
    (&["go", "ahead"], Polarity::Yes),
    (&["absolutely"], Polarity::Yes),
    (&["definitely"], Polarity::Yes),
    (&["certainly"], Polarity::Yes),
    (&["of", "course"], Polarity::Yes),
    (&["ok"], Polarity::Yes),
    (&["okay"], Polarity::Yes),
    (&["okey"], Polarity::Yes),
    (&["alright"], Polarity::Yes),
    (&["all", "right"], Polarity::Yes),
    (&["affirmative"], Polarity::Yes),
    (&["sounds", "good"], Polarity::Yes),
    (&["do", "it"], Polarity::Yes),
    (&["thats", "fine"], Polarity::Yes),
    (&["that", "works"], Polarity::Yes),
    (&["perfect"], Polarity::Yes),
    (&["confirm"], Polarity::Yes),
    (&["confirmed"], Polarity::Yes),
    (&["agreed"], Polarity::Yes),
];

// ---------------------------------------------------------------------------------------------
// Tokenizing
// ---------------------------------------------------------------------------------------------

/// The first [`MAX_INPUT_BYTES`] bytes of `text`, cut back to a char boundary.
fn clip(text: &str) -> &str {
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
fn normalize_apostrophes(text: &str) -> String {
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

fn trim_punct(word: &str) -> &str {
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
fn word_tokens(text: &str) -> Vec<String> {
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
fn content_tokens(text: &str) -> Vec<String> {
    word_tokens(text)
        .into_iter()
        .filter(|t| !NAME_FILLERS.contains(&t.as_str()))
        .collect()
}

fn lookup<T: Copy>(table: &[(&str, T)], key: &str) -> Option<T> {
    table.iter().find(|(k, _)| *k == key).map(|&(_, v)| v)
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn strip_possessive(s: &str) -> &str {
    s.strip_suffix("'s").unwrap_or(s)
}

// ---------------------------------------------------------------------------------------------
// Codes and digit strings
// ---------------------------------------------------------------------------------------------

/// One sub-word of the input, split on any punctuation except apostrophes.
struct Piece {
    orig: String,
    lower: String,
}

fn pieces(text: &str) -> Vec<Piece> {
    let text = normalize_apostrophes(text);
    let text = X_RAY.replace_all(&text, "xray");
    let mut out = Vec::new();
    for word in text.split_whitespace().take(MAX_TOKENS) {
        for part in word.split(|c: char| !(c.is_alphanumeric() || c == '\'')) {
            let part = part.trim_matches('\'');
            if part.is_empty() {
                continue;
            }
            out.push(Piece {
                orig: part.to_string(),
                lower: part.to_lowercase(),
            });
            if out.len() >= MAX_PIECES {
                return out;
            }
        }
    }
    out
}

/// "B as in boy", "B for boy", "B like boy" → "B": the example word only repeats the letter.
fn drop_spelling_aids(pieces: Vec<Piece>) -> Vec<Piece> {
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
enum Slot {
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
    Oh { letter: bool, repeated: bool },
    /// "a"/"i": letters only when spelled next to other single symbols.
    Article(char),
    /// A short lowercase word ("abc"): code material only right next to digits.
    Weak(String),
}

fn unit(s: impl Into<String>, spelled: bool) -> Slot {
    Slot::Unit {
        s: s.into(),
        strong: true,
        spelled,
    }
}

fn spoken_digit(l: &str) -> Option<char> {
    lookup(DIGIT_WORDS, l)
}

fn single_ascii_digit(l: &str) -> Option<char> {
    let mut chars = l.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if c.is_ascii_digit() => Some(c),
        _ => None,
    }
}

fn letter_word(l: &str) -> Option<char> {
    lookup(NATO, l)
}

/// The single symbol a piece stands for, for "double"/"triple".
fn single_symbol(p: &Piece, digits_only: bool) -> Option<char> {
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

fn classify_piece(p: &Piece, caps_reliable: bool, digits_only: bool) -> Slot {
    let l = p.lower.as_str();
    match l {
        "oh" => {
            return Slot::Oh {
                letter: false,
                repeated: false,
            };
        }
        "o" => {
            return Slot::Oh {
                letter: !digits_only,
                repeated: false,
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

fn ends_with_digit(s: Option<&Slot>) -> bool {
    matches!(s, Some(Slot::Unit { s, .. }) if s.chars().last().is_some_and(|c| c.is_ascii_digit()))
}

fn starts_with_digit(s: Option<&Slot>) -> bool {
    matches!(s, Some(Slot::Unit { s, .. }) if s.chars().next().is_some_and(|c| c.is_ascii_digit()))
}

/// Classifies pieces into code material. `digits_only` keeps only digit material.
fn resolve_slots(pieces: &[Piece], caps_reliable: bool, digits_only: bool) -> Vec<Slot> {
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
                    slots.extend((0..repeat).map(|_| Slot::Oh {
                        letter,
                        repeated: true,
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
        let zero = (prev_digit && next_digit) || (repeated && (prev_digit || next_digit));
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
    let anchored = Regex::new(&format!(r"\A(?:{})\z", pattern.as_str())).ok();
    let full_match = |s: &str| match &anchored {
        Some(a) => a.is_match(s),
        None => pattern
            .find(s)
            .is_some_and(|m| m.start() == 0 && m.end() == s.len()),
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

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NameMode {
    /// After "name is"/"under": any uncommon word.
    Strong,
    /// After "it's"/"this is": the word must look like a name.
    Weak,
    /// No cue at all: the whole utterance must be the name.
    Bare,
}

struct NameTok {
    core: String,
    lower: String,
    /// Followed by , . ; : ! ? — a name does not continue past it.
    ends_clause: bool,
}

fn name_tokens(text: &str) -> Vec<NameTok> {
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

fn is_name_word(t: &NameTok, mode: NameMode, mixed_case: bool, first: bool) -> bool {
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
fn title_case(word: &str) -> String {
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
fn collect_name(
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
    // No cue: the utterance itself must be just a name ("John Doe", "Sure, John Doe, thanks").
    let mut k = 0;
    while toks
        .get(k)
        .is_some_and(|t| BARE_LEADING.contains(&t.lower.as_str()))
    {
        k += 1;
    }
    let (words, end) = collect_name(&toks, k, NameMode::Bare, mixed_case)?;
    let rest_polite = toks
        .get(end..)
        .unwrap_or(&[])
        .iter()
        .all(|t| POLITE.contains(&t.lower.as_str()));
    (words.len() >= 2 && rest_polite).then(|| words.join(" "))
}

// ---------------------------------------------------------------------------------------------
// Numbers
// ---------------------------------------------------------------------------------------------

/// Number words to an integer: "twenty five" → 25, "one hundred and five" → 105, "two thousand
/// twenty five" → 2025, "a hundred" → 100, "twenty-five" → 25; a written group below 1000 may
/// stand in for words ("5 hundred"). Strict: "five twenty" or "nineteen ninety" are `None`.
pub fn words_to_number(words: &[&str]) -> Option<i64> {
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Last {
        Start,
        A,
        Unit,
        Teen,
        Tens,
        Group,
        Hundred,
        Scale,
        And,
    }
    let parts: Vec<String> = words
        .iter()
        .take(MAX_TOKENS)
        .flat_map(|w| w.split('-'))
        .map(|p| trim_punct(p).to_lowercase())
        .filter(|p| !p.is_empty())
        .collect();
    if parts.len() == 1 && parts[0] == "zero" {
        return Some(0);
    }
    if parts.is_empty() {
        return None;
    }
    let mut total: i64 = 0;
    let mut current: i64 = 0;
    let mut last = Last::Start;
    let mut last_scale = i64::MAX;
    for p in &parts {
        let p = p.as_str();
        let segment_start = matches!(last, Last::Start | Last::Hundred | Last::Scale | Last::And);
        if p == "and" {
            if !matches!(last, Last::Hundred | Last::Scale) {
                return None;
            }
            last = Last::And;
        } else if p == "a" || p == "an" {
            if last != Last::Start {
                return None;
            }
            current = 1;
            last = Last::A;
        } else if let Some(d) = spoken_digit(p).filter(|&d| d != '0') {
            if !(segment_start || last == Last::Tens) {
                return None;
            }
            current += i64::from(d.to_digit(10)?);
            last = Last::Unit;
        } else if let Some(v) = lookup(TEENS, p) {
            if !segment_start {
                return None;
            }
            current += v;
            last = Last::Teen;
        } else if let Some(v) = lookup(TENS, p) {
            if !segment_start {
                return None;
            }
            current += v;
            last = Last::Tens;
        } else if is_digits(p) && p.len() <= 3 {
            if !segment_start {
                return None;
            }
            current += p.parse::<i64>().ok()?;
            last = Last::Group;
        } else if p == "hundred" {
            match last {
                Last::Start => current = 1,
                Last::A | Last::Unit | Last::Teen | Last::Tens | Last::Group => {}
                _ => return None,
            }
            let below_hundred = current % 1000;
            if !(1..=99).contains(&below_hundred) {
                return None;
            }
            current = current - below_hundred + below_hundred * 100;
            last = Last::Hundred;
        } else if let Some(scale) = lookup(SCALES, p) {
            match last {
                Last::Start => current = 1,
                Last::A | Last::Unit | Last::Teen | Last::Tens | Last::Group | Last::Hundred => {}
                _ => return None,
            }
            if scale >= last_scale || current == 0 {
                return None;
            }
            total = total.checked_add(current.checked_mul(scale)?)?;
            current = 0;
            last_scale = scale;
            last = Last::Scale;
        } else {
            return None;
        }
    }
    if matches!(last, Last::And | Last::A) {
        return None;
    }
    total.checked_add(current)
}

/// The longest run of at most `max` tokens from `i` that [`words_to_number`] accepts, using
/// number words only (no written digits). Returns (value, tokens used).
fn number_words_at(toks: &[String], i: usize, max: usize) -> Option<(i64, usize)> {
    let end_max = toks.len().min(i.saturating_add(max));
    (i + 1..=end_max).rev().find_map(|end| {
        let slice = toks.get(i..end)?;
        if slice.iter().any(|t| is_digits(t)) {
            return None;
        }
        let refs: Vec<&str> = slice.iter().map(String::as_str).collect();
        words_to_number(&refs).map(|v| (v, end - i))
    })
}

/// A count such as "2", "two", "a": (value, tokens used).
fn count_at(toks: &[String], i: usize) -> Option<(i64, usize)> {
    let w = toks.get(i)?.as_str();
    if matches!(w, "a" | "an") {
        return Some((1, 1));
    }
    if is_digits(w) && w.len() <= 4 {
        return w.parse().ok().map(|v| (v, 1));
    }
    number_words_at(toks, i, 3)
}

/// An ordinal at `i`: "first", "21st", "twenty first". Returns (value, tokens used).
fn ordinal_at(toks: &[String], i: usize) -> Option<(usize, usize)> {
    let w = toks.get(i)?.as_str();
    if let Some(t) = lookup(TENS, w)
        && let Some(u) = toks
            .get(i + 1)
            .and_then(|n| lookup(ORDINAL_WORDS, n))
            .filter(|u| (1..=9).contains(u))
    {
        return usize::try_from(t).ok().map(|t| (t + u, 2));
    }
    if let Some(v) = lookup(ORDINAL_WORDS, w) {
        return Some((v, 1));
    }
    let v: usize = ORD_SUFFIX.captures(w)?.get(1)?.as_str().parse().ok()?;
    (v >= 1).then_some((v, 1))
}

// ---------------------------------------------------------------------------------------------
// Dates and months
// ---------------------------------------------------------------------------------------------

fn shift(date: NaiveDate, days: i64) -> Option<NaiveDate> {
    if days >= 0 {
        date.checked_add_days(Days::new(days.unsigned_abs()))
    } else {
        date.checked_sub_days(Days::new(days.unsigned_abs()))
    }
}

fn ymd(y: i32, m: u32, d: u32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(y, m, d)
}

fn ym_from_strs(y: &str, m: &str) -> Option<YearMonth> {
    let year: i32 = y.parse().ok()?;
    let month: u32 = m.parse().ok()?;
    (1..=12)
        .contains(&month)
        .then_some(YearMonth { year, month })
}

fn month_at(toks: &[String], i: usize) -> Option<u32> {
    lookup(MONTHS, strip_possessive(toks.get(i)?))
}

/// A year at `i`: "2025", "twenty twenty five", "twenty oh five", "nineteen ninety nine",
/// "two thousand twenty five". Returns (year, tokens used).
fn year_at(toks: &[String], i: usize) -> Option<(i32, usize)> {
    let w = toks.get(i)?.as_str();
    if w.len() == 4 && is_digits(w) {
        let y: i32 = w.parse().ok()?;
        return (1900..=2100).contains(&y).then_some((y, 1));
    }
    let century = match w {
        "twenty" => 20,
        "nineteen" => 19,
        _ => 0,
    };
    if century > 0 {
        if toks.get(i + 1).is_some_and(|t| t == "oh")
            && let Some(d) = toks
                .get(i + 2)
                .and_then(|t| spoken_digit(t))
                .and_then(|c| c.to_digit(10))
            && d > 0
        {
            return i32::try_from(d).ok().map(|d| (century * 100 + d, 3));
        }
        if let Some((n, used)) = number_words_at(toks, i + 1, 2)
            && (10..=99).contains(&n)
        {
            return i32::try_from(n).ok().map(|n| (century * 100 + n, used + 1));
        }
    }
    let end_max = toks.len().min(i + 6);
    (i + 2..=end_max).rev().find_map(|end| {
        let slice = toks.get(i..end)?;
        if !slice.iter().any(|t| t == "thousand") {
            return None;
        }
        let refs: Vec<&str> = slice.iter().map(String::as_str).collect();
        let y = i32::try_from(words_to_number(&refs)?).ok()?;
        (1900..=2100).contains(&y).then_some((y, end - i))
    })
}

/// A day of the month at `i`: "1st", "first", "twenty first", "1"; with `cardinal_words` also
/// "twenty one". Returns (day, tokens used).
fn day_at(toks: &[String], i: usize, cardinal_words: bool) -> Option<(u32, usize)> {
    if let Some((v, used)) = ordinal_at(toks, i) {
        return u32::try_from(v)
            .ok()
            .filter(|v| (1..=31).contains(v))
            .map(|v| (v, used));
    }
    let w = toks.get(i)?.as_str();
    if w.len() <= 2 && is_digits(w) {
        let v: u32 = w.parse().ok()?;
        return (1..=31).contains(&v).then_some((v, 1));
    }
    if cardinal_words {
        let (v, used) = number_words_at(toks, i, 2)?;
        return u32::try_from(v)
            .ok()
            .filter(|v| (1..=31).contains(v))
            .map(|v| (v, used));
    }
    None
}

/// Month and day without a year: the earliest such date not more than ~2 months before today.
fn nearest_date(month: u32, day: u32, today: NaiveDate) -> Option<NaiveDate> {
    let earliest = shift(today, -61)?;
    let year = today.year();
    (year.checked_sub(1)?..=year.checked_add(4)?)
        .filter_map(|y| ymd(y, month, day))
        .find(|d| *d >= earliest)
}

fn month_day(toks: &[String], today: NaiveDate) -> Option<NaiveDate> {
    let t = |k: usize| toks.get(k).map_or("", String::as_str);
    let resolve = |m: u32, d: u32, year_pos: usize| {
        let year_pos = if t(year_pos) == "of" {
            year_pos + 1
        } else {
            year_pos
        };
        match year_at(toks, year_pos) {
            Some((y, _)) => ymd(y, m, d),
            None => nearest_date(m, d, today),
        }
    };
    for i in 0..toks.len() {
        // "December first", "Dec 1st, 2025", "december the twenty first"
        if let Some(m) = month_at(toks, i) {
            let j = if t(i + 1) == "the" { i + 2 } else { i + 1 };
            if let Some((d, used)) = day_at(toks, j, true)
                && let Some(date) = resolve(m, d, j + used)
            {
                return Some(date);
            }
        }
        // "the first of December", "1st december"
        if let Some((d, used)) = day_at(toks, i, false) {
            let k = if t(i + used) == "of" {
                i + used + 1
            } else {
                i + used
            };
            if let Some(m) = month_at(toks, k)
                && let Some(date) = resolve(m, d, k + 1)
            {
                return Some(date);
            }
        }
    }
    None
}

fn monday_of(date: NaiveDate) -> Option<NaiveDate> {
    shift(date, -i64::from(date.weekday().num_days_from_monday()))
}

fn week_range(today: NaiveDate, weeks: i64, first_day: i64, last_day: i64) -> Option<DateSpec> {
    let monday = shift(monday_of(today)?, weeks.checked_mul(7)?)?;
    Some(DateSpec::Range {
        start: shift(monday, first_day)?,
        end: shift(monday, last_day)?,
    })
}

fn month_range(ym: YearMonth) -> Option<DateSpec> {
    let start = ymd(ym.year, ym.month, 1)?;
    let next = ym.next();
    let end = shift(ymd(next.year, next.month, 1)?, -1)?;
    Some(DateSpec::Range { start, end })
}

fn relative_date(toks: &[String], today: NaiveDate) -> Option<DateSpec> {
    let t = |k: usize| toks.get(k).map_or("", |s| strip_possessive(s));
    let day = |n: i64| shift(today, n).map(DateSpec::Day);
    for i in 0..toks.len() {
        let prev = if i > 0 { t(i - 1) } else { "" };
        let w = t(i);
        match w {
            "today" | "tonight" => return Some(DateSpec::Day(today)),
            "tomorrow" => return day(1),
            "yesterday" => return day(-1),
            "day" if t(i + 1) == "after" && t(i + 2) == "tomorrow" => return day(2),
            "day" if t(i + 1) == "before" && t(i + 2) == "yesterday" => return day(-2),
            "in" => {
                if let Some((n, used)) =
                    count_at(toks, i + 1).filter(|(n, _)| (0..=3660).contains(n))
                {
                    match t(i + 1 + used) {
                        "day" | "days" => return day(n),
                        "week" | "weeks" => return day(n * 7),
                        _ => {}
                    }
                }
            }
            "day" | "days" | "week" | "weeks"
                if t(i + 1) == "from" && matches!(t(i + 2), "now" | "today") =>
            {
                let n = (i.saturating_sub(3)..i).find_map(|s| {
                    count_at(toks, s).filter(|&(n, used)| s + used == i && (0..=520).contains(&n))
                });
                if let Some((n, _)) = n {
                    return day(if w.starts_with("week") { n * 7 } else { n });
                }
            }
            "week" => match prev {
                "this" | "current" => return week_range(today, 0, 0, 6),
                "next" | "following" | "coming" => return week_range(today, 1, 0, 6),
                "last" | "previous" | "past" | "prior" => return week_range(today, -1, 0, 6),
                _ => {}
            },
            "weekend" => {
                let weeks = match prev {
                    "next" | "following" => 1,
                    "last" | "previous" | "past" => -1,
                    _ => 0,
                };
                return week_range(today, weeks, 5, 6);
            }
            "month" => match prev {
                "this" | "current" => return month_range(YearMonth::of(today)),
                "next" | "following" | "coming" => return month_range(YearMonth::of(today).next()),
                "last" | "previous" | "past" | "prior" => {
                    return month_range(YearMonth::of(today).prev());
                }
                _ => {}
            },
            _ => {
                if let Some(wd) = lookup(WEEKDAYS, w) {
                    let today_n = i64::from(today.weekday().num_days_from_monday());
                    let target = i64::from(wd.num_days_from_monday());
                    let offset = if prev == "last" {
                        -((today_n - target - 1).rem_euclid(7) + 1)
                    } else {
                        (target - today_n - 1).rem_euclid(7) + 1
                    };
                    return day(offset);
                }
            }
        }
    }
    None
}

/// A date: "December first", "december 1st", "Dec 1", "the first of December", "12/1",
/// "2025-12-01", "today", "tomorrow", "yesterday", "next week"/"this week"/"last week" (Monday to
/// Sunday, as a range), "this weekend", "this month"/"next month" (ranges), "in 3 days",
/// "next monday"/"on friday" (the next such weekday strictly after today; "last friday" the
/// previous one). A month and day without a year resolves to the earliest such date that is not
/// more than ~2 months (61 days) before `today`. Explicit dates win over relative words.
pub fn extract_date(text: &str, today: NaiveDate) -> Option<DateSpec> {
    let clipped = clip(text);
    for c in ISO_DATE.captures_iter(clipped) {
        let date = (|| {
            ymd(
                c.get(1)?.as_str().parse().ok()?,
                c.get(2)?.as_str().parse().ok()?,
                c.get(3)?.as_str().parse().ok()?,
            )
        })();
        if let Some(d) = date {
            return Some(DateSpec::Day(d));
        }
    }
    for c in SLASH_DATE.captures_iter(clipped) {
        let date = (|| {
            let m: u32 = c.get(1)?.as_str().parse().ok()?;
            let d: u32 = c.get(2)?.as_str().parse().ok()?;
            match c.get(3) {
                Some(y) if y.as_str().len() == 2 => {
                    ymd(2000 + y.as_str().parse::<i32>().ok()?, m, d)
                }
                Some(y) => ymd(y.as_str().parse().ok()?, m, d),
                None => nearest_date(m, d, today),
            }
        })();
        if let Some(d) = date {
            return Some(DateSpec::Day(d));
        }
    }
    let toks = content_tokens(clipped);
    if let Some(d) = month_day(&toks, today) {
        return Some(DateSpec::Day(d));
    }
    relative_date(&toks, today).or_else(|| day_of_month(&toks, today).map(DateSpec::Day))
}

/// "on the fifth" / "on the 5th": the next such day of the month, today included.
fn day_of_month(toks: &[String], today: NaiveDate) -> Option<NaiveDate> {
    let day = (2..toks.len()).find_map(|i| {
        (toks[i - 2] == "on" && toks[i - 1] == "the")
            .then(|| day_at(toks, i, false))
            .flatten()
            .map(|(d, _)| d)
    })?;
    let mut ym = YearMonth::of(today);
    for _ in 0..13 {
        if let Some(date) = ymd(ym.year, ym.month, day).filter(|d| *d >= today) {
            return Some(date);
        }
        ym = ym.next();
    }
    None
}

/// "may" is a month only where a month fits ("in may", "may 2025", "the may bill"), not in
/// "may I ...".
fn may_is_month(toks: &[String], i: usize) -> bool {
    let prev = if i > 0 {
        toks.get(i - 1).map_or("", String::as_str)
    } else {
        ""
    };
    let next = toks.get(i + 1).map(String::as_str);
    matches!(
        prev,
        "in" | "for"
            | "of"
            | "from"
            | "since"
            | "during"
            | "until"
            | "till"
            | "last"
            | "this"
            | "next"
            | "early"
            | "late"
            | "mid"
            | "the"
            | "through"
            | "thru"
            | "and"
            | "or"
            | "to"
    ) || next.is_none()
        || year_at(toks, i + 1).is_some()
        || matches!(
            next,
            Some(
                "bill"
                    | "billing"
                    | "statement"
                    | "invoice"
                    | "payment"
                    | "payments"
                    | "charges"
                    | "charge"
                    | "usage"
            )
        )
}

/// A billing month: "this month"/"current month"/"my bill this month" → today's month; "last
/// month"/"previous month"; "next month"; "January", "in january", "jan", "January 2025",
/// "2025-01". A bare month name is the most recent such month not after today's month ("last
/// January" strictly before it, "next January" strictly after). The first mention wins.
pub fn extract_month(text: &str, today: NaiveDate) -> Option<YearMonth> {
    let clipped = clip(text);
    if let Some(ym) = ISO_YM
        .captures_iter(clipped)
        .find_map(|c| ym_from_strs(c.get(1)?.as_str(), c.get(2)?.as_str()))
    {
        return Some(ym);
    }
    let toks = content_tokens(clipped);
    let current = YearMonth::of(today);
    for i in 0..toks.len() {
        let prev = if i > 0 { toks[i - 1].as_str() } else { "" };
        if toks[i] == "month" {
            match prev {
                "this" | "current" => return Some(current),
                "last" | "previous" | "past" | "prior" => return Some(current.prev()),
                "next" | "coming" | "following" => return Some(current.next()),
                _ => {}
            }
            continue;
        }
        let Some(month) = month_at(&toks, i) else {
            continue;
        };
        if toks[i] == "may" && !may_is_month(&toks, i) {
            continue;
        }
        let year_pos = if toks.get(i + 1).is_some_and(|t| t == "of") {
            i + 2
        } else {
            i + 1
        };
        if let Some((year, _)) = year_at(&toks, year_pos) {
            return Some(YearMonth { year, month });
        }
        let year = match prev {
            "last" | "previous" if month >= current.month => current.year.checked_sub(1)?,
            "next" | "coming" if month <= current.month => current.year.checked_add(1)?,
            "next" | "coming" => current.year,
            _ if month > current.month => current.year.checked_sub(1)?,
            _ => current.year,
        };
        return Some(YearMonth { year, month });
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Ordinals, yes/no
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Amounts
// ---------------------------------------------------------------------------------------------

struct AmountTok {
    s: String,
    /// Written with a "$" sign.
    dollar: bool,
}

fn amount_tokens(text: &str) -> Vec<AmountTok> {
    let text = normalize_apostrophes(clip(text));
    let mut out = Vec::new();
    let mut pending_dollar = false;
    for w in text.split_whitespace().take(MAX_TOKENS) {
        let dollar = pending_dollar || w.contains('$');
        let core = trim_punct(w).to_lowercase();
        if core.is_empty() {
            pending_dollar = w.contains('$');
            continue;
        }
        pending_dollar = false;
        if core
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b',' || b == b'.')
        {
            out.push(AmountTok { s: core, dollar });
        } else {
            out.extend(
                core.split('-')
                    .map(trim_punct)
                    .filter(|p| !p.is_empty())
                    .map(|p| AmountTok {
                        s: p.to_string(),
                        dollar,
                    }),
            );
        }
    }
    out
}

/// "125.50" → (125, Some(50)), "1,250" → (1250, None), "12.5" → (12, Some(50)).
fn parse_numeric(s: &str) -> Option<(i64, Option<i64>)> {
    let c = NUMERIC.captures(s)?;
    let int: String = c
        .get(1)?
        .as_str()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    if int.len() > 13 {
        return None;
    }
    let dollars: i64 = int.parse().ok()?;
    let cents = match c.get(2) {
        None => None,
        Some(f) => {
            let f = f.as_str();
            let two: String = f.chars().chain(std::iter::repeat('0')).take(2).collect();
            Some(two.parse().ok()?)
        }
    };
    Some((dollars, cents))
}

/// A number at `i`: written ("125.50", "$20") or spoken (the longest run of number words).
/// Returns (whole units, cents if written with a decimal part, index after, spoken).
fn amount_number_at(toks: &[AmountTok], i: usize) -> Option<(i64, Option<i64>, usize, bool)> {
    let first = toks.get(i)?;
    if matches!(first.s.as_str(), "a" | "an")
        && toks
            .get(i + 1)
            .is_some_and(|t| DOLLAR_WORDS.contains(&t.s.as_str()))
    {
        return Some((1, None, i + 1, true));
    }
    let end_max = toks.len().min(i + 12);
    let spoken = (i + 1..=end_max).rev().find_map(|end| {
        let refs: Vec<&str> = toks.get(i..end)?.iter().map(|t| t.s.as_str()).collect();
        words_to_number(&refs).map(|v| (v, end))
    });
    let numeric = parse_numeric(&first.s);
    match (spoken, numeric) {
        // "5 hundred" reads better as words than as a bare "5".
        (Some((v, end)), _) if end > i + 1 => Some((v, None, end, true)),
        (_, Some((v, c))) => Some((v, c, i + 1, false)),
        (Some((v, end)), None) => Some((v, None, end, true)),
        (None, None) => None,
    }
}

/// Money in integer cents: "$125.50", "125.50", "125 dollars and 50 cents", "a hundred twenty
/// five dollars fifty", "one hundred and twenty five fifty", "twenty dollars", "$20" → 2000,
/// "fifty cents" → 50. An amount marked as money ("$", "dollars", "cents") wins over a bare
/// number; otherwise the first number is taken. `None` if no amount.
pub fn extract_amount_cents(text: &str) -> Option<i64> {
    let toks = amount_tokens(text);
    let t = |k: usize| toks.get(k).map_or("", |t| t.s.as_str());
    let mut first_plain: Option<i64> = None;
    let mut i = 0;
    while i < toks.len() {
        let Some((whole, decimal, mut k, spoken)) = amount_number_at(&toks, i) else {
            i += 1;
            continue;
        };
        let mut money = toks[i].dollar;
        let total = if decimal.is_none() && CENT_WORDS.contains(&t(k)) {
            money = true;
            k += 1;
            Some(whole)
        } else {
            let mut cents = decimal;
            if cents.is_none() && t(k) == "point" {
                let mut digits = String::new();
                let mut j = k + 1;
                while digits.len() < 2 {
                    match spoken_digit(t(j))
                        .map(String::from)
                        .or_else(|| is_digits(t(j)).then(|| t(j).to_string()))
                    {
                        Some(d) => digits.push_str(&d),
                        None => break,
                    }
                    j += 1;
                }
                if !digits.is_empty() {
                    let two: String = digits
                        .chars()
                        .chain(std::iter::repeat('0'))
                        .take(2)
                        .collect();
                    cents = two.parse().ok();
                    k = j;
                }
            }
            let mut major_word = false;
            if DOLLAR_WORDS.contains(&t(k)) {
                major_word = true;
                money = true;
                k += 1;
            }
            if cents.is_none() {
                let (after_and, start) = if t(k) == "and" {
                    (true, k + 1)
                } else {
                    (false, k)
                };
                if let Some((c, None, end, c_spoken)) = amount_number_at(&toks, start)
                    && (0..100).contains(&c)
                {
                    let cent_word = CENT_WORDS.contains(&t(end));
                    // "... five fifty": spoken cents straight after spoken dollars.
                    let adjacent = !after_and && spoken && c_spoken && c >= 10;
                    if cent_word || major_word || adjacent {
                        cents = Some(c);
                        k = end + usize::from(cent_word);
                        money |= cent_word;
                    }
                }
            }
            whole
                .checked_mul(100)
                .and_then(|w| w.checked_add(cents.unwrap_or(0)))
        };
        if let Some(total) = total {
            if money {
                return Some(total);
            }
            first_plain.get_or_insert(total);
        }
        i = k.max(i + 1);
    }
    first_plain
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(p: &str) -> Regex {
        Regex::new(p).expect("test pattern is valid")
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("test date is valid")
    }

    fn ym(year: i32, month: u32) -> YearMonth {
        YearMonth { year, month }
    }

    #[test]
    fn code_spoken_and_written_forms() {
        let inputs = [
            "A B C one two three",
            "abc 123",
            "alpha bravo charlie one two three",
            "ABC-123",
            "a b c 1 2 3",
            "sure, it's ABC123 and the name is John Doe",
            "A, B, C, 1, 2, 3.",
            "a.b.c. one-two-three",
            "my code is a b c one two three please",
            "It's ABC 123.",
        ];
        for p in ["^[A-Z0-9]{6}$", "^[A-Z]{3}[0-9]{3}$"] {
            let re = pat(p);
            for input in inputs {
                assert_eq!(
                    extract_code(input, &re),
                    Some("ABC123".to_string()),
                    "{input:?} with {p}"
                );
            }
        }
    }

    #[test]
    fn code_special_words() {
        let re = pat("^[A-Z0-9]{6}$");
        assert_eq!(
            extract_code("x-ray yankee zulu one oh five", &re),
            Some("XYZ105".to_string())
        );
        assert_eq!(
            extract_code("xray juliett kilo 4 5 6", &re),
            Some("XJK456".to_string())
        );
        assert_eq!(
            extract_code("juliet romeo double five seven one", &re),
            Some("JR5571".to_string())
        );
        assert_eq!(
            extract_code("Q R triple 7 one", &re),
            Some("QR7771".to_string())
        );
        assert_eq!(
            extract_code("it is A1B2C3 thanks", &re),
            Some("A1B2C3".to_string())
        );
        assert_eq!(
            extract_code("a b c twenty three o", &re),
            Some("ABC23O".to_string())
        );
        assert_eq!(
            extract_code("code 1 2 3 4 5 6 7", &re),
            Some("123456".to_string())
        );
        let re = pat("^[0-9]{3,8}$");
        assert_eq!(
            extract_code("it's one two three four five six seven", &re),
            Some("1234567".to_string())
        );
    }

    #[test]
    fn code_spelling_aids_and_suffixes() {
        let re = pat("^[A-Z0-9]{6}$");
        assert_eq!(
            extract_code("A B as in boy C 1 2 3", &re),
            Some("ABC123".to_string())
        );
        assert_eq!(
            extract_code("m for mary n like nancy o 1 2 3", &re),
            Some("MNO123".to_string())
        );
        let loose = pat("^[A-Z0-9]{3,12}$");
        assert_eq!(extract_code("a table at 7pm on the 12th", &loose), None);
        assert_eq!(
            extract_code("flight UA 2 3 4", &loose),
            Some("UA234".to_string())
        );
    }

    #[test]
    fn code_negatives() {
        let any6 = pat("^[A-Z0-9]{6}$");
        let l3d3 = pat("^[A-Z]{3}[0-9]{3}$");
        assert_eq!(
            extract_code("I want to confirm my reservation", &any6),
            None
        );
        assert_eq!(
            extract_code("I want to confirm my reservation", &pat("^[A-Z0-9]{3,12}$")),
            None
        );
        assert_eq!(extract_code("please answer the phone", &any6), None);
        assert_eq!(extract_code("", &any6), None);
        assert_eq!(extract_code("hello there", &l3d3), None);
        assert_eq!(extract_code("I have a question about my bill", &any6), None);
        assert_eq!(extract_code("room 123 on the third floor", &l3d3), None);
        assert_eq!(extract_code("the code is ABC12", &any6), None);
    }

    #[test]
    fn names() {
        let cases = [
            ("it's John Doe", "John Doe"),
            ("the name is John Doe", "John Doe"),
            ("name's john doe", "John Doe"),
            ("my name is John Doe", "John Doe"),
            ("under John Doe", "John Doe"),
            ("John Doe", "John Doe"),
            ("sure it's ABC123 and the name is John Doe", "John Doe"),
            ("sure, it's ABC123 and the name is John Doe.", "John Doe"),
            ("My name is John Doe and I need help", "John Doe"),
            ("my name is, uh, mary o'brien please", "Mary O'Brien"),
            ("It's under Jane Smith, thanks", "Jane Smith"),
            ("This is Sarah from accounting", "Sarah"),
            ("the name is Ronald McDonald", "Ronald McDonald"),
            ("Yes, John Doe.", "John Doe"),
            ("I am Dr. Smith", "Smith"),
            ("name is jean-luc picard", "Jean-Luc Picard"),
        ];
        for (input, want) in cases {
            assert_eq!(extract_name(input), Some(want.to_string()), "{input:?}");
        }
    }

    #[test]
    fn name_negatives() {
        for input in [
            "",
            "yes",
            "it's",
            "It's ABC123",
            "I'm not sure",
            "it's fine thanks",
            "I want to confirm my reservation",
            "December first",
            "I'm calling about my bill",
            "it's under my name",
        ] {
            assert_eq!(extract_name(input), None, "{input:?}");
        }
        assert_eq!(
            extract_name("my name is A B C one two three four five"),
            None
        );
        assert_eq!(
            extract_name("the name is John Paul George Ringo Starr"),
            Some("John Paul George Ringo".to_string())
        );
    }

    #[test]
    fn dates() {
        let today = date(2025, 11, 24); // a Monday
        let day = |y, m, d| Some(DateSpec::Day(date(y, m, d)));
        assert_eq!(extract_date("December first", today), day(2025, 12, 1));
        assert_eq!(extract_date("december 1st", today), day(2025, 12, 1));
        assert_eq!(extract_date("Dec 1", today), day(2025, 12, 1));
        assert_eq!(
            extract_date("the first of December", today),
            day(2025, 12, 1)
        );
        assert_eq!(extract_date("12/1", today), day(2025, 12, 1));
        assert_eq!(extract_date("2025-12-01", today), day(2025, 12, 1));
        assert_eq!(
            extract_date("december twenty-first", today),
            day(2025, 12, 21)
        );
        assert_eq!(extract_date("January 5th", today), day(2026, 1, 5));
        assert_eq!(extract_date("march 3rd 2027", today), day(2027, 3, 3));
        assert_eq!(extract_date("today", today), day(2025, 11, 24));
        assert_eq!(extract_date("tomorrow please", today), day(2025, 11, 25));
        assert_eq!(extract_date("it was yesterday", today), day(2025, 11, 23));
        assert_eq!(extract_date("in 3 days", today), day(2025, 11, 27));
        assert_eq!(
            extract_date("next week", today),
            Some(DateSpec::Range {
                start: date(2025, 12, 1),
                end: date(2025, 12, 7)
            })
        );
        assert_eq!(
            extract_date("sometime this week", today),
            Some(DateSpec::Range {
                start: date(2025, 11, 24),
                end: date(2025, 11, 30)
            })
        );
        assert_eq!(extract_date("next monday", today), day(2025, 12, 1));
        assert_eq!(extract_date("on friday", today), day(2025, 11, 28));
        assert_eq!(extract_date("last friday", today), day(2025, 11, 21));
        assert_eq!(
            extract_date("December 30th", date(2025, 1, 10)),
            day(2024, 12, 30)
        );
        assert_eq!(
            extract_date("Okay, so it's December, uh, the fifth.", today),
            day(2025, 12, 5)
        );
        assert_eq!(extract_date("two weeks from now", today), day(2025, 12, 8));
        assert_eq!(extract_date("a week from today", today), day(2025, 12, 1));
        assert_eq!(extract_date("on the 5th", today), day(2025, 12, 5));
        assert_eq!(
            extract_date("the day after tomorrow", today),
            day(2025, 11, 26)
        );
        assert_eq!(
            extract_date("this weekend", today),
            Some(DateSpec::Range {
                start: date(2025, 11, 29),
                end: date(2025, 11, 30)
            })
        );
        assert_eq!(
            extract_date("next month", today),
            Some(DateSpec::Range {
                start: date(2025, 12, 1),
                end: date(2025, 12, 31)
            })
        );
        assert_eq!(extract_date("whenever works", today), None);
        assert_eq!(extract_date("", today), None);
    }

    #[test]
    fn months() {
        let today = date(2025, 1, 15);
        assert_eq!(extract_month("this month", today), Some(ym(2025, 1)));
        assert_eq!(
            extract_month("my bill this month", today),
            Some(ym(2025, 1))
        );
        assert_eq!(extract_month("current month", today), Some(ym(2025, 1)));
        assert_eq!(extract_month("January", today), Some(ym(2025, 1)));
        assert_eq!(extract_month("last month", today), Some(ym(2024, 12)));
        assert_eq!(extract_month("previous month", today), Some(ym(2024, 12)));
        assert_eq!(extract_month("December", today), Some(ym(2024, 12)));
        assert_eq!(extract_month("in jan", today), Some(ym(2025, 1)));
        assert_eq!(extract_month("January 2024", today), Some(ym(2024, 1)));
        assert_eq!(extract_month("2024-03", today), Some(ym(2024, 3)));
        assert_eq!(extract_month("the may bill", today), Some(ym(2024, 5)));
        assert_eq!(extract_month("may I see my bill", today), None);
        assert_eq!(extract_month("what do I owe", today), None);
    }

    #[test]
    fn year_month_format() {
        assert_eq!(ym(2025, 1).to_string_ym(), "2025-01");
        assert_eq!(YearMonth::parse("2025-01"), Some(ym(2025, 1)));
        assert_eq!(YearMonth::parse("2025-13"), None);
        assert_eq!(YearMonth::parse("January"), None);
    }

    #[test]
    fn ordinals() {
        assert_eq!(extract_ordinal("the personal one"), None);
        assert_eq!(extract_ordinal("the first one"), Some(Ordinal::Nth(1)));
        assert_eq!(extract_ordinal("second"), Some(Ordinal::Nth(2)));
        assert_eq!(extract_ordinal("the 2nd"), Some(Ordinal::Nth(2)));
        assert_eq!(extract_ordinal("number two"), Some(Ordinal::Nth(2)));
        assert_eq!(
            extract_ordinal("option three please"),
            Some(Ordinal::Nth(3))
        );
        assert_eq!(extract_ordinal("the last one"), Some(Ordinal::Last));
        assert_eq!(extract_ordinal("the twenty-first"), Some(Ordinal::Nth(21)));
        assert_eq!(extract_ordinal("hold on a second"), None);
        assert_eq!(extract_ordinal("my bill from last month"), None);
        assert_eq!(extract_ordinal("the second to last one"), None);
        assert_eq!(extract_ordinal("I have 3 accounts"), None);
        assert_eq!(extract_ordinal("I'd like last week's statement"), None);
    }

    #[test]
    fn yes_no() {
        for input in [
            "yes",
            "Yeah.",
            "yep",
            "sure",
            "correct",
            "that's right",
            "please do",
            "go ahead",
            "absolutely",
            "ok",
            "Okay!",
            "no problem",
        ] {
            assert_eq!(extract_yes_no(input), Some(true), "{input:?}");
        }
        for input in [
            "no",
            "nope",
            "nah",
            "don't",
            "not now",
            "no thanks",
            "that's all",
            "cancel that",
            "no, not yet",
            "yes, no, not yet",
            "absolutely not",
        ] {
            assert_eq!(extract_yes_no(input), Some(false), "{input:?}");
        }
        for input in [
            "I'm not sure",
            "not really sure",
            "I know",
            "yesterday",
            "I don't know",
            "",
            "maybe",
            "the noon flight",
        ] {
            assert_eq!(extract_yes_no(input), None, "{input:?}");
        }
    }

    #[test]
    fn amounts() {
        assert_eq!(extract_amount_cents("$125.50"), Some(12550));
        assert_eq!(extract_amount_cents("125.50"), Some(12550));
        assert_eq!(
            extract_amount_cents("125 dollars and 50 cents"),
            Some(12550)
        );
        assert_eq!(
            extract_amount_cents("a hundred twenty five dollars fifty"),
            Some(12550)
        );
        assert_eq!(
            extract_amount_cents("one hundred and twenty five fifty"),
            Some(12550)
        );
        assert_eq!(
            extract_amount_cents("one hundred twenty five dollars and fifty cents"),
            Some(12550)
        );
        assert_eq!(extract_amount_cents("twenty dollars"), Some(2000));
        assert_eq!(extract_amount_cents("$20"), Some(2000));
        assert_eq!(
            extract_amount_cents("pay $1,250 on my 2nd card"),
            Some(125000)
        );
        assert_eq!(extract_amount_cents("fifty cents"), Some(50));
        assert_eq!(extract_amount_cents("twenty-five dollars"), Some(2500));
        assert_eq!(
            extract_amount_cents("I'd like to pay 2 bills, $30 total"),
            Some(3000)
        );
        assert_eq!(extract_amount_cents("a dollar fifty"), Some(150));
        assert_eq!(extract_amount_cents("I want to pay my bill"), None);
        assert_eq!(extract_amount_cents(""), None);
    }

    #[test]
    fn digits() {
        assert_eq!(
            extract_digits("four five six seven"),
            Some("4567".to_string())
        );
        assert_eq!(extract_digits("ending in 4567"), Some("4567".to_string()));
        assert_eq!(
            extract_digits("the one ending in forty five sixty seven"),
            Some("4567".to_string())
        );
        assert_eq!(
            extract_digits("five five five, oh one two three"),
            Some("5550123".to_string())
        );
        assert_eq!(extract_digits("double five 1"), Some("551".to_string()));
        assert_eq!(extract_digits("no digits here"), None);
    }

    #[test]
    fn number_words() {
        assert_eq!(words_to_number(&["twenty", "five"]), Some(25));
        assert_eq!(
            words_to_number(&["one", "hundred", "and", "five"]),
            Some(105)
        );
        assert_eq!(
            words_to_number(&["two", "thousand", "twenty", "five"]),
            Some(2025)
        );
        assert_eq!(words_to_number(&["twenty-five"]), Some(25));
        assert_eq!(words_to_number(&["a", "hundred"]), Some(100));
        assert_eq!(words_to_number(&["zero"]), Some(0));
        assert_eq!(words_to_number(&["five", "twenty"]), None);
        assert_eq!(words_to_number(&["one", "hundred", "and"]), None);
        assert_eq!(words_to_number(&[]), None);
        assert_eq!(words_to_number(&["banana"]), None);
    }

    #[test]
    fn tokenizing() {
        assert_eq!(
            tokens("Sure, it's ABC-123!"),
            vec!["sure", "it's", "abc-123"]
        );
        assert_eq!(tokens("  $125.50 ... "), vec!["125.50"]);
        assert_eq!(tokens(""), Vec::<String>::new());
        assert_eq!(tokens(&"word ".repeat(1000)).len(), MAX_TOKENS);
    }

    #[test]
    fn huge_and_odd_input_is_fast_and_safe() {
        // Deterministic pseudo-random text mixing words, digits, punctuation and unicode.
        let alphabet: Vec<char> = "abcXYZ 0123456789 ,.-'$/ éü漢字🙂 one two double oh alpha"
            .chars()
            .collect();
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        let text: String = (0..10_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                alphabet[(state % alphabet.len() as u64) as usize]
            })
            .collect();
        let today = date(2025, 11, 24);
        let started = std::time::Instant::now();
        for input in [
            text.as_str(),
            "",
            "漢字🙂",
            "🙂 $ - . '",
            &"1".repeat(10_000),
            &"a ".repeat(5_000),
        ] {
            let _ = extract_code(input, &pat("^[A-Z0-9]{6}$"));
            let _ = extract_name(input);
            let _ = extract_date(input, today);
            let _ = extract_month(input, today);
            let _ = extract_ordinal(input);
            let _ = extract_yes_no(input);
            let _ = extract_amount_cents(input);
            let _ = extract_digits(input);
            let _ = tokens(input);
        }
        let _ = extract_date("tomorrow", NaiveDate::MAX);
        let _ = extract_date("yesterday", NaiveDate::MIN);
        let _ = extract_month("last month", NaiveDate::MIN);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
    }
}
