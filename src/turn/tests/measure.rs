//! Measurements behind the defaults (printed, not asserted):
//! `cargo test turn::tests::measure -- --ignored --nocapture`.

use super::super::features::{BandPower, Biquad, power_db};
use super::signals::*;
use super::{RATE, ms};

/// Every real recording of `pocketsphinx-testdata` with its name.
pub(super) fn corpus() -> Vec<(String, Vec<f32>)> {
    let mut v = Vec::new();
    for name in ["goforward.raw", "numbers.raw", "something.raw"] {
        v.push((
            name.to_string(),
            read_raw_s16le(&format!("{SPHINX}/{name}")),
        ));
    }
    for d in ["cards", "librivox"] {
        let mut names: Vec<_> = std::fs::read_dir(format!("{SPHINX}/{d}"))
            .unwrap_or_else(|e| panic!("{SPHINX}/{d}: {e} (install pocketsphinx-testdata)"))
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "wav"))
            .collect();
        names.sort();
        for p in names {
            let (x, rate) = read_wav(&p.to_string_lossy());
            assert_eq!(rate, RATE);
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            v.push((format!("{d}/{}", name.unwrap_or_default()), x));
        }
    }
    v
}

/// `TRACE=cards/002.wav TRACE_LINE=1 cargo test trace_clip -- --ignored --nocapture`
#[test]
#[ignore = "debug dump"]
fn trace_clip() {
    let name = std::env::var("TRACE").unwrap_or_else(|_| "goforward.raw".into());
    let Some((_, x)) = corpus().into_iter().find(|(n, _)| *n == name) else {
        panic!("no clip {name}");
    };
    let x = concat(&[&silence(ms(1000)), &x, &silence(ms(1000))]);
    if std::env::var("TRACE_LINE").is_ok() {
        let tel = telephone_round_trip(&x);
        trace(&mix(&tel, &white_noise(tel.len() as u64, -45.0, 42)));
    } else {
        trace(&x);
    }
}

fn trace(x: &[f32]) {
    let mut band = BandPower::new(RATE, 250.0, 3400.0);
    let mut det = crate::turn::TurnDetector::new(Default::default(), RATE);
    let mut ev = Vec::new();
    for (i, f) in x.chunks_exact(ms(10) as usize).enumerate() {
        let floor = power_db(det.floor.power());
        let db = power_db(band.frame_power(f));
        det.push(f, &mut ev);
        println!(
            "{:5} band {:6.1} floor {:6.1} {:?} h{} m{} range {:.1} {:?}",
            i as i64 * 10 - 1000,
            db,
            floor,
            det.state,
            det.hits,
            det.misses,
            det.onset_max_db - det.onset_min_db,
            ev
        );
        ev.clear();
    }
}

/// The pauses inside real sentences (a `Stopping` that went back to `Speaking`) and how many
/// turns each clip splits into for several `stop_ms`: the measurement behind `stop_ms`.
#[test]
#[ignore = "measurement, prints a report"]
fn pauses_inside_sentences() {
    use crate::turn::{TurnConfig, TurnDetector, TurnEvent, TurnState};
    let stops = [200u32, 300, 400, 500, 600, 800];
    let mut all_pauses = Vec::new();
    for (name, x) in corpus() {
        for line in [false, true] {
            let mut audio = concat(&[&silence(ms(1000)), &x, &silence(ms(1500))]);
            if line {
                let tel = telephone_round_trip(&audio);
                audio = mix(&tel, &white_noise(tel.len() as u64, -45.0, 42));
            }
            // Pauses, with a stop_ms long enough never to end the sentence.
            let cfg = TurnConfig {
                stop_ms: 5000,
                ..TurnConfig::default()
            };
            let mut det = TurnDetector::new(cfg, RATE);
            let mut ev = Vec::new();
            let mut pauses = Vec::new();
            let mut stopping_since = None;
            for f in audio.chunks(ms(10) as usize) {
                det.push(f, &mut ev);
                match (det.state(), stopping_since) {
                    (TurnState::Stopping, None) => stopping_since = Some(det.silence_start),
                    (TurnState::Speaking, Some(s)) => {
                        pauses.push((det.position() - s) / 16);
                        stopping_since = None;
                    }
                    (TurnState::Quiet, _) => stopping_since = None,
                    _ => {}
                }
            }
            let turns: Vec<usize> = stops
                .iter()
                .map(|&stop_ms| {
                    let cfg = TurnConfig {
                        stop_ms,
                        ..TurnConfig::default()
                    };
                    let mut det = TurnDetector::new(cfg, RATE);
                    let mut ev = Vec::new();
                    det.push(&audio, &mut ev);
                    ev.iter()
                        .filter(|e| matches!(e, TurnEvent::SpeechEnd { .. }))
                        .count()
                })
                .collect();
            pauses.sort_unstable();
            println!(
                "{name:55} {:5} longest pauses (ms, incl. 30 ms resume) {:?}, turns at stop_ms {stops:?}: {turns:?}",
                if line { "line" } else { "clean" },
                pauses.iter().rev().take(4).collect::<Vec<_>>(),
            );
            all_pauses.extend(pauses);
        }
    }
    all_pauses.sort_unstable();
    let n = all_pauses.len();
    println!(
        "{n} pauses: median {} ms, p90 {} ms, max {} ms",
        all_pauses[n / 2],
        all_pauses[n * 9 / 10],
        all_pauses[n - 1]
    );
}

