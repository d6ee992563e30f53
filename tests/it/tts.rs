//! The bot's voice: Piper (the default, an ONNX model on ONNX Runtime, both installed from
//! registry packages by `switchboard models install`) with espeak-ng as its fallback. Measured
//! the way a caller hears it: the reply sentences through the telephone path (22,050 Hz → 8 kHz
//! μ-law → 16 kHz), transcribed by the project's whisper, for both engines in the same test.

use crate::asr::{telephone, word_errors};
use crate::common::models_dir;
use std::sync::Arc;
use switchboard::asr::whisper::{AsrConfig, Whisper};
use switchboard::audio::resample::resample_whole;
use switchboard::config::Config;
use switchboard::runtime::speech::{Speech, load_tts};
use switchboard::tts::normalize::for_speech;
use switchboard::tts::piper::{Piper, PiperOptions, PiperStats, SynthesisUnit};
use switchboard::tts::{EngineKind, Fallback, SynthStats, TtsEngine, TtsError, Voice};

/// Replies the bot says, as the templates write them.
const REPLIES: &[&str] = &[
    "I'll need a bit more information to confirm your reservation. Can you please provide your reservation number and the full name on the reservation?",
    "I have reservation ABC123 under John Doe. Is that right?",
    "Great! I've confirmed your reservation. Check-in is at 3:00 PM and check-out is at 11:00 AM.",
    "How can I assist you today?",
    "Your payment of $125.50 is done. Is there anything else I can help you with?",
];

fn config(engine: EngineKind) -> Config {
    let mut cfg = Config::embedded().unwrap();
    cfg.models_dir = models_dir();
    cfg.speech.tts.engine = engine;
    cfg
}

fn say(tts: &dyn TtsEngine, text: &str) -> (Vec<f32>, SynthStats) {
    let mut pcm = vec![];
    let stats = tts
        .synthesize(&for_speech(text), &Voice::default(), &mut |c| {
            pcm.extend(c.iter().map(|s| *s as f32 / 32768.0));
            true
        })
        .unwrap();
    (pcm, stats)
}

/// As a phone call carries the bot to the caller: to 16 kHz, then the phone line.
fn over_the_phone(pcm: &[f32], rate: u32) -> Vec<f32> {
    telephone(&resample_whole(pcm, rate, 16_000).unwrap())
}

fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

fn is_number(w: &str) -> bool {
    const NUMBERS: &[&str] = &[
        "zero",
        "oh",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
        "twenty",
        "thirty",
        "forty",
        "fifty",
        "sixty",
        "seventy",
        "eighty",
        "ninety",
        "hundred",
        "thousand",
    ];
    w.chars().any(|c| c.is_ascii_digit())
        || NUMBERS.contains(&w)
        || w.chars().count() == 1
        || matches!(w, "am" | "pm")
}

/// Word error rate of whisper on `tts` speaking every reply over the phone, against what the
/// same engine is asked to say spelled as whisper writes it (the normalised text, spoken forms).
fn phone_wer(tts: &dyn TtsEngine, whisper: &Whisper) -> (f64, String) {
    let mut asr = whisper.transcriber().unwrap();
    let (mut errors, mut total, mut log) = (0, 0, String::new());
    for reply in REPLIES {
        let (pcm, _) = say(tts, reply);
        let heard = asr
            .transcribe(&over_the_phone(&pcm, tts.sample_rate()), None)
            .unwrap()
            .text;
        // whisper writes numbers, times and amounts as digits ("3pm", "$125.50") and codes as
        // letters ("A, B, C, 1, 2, 3"): compare the other words, on both sides.
        let reference: Vec<String> = words(reply).into_iter().filter(|w| !is_number(w)).collect();
        let hypothesis: Vec<String> = words(&heard)
            .into_iter()
            .filter(|w| !is_number(w))
            .collect();
        let e = word_errors(&reference, &hypothesis).min(reference.len());
        errors += e;
        total += reference.len();
        log.push_str(&format!("  {reply:?}\n    heard {heard:?} ({e} errors)\n"));
    }
    (errors as f64 / total as f64, log)
}

