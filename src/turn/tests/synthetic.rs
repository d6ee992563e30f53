//! Synthetic signals with exact expectations.

use super::signals::*;
use super::{RATE, Timed, assert_near, events, ms, run, run_chunked};
use crate::turn::{TurnConfig, TurnDetector, TurnEvent, TurnState};

const SPEECH_DBFS: f64 = -20.0;

/// Default timings in samples.
fn stop() -> u64 {
    ms(u64::from(TurnConfig::default().stop_ms))
}
fn pre_roll() -> u64 {
    ms(u64::from(TurnConfig::default().pre_roll_ms))
}

/// `lead` silence, `dur` of speech-like sound, then `tail` silence.
fn burst(lead: u64, dur: u64, tail: u64, seed: u64) -> Vec<f32> {
    concat(&[
        &silence(lead),
        &speech_like(dur, SPEECH_DBFS, seed),
        &silence(tail),
    ])
}

/// Exactly one utterance: returns (SpeechStart, SpeechEnd) with emission positions.
#[track_caller]
fn one_utterance(timed: &[Timed]) -> (Timed, Timed) {
    match timed {
        [
            s @ Timed {
                event: TurnEvent::SpeechStart { .. },
                ..
            },
            e @ Timed {
                event: TurnEvent::SpeechEnd { .. },
                ..
            },
        ] => (*s, *e),
        _ => panic!("want one utterance, got {timed:?}"),
    }
}

#[test]
fn one_second_burst_in_silence() {
    let (onset, dur) = (ms(500), ms(1000));
    // 0.5 s of silence after the burst, then more silence until the end is decided.
    let audio = burst(onset, dur, ms(500) + stop() + ms(200), 1);
    let timed = run(&audio);
    let (s, e) = one_utterance(&timed);
    let TurnEvent::SpeechStart { at } = s.event else {
        unreachable!()
    };
    let TurnEvent::SpeechEnd { start, end, forced } = e.event else {
        unreachable!()
    };
    assert_near("onset", at, onset, ms(20));
    assert_eq!(start, at);
    assert!(!forced);
    assert_near("end of speech", end, onset + dur, ms(20));
    assert_near("SpeechEnd emitted", e.emitted, onset + dur + stop(), ms(20));
    // Emitted with the 10 ms analysis frame that completes stop_ms of silence: exact with
    // 10 ms chunks, at the end of the chunk holding that frame otherwise.
    assert!(e.emitted >= end + stop() && e.emitted < end + stop() + 320);
    let exact = run_chunked(TurnConfig::default(), &audio, 160);
    assert_eq!(exact[1].emitted, end + stop());
    assert_eq!(
        exact[0].emitted,
        at + ms(200),
        "confirmed after exactly start_ms"
    );
    // Confirmed start_ms after the onset (20 ms chunks round up to the next chunk).
    assert_near("SpeechStart emitted", s.emitted, at + ms(200), ms(20));
}

#[test]
fn burst_at_several_levels_and_in_line_noise() {
    for level in [-40.0, -30.0, -10.0, -3.0] {
        let audio = concat(&[
            &silence(ms(500)),
            &speech_like(ms(1000), level, 2),
            &silence(ms(1500)),
        ]);
        let (s, e) = one_utterance(&run(&audio));
        let TurnEvent::SpeechEnd { start, end, .. } = e.event else {
            unreachable!()
        };
        assert_near(&format!("onset at {level} dBFS"), start, ms(500), ms(20));
        assert_near(&format!("end at {level} dBFS"), end, ms(1500), ms(20));
        assert_eq!(s.event, TurnEvent::SpeechStart { at: start });
    }
    // −20 dBFS speech in −45 dBFS white noise, and over a μ-law line.
    let clean = burst(ms(500), ms(1000), ms(1500), 3);
    let noisy = mix(&clean, &white_noise(clean.len() as u64, -45.0, 9));
    let line = mix(
        &telephone_round_trip(&clean),
        &white_noise(clean.len() as u64, -45.0, 9),
    );
    for (name, audio) in [("noise", noisy), ("line", line)] {
        let (_, e) = one_utterance(&run(&audio));
        let TurnEvent::SpeechEnd { start, end, .. } = e.event else {
            unreachable!()
        };
        assert_near(&format!("onset in {name}"), start, ms(500), ms(20));
        assert_near(&format!("end in {name}"), end, ms(1500), ms(20));
    }
}

