//! Operating a gateway: call recordings, the live-call feed behind the dashboard and an
//! operator's hang-up and transfer (on the virtual clock), and the dashboard itself in headless
//! Chromium over a real Twilio call (real time).

use crate::common::virtual_gateway;
use crate::twilio::ulaw_fixture;
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use switchboard::agent::engine::Engine;
use switchboard::audio::decode::{ChannelPick, read_audio_at};
use switchboard::config::Config;
use switchboard::runtime::live::LiveDeps;
use switchboard::runtime::replay::{CallerSource, replay};
use switchboard::store::{Case, CaseStatus};
use switchboard::testkit::simcall::{self, CallLog, Script, Step};
use switchboard::testkit::vnet;
use tower::ServiceExt;

struct Gw {
    app: axum::Router,
    engine: Arc<Engine>,
    live: Arc<LiveDeps>,
}

fn gateway(tweak: impl FnOnce(&mut Config)) -> Gw {
    let (app, engine, live) = virtual_gateway(None, tweak, |_| {});
    Gw { app, engine, live }
}

impl Gw {
    async fn call(&self, script: &Script) -> CallLog {
        let ws = vnet::websocket(self.app.clone(), "/twilio/media", &script.headers)
            .await
            .unwrap();
        let log = simcall::run_on(ws, script).await.unwrap();
        assert!(log.unexpected.is_empty(), "{:?}", log.unexpected);
        log
    }

    async fn case(&self, id: &str) -> Case {
        self.engine
            .case(id)
            .await
            .unwrap()
            .expect("the call's case")
    }

