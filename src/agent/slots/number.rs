//! Number words ("two hundred and five"), counts, ordinals, and money amounts.

use super::*;

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
pub(super) fn number_words_at(toks: &[String], i: usize, max: usize) -> Option<(i64, usize)> {
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
pub(super) fn count_at(toks: &[String], i: usize) -> Option<(i64, usize)> {
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
pub(super) fn ordinal_at(toks: &[String], i: usize) -> Option<(usize, usize)> {
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

pub(super) struct AmountTok {
    s: String,
    /// Written with a "$" sign.
    dollar: bool,
}

pub(super) fn amount_tokens(text: &str) -> Vec<AmountTok> {
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
pub(super) fn parse_numeric(s: &str) -> Option<(i64, Option<i64>)> {
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
pub(super) fn amount_number_at(
    toks: &[AmountTok],
    i: usize,
) -> Option<(i64, Option<i64>, usize, bool)> {
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
