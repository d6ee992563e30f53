//! Telnyx, Plivo, Exotel and Vonage on the same core: for each, a client speaking that provider's
//! protocol over a real WebSocket connects, streams a caller's request in real time in the
//! provider's audio format, echoes marks/checkpoints as played, and gets the answer in the
//! provider's own message format.

use crate::twilio::{Gateway, gateway, idle};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use switchboard::audio::decode::{ChannelPick, read_audio_at};
use switchboard::audio::g711::{encode_alaw_from, encode_l16le_from};
use switchboard::store::{LogQuery, LogType};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

#[derive(Clone, Copy, PartialEq, Debug)]
enum P {
    Telnyx,
    Plivo,
    Exotel,
    Vonage,
}

/// Caller audio (silence, the request, silence) in the provider's inbound format.
fn caller_audio(p: P, fixture: &str) -> (Vec<u8>, usize) {
    let rate = if matches!(p, P::Plivo | P::Vonage) {
        16000
    } else {
        8000
    };
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("audio-fixtures")
        .join(fixture);
    let speech = read_audio_at(&fixture, ChannelPick::Mix, rate).unwrap();
    let mut pcm = vec![0f32; rate as usize * 4];
    pcm.extend(&speech);
    pcm.extend(vec![0f32; rate as usize * 7]);
    let frame = rate as usize / 50;
    match p {
        P::Telnyx => {
            let mut b = vec![0u8; pcm.len()];
            encode_alaw_from(&pcm, &mut b);
            (b, frame)
        }
        P::Plivo | P::Exotel | P::Vonage => {
            let mut b = vec![0u8; pcm.len() * 2];
            encode_l16le_from(&pcm, &mut b);
            (b, frame * 2)
        }
    }
}

fn b64(b: &[u8]) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b)
}

fn unb64(s: &str) -> Vec<u8> {
    base64::Engine::decode(&base64::engine::general_purpose::STANDARD, s).unwrap()
}

fn start_messages(p: P) -> Vec<Message> {
    let t = |v: Value| Message::Text(v.to_string().into());
    match p {
        P::Telnyx => vec![
            t(json!({"event": "connected", "version": "1.0.0"})),
            t(
                json!({"event": "start", "sequence_number": "1", "stream_id": "st-1",
                "start": {"user_id": "u1", "call_control_id": "v3:call-1",
                          "custom_parameters": {"caller": "user_789"},
                          "media_format": {"encoding": "PCMA", "sample_rate": 8000, "channels": 1}}}),
            ),
        ],
        P::Plivo => vec![t(json!({"event": "start", "sequenceNumber": 1,
            "start": {"callId": "call-1", "streamId": "st-1", "accountId": "MA1", "tracks": ["inbound"],
                      "mediaFormat": {"encoding": "audio/x-l16", "sampleRate": 16000}},
            "extra_headers": "{\"caller\":\"user_789\"}"}))],
        P::Exotel => vec![
            t(json!({"event": "connected"})),
            t(
                json!({"event": "start", "sequence_number": 1, "stream_sid": "st-1",
                "start": {"stream_sid": "st-1", "call_sid": "call-1", "account_sid": "acc",
                          "custom_parameters": {"caller": "user_789"},
                          "media_format": {"encoding": "base64", "sample_rate": "8000"}}}),
            ),
        ],
        P::Vonage => vec![t(json!({"event": "websocket:connected",
            "content-type": "audio/l16;rate=16000", "caller": "user_789"}))],
    }
}

fn media_message(p: P, n: u64, chunk: &[u8]) -> Message {
    let t = |v: Value| Message::Text(v.to_string().into());
    match p {
        P::Telnyx => t(
            json!({"event": "media", "sequence_number": (n + 2).to_string(), "stream_id": "st-1",
            "media": {"track": "inbound", "chunk": n.to_string(), "timestamp": (n * 20).to_string(), "payload": b64(chunk)}}),
        ),
        P::Plivo => t(
            json!({"event": "media", "sequenceNumber": n + 1, "streamId": "st-1",
            "media": {"track": "inbound", "timestamp": (n * 20).to_string(), "chunk": n, "payload": b64(chunk)}}),
        ),
        P::Exotel => t(
            json!({"event": "media", "sequence_number": n + 1, "stream_sid": "st-1",
            "media": {"chunk": n, "timestamp": (n * 20).to_string(), "payload": b64(chunk)}}),
        ),
        P::Vonage => Message::Binary(chunk.to_vec().into()),
    }
}

