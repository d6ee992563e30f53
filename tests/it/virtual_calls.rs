//! Phone calls on a virtual clock: the gateway's real router, WebSocket upgrade, phone driver,
//! call session, whisper and espeak-ng, reached through an in-memory network
//! (`testkit::vnet`) by `testkit::simcall` playing Twilio, all on tokio's paused clock. Time
//! advances only when every task is idle and nothing runs on the blocking pool (whisper is
//! awaited there: `AsrPool::on_virtual_clock`), so processing takes no call time, a call's
//! timeline is the same on every run, and a 30 s call takes about as long as its whisper and
//! espeak-ng work. Timelines are asserted exactly. `twilio.rs` keeps the real-time tier.

use crate::common::virtual_gateway;
use crate::twilio::{heard_text, ulaw_fixture};
use std::sync::Arc;
use std::time::Duration;
use switchboard::agent::engine::Engine;
use switchboard::config::Config;
use switchboard::runtime::live::LiveDeps;
use switchboard::runtime::speech::Speech;
use switchboard::store::{Case, CaseStatus, LogQuery, LogType};
use switchboard::testkit::simcall::{self, CallLog, Script, Step};
use switchboard::testkit::vnet;

struct VirtualGateway {
    app: axum::Router,
    engine: Arc<Engine>,
    live: Arc<LiveDeps>,
}

/// A gateway with no provider credentials (so no REST call leaves the process: the bot ends a
/// call by closing the stream) on the in-memory network.
async fn gateway(tweak: impl FnOnce(&mut Config)) -> VirtualGateway {
    gateway_with(None, tweak).await
}

/// `speech`: a speech stack to share (see `common::virtual_gateway`).
async fn gateway_with(speech: Option<Speech>, tweak: impl FnOnce(&mut Config)) -> VirtualGateway {
    let (app, engine, live) = virtual_gateway(speech, tweak, |_| {});
    VirtualGateway { app, engine, live }
}

impl VirtualGateway {
    async fn call(&self, script: &Script) -> CallLog {
        let ws = vnet::websocket(self.app.clone(), "/twilio/media", &script.headers)
            .await
            .unwrap();
        let log = simcall::run_on(ws, script).await.unwrap();
        assert!(log.unexpected.is_empty(), "{:?}", log.unexpected);
        log
    }

    /// Waits (virtual time) until every call has closed its case and freed its slot.
    async fn idle(&self) {
        crate::common::calls_idle(&self.live).await
    }

    async fn cases(&self) -> Vec<Case> {
        crate::common::cases(&self.engine).await
    }

    async fn said(&self, who: LogType) -> Vec<String> {
        let logs = self.engine.logs(LogQuery::default()).await.unwrap();
        logs.iter()
            .filter(|l| l.log_type == who)
            .map(|l| l.message.clone())
            .collect()
    }
}

fn wait() -> Step {
    Step::WaitBotDone { max_ms: 20_000 }
}

fn request_call() -> Script {
    Script::new(
        "user_789",
        vec![
            wait(),
            Step::Say(ulaw_fixture("scenario1/01.wav")),
            wait(),
            Step::HangUp,
        ],
    )
}

#[tokio::test(start_paused = true)]
async fn a_call_on_the_virtual_clock_is_paced_exactly_and_replays_to_the_same_timeline() {
    let wall = std::time::Instant::now();
    let gw = gateway(|_| {}).await;
    let log = gw.call(&request_call()).await;
    let (spoke, spoke_end) = log.speech[0];
    let (greeting, answer) = log.audio_bytes_around(spoke);
    assert!(
        greeting >= 8000 * 2,
        "the greeting was sent: {greeting} bytes"
    );
    assert!(answer >= 8000 * 2, "an answer followed: {answer} bytes");
    // Paced exactly: with processing taking no call time, audio is never more than the core's
    // 200 ms lead (plus the 20 ms frame in flight) ahead of the call's clock.
    assert_eq!(
        log.media[0].0, 0,
        "the greeting starts the moment the call does"
    );
    let lead = log.max_lead_ms();
    assert!(
        (200..=220).contains(&lead),
        "audio {lead} ms ahead of the call's clock"
    );
    assert!(log.gaps.is_empty(), "bot audio ran dry: {:?}", log.gaps);
    // The answer starts when the turn is decided: whisper and the agent take no call time, so
    // the latency is the silence the turn detector waits for after the last voiced frame (the
    // 350 ms quick stop, or the 600 ms full stop) less the fixture's own trailing quiet.
    let latency = log.response_latencies()[0];
    assert!(
        (250..=620).contains(&latency),
        "speech end {spoke_end} ms → first bot audio after {latency} ms"
    );
    gw.idle().await;
    let cases = gw.cases().await;
    assert_eq!(cases.len(), 1);
    assert_eq!(cases[0].status, CaseStatus::Closed);
    assert_eq!(cases[0].resolution.as_deref(), Some("caller hung up"));
    // The same call again, on a new gateway: the same timeline, to the millisecond.
    let speech = gw.live.speech.clone();
    let again = gateway_with(Some(speech), |_| {})
        .await
        .call(&request_call())
        .await;
    assert_eq!(again.media, log.media, "bot audio at the same moments");
    assert_eq!(again.marks, log.marks);
    assert_eq!(again.speech, log.speech);
    eprintln!(
        "{} ms of calls in {} ms of wall time",
        log.duration_ms + again.duration_ms,
        wall.elapsed().as_millis()
    );
}

