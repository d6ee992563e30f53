//! Speech-pipeline benchmarks, with a printed report (benches assert nothing):
//! - the per-frame cost of the live audio path: μ-law decode + 8→16 kHz resample + turn
//!   detection for one 20 ms frame, as a share of one core per call;
//! - end of utterance → final transcript for 1–7 s utterances (whisper tiny.en, 2 threads);
//! - TTS time to first chunk and per sentence (espeak-ng, Piper);
//! - the voice check (Silero VAD) per 32 ms window and the end-of-turn model (Smart Turn) per
//!   pause;
//! - a full scripted call (scenario 1 fixtures) on the virtual clock: calls per second.
//!
//! Ratios are against a baseline measured in the same run (μ-law decode alone; real time), so a
//! loaded machine shifts both sides. Run: `cargo bench --bench speech`.

use criterion::{Criterion, criterion_group};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard::agent::clock::SystemClock;
use switchboard::agent::embed::MiniLm;
use switchboard::agent::engine::Engine;
use switchboard::asr::whisper::{AsrConfig, Whisper};
use switchboard::audio::decode::{ChannelPick, read_audio_at};
use switchboard::audio::g711::{decode_ulaw_into, encode_ulaw_from};
use switchboard::audio::resample::StreamResampler;
use switchboard::config::Config;
use switchboard::models::whisper::GGML_FILE;
use switchboard::runtime::replay::{CallerSource, replay};
use switchboard::runtime::speech::Speech;
use switchboard::store::Store;
use switchboard::tts::espeak::Espeak;
use switchboard::tts::{TtsEngine, Voice};
use switchboard::turn::{TurnConfig, TurnDetector};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One 20 ms telephone frame of speech-like audio, μ-law encoded.
fn ulaw_frame() -> Vec<u8> {
    let pcm: Vec<f32> = (0..160)
        .map(|i| 0.3 * (i as f32 * 0.37).sin() * (i as f32 * 0.05).cos())
        .collect();
    let mut b = vec![0u8; 160];
    encode_ulaw_from(&pcm, &mut b);
    b
}

struct LivePath {
    ulaw: Vec<u8>,
    pcm8: Vec<f32>,
    pcm16: Vec<f32>,
    rs: StreamResampler,
    vad: TurnDetector,
    events: Vec<switchboard::turn::TurnEvent>,
}

impl LivePath {
    fn new() -> Self {
        Self {
            ulaw: ulaw_frame(),
            pcm8: vec![0.0; 160],
            pcm16: Vec::with_capacity(640),
            rs: StreamResampler::new(8000, 16_000, 160).expect("8k→16k"),
            vad: TurnDetector::new(TurnConfig::default(), 16_000),
            events: Vec::with_capacity(8),
        }
    }
    fn frame(&mut self) {
        decode_ulaw_into(&self.ulaw, &mut self.pcm8);
        self.pcm16.clear();
        self.rs.process(&self.pcm8, &mut self.pcm16);
        self.events.clear();
        self.vad.push(&self.pcm16, &mut self.events);
        black_box(&self.events);
    }
}

fn per_frame(n: usize, mut f: impl FnMut()) -> Duration {
    for _ in 0..n / 10 {
        f();
    }
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed() / n as u32
}