#[test]
fn short_bursts_are_never_utterances() {
    // 100 ms: never confirmed, nothing reported.
    let timed = run(&burst(ms(500), ms(100), ms(1500), 4));
    assert!(
        timed
            .iter()
            .all(|t| matches!(t.event, TurnEvent::Discarded { .. })),
        "{timed:?}"
    );
    assert!(timed.is_empty(), "{timed:?}");
    // 230 ms: confirmed after 200 ms, then discarded as shorter than min_utterance (250 ms).
    let ev = events(&run(&burst(ms(500), ms(230), ms(1500), 4)));
    let [
        TurnEvent::SpeechStart { at },
        TurnEvent::Discarded { start, end },
    ] = ev[..]
    else {
        panic!("{ev:?}");
    };
    assert_eq!(at, start);
    assert_near("discarded end", end, ms(730), ms(20));
    // 300 ms: a real (short) utterance, like "yes".
    let (_, e) = one_utterance(&run(&burst(ms(500), ms(300), ms(1500), 4)));
    assert!(matches!(
        e.event,
        TurnEvent::SpeechEnd { forced: false, .. }
    ));
}

#[test]
fn letters_said_one_by_one_are_one_utterance() {
    // "A … B … C … one … two … three": six 150 ms syllables with 250 ms between them. No 200 ms
    // of sound without gaps, so a start needs the bursts added up (`start_gap_ms`); the
    // utterance then covers them all.
    let mut parts = vec![silence(ms(1000))];
    for seed in 0..6 {
        parts.push(speech_like(ms(150), SPEECH_DBFS, 40 + seed));
        parts.push(silence(ms(if seed < 5 { 250 } else { 1500 })));
    }
    let refs: Vec<&[f32]> = parts.iter().map(Vec::as_slice).collect();
    let audio = concat(&refs);
    let (s, e) = one_utterance(&run(&audio));
    let (TurnEvent::SpeechStart { at }, TurnEvent::SpeechEnd { start, end, .. }) =
        (s.event, e.event)
    else {
        unreachable!()
    };
    assert_eq!(at, start);
    assert_near("start", start, ms(1000), ms(20));
    assert_near("end", end, ms(1000 + 6 * 150 + 5 * 250), ms(20));
    // Without the bursts adding up, none of it is ever heard.
    let mut cfg = TurnConfig::default();
    cfg.detector.start_gap_ms = 0;
    let timed = run_chunked(cfg, &audio, 320);
    assert!(timed.is_empty(), "{timed:?}");
}

#[test]
fn clicks_never_trigger() {
    let n = ms(5000);
    // Every 100 ms, every 40 ms, and at random 30–400 ms gaps; on silence and on line noise.
    let regular = |step| {
        (0..n / ms(step))
            .map(|k| k * ms(step) + ms(7))
            .collect::<Vec<_>>()
    };
    let mut rng = Lcg::new(5);
    let mut random = Vec::new();
    let mut t = ms(50);
    while t < n {
        random.push(t);
        t += ms(30) + (((rng.next_f64() + 1.0) / 2.0) * ms(370) as f64) as u64;
    }
    for (name, at) in [
        ("100 ms", regular(100)),
        ("40 ms", regular(40)),
        ("random", random),
    ] {
        for amp in [0.2, 0.9] {
            let mut quiet = silence(n);
            add_clicks(&mut quiet, &at, amp);
            let mut noisy = white_noise(n, -50.0, 6);
            add_clicks(&mut noisy, &at, amp);
            for (bg, audio) in [("silence", quiet), ("noise", noisy)] {
                let timed = run(&audio);
                assert!(timed.is_empty(), "clicks {name} ×{amp} on {bg}: {timed:?}");
            }
        }
    }
}

