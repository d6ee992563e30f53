//! How the master agent says things: reply templates from config rendered against a sub-agent's
//! result, with amounts, dates, times and months written the way a person says them
//! ("$125.50", "December 1st", "3:00 PM", "January 2025"). Replies are plain sentences for TTS:
//! no JSON, no markdown. A placeholder whose value is missing renders as nothing rather than
//! leaking `{braces}` to the caller.

use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};
use serde_json::Value;

/// Renders `{path.to.value|filter}` placeholders against `ctx` (a JSON object).
pub fn render(template: &str, ctx: &Value) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[open..]);
            return tidy(&out);
        };
        let spec = &after[..close];
        let (path, filter) = match spec.split_once('|') {
            Some((p, f)) => (p.trim(), Some(f.trim())),
            None => (spec.trim(), None),
        };
        if let Some(v) = lookup(ctx, path) {
            out.push_str(&apply(v, filter));
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    tidy(&out)
}

/// Collapses doubled spaces left by empty placeholders and spaces before punctuation.
fn tidy(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if ch == ' ' && out.ends_with(' ') {
            continue;
        }
        if matches!(ch, '.' | ',' | '?' | '!') && out.ends_with(' ') {
            out.pop();
        }
        out.push(ch);
    }
    out.trim().to_string()
}

fn lookup<'a>(ctx: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = ctx;
    for part in path.split('.') {
        cur = match cur {
            Value::Object(m) => m.get(part)?,
            Value::Array(a) => a.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    (!cur.is_null()).then_some(cur)
}

fn apply(v: &Value, filter: Option<&str>) -> String {
    match filter {
        Some("date") => as_text(v)
            .and_then(|s| parse_date(&s))
            .map(spoken_date)
            .unwrap_or_default(),
        Some("time") => as_text(v).and_then(|s| parse_time(&s)).unwrap_or_default(),
        Some("money") => to_cents(v).map(money).unwrap_or_default(),
        Some("month") => as_text(v)
            .and_then(|s| spoken_month(&s))
            .unwrap_or_default(),
        Some("items") => items(v),
        Some("for") => as_text(v).map(|s| format!(" for {s}")).unwrap_or_default(),
        Some("a") => as_text(v).map(|s| with_article(&s)).unwrap_or_default(),
        Some("number") => match v {
            Value::Number(n) => n
                .as_u64()
                .map(group_thousands)
                .unwrap_or_else(|| n.to_string()),
            _ => as_text(v).unwrap_or_default(),
        },
        _ => as_text(v).unwrap_or_default(),
    }
}

/// "a Deluxe Suite", "an Ocean View Suite".
fn with_article(noun: &str) -> String {
    let vowel = noun
        .chars()
        .next()
        .is_some_and(|c| matches!(c.to_ascii_lowercase(), 'a' | 'e' | 'i' | 'o' | 'u'));
    format!("{} {noun}", if vowel { "an" } else { "a" })
}

/// 42350 → "42,350".
fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "yes" } else { "no" }.into()),
        _ => None,
    }
}

/// Money values arrive as JSON numbers (125.5) or strings ("125.50", "$125.50").
pub fn to_cents(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_f64().map(|f| (f * 100.0).round() as i64),
        Value::String(s) => {
            let f: f64 = s
                .trim()
                .trim_start_matches('$')
                .replace(',', "")
                .parse()
                .ok()?;
            Some((f * 100.0).round() as i64)
        }
        _ => None,
    }
}

/// "$125.50"; whole amounts keep their cents ("$25.00"), as in the seed's replies.
pub fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let c = cents.unsigned_abs();
    format!("{sign}${}.{:02}", group_thousands(c / 100), c % 100)
}

fn parse_date(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    NaiveDate::parse_from_str(s.get(..10)?, "%Y-%m-%d").ok()
}

fn parse_time(s: &str) -> Option<String> {
    let s = s.trim().trim_end_matches('Z');
    let t = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S")
        .ok()
        .map(|dt| dt.time())
        .or_else(|| chrono::NaiveTime::parse_from_str(s, "%H:%M").ok())?;
    let (pm, h12) = t.hour12();
    Some(format!(
        "{h12}:{:02} {}",
        t.minute(),
        if pm { "PM" } else { "AM" }
    ))
}

pub const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// "December 1st".
pub fn spoken_date(d: NaiveDate) -> String {
    format!("{} {}", MONTHS[d.month0() as usize], ordinal(d.day()))
}

