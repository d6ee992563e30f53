//! How many whisper decodes are running and how many calls are on the line in the process right
//! now, so that a decode takes a second core only when it is the only one on a quiet line.
//!
//! Why: whisper.cpp's threads wait for each other at every step of the graph by spinning. Two
//! two-thread decodes at once on two cores keep losing their partner threads to the scheduler and
//! spin for whole time slices. Measured on this 2-core machine (`tests/it`'s seed scenario, a
//! whole call on the virtual clock, two copies at once): 75 s of CPU and 39 s of wall time at two
//! threads per decode against 20 s and 11 s at one; alone, the two settings take 9.0 s and 9.9 s.
//! Whisper's transcripts are the same at either thread count. Other model work (a Piper clause,
//! Smart Turn's 40 ms at a pause) is not counted: it is short, and counting it put one call's
//! speculative pass, which starts beside Smart Turn at every pause, on one thread. Instead, on a
//! quiet line, Smart Turn waits for a two-thread decode to end ([`after_wide_decodes`]) and then
//! runs on two threads itself ([`quiet`]). One call (`switchboard load --calls 1`,
//! `RUST_LOG=switchboard=debug`): the model took 110–125 ms beside a two-thread pass, and
//! 30–50 ms after it on two threads.
//!
//! A decode also takes one thread when more than [`CALLS_FOR_TWO_THREADS`] calls are on the line:
//! their audio, voice checks, end-of-turn model and voice keep the cores busy, and another decode
//! may start at any moment beside a two-thread one, which then spins. Measured with 40 steady
//! calls (`switchboard load --calls 40 --steady-s`): `ggml_barrier`, whisper's threads waiting for
//! each other, was 20 % of the process's CPU samples in `perf`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

static RUNNING: AtomicUsize = AtomicUsize::new(0);
static CALLS: AtomicUsize = AtomicUsize::new(0);
/// Decodes running on more than one thread.
static WIDE: AtomicUsize = AtomicUsize::new(0);
/// Woken whenever a decode on more than one thread ends.
static WIDE_DONE: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// With more calls than this on the line, every decode takes one thread.
pub const CALLS_FOR_TWO_THREADS: usize = 2;

/// One decode running, or one call on the line, until dropped.
#[must_use = "it counts only while the guard lives"]
pub struct Counted(&'static AtomicUsize);

impl Counted {
    fn new(counter: &'static AtomicUsize) -> Counted {
        counter.fetch_add(1, Ordering::SeqCst);
        Counted(counter)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
        if std::ptr::eq(self.0, &WIDE) {
            WIDE_DONE.notify_waiters();
        }
    }
}

/// Counts a call as on the line until the guard is dropped.
pub fn on_the_line() -> Counted {
    Counted::new(&CALLS)
}

/// Counts the caller's decode as running until the guard is dropped.
pub fn running() -> Counted {
    Counted::new(&RUNNING)
}

/// Counts a decode as running on more than one thread until the guard is dropped.
pub fn wide() -> Counted {
    Counted::new(&WIDE)
}

/// On a quiet line, waits (at most `max`) until no decode is running on more than one thread:
/// other model work started beside such a decode takes one of its threads, and whisper's threads
/// then spin for each other (see the module docs), so both finish later than one after the other.
/// Returns at once on a busy line, where every decode has one thread.
pub async fn after_wide_decodes(max: Duration) {
    let _ = tokio::time::timeout(max, async {
        loop {
            let done = WIDE_DONE.notified();
            if WIDE.load(Ordering::SeqCst) == 0 {
                return;
            }
            done.await;
        }
    })
    .await;
}

/// Whether other model work may take a second thread now: no decode is running and at most
/// [`CALLS_FOR_TWO_THREADS`] calls are on the line.
pub fn quiet() -> bool {
    running_now() == 0 && !busy_line()
}

/// Whether more than [`CALLS_FOR_TWO_THREADS`] calls are on the line.
pub fn busy_line() -> bool {
    CALLS.load(Ordering::SeqCst) > CALLS_FOR_TWO_THREADS
}

/// Decodes running now, the caller's own included when it holds a guard.
pub fn running_now() -> usize {
    RUNNING.load(Ordering::SeqCst)
}

/// Threads for a whisper decode that holds a [`running`] guard: `max` when it is the only decode
/// running and at most [`CALLS_FOR_TWO_THREADS`] calls are on the line, one otherwise.
pub fn decode_threads(max: u32) -> u32 {
    threads_for(max, running_now(), CALLS.load(Ordering::SeqCst))
}

fn threads_for(max: u32, running: usize, calls: usize) -> u32 {
    if running <= 1 && calls <= CALLS_FOR_TWO_THREADS {
        max.max(1)
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decode_takes_its_threads_only_alone() {
        assert_eq!(threads_for(2, 1, 0), 2);
        assert_eq!(threads_for(2, 1, 2), 2);
        assert_eq!(threads_for(4, 0, 1), 4);
        assert_eq!(threads_for(2, 2, 1), 1);
        assert_eq!(threads_for(2, 7, 0), 1);
        assert_eq!(threads_for(0, 1, 0), 1);
        // A busy line: one thread even for a decode alone.
        assert_eq!(threads_for(2, 1, 3), 1);
        assert_eq!(threads_for(2, 1, 40), 1);
    }

    // The counters are the process's and unit tests run in parallel: only lower bounds hold.
    #[test]
    fn calls_on_the_line_take_the_second_thread_away() {
        let calls: Vec<Counted> = (0..=CALLS_FOR_TWO_THREADS).map(|_| on_the_line()).collect();
        let one = running();
        assert_eq!(decode_threads(2), 1);
        drop((one, calls));
    }

    #[tokio::test]
    async fn model_work_waits_for_a_wide_decode_but_not_longer_than_asked() {
        let decode = wide();
        let started = std::time::Instant::now();
        let waiter = tokio::spawn(after_wide_decodes(Duration::from_secs(10)));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "returned while a wide decode ran");
        drop(decode);
        waiter.await.unwrap();
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(50) && waited < Duration::from_secs(5),
            "{waited:?}"
        );
        // A decode that does not end: the wait gives up after its bound.
        let stuck = wide();
        let started = std::time::Instant::now();
        after_wide_decodes(Duration::from_millis(30)).await;
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(30) && waited < Duration::from_secs(5),
            "{waited:?}"
        );
        drop(stuck);
    }

    #[test]
    fn a_guard_counts_while_it_lives() {
        let one = running();
        let two = running();
        assert!(running_now() >= 2);
        assert_eq!(decode_threads(2), 1);
        drop((one, two));
    }
}