#[test]
fn steady_hum_and_noise_never_trigger() {
    let n = ms(10_000);
    let sources: Vec<(&str, Vec<f32>)> = vec![
        ("hum 50 Hz", hum(n, 50.0, -30.0)),
        ("hum 60 Hz", hum(n, 60.0, -30.0)),
        ("hum 60 Hz −10 dBFS", hum(n, 60.0, -10.0)),
        ("white noise", white_noise(n, -30.0, 7)),
        (
            "white noise over the line",
            telephone_round_trip(&white_noise(n, -30.0, 7)),
        ),
        ("rumble", rumble(n, -30.0, 8)),
        (
            "hum + white",
            mix(&hum(n, 50.0, -30.0), &white_noise(n, -36.0, 9)),
        ),
    ];
    for (name, x) in sources {
        // From the first sample, and switched on after 1 s of digital silence.
        let abrupt = concat(&[&silence(ms(1000)), &x]);
        for (how, audio) in [("from the start", &x), ("switched on", &abrupt)] {
            let timed = run(audio);
            assert!(timed.is_empty(), "{name} {how}: {timed:?}");
        }
    }
}

#[test]
fn speech_is_heard_over_steady_noise() {
    // The floor learns the noise; speech 10–20 dB above it is detected with exact timing.
    let n = ms(6000);
    for (name, bg) in [
        ("hum", hum(n, 60.0, -30.0)),
        ("white", white_noise(n, -40.0, 10)),
        ("rumble", rumble(n, -35.0, 11)),
    ] {
        let speech = concat(&[
            &silence(ms(3000)),
            &speech_like(ms(1000), SPEECH_DBFS, 12),
            &silence(ms(2000)),
        ]);
        let (_, e) = one_utterance(&run(&mix(&bg, &speech)));
        let TurnEvent::SpeechEnd { start, end, .. } = e.event else {
            unreachable!()
        };
        assert_near(&format!("onset over {name}"), start, ms(3000), ms(20));
        assert_near(&format!("end over {name}"), end, ms(4000), ms(20));
    }
}

#[test]
fn noise_switched_on_mid_utterance_still_ends_it() {
    // Rumble starts 0.5 s into a 1 s utterance and stays: the floor learns it after
    // steady_noise_ms and the turn ends instead of running to max_utterance.
    let speech = burst(ms(500), ms(1000), ms(5000), 13);
    let noise = concat(&[&silence(ms(1000)), &rumble(ms(5500), -30.0, 14)]);
    let timed = run(&mix(&speech, &noise));
    let ev = events(&timed);
    let [
        TurnEvent::SpeechStart { at },
        TurnEvent::SpeechEnd {
            start,
            end,
            forced: false,
        },
    ] = ev[..]
    else {
        panic!("{timed:?}");
    };
    assert_eq!(at, start);
    assert_near("onset", at, ms(500), ms(20));
    assert!(end >= ms(1500) && end <= ms(1500) + ms(1100), "end {end}");
}