/// Seed scenario 1 by phone: "Confirm my reservation.", the code and name, "No, that's all.
/// Thanks." The caller never talks over the bot; every reply, as the caller heard it over
/// μ-law and transcribed again by whisper, carries what it must; the bot ends the call.
/// (Without provider credentials it ends it by closing the stream; the REST hang-up is in
/// `twilio.rs`'s real-time tier.)
#[tokio::test(start_paused = true)]
async fn seed_scenario_one_completes_by_phone_on_the_virtual_clock() {
    let gw = gateway(|_| {}).await;
    let script = Script::new(
        "user_789",
        vec![
            wait(),
            Step::Say(ulaw_fixture("scenario1/01.wav")),
            wait(),
            Step::Say(ulaw_fixture("scenario1/02.wav")),
            wait(),
            Step::Say(ulaw_fixture("scenario1/03.wav")),
            wait(),
            Step::Silence(3000),
        ],
    );
    let log = gw.call(&script).await;
    assert!(
        log.clears.is_empty(),
        "clears at {:?} ms; caller speech {:?}",
        log.clears,
        log.speech
    );
    assert!(log.gaps.is_empty(), "bot audio ran dry: {:?}", log.gaps);
    // The bot's audio as the caller heard it, transcribed again by the gateway's own whisper.
    let heard = heard_text(&gw.live.speech, &log).await;
    assert_eq!(
        heard.len(),
        4,
        "greeting, question, confirmation, farewell: {heard:?}"
    );
    let lower: Vec<String> = heard.iter().map(|h| h.to_lowercase()).collect();
    assert!(
        lower[0].contains("welcome") && lower[0].contains("hotel"),
        "{heard:?}"
    );
    assert!(lower[1].contains("full name"), "{heard:?}");
    // Compared without spaces and dots: whisper writes "3 p.m." or "3pm" for the same words.
    let confirmation: String = lower[2]
        .chars()
        .filter(|c| !matches!(c, ' ' | '.'))
        .collect();
    assert!(
        ["december1st", "december5th", "3pm", "11am"]
            .iter()
            .all(|f| confirmation.contains(f)),
        "the confirmation carries the dates and times: {heard:?}"
    );
    assert!(lower[3].contains("goodbye"), "{heard:?}");
    // What was said, word for word, is in the log.
    let replies = gw.said(LogType::AgentToCaller).await;
    assert!(
        replies.iter().any(|r| r.starts_with(
            "Great! I've confirmed your reservation. You have a Deluxe Suite reserved for \
             December 1st through December 5th. Check-in is at 3:00 PM and check-out is at 11:00 AM."
        )),
        "{replies:?}"
    );
    assert!(log.closed_by_server.is_some(), "the gateway ended the call");
    gw.idle().await;
    let case = &gw.cases().await[0];
    assert_eq!(case.resolution.as_deref(), Some("bot hung up"));
    assert_eq!(case.status, CaseStatus::Closed);
}