/// Spectral shape per 10 ms frame of the band-passed signal: (RMS frequency from the
/// first-difference ratio `4·sin²(π·f/fs)`, share of power below 1 kHz), for frames within
/// 20 dB of the loudest.
fn shape(x: &[f32]) -> Vec<(f64, f64)> {
    let mut band = BandPower::new(RATE, 250.0, 3400.0);
    let mut split = Biquad::lowpass(f64::from(RATE), 1000.0);
    let mut prev = 0.0;
    let rows: Vec<(f64, f64, f64)> = x
        .chunks_exact(ms(10) as usize)
        .map(|f| {
            let (mut diff, mut low) = (0.0, 0.0);
            let p = band.frame_power_with(f, |y| {
                diff += (y - prev) * (y - prev);
                prev = y;
                let l = split.process(y);
                low += l * l;
            });
            let sum = p * f.len() as f64;
            let ratio = if sum > 0.0 { diff / sum } else { 0.0 };
            let hz = (ratio / 4.0).sqrt().min(1.0).asin() * f64::from(RATE) / std::f64::consts::PI;
            (power_db(p), hz, if sum > 0.0 { low / sum } else { 0.0 })
        })
        .collect();
    let peak = rows.iter().map(|r| r.0).fold(f64::NEG_INFINITY, f64::max);
    rows.iter()
        .filter(|r| r.0 > peak - 20.0)
        .map(|r| (r.1, r.2))
        .collect()
}

fn percentiles(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    let p = |q: f64| v[((v.len() - 1) as f64 * q) as usize];
    format!("p10 {:6.2} p50 {:6.2} p90 {:6.2}", p(0.1), p(0.5), p(0.9))
}

/// Why the detector has no spectral-shape gate: front vowels look like telephone-band hiss.
#[test]
#[ignore = "measurement, prints a report"]
fn spectral_shape_of_vowels_and_noise() {
    let cards5 = corpus()
        .into_iter()
        .find(|(n, _)| n == "cards/005.wav")
        .map(|c| c.1);
    let cards5 = cards5.expect("cards/005.wav");
    // "eight" is 0.21–0.33 s into the clip.
    let eight = &cards5[ms(210) as usize..ms(330) as usize];
    let tel_white = telephone_round_trip(&white_noise(ms(3000), -30.0, 1));
    let mut cases: Vec<(String, Vec<f32>)> = vec![
        ("\"eight\" (cards/005 0.21–0.33 s)".into(), eight.to_vec()),
        (
            "white noise −30 dBFS".into(),
            white_noise(ms(3000), -30.0, 1),
        ),
        ("white noise through μ-law 8 kHz".into(), tel_white),
        ("rumble −30 dBFS".into(), rumble(ms(3000), -30.0, 1)),
    ];
    cases.extend(corpus());
    for (name, x) in cases {
        let rows = shape(&x);
        println!(
            "{name:55} RMS Hz {} | share < 1 kHz {}",
            percentiles(rows.iter().map(|r| r.0).collect()),
            percentiles(rows.iter().map(|r| r.1).collect())
        );
    }
}
