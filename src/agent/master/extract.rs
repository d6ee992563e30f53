//! Slot values from the caller's words, per field of a task: typed by the template's field spec
//! (its compiled pattern and spoken aliases), tolerant of how speech recognition writes them.
//! A code field also carries its other readings (`<field>_candidates`) for the agent to resolve
//! against its records; a date field the caller's own words for it (`<field>_text`).

use crate::agent::agents::CANDIDATES;
use crate::agent::protocol::RequiredField;
use crate::agent::slots::{self, DateSpec};
use crate::agent::speech;
use crate::config::{FieldSpec, FieldType, Template};
use chrono::NaiveDate;
use regex::Regex;
use serde_json::{Map, Value, json};
use std::borrow::Cow;
use std::sync::LazyLock;

/// Any code, when a field has no pattern of its own.
static ANY_CODE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new("^[A-Z0-9]{3,12}$").expect("constant pattern is valid"));

/// Where a name may come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Names {
    /// Only after a cue ("the name is", "for", "under", "this is"): a request.
    Cued,
    /// Also a name said on its own or beside other details: an answer to "what's the name?".
    Bare,
}

/// A field as extraction sees it: the template's spec when it has one.
pub struct Field<'a> {
    pub name: &'a str,
    pub ft: FieldType,
    pub pattern: Option<Cow<'a, Regex>>,
    pub aliases: Vec<(String, String)>,
}

impl<'a> Field<'a> {
    pub fn of_spec(f: &'a FieldSpec) -> Self {
        Field {
            name: &f.field,
            ft: f.field_type,
            pattern: f.regex.as_ref().map(Cow::Borrowed),
            aliases: f.alias_pairs(),
        }
    }

    /// A field a sub-agent asked for: the template's spec of it for `task` if there is one,
    /// else what the agent sent (its pattern compiled now).
    pub fn of_required(template: &'a Template, task: &str, r: &'a RequiredField) -> Self {
        if let Some(spec) = template.field(task, &r.field) {
            return Field::of_spec(spec);
        }
        let pattern = r
            .validation
            .as_ref()
            .and_then(|v| v.pattern.as_deref())
            .and_then(|p| Regex::new(p).ok())
            .map(Cow::Owned);
        Field {
            name: &r.field,
            ft: FieldType::parse(&r.field_type),
            pattern,
            aliases: vec![],
        }
    }
}

/// A name said alone or beside other details: "ABC123, John Doe", "John Doe and it's ABC123",
/// "ABC123. Doe, John." (surname first).
fn name_in(text: &str) -> Option<String> {
    let parts: Vec<&str> = text
        .split([',', ';', '.'])
        .flat_map(|part| part.split(" and "))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    slots::extract_name(text)
        .or_else(|| parts.iter().copied().find_map(slots::extract_name))
        .or_else(|| {
            // Two one-word parts that together are a name ("Doe, John").
            parts
                .windows(2)
                .find_map(|w| slots::extract_name(&format!("{} {}", w[0], w[1])))
        })
        .or_else(|| {
            // One uncommon word on its own, where a name was asked for ("…, Jondo.").
            parts
                .iter()
                .filter(|p| p.split_whitespace().count() == 1)
                .find_map(|p| slots::extract_name(&format!("the name is {p}")))
        })
        .or_else(|| {
            // A name at the end of a part ("it's BC 123 John Doe").
            parts.iter().find_map(|p| {
                let words: Vec<&str> = p.split_whitespace().collect();
                (1..words.len().saturating_sub(1))
                    .find_map(|k| slots::extract_name(&words[k..].join(" ")))
            })
        })
}

/// The words the caller used for a date ("next week"), for replies.
fn timeframe_phrase(text: &str, v: &Value) -> Option<String> {
    let lower = text.to_lowercase();
    for p in [
        "next week",
        "this week",
        "tomorrow",
        "today",
        "this weekend",
        "next weekend",
        "next month",
    ] {
        if lower.contains(p) {
            return Some(p.to_string());
        }
    }
    let day = v
        .as_str()
        .or_else(|| v.get("start").and_then(Value::as_str))?;
    NaiveDate::parse_from_str(day, "%Y-%m-%d")
        .ok()
        .map(speech::spoken_date)
}