    /// A request to the gateway's router (development mode: no token needed).
    async fn request(&self, method: &str, path: &str) -> (u16, String) {
        let (status, body) = self.request_bytes(method, path).await;
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    async fn request_bytes(&self, method: &str, path: &str) -> (u16, Vec<u8>) {
        let resp = self
            .app
            .clone()
            .oneshot(
                axum::http::Request::builder()
                    .method(method)
                    .uri(path)
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 26)
            .await
            .unwrap();
        (status, body.to_vec())
    }
}

fn wait() -> Step {
    Step::WaitBotDone { max_ms: 20_000 }
}

/// Every message the feed has for now.
fn drain(rx: &mut tokio::sync::broadcast::Receiver<Arc<str>>) -> Vec<Value> {
    let mut out = vec![];
    while let Ok(m) = rx.try_recv() {
        out.push(serde_json::from_str(&m).unwrap());
    }
    out
}

/// Waits (wall time: the recording writer is a thread, not a task) until `path` contains `text`.
fn wait_file(path: &Path, text: &str) {
    for _ in 0..500 {
        if std::fs::read_to_string(path).is_ok_and(|s| s.contains(text)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{} never said {text:?}", path.display());
}

/// The caller's transcripts in a timeline, in order.
fn caller_said(timeline: &[Value]) -> Vec<String> {
    timeline
        .iter()
        .filter(|e| e["kind"] == "transcript")
        .map(|e| e["text"].as_str().unwrap().to_string())
        .collect()
}

/// A recorded call with a barge-in: the recording is a stereo WAV with the caller left and what
/// the caller heard right, on the call's timeline; its timeline and metadata are written; the
/// caller channel replays through `replay` to the same transcript. The live feed the dashboard
/// reads saw the call start, its lines, states and barge-in, and its end.
#[tokio::test(start_paused = true)]
async fn a_recorded_call_replays_to_the_same_transcript_and_the_live_feed_follows_it() {
    let dir = tempfile::tempdir().unwrap();
    let rec_dir = dir.path().to_path_buf();
    let gw = gateway(|c| {
        c.recording.enabled = true;
        c.recording.dir = rec_dir;
    });
    let (before, mut rx) = gw.live.monitor.subscribe();
    assert!(before.is_empty());
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
    assert_eq!(log.barge_ins.len(), 1);
    crate::common::calls_idle(&gw.live).await;

    // The feed: started, lines as they happened, states, the barge-in, the end.
    let feed = drain(&mut rx);
    assert_eq!(feed[0]["type"], "call_started", "{feed:?}");
    let id = feed[0]["call"]["id"].as_str().unwrap().to_string();
    assert_eq!(feed[0]["call"]["provider"], "twilio");
    assert_eq!(feed[0]["call"]["case_id"], id.as_str());
    assert!(
        feed.iter()
            .all(|m| m["type"] == "call_started" || m["id"] == id.as_str())
    );
    let kinds: Vec<&str> = feed.iter().map(|m| m["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "barge_in").count(),
        1,
        "{kinds:?}"
    );
    assert_eq!(*kinds.last().unwrap(), "call_ended", "{kinds:?}");
    assert_eq!(feed.last().unwrap()["outcome"], "caller hung up");
    let states: Vec<&str> = feed
        .iter()
        .filter(|m| m["type"] == "state")
        .map(|m| m["state"].as_str().unwrap())
        .collect();
    assert!(
        states.starts_with(&["speaking", "listening", "thinking", "speaking"]),
        "greeting, its end, the question, the answer: {states:?}"
    );
    let lines: Vec<(&str, &str)> = feed
        .iter()
        .filter(|m| m["type"] == "line")
        .map(|m| (m["who"].as_str().unwrap(), m["text"].as_str().unwrap()))
        .collect();
    assert_eq!(lines[0].0, "bot", "the greeting first: {lines:?}");
    assert!(
        lines.iter().filter(|l| l.0 == "caller").count() >= 2,
        "{lines:?}"
    );
    assert!(
        gw.live.monitor.calls().is_empty(),
        "the call left the live list"
    );

    // The recording (its writer is a thread of its own: the end reaches the disk just after).
    let rec = dir.path().join(&id);
    wait_file(&rec.join("meta.json"), "caller hung up");
    let meta: Value =
        serde_json::from_slice(&std::fs::read(rec.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["provider"], "twilio");
    assert_eq!(meta["case_id"], id.as_str());
    assert_eq!(meta["outcome"], "caller hung up");
    assert!(meta["ended_at_ms"].as_u64() >= meta["started_at_ms"].as_u64());
    let wav = rec.join("call.wav");
    let caller = read_audio_at(&wav, ChannelPick::Left, 16_000).unwrap();
    let bot = read_audio_at(&wav, ChannelPick::Right, 16_000).unwrap();
    let secs = caller.len() as f64 / 16_000.0;
    assert!(
        (secs - log.duration_ms as f64 / 1000.0).abs() < 1.0,
        "{secs} s recorded of a {} ms call",
        log.duration_ms
    );
    let energy = |x: &[f32], from_ms: u64, to_ms: u64| {
        let (a, b) = (from_ms as usize * 16, (to_ms as usize * 16).min(x.len()));
        x[a..b].iter().map(|s| s * s).sum::<f32>() / (b - a).max(1) as f32
    };
    // The greeting is on the bot's side from the first second, not the caller's; the caller's
    // question is on theirs.
    assert!(energy(&bot, 0, 1000) > 1e-4, "the greeting");
    assert!(
        energy(&caller, 0, 1000) < 1e-6,
        "the caller is silent at first"
    );
    let (ask_start, ask_end) = log.speech[0];
    assert!(energy(&caller, ask_start, ask_end) > 1e-4, "the question");
    // After the clear, the bot's side is silent until the caller finishes.
    let clear = log.clears[0];
    let (_, answer_end) = log.speech[1];
    assert!(
        energy(&bot, clear + 60, answer_end) < 1e-6,
        "nothing the caller did not hear is in the recording"
    );
    let timeline: Vec<Value> = std::fs::read_to_string(rec.join("timeline.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(timeline.iter().any(|e| e["kind"] == "barge_in"));
    assert!(timeline.iter().any(|e| e["kind"] == "intent"));
    let recorded = caller_said(&timeline);
    assert!(recorded.len() >= 2, "{recorded:?}");

    // Listed and served for the dashboard.
    let (st, body) = gw.request("GET", "/v1/recordings").await;
    assert_eq!(st, 200, "{body}");
    let list: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list["recordings"][0]["id"], id.as_str());
    let (st, body) = gw
        .request_bytes("GET", &format!("/v1/recordings/{id}/call.wav"))
        .await;
    assert_eq!(st, 200);
    assert_eq!(body, std::fs::read(&wav).unwrap());
    let (st, _) = gw.request("GET", "/v1/recordings/..%2Fetc/call.wav").await;
    assert_eq!(st, 404);

    // The caller channel, replayed through the same pipeline, says the same.
    let replayed = replay(
        gw.engine.clone(),
        gw.live.speech.clone(),
        gw.live.call.clone(),
        CallerSource::Track(caller),
        "user_789",
        false,
    )
    .await
    .unwrap();
    assert_eq!(caller_said(&replayed.timeline), recorded);
}

/// An operator ends one live call and hands another to the human line over the admin API: the
/// call ends at once (the stream is closed: no provider credentials here), and the case records
/// who ended it and how.
#[tokio::test(start_paused = true)]
async fn an_operator_hangs_up_one_live_call_and_transfers_another() {
    let gw = Arc::new(gateway(|_| {}));
    for (action, outcome, status) in [
        ("hangup", "hung up by an operator", CaseStatus::Closed),
        (
            "transfer",
            "transferred by an operator to +15005550006",
            CaseStatus::Escalated,
        ),
    ] {
        let script = Script::new(
            "user_789",
            vec![
                wait(),
                Step::Say(ulaw_fixture("scenario1/01.wav")),
                wait(),
                Step::Silence(60_000),
            ],
        );
        let g = gw.clone();
        let call = tokio::spawn(async move { g.call(&script).await });
        // Once the caller has been answered, the operator steps in.
        let id = loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let calls = gw.live.monitor.calls();
            if let Some(c) = calls.first()
                && c.lines.len() >= 3
            {
                break c.id.clone();
            }
        };
        let (st, body) = gw.request("GET", "/v1/calls").await;
        assert_eq!(st, 200);
        assert!(body.contains(&id), "{body}");
        let (st, body) = gw
            .request("POST", &format!("/v1/calls/{id}/{action}"))
            .await;
        assert_eq!((st, body.as_str()), (202, r#"{"ok":true}"#));
        let asked = tokio::time::Instant::now();
        let log = call.await.unwrap();
        assert!(log.closed_by_server.is_some(), "the gateway ended the call");
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "ended {} ms after the request",
            asked.elapsed().as_millis()
        );
        crate::common::calls_idle(&gw.live).await;
        let case = gw.case(&id).await;
        assert_eq!(case.resolution.as_deref(), Some(outcome));
        assert_eq!(case.status, status);
        assert!(
            case.audit.iter().any(|a| a.action
                == format!(
                    "operator_{}",
                    if action == "hangup" {
                        "hang_up"
                    } else {
                        "transfer"
                    }
                )),
            "{:?}",
            case.audit
        );
        // No longer live.
        let (st, _) = gw.request("POST", &format!("/v1/calls/{id}/hangup")).await;
        assert_eq!(st, 404);
    }
    let m = crate::common::metrics(&gw.app).await;
    assert!(
        m.get("switchboard_calls_ended_total{provider=\"twilio\",outcome=\"operator_ended\"}")
            .is_some_and(|n| *n >= 1.0),
        "{m:?}"
    );
}

/// The dashboard in a real headless Chromium, over a real Twilio call on loopback: the page asks
/// for the admin token (here in its address), shows the live call with the caller's words and
/// the bot's as they happen, and its Hang up button ends the call; the case and the recording
/// then appear. A screenshot is saved in target/test-artifacts/dashboard.png.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_live_call_and_hangs_it_up_in_chromium() {
    use crate::cdp::{Browser, LaunchOptions};
    const ADMIN: &str = "dashboard-admin-token-0123456789";
    let dir = tempfile::tempdir().unwrap();
    let rec_dir = dir.path().to_path_buf();
    let gw = crate::twilio::gateway(|c| {
        c.api.admin_tokens = vec![ADMIN.into()];
        c.recording.enabled = true;
        c.recording.dir = rec_dir;
    })
    .await;
    let browser = Browser::launch(LaunchOptions {
        echo_stderr: std::env::var_os("CDP_ECHO").is_some(),
        ..LaunchOptions::default()
    })
    .await
    .expect("starting chromium (the `chromium` package; .ci/setup installs it)");
    let base = format!("http://{}", gw.addr);
    let page = browser
        .new_page(&format!("{base}/admin#token={ADMIN}"))
        .await
        .unwrap();
    page.set_viewport(1280, 900, 1.0, false).await.unwrap();
    page.wait_for(
        "document.querySelector('#status')?.textContent === 'live'",
        Duration::from_secs(20),
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "the live feed did not connect: {e}; console {:?}",
            page.console()
        )
    });

    let script = crate::twilio::signed(
        &gw,
        Script::new(
            "+15551230100",
            vec![
                wait(),
                Step::Say(ulaw_fixture("scenario1/01.wav")),
                wait(),
                Step::Silence(60_000),
            ],
        ),
    )
    .await;
    let url = gw.url("/twilio/media");
    let call = tokio::spawn(async move { simcall::run(&url, &script).await.unwrap() });
    // The caller's request and the bot's answer appear on the call's card.
    let card = "document.querySelector('#calls .call')";
    page.wait_for(
        &format!(
            "{card} && {card}.querySelectorAll('.line.caller').length >= 1 \
             && {card}.querySelectorAll('.line.bot').length >= 2"
        ),
        Duration::from_secs(60),
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "the call's lines did not appear: {e}; console {:?}",
            page.console()
        )
    });
    let shown = page
        .eval(&format!(
            "({{id: {card}.dataset.id, caller: [...{card}.querySelectorAll('.line.caller')].map(l => l.textContent), \
               bot: [...{card}.querySelectorAll('.line.bot')].map(l => l.textContent), \
               state: {card}.querySelector('.state').textContent, text: {card}.textContent}})"
        ))
        .await
        .unwrap();
    let id = shown["id"].as_str().unwrap().to_string();
    let case = gw
        .engine
        .case(&id)
        .await
        .unwrap()
        .expect("the card is the call's case");
    assert_eq!(case.channel, "twilio");
    let caller_words = shown["caller"][0].as_str().unwrap().to_lowercase();
    assert!(caller_words.contains("reservation"), "{shown}");
    assert!(
        shown["bot"][0]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("welcome"),
        "the greeting: {shown}"
    );
    assert!(
        ["listening", "thinking", "speaking"].contains(&shown["state"].as_str().unwrap()),
        "{shown}"
    );
    assert!(
        !shown["text"].as_str().unwrap().contains("5551230100"),
        "the caller's number is masked: {shown}"
    );
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    page.screenshot(artifacts.join("dashboard.png"))
        .await
        .unwrap();

    // Hang up from the page: the call ends, the case says so, the recording is listed.
    page.click("#calls .call button.hangup").await.unwrap();
    let log = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("the call ended after the click")
        .unwrap();
    assert!(log.closed_by_server.is_some());
    crate::twilio::idle(&gw).await;
    let case = gw.engine.case(&id).await.unwrap().unwrap();
    assert_eq!(case.resolution.as_deref(), Some("hung up by an operator"));
    let hangups: Vec<_> = gw
        .rest
        .lock()
        .unwrap()
        .iter()
        .filter(|r| {
            r.form
                .iter()
                .any(|(k, v)| k == "Status" && v == "completed")
        })
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(hangups.len(), 1, "Twilio was asked to hang up: {hangups:?}");
    page.wait_for(
        &format!(
            "!document.querySelector('#calls .call[data-id=\"{id}\"]') \
             && !!document.querySelector('#cases tr[data-case=\"{id}\"]') \
             && !!document.querySelector('#recordings tr[data-recording=\"{id}\"]')"
        ),
        Duration::from_secs(30),
    )
    .await
    .unwrap_or_else(|e| panic!("the ended call did not reach cases and recordings: {e}"));
    browser.close().await.unwrap();
}
