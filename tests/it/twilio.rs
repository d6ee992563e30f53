//! The real-time tier of phone calls: real WebSockets on loopback, real time.
//! `switchboard::testkit::simcall` plays Twilio (it streams caller fixtures in real time, plays
//! the bot's audio back at real-time rate and echoes marks once they have played), against the
//! gateway's real router, whisper and espeak-ng; hang-up REST requests go to a local recording
//! server. The call scenarios themselves (barge-in, keys and transfer, strangers, the cap,
//! draining) run on the virtual clock in `virtual_calls.rs`.

use crate::common::{Setup, config, engine_with, live_state};
use axum::extract::State;
use axum::routing::any;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard::agent::engine::Engine;
use switchboard::audio::decode::{ChannelPick, read_audio_at};
use switchboard::audio::g711::{decode_ulaw_into, encode_ulaw_from};
use switchboard::config::Config;
use switchboard::http::router;
use switchboard::runtime::live::LiveDeps;
use switchboard::runtime::speech::Speech;
use switchboard::store::{CaseStatus, LogQuery, LogType};
use switchboard::testkit::simcall::{self, CallLog, Script, Step};

pub fn ulaw_fixture(rel: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("audio-fixtures")
        .join(rel);
    let pcm = read_audio_at(&p, ChannelPick::Mix, 8000).unwrap();
    let mut b = vec![0u8; pcm.len()];
    encode_ulaw_from(&pcm, &mut b);
    b
}

/// A REST request the gateway made to the (local) provider API.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub auth: String,
    pub form: Vec<(String, String)>,
    pub body: String,
}

pub struct Gateway {
    pub addr: std::net::SocketAddr,
    pub engine: Arc<Engine>,
    pub live: Arc<LiveDeps>,
    pub rest: Arc<Mutex<Vec<Recorded>>>,
}

impl Gateway {
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }
}

/// A gateway on loopback with a recording "Twilio REST API" beside it.
/// The token the other providers' media URLs carry in these tests.
pub const MEDIA_TOKEN: &str = "media-token-for-tests";

pub async fn gateway(tweak: impl FnOnce(&mut Config)) -> Gateway {
    let rest = Arc::new(Mutex::new(Vec::<Recorded>::new()));
    let rec = rest.clone();
    let api = axum::Router::new()
        .route(
            "/{*path}",
            any(
                |State(rec): State<Arc<Mutex<Vec<Recorded>>>>,
                 method: axum::http::Method,
                 uri: axum::http::Uri,
                 headers: axum::http::HeaderMap,
                 body: axum::body::Bytes| async move {
                    let form: Vec<(String, String)> =
                        serde_urlencoded::from_bytes(&body).unwrap_or_default();
                    let auth = headers
                        .get("authorization")
                        .and_then(|h| h.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    rec.lock().unwrap().push(Recorded {
                        method: method.to_string(),
                        path: uri.path().to_string(),
                        auth,
                        form,
                        body: String::from_utf8_lossy(&body).into_owned(),
                    });
                    axum::Json(serde_json::json!({"status": "completed"}))
                },
            ),
        )
        .with_state(rec);
    let api_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_addr = api_listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(api_listener, api).await.unwrap() });

    let setup = Setup::default();
    let mut cfg = config(&setup);
    cfg.models_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models");
    cfg.twilio.account_sid = "ACtest".into();
    cfg.twilio.auth_token = "secret-token".into();
    cfg.twilio.api_base = format!("http://{api_addr}");
    cfg.telnyx.api_key = "tx-key".into();
    cfg.telnyx.api_base = format!("http://{api_addr}");
    cfg.plivo.auth_id = "MAtest".into();
    cfg.plivo.auth_token = "pl-token".into();
    cfg.plivo.api_base = format!("http://{api_addr}");
    cfg.calls.media_token = MEDIA_TOKEN.into();
    tweak(&mut cfg);
    let engine = Arc::new(engine_with(setup, &cfg));
    let (live, state) = live_state(engine.clone(), Speech::load(&cfg).unwrap(), &cfg);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(switchboard::http::server::serve(
        listener,
        router(state),
        switchboard::http::server::Limits::default(),
        std::future::pending(),
    ));
    Gateway {
        addr,
        engine,
        live,
        rest,
    }
}