#[test]
fn pauses_inside_a_turn() {
    let a = speech_like(ms(1000), SPEECH_DBFS, 15);
    let b = speech_like(ms(1000), SPEECH_DBFS, 16);
    // 200 ms: one turn spanning both parts.
    let short = concat(&[
        &silence(ms(500)),
        &a,
        &silence(ms(200)),
        &b,
        &silence(ms(1500)),
    ]);
    let (_, e) = one_utterance(&run(&short));
    let TurnEvent::SpeechEnd { start, end, .. } = e.event else {
        unreachable!()
    };
    assert_near("start", start, ms(500), ms(20));
    assert_near("end", end, ms(2700), ms(20));
    // 500 ms: still one turn (stop_ms is 600).
    let mid = concat(&[
        &silence(ms(500)),
        &a,
        &silence(ms(500)),
        &b,
        &silence(ms(1500)),
    ]);
    one_utterance(&run(&mid));
    // 700 ms: two turns; the first ends stop_ms into the pause, before the second starts.
    let long = concat(&[
        &silence(ms(500)),
        &a,
        &silence(ms(700)),
        &b,
        &silence(ms(1500)),
    ]);
    let timed = run(&long);
    let ev = events(&timed);
    let [
        TurnEvent::SpeechStart { at: a1 },
        TurnEvent::SpeechEnd {
            start: s1,
            end: e1,
            forced: false,
        },
        TurnEvent::SpeechStart { at: a2 },
        TurnEvent::SpeechEnd {
            start: s2,
            end: e2,
            forced: false,
        },
    ] = ev[..]
    else {
        panic!("{timed:?}");
    };
    assert_eq!((a1, a2), (s1, s2));
    assert_near("first end", e1, ms(1500), ms(20));
    assert_near(
        "first end emitted",
        timed[1].emitted,
        ms(1500) + stop(),
        ms(20),
    );
    assert!(timed[1].emitted < ms(2200));
    assert_near("second start", s2, ms(2200), ms(20));
    assert_near("second end", e2, ms(3200), ms(20));
}

#[test]
fn monologue_is_cut_at_max_utterance_and_detection_goes_on() {
    let audio = burst(ms(500), ms(20_000), ms(1500), 17);
    let mut det = TurnDetector::new(TurnConfig::default(), RATE);
    let mut ev = Vec::new();
    let mut timed = Vec::new();
    let mut longest = 0;
    for c in audio.chunks(320) {
        ev.clear();
        det.push(c, &mut ev);
        longest = longest.max(det.utterance().len());
        super::boundaries(&mut ev);
        for &e in &ev {
            if let TurnEvent::SpeechEnd { start, end, .. } = e {
                // The utterance buffer holds exactly this utterance and its pre-roll.
                assert_eq!(det.utterance().len() as u64, end - start + pre_roll());
            }
            timed.push(Timed {
                event: e,
                emitted: det.position(),
            });
        }
    }
    let max = ms(15_000);
    let ev = events(&timed);
    let [
        TurnEvent::SpeechStart { at: a1 },
        TurnEvent::SpeechEnd {
            start: s1,
            end: e1,
            forced: true,
        },
        TurnEvent::SpeechStart { at: a2 },
        TurnEvent::SpeechEnd {
            start: s2,
            end: e2,
            forced: false,
        },
    ] = ev[..]
    else {
        panic!("{timed:?}");
    };
    assert_eq!((a1, a2), (s1, s2));
    assert_near("onset", s1, ms(500), ms(20));
    assert_eq!(e1, s1 + max, "forced exactly at max_utterance");
    assert_eq!(timed[1].emitted, e1, "forced end is reported at once");
    // Detection resumes on the next frame and confirms after start_ms.
    assert_eq!(s2, e1);
    assert_near(
        "second start emitted",
        timed[2].emitted,
        e1 + ms(200),
        ms(20),
    );
    assert_near("second end", e2, ms(20_500), ms(20));
    // The buffer never grew past max_utterance + pre-roll.
    assert!(longest as u64 <= max + pre_roll());
}