fn dtmf_message(p: P, digit: char) -> Message {
    let d = digit.to_string();
    let v = match p {
        P::Telnyx => json!({"event": "dtmf", "stream_id": "st-1", "dtmf": {"digit": d}}),
        P::Plivo => json!({"event": "dtmf", "streamId": "st-1", "dtmf": {"digit": d}}),
        P::Exotel => json!({"event": "dtmf", "stream_sid": "st-1", "dtmf": {"digit": d}}),
        P::Vonage => json!({"event": "websocket:dtmf", "digit": d}),
    };
    Message::Text(v.to_string().into())
}

/// What the client saw of the bot.
#[derive(Default, Debug)]
struct Seen {
    /// (arrival ms, bytes of audio)
    audio: Vec<(u64, usize)>,
    marks: usize,
    bad_sizes: Vec<usize>,
    other: Vec<String>,
}

async fn call(p: P) -> (Seen, u64) {
    let (seen, end, gw) = call_saying(p, "scenario1/01.wav", false).await;
    // The request was decoded from the provider's format and understood.
    let logs = gw.engine.logs(LogQuery::default()).await.unwrap();
    assert!(
        logs.iter().any(|l| l.log_type == LogType::CallerToAgent
            && l.message.to_lowercase().contains("reservation")),
        "{p:?}: the request was transcribed: {:?}",
        logs.iter().map(|l| &l.message).collect::<Vec<_>>()
    );
    (seen, end)
}

/// A call in which the caller says `fixture` once, 4 s in; returns what the client saw.
/// The caller stays silent for 7 s after it, then hangs up; with `until_bot_hangs_up` it
/// stays on the line (silent) until the gateway closes the stream, for at most 40 s.
async fn call_saying(p: P, fixture: &str, until_bot_hangs_up: bool) -> (Seen, u64, Gateway) {
    call_with(p, fixture, None, until_bot_hangs_up).await
}

