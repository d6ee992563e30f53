//! The gateway as an attacker meets it: the real binary (`switchboard serve`) on loopback, with
//! API tokens configured, probed without credentials, with the wrong scope, with someone else's
//! conversation, with a posed caller, with slow-header clients and a flood of turns.

use serde_json::{Value, json};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ADMIN: &str = "admin-secret-token-0001";
pub const CLIENT: &str = "client-secret-token-0001";

/// A `switchboard serve` process with its own database, killed on drop.
pub struct Server {
    child: Child,
    pub base: String,
    pub dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// SIGTERM, then waits (up to 60 s) for the gateway to exit.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        for _ in 0..600 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the gateway did not exit after SIGTERM:\n{}", self.log());
    }

    /// What the gateway logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }
}

/// The repository's config with a temp database, the installed models and `edit` applied.
pub fn config_text(dir: &std::path::Path, edit: impl Fn(String) -> String) -> String {
    let cfg = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/switchboard.toml"
    ))
    .unwrap()
    .replace(
        "data_dir = \"data\"",
        &format!("data_dir = {:?}", dir.join("db")),
    )
    .replace(
        "models_dir = \"models\"",
        &format!(
            "models_dir = {:?}",
            concat!(env!("CARGO_MANIFEST_DIR"), "/models")
        ),
    );
    edit(cfg)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the binary with tokens in the environment (as production would set them) and waits
/// until `/healthz` answers.
pub async fn serve(edit: impl Fn(String) -> String, env: &[(&str, &str)]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("switchboard.toml");
    std::fs::write(&cfg, config_text(dir.path(), edit)).unwrap();
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--config",
        ])
        .arg(&cfg)
        .env_remove("SWITCHBOARD_ADMIN_TOKENS")
        .env_remove("SWITCHBOARD_CLIENT_TOKENS")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().unwrap();
    let server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
        dir,
    };
    let http = switchboard::net::client();
    let t0 = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("{}/healthz", server.base)).send().await
            && r.status().is_success()
        {
            return server;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "the gateway did not start:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn secured() -> Server {
    serve(
        |c| c,
        &[
            ("SWITCHBOARD_ADMIN_TOKENS", ADMIN),
            ("SWITCHBOARD_CLIENT_TOKENS", CLIENT),
        ],
    )
    .await
}