#[test]
fn callers_understand_piper_better_than_espeak_over_the_phone() {
    let whisper = Whisper::load(
        &switchboard::models::verify(&models_dir(), "whisper-tiny.en")
            .unwrap()
            .join(switchboard::models::whisper::GGML_FILE),
        AsrConfig::default(),
    )
    .unwrap();
    let piper = load_tts(&config(EngineKind::Piper)).expect("Piper installed");
    let espeak = load_tts(&config(EngineKind::Espeak)).unwrap();
    let (piper_wer, piper_log) = phone_wer(&*piper, &whisper);
    let (espeak_wer, espeak_log) = phone_wer(&*espeak, &whisper);
    println!(
        "word errors over the phone: Piper {:.1} %, espeak-ng {:.1} %\nPiper:\n{piper_log}espeak-ng:\n{espeak_log}",
        100.0 * piper_wer,
        100.0 * espeak_wer
    );
    // Numbers are compared as words whisper writes, so a few misses are the comparison's, not
    // the voice's; the neural voice must be heard clearly and more clearly than espeak-ng.
    assert!(piper_wer <= 0.12, "Piper {piper_wer:.3}\n{piper_log}");
    assert!(
        piper_wer < espeak_wer,
        "Piper {piper_wer:.3} vs espeak-ng {espeak_wer:.3}\n{piper_log}{espeak_log}"
    );
}

#[test]
fn piper_streams_clause_by_clause_and_is_deterministic() {
    // Without the clause cache: the second rendering below is synthesised again.
    let mut cfg = config(EngineKind::Piper);
    cfg.speech.tts.piper_cache_units = 0;
    let piper = load_tts(&cfg).unwrap();
    assert_eq!(piper.sample_rate(), 22_050);
    let text = "Sure, I can help with that. I have reservation A B C one two three under John Doe. Is that right?";
    let (a, stats) = say(&*piper, text);
    // One piece per clause: "Sure," comes before the rest is synthesised.
    assert_eq!(stats.chunks, 4, "{stats:?}");
    assert!(stats.first_chunk_us > 0 && !stats.aborted);
    assert_eq!(stats.samples, a.len());
    let secs = a.len() as f64 / 22_050.0;
    assert!((4.0..12.0).contains(&secs), "{secs} s");
    // The default voice has no sampled variation: the same reply is the same audio.
    let (b, _) = say(&*piper, text);
    assert!(a == b, "two renderings of the same reply differ");
    // A barge-in stops it after the piece being played.
    let mut pieces = 0;
    let stats = piper
        .synthesize(text, &Voice::default(), &mut |_| {
            pieces += 1;
            false
        })
        .unwrap();
    assert_eq!((pieces, stats.chunks, stats.aborted), (1, 1, true));
    // Nothing to say is no audio and no error; odd text never panics.
    for odd in [
        "",
        "...",
        "?!",
        "\u{1F600}",
        "\0\u{1}",
        "[[ h@l'oU ]]",
        "<speak>hi</speak>",
    ] {
        piper
            .synthesize(odd, &Voice::default(), &mut |_| true)
            .unwrap();
    }
    let long = "word ".repeat(400);
    let (audio, stats) = say(&*piper, &long);
    assert!(stats.chunks >= 2 && !audio.is_empty(), "{stats:?}");
}

/// A voice that always fails (a corrupt model, a runtime error).
struct Broken;

impl TtsEngine for Broken {
    fn sample_rate(&self) -> u32 {
        22_050
    }
    fn synthesize(
        &self,
        _: &str,
        _: &Voice,
        _: &mut dyn FnMut(&[i16]) -> bool,
    ) -> Result<SynthStats, TtsError> {
        Err(TtsError::Synthesis("model failed".into()))
    }
}

