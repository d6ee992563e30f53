//! Live calls under abuse and load: hostile frames, dropped sockets, bad signatures, ten calls at
//! once, the admission cap, and draining. Each hostile case must leave the gateway serving a good
//! call afterwards, with the bad call's case closed.

use crate::twilio::{Gateway, gateway, idle, signed, ulaw_fixture};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::time::Duration;
use switchboard::store::{CaseStatus, LogQuery};
use switchboard::testkit::simcall::{self, Script, Step};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A good short call: the greeting is heard.
async fn good_call(gw: &Gateway) {
    let script = signed(
        gw,
        Script::new(
            "user_789",
            vec![Step::WaitBotDone { max_ms: 15_000 }, Step::HangUp],
        ),
    )
    .await;
    let log = simcall::run(&gw.url("/twilio/media"), &script)
        .await
        .unwrap();
    let bytes: usize = log.media.iter().map(|m| m.1).sum();
    assert!(bytes >= 16_000, "the greeting was heard: {bytes} bytes");
}

async fn raw_socket(
    gw: &Gateway,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let url = gw.url("/twilio/media");
    let mut req = url.as_str().into_client_request().unwrap();
    let sig = switchboard::transport::twilio::signature(
        "secret-token",
        &format!("wss://{}/twilio/media", gw.addr),
        &[],
    );
    req.headers_mut()
        .insert("x-twilio-signature", sig.parse().unwrap());
    tokio_tungstenite::connect_async(req).await.unwrap().0
}

fn start_msg(call_sid: &str) -> String {
    json!({"event": "start", "sequenceNumber": "1", "streamSid": "MZ1", "start": {"streamSid": "MZ1",
        "accountSid": "AC1", "callSid": call_sid, "tracks": ["inbound"], "customParameters": {"caller": "user_789"},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}})
    .to_string()
}

fn media_msg(payload: &str) -> String {
    json!({"event": "media", "sequenceNumber": "2", "streamSid": "MZ1",
        "media": {"track": "inbound", "chunk": "1", "timestamp": "0", "payload": payload}})
    .to_string()
}

