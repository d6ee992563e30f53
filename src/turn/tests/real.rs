//! Real human speech from Debian's `pocketsphinx-testdata` (fails if the package is missing).

use super::signals::*;
use super::{RATE, assert_near, ms};
use crate::turn::features::{BandPower, power_db};
use crate::turn::{TurnConfig, TurnDetector, TurnEvent};

/// First and last 10 ms frame (sample positions) of `speech` whose power in the telephone band
/// is within 35 dB of the loudest frame and, when noise is added, 6 dB above the noise's mean
/// band power: the speech a listener could hear. Only runs of three such frames count (a click
/// is one frame).
fn audible_extent(speech: &[f32], noise: Option<&[f32]>) -> (u64, u64) {
    let f = ms(10) as usize;
    let mut band = BandPower::new(RATE, 250.0, 3400.0);
    let db: Vec<f64> = speech
        .chunks_exact(f)
        .map(|c| power_db(band.frame_power(c)))
        .collect();
    let peak = db.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut threshold = peak - 35.0;
    if let Some(noise) = noise {
        let mut band = BandPower::new(RATE, 250.0, 3400.0);
        let n = noise.len() / f;
        let mean = noise
            .chunks_exact(f)
            .map(|c| band.frame_power(c))
            .sum::<f64>()
            / n as f64;
        threshold = threshold.max(power_db(mean) + 6.0);
    }
    let run: Vec<bool> = (0..db.len())
        .map(|i| i >= 2 && (i - 2..=i).all(|j| db[j] > threshold))
        .collect();
    let first = run.iter().position(|&l| l).map_or(0, |i| i - 2);
    let last = run.iter().rposition(|&l| l).unwrap_or(0);
    ((first * f) as u64, ((last + 1) * f) as u64)
}

fn padded(x: &[f32]) -> Vec<f32> {
    let pad = silence(ms(1000));
    concat(&[&pad, x, &pad])
}

/// The clip padded with 1 s of silence, sent through 8 kHz μ-law and back, plus white noise
/// at −45 dBFS; also returns the noiseless line signal and the noise.
fn over_the_line(x: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let tel = telephone_round_trip(&padded(x));
    let noise = white_noise(tel.len() as u64, -45.0, 42);
    (mix(&tel, &noise), tel, noise)
}

/// Exactly one SpeechStart and one SpeechEnd; the utterance with its pre-roll covers the
/// audible `extent` (30 ms of slack at the end for the last decaying frame). Returns the
/// utterance `(start, end)`.
#[track_caller]
fn assert_one_utterance(name: &str, audio: &[f32], extent: (u64, u64)) -> (u64, u64) {
    let cfg = TurnConfig::default();
    let pre_roll = ms(u64::from(cfg.pre_roll_ms));
    let mut det = TurnDetector::new(cfg, RATE);
    let mut ev = Vec::new();
    let mut confirmed_at = 0;
    for c in audio.chunks(320) {
        let before = ev.len();
        det.push(c, &mut ev);
        super::boundaries(&mut ev);
        if ev.len() > before && confirmed_at == 0 {
            confirmed_at = det.position();
        }
    }
    let [
        TurnEvent::SpeechStart { at },
        TurnEvent::SpeechEnd {
            start,
            end,
            forced: false,
        },
    ] = ev[..]
    else {
        panic!("{name}: want exactly one utterance, got {ev:?}");
    };
    println!(
        "{name:58} audible {:5.0}..{:5.0} ms, utterance {:5.0}..{:5.0} ms, confirmed +{:.0} ms",
        extent.0 as f64 / 16.0,
        extent.1 as f64 / 16.0,
        start as f64 / 16.0,
        end as f64 / 16.0,
        (confirmed_at - at) as f64 / 16.0
    );
    assert_eq!(at, start);
    assert!(
        start.saturating_sub(pre_roll) <= extent.0,
        "{name}: utterance + pre-roll starts at {start} − {pre_roll}, speech at {}",
        extent.0
    );
    assert!(
        end + ms(30) >= extent.1,
        "{name}: ends at {end}, speech at {}",
        extent.1
    );
    assert!(
        end <= extent.1 + ms(200),
        "{name}: ends at {end}, long after {}",
        extent.1
    );
    assert_eq!(
        det.utterance().len() as u64,
        (end - start) + pre_roll.min(start)
    );
    (start, end)
}

fn goforward() -> Vec<f32> {
    read_raw_s16le(&format!("{SPHINX}/goforward.raw"))
}

/// "Go forward ten meters" (0.50–2.09 s of the clip by its band energy) padded with 1 s of
/// silence: one utterance.
#[test]
fn goforward_is_one_utterance() {
    let audio = padded(&goforward());
    let extent = audible_extent(&audio, None);
    assert_near("speech onset (reference)", extent.0, ms(1500), ms(20));
    assert_near("speech end (reference)", extent.1, ms(3090), ms(20));
    let (start, end) = assert_one_utterance("goforward", &audio, extent);
    assert_near("start", start, ms(1500), ms(20));
    assert_near("end", end, ms(3090), ms(20));
}

/// The same over a telephone line with noise: "go" is followed by an "f" buried in the noise,
/// so the start is confirmed on "forward" and "go" lives in the pre-roll.
#[test]
fn goforward_over_a_noisy_telephone_line_is_one_utterance() {
    let (noisy, tel, noise) = over_the_line(&goforward());
    let extent = audible_extent(&tel, Some(&noise));
    assert_one_utterance("goforward μ-law + noise −45 dBFS", &noisy, extent);
}

/// Every recording of the package (single sentences and a short digit string, 0.8–6.5 s) is
/// one utterance, clean and over the line.
#[test]
fn every_pocketsphinx_recording_is_one_utterance() {
    for (name, x) in super::measure::corpus() {
        let clean = padded(&x);
        assert_one_utterance(&name, &clean, audible_extent(&clean, None));
        let (noisy, tel, noise) = over_the_line(&x);
        let extent = audible_extent(&tel, Some(&noise));
        assert_one_utterance(&format!("{name} (line)"), &noisy, extent);
    }
}