/// Status and JSON body of a request with an optional token and conversation handle.
pub async fn call(
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    handle: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = switchboard::net::client().request(method, url);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(h) = handle {
        r = r.header("x-conversation-handle", h);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

use reqwest::Method;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_route_needs_an_admin_token() {
    let s = secured().await;
    let b = &s.base;
    let (_, conv) = call(
        Method::POST,
        &format!("{b}/v1/conversations"),
        Some(ADMIN),
        None,
        None,
    )
    .await;
    let id = conv["conversation_id"].as_str().unwrap().to_string();
    let case = conv["case_id"].as_str().unwrap().to_string();
    let routes: Vec<(Method, String, Option<Value>)> = vec![
        // The operations dashboard's data (the page itself holds none).
        (Method::GET, format!("{b}/v1/live"), None),
        (Method::GET, format!("{b}/v1/calls"), None),
        (Method::POST, format!("{b}/v1/calls/{case}/hangup"), None),
        (Method::POST, format!("{b}/v1/calls/{case}/transfer"), None),
        (Method::GET, format!("{b}/v1/cases"), None),
        (Method::GET, format!("{b}/v1/recordings"), None),
        (
            Method::GET,
            format!("{b}/v1/recordings/{case}/call.wav"),
            None,
        ),
        (
            Method::GET,
            format!("{b}/v1/recordings/{case}/timeline"),
            None,
        ),
        (Method::GET, format!("{b}/v1/logs"), None),
        (Method::GET, format!("{b}/metrics"), None),
        (Method::GET, format!("{b}/v1/agents"), None),
        (
            Method::POST,
            format!("{b}/v1/agents"),
            Some(json!({"id": "x", "name": "x", "endpoint": "http://127.0.0.1:9/", "tasks": []})),
        ),
        (Method::DELETE, format!("{b}/v1/agents/billing_agent"), None),
        (Method::GET, format!("{b}/v1/cases/{case}"), None),
        (Method::GET, format!("{b}/v1/conversations/{id}"), None),
        (
            Method::POST,
            format!("{b}/v1/conversations/{id}/messages"),
            Some(json!({"text": "What's my bill?"})),
        ),
        (Method::POST, format!("{b}/v1/conversations"), None),
    ];
    for (m, url, body) in &routes {
        let (st, v) = call(m.clone(), url, None, None, body.clone()).await;
        assert_eq!(st, 401, "{m} {url} without a token: {v}");
        assert_eq!(v["error"]["code"], "UNAUTHORIZED", "{v}");
        let (st, _) = call(
            m.clone(),
            url,
            Some("not-a-token-at-all-000"),
            None,
            body.clone(),
        )
        .await;
        assert_eq!(st, 401, "{m} {url} with an unknown token");
    }
    // A client token is not an admin token.
    for (m, url, body) in &routes[..14] {
        let (st, v) = call(m.clone(), url, Some(CLIENT), None, body.clone()).await;
        assert_eq!(st, 403, "{m} {url} with a client token: {v}");
    }
    // The admin token opens them (the agent is still there: nothing above removed it).
    let (st, v) = call(
        Method::GET,
        &format!("{b}/v1/agents"),
        Some(ADMIN),
        None,
        None,
    )
    .await;
    assert_eq!(st, 200);
    assert!(
        v["agents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == "billing_agent"),
        "{v}"
    );
    let (st, v) = call(
        Method::GET,
        &format!("{b}/v1/logs"),
        Some(ADMIN),
        None,
        None,
    )
    .await;
    assert_eq!(st, 200);
    assert!(v["count"].as_u64().unwrap() >= 1, "{v}");
    let (st, _) = call(
        Method::GET,
        &format!("{b}/v1/cases/{case}"),
        Some(ADMIN),
        None,
        None,
    )
    .await;
    assert_eq!(st, 200);
    let (st, page) = call(
        Method::GET,
        &format!("{b}/metrics"),
        Some(ADMIN),
        None,
        None,
    )
    .await;
    assert_eq!(st, 200);
    let page = page.as_str().expect("Prometheus text, not JSON");
    assert!(
        page.contains("# TYPE switchboard_turn_stage_seconds histogram\n")
            && page.contains("\nprocess_resident_memory_bytes "),
        "{page}"
    );
    // The dashboard's routes open to the admin token: no call is live, the conversation opened
    // above is among the recent cases, recordings are off by default, and the page is served.
    let (st, v) = call(
        Method::GET,
        &format!("{b}/v1/calls"),
        Some(ADMIN),
        None,
        None,
    )
    .await;
    assert_eq!((st, v), (200, json!({"calls": []})));
    let (st, v) = call(
        Method::POST,
        &format!("{b}/v1/calls/{case}/hangup"),
        Some(ADMIN),
        None,
        None,
    )
    .await;
    assert_eq!(st, 404, "not a live call: {v}");
    let (st, v) = call(
        Method::GET,
        &format!("{b}/v1/cases"),
        Some(ADMIN),
        None,
        None,
    )
    .await;
    assert_eq!(st, 200);
    assert!(
        v["cases"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == case),
        "{v}"
    );
    let (st, v) = call(
        Method::GET,
        &format!("{b}/v1/recordings"),
        Some(ADMIN),
        None,
        None,
    )
    .await;
    assert_eq!(st, 404, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("recordings are off"),
        "{v}"
    );
    let (st, page) = call(Method::GET, &format!("{b}/admin"), None, None, None).await;
    assert_eq!(st, 200);
    assert!(page.as_str().unwrap().contains("dashboard.js"), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reaches_only_its_own_conversation_and_cannot_name_the_caller() {
    let s = secured().await;
    let b = &s.base;
    let (st, mine) = call(
        Method::POST,
        &format!("{b}/v1/conversations"),
        Some(CLIENT),
        None,
        None,
    )
    .await;
    assert_eq!(st, 201, "{mine}");
    let id = mine["conversation_id"].as_str().unwrap();
    let handle = mine["handle"].as_str().unwrap();
    assert_eq!(handle.len(), 64);
    let msgs = format!("{b}/v1/conversations/{id}/messages");
    let text = json!({"text": "What's my bill this month?"});
    // With its handle: its own conversation. The caller is one the gateway issued: it owns no
    // account, so no bill is read.
    let (st, v) = call(
        Method::POST,
        &msgs,
        Some(CLIENT),
        Some(handle),
        Some(text.clone()),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let reply = v["reply"].as_str().unwrap().to_lowercase();
    assert!(
        !reply.contains('$'),
        "an anonymous caller was read a bill: {reply}"
    );
    let (st, v) = call(
        Method::GET,
        &format!("{b}/v1/conversations/{id}"),
        Some(CLIENT),
        Some(handle),
        None,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert!(v["caller_id"].as_str().unwrap().starts_with("text_"), "{v}");
    // Another client (same scope, no handle or a wrong one) finds nothing, reading or writing.
    let other = "0".repeat(64);
    for h in [None, Some(other.as_str())] {
        let (st, v) = call(
            Method::GET,
            &format!("{b}/v1/conversations/{id}"),
            Some(CLIENT),
            h,
            None,
        )
        .await;
        assert_eq!(st, 404, "{v}");
        assert!(v.get("history").is_none(), "{v}");
        let (st, _) = call(Method::POST, &msgs, Some(CLIENT), h, Some(text.clone())).await;
        assert_eq!(st, 404);
    }
    // A client cannot pose as a customer.
    let (st, v) = call(
        Method::POST,
        &format!("{b}/v1/conversations"),
        Some(CLIENT),
        None,
        Some(json!({"caller_id": "user_789"})),
    )
    .await;
    assert_eq!(st, 403, "{v}");
    // The admin sees the conversation without a handle.
    let (st, _) = call(
        Method::GET,
        &format!("{b}/v1/conversations/{id}"),
        Some(ADMIN),
        None,
        None,
    )
    .await;
    assert_eq!(st, 200);
    // Oversized bodies are 413, not 400.
    let big = json!({"text": "a".repeat(100_000)});
    let (st, _) = call(Method::POST, &msgs, Some(CLIENT), Some(handle), Some(big)).await;
    assert_eq!(st, 413);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turns_are_rate_limited_per_token() {
    let s = serve(
        |c| c.replace("turns_per_minute = 120", "turns_per_minute = 6"),
        &[("SWITCHBOARD_CLIENT_TOKENS", CLIENT)],
    )
    .await;
    let b = &s.base;
    let (_, c) = call(
        Method::POST,
        &format!("{b}/v1/conversations"),
        Some(CLIENT),
        None,
        None,
    )
    .await;
    let id = c["conversation_id"].as_str().unwrap();
    let handle = c["handle"].as_str().unwrap();
    let mut codes = vec![];
    for _ in 0..12 {
        let (st, _) = call(
            Method::POST,
            &format!("{b}/v1/conversations/{id}/messages"),
            Some(CLIENT),
            Some(handle),
            Some(json!({"text": "hello"})),
        )
        .await;
        codes.push(st);
    }
    // A burst of 5 turns including the conversation's creation, then one every 10 s.
    assert_eq!(codes[..4], [200; 4], "{codes:?}");
    assert_eq!(codes[4..], [429; 8], "{codes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turns_are_rate_limited_per_address_whatever_the_token() {
    let second = "client-secret-token-0002";
    let both = format!("{CLIENT},{second}");
    let s = serve(
        |c| {
            c.replace(
                "turns_per_minute_per_ip = 300",
                "turns_per_minute_per_ip = 6",
            )
        },
        &[("SWITCHBOARD_CLIENT_TOKENS", &both)],
    )
    .await;
    let b = &s.base;
    let from = |ip: &str| {
        switchboard::net::client_builder()
            .local_address(ip.parse::<std::net::IpAddr>().unwrap())
            .build()
            .unwrap()
    };
    let turn = |client: reqwest::Client, token: &'static str| {
        let url = format!("{b}/v1/conversations");
        async move {
            client
                .post(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let mut codes = vec![];
    for i in 0..10 {
        let token = if i % 2 == 0 {
            CLIENT
        } else {
            "client-secret-token-0002"
        };
        codes.push(turn(from("127.0.0.1"), token).await);
    }
    // A burst of 5 from the address, however the turns are spread over tokens.
    assert_eq!(codes[..5], [201; 5], "{codes:?}");
    assert_eq!(codes[5..], [429; 5], "{codes:?}");
    // Another address still has its own budget (and each token had turns left).
    assert_eq!(turn(from("127.0.0.2"), CLIENT).await, 201);
}

#[test]
fn without_a_token_the_gateway_refuses_to_listen_beyond_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("switchboard.toml");
    std::fs::write(&cfg, config_text(dir.path(), |c| c)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["serve", "--listen", "0.0.0.0:0", "--config"])
        .arg(&cfg)
        .env_remove("SWITCHBOARD_ADMIN_TOKENS")
        .env_remove("SWITCHBOARD_CLIENT_TOKENS")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("without an API token") && err.contains("127.0.0.1"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_header_clients_are_cut_off_and_do_not_stop_the_health_check() {
    let s = serve(
        |c| {
            c.replace(
                "header_read_timeout_ms = 5000",
                "header_read_timeout_ms = 1500",
            )
        },
        &[("SWITCHBOARD_ADMIN_TOKENS", ADMIN)],
    )
    .await;
    let addr = s.base.trim_start_matches("http://").to_string();
    // 1,000 clients that send the start of a request and then trickle.
    let mut slow = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut c, b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(c);
    }
    let t0 = Instant::now();
    let r = switchboard::net::client_builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .get(format!("{}/healthz", s.base))
        .send()
        .await
        .expect("/healthz answers while 1,000 slow clients are connected");
    assert_eq!(r.status(), 200);
    println!(
        "/healthz answered in {:?} beside 1,000 slow clients",
        t0.elapsed()
    );
    // Each trickles one more header line a second: the gateway closes them at its deadline.
    let mut closed = 0;
    let deadline = Instant::now() + Duration::from_secs(6);
    for c in &mut slow {
        let _ = tokio::io::AsyncWriteExt::write_all(c, b"X-Slow: 1\r\n").await;
    }
    for mut c in slow {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut buf = [0u8; 256];
        match tokio::time::timeout(left, tokio::io::AsyncReadExt::read(&mut c, &mut buf)).await {
            Ok(Ok(_)) | Ok(Err(_)) => closed += 1,
            Err(_) => {}
        }
    }
    assert_eq!(
        closed, 1000,
        "slow clients still connected after the header deadline"
    );
}

/// A WebSocket to `path` from the loopback address `from` (127.0.0.x: another "machine").
async fn ws_from(
    from: &str,
    base: &str,
    path: &str,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    tokio_tungstenite::tungstenite::Error,
> {
    let addr: std::net::SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let stream = sock.connect(addr).await.unwrap();
    let url = format!("ws://{addr}{path}");
    tokio_tungstenite::client_async(url, stream)
        .await
        .map(|(ws, _)| ws)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_media_sockets_do_not_keep_a_real_call_out() {
    // Development mode (no tokens), two calls at most, idle sockets closed after 3 s.
    let s = serve(
        |c| {
            c.replace("max_active = 20", "max_active = 2")
                .replace("start_timeout_ms = 10000", "start_timeout_ms = 3000")
        },
        &[],
    )
    .await;
    // 40 sockets from another address that never send `start`.
    let mut idle = vec![];
    let mut refused = 0;
    for _ in 0..40 {
        match ws_from("127.0.0.2", &s.base, "/twilio/media").await {
            Ok(ws) => idle.push(ws),
            Err(_) => refused += 1,
        }
    }
    assert_eq!(
        idle.len(),
        16,
        "per-address cap on sockets that have not started"
    );
    assert_eq!(refused, 24);
    // A real caller is answered: the greeting plays.
    let script = switchboard::testkit::simcall::Script::new(
        "+15550001111",
        vec![
            switchboard::testkit::simcall::Step::WaitBotDone { max_ms: 15_000 },
            switchboard::testkit::simcall::Step::HangUp,
        ],
    );
    let url = format!("{}/twilio/media", s.base.replace("http://", "ws://"));
    let log = switchboard::testkit::simcall::run(&url, &script)
        .await
        .unwrap();
    assert!(
        log.media.len() > 20,
        "the real call got no greeting ({} media messages):\n{}",
        log.media.len(),
        s.log()
    );
    // The idle sockets are closed at the start deadline.
    let t0 = Instant::now();
    for mut ws in idle {
        let left = Duration::from_secs(8).saturating_sub(t0.elapsed());
        let end = tokio::time::timeout(left, async {
            loop {
                match futures_util::StreamExt::next(&mut ws).await {
                    None | Some(Err(_)) => break,
                    Some(Ok(m)) if m.is_close() => break,
                    Some(Ok(_)) => {}
                }
            }
        })
        .await;
        assert!(end.is_ok(), "an idle socket was still open 8 s later");
    }
    assert!(s.log().contains("no start message in time"), "{}", s.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_sockets_need_the_media_token_once_credentials_are_configured() {
    let media = "media-secret-token-0001";
    let s = serve(
        |c| c,
        &[
            ("SWITCHBOARD_ADMIN_TOKENS", ADMIN),
            ("SWITCHBOARD_CLIENT_TOKENS", CLIENT),
            ("SWITCHBOARD_MEDIA_TOKEN", media),
            ("TELNYX_API_KEY", "telnyx-key"),
            ("TWILIO_AUTH_TOKEN", "twilio-secret"),
        ],
    )
    .await;
    for p in ["telnyx", "plivo", "exotel", "vonage"] {
        for bad in ["", "?token=wrong-token-0000", "?token="] {
            let e = ws_from("127.0.0.1", &s.base, &format!("/{p}/media{bad}"))
                .await
                .err()
                .unwrap_or_else(|| panic!("/{p}/media{bad} was accepted"));
            assert!(e.to_string().contains("403"), "/{p}/media{bad}: {e}");
        }
        let ok = ws_from("127.0.0.1", &s.base, &format!("/{p}/media?token={media}")).await;
        assert!(ok.is_ok(), "/{p}/media with the token: {:?}", ok.err());
    }
    // Per-call stream URLs the gateway hands out (admin): one socket, its provider only.
    let (st, v) = call(
        Method::POST,
        &format!("{}/v1/stream-urls", s.base),
        Some(ADMIN),
        None,
        Some(json!({"provider": "plivo", "ttl_secs": 60})),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let url = v["url"].as_str().unwrap();
    let path = &url[url.find("/plivo/media").unwrap()..];
    let token = &path[path.find("token=").unwrap() + 6..];
    let e = ws_from(
        "127.0.0.1",
        &s.base,
        &format!("/telnyx/media?token={token}"),
    )
    .await
    .expect_err("a plivo token opened a telnyx socket");
    assert!(e.to_string().contains("403"), "{e}");
    let ok = ws_from("127.0.0.1", &s.base, path).await;
    assert!(ok.is_ok(), "{path}: {:?}", ok.err());
    let e = ws_from("127.0.0.1", &s.base, path)
        .await
        .expect_err("a token was used twice");
    assert!(e.to_string().contains("403"), "{e}");
    let (st, _) = call(
        Method::POST,
        &format!("{}/v1/stream-urls", s.base),
        Some(CLIENT),
        None,
        Some(json!({"provider": "plivo"})),
    )
    .await;
    assert_eq!(st, 403, "a client cannot mint stream URLs");
    // Twilio's own signature is required; unsigned is refused.
    let e = ws_from("127.0.0.1", &s.base, "/twilio/media")
        .await
        .err()
        .unwrap();
    assert!(e.to_string().contains("403"), "{e}");
    // The softphone's signaling needs a client token (in the URL: browsers cannot set headers).
    let e = ws_from("127.0.0.1", &s.base, "/webrtc/signal")
        .await
        .err()
        .unwrap();
    assert!(e.to_string().contains("401"), "{e}");
    let ok = ws_from(
        "127.0.0.1",
        &s.base,
        &format!("/webrtc/signal?access_token={CLIENT}"),
    )
    .await;
    assert!(ok.is_ok(), "{:?}", ok.err());
    let (st, _) = call(
        Method::GET,
        &format!("{}/softphone/config", s.base),
        None,
        None,
        None,
    )
    .await;
    assert_eq!(st, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacker_agents_are_refused_and_built_in_agents_stay() {
    // Default policy: no remote host allowed.
    let s = secured().await;
    let b = &s.base;
    let card = |url: &str| json!({"id": "evil", "tasks": ["get_billing_info"], "endpoint": url, "health_url": url});
    let (st, v) = call(
        Method::POST,
        &format!("{b}/v1/agents"),
        Some(ADMIN),
        None,
        Some(card("https://127.0.0.1:9/agent")),
    )
    .await;
    assert_eq!(st, 422, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("allow_hosts"),
        "{v}"
    );
    let (st, v) = call(
        Method::POST,
        &format!("{b}/v1/agents"),
        Some(ADMIN),
        None,
        Some(card("http://agents.example.com/")),
    )
    .await;
    assert_eq!(st, 422, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("https"),
        "{v}"
    );
    let (st, v) = call(
        Method::DELETE,
        &format!("{b}/v1/agents/billing_agent"),
        Some(ADMIN),
        None,
        None,
    )
    .await;
    assert_eq!(st, 403, "{v}");
    drop(s);
    // Hosts allowed but not private addresses: loopback, metadata and LAN addresses refused.
    let s = serve(
        |c| {
            c.replace(
                "allow_hosts = []",
                r#"allow_hosts = ["127.0.0.1", "169.254.169.254", "10.0.0.5", "localhost"]"#,
            )
            .replace("allow_http = false", "allow_http = true")
        },
        &[("SWITCHBOARD_ADMIN_TOKENS", ADMIN)],
    )
    .await;
    for url in [
        "http://127.0.0.1:9/agent",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.5:8080/",
        "http://localhost:9/",
    ] {
        let (st, v) = call(
            Method::POST,
            &format!("{}/v1/agents", s.base),
            Some(ADMIN),
            None,
            Some(card(url)),
        )
        .await;
        assert_eq!(st, 422, "{url}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("private"),
            "{url}: {v}"
        );
    }
    let (_, v) = call(
        Method::GET,
        &format!("{}/v1/agents", s.base),
        Some(ADMIN),
        None,
        None,
    )
    .await;
    assert!(!v.to_string().contains("evil"), "{v}");
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_conversations_leave_memory() {
    let s = serve(
        |c| {
            c.replace("ttl_secs = 1800", "ttl_secs = 15")
                .replace("sweep_secs = 60", "sweep_secs = 1")
                .replace("turns_per_minute = 120", "turns_per_minute = 1000000")
                .replace(
                    "turns_per_minute_per_ip = 300",
                    "turns_per_minute_per_ip = 0",
                )
                // The voice's start-up synthesis fills its clause cache (up to ~30 MB) while
                // this test measures the process: it is about conversations, not the voice.
                .replace("prewarm = true", "prewarm = false")
        },
        &[("SWITCHBOARD_CLIENT_TOKENS", CLIENT)],
    )
    .await;
    let health = || async {
        switchboard::net::get(format!("{}/healthz", s.base))
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    assert_eq!(health().await["conversations_in_memory"], 0);
    let before = rss_kb(s.child.id());
    let http = switchboard::net::client();
    let t0 = Instant::now();
    for _ in 0..1000 {
        let r = http
            .post(format!("{}/v1/conversations", s.base))
            .bearer_auth(CLIENT)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let made = t0.elapsed();
    assert!(made < Duration::from_secs(14), "creating took {made:?}");
    assert_eq!(health().await["conversations_in_memory"], 1000);
    let peak = rss_kb(s.child.id());
    // Each expires 15 s after its greeting; the sweep runs every second.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let n = health().await["conversations_in_memory"].as_u64().unwrap();
        if n == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{n} conversations still in memory"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The sweep hands the freed heap back: the process shrinks to where it was (within half of
    // what the conversations took; checked for up to 5 s after the last one left).
    let mut after = rss_kb(s.child.id());
    let settle = Instant::now() + Duration::from_secs(5);
    while after > before + (peak - before) / 2 && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(250)).await;
        after = rss_kb(s.child.id());
    }
    println!(
        "RSS: {before} kB before, {peak} kB with 1,000 conversations, {after} kB after they expired"
    );
    assert!(
        peak > before,
        "the conversations took memory: {before} → {peak} kB"
    );
    assert!(
        after <= before + (peak - before) / 2,
        "memory did not return: {before} kB before, {peak} kB at the peak, {after} kB after"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancellation_runs_only_on_the_callers_yes() {
    let s = secured().await;
    let b = &s.base;
    let (_, c) = call(
        Method::POST,
        &format!("{b}/v1/conversations"),
        Some(CLIENT),
        None,
        None,
    )
    .await;
    let id = c["conversation_id"].as_str().unwrap();
    let handle = c["handle"].as_str().unwrap();
    let say = |text: &'static str| {
        let url = format!("{b}/v1/conversations/{id}/messages");
        async move {
            call(
                Method::POST,
                &url,
                Some(CLIENT),
                Some(handle),
                Some(json!({"text": text})),
            )
            .await
            .1
        }
    };
    // Anyone who knows the code and the name gets the read-back, not the cancellation.
    let t = say("Cancel reservation ABC123 for John Doe").await;
    let reply = t["reply"].as_str().unwrap();
    assert!(
        reply.contains("cancel reservation ABC123") && reply.contains("Shall I go ahead?"),
        "{t}"
    );
    assert_ne!(t["status"], "success", "{t}");
    let t = say("No, don't.").await;
    assert!(
        t["reply"].as_str().unwrap().contains("haven't cancelled"),
        "{t}"
    );
    // The booking is still there.
    let t = say("Can you confirm reservation ABC123 for John Doe?").await;
    assert_eq!(t["status"], "success", "{t}");
    assert!(t["reply"].as_str().unwrap().contains("Deluxe Suite"), "{t}");
}
