//! Browser calls over WebRTC, on loopback: a Rust WebRTC peer (`switchboard::testkit::rtc_client`)
//! plays the browser — it signals on `/webrtc/signal` exactly like the softphone page, streams a
//! caller fixture as its microphone (Opus, 20 ms, real time) — against the gateway's real
//! router, whisper and the bot's voice. The real-time tier of browser calls: one call that
//! proves ICE, DTLS and SRTP carry the call, and fifty calls that prove webrtc-rs frees every
//! peer connection. The call scenarios (barge-in, the bot's hang-up, transfer, mute, a vanished
//! tab, admission and draining) run on the virtual clock in `virtual_browser.rs`.

use crate::twilio::{Gateway, gateway, idle};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use switchboard::audio::decode::{ChannelPick, read_audio_at};
use switchboard::store::{Case, CaseStatus, LogQuery};
use switchboard::testkit::rtc_client::OfferClient;
use switchboard::webrtc::peer;
use tokio_tungstenite::tungstenite::Message;

/// The WebRTC tests count live peer connections and measure RSS: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The page's side of the signaling socket: every message received is kept.
struct Signal {
    ws: Ws,
    got: Vec<Value>,
}

impl Signal {
    async fn connect(url: &str) -> Signal {
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        Signal { ws, got: vec![] }
    }

    async fn send(&mut self, v: Value) {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .unwrap();
    }

    /// Reads until a message (new or already received) matches; panics after `max`.
    async fn wait(&mut self, what: &str, max: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_from(0, what, max, pred).await.1
    }

    /// Like `wait`, among the messages from the `from`th on; returns the match's index too.
    async fn wait_from(
        &mut self,
        from: usize,
        what: &str,
        max: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> (usize, Value) {
        if let Some(i) = (from..self.got.len()).find(|&i| pred(&self.got[i])) {
            return (i, self.got[i].clone());
        }
        let deadline = tokio::time::Instant::now() + max;
        loop {
            let m = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("no {what} within {max:?}; got {:?}", self.got));
            let Some(Ok(Message::Text(t))) = m else {
                match m {
                    Some(Ok(_)) => continue,
                    _ => panic!(
                        "signaling closed while waiting for {what}; got {:?}",
                        self.got
                    ),
                }
            };
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            self.got.push(v.clone());
            if pred(&v) {
                return (self.got.len() - 1, v);
            }
        }
    }

    fn of_type(&self, t: &str) -> Vec<&Value> {
        self.got.iter().filter(|v| v["type"] == t).collect()
    }
}

fn is(t: &'static str) -> impl Fn(&Value) -> bool {
    move |v| v["type"] == t
}

fn fixture16k(rel: &str) -> Vec<f32> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("audio-fixtures")
        .join(rel);
    read_audio_at(&p, ChannelPick::Mix, 16000).unwrap()
}

/// Places a call the way the page does; returns once media is connected and the mic is on.
async fn dial(url: &str) -> (Signal, OfferClient) {
    let mut sig = Signal::connect(url).await;
    let mut client = OfferClient::new(LOOPBACK).await.unwrap();
    let offer = client.offer(Duration::from_secs(3)).await.unwrap();
    sig.send(json!({"type": "call", "template": "hospitality", "sdp": offer}))
        .await;
    let answer = sig
        .wait("answer", Duration::from_secs(10), is("answer"))
        .await;
    assert!(
        answer["call_id"].as_str().is_some_and(|c| !c.is_empty()),
        "{answer}"
    );
    client
        .accept_answer(answer["sdp"].as_str().unwrap())
        .await
        .unwrap();
    client.wait_connected(Duration::from_secs(5)).await.unwrap();
    client.start_mic().unwrap();
    (sig, client)
}

/// Waits until the greeting has played: the bot spoke, then listens.
async fn greeting_played(sig: &mut Signal) {
    let (i, _) = sig
        .wait_from(0, "speaking", Duration::from_secs(10), |v| {
            v["type"] == "agent_state" && v["state"] == "speaking"
        })
        .await;
    sig.wait_from(i, "the greeting's end", Duration::from_secs(20), |v| {
        v["type"] == "agent_state" && v["state"] == "listening"
    })
    .await;
}

/// The case of the gateway's only call.
async fn the_case(gw: &Gateway) -> Case {
    let logs = gw.engine.logs(LogQuery::default()).await.unwrap();
    let conv = gw
        .engine
        .conversation(&logs.first().expect("the call was logged").session_id)
        .await
        .unwrap();
    gw.engine.case(&conv.case_id).await.unwrap().unwrap()
}