/// [`call_saying`] (`fixture` may be "a.wav+b.wav": each next one is said once the bot has been
/// quiet for 1.5 s), and then, once the bot has been quiet for 1.5 s, the caller presses `digit`.
async fn call_with(
    p: P,
    fixture: &str,
    digit: Option<char>,
    until_bot_hangs_up: bool,
) -> (Seen, u64, Gateway) {
    let gw = gateway(|_| {}).await;
    let path = match p {
        P::Telnyx => "/telnyx/media",
        P::Plivo => "/plivo/media",
        P::Exotel => "/exotel/media",
        P::Vonage => "/vonage/media",
    };
    let path = format!("{path}?token={}", crate::twilio::MEDIA_TOKEN);
    let (ws, _) = tokio_tungstenite::connect_async(gw.url(&path))
        .await
        .unwrap();
    let (mut sink, mut stream) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(512);
    let writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            if sink.send(m).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let t0 = Instant::now();
    let echo = out_tx.clone();
    // When the last bot audio arrived (ms since t0).
    let last_audio = Arc::new(AtomicU64::new(0));
    let last_audio_w = last_audio.clone();
    let reader = tokio::spawn(async move {
        let mut seen = Seen::default();
        // Playout clock: audio plays in real time; a mark echoes once what preceded it has played.
        let mut play_end = Instant::now();
        let out_rate_bytes_per_ms = match p {
            P::Vonage => 32.0,
            P::Exotel => 16.0,
            _ => 8.0,
        };
        while let Some(Ok(msg)) = stream.next().await {
            let now = Instant::now();
            let at = (now - t0).as_millis() as u64;
            let mut audio = |n: usize, seen: &mut Seen| {
                seen.audio.push((at, n));
                last_audio_w.store(at, Ordering::Relaxed);
                play_end = play_end.max(now)
                    + Duration::from_micros((n as f64 / out_rate_bytes_per_ms * 1000.0) as u64);
            };
            match msg {
                Message::Binary(b) if p == P::Vonage => {
                    if b.len() != 640 {
                        seen.bad_sizes.push(b.len());
                    }
                    audio(b.len(), &mut seen);
                }
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap();
                    let event = v["event"].as_str().or(v["action"].as_str()).unwrap_or("");
                    let mark = |name: &str| -> Option<Value> {
                        match p {
                            P::Telnyx => Some(
                                json!({"event": "mark", "stream_id": "st-1", "mark": {"name": name}}),
                            ),
                            P::Exotel => Some(
                                json!({"event": "mark", "stream_sid": "st-1", "mark": {"name": name}}),
                            ),
                            P::Plivo => Some(
                                json!({"event": "playedStream", "streamId": "st-1", "name": name}),
                            ),
                            P::Vonage => None,
                        }
                    };
                    let reply = match (p, event) {
                        (P::Telnyx | P::Exotel, "media") => {
                            let n = unb64(v["media"]["payload"].as_str().unwrap()).len();
                            if p == P::Exotel && (!n.is_multiple_of(320) || n < 3200) {
                                seen.bad_sizes.push(n);
                            }
                            audio(n, &mut seen);
                            None
                        }
                        (P::Plivo, "playAudio") => {
                            assert_eq!(v["media"]["contentType"], "audio/x-mulaw");
                            assert_eq!(v["media"]["sampleRate"], 8000);
                            audio(
                                unb64(v["media"]["payload"].as_str().unwrap()).len(),
                                &mut seen,
                            );
                            None
                        }
                        (P::Telnyx | P::Exotel, "mark") => {
                            mark(v["mark"]["name"].as_str().unwrap())
                        }
                        (P::Plivo, "checkpoint") => mark(v["name"].as_str().unwrap()),
                        (_, "clear" | "clearAudio") => None,
                        _ => {
                            seen.other.push(t.to_string());
                            None
                        }
                    };
                    if let Some(r) = reply {
                        seen.marks += 1;
                        let due = play_end;
                        let echo = echo.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep_until(due).await;
                            let _ = echo.send(Message::Text(r.to_string().into())).await;
                        });
                    }
                }
                Message::Close(_) => break,
                other => seen.other.push(format!("{other:?}")),
            }
        }
        seen
    });
    for m in start_messages(p) {
        out_tx.send(m).await.unwrap();
    }
    let mut fixtures = fixture.split('+');
    let (audio, frame) = caller_audio(p, fixtures.next().unwrap_or(fixture));
    let chunks: Vec<&[u8]> = audio.chunks(frame).collect();
    let speech_end_ms = 4000 + 2600; // the request is about 1.5 s; its end is before this
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut i = 0;
    while i < chunks.len() {
        tick.tick().await;
        // Telnyx frames may arrive out of order: send them in swapped pairs.
        // (A send fails once the gateway has hung up: the caller stops talking then.)
        if p == P::Telnyx && i + 1 < chunks.len() {
            let a = out_tx
                .send(media_message(p, i as u64 + 2, chunks[i + 1]))
                .await;
            let b = out_tx.send(media_message(p, i as u64 + 1, chunks[i])).await;
            if a.is_err() || b.is_err() {
                break;
            }
            tick.tick().await;
            i += 2;
            continue;
        }
        if out_tx
            .send(media_message(p, i as u64 + 1, chunks[i]))
            .await
            .is_err()
        {
            break;
        }
        i += 1;
    }
    let silence = *chunks.last().unwrap();
    let mut n = chunks.len() as u64;
    // Further utterances ("a+b"), then the key, each once the bot has finished answering (1.5 s
    // without audio).
    let nexts: Vec<Result<&str, char>> = fixtures.map(Ok).chain(digit.map(Err)).collect();
    for next in nexts {
        while t0.elapsed() < Duration::from_secs(40)
            && (t0.elapsed().as_millis() as u64) < last_audio.load(Ordering::Relaxed) + 1500
        {
            tick.tick().await;
            n += 1;
            if out_tx.send(media_message(p, n, silence)).await.is_err() {
                break;
            }
        }
        match next {
            Ok(fixture) => {
                let (more, _) = caller_audio(p, fixture);
                for c in more.chunks(frame) {
                    tick.tick().await;
                    n += 1;
                    if out_tx.send(media_message(p, n, c)).await.is_err() {
                        break;
                    }
                }
            }
            Err(d) => {
                let _ = out_tx.send(dtmf_message(p, d)).await;
            }
        }
    }
    if until_bot_hangs_up {
        // Silence until the gateway hangs up, however slow a shared machine makes the bot.
        while !reader.is_finished() && t0.elapsed() < Duration::from_secs(40) {
            tick.tick().await;
            n += 1;
            if out_tx.send(media_message(p, n, silence)).await.is_err() {
                break;
            }
        }
    }
    let stop = match p {
        P::Telnyx => Some(json!({"event": "stop", "stream_id": "st-1"})),
        P::Plivo => Some(json!({"event": "stop", "streamId": "st-1"})),
        P::Exotel => Some(json!({"event": "stop", "stream_sid": "st-1"})),
        P::Vonage => None, // Vonage just closes the socket
    };
    let _ = match stop {
        Some(s) => out_tx.send(Message::Text(s.to_string().into())).await,
        None => out_tx.send(Message::Close(None)).await,
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(out_tx);
    let seen = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .unwrap()
        .unwrap();
    let _ = writer.await;
    idle(&gw).await;
    let logs = gw.engine.logs(LogQuery::default()).await.unwrap();
    let conv = gw.engine.conversation(&logs[0].session_id).await.unwrap();
    let case = gw.engine.case(&conv.case_id).await.unwrap().unwrap();
    assert_eq!(case.channel, format!("{p:?}").to_lowercase());
    let expected = if digit == Some('0') {
        switchboard::store::CaseStatus::Escalated
    } else {
        switchboard::store::CaseStatus::Closed
    };
    assert_eq!(case.status, expected);
    (seen, speech_end_ms, gw)
}