/// All cases the gateway opened, newest last.
async fn cases(gw: &Gateway) -> Vec<switchboard::store::Case> {
    let logs = gw
        .engine
        .logs(LogQuery {
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut sessions: Vec<String> = vec![];
    for l in logs {
        if !sessions.contains(&l.session_id) {
            sessions.push(l.session_id);
        }
    }
    let mut out = vec![];
    for s in sessions {
        let conv = gw.engine.conversation(&s).await.unwrap();
        out.push(gw.engine.case(&conv.case_id).await.unwrap().unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_frames_are_ignored_and_the_call_goes_on() {
    let gw = gateway(|_| {}).await;
    let mut ws = raw_socket(&gw).await;
    // Before start: media, garbage, a binary frame.
    ws.send(Message::Text(media_msg("//8=").into()))
        .await
        .unwrap();
    ws.send(Message::Text("{not json".into())).await.unwrap();
    ws.send(Message::Binary(vec![1u8, 2, 3].into()))
        .await
        .unwrap();
    ws.send(Message::Text(start_msg("CAhostile").into()))
        .await
        .unwrap();
    // After start: bad base64, an unknown event, a mark that is not ours, a second start.
    ws.send(Message::Text(media_msg("***not base64***").into()))
        .await
        .unwrap();
    ws.send(Message::Text(
        json!({"event": "party", "streamSid": "MZ1"})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    ws.send(Message::Text(
        json!({"event": "mark", "streamSid": "MZ1", "mark": {"name": "zz"}})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    ws.send(Message::Text(start_msg("CAother").into()))
        .await
        .unwrap();
    ws.send(Message::Text(
        json!({"event": "dtmf", "streamSid": "MZ1", "dtmf": {"digit": "??"}})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    // The call is alive: the greeting keeps coming.
    let mut media = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while media < 20 {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("the greeting arrives")
            .unwrap()
            .unwrap();
        if let Message::Text(t) = msg
            && t.as_str().contains("\"media\"")
        {
            media += 1;
        }
    }
    ws.send(Message::Text(
        json!({"event": "stop", "streamSid": "MZ1"})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    idle(&gw).await;
    let case = &cases(&gw).await[0];
    assert_eq!(case.status, CaseStatus::Closed);
    let ended = case
        .audit
        .iter()
        .find(|a| a.action == "call_ended")
        .unwrap();
    assert_eq!(ended.detail["outcome"], "caller hung up");
    assert!(
        ended.detail["bad_frames"].as_u64().unwrap() >= 4,
        "{:?}",
        ended.detail
    );
    assert_eq!(ended.detail["media_before_start"], 1);
    good_call(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_or_a_dropped_socket_ends_only_that_call_and_closes_its_case() {
    let gw = gateway(|_| {}).await;
    // Oversized: the server refuses the frame and closes the connection.
    let mut ws = raw_socket(&gw).await;
    ws.send(Message::Text(start_msg("CAbig").into()))
        .await
        .unwrap();
    let huge = media_msg(&"A".repeat(200 * 1024));
    let _ = ws.send(Message::Text(huge.into())).await;
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                _ => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server closed the connection");
    // Dropped mid-sentence: start, half an utterance, then the TCP connection just goes away.
    let mut ws = raw_socket(&gw).await;
    ws.send(Message::Text(start_msg("CAdrop").into()))
        .await
        .unwrap();
    let speech = ulaw_fixture("scenario1/01.wav");
    for chunk in speech[..speech.len() / 2].chunks(160) {
        let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, chunk);
        ws.send(Message::Text(media_msg(&b64).into()))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(ws);
    idle(&gw).await;
    let all = cases(&gw).await;
    assert_eq!(all.len(), 2);
    for c in &all {
        assert_eq!(c.status, CaseStatus::Closed, "{c:?}");
        let outcome = c.resolution.clone().unwrap();
        assert!(
            outcome == "connection dropped" || outcome.starts_with("error"),
            "{outcome}"
        );
    }
    good_call(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_are_required_when_a_token_is_configured() {
    let gw = gateway(|_| {}).await;
    // The media socket without a signature, or with a wrong one: 403.
    let url = gw.url("/twilio/media");
    let err = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
    let mut req = url.as_str().into_client_request().unwrap();
    req.headers_mut()
        .insert("x-twilio-signature", "bm9wZQ==".parse().unwrap());
    let err = tokio_tungstenite::connect_async(req).await.unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
    // The voice webhook: signed over the URL and the form parameters.
    let http = switchboard::net::client();
    let voice = format!("http://{}/twilio/voice", gw.addr);
    let form = [("CallSid", "CA9"), ("From", "+15551234567")];
    let body = serde_urlencoded::to_string(form).unwrap();
    let unsigned = http
        .post(&voice)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 403);
    let params: Vec<(String, String)> = form
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let sig = switchboard::transport::twilio::signature(
        "secret-token",
        &format!("https://{}/twilio/voice", gw.addr),
        &params,
    );
    let ok = http
        .post(&voice)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", &sig)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let twiml = ok.text().await.unwrap();
    assert!(
        twiml.contains(&format!("<Stream url=\"wss://{}/twilio/media\">", gw.addr)),
        "{twiml}"
    );
    assert!(
        twiml.contains("<Parameter name=\"caller\" value=\"+15551234567\"/>"),
        "{twiml}"
    );
    // Tampering with a parameter breaks the signature.
    let tampered = http
        .post(&voice)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", &sig)
        .body(body.replace("CA9", "CA8"))
        .send()
        .await
        .unwrap();
    assert_eq!(tampered.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_unsigned_requests_are_served() {
    let gw = gateway(|c| c.twilio.auth_token.clear()).await;
    let script = Script::new(
        "user_789",
        vec![Step::WaitBotDone { max_ms: 15_000 }, Step::HangUp],
    );
    let log = simcall::run(&gw.url("/twilio/media"), &script)
        .await
        .unwrap();
    assert!(!log.media.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_status_callbacks_are_logged_on_the_calls_case() {
    let gw = gateway(|_| {}).await;
    good_call(&gw).await;
    idle(&gw).await;
    let case = &cases(&gw).await[0];
    let call_sid = case
        .audit
        .iter()
        .find(|a| a.action == "call_started")
        .unwrap()
        .detail["call_id"]
        .as_str()
        .unwrap()
        .to_string();
    let form: Vec<(String, String)> = [
        ("AccountSid", "ACtest"),
        ("CallSid", call_sid.as_str()),
        ("StreamSid", "MZ1"),
        ("StreamEvent", "stream-stopped"),
        ("Timestamp", "2026-11-22T07:00:00Z"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let url = format!("http://{}/twilio/status", gw.addr);
    let sig = switchboard::transport::twilio::signature(
        "secret-token",
        &format!("https://{}/twilio/status", gw.addr),
        &form,
    );
    let r = switchboard::net::client()
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", sig)
        .body(serde_urlencoded::to_string(&form).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let case = gw.engine.case(&case.id).await.unwrap().unwrap();
    let status = case
        .audit
        .iter()
        .find(|a| a.action == "stream_status")
        .unwrap();
    assert_eq!(status.detail["event"], "stream-stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_calls_at_once_all_complete() {
    let gw = gateway(|_| {}).await;
    let mut calls = vec![];
    for i in 0..10u64 {
        let script = signed(
            &gw,
            Script::new(
                "user_789",
                vec![
                    Step::Silence(i * 150), // callers arrive over 1.5 s
                    Step::WaitBotDone { max_ms: 20_000 },
                    Step::Say(ulaw_fixture("scenario1/01.wav")),
                    Step::WaitBotDone { max_ms: 30_000 },
                    Step::HangUp,
                ],
            ),
        )
        .await;
        let url = gw.url("/twilio/media");
        calls.push(tokio::spawn(
            async move { simcall::run(&url, &script).await },
        ));
    }
    let mut answered = 0;
    for c in calls {
        let log = c.await.unwrap().unwrap();
        assert!(log.unexpected.is_empty(), "{:?}", log.unexpected);
        let end = log.speech[0].1;
        let answer: usize = log
            .media
            .iter()
            .filter(|(t, _)| *t > end)
            .map(|m| m.1)
            .sum();
        if answer >= 16_000 {
            answered += 1;
        }
    }
    assert_eq!(answered, 10, "every caller heard an answer");
    idle(&gw).await;
    let all = cases(&gw).await;
    assert_eq!(all.len(), 10);
    assert!(all.iter().all(|c| c.status == CaseStatus::Closed));
}

/// The real binary: SIGTERM while a call is up. New calls are refused and the health check
/// fails while draining; the call is ended at the drain timeout; the process exits 0; the case
/// in the database file is closed with the outcome. The gateway logs as JSON
/// (`--log-format json`): every line parses, and the call's lines carry its provider and id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_calls_then_exits_with_every_case_closed() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cfg = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/switchboard.toml"
    ))
    .unwrap()
    .replace(
        "listen = \"127.0.0.1:8080\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    )
    .replace(
        "data_dir = \"data\"",
        &format!("data_dir = {:?}", dir.path().join("db")),
    )
    .replace(
        "models_dir = \"models\"",
        &format!(
            "models_dir = {:?}",
            concat!(env!("CARGO_MANIFEST_DIR"), "/models")
        ),
    )
    .replace("drain_secs = 30", "drain_secs = 3");
    let cfg_path = dir.path().join("switchboard.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let log_path = dir.path().join("gateway.log");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["--log-format", "json", "serve", "--config"])
        .arg(&cfg_path)
        .env_remove("TWILIO_AUTH_TOKEN")
        .env_remove("TWILIO_ACCOUNT_SID")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("127.0.0.1:{port}");
    let mut up = false;
    for _ in 0..300 {
        if switchboard::net::get(format!("http://{base}/healthz"))
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "the gateway came up");
    let url = format!("ws://{base}/twilio/media");
    let script = Script::new("user_789", vec![Step::Silence(60_000), Step::HangUp]);
    let call = tokio::spawn(async move { simcall::run(&url, &script).await });
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let pid = child.id().unwrap();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let t0 = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let health = switchboard::net::get(format!("http://{base}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status(), 503, "draining");
    let err = tokio_tungstenite::connect_async(format!("ws://{base}/twilio/media"))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("503"),
        "no new calls while draining: {err}"
    );
    let log = call.await.unwrap().unwrap();
    assert!(
        log.closed_by_server.is_some(),
        "the call was ended by the gateway"
    );
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("the gateway exits after draining")
        .unwrap();
    assert!(status.success(), "{status:?}");
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(2500),
        "the call was given the drain time: {waited:?}"
    );
    let store = switchboard::store::Store::open(&dir.path().join("db/switchboard.db")).unwrap();
    let logs = store.query_logs(&LogQuery::default()).unwrap();
    let session = &logs[0].session_id;
    let rec = match store.load_session(session, 0).unwrap() {
        switchboard::store::SessionLookup::Active(r)
        | switchboard::store::SessionLookup::Expired(r) => r,
        switchboard::store::SessionLookup::Missing => panic!("session lost"),
    };
    let case = store.get_case(&rec.case_id).unwrap().unwrap();
    assert_eq!(case.status, CaseStatus::Closed);
    assert_eq!(case.resolution.as_deref(), Some("ended at shutdown"));
    let log = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let started = lines
        .iter()
        .find(|l| l["fields"]["message"] == "call started")
        .unwrap_or_else(|| panic!("no call started line in {log}"));
    assert_eq!(started["level"], "INFO", "{started}");
    assert_eq!(started["span"]["name"], "call", "{started}");
    assert_eq!(started["span"]["provider"], "twilio", "{started}");
    assert!(
        started["span"]["id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "the call's id is on its lines: {started}"
    );
}