/// Waits (up to 5 s) until no peer connection or call task is alive: webrtc-rs frees a closed
/// connection asynchronously (its driver task ends on close).
async fn all_freed(when: &str) {
    let t0 = Instant::now();
    while peer::live_peer_connections() > 0 || peer::live_call_tasks() > 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "{when}: {} peer connections and {} call tasks still alive",
            peer::live_peer_connections(),
            peer::live_call_tasks()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_call_hears_the_greeting_and_an_answer_and_closes_a_webrtc_case() {
    let _serial = SERIAL.lock().await;
    let gw = gateway(|_| {}).await;
    let (mut sig, client) = dial(&gw.url("/webrtc/signal")).await;

    // The greeting plays: the bot speaks, then listens.
    greeting_played(&mut sig).await;
    let greeting_frames = client.audible_frames.load(Ordering::Relaxed);
    assert!(
        greeting_frames >= 50,
        "the greeting's audio (over 1 s) reached the caller: {greeting_frames} audible 20 ms frames"
    );
    let greeting = sig
        .wait("the greeting's caption", Duration::from_secs(1), |v| {
            v["type"] == "caption" && v["who"] == "bot"
        })
        .await;
    assert_eq!(greeting["turn"], 0, "{greeting}");

    // The caller asks; the gateway transcribes, answers, and says how long it took.
    let spoke = client.play(fixture16k("scenario1/01.wav")).await.unwrap();
    let said = sig
        .wait(
            "the caller's caption",
            spoke + Duration::from_secs(10),
            |v| v["type"] == "caption" && v["who"] == "caller",
        )
        .await;
    assert!(
        said["text"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("reservation"),
        "{said}"
    );
    let reply = sig
        .wait("the bot's answer", Duration::from_secs(10), |v| {
            v["type"] == "caption" && v["who"] == "bot" && v["turn"].as_u64() > Some(0)
        })
        .await;
    assert!(reply["text"].as_str().unwrap().len() > 10, "{reply}");
    let latency = sig
        .wait("latency", Duration::from_secs(10), is("latency"))
        .await;
    let ms = latency["ms"].as_u64().unwrap();
    println!(
        "webrtc: caller's last word → first bot audio packet {ms} ms (turn end → packet {} ms)",
        latency["turn_end_ms"]
    );
    // Consistent, not fast (speed is measured by `switchboard load`, not asserted here): the
    // caller's last word comes before the end-of-turn decision.
    assert!(
        latency["turn_end_ms"].as_u64().is_some_and(|t| t <= ms),
        "{latency}"
    );
    let before = client.audible_frames.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        client.audible_frames.load(Ordering::Relaxed) > before + 25,
        "the answer's audio reaches the caller"
    );

    // The caller hangs up: the gateway says the call ended and closes the case.
    sig.send(json!({"type": "hangup"})).await;
    let ended = sig.wait("ended", Duration::from_secs(5), is("ended")).await;
    assert_eq!(ended["reason"], "hangup", "{ended}");
    let recv = client.close().await.unwrap();
    assert_eq!(recv.decode_errors, 0);
    idle(&gw).await;
    assert!(sig.of_type("error").is_empty(), "{:?}", sig.got);

    let case = the_case(&gw).await;
    assert_eq!(case.channel, "webrtc");
    assert_eq!(case.status, CaseStatus::Closed);
    assert_eq!(case.resolution.as_deref(), Some("caller hung up"));
    let actions: Vec<&str> = case.audit.iter().map(|a| a.action.as_str()).collect();
    assert!(actions.contains(&"call_started"), "{actions:?}");
    assert!(actions.contains(&"call_ended"), "{actions:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_browser_calls_in_a_row_leave_nothing_behind() {
    let _serial = SERIAL.lock().await;
    let gw = gateway(|_| {}).await;
    let url = gw.url("/webrtc/signal");
    let mut rss = vec![];
    let started = Instant::now();
    for i in 1..=50 {
        let (mut sig, client) = dial(&url).await;
        // Hear some of the greeting, then hang up (the page's Hang up button).
        let t0 = Instant::now();
        while client.audible_frames.load(Ordering::Relaxed) < 10 {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "call {i}: no greeting"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sig.send(json!({"type": "hangup"})).await;
        sig.wait("ended", Duration::from_secs(5), is("ended")).await;
        client.close().await.unwrap();
        idle(&gw).await;
        all_freed(&format!("call {i}")).await;
        rss.push(rss_kib());
        if i == 1 || i % 10 == 0 {
            println!(
                "webrtc leak check: after call {i:2}: RSS {} KiB, live peer connections {}, call tasks {}",
                rss[i - 1],
                peer::live_peer_connections(),
                peer::live_call_tasks()
            );
        }
    }
    let (first, last) = (rss[0], rss[49]);
    println!(
        "webrtc leak check: 50 calls in {:.1} s; RSS after the first {first} KiB, after the last {last} KiB ({:+} KiB)",
        started.elapsed().as_secs_f64(),
        last as i64 - first as i64
    );
    assert!(
        last <= first + 8 * 1024,
        "RSS grew by {} KiB over 50 calls",
        last - first
    );
}
