//! OpenTelemetry traces against a real collector: `rotel` (PyPI; `.ci/setup` puts its agent in
//! target/tools), which prints every span it receives. The gateway binary traces a real Twilio
//! call over loopback (one trace: the call, its turns with their stage times, and each turn's
//! work down to the sub-agent), and a remote sub-agent's request carries the trace on.

use crate::common::{Setup, engine, free_port, listening};
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard::agent::protocol::{AgentInput, AgentOutput};
use switchboard::agent::registry::AgentCard;
use switchboard::testkit::simcall::{self, Script, Step};
use tracing::Instrument;

/// One span as the collector printed it.
#[derive(Debug, Clone, Default)]
struct SpanRec {
    trace: String,
    parent: String,
    id: String,
    name: String,
    attrs: HashMap<String, String>,
}

/// A rotel agent on a free loopback port, printing what it receives into a file.
struct Collector {
    child: Child,
    port: u16,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Collector {
    async fn start() -> Collector {
        let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/rotel-agent");
        assert!(
            bin.is_file(),
            "{} is missing: `bash .ci/setup` installs the OTLP collector for the tests",
            bin.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("rotel.log");
        let port = free_port();
        let mut child = Command::new(&bin)
            .args([
                "start",
                "--otlp-http-endpoint",
                &format!("127.0.0.1:{port}"),
                "--otlp-grpc-endpoint",
                &format!("127.0.0.1:{}", free_port()),
                "--exporter",
                "blackhole",
                "--debug-log",
                "traces",
                "--debug-log-verbosity",
                "detailed",
            ])
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(dir.path().join("rotel.err")).unwrap())
            .spawn()
            .unwrap();
        if listening(port, 100).await {
            return Collector {
                child,
                port,
                out,
                _dir: dir,
            };
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the collector did not start");
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every span printed so far.
    fn spans(&self) -> Vec<SpanRec> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        let mut spans = vec![];
        let mut cur: Option<SpanRec> = None;
        let mut in_attrs = false;
        for line in text.lines() {
            let t = line.trim();
            if t.starts_with("Span #") {
                spans.extend(cur.take());
                cur = Some(SpanRec::default());
                in_attrs = false;
                continue;
            }
            if t.starts_with("ResourceSpans #") || t.starts_with("ScopeSpans #") {
                spans.extend(cur.take());
                continue;
            }
            let Some(s) = cur.as_mut() else { continue };
            let field = |k: &str| {
                t.strip_prefix(k)
                    .and_then(|r| r.trim_start().strip_prefix(':'))
                    .map(|v| v.trim().to_string())
            };
            if let Some(v) = field("Trace ID") {
                s.trace = v;
            } else if let Some(v) = field("Parent ID") {
                s.parent = v;
            } else if let Some(v) = field("Name") {
                s.name = v;
            } else if let Some(v) = field("ID") {
                s.id = v;
            } else if t == "Attributes:" {
                in_attrs = true;
            } else if in_attrs && let Some(kv) = t.strip_prefix("-> ") {
                if let Some((k, v)) = kv.split_once(": ") {
                    // Str(x), Int(5), Bool(true)
                    let v = v
                        .split_once('(')
                        .map_or(v, |(_, rest)| rest.strip_suffix(')').unwrap_or(rest));
                    s.attrs.insert(k.to_string(), v.to_string());
                }
            } else if !t.starts_with("-> ") {
                in_attrs = false;
            }
        }
        spans.extend(cur);
        spans
    }

    /// Waits until `pred` holds for the spans received (the exporter sends in batches).
    async fn wait_for(&self, what: &str, pred: impl Fn(&[SpanRec]) -> bool) -> Vec<SpanRec> {
        for _ in 0..150 {
            let spans = self.spans();
            if pred(&spans) {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{what}: the collector has {:#?}", self.spans());
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The real binary with OTEL_EXPORTER_OTLP_ENDPOINT set traces a real Twilio call: one trace,
/// the `call` span with its case id, a `turn` span per turn under it with the stage times, and
/// under the caller's turn its `asr`, `agent` and `tts` work, the `subagent` call within `agent`.
/// SIGTERM flushes what is still buffered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_is_one_trace_with_a_span_per_turn_and_its_work() {
    let col = Collector::start().await;
    let mut server = crate::security::serve(
        |c| c,
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", col.base().as_str())],
    )
    .await;
    assert!(
        server.log().contains("traces are sent to the collector"),
        "{}",
        server.log()
    );
    let url = format!("{}/twilio/media", server.base.replace("http://", "ws://"));
    let script = Script::new(
        "user_789",
        vec![
            Step::WaitBotDone { max_ms: 20_000 },
            Step::Say(crate::twilio::ulaw_fixture("scenario1/01.wav")),
            Step::WaitBotDone { max_ms: 20_000 },
            Step::HangUp,
        ],
    );
    let log = simcall::run(&url, &script).await.unwrap();
    assert!(log.unexpected.is_empty(), "{:?}", log.unexpected);
    assert_eq!(
        log.response_latencies().len(),
        1,
        "the request was answered"
    );
    let status = server.terminate().await;
    assert!(status.success(), "{status}: {}", server.log());

    let spans = col
        .wait_for("a call span", |s| s.iter().any(|s| s.name == "call"))
        .await;
    let calls: Vec<&SpanRec> = spans.iter().filter(|s| s.name == "call").collect();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    let call = calls[0];
    assert_eq!(call.parent, "", "the call is the trace's root");
    assert_eq!(
        call.attrs.get("provider").map(String::as_str),
        Some("twilio")
    );
    let case = &call.attrs["case_id"];
    assert!(case.starts_with("case_"), "{call:?}");
    let of_call: Vec<&SpanRec> = spans.iter().filter(|s| s.trace == call.trace).collect();
    let children = |parent: &SpanRec, name: &str| -> Vec<&SpanRec> {
        of_call
            .iter()
            .copied()
            .filter(|s| s.parent == parent.id && s.name == name)
            .collect()
    };
    let turns = children(call, "turn");
    // The greeting (turn 0) and the caller's request.
    assert!(turns.len() >= 2, "{of_call:#?}");
    let asked = turns
        .iter()
        .find(|t| t.attrs.contains_key("turn_decided_ms"))
        .unwrap_or_else(|| panic!("no turn with its stages: {turns:#?}"));
    let ms = |k: &str| -> u64 {
        asked.attrs[k]
            .parse()
            .unwrap_or_else(|_| panic!("{k}: {asked:?}"))
    };
    let stages = [
        "transcript_ms",
        "turn_decided_ms",
        "agent_answered_ms",
        "first_tts_chunk_ms",
        "first_audio_ms",
    ];
    for w in stages.windows(2) {
        assert!(ms(w[0]) <= ms(w[1]), "{} after {}: {asked:?}", w[0], w[1]);
    }
    for work in ["asr", "agent", "tts"] {
        assert!(
            !children(asked, work).is_empty(),
            "no {work} under {asked:?}"
        );
    }
    let agent = children(asked, "agent")[0];
    let sub = children(agent, "subagent");
    assert_eq!(sub.len(), 1, "{of_call:#?}");
    assert_eq!(
        sub[0].attrs.get("agent").map(String::as_str),
        Some("reservation_agent")
    );
    assert_eq!(
        sub[0].attrs.get("task").map(String::as_str),
        Some("confirm_reservation")
    );
}

/// A remote sub-agent's request carries the trace (W3C `traceparent`): its trace is the call's
/// and its parent is the `subagent` span the collector received.
#[tokio::test]
async fn a_remote_sub_agent_request_carries_the_trace_on() {
    use tracing_subscriber::layer::SubscriberExt;
    let col = Collector::start().await;
    let telemetry = switchboard::telemetry::start(&switchboard::telemetry::TelemetryConfig {
        otlp_endpoint: col.base(),
        ..Default::default()
    })
    .unwrap()
    .expect("an endpoint is configured");
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(telemetry.tracer()));
    let guard = tracing::subscriber::set_default(subscriber);

    // The remote agent: answers request_service and keeps each request's traceparent.
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/agent",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let s = s.clone();
                async move {
                    s.lock().unwrap().push(
                        headers
                            .get("traceparent")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string(),
                    );
                    let input = AgentInput::from_json(&body).unwrap();
                    let out = AgentOutput::success(
                        &input,
                        json!({"service": "fresh towels", "room_number": "412", "eta_minutes": 5}),
                        1,
                    );
                    serde_json::to_string(&out).unwrap()
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let remote = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let engine = engine(Setup::default());
    engine.registry.remove_any("concierge_agent").unwrap();
    let policy = switchboard::agent::remote_policy::RemotePolicy::new(
        &switchboard::config::RemoteAgentsConfig {
            allow_hosts: vec!["127.0.0.1".into()],
            allow_http: true,
            allow_private: true,
            max_agents: 4,
        },
    );
    let card: AgentCard = serde_json::from_value(json!({"id": "remote_concierge",
        "specialty": "concierge", "tasks": ["request_service"], "endpoint": format!("{remote}/agent")}))
    .unwrap();
    let agent = switchboard::agent::remote::RemoteAgent::new(
        card,
        policy.client(Duration::from_secs(5)),
        &policy,
    )
    .unwrap();
    engine.registry.register_remote(Arc::new(agent), 4).unwrap();

    let span = tracing::info_span!("call", provider = "test");
    let trace_id = {
        use opentelemetry::trace::TraceContextExt;
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        span.context().span().span_context().trace_id().to_string()
    };
    let start = engine
        .start_call("user_789", "test")
        .instrument(span.clone())
        .await
        .unwrap();
    let turn = engine
        .hear(
            &start.conversation_id,
            switchboard::agent::master::Heard::speech(
                "Could you send up some fresh towels to room 412 please?",
                2500,
            ),
        )
        .instrument(span.clone())
        .await
        .unwrap();
    assert_eq!(turn.agent.as_deref(), Some("remote_concierge"), "{turn:?}");
    drop(span);
    drop(guard);
    drop(telemetry); // sends what is buffered
    let tp = seen.lock().unwrap()[0].clone();
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "traceparent {tp:?}");
    assert_eq!(parts[0], "00");
    assert_eq!(parts[1], trace_id, "the call's trace");
    assert_eq!(parts[3], "01", "sampled");
    let parent = parts[2].to_string();
    let spans = col
        .wait_for("the subagent span", |s| s.iter().any(|s| s.id == parent))
        .await;
    let sub = spans.iter().find(|s| s.id == parent).unwrap();
    assert_eq!(sub.name, "subagent");
    assert_eq!(sub.trace, trace_id);
    assert_eq!(
        sub.attrs.get("agent").map(String::as_str),
        Some("remote_concierge")
    );
}
