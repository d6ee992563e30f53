//! Dates ("December first", "next week", "this Friday") and billing months.

use super::*;

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

pub(super) fn shift(date: NaiveDate, days: i64) -> Option<NaiveDate> {
    if days >= 0 {
        date.checked_add_days(Days::new(days.unsigned_abs()))
    } else {
        date.checked_sub_days(Days::new(days.unsigned_abs()))
    }
}

pub(super) fn ymd(y: i32, m: u32, d: u32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(y, m, d)
}

pub(super) fn ym_from_strs(y: &str, m: &str) -> Option<YearMonth> {
    let year: i32 = y.parse().ok()?;
    let month: u32 = m.parse().ok()?;
    (1..=12)
        .contains(&month)
        .then_some(YearMonth { year, month })
}

pub(super) fn month_at(toks: &[String], i: usize) -> Option<u32> {
    lookup(MONTHS, strip_possessive(toks.get(i)?))
}

/// A year at `i`: "2025", "twenty twenty five", "twenty oh five", "nineteen ninety nine",
/// "two thousand twenty five". Returns (year, tokens used).
pub(super) fn year_at(toks: &[String], i: usize) -> Option<(i32, usize)> {
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
pub(super) fn day_at(toks: &[String], i: usize, cardinal_words: bool) -> Option<(u32, usize)> {
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
pub(super) fn nearest_date(month: u32, day: u32, today: NaiveDate) -> Option<NaiveDate> {
    let earliest = shift(today, -61)?;
    let year = today.year();
    (year.checked_sub(1)?..=year.checked_add(4)?)
        .filter_map(|y| ymd(y, month, day))
        .find(|d| *d >= earliest)
}

pub(super) fn month_day(toks: &[String], today: NaiveDate) -> Option<NaiveDate> {
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

pub(super) fn monday_of(date: NaiveDate) -> Option<NaiveDate> {
    shift(date, -i64::from(date.weekday().num_days_from_monday()))
}

pub(super) fn week_range(
    today: NaiveDate,
    weeks: i64,
    first_day: i64,
    last_day: i64,
) -> Option<DateSpec> {
    let monday = shift(monday_of(today)?, weeks.checked_mul(7)?)?;
    Some(DateSpec::Range {
        start: shift(monday, first_day)?,
        end: shift(monday, last_day)?,
    })
}

pub(super) fn month_range(ym: YearMonth) -> Option<DateSpec> {
    let start = ymd(ym.year, ym.month, 1)?;
    let next = ym.next();
    let end = shift(ymd(next.year, next.month, 1)?, -1)?;
    Some(DateSpec::Range { start, end })
}

pub(super) fn relative_date(toks: &[String], today: NaiveDate) -> Option<DateSpec> {
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

/// "on the fifth" / "to the 5th" / "the fourteenth": the next such day of the month, today
/// included.
pub(super) fn day_of_month(toks: &[String], today: NaiveDate) -> Option<NaiveDate> {
    // "on the fifth", "to the twenty first", "but the 14th": "the" and a day of the month,
    // unless a list item follows ("the first one", "the second account", "the third time").
    let day = (1..toks.len()).find_map(|i| {
        if toks[i - 1] != "the" {
            return None;
        }
        day_at(toks, i, false)
            .filter(|(_, used)| {
                !matches!(
                    toks.get(i + used).map(String::as_str),
                    Some(
                        "one"
                            | "ones"
                            | "option"
                            | "account"
                            | "time"
                            | "floor"
                            | "thing"
                            | "person"
                            | "name"
                            | "step"
                            | "item"
                            | "choice"
                            | "of"
                    )
                )
            })
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
pub(super) fn may_is_month(toks: &[String], i: usize) -> bool {
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