#[test]
fn chunking_never_changes_events() {
    // A busy signal: a turn with a short pause, a discarded 230 ms burst, a 100 ms burst,
    // noise switched on, clicks, and a last turn over the noise.
    let total = ms(11_000);
    let mut audio = silence(total);
    let mut place = |at: u64, x: &[f32]| {
        for (d, v) in audio[at as usize..].iter_mut().zip(x) {
            *d += v;
        }
    };
    place(ms(700), &speech_like(ms(1200), -25.0, 18));
    place(ms(2200), &speech_like(ms(600), -15.0, 19));
    place(ms(3700), &speech_like(ms(230), -20.0, 20));
    place(ms(4700), &speech_like(ms(100), -20.0, 21));
    place(ms(5200), &white_noise(total - ms(5200), -45.0, 22));
    place(ms(8500), &speech_like(ms(900), -25.0, 23));
    add_clicks(&mut audio, &[ms(7000), ms(7100), ms(7250)], 0.7);
    let reference = events(&run(&audio));
    let shape: Vec<&str> = reference
        .iter()
        .map(|e| match e {
            TurnEvent::SpeechStart { .. } => "start",
            TurnEvent::SpeechEnd { .. } => "end",
            TurnEvent::Discarded { .. } => "discarded",
            TurnEvent::Pause { .. } => "pause",
            TurnEvent::Resume => "resume",
        })
        .collect();
    assert_eq!(
        shape,
        ["start", "end", "start", "discarded", "start", "end"]
    );
    for chunk in [1, 7, 97, 160, 321, 1000, 4096, audio.len()] {
        assert_eq!(
            events(&run_chunked(TurnConfig::default(), &audio, chunk)),
            reference,
            "chunks of {chunk}"
        );
    }
}

#[test]
fn utterance_is_the_speech_plus_pre_roll() {
    let audio = burst(ms(800), ms(1000), ms(1000), 23);
    let mut det = TurnDetector::new(TurnConfig::default(), RATE);
    let mut ev = Vec::new();
    det.push(&audio, &mut ev);
    super::boundaries(&mut ev);
    let [
        TurnEvent::SpeechStart { .. },
        TurnEvent::SpeechEnd { start, end, .. },
    ] = ev[..]
    else {
        panic!("{ev:?}");
    };
    let u = det.utterance();
    assert_eq!(u.len() as u64, end - start + pre_roll());
    // Sample for sample the input from start − pre-roll to end.
    assert_eq!(u, &audio[(start - pre_roll()) as usize..end as usize]);
    // Valid until the next SpeechStart: more silence changes nothing.
    det.push(&silence(ms(2000)), &mut ev);
    assert_eq!(det.utterance().len() as u64, end - start + pre_roll());
}

#[test]
fn pre_roll_is_cut_at_the_stream_start() {
    let audio = burst(ms(100), ms(1000), ms(1000), 24);
    let mut det = TurnDetector::new(TurnConfig::default(), RATE);
    let mut ev = Vec::new();
    det.push(&audio, &mut ev);
    super::boundaries(&mut ev);
    let [
        TurnEvent::SpeechStart { .. },
        TurnEvent::SpeechEnd { start, end, .. },
    ] = ev[..]
    else {
        panic!("{ev:?}");
    };
    assert_eq!(det.utterance(), &audio[..end as usize]);
    assert!(start < pre_roll());
}

#[test]
fn states_and_barge_in_flag() {
    let audio = burst(ms(500), ms(1000), ms(1000), 25);
    let mut det = TurnDetector::new(TurnConfig::default(), RATE);
    let mut ev = Vec::new();
    let mut seen = Vec::new();
    for c in audio.chunks(160) {
        det.push(c, &mut ev);
        let st = det.state();
        assert_eq!(det.is_speaking(), st == TurnState::Speaking);
        if seen.last() != Some(&st) {
            seen.push(st);
        }
        // Before SpeechStart the detector is never "speaking".
        if ev.is_empty() {
            assert!(!det.is_speaking());
        }
    }
    assert_eq!(
        seen,
        [
            TurnState::Quiet,
            TurnState::Starting,
            TurnState::Speaking,
            TurnState::Stopping,
            TurnState::Quiet
        ]
    );
}