/// Extracts `field` from `text` into `params` (with its candidates or phrase). Returns whether
/// a value was found. `Text` fields take the whole utterance; `Choice` and `Confirm` fields are
/// answered elsewhere.
pub fn extract_into(
    field: &Field<'_>,
    text: &str,
    today: NaiveDate,
    names: Names,
    params: &mut Map<String, Value>,
) -> bool {
    let value = match field.ft {
        FieldType::String => {
            let re = field.pattern.as_deref().unwrap_or(&ANY_CODE);
            let readings = slots::code_readings(text, re, &field.aliases);
            let mut it = readings.into_iter();
            let Some(first) = it.next() else {
                return false;
            };
            let rest: Vec<Value> = it.map(Value::from).collect();
            let key = format!("{}{CANDIDATES}", field.name);
            if rest.is_empty() {
                params.remove(&key);
            } else {
                params.insert(key, Value::Array(rest));
            }
            Some(Value::from(first))
        }
        FieldType::Name => match names {
            Names::Cued => slots::extract_name(text),
            Names::Bare => name_in(text),
        }
        .map(Value::from),
        FieldType::Date => slots::extract_date(text, today).map(|d| match d {
            DateSpec::Day(d) => Value::from(d.format("%Y-%m-%d").to_string()),
            DateSpec::Range { start, end } => {
                json!({"start": start.format("%Y-%m-%d").to_string(), "end": end.format("%Y-%m-%d").to_string()})
            }
        }),
        FieldType::Month => {
            slots::extract_month(text, today).map(|m| Value::from(m.to_string_ym()))
        }
        FieldType::Amount => slots::extract_amount_cents(text).map(|c| json!(c as f64 / 100.0)),
        FieldType::Urgency => slots::extract_urgency(text).map(|u| Value::from(u.as_str())),
        FieldType::Text => Some(Value::from(text.trim())),
        FieldType::Confirm => slots::extract_yes_no(text).map(Value::Bool),
        FieldType::Choice => None,
    };
    let Some(v) = value else {
        return false;
    };
    if field.ft == FieldType::Date
        && let Some(phrase) = timeframe_phrase(text, &v)
    {
        params.insert(format!("{}_text", field.name), Value::from(phrase));
    }
    params.insert(field.name.to_string(), v);
    true
}

/// Slot values the caller already said in a request for `task`. A name counts after a cue
/// ("for John Doe", "under", "this is"), or on its own beside the code it goes with
/// ("ABC123, John Doe") — never guessed from a request alone.
pub fn for_task(
    template: &Template,
    task: &str,
    text: &str,
    today: NaiveDate,
) -> Map<String, Value> {
    let mut params = Map::new();
    let Some(spec) = template.tasks.get(task) else {
        return params;
    };
    let fields: Vec<&FieldSpec> = spec.required.iter().chain(&spec.optional).collect();
    for f in &fields {
        if matches!(
            f.field_type,
            FieldType::Choice | FieldType::Confirm | FieldType::Name
        ) {
            continue;
        }
        extract_into(&Field::of_spec(f), text, today, Names::Cued, &mut params);
    }
    let with_code = fields
        .iter()
        .any(|f| f.field_type == FieldType::String && params.contains_key(&f.field));
    let names = if with_code { Names::Bare } else { Names::Cued };
    for f in fields.iter().filter(|f| f.field_type == FieldType::Name) {
        extract_into(&Field::of_spec(f), text, today, names, &mut params);
    }
    params
}

/// A partial code said as a correction, put in place of the matching end of the old code
/// ("124" over "ABC123" → "ABC124"), if the result fits the field.
pub fn splice(old: &str, part: &str, f: &FieldSpec) -> Option<String> {
    if part.len() >= old.len() || !old.is_char_boundary(old.len() - part.len()) {
        return None;
    }
    let tail = format!("{}{part}", &old[..old.len() - part.len()]);
    let head = format!("{part}{}", old.get(part.len()..)?);
    [tail, head].into_iter().find(|c| f.accepts(c))
}

/// Whether `field` identifies a record (a code or a name): kept for later tasks.
pub fn identifies(ft: FieldType) -> bool {
    matches!(ft, FieldType::String | FieldType::Name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> Template {
        crate::agent::master::hospitality()
    }

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2025, 11, 24).unwrap()
    }

    #[test]
    fn requests_carry_their_slots() {
        let t = template();
        let p = for_task(
            &t,
            "confirm_reservation",
            "confirm reservation ABC123 for John Doe",
            today(),
        );
        assert_eq!(p["reservation_number"], "ABC123");
        assert_eq!(p["full_name"], "John Doe");
        let p = for_task(
            &t,
            "cancel_reservation",
            "Cancel it, it's under Jane Smith",
            today(),
        );
        assert_eq!(p["full_name"], "Jane Smith");
        assert!(!p.contains_key("reservation_number"));
        let p = for_task(
            &t,
            "create_support_ticket",
            "my wifi is down and it's really urgent",
            today(),
        );
        assert_eq!(p["severity"], "high");
        let p = for_task(
            &t,
            "cancel_reservation",
            "Cancel my reservation for next week",
            today(),
        );
        assert_eq!(p["timeframe"]["start"], "2025-12-01");
        assert_eq!(p["timeframe_text"], "next week");
    }

    #[test]
    fn a_code_keeps_its_other_readings() {
        let t = template();
        let mut p = Map::new();
        let spec = t
            .field("confirm_reservation", "reservation_number")
            .unwrap();
        assert!(extract_into(
            &Field::of_spec(spec),
            "Sure, it's a BC123 John Doe.",
            today(),
            Names::Bare,
            &mut p
        ));
        let all: Vec<&str> = std::iter::once(&p["reservation_number"])
            .chain(
                p.get("reservation_number_candidates")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten(),
            )
            .filter_map(Value::as_str)
            .collect();
        assert!(all.contains(&"ABC123"), "{p:?}");
    }
}
