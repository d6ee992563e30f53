//! Constant word tables and regexes shared by the extractors.

use super::*;

pub(super) fn re(pattern: &str) -> Regex {
    // Invariant: only called with the constant patterns below, all of which are valid.
    Regex::new(pattern).expect("constant slot regex is valid")
}

pub(super) static X_RAY: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)\bx-ray\b"));
pub(super) static ISO_DATE: LazyLock<Regex> =
    LazyLock::new(|| re(r"\b([0-9]{4})[-/.]([0-9]{1,2})[-/.]([0-9]{1,2})\b"));
pub(super) static SLASH_DATE: LazyLock<Regex> =
    LazyLock::new(|| re(r"\b([0-9]{1,2})/([0-9]{1,2})(?:/([0-9]{4}|[0-9]{2}))?\b"));
pub(super) static ISO_YM: LazyLock<Regex> = LazyLock::new(|| re(r"\b([0-9]{4})-([0-9]{1,2})\b"));
pub(super) static YM_EXACT: LazyLock<Regex> = LazyLock::new(|| re(r"^([0-9]{4})-([0-9]{1,2})$"));
pub(super) static NUMERIC: LazyLock<Regex> =
    LazyLock::new(|| re(r"^([0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.([0-9]+))?$"));
pub(super) static NUMBER_SUFFIXED: LazyLock<Regex> =
    LazyLock::new(|| re(r"^[0-9]+(?:st|nd|rd|th|am|pm|s)$"));
pub(super) static ORD_SUFFIX: LazyLock<Regex> =
    LazyLock::new(|| re(r"^([0-9]{1,4})(?:st|nd|rd|th)$"));

pub(super) const NATO: &[(&str, char)] = &[
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

pub(super) const DIGIT_WORDS: &[(&str, char)] = &[
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

pub(super) const TEENS: &[(&str, i64)] = &[
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

pub(super) const TENS: &[(&str, i64)] = &[
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

pub(super) const SCALES: &[(&str, i64)] = &[
    ("thousand", 1_000),
    ("million", 1_000_000),
    ("billion", 1_000_000_000),
];

pub(super) const ORDINAL_WORDS: &[(&str, usize)] = &[
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

pub(super) const MONTHS: &[(&str, u32)] = &[
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

pub(super) const WEEKDAYS: &[(&str, Weekday)] = &[
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

pub(super) const DOLLAR_WORDS: &[&str] = &[
    "dollar", "dollars", "buck", "bucks", "usd", "euro", "euros", "pound", "pounds",
];
pub(super) const CENT_WORDS: &[&str] = &["cent", "cents", "penny", "pennies", "pence"];

/// Everyday words: never a name, never part of a code. Lowercase, apostrophes as `'`,
/// whitespace-separated; `label:` words only group the list.
pub(super) const COMMON_WORDS: &str = "
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

pub(super) static COMMON: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    COMMON_WORDS
        .split_whitespace()
        .filter(|w| !w.ends_with(':'))
        .collect()
});

/// Hesitations skipped between a name cue and the name ("my name is, uh, John").
pub(super) const NAME_FILLERS: &[&str] = &[
    "uh", "um", "umm", "uhh", "er", "erm", "ah", "hmm", "well", "actually", "really", "just",
];
/// Titles skipped before a name ("I am Dr. Smith" → "Smith").
pub(super) const NAME_TITLES: &[&str] = &[
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
pub(super) const NAME_PARTICLES: &[&str] = &[
    "van", "von", "de", "del", "der", "da", "di", "du", "la", "le", "bin", "ibn",
];
/// Words that may precede a bare name ("Sure, John Doe").
pub(super) const BARE_LEADING: &[&str] = &[
    "yes", "yeah", "yep", "sure", "ok", "okay", "um", "uh", "umm", "er", "so", "well", "hi",
    "hello", "hey", "oh", "alright", "right",
];
/// Words that may follow a bare name ("John Doe, thanks").
pub(super) const POLITE: &[&str] = &["please", "thanks", "thank", "you", "bye", "goodbye"];

/// Cues after which a name follows; anything not a common word is accepted as a name.
pub(super) const STRONG_NAME_CUES: &[&[&str]] = &[
    &["in", "the", "name", "of"],
    &["under", "the", "name", "of"],
    &["under", "the", "name"],
    &["under", "name"],
    &["name", "is"],
    &["name", "was"],
    &["name's"],
    &["under"],
    &["call", "me"],
    &["named"],
    &["passenger", "is"],
    &["passenger's", "name", "is"],
    &["guest", "is"],
    &["traveller", "is"],
    &["traveler", "is"],
];
/// Cues that often precede other things ("it's fine"); the name must look like one (capitalised).
pub(super) const WEAK_NAME_CUES: &[&[&str]] = &[
    &["it", "is"],
    &["this", "is"],
    &["i", "am"],
    &["it's"],
    &["its"],
    &["i'm"],
    &["im"],
    // "ABC123 for John Doe": only a capitalised name counts ("for next week" does not).
    &["for"],
    &["should", "say"],
    &["should", "be"],
    // "name John Doe" (whisper dropped the "is").
    &["name"],
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Polarity {
    Yes,
    No,
    Unsure,
}

/// Yes/no phrases, matched on tokens with apostrophes removed; the longest match at a position
/// wins, so "not sure" is uncertainty rather than "not" + "sure".
pub(super) const YES_NO_PHRASES: &[(&[&str], Polarity)] = &[
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
