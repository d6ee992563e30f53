//! Reliability policies of seed 000 ("Error Handling and Reliability") and seed 001: exponential
//! backoff for retryable errors and a circuit breaker per agent. Both are pure: time is passed
//! in, so tests run them on virtual time.

use crate::config::ReliabilityConfig;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub initial: Duration,
    pub multiplier: f64,
    pub max: Duration,
}

impl RetryPolicy {
    pub fn from_config(c: &ReliabilityConfig) -> Self {
        Self {
            max_retries: c.max_retries,
            initial: Duration::from_millis(c.initial_backoff_ms),
            multiplier: c.backoff_multiplier,
            max: Duration::from_millis(c.max_backoff_ms),
        }
    }

    /// Seed 000's `RETRY_CONFIG`: 2 retries, 1000 ms ×2 capped at 5000 ms.
    pub fn seed() -> Self {
        Self {
            max_retries: 2,
            initial: Duration::from_millis(1000),
            multiplier: 2.0,
            max: Duration::from_millis(5000),
        }
    }

    /// Delay before retry number `attempt + 1` (attempt 0 is the first failure).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = self.multiplier.powi(attempt.min(62) as i32);
        let ms = (self.initial.as_millis() as f64 * factor).min(self.max.as_millis() as f64);
        Duration::from_millis(ms as u64)
    }

    pub fn should_retry(&self, attempt: u32, retryable: bool) -> bool {
        retryable && attempt < self.max_retries
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    /// The open period has passed: one trial call is let through.
    HalfOpen,
}

/// Seed 001: after `threshold` consecutive failures the breaker opens for `open_for`; then one
/// trial call decides whether it closes again or re-opens.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    threshold: u32,
    open_for: Duration,
    failures: u32,
    opened_at: Option<Instant>,
    trial_in_flight: bool,
}

impl CircuitBreaker {
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            open_for,
            failures: 0,
            opened_at: None,
            trial_in_flight: false,
        }
    }

    pub fn state(&self, now: Instant) -> BreakerState {
        match self.opened_at {
            None => BreakerState::Closed,
            Some(t) if now.duration_since(t) >= self.open_for => BreakerState::HalfOpen,
            Some(_) => BreakerState::Open,
        }
    }

    /// Whether a call may go out now; in half-open state only one trial at a time.
    pub fn allow(&mut self, now: Instant) -> bool {
        match self.state(now) {
            BreakerState::Closed => true,
            BreakerState::Open => false,
            BreakerState::HalfOpen if self.trial_in_flight => false,
            BreakerState::HalfOpen => {
                self.trial_in_flight = true;
                true
            }
        }
    }

    /// Whether the agent can be routed to now (does not reserve the half-open trial).
    pub fn routable(&self, now: Instant) -> bool {
        match self.state(now) {
            BreakerState::Closed => true,
            BreakerState::Open => false,
            BreakerState::HalfOpen => !self.trial_in_flight,
        }
    }

    pub fn record_success(&mut self) {
        self.failures = 0;
        self.opened_at = None;
        self.trial_in_flight = false;
    }

    pub fn record_failure(&mut self, now: Instant) {
        self.trial_in_flight = false;
        if self.opened_at.is_some() {
            // A failed half-open trial re-opens for a full period.
            self.opened_at = Some(now);
            return;
        }
        self.failures += 1;
        if self.failures >= self.threshold {
            self.opened_at = Some(now);
        }
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_backoff_shape() {
        let p = RetryPolicy::seed();
        let delays: Vec<u128> = (0..5).map(|a| p.delay(a).as_millis()).collect();
        assert_eq!(delays, [1000, 2000, 4000, 5000, 5000]);
        assert!(p.should_retry(0, true));
        assert!(p.should_retry(1, true));
        assert!(!p.should_retry(2, true));
        assert!(!p.should_retry(0, false));
    }

    #[test]
    fn configured_backoff() {
        let cfg = crate::config::Config::embedded().unwrap();
        let p = RetryPolicy::from_config(&cfg.reliability);
        assert_eq!(p.delay(0).as_millis(), 300);
        assert_eq!(p.delay(1).as_millis(), 600);
        assert_eq!(p.delay(2).as_millis(), 1200);
        assert_eq!(p.delay(3).as_millis(), 1200);
        assert_eq!(p.delay(u32::MAX).as_millis(), 1200);
    }

    #[tokio::test(start_paused = true)]
    async fn breaker_opens_after_five_failures_for_sixty_seconds() {
        let mut b = CircuitBreaker::new(5, Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..4 {
            b.record_failure(t0);
            assert_eq!(
                b.state(t0),
                BreakerState::Closed,
                "after {} failures",
                i + 1
            );
        }
        b.record_failure(t0);
        assert_eq!(b.state(t0), BreakerState::Open);
        assert!(!b.allow(t0 + Duration::from_secs(59)));
        let t60 = t0 + Duration::from_secs(60);
        assert_eq!(b.state(t60), BreakerState::HalfOpen);
        assert!(b.allow(t60), "one trial call");
        assert!(!b.allow(t60), "only one trial at a time");
        b.record_failure(t60);
        assert_eq!(b.state(t60 + Duration::from_secs(59)), BreakerState::Open);
        let t120 = t60 + Duration::from_secs(60);
        assert!(b.allow(t120));
        b.record_success();
        assert_eq!(b.state(t120), BreakerState::Closed);
        assert_eq!(b.consecutive_failures(), 0);
    }

    #[test]
    fn success_resets_the_count() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(5, Duration::from_secs(60));
        for _ in 0..4 {
            b.record_failure(t0);
        }
        b.record_success();
        for _ in 0..4 {
            b.record_failure(t0);
        }
        assert_eq!(b.state(t0), BreakerState::Closed);
    }
}