#[tokio::test(start_paused = true)]
async fn talking_over_the_bot_on_the_virtual_clock_clears_at_once_and_keeps_what_was_heard() {
    let gw = gateway(|_| {}).await;
    let script = Script::new(
        "user_789",
        vec![
            wait(),
            Step::Say(ulaw_fixture("bargein/ask.wav")),
            Step::WaitBotSpeaking {
                ms: 1200,
                max_ms: 15_000,
            },
            Step::Say(ulaw_fixture("bargein/answer.wav")),
            wait(),
            Step::HangUp,
        ],
    );
    let log = gw.call(&script).await;
    assert_eq!(log.barge_ins.len(), 1, "the answer began over the bot");
    assert_eq!(log.clears.len(), 1, "one clear: {:?}", log.clears);
    // The bot's audio stops `hush_ms` (150 ms) into the sound over it, to the frame.
    let reaction = log.clear_latencies()[0];
    assert!(
        (140..=180).contains(&reaction),
        "clear {reaction} ms after the caller started"
    );
    let (_, answer_end) = log.speech[1];
    assert_eq!(
        log.media
            .iter()
            .filter(|(t, _)| *t > log.clears[0] && *t < answer_end)
            .count(),
        0,
        "silence after the clear until the caller finished"
    );
    assert!(
        log.media_after(answer_end) > 0,
        "the interruption was answered"
    );
    gw.idle().await;
    let logs = gw.engine.logs(LogQuery::default()).await.unwrap();
    let conv = gw.engine.conversation(&logs[0].session_id).await.unwrap();
    let cut = conv
        .history
        .iter()
        .find(|u| u.interrupted)
        .expect("the interrupted reply is flagged");
    assert!(
        cut.content.starts_with("Which account") && !cut.content.contains("business"),
        "only the heard words are kept: {:?}",
        cut.content
    );
    let cases = gw.cases().await;
    assert!(cases[0].audit.iter().any(|a| a.action == "barge_in"));
    // The call's turns and its barge-in reach /metrics. The registry is the process's (other
    // tests' calls add to it too): each series this call feeds has at least one sample; the
    // stage arithmetic itself is unit-tested exactly (`runtime::session`'s stage tests).
    let m = crate::common::metrics(&gw.app).await;
    for stage in [
        "transcript",
        "turn_decided",
        "agent_answered",
        "first_tts_chunk",
        "first_audio",
    ] {
        let n = m
            .get(&format!(
                "switchboard_turn_stage_seconds_count{{stage=\"{stage}\"}}"
            ))
            .copied()
            .unwrap_or(0.0);
        assert!(n >= 1.0, "no {stage} sample: {m:?}");
    }
    for series in [
        "switchboard_barge_in_clear_seconds_count",
        "switchboard_asr_decode_seconds_count",
        "switchboard_asr_jobs_total{outcome=\"delivered\"}",
        "switchboard_tts_synthesis_seconds_count",
        "switchboard_calls_started_total{provider=\"twilio\"}",
        "switchboard_turns_total{provider=\"twilio\"}",
        "switchboard_agent_calls_total{agent=\"billing_agent\",result=\"ok\"}",
        "switchboard_calls_ended_total{provider=\"twilio\",outcome=\"caller_hung_up\"}",
    ] {
        assert!(m.get(series).is_some_and(|n| *n >= 1.0), "{series}: {m:?}");
    }
    assert!(
        m.iter()
            .any(|(k, v)| k.starts_with("switchboard_intents_total{intent=") && *v >= 1.0),
        "{m:?}"
    );
    assert!(m["process_resident_memory_bytes"] > 1e6);
    // This call's clear came 140–180 ms after the caller's onset: a sample at or below 200 ms.
    assert!(
        m.get("switchboard_barge_in_clear_seconds_bucket{le=\"0.2\"}")
            .is_some_and(|n| *n >= 1.0),
        "{m:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn keys_on_the_virtual_clock_reach_the_agent_and_zero_hands_the_call_over() {
    let gw = gateway(|_| {}).await;
    let mut steps = vec![wait(), Step::Say(ulaw_fixture("scenario1/01.wav")), wait()];
    steps.extend("246810#".chars().map(Step::Dtmf));
    steps.extend([wait(), Step::Dtmf('0'), wait(), Step::Silence(3000)]);
    let log = gw.call(&Script::new("user_555", steps)).await;
    assert!(
        log.closed_by_server.is_some(),
        "the gateway handed the call over (no REST credentials: by closing the stream)"
    );
    gw.idle().await;
    let said = gw.said(LogType::CallerToAgent).await;
    assert!(said.contains(&"2 4 6 8 1 0".to_string()), "{said:?}");
    assert!(said.contains(&"0".to_string()), "{said:?}");
    let replies = gw.said(LogType::AgentToCaller).await;
    assert!(
        replies
            .iter()
            .any(|r| r.contains("I still need the full name")),
        "the typed reservation number was accepted: {replies:?}"
    );
    let case = &gw.cases().await[0];
    assert_eq!(case.status, CaseStatus::Escalated);
    assert_eq!(
        case.resolution.as_deref(),
        Some("transferred to +15005550006")
    );
    let digits: String = case
        .audit
        .iter()
        .filter(|a| a.action == "dtmf")
        .filter_map(|a| a.detail["digit"].as_str())
        .collect();
    assert_eq!(digits, "246810#0");
}

#[tokio::test(start_paused = true)]
async fn a_call_over_the_cap_hears_the_busy_message_and_draining_refuses_then_ends_calls() {
    let gw = gateway(|c| c.calls.max_active = 1).await;
    // The first call stays on the line; the second arrives while it does.
    let long = Script::new(
        "user_789",
        vec![wait(), Step::Silence(60_000), Step::HangUp],
    );
    let first = {
        let app = gw.app.clone();
        tokio::spawn(async move {
            let ws = vnet::websocket(app, "/twilio/media", &[]).await.unwrap();
            simcall::run_on(ws, &long).await.unwrap()
        })
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    let busy = gw
        .call(&Script::new(
            "user_321",
            vec![Step::Silence(15_000), Step::HangUp],
        ))
        .await;
    assert!(
        busy.closed_by_server.is_some(),
        "the gateway hung up on the caller over the cap"
    );
    let bytes: usize = busy.media.iter().map(|m| m.1).sum();
    assert!(
        (8000..8000 * 12).contains(&bytes),
        "a short message was played: {bytes} bytes"
    );
    assert_eq!(gw.live.registry.active(), 1, "the admitted call goes on");
    // Shutdown: new calls are refused at once; the call still up is ended at the timeout.
    let reg = gw.live.registry.clone();
    let drain = tokio::spawn(async move { reg.drain(Duration::from_millis(1500)).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = vnet::websocket(gw.app.clone(), "/twilio/media", &[]).await;
    let Err(err) = refused else {
        panic!("a new call is refused while draining");
    };
    assert!(
        err.to_string().contains("503") || format!("{err:#}").contains("503"),
        "{err:#}"
    );
    assert_eq!(
        drain.await.unwrap(),
        1,
        "one call was cut off at the timeout"
    );
    let first = first.await.unwrap();
    assert!(first.closed_by_server.is_some());
    gw.idle().await;
    let cases = gw.cases().await;
    assert_eq!(cases.len(), 1, "the busy call opened no case");
    assert_eq!(cases[0].resolution.as_deref(), Some("ended at shutdown"));
    assert_eq!(cases[0].status, CaseStatus::Closed);
    // /metrics counts the busy call as refused, and the refused connection and the call ended
    // at shutdown as drained (the registry is the process's: at least these).
    let m = crate::common::metrics(&gw.app).await;
    let ended = |outcome: &str| {
        m.get(&format!(
            "switchboard_calls_ended_total{{provider=\"twilio\",outcome=\"{outcome}\"}}"
        ))
        .copied()
        .unwrap_or(0.0)
    };
    assert!(ended("refused") >= 1.0, "{m:?}");
    assert!(ended("drained") >= 2.0, "{m:?}");
}

/// A caller the project never tuned on, whose code whisper (prompted) writes "a BC123": it is
/// read back and confirmed.
#[tokio::test(start_paused = true)]
async fn a_stranger_whose_code_whisper_writes_a_bc123_is_read_back_and_confirmed_by_phone() {
    stranger_by_phone(true).await;
}

/// The same caller on the default configuration (no prompt): whatever whisper makes of the code
/// and the name, the booking is confirmed, only the caller's own booking is read back, and the
/// bot says goodbye and hangs up.
#[tokio::test(start_paused = true)]
async fn a_stranger_on_the_default_configuration_confirms_by_phone() {
    stranger_by_phone(false).await;
}

async fn stranger_by_phone(prompt: bool) {
    let gw = gateway(|c| c.speech.asr.prompt = prompt).await;
    let mut steps = vec![wait()];
    for i in 1..=4 {
        steps.push(Step::Say(ulaw_fixture(&format!("stranger/0{i}.wav"))));
        steps.push(wait());
    }
    steps.push(Step::Silence(3000));
    gw.call(&Script::new("user_000", steps)).await;
    let caller = gw.said(LogType::CallerToAgent).await;
    let bot = gw.said(LogType::AgentToCaller).await;
    let transcript = format!("caller: {caller:#?}\nbot: {bot:#?}");
    if prompt {
        assert!(
            caller.iter().any(|c| c.contains("a BC123")),
            "whisper's rendering of the code: {transcript}"
        );
    }
    // A read-back, if any, names the caller's own booking.
    assert!(
        bot.iter()
            .filter(|b| b.contains("Is that right?"))
            .all(|b| b == "I have reservation ABC123 under John Doe. Is that right?"),
        "{transcript}"
    );
    assert!(
        bot.iter()
            .any(|b| b.starts_with("Great! I've confirmed your reservation.")),
        "{transcript}"
    );
    assert!(
        bot.last().is_some_and(|b| b.contains("Goodbye")),
        "{transcript}"
    );
    gw.idle().await;
    let cases = gw.cases().await;
    assert_eq!(
        cases[0].resolution.as_deref(),
        Some("bot hung up"),
        "{transcript}"
    );
}

/// What one call of the noise set did: bot pauses (clears) and caller turns taken.
struct NoiseOutcome {
    clears: usize,
    turns: usize,
}

/// A caller's line carries `noise` over the greeting, then again while the bot is silent, and
/// then the caller asks for something ("Confirm my reservation.").
async fn noise_call(gw: &VirtualGateway, noise: &str) -> NoiseOutcome {
    let before = gw.said(LogType::CallerToAgent).await.len();
    let script = Script::new(
        "+15550001111",
        vec![
            Step::WaitBotSpeaking {
                ms: 300,
                max_ms: 10_000,
            },
            Step::Say(ulaw_fixture(noise)),
            wait(),
            Step::Say(ulaw_fixture(noise)),
            Step::Silence(2_000),
            wait(),
            Step::Say(ulaw_fixture("scenario1/01.wav")),
            wait(),
            Step::HangUp,
        ],
    );
    let log = gw.call(&script).await;
    gw.idle().await;
    NoiseOutcome {
        clears: log.clears.len(),
        turns: gw.said(LogType::CallerToAgent).await.len() - before,
    }
}

/// The noise set (`audio-fixtures/noise/set/`: line hum, hiss and clicks; four-talker babble;
/// music; a television 30 dB under the caller; coughs), played over the bot's greeting and then
/// into the bot's silence. With the voice check none of it pauses the bot or starts a turn; the
/// energy detector alone is fooled by it (the figures are printed), and the caller who then speaks
/// is still heard. The held-out set (`noise/heldout/`: other sources of the same kinds, made after
/// the settings were chosen, never tuned on) is run and held to the same.
#[tokio::test(start_paused = true)]
async fn noise_on_the_line_neither_pauses_the_bot_nor_starts_a_turn() {
    let with = gateway(|_| {}).await;
    assert!(
        with.live.speech.vad.is_some(),
        "the voice check is on by default"
    );
    let mut speech = with.live.speech.clone();
    speech.vad = None;
    let without = gateway_with(Some(speech), |c| c.speech.vad.enabled = false).await;
    let mut totals = vec![];
    for set in ["set", "heldout"] {
        // (pauses, noise turns) with the check, then without; the caller's own requests taken.
        let (mut on, mut off, mut heard) = ((0, 0), (0, 0), 0);
        for name in ["line", "babble", "music", "tv", "coughs"] {
            let clip = format!("noise/{set}/{name}.wav");
            let a = noise_call(&with, &clip).await;
            let b = noise_call(&without, &clip).await;
            eprintln!(
                "{set:>7} {name:>7}: voice check on: {} bot pauses, {} turns; energy detector alone: {} bot pauses, {} turns",
                a.clears,
                a.turns.saturating_sub(1),
                b.clears,
                b.turns.saturating_sub(1)
            );
            on.0 += a.clears;
            on.1 += a.turns.saturating_sub(1);
            off.0 += b.clears;
            off.1 += b.turns.saturating_sub(1);
            heard += usize::from(a.turns >= 1);
        }
        eprintln!(
            "{set}: with the check {} pauses and {} noise turns, the caller heard {heard}/5; alone {} pauses and {} noise turns",
            on.0, on.1, off.0, off.1
        );
        totals.push((set, on, off, heard));
    }
    // The held-out set met these assertions on its first run, before any of it was looked at.
    for (set, on, off, heard) in totals {
        assert_eq!(on, (0, 0), "{set}: the noise paused the bot or took turns");
        assert_eq!(
            heard, 5,
            "{set}: the caller's request after the noise was not taken"
        );
        assert!(
            off.0 + off.1 > 0,
            "{set} does not fool the energy detector: it tests nothing"
        );
    }
}
