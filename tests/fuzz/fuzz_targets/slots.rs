//! Slot extraction on arbitrary text: every task of both templates (`extract::for_task`) and the
//! `&str` functions of `agent::slots`; nothing panics and every answer is deterministic. Redaction
//! runs too: it must not panic and must be idempotent.
#![no_main]

use std::sync::LazyLock;

use chrono::NaiveDate;
use libfuzzer_sys::fuzz_target;
use switchboard::agent::master::extract;
use switchboard::redact::redact;
use switchboard::agent::slots;
use switchboard::config::{Config, Template};

static TEMPLATES: LazyLock<Vec<Template>> = LazyLock::new(|| {
    let cfg = Config::embedded().expect("embedded config parses");
    ["hospitality", "travel"]
        .iter()
        .map(|n| cfg.load_template_named(n).expect("template loads"))
        .collect()
});

static CODE: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"^[A-Z]{3}[0-9]{3}$").expect("valid pattern"));

macro_rules! same {
    ($e:expr) => {{
        let a = $e;
        let b = $e;
        assert_eq!(a, b);
    }};
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let today = NaiveDate::from_ymd_opt(2026, 3, 15).expect("valid date");
    for template in TEMPLATES.iter() {
        for task in template.tasks.keys() {
            same!(extract::for_task(template, task, text, today));
        }
    }
    same!(slots::tokens(text));
    same!(slots::extract_ordinal(text));
    same!(slots::extract_yes_no(text));
    same!(slots::extract_digits(text));
    same!(slots::extract_date(text, today));
    same!(slots::extract_month(text, today));
    same!(slots::YearMonth::parse(text));
    same!(slots::extract_name(text));
    same!(slots::extract_amount_cents(text));
    same!(slots::extract_urgency(text));
    same!(slots::extract_code(text, &CODE));
    same!(slots::code_readings(text, &CODE, &[]));
    let words: Vec<&str> = text.split_whitespace().collect();
    same!(slots::words_to_number(&words));
    let once = redact(text).into_owned();
    assert_eq!(redact(&once), once.as_str());
});