/// The call as Twilio places it with the test gateway's auth token: the voice webhook (`From` =
/// the script's caller), signed, is answered with TwiML whose `token` parameter the stream's start
/// then carries (the gateway believes no other caller parameter); the media upgrade is signed.
pub async fn signed(gw: &Gateway, mut script: Script) -> Script {
    use switchboard::transport::twilio::signature;
    let fields = vec![
        (
            "CallSid".to_string(),
            format!("CA{}", uuid::Uuid::new_v4().simple()),
        ),
        ("From".to_string(), script.caller.clone()),
        ("To".to_string(), "+15557650000".to_string()),
    ];
    let sig = signature(
        "secret-token",
        &format!("https://{}/twilio/voice", gw.addr),
        &fields,
    );
    let twiml = switchboard::net::client()
        .post(format!("http://{}/twilio/voice", gw.addr))
        .header("x-twilio-signature", sig)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(&fields).unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let marker = r#"<Parameter name="token" value=""#;
    let at = twiml
        .find(marker)
        .unwrap_or_else(|| panic!("no token in the TwiML: {twiml}"))
        + marker.len();
    let token = &twiml[at..at + twiml[at..].find('"').unwrap()];
    script.params.push(("token".into(), token.into()));
    let url = format!("wss://{}/twilio/media", gw.addr);
    script.headers.push((
        "x-twilio-signature".into(),
        signature("secret-token", &url, &[]),
    ));
    script
}

/// Transcribes what the caller heard of each bot reply, with the project's whisper.
pub async fn heard_text(speech: &Speech, log: &CallLog) -> Vec<String> {
    let mut out = vec![];
    for (_, ulaw) in &log.heard {
        let mut pcm = vec![0f32; ulaw.len()];
        decode_ulaw_into(ulaw, &mut pcm);
        let pcm16 = switchboard::audio::resample::resample_whole(&pcm, 8000, 16000).unwrap();
        out.push(speech.transcribe(pcm16, None, false).await.unwrap().text);
    }
    out
}

