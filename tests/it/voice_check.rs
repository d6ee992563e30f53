//! Silero VAD v6 as the gateway runs it (`onnx::silero`, the installed model on the installed
//! ONNX Runtime, 16 kHz): a stream gives the same probabilities however the audio is framed,
//! survives any input, and tells the callers' voices from the noise set. The calls that use it
//! are in `virtual_calls.rs` (`noise_on_the_line_neither_pauses_the_bot_nor_starts_a_turn`).

use std::path::Path;
use std::sync::Arc;
use switchboard::audio::decode::{ChannelPick, read_audio_at};
use switchboard::onnx::silero::{Silero, SileroStream};

fn model() -> Arc<Silero> {
    let mut cfg = switchboard::config::Config::embedded().unwrap();
    cfg.models_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    Arc::new(switchboard::runtime::speech::load_vad(&cfg).expect("silero-vad-6 is installed"))
}

fn clip(rel: &str) -> Vec<f32> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("audio-fixtures")
        .join(rel);
    read_audio_at(&p, ChannelPick::Mix, 16_000).unwrap()
}

/// Every window's probability, pushing `frame` samples at a time.
fn probabilities(s: &mut SileroStream, audio: &[f32], frame: usize) -> Vec<f32> {
    let mut out = vec![];
    for c in audio.chunks(frame) {
        let before = s.windows();
        let p = s.push(c);
        if s.windows() > before {
            out.push(p.expect("a window completed"));
        }
    }
    out
}

#[test]
fn a_stream_gives_the_same_probabilities_however_the_audio_is_framed() {
    let m = model();
    assert_eq!(m.window_samples(), 512);
    let audio = clip("scenario1/02.wav");
    let mut s = m.stream().unwrap();
    let whole = probabilities(&mut s, &audio, 512);
    assert_eq!(whole.len(), audio.len() / 512);
    s.reset();
    assert_eq!(probabilities(&mut s, &audio, 512), whole, "after reset");
    for frame in [1, 320, 500] {
        let mut s = m.stream().unwrap();
        assert_eq!(
            probabilities(&mut s, &audio, frame),
            whole,
            "{frame}-sample frames"
        );
        assert_eq!(s.errors(), 0);
    }
    // Frames longer than a window run several windows per push; the last one is reported.
    let mut s = m.stream().unwrap();
    for c in audio.chunks(1500) {
        s.push(c);
    }
    assert_eq!(s.windows() as usize, whole.len());
    assert_eq!(s.last_probability(), whole.last().copied());
    // Odd input: no panic, probabilities stay probabilities.
    let mut s = m.stream().unwrap();
    assert_eq!(s.push(&[]), None);
    let p = s.push(&[f32::NAN; 512]).unwrap();
    assert!((0.0..=1.0).contains(&p), "{p}");
    let p = s.push(&vec![1e30; 5000]).unwrap();
    assert!(p.is_finite(), "{p}");
}

#[test]
fn callers_voices_are_voices_and_the_noise_set_is_mostly_not() {
    let m = model();
    let share = |ps: &[f32]| ps.iter().filter(|p| **p >= 0.5).count() as f32 / ps.len() as f32;
    // Voices the project did not tune on: flite slt, awb and kal (through the phone band), and a
    // real recording (pocketsphinx-testdata).
    for rel in [
        "scenario1/02.wav",
        "scenario3/02.wav",
        "stranger/02.wav",
        "bargein/answer.wav",
        "real/goforward.wav",
    ] {
        let ps = probabilities(&mut m.stream().unwrap(), &clip(rel), 320);
        let max = ps.iter().copied().fold(0.0f32, f32::max);
        eprintln!(
            "voice  {rel:>28}: max {max:.2}, {:.0} % of windows ≥ 0.5",
            100.0 * share(&ps)
        );
        assert!(max >= 0.9, "{rel}: {max}");
    }
    for name in ["line", "babble", "music", "tv", "coughs"] {
        let rel = format!("noise/set/{name}.wav");
        let ps = probabilities(&mut m.stream().unwrap(), &clip(&rel), 320);
        let max = ps.iter().copied().fold(0.0f32, f32::max);
        eprintln!(
            "noise  {rel:>28}: max {max:.2}, {:.0} % of windows ≥ 0.5",
            100.0 * share(&ps)
        );
    }
}
