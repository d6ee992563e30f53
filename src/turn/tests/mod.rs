//! Tests of the turn detector on synthetic and real audio. Every signal is generated from a
//! seed or read from Debian's `pocketsphinx-testdata`, so every sample position is exact.

mod measure;
mod real;
pub(crate) mod signals;
mod synthetic;

use super::{TurnConfig, TurnDetector, TurnEvent};

/// 16 kHz, the detector's usual rate.
pub(super) const RATE: u32 = 16_000;

/// Samples in `ms` milliseconds at [`RATE`].
pub(super) const fn ms(ms: u64) -> u64 {
    ms * RATE as u64 / 1000
}

/// An event and the stream position right after the `push` that produced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Timed {
    pub event: TurnEvent,
    pub emitted: u64,
}

/// Feed `audio` in chunks of `chunk` samples (a whole number of 10 ms frames for exact
/// emission times) and record every turn boundary (start, end, discard) with the position it
/// was emitted at. `Pause`/`Resume` hints are left out here; [`run_with_pauses`] keeps them.
pub(super) fn run_chunked(cfg: TurnConfig, audio: &[f32], chunk: usize) -> Vec<Timed> {
    run_with_pauses(cfg, audio, chunk)
        .into_iter()
        .filter(|t| !matches!(t.event, TurnEvent::Pause { .. } | TurnEvent::Resume))
        .collect()
}

/// Every event, pause hints included.
pub(super) fn run_with_pauses(cfg: TurnConfig, audio: &[f32], chunk: usize) -> Vec<Timed> {
    let mut det = TurnDetector::new(cfg, RATE);
    let mut events = Vec::with_capacity(8);
    let mut out = Vec::new();
    for c in audio.chunks(chunk.max(1)) {
        events.clear();
        det.push(c, &mut events);
        out.extend(events.iter().map(|&event| Timed {
            event,
            emitted: det.position(),
        }));
    }
    out
}

pub(super) fn run(audio: &[f32]) -> Vec<Timed> {
    run_chunked(TurnConfig::default(), audio, 320)
}

/// Drops the `Pause`/`Resume` hints: the tests that use it are about turn boundaries, and the
/// hints have their own tests.
pub(super) fn boundaries(ev: &mut Vec<TurnEvent>) {
    ev.retain(|e| !matches!(e, TurnEvent::Pause { .. } | TurnEvent::Resume));
}

/// Just the events.
pub(super) fn events(timed: &[Timed]) -> Vec<TurnEvent> {
    timed.iter().map(|t| t.event).collect()
}

/// `|a − b| ≤ tol`.
#[track_caller]
pub(super) fn assert_near(what: &str, got: u64, want: u64, tol: u64) {
    assert!(
        got.abs_diff(want) <= tol,
        "{what}: got sample {got} ({:.1} ms), want {want} ({:.1} ms) ± {tol}",
        got as f64 / f64::from(RATE) * 1000.0,
        want as f64 / f64::from(RATE) * 1000.0,
    );
}