fn speech_of(secs: f64) -> Vec<f32> {
    let lv = Path::new("/usr/share/pocketsphinx/test/data/librivox");
    let mut all = vec![];
    for id in ["0870", "0890", "0920", "0930"] {
        let p = lv.join(format!("sense_and_sensibility_01_austen_64kb-{id}.wav"));
        all.extend(read_audio_at(&p, ChannelPick::Mix, 16_000).expect("pocketsphinx-testdata"));
    }
    all.truncate((secs * 16_000.0) as usize);
    all
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn report() {
    // Live audio path per 20 ms frame.
    let mut live = LivePath::new();
    let mut base = LivePath::new();
    let full = per_frame(20_000, || live.frame());
    let decode_only = per_frame(20_000, || {
        decode_ulaw_into(&base.ulaw, &mut base.pcm8);
        black_box(&base.pcm8);
    });
    println!("\n== speech report");
    println!(
        "live path per 20 ms frame (decode + resample + VAD): {:?} = {:.4} % of one core per call (x{:.0} of μ-law decode alone, {:?})",
        full,
        full.as_secs_f64() / 0.020 * 100.0,
        full.as_secs_f64() / decode_only.as_secs_f64().max(1e-12),
        decode_only
    );
    // ASR latency: end of utterance → final transcript.
    let dir = switchboard::models::verify(&root().join("models"), "whisper-tiny.en")
        .expect("whisper-tiny.en installed");
    let w = Whisper::load(&dir.join(GGML_FILE), AsrConfig::default()).expect("whisper loads");
    let mut t = w.transcriber().expect("state");
    for secs in [1.0, 2.0, 3.0, 5.0, 7.0] {
        let audio = speech_of(secs);
        let runs: Vec<Duration> = (0..5)
            .map(|_| {
                let s = Instant::now();
                black_box(t.transcribe(&audio, None).expect("decode"));
                s.elapsed()
            })
            .collect();
        let m = median(runs);
        println!(
            "ASR tiny.en 2 threads, {secs:.0} s utterance → final transcript: {:?} median (x{:.2} real time)",
            m,
            m.as_secs_f64() / secs
        );
    }
    // TTS.
    let tts = Espeak::new(None).expect("espeak-ng");
    let sentence = "I have confirmed your reservation for December 1st.";
    let mut firsts = vec![];
    let mut totals = vec![];
    for _ in 0..30 {
        let s = Instant::now();
        let st = tts.synthesize(sentence, &Voice::default(), &mut |c| {
            black_box(c);
            true
        });
        totals.push(s.elapsed());
        firsts.push(Duration::from_micros(st.expect("synth").first_chunk_us));
    }
    let espeak_first = median(firsts.clone());
    println!(
        "TTS espeak-ng: first chunk {:?} median, whole sentence (2.8 s of audio) {:?} median",
        espeak_first,
        median(totals)
    );
    // Piper, the default voice: by clause (the default) and by sentence, against espeak-ng.
    let mut piper_cfg = Config::embedded().expect("config");
    piper_cfg.models_dir = root().join("models");
    let reply = "Sure, I can help with that. I have reservation A B C one two three under John Doe. Is that right?";
    for unit in [
        switchboard::tts::PiperUnit::Clause,
        switchboard::tts::PiperUnit::Sentence,
    ] {
        piper_cfg.speech.tts.piper_unit = unit;
        let piper = switchboard::runtime::speech::load_tts(&piper_cfg).expect("Piper installed");
        let (mut firsts, mut totals, mut audio_s) = (vec![], vec![], 0.0);
        for _ in 0..10 {
            let s = Instant::now();
            let mut n = 0usize;
            let st = piper.synthesize(reply, &Voice::default(), &mut |c| {
                n += c.len();
                true
            });
            totals.push(s.elapsed());
            firsts.push(Duration::from_micros(st.expect("synth").first_chunk_us));
            audio_s = n as f64 / f64::from(piper.sample_rate());
        }
        let (first, total) = (median(firsts), median(totals));
        println!(
            "TTS Piper joe ({unit:?}s, 1 thread): first chunk {first:?} median (x{:.0} espeak-ng's), \
             whole reply ({audio_s:.1} s of audio) {total:?} median, real-time factor {:.3}",
            first.as_secs_f64() / espeak_first.as_secs_f64().max(1e-6),
            total.as_secs_f64() / audio_s.max(1e-6)
        );
    }
    // Per call, the models that listen: the voice check (Silero VAD, each 32 ms window while
    // the caller is heard) and the end-of-turn model (Smart Turn, once per pause, 8 s of audio).
    let vad =
        Arc::new(switchboard::runtime::speech::load_vad(&piper_cfg).expect("Silero installed"));
    let talk = speech_of(3.0);
    let mut stream = vad.stream().expect("stream");
    let windows = talk.len() / vad.window_samples();
    let rounds = 20;
    let s = Instant::now();
    for _ in 0..rounds {
        stream.reset();
        for c in talk.chunks(320) {
            black_box(stream.push(c));
        }
    }
    let per_window = s.elapsed() / (rounds * windows) as u32;
    let vad_share = per_window.as_secs_f64() / 0.032;
    println!(
        "voice check Silero VAD v6, per 32 ms window: {per_window:?} = {:.2} % of one core per call while the caller is heard (x{:.0} the live path's share)",
        vad_share * 100.0,
        vad_share / (full.as_secs_f64() / 0.020).max(1e-12)
    );
    let smart =
        switchboard::runtime::speech::load_turn_model(&piper_cfg).expect("Smart Turn installed");
    let eight = speech_of(8.0);
    let runs: Vec<Duration> = (0..10)
        .map(|_| {
            let s = Instant::now();
            black_box(smart.predict(&eight).expect("prediction"));
            s.elapsed()
        })
        .collect();
    println!(
        "end-of-turn model Smart Turn v3.2, one pause (8 s of audio, features + model, 1 thread): {:?} median",
        median(runs)
    );
    // A full scripted call on the virtual clock.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    let mut cfg = Config::embedded().expect("config");
    cfg.demo.today = "2025-11-24".into();
    cfg.models_dir = root().join("models");
    let mini =
        switchboard::models::verify(&cfg.models_dir, "all-minilm-l6-v2").expect("MiniLM installed");
    let emb = Arc::new(MiniLm::load(&mini).expect("MiniLM"));
    let speech = Speech::load(&cfg).expect("speech");
    let clips: Vec<Vec<f32>> = (1..=3)
        .map(|i| {
            read_audio_at(
                &root().join(format!("audio-fixtures/scenario1/{i:02}.wav")),
                ChannelPick::Mix,
                16_000,
            )
            .expect("fixture")
        })
        .collect();
    let calls = 3;
    let started = Instant::now();
    let mut call_ms = 0;
    for _ in 0..calls {
        let engine = Engine::build(
            &cfg,
            Store::open_in_memory().expect("sqlite"),
            Some(emb.clone()),
            Arc::new(SystemClock {
                fixed_today: cfg.fixed_today(),
            }),
        )
        .expect("engine");
        let r = rt
            .block_on(replay(
                Arc::new(engine),
                speech.clone(),
                cfg.speech.call.clone(),
                CallerSource::Script {
                    clips: clips.clone(),
                    pause_ms: 700,
                },
                "user_789",
                false,
            ))
            .expect("replay");
        call_ms += r.duration_ms;
    }
    let wall = started.elapsed();
    println!(
        "scripted call (scenario 1, {:.1} s of call) on the virtual clock: {:.2} calls/s, x{:.0} faster than real time",
        call_ms as f64 / calls as f64 / 1000.0,
        calls as f64 / wall.as_secs_f64(),
        call_ms as f64 / 1000.0 / wall.as_secs_f64()
    );
    println!(
        "targets: live path <= 20 µs per frame (0.1 % of a core); ASR <= 400 ms for a 3 s utterance\n"
    );
}

fn benches(c: &mut Criterion) {
    let mut live = LivePath::new();
    c.bench_function("live_path/frame_20ms", |b| b.iter(|| live.frame()));
    let tts = Espeak::new(None).expect("espeak-ng");
    c.bench_function("tts/sentence", |b| {
        b.iter(|| {
            tts.synthesize("Your room is confirmed.", &Voice::default(), &mut |c| {
                black_box(c);
                true
            })
        })
    });
}

criterion_group! {
    name = group;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3));
    targets = benches
}

fn main() {
    report();
    group();
    Criterion::default().configure_from_args().final_summary();
}