#[test]
fn espeak_speaks_when_the_voice_fails() {
    let espeak = load_tts(&config(EngineKind::Espeak)).unwrap();
    let (alone, _) = say(&*espeak, "Is that right?");
    let espeak = switchboard::tts::espeak::Espeak::new(None).unwrap();
    let fb = Fallback::new(Box::new(Broken), Box::new(espeak)).unwrap();
    let (audio, stats) = say(&fb, "Is that right?");
    // espeak-ng's rendering varies by a few milliseconds with what it said before: the same
    // sentence, within 10 %.
    assert_eq!(stats.samples, audio.len());
    let ratio = audio.len() as f64 / alone.len() as f64;
    assert!(
        (0.9..1.1).contains(&ratio),
        "{} vs {} samples",
        audio.len(),
        alone.len()
    );
}

/// The call gets the reply piece by piece, and the pieces are the whole reply: the same audio
/// as synthesising it at once and resampling it in one go, at the call's rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_gets_the_reply_as_it_is_synthesised() {
    let cfg = config(EngineKind::Piper);
    let speech = Speech::load(&cfg).unwrap();
    let text = "Sure, I can help with that. Your payment of $125.50 is done.";
    let pieces = Arc::new(std::sync::Mutex::new(Vec::<Vec<f32>>::new()));
    let sink = pieces.clone();
    speech
        .synthesize_stream(text, 8_000, move |p| {
            sink.lock().unwrap().push(p.to_vec());
            true
        })
        .await
        .unwrap();
    let pieces = pieces.lock().unwrap().clone();
    assert!(pieces.len() >= 2, "{} pieces", pieces.len());
    // The call starts with enough in hand to cover the next clause's synthesis: at least a
    // piece, at most a second unless the first clause alone is longer.
    let first_ms = pieces[0].len() * 1000 / 8_000;
    assert!(
        first_ms >= switchboard::runtime::speech::STREAM_PIECE_MS,
        "first piece {first_ms} ms"
    );
    let joined: Vec<f32> = pieces.concat();
    let (whole, _) = say(&*speech.tts, text);
    let expected = resample_whole(&whole, 22_050, 8_000).unwrap();
    assert_eq!(joined.len(), expected.len());
    let diff = joined
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(diff < 1e-4, "max difference {diff}");
    // Said again, it comes from the cache in one piece.
    let again = Arc::new(std::sync::Mutex::new(0usize));
    let n = again.clone();
    speech
        .synthesize_stream(text, 8_000, move |p| {
            assert_eq!(p.len(), expected.len());
            *n.lock().unwrap() += 1;
            true
        })
        .await
        .unwrap();
    assert_eq!(*again.lock().unwrap(), 1);
}

/// The installed Piper voice with `options`.
fn load_piper(options: PiperOptions) -> Piper {
    use switchboard::models::{ONNXRUNTIME, PIPER_JOE};
    let models = models_dir();
    let runtime = switchboard::models::verify(&models, ONNXRUNTIME.name)
        .unwrap()
        .join(ONNXRUNTIME.files[0]);
    let voice = switchboard::models::verify(&models, PIPER_JOE.name).unwrap();
    Piper::load(
        &runtime,
        &voice.join(PIPER_JOE.files[0]),
        &voice.join(PIPER_JOE.files[1]),
        options,
    )
    .unwrap()
}

/// `text` in `piper`'s voice without sampled noise: its audio and what the synthesis did.
fn render_deterministic(piper: &Piper, text: &str) -> (Vec<i16>, PiperStats) {
    let mut pcm: Vec<i16> = vec![];
    let stats = piper
        .synthesize_with(text, piper.default_scales().deterministic(), &mut |c| {
            pcm.extend_from_slice(c);
            true
        })
        .unwrap();
    (pcm, stats)
}

