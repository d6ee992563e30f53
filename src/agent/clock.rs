//! Wall-clock access for the agent layer, behind a trait so tests and recorded calls run on a
//! fixed date and a virtual clock. Only `SystemClock` reads the real time.

use chrono::NaiveDate;

pub trait Clock: Send + Sync {
    /// Unix time in milliseconds.
    fn now_ms(&self) -> i64;
    /// The caller's "today" for "this month", "next week", …
    fn today(&self) -> NaiveDate;
}

/// The real clock, optionally pinned to a fixed date (`demo.today`).
pub struct SystemClock {
    pub fixed_today: Option<NaiveDate>,
}

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }
    fn today(&self) -> NaiveDate {
        self.fixed_today
            .unwrap_or_else(|| chrono::Utc::now().date_naive())
    }
}

/// Time that follows tokio's clock from a fixed start: with tokio's time paused (tests, replayed
/// calls) it is virtual and deterministic, advancing exactly by the sleeps and timeouts awaited.
pub struct VirtualClock {
    base_ms: i64,
    start: tokio::time::Instant,
    today: NaiveDate,
}

impl VirtualClock {
    pub fn new(base_ms: i64, today: NaiveDate) -> Self {
        Self {
            base_ms,
            start: tokio::time::Instant::now(),
            today,
        }
    }
}

impl Clock for VirtualClock {
    fn now_ms(&self) -> i64 {
        self.base_ms + self.start.elapsed().as_millis() as i64
    }
    fn today(&self) -> NaiveDate {
        self.today
    }
}
