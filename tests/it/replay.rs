//! Recorded calls through the whole pipeline — turn-taking, whisper tiny.en, the conversation
//! engine, espeak-ng and the per-call core — on the virtual clock. Caller audio is the 8 kHz
//! μ-law fixtures of audio-fixtures/ (made by audio-fixtures/generate.sh).

use crate::common::{Setup, config, engine_with};
use serde_json::Value;
use std::path::{Path, PathBuf};
use switchboard::audio::decode::{ChannelPick, read_audio_at};
use switchboard::call::EndAction;
use switchboard::config::SystemMode;
use switchboard::runtime::replay::{CallerSource, ReplayResult, replay, transcript};
use switchboard::runtime::speech::Speech;

fn fixture(rel: &str) -> Vec<f32> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("audio-fixtures")
        .join(rel);
    read_audio_at(&p, ChannelPick::Mix, 16_000).unwrap_or_else(|e| panic!("{e}"))
}

async fn run(setup: Setup, source: CallerSource) -> ReplayResult {
    let mut cfg = config(&setup);
    cfg.models_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models");
    let engine = engine_with(setup, &cfg);
    let speech = Speech::load(&cfg).unwrap();
    let r = replay(
        std::sync::Arc::new(engine),
        speech,
        cfg.speech.call.clone(),
        source,
        "user_789",
        false,
    )
    .await
    .unwrap();
    println!("{}", transcript(&r.timeline));
    r
}

fn script(dir: &str, n: usize) -> CallerSource {
    CallerSource::Script {
        clips: (1..=n)
            .map(|i| fixture(&format!("{dir}/{i:02}.wav")))
            .collect(),
        pause_ms: 700,
    }
}

fn kinds<'a>(r: &'a ReplayResult, kind: &str) -> Vec<&'a Value> {
    r.timeline.iter().filter(|e| e["kind"] == kind).collect()
}