/// Waits until the gateway has closed every call (cases are closed before slots are freed).
pub async fn idle(gw: &Gateway) {
    for _ in 0..200 {
        if gw.live.registry.active() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("calls still active: {}", gw.live.registry.active());
}

/// The single case the gateway opened for a call.
async fn only_case(gw: &Gateway) -> switchboard::store::Case {
    let logs = gw.engine.logs(LogQuery::default()).await.unwrap();
    let session = logs
        .first()
        .expect("the call was logged")
        .session_id
        .clone();
    let conv = gw.engine.conversation(&session).await.unwrap();
    gw.engine.case(&conv.case_id).await.unwrap().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_greeting_is_paced_marked_and_an_answer_follows_the_request() {
    let gw = gateway(|_| {}).await;
    let script = signed(
        &gw,
        Script::new(
            "user_789",
            vec![
                Step::WaitBotDone { max_ms: 15_000 },
                Step::Say(ulaw_fixture("scenario1/01.wav")),
                Step::WaitBotDone { max_ms: 15_000 },
                Step::HangUp,
            ],
        ),
    )
    .await;
    let log = simcall::run(&gw.url("/twilio/media"), &script)
        .await
        .unwrap();
    assert!(log.unexpected.is_empty(), "{:?}", log.unexpected);
    let (spoke, _) = log.speech[0];
    let (greeting, answer) = log.audio_bytes_around(spoke);
    assert!(
        greeting >= 8000 * 2,
        "the greeting (about 3 s) was sent: {greeting} bytes"
    );
    assert!(
        answer >= 8000 * 2,
        "an answer followed the request: {answer} bytes"
    );
    // A mark at least every 100 ms of audio.
    let audio_ms = (greeting + answer) as u64 / 8;
    assert!(
        log.marks.len() as u64 >= audio_ms / 100,
        "{} marks for {audio_ms} ms of audio",
        log.marks.len()
    );
    // Paced, not dumped: audio never runs far ahead of real time (the lead is 200 ms; the rest of
    // the bound is receive-time jitter). Dumping the 3 s greeting would break it.
    let lead = log.max_lead_ms();
    assert!(lead <= 500, "audio {lead} ms ahead of real time");
    assert!(log.gaps.is_empty(), "bot audio ran dry: {:?}", log.gaps);
    let logs = gw.engine.logs(LogQuery::default()).await.unwrap();
    assert!(
        logs.iter().any(|l| l.log_type == LogType::CallerToAgent
            && l.message.to_lowercase().contains("reservation")),
        "the request was transcribed"
    );
    idle(&gw).await;
    let case = only_case(&gw).await;
    assert_eq!(case.channel, "twilio");
    assert_eq!(case.status, CaseStatus::Closed);
    assert_eq!(case.resolution.as_deref(), Some("caller hung up"));
    let actions: Vec<&str> = case.audit.iter().map(|a| a.action.as_str()).collect();
    assert!(actions.contains(&"call_started"), "{actions:?}");
    assert!(actions.contains(&"call_ended"), "{actions:?}");
}

fn rest_calls(gw: &Gateway) -> Vec<Recorded> {
    gw.rest.lock().unwrap().clone()
}

fn basic_auth() -> String {
    format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            "ACtest:secret-token"
        )
    )
}

/// The bot ends a phone call through Twilio's REST API. "No, that's all. Thanks." as the first
/// words of a call is only asked about; after the caller's yes the farewell plays, then the
/// gateway asks Twilio to complete the call, with the account's credentials. (The whole seed
/// scenario by phone runs on the virtual clock: `virtual_calls.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_hangs_up_a_phone_call_through_the_rest_api() {
    let gw = gateway(|_| {}).await;
    // Long enough for a busy machine: the test is about what happens, not how fast.
    let wait = || Step::WaitBotDone { max_ms: 60_000 };
    let script = signed(
        &gw,
        Script::new(
            "user_789",
            vec![
                wait(),
                Step::Say(ulaw_fixture("scenario1/03.wav")),
                wait(),
                Step::Say(ulaw_fixture("stranger/03.wav")),
                wait(),
                Step::Silence(3000),
            ],
        ),
    )
    .await;
    let log = simcall::run(&gw.url("/twilio/media"), &script)
        .await
        .unwrap();
    assert!(log.unexpected.is_empty(), "{:?}", log.unexpected);
    assert!(log.closed_by_server.is_some(), "the gateway ended the call");
    idle(&gw).await;
    let replies: Vec<String> = gw
        .engine
        .logs(LogQuery::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|l| l.log_type == LogType::AgentToCaller)
        .map(|l| l.message)
        .collect();
    assert!(
        replies.iter().any(|r| r.contains("was that goodbye")),
        "{replies:?}"
    );
    assert!(
        replies.last().is_some_and(|r| r.contains("Goodbye")),
        "{replies:?}"
    );
    let rest = rest_calls(&gw);
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert!(
        rest[0]
            .path
            .starts_with("/2010-04-01/Accounts/ACtest/Calls/CA")
            && rest[0].path.ends_with(".json"),
        "{:?}",
        rest[0].path
    );
    assert_eq!(
        rest[0].form,
        [("Status".to_string(), "completed".to_string())]
    );
    assert_eq!(rest[0].auth, basic_auth());
    let case = only_case(&gw).await;
    assert_eq!(case.resolution.as_deref(), Some("bot hung up"));
    assert_eq!(case.status, CaseStatus::Closed);
}