fn check(p: P, seen: &Seen, speech_end_ms: u64) {
    assert!(
        seen.other.is_empty(),
        "{p:?}: unexpected messages {:?}",
        seen.other
    );
    assert!(
        seen.bad_sizes.is_empty(),
        "{p:?}: bad payload sizes {:?}",
        seen.bad_sizes
    );
    let bytes_per_s = match p {
        P::Vonage => 32_000,
        P::Exotel => 16_000,
        _ => 8_000,
    };
    let greeting: usize = seen
        .audio
        .iter()
        .filter(|(t, _)| *t < 4000)
        .map(|a| a.1)
        .sum();
    let answer: usize = seen
        .audio
        .iter()
        .filter(|(t, _)| *t > speech_end_ms - 1000)
        .map(|a| a.1)
        .sum();
    assert!(
        greeting >= bytes_per_s * 2,
        "{p:?}: greeting {greeting} bytes"
    );
    assert!(
        answer >= bytes_per_s * 2,
        "{p:?}: answer {answer} bytes; audio (ms, bytes): {:?}",
        seen.audio
    );
    if p != P::Vonage {
        assert!(seen.marks >= 10, "{p:?}: marks {}", seen.marks);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telnyx_alaw_call_with_out_of_order_frames() {
    let (seen, end) = call(P::Telnyx).await;
    check(P::Telnyx, &seen, end);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plivo_l16_16k_call_answered_with_play_audio_and_checkpoints() {
    let (seen, end) = call(P::Plivo).await;
    check(P::Plivo, &seen, end);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exotel_pcm16_call_answered_in_320_byte_multiples() {
    let (seen, end) = call(P::Exotel).await;
    check(P::Exotel, &seen, end);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vonage_binary_l16_call_answered_in_640_byte_frames() {
    let (seen, end) = call(P::Vonage).await;
    check(P::Vonage, &seen, end);
}

/// The call's log, to explain a failure.
async fn said(gw: &Gateway) -> Vec<String> {
    let logs = gw.engine.logs(LogQuery::default()).await.unwrap();
    logs.iter()
        .map(|l| format!("{:?}: {}", l.log_type, l.message))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telnyx_and_plivo_calls_are_hung_up_through_their_rest_apis() {
    // "No, that's all. Thanks." as the first words of a call is only asked about ("Sorry, was
    // that goodbye?"); the caller's "Yes, that's right." → the bot says goodbye and hangs up.
    // The two calls run side by side (each on its own gateway): real time is the cost here.
    let ((_, _, gw), (_, _, plivo)) = tokio::join!(
        call_saying(P::Telnyx, "scenario1/03.wav+stranger/03.wav", true),
        call_saying(P::Plivo, "scenario1/03.wav+stranger/03.wav", true)
    );
    let rest = gw.rest.lock().unwrap().clone();
    assert_eq!(rest.len(), 1, "{rest:?}; {:?}", said(&gw).await);
    assert_eq!(rest[0].method, "POST");
    assert_eq!(rest[0].path, "/v2/calls/v3:call-1/actions/hangup");
    assert_eq!(rest[0].auth, "Bearer tx-key");
    let gw = plivo;
    let rest = gw.rest.lock().unwrap().clone();
    assert_eq!(rest.len(), 1, "{rest:?}; {:?}", said(&gw).await);
    assert_eq!(rest[0].method, "DELETE");
    assert_eq!(rest[0].path, "/v1/Account/MAtest/Call/call-1/");
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        "MAtest:pl-token",
    );
    assert_eq!(rest[0].auth, format!("Basic {basic}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telnyx_and_plivo_calls_are_transferred_through_their_rest_apis() {
    // "Confirm my reservation.", then keypad 0: a person.
    // The two calls run side by side (each on its own gateway): real time is the cost here.
    let ((_, _, gw), (_, _, plivo)) = tokio::join!(
        call_with(P::Telnyx, "scenario1/01.wav", Some('0'), true),
        call_with(P::Plivo, "scenario1/01.wav", Some('0'), true)
    );
    let rest = gw.rest.lock().unwrap().clone();
    assert_eq!(rest.len(), 1, "{rest:?}; {:?}", said(&gw).await);
    assert_eq!(rest[0].method, "POST");
    assert_eq!(rest[0].path, "/v2/calls/v3:call-1/actions/transfer");
    assert_eq!(rest[0].auth, "Bearer tx-key");
    assert_eq!(
        serde_json::from_str::<Value>(&rest[0].body).unwrap(),
        json!({"to": "+15005550006"})
    );

    let gw = plivo;
    let rest = gw.rest.lock().unwrap().clone();
    assert_eq!(rest.len(), 1, "{rest:?}; {:?}", said(&gw).await);
    assert_eq!(rest[0].method, "POST");
    assert_eq!(rest[0].path, "/v1/Account/MAtest/Call/call-1/");
    let body: Value = serde_json::from_str(&rest[0].body).unwrap();
    assert_eq!(body["legs"], "aleg");
    assert_eq!(body["aleg_method"], "GET");
    // Plivo then fetches the call's next instructions from the gateway. With no public_url
    // configured, the URL is built from the Host the stream came in on; the test gateway speaks
    // plain HTTP (TLS would end at a proxy in front of it).
    let aleg_url = body["aleg_url"].as_str().unwrap();
    let prefix = format!("https://{}/plivo/transfer?", gw.addr);
    assert!(aleg_url.starts_with(&prefix), "{aleg_url}");
    let fetch = |url: String| async move {
        let r = switchboard::net::get(url).await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    let plain = aleg_url.replacen("https://", "http://", 1);
    let (status, xml) = fetch(plain.clone()).await;
    assert_eq!(status, 200, "{xml}");
    assert_eq!(
        xml,
        r#"<?xml version="1.0" encoding="UTF-8"?><Response><Dial><Number>+15005550006</Number></Dial></Response>"#
    );
    // Only destinations the gateway signed are dialled.
    let forged = plain.replace("to=%2B15005550006", "to=%2B19995550100");
    assert_ne!(forged, plain);
    assert_eq!(fetch(forged).await.0, 403);
    assert_eq!(
        fetch(format!(
            "http://{}/plivo/transfer?to=%2B15005550006",
            gw.addr
        ))
        .await
        .0,
        403
    );
}