fn intents(r: &ReplayResult) -> Vec<(String, String)> {
    kinds(r, "intent")
        .iter()
        .map(|e| {
            (
                e["intent"].as_str().unwrap_or("-").to_string(),
                e["status"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect()
}

fn replies(r: &ReplayResult) -> Vec<String> {
    kinds(r, "bot_reply")
        .iter()
        .map(|e| e["text"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_1_from_audio() {
    let a = run(Setup::default(), script("scenario1", 3)).await;
    let want = [
        ("confirm_reservation", "needs_info"),
        ("confirm_reservation", "success"),
        ("end_call", "ended"),
    ];
    let got = intents(&a);
    assert_eq!(
        got.iter()
            .map(|(i, s)| (i.as_str(), s.as_str()))
            .collect::<Vec<_>>(),
        want
    );
    let r = replies(&a);
    assert!(
        r[1].contains("your reservation number") && r[1].contains("full name"),
        "{r:?}"
    );
    assert!(
        r[2].contains("Deluxe Suite") && r[2].contains("December 1st through December 5th"),
        "{r:?}"
    );
    assert_eq!(a.ended, Some(EndAction::Hangup));
    assert!(kinds(&a, "barge_in").is_empty());
    // Bot audio was heard: the right channel is not silent while the bot speaks.
    assert!(a.bot.iter().any(|s| s.abs() > 0.05));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_2_from_audio() {
    let r = run(
        Setup {
            today: "2025-01-15",
            ..Setup::default()
        },
        script("scenario2", 3),
    )
    .await;
    let got = intents(&r);
    assert_eq!(got[0], ("get_billing_info".into(), "needs_info".into()));
    assert_eq!(got[1], ("get_billing_info".into(), "success".into()));
    let rep = replies(&r);
    assert!(
        rep[2].contains("$125.50") && rep[2].contains("February 1st"),
        "{rep:?}"
    );
    assert_eq!(r.ended, Some(EndAction::Hangup));
}

/// Seed scenario 3 from audio. whisper writes the caller's "A B C one two three" as "Pay BC123",
/// so the bot reads the booking back before looking it up ("I have reservation ABC123 under John
/// Doe. Is that right?") and the caller says yes; the cancellation is read back with its fee and
/// runs on the caller's yes; the rest is the seed's flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_3_from_audio_with_failure_and_cached_fallback() {
    let clips = ["01", "02", "yes", "03", "yes", "04"]
        .iter()
        .map(|c| fixture(&format!("scenario3/{c}.wav")))
        .collect();
    let r = run(
        Setup {
            reservation_system: SystemMode::FailWrites,
            ..Setup::default()
        },
        CallerSource::Script {
            clips,
            pause_ms: 700,
        },
    )
    .await;
    let got = intents(&r);
    let at = |want: (&str, &str)| {
        got.iter()
            .position(|(i, s)| (i.as_str(), s.as_str()) == want)
            .unwrap_or_else(|| panic!("no {want:?} in {got:?}"))
    };
    let looked_up = at(("confirm_reservation", "success"));
    let read_back = at(("cancel_reservation", "needs_info"));
    let cancelled = at(("cancel_reservation", "success"));
    assert!(looked_up < read_back && read_back < cancelled, "{got:?}");
    assert!(
        replies(&r)[read_back + 1].contains("Shall I go ahead"),
        "{:?}",
        replies(&r)
    );
    assert_eq!(kinds(&r, "intent")[cancelled]["fallback"], "cached_data");
    let rep = replies(&r);
    assert!(
        rep[cancelled + 1].contains("$25.00")
            && rep[cancelled + 1].contains("$475.00")
            && rep[cancelled + 1].contains("next week"),
        "{rep:?}"
    );
    assert_eq!(r.ended, Some(EndAction::Hangup));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn barge_in_stops_playout_and_the_agent_keeps_only_what_was_heard() {
    let setup = Setup {
        today: "2025-01-15",
        ..Setup::default()
    };
    let mut cfg = config(&setup);
    cfg.models_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models");
    let engine = std::sync::Arc::new(engine_with(setup, &cfg));
    let speech = Speech::load(&cfg).unwrap();
    let r = replay(
        engine.clone(),
        speech,
        cfg.speech.call.clone(),
        CallerSource::Track(fixture("bargein/track.wav")),
        "user_789",
        false,
    )
    .await
    .unwrap();
    println!("{}", transcript(&r.timeline));
    let barge = kinds(&r, "barge_in");
    assert_eq!(barge.len(), 1, "{:#?}", r.timeline);
    let heard = barge[0]["heard"].as_str().unwrap();
    let question = replies(&r)[1].clone();
    assert!(
        !heard.is_empty() && question.starts_with(heard) && heard.len() < question.len(),
        "heard {heard:?} of {question:?}"
    );
    // The caller's answer, given over the bot, was acted on.
    let rep = replies(&r);
    assert!(rep.iter().any(|x| x.contains("$310.00")), "{rep:?}");
    // The agent's memory holds only the part of the question that was played.
    let conv = engine.conversation(&r.conversation_id).await.unwrap();
    let cut = conv
        .history
        .iter()
        .find(|u| u.interrupted)
        .expect("an interrupted bot turn");
    assert_eq!(cut.content, heard);
    // No bot audio after the barge-in until the next reply: the playout stopped at once.
    let t_barge = barge[0]["t_ms"].as_u64().unwrap();
    let next_reply = kinds(&r, "bot_audio_start")
        .iter()
        .map(|e| e["t_ms"].as_u64().unwrap())
        .find(|t| *t > t_barge)
        .unwrap();
    let from = (t_barge as usize + 40) * 16;
    let to = (next_reply as usize).saturating_sub(20) * 16;
    assert!(to > from);
    assert!(
        r.bot[from..to].iter().all(|s| s.abs() < 0.02),
        "bot audio continued after the barge-in"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_noisy_line_never_reaches_the_agent() {
    let r = run(
        Setup::default(),
        CallerSource::Track(fixture("noise/line.wav")),
    )
    .await;
    assert!(kinds(&r, "intent").is_empty(), "{:#?}", r.timeline);
    assert!(kinds(&r, "transcript").is_empty(), "{:#?}", r.timeline);
    assert_eq!(replies(&r).len(), 1, "only the greeting");
}