/// "2025-01" → "January 2025".
pub fn spoken_month(ym: &str) -> Option<String> {
    let (y, m) = ym.trim().split_once('-')?;
    let m: usize = m.get(..2).unwrap_or(m).parse().ok()?;
    let name = MONTHS.get(m.checked_sub(1)?)?;
    Some(format!("{name} {y}"))
}

pub fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// A spoken list: strings as they are, `{description, amount}` objects as
/// "your monthly service fee of $99.99".
fn items(v: &Value) -> String {
    let Value::Array(list) = v else {
        return as_text(v).unwrap_or_default();
    };
    let parts: Vec<String> = list
        .iter()
        .filter_map(|item| match item {
            Value::Object(m) => {
                let desc = m.get("description").and_then(Value::as_str)?;
                let amount = m.get("amount").and_then(to_cents);
                Some(match amount {
                    Some(c) => format!("{} of {}", lowercase_first(desc), money(c)),
                    None => lowercase_first(desc),
                })
            }
            other => as_text(other),
        })
        .collect();
    join_spoken(&parts, "and")
}

fn lowercase_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// "a", "a and b", "a, b, and c" (or "or").
pub fn join_spoken(parts: &[String], conj: &str) -> String {
    match parts {
        [] => String::new(),
        [one] => one.clone(),
        [a, b] => format!("{a} {conj} {b}"),
        [init @ .., last] => format!("{}, {conj} {last}", init.join(", ")),
    }
}

/// Option labels often carry written-only punctuation: "Personal Account (ending in 4567)" is
/// spoken "Personal Account ending in 4567".
pub fn speakable_label(label: &str) -> String {
    let cleaned: String = label
        .chars()
        .map(|c| match c {
            '(' | ')' | '[' | ']' | '_' => ' ',
            '-' | '–' | '—' => ',',
            c => c,
        })
        .collect();
    tidy(&cleaned.split_whitespace().collect::<Vec<_>>().join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn seed_confirmation_reply() {
        let ctx = json!({"reservation": {"room_type": "Deluxe Suite", "check_in": "2025-12-01T15:00:00Z",
            "check_out": "2025-12-05T11:00:00Z"}});
        let t = "You have a {reservation.room_type} reserved for {reservation.check_in|date} through \
                 {reservation.check_out|date}. Check-in is at {reservation.check_in|time} and check-out is at {reservation.check_out|time}.";
        assert_eq!(
            render(t, &ctx),
            "You have a Deluxe Suite reserved for December 1st through December 5th. \
             Check-in is at 3:00 PM and check-out is at 11:00 AM."
        );
    }

    #[test]
    fn seed_billing_reply() {
        let ctx = json!({"month": "2025-01", "total_amount": 125.50, "due_date": "2025-02-01",
            "items": [{"description": "Monthly service fee", "amount": 99.99}, {"description": "Additional features", "amount": 25.51}]});
        assert_eq!(
            render(
                "Your bill for {month|month} is {total_amount|money}. This includes {items|items}. The payment is due by {due_date|date}.",
                &ctx
            ),
            "Your bill for January 2025 is $125.50. This includes monthly service fee of $99.99 and additional features of $25.51. The payment is due by February 1st."
        );
    }

    #[test]
    fn missing_values_render_as_nothing() {
        assert_eq!(
            render("Cancelled ABC123{timeframe|for}.", &json!({})),
            "Cancelled ABC123."
        );
        assert_eq!(
            render(
                "Cancelled ABC123{timeframe|for}.",
                &json!({"timeframe": "next week"})
            ),
            "Cancelled ABC123 for next week."
        );
        assert_eq!(render("a {unclosed", &json!({})), "a {unclosed");
    }

    #[test]
    fn spoken_forms() {
        assert_eq!(money(2500), "$25.00");
        assert_eq!(money(47500), "$475.00");
        assert_eq!(money(123456789), "$1,234,567.89");
        assert_eq!(ordinal(1), "1st");
        assert_eq!(ordinal(2), "2nd");
        assert_eq!(ordinal(3), "3rd");
        assert_eq!(ordinal(11), "11th");
        assert_eq!(ordinal(22), "22nd");
        assert_eq!(spoken_month("2025-01").as_deref(), Some("January 2025"));
        assert_eq!(spoken_month("2025-13"), None);
        assert_eq!(
            speakable_label("Personal Account (ending in 4567)"),
            "Personal Account ending in 4567"
        );
        assert_eq!(
            join_spoken(&["a".into(), "b".into(), "c".into()], "or"),
            "a, b, or c"
        );
    }
}