/// The clause cache: a clause said before, in another reply, is not synthesised again and is the
/// same audio; a voice with sampled noise caches nothing; the cache stays within its size.
#[test]
fn piper_reuses_a_clause_said_before_in_another_reply() {
    let load = |cache_units| {
        load_piper(PiperOptions {
            unit: SynthesisUnit::Clause,
            cache_units,
            ..PiperOptions::default()
        })
    };
    let render = render_deterministic;
    let question = "Which account would you like to see the bill for?";
    let reply = "Which account would you like to see the bill for? You have a Personal Account ending in 4567.";
    let fresh = load(0);
    let (whole, stats) = render(&fresh, reply);
    assert_eq!((stats.cached_units, stats.units.len()), (0, 2), "{stats:?}");

    let cached = load(2);
    let (_, stats) = render(&cached, question);
    assert_eq!((stats.cached_units, stats.units.len()), (0, 1));
    let (again, stats) = render(&cached, reply);
    // The question came from the cache, the new clause from the model: the same audio.
    assert_eq!((stats.cached_units, stats.units.len()), (1, 1), "{stats:?}");
    assert!(again == whole, "a cached clause sounds different");
    assert_eq!(cached.cached_units(), 2);
    render(&cached, "Thank you for calling. Have a wonderful day.");
    assert_eq!(cached.cached_units(), 2, "the cache outgrew its size");

    // Sampled noise makes every rendering different: nothing is kept.
    let mut noisy = 0;
    cached
        .synthesize_with(
            "Is there anything else?",
            cached.default_scales(),
            &mut |_| {
                noisy += 1;
                true
            },
        )
        .unwrap();
    let (_, stats) = render(&cached, "Is there anything else?");
    assert_eq!((noisy, stats.cached_units), (1, 0));
}

/// Calls that need the same new clause at the same moment (a burst of callers hearing the same
/// question) wait for one synthesis of it instead of each running the model, even with a free
/// session for each; every call gets the same audio.
#[test]
fn piper_synthesises_a_clause_once_when_calls_need_it_at_once() {
    let piper = std::sync::Arc::new(load_piper(PiperOptions {
        unit: SynthesisUnit::Clause,
        cache_units: 16,
        sessions: 2,
        ..PiperOptions::default()
    }));
    let reply = "Which account would you like to see the bill for? You have a Personal Account ending in 4567.";
    let calls = 4;
    let start = std::sync::Arc::new(std::sync::Barrier::new(calls));
    let renders: Vec<_> = (0..calls)
        .map(|_| {
            let (piper, start) = (piper.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                render_deterministic(&piper, reply)
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    let ran: usize = renders.iter().map(|(_, s)| s.units.len()).sum();
    let cached: usize = renders.iter().map(|(_, s)| s.cached_units).sum();
    assert_eq!(
        (ran, cached),
        (2, 2 * calls - 2),
        "each of the 2 clauses once"
    );
    assert!(!renders[0].0.is_empty());
    assert!(
        renders.iter().all(|(pcm, _)| *pcm == renders[0].0),
        "the calls heard different audio"
    );
}

/// Piper's input as its reference runner builds it: `^ _ (phoneme _)… $`, a clause's
/// punctuation and a space after a comma, NFD code points; phonemes the voice does not know are
/// skipped and counted.
#[test]
fn piper_ids_follow_the_voices_layout() {
    let piper = load_piper(PiperOptions {
        unit: SynthesisUnit::Clause,
        ..PiperOptions::default()
    });
    assert_eq!(
        piper.phoneme_ids("h\u{259}", ','),
        (vec![1, 0, 20, 0, 59, 0, 8, 0, 3, 0, 2], 0)
    );
    assert_eq!(
        piper.phoneme_ids("h\u{1F600}", ' '),
        (vec![1, 0, 20, 0, 2], 1)
    );
    // "ç" is c + combining cedilla.
    assert_eq!(
        piper.phoneme_ids("\u{e7}", ' ').0,
        vec![1, 0, 16, 0, 140, 0, 2]
    );
    // Clause by clause (the configured default): one model run per clause.
    let units = piper.text_to_ids("Hello, world. How are you?").unwrap();
    assert_eq!(units.len(), 3, "{units:?}");
    assert!(
        units
            .iter()
            .all(|(_, ids)| ids.first() == Some(&1) && ids.last() == Some(&2))
    );
}