#[test]
fn nan_inf_and_out_of_range_samples_never_panic() {
    let mut audio = burst(ms(500), ms(1000), ms(1500), 26);
    let clean = events(&run(&audio));
    // NaN and ±inf count as 0: sprinkled in silence they change nothing.
    for k in (0..ms(500)).step_by(37) {
        audio[k as usize] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][(k % 3) as usize];
    }
    assert_eq!(events(&run(&audio)), clean);
    // Whole streams of garbage.
    for bad in [
        f32::NAN,
        f32::INFINITY,
        f32::MAX,
        -1e30,
        f32::MIN_POSITIVE / 2.0,
    ] {
        let mut det = TurnDetector::new(TurnConfig::default(), RATE);
        let mut ev = Vec::new();
        det.push(&vec![bad; ms(3000) as usize], &mut ev);
        assert!(det.position() == ms(3000));
        let _ = det.utterance();
    }
    let mut det = TurnDetector::new(TurnConfig::default(), RATE);
    let mut ev = Vec::new();
    det.push(&vec![f32::NAN; ms(3000) as usize], &mut ev);
    assert!(ev.is_empty(), "NaN is silence: {ev:?}");
}

#[test]
fn reset_starts_over() {
    let audio = burst(ms(500), ms(1000), ms(1500), 27);
    let mut det = TurnDetector::new(TurnConfig::default(), RATE);
    let mut first = Vec::new();
    det.push(&audio[..ms(1200) as usize], &mut first);
    assert_eq!(det.state(), TurnState::Speaking);
    det.reset();
    assert_eq!(det.state(), TurnState::Quiet);
    assert_eq!(det.position(), 0);
    assert!(det.utterance().is_empty());
    let mut again = Vec::new();
    det.push(&audio, &mut again);
    super::boundaries(&mut again);
    assert_eq!(again, events(&run(&audio)));
}

#[test]
fn odd_configs_and_rates_never_panic() {
    let audio = burst(ms(500), ms(1000), ms(1500), 28);
    let zero = TurnConfig {
        start_ms: 0,
        stop_ms: 0,
        pause_ms: 0,
        busy_pause_ms: u32::MAX,
        min_utterance_ms: 0,
        max_utterance_ms: 0,
        pre_roll_ms: 0,
        detector: crate::turn::DetectorConfig {
            band_low_hz: f32::NAN,
            band_high_hz: -5.0,
            start_margin_db: f32::INFINITY,
            continue_margin_db: -3.0,
            min_level_dbfs: 40.0,
            peak_range_db: f32::NAN,
            floor_rise_db_per_s: -1.0,
            initial_floor_dbfs: f32::NEG_INFINITY,
            resume_ms: 0,
            modulation_db: -1.0,
            start_gap_ms: 0,
            steady_noise_ms: 0,
        },
    };
    let huge = TurnConfig {
        start_ms: u32::MAX,
        stop_ms: u32::MAX,
        min_utterance_ms: u32::MAX,
        max_utterance_ms: u32::MAX,
        pre_roll_ms: u32::MAX,
        ..TurnConfig::default()
    };
    for cfg in [zero, huge, TurnConfig::default()] {
        for rate in [0, 1, 8_000, 16_000, 44_100, 48_000, u32::MAX] {
            let mut det = TurnDetector::new(cfg.clone(), rate);
            let mut ev = Vec::new();
            for c in audio.chunks(333) {
                det.push(c, &mut ev);
            }
            det.push(&[], &mut ev);
            let _ = (det.utterance(), det.state(), det.position());
        }
    }
}

#[test]
fn works_at_8_khz_and_48_khz() {
    // The same speech-like burst resampled by sample repetition/decimation: timings scale.
    let audio16 = burst(ms(500), ms(1000), ms(1500), 29);
    let audio8: Vec<f32> = audio16.iter().step_by(2).copied().collect();
    let audio48: Vec<f32> = audio16.iter().flat_map(|&x| [x, x, x]).collect();
    for (rate, audio) in [(8_000u32, audio8), (48_000, audio48)] {
        let mut det = TurnDetector::new(TurnConfig::default(), rate);
        let mut ev = Vec::new();
        det.push(&audio, &mut ev);
        super::boundaries(&mut ev);
        let per_ms = u64::from(rate) / 1000;
        let [
            TurnEvent::SpeechStart { .. },
            TurnEvent::SpeechEnd { start, end, .. },
        ] = ev[..]
        else {
            panic!("{rate} Hz: {ev:?}");
        };
        assert!(
            start.abs_diff(500 * per_ms) <= 20 * per_ms,
            "{rate} Hz start {start}"
        );
        assert!(
            end.abs_diff(1500 * per_ms) <= 20 * per_ms,
            "{rate} Hz end {end}"
        );
    }
}

