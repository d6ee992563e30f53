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

#[test]
fn code_readings_follow_whisper_renderings() {
    let re = pat("^[A-Z0-9]{6}$");
    let none: Vec<(String, String)> = vec![];
    let has = |text: &str, code: &str| {
        let got = code_readings(text, &re, &none);
        assert!(got.iter().any(|c| c == code), "{text:?} → {got:?}");
    };
    // Nothing matches the pattern: the longest run of code material is still offered, for a
    // search of the nearest record.
    has("You had to say BC 123 John Doe.", "BC123");
    has("Sure, it's a BC123.", "ABC123");
    has("It's of BC123, John Doe", "ABC123");
    has("ABC 1, 2, 3.", "ABC123");
    has("A.B.C. one two three", "ABC123");
    has("It's a BC-1.24.", "ABC124");
    has("ABC one two three for John Doe", "ABC123");
    has("it's A B see one two three", "ABC123");
    has("the code is X, Y, Z, 789", "XYZ789");
    // Words are not turned into symbols away from code material.
    assert!(code_readings("I want to see you for dinner", &re, &none).is_empty());
    let flights = pat("^[A-Z]{2}[0-9]{1,4}$");
    let aliases = vec![("british airways".to_string(), "BA".to_string())];
    assert_eq!(
        code_readings(
            "Is British Airways one one seven on time?",
            &flights,
            &aliases
        ),
        ["BA117"]
    );
}

#[test]
fn names_after_the_cues_callers_use() {
    for (text, name) in [
        ("confirm reservation ABC123 for John Doe", "John Doe"),
        ("cancel it, it's under Jane Smith", "Jane Smith"),
        (
            "It's in the name of Carlos Diaz. The number is RTW 905.",
            "Carlos Diaz",
        ),
        (
            "Hi, I'm John Doe, I'd like to cancel my reservation",
            "John Doe",
        ),
        (
            "Hello, this is Priya Patel, I'm calling about my booking",
            "Priya Patel",
        ),
        ("Yes, confirmation ABC 123 named John Doe", "John Doe"),
    ] {
        assert_eq!(extract_name(text).as_deref(), Some(name), "{text}");
    }
    for text in [
        "cancel my reservation for next week",
        "I'd like a table for two",
        "what's my bill for November",
    ] {
        assert_eq!(extract_name(text), None, "{text}");
    }
}

#[test]
fn urgency_as_callers_say_it() {
    use Urgency::*;
    for (text, want) in [
        ("my wifi is down and it's really urgent", Some(High)),
        ("can someone come right away?", Some(High)),
        ("asap please", Some(High)),
        (
            "It's not urgent, whenever someone gets a chance.",
            Some(Low),
        ),
        ("no rush", Some(Low)),
        (
            "Medium, I guess. It's not a big deal but I'd like it fixed tonight.",
            Some(Medium),
        ),
        ("high priority", Some(High)),
        ("the shower is broken", None),
    ] {
        assert_eq!(extract_urgency(text), want, "{text}");
    }
}

#[test]
fn spoken_numbers_end_with_oh_and_count_hundreds() {
    let six = pat("^[A-Z0-9]{6}$");
    assert_eq!(
        extract_code("Two four six eight one oh. Ann Lee. A N N, L E E.", &six).as_deref(),
        Some("246810")
    );
    let room = pat("^[0-9]{3,4}$");
    assert_eq!(
        extract_code("an extra pillow in room five five oh, please", &room).as_deref(),
        Some("550")
    );
    assert_eq!(
        extract_code("room one two three oh wait", &room).as_deref(),
        Some("123")
    );
    let flight = pat("^[A-Z]{2}[0-9]{1,4}$");
    assert_eq!(
        extract_code("flight L H four hundred please", &flight).as_deref(),
        Some("LH400")
    );
}

#[test]
fn days_of_the_month_as_callers_say_them() {
    let today = date(2025, 11, 24);
    for (text, want) in [
        (
            "I need to move my reservation to the third.",
            date(2025, 12, 3),
        ),
        ("Could we push it to the twenty first?", date(2025, 12, 21)),
        ("Uh, the fourteenth, if there's a seat.", date(2025, 12, 14)),
        ("can we come in on the twelfth instead", date(2025, 12, 12)),
    ] {
        assert_eq!(
            extract_date(text, today),
            Some(DateSpec::Day(want)),
            "{text}"
        );
    }
    assert_eq!(extract_date("the first one", today), None);
}

#[test]
fn names_introduced_as_callers_do() {
    for (text, name) in [
        (
            "Yeah hi, Tom Becker here. Can I move my flight?",
            "Tom Becker",
        ),
        (
            "the reference is RVP316 and the passenger is Wei Chen.",
            "Wei Chen",
        ),
        (
            "Yes, confirmation ABC 123 name John Doe, D O E.",
            "John Doe",
        ),
    ] {
        assert_eq!(extract_name(text).as_deref(), Some(name), "{text}");
    }
    assert_eq!(extract_name("what's the name on the booking"), None);
}
