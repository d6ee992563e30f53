//! A Twilio Media Streams call over a real WebSocket on loopback: a Twilio-protocol client
//! streams a caller fixture in real time and plays the bot's audio back at real-time rate,
//! echoing marks when they have played, as Twilio does.

use crate::common::{Setup, config, engine_with};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use switchboard::audio::decode::{ChannelPick, read_audio_at};
use switchboard::audio::g711::encode_ulaw_from;
use switchboard::http::{AppState, router};
use switchboard::runtime::live::LiveDeps;
use switchboard::runtime::speech::Speech;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

fn ulaw_fixture(rel: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("audio-fixtures")
        .join(rel);
    let pcm = read_audio_at(&p, ChannelPick::Mix, 8000).unwrap();
    let mut b = vec![0u8; pcm.len()];
    encode_ulaw_from(&pcm, &mut b);
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twilio_call_over_a_real_websocket_hears_the_greeting_and_an_answer() {
    let setup = Setup::default();
    let mut cfg = config(&setup);
    cfg.models_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models");
    let engine = Arc::new(engine_with(setup, &cfg));
    let live = Arc::new(LiveDeps {
        engine: engine.clone(),
        speech: Speech::load(&cfg).unwrap(),
        call: cfg.speech.call.clone(),
    });
    let state = AppState {
        engine: engine.clone(),
        http: reqwest::Client::new(),
        live: Some(live),
        public_url: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });

    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/twilio/media"))
        .await
        .unwrap();
    let (mut sink, mut stream) = ws.split();
    // One writer: caller audio and mark echoes share the socket.
    let (out_tx, mut out_rx) = mpsc::channel::<String>(256);
    let writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            if sink.send(Message::Text(m.into())).await.is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    // Reader: plays bot audio at real-time rate and echoes each mark once what preceded it has played.
    let echo = out_tx.clone();
    let reader = tokio::spawn(async move {
        let mut play_end = Instant::now();
        let mut media: Vec<(u64, usize)> = vec![]; // (ms since start, bytes)
        let mut marks = 0;
        while let Some(Ok(msg)) = stream.next().await {
            let Message::Text(t) = msg else { continue };
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            assert_eq!(v["streamSid"], "MZ00000000000000000000000000000001", "{v}");
            match v["event"].as_str().unwrap() {
                "media" => {
                    let b64 = v["media"]["payload"].as_str().unwrap();
                    let bytes =
                        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64)
                            .unwrap();
                    play_end = play_end.max(Instant::now())
                        + Duration::from_micros(bytes.len() as u64 * 125);
                    media.push(((Instant::now() - start).as_millis() as u64, bytes.len()));
                }
                "mark" => {
                    marks += 1;
                    let name = v["mark"]["name"].as_str().unwrap().to_string();
                    let due = play_end;
                    let echo = echo.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep_until(due).await;
                        let _ = echo
                            .send(json!({"event": "mark", "sequenceNumber": "9", "streamSid": "MZ00000000000000000000000000000001",
                                "mark": {"name": name}}).to_string())
                            .await;
                    });
                }
                "clear" => {}
                other => panic!("unexpected event {other}"),
            }
        }
        (media, marks)
    });
    let sid = "MZ00000000000000000000000000000001";
    out_tx
        .send(json!({"event": "connected", "protocol": "Call", "version": "1.0.0"}).to_string())
        .await
        .unwrap();
    out_tx
        .send(
            json!({"event": "start", "sequenceNumber": "1", "streamSid": sid, "start": {"streamSid": sid,
                "accountSid": "AC1", "callSid": "CA1", "tracks": ["inbound"], "customParameters": {"caller": "user_789"},
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}})
            .to_string(),
        )
        .await
        .unwrap();
    // The caller: 4 s of line silence while the greeting plays, the request, then 6 s of silence.
    let mut audio = vec![0xFFu8; 8000 * 4];
    audio.extend(ulaw_fixture("scenario1/01.wav"));
    audio.extend(vec![0xFFu8; 8000 * 6]);
    let caller_spoke_ms = 4000;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for (i, chunk) in audio.chunks(160).enumerate() {
        tick.tick().await;
        let payload = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, chunk);
        out_tx
            .send(json!({"event": "media", "sequenceNumber": (i + 2).to_string(), "streamSid": sid,
                "media": {"track": "inbound", "chunk": (i + 1).to_string(), "timestamp": (i * 20).to_string(), "payload": payload}})
                .to_string())
            .await
            .unwrap();
    }
    out_tx.send(json!({"event": "stop", "sequenceNumber": "999", "streamSid": sid, "stop": {"accountSid": "AC1", "callSid": "CA1"}}).to_string()).await.unwrap();
    let (media, marks) = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .unwrap()
        .unwrap();
    drop(out_tx);
    let _ = writer.await;
    let greeting_bytes: usize = media
        .iter()
        .filter(|(t, _)| *t < caller_spoke_ms)
        .map(|(_, b)| b)
        .sum();
    let reply_bytes: usize = media
        .iter()
        .filter(|(t, _)| *t > caller_spoke_ms + 1000)
        .map(|(_, b)| b)
        .sum();
    assert!(
        greeting_bytes >= 8000 * 2,
        "the greeting (about 3 s) was sent: {greeting_bytes} bytes"
    );
    assert!(
        reply_bytes >= 8000 * 2,
        "an answer was sent after the caller spoke: {reply_bytes} bytes"
    );
    assert!(
        marks >= 20,
        "a mark at least every 100 ms of audio: {marks}"
    );
    // Paced, not dumped: audio never runs far ahead of real time (the lead is 200 ms; the
    // rest of the bound is receive-time jitter). Dumping the 3 s greeting would break it.
    let first = media.first().unwrap().0;
    let mut sent_ms = 0u64;
    for (t, b) in &media {
        sent_ms += *b as u64 / 8;
        assert!(
            sent_ms <= (t - first) + 500,
            "audio sent far ahead of real time: {sent_ms} ms of audio {} ms after the first frame",
            t - first
        );
    }
    // The conversation saw the request and answered it.
    let logs = engine
        .logs(switchboard::store::LogQuery::default())
        .await
        .unwrap();
    let caller_lines: Vec<&str> = logs
        .iter()
        .filter(|l| l.log_type == switchboard::store::LogType::CallerToAgent)
        .map(|l| l.message.as_str())
        .collect();
    assert!(
        caller_lines
            .iter()
            .any(|l| l.to_lowercase().contains("reservation")),
        "{caller_lines:?}"
    );
    assert!(
        logs.iter()
            .any(|l| l.message.contains("I'll need a bit more information")),
        "the agent answered"
    );
}