#[test]
fn config_from_toml() {
    let cfg: TurnConfig = toml::from_str("stop_ms = 800\n[detector]\nstart_margin_db = 12.0\n")
        .expect("valid config");
    assert_eq!(cfg.stop_ms, 800);
    assert_eq!(cfg.start_ms, TurnConfig::default().start_ms);
    assert_eq!(cfg.detector.start_margin_db, 12.0);
    let empty: TurnConfig = toml::from_str("").expect("all defaults");
    assert_eq!(empty, TurnConfig::default());
    assert!(
        toml::from_str::<TurnConfig>("stop_msec = 800").is_err(),
        "typos are rejected"
    );
    let text = toml::to_string(&TurnConfig::default()).expect("serialisable");
    assert_eq!(
        toml::from_str::<TurnConfig>(&text).expect("round trip"),
        TurnConfig::default()
    );
}

/// Not asserted (timing belongs in benchmarks): `cargo test --release per_frame_cost --
/// --nocapture`.
#[test]
fn per_frame_cost() {
    let audio = concat(&[
        &burst(ms(500), ms(3000), ms(1000), 30),
        &white_noise(ms(5000), -40.0, 31),
    ]);
    let mut det = TurnDetector::new(TurnConfig::default(), RATE);
    let mut ev = Vec::with_capacity(16);
    let frames = audio.len() / 320;
    let rounds = 20;
    let t = std::time::Instant::now();
    for _ in 0..rounds {
        for c in audio.chunks_exact(320) {
            ev.clear();
            det.push(std::hint::black_box(c), &mut ev);
        }
    }
    let ns = t.elapsed().as_nanos() as f64 / (rounds * frames) as f64;
    println!(
        "turn detector: {ns:.0} ns per 20 ms frame ({:.4} % of one core per call)",
        ns / 20e6 * 100.0
    );
}

#[test]
fn a_pause_is_reported_once_then_the_end_at_the_same_position() {
    let audio = burst(ms(500), ms(1000), ms(1500), 40);
    let all = super::run_with_pauses(TurnConfig::default(), &audio, 160);
    let kinds: Vec<TurnEvent> = events(&all);
    let [
        TurnEvent::SpeechStart { .. },
        TurnEvent::Pause { start, end },
        TurnEvent::SpeechEnd {
            start: s2, end: e2, ..
        },
    ] = kinds[..]
    else {
        panic!("{kinds:?}")
    };
    assert_eq!((start, end), (s2, e2), "the pause is the end that follows");
    // Emitted pause_ms into the silence; the end stop_ms into it.
    assert_near("pause emitted", all[1].emitted, end + ms(200), ms(10));
    assert_near("end emitted", all[2].emitted, end + ms(600), ms(10));
}

#[test]
fn speech_after_a_pause_resumes_the_turn() {
    let a = speech_like(ms(1000), SPEECH_DBFS, 15);
    let b = speech_like(ms(1000), SPEECH_DBFS, 16);
    // A 400 ms pause: long enough for a pause hint, too short to end the turn.
    let audio = concat(&[
        &silence(ms(500)),
        &a,
        &silence(ms(400)),
        &b,
        &silence(ms(1500)),
    ]);
    let kinds = events(&super::run_with_pauses(TurnConfig::default(), &audio, 320));
    let shape: Vec<&str> = kinds
        .iter()
        .map(|e| match e {
            TurnEvent::SpeechStart { .. } => "start",
            TurnEvent::SpeechEnd { .. } => "end",
            TurnEvent::Discarded { .. } => "discarded",
            TurnEvent::Pause { .. } => "pause",
            TurnEvent::Resume => "resume",
        })
        .collect();
    assert_eq!(shape, ["start", "pause", "resume", "pause", "end"]);
    // A 150 ms breath gives no hint; pause_ms = 0 gives none at all.
    let breath = concat(&[
        &silence(ms(500)),
        &a,
        &silence(ms(150)),
        &b,
        &silence(ms(1500)),
    ]);
    let n = |cfg: TurnConfig, audio: &[f32]| {
        super::run_with_pauses(cfg, audio, 320)
            .iter()
            .filter(|t| matches!(t.event, TurnEvent::Pause { .. }))
            .count()
    };
    assert_eq!(n(TurnConfig::default(), &breath), 1, "only the final pause");
    let off = TurnConfig {
        pause_ms: 0,
        ..TurnConfig::default()
    };
    assert_eq!(n(off, &audio), 0);
}

#[test]
fn ending_at_the_pause_gives_the_utterance_up_to_it() {
    let audio = burst(ms(500), ms(1000), ms(300), 41);
    let mut det = TurnDetector::new(TurnConfig::default(), RATE);
    let mut ev = vec![];
    det.push(&audio, &mut ev);
    let Some(TurnEvent::Pause { start, end }) = ev.last().copied() else {
        panic!("{ev:?}")
    };
    let until = det.utterance_until(end).len();
    assert_eq!(det.end_at_pause(), Some((start, end)));
    assert_eq!(det.state(), crate::turn::TurnState::Quiet);
    assert_eq!(det.utterance().len(), until, "the trailing silence is cut");
    assert_eq!(det.end_at_pause(), None, "nothing to end twice");
    // No SpeechEnd follows: the caller of end_at_pause owns the turn's end.
    ev.clear();
    det.push(&silence(ms(1000)), &mut ev);
    assert!(ev.is_empty(), "{ev:?}");
}

/// An end-of-turn model that judges the speech so far unfinished holds the pause: a 700 ms pause
/// (two turns by default) stays inside one turn, and the hold lapses once the caller speaks
/// again, so the next pause ends at `stop_ms` as usual.
#[test]
fn a_held_pause_keeps_the_turn_open() {
    let a = speech_like(ms(1000), SPEECH_DBFS, 15);
    let b = speech_like(ms(1000), SPEECH_DBFS, 16);
    let audio = concat(&[
        &silence(ms(500)),
        &a,
        &silence(ms(700)),
        &b,
        &silence(ms(2000)),
    ]);
    let mut det = TurnDetector::new(TurnConfig::default(), RATE);
    let mut events = Vec::new();
    let mut all = Vec::new();
    for c in audio.chunks(320) {
        events.clear();
        det.push(c, &mut events);
        for e in &events {
            if matches!(e, TurnEvent::Pause { .. }) {
                det.hold_pause(1000);
            }
            all.push((*e, det.position()));
        }
    }
    let ends: Vec<(u64, u64, u64)> = all
        .iter()
        .filter_map(|(e, at)| match e {
            TurnEvent::SpeechEnd { start, end, .. } => Some((*start, *end, *at)),
            _ => None,
        })
        .collect();
    let [(start, end, emitted)] = ends[..] else {
        panic!("{all:?}");
    };
    assert_near("start", start, ms(500), ms(20));
    assert_near("end", end, ms(3200), ms(20));
    // The second pause was held too (a new Pause, a new hold): 600 + 1000 ms after the end.
    assert_near("emitted", emitted, end + ms(1600), ms(20));
    // Without a pause to hold (speaking), nothing changes.
    let mut fresh = TurnDetector::new(TurnConfig::default(), RATE);
    fresh.hold_pause(1000);
    let plain = run(&audio);
    let mut ev = Vec::new();
    let mut n = 0;
    for c in audio.chunks(320) {
        ev.clear();
        fresh.push(c, &mut ev);
        n += ev
            .iter()
            .filter(|e| matches!(e, TurnEvent::SpeechEnd { .. }))
            .count();
    }
    assert_eq!(n, 2);
    assert_eq!(plain.len(), 4);
}
