//! The language model's plumbing: a real OpenAI-compatible server (llama.cpp from PyPI's
//! `xllamacpp`, serving SmolLM2-135M; `.ci/setup` installs both) writes a transferred call's
//! hand-off summary and its call summary as schema-constrained JSON, streams, and answers
//! schema-constrained JSON that is checked; a scripted server plays the failures (slow, 5xx,
//! not JSON, the wrong shape, nobody listening), each of which leaves the engine's summary with
//! its reason. These prove the plumbing, not the small model's wisdom.

use crate::common::{Setup, config, engine_with, free_port, listening};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard::agent::engine::Engine;
use switchboard::agent::master::Heard;
use switchboard::config::Config;
use switchboard::llm::{
    DISPOSITIONS, Llm, LlmConfig, Message, handoff_schema, summary_schema, validate,
};

struct ModelServer {
    child: Child,
    port: u16,
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ModelServer {
    async fn start() -> ModelServer {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let python = root.join("target/tools/llm-venv/bin/python");
        let gguf = root.join("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
        assert!(
            python.is_file() && gguf.is_file(),
            "the model server or its model is missing: `bash .ci/setup` installs both"
        );
        let port = free_port();
        let mut child = Command::new(python)
            .arg(root.join("tests/data/llm_server.py"))
            .arg(&gguf)
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        if listening(port, 600).await {
            return ModelServer { child, port };
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the model server did not start");
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }
}

fn engine_for(llm: LlmConfig) -> Arc<Engine> {
    let setup = Setup::default();
    let mut cfg: Config = config(&setup);
    cfg.llm = llm;
    Arc::new(engine_with(setup, &cfg))
}

/// One call: a reservation request, then the call ends with `outcome`. Returns the case id.
async fn a_call(engine: &Engine, outcome: &str) -> String {
    let start = engine.start_call("user_789", "test").await.unwrap();
    engine
        .hear(
            &start.conversation_id,
            Heard::speech("Confirm reservation ABC123 for John Doe.", 2500),
        )
        .await
        .unwrap();
    engine
        .finish_call(&start.conversation_id, outcome)
        .await
        .unwrap();
    start.case_id
}

/// Waits for the case's `action` entry (summaries are written after the call, in the background).
async fn entry(engine: &Engine, case: &str, action: &str, within: Duration) -> Value {
    let t0 = std::time::Instant::now();
    loop {
        let c = engine.case(case).await.unwrap().unwrap();
        if let Some(a) = c.audit.iter().find(|a| a.action == action) {
            let mut d = a.detail.clone();
            d["actor"] = json!(a.actor);
            return d;
        }
        assert!(
            t0.elapsed() < within,
            "no {action} on the case after {within:?}: {:?}",
            c.audit
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The summary's own fields, without the record's (`source`, `model`, `ms`, `actor`).
fn own_fields(d: &Value) -> Value {
    let mut d = d.clone();
    for k in ["source", "model", "ms", "actor", "reason"] {
        d.as_object_mut().unwrap().remove(k);
    }
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_model_writes_the_hand_off_and_call_summaries_streams_and_answers_checked_json() {
    let server = ModelServer::start().await;
    let cfg = LlmConfig {
        base_url: server.base(),
        model: "smollm2-135m-instruct".into(),
        timeout_ms: 120_000,
        temperature: 0.0,
        ..LlmConfig::default()
    };
    let engine = engine_for(cfg.clone());
    let case = a_call(&engine, "transferred to +15005550006").await;
    let within = Duration::from_secs(240);
    let handoff = entry(&engine, &case, "handoff_summary", within).await;
    assert_eq!(handoff["source"], "model", "{handoff}");
    assert_eq!(handoff["actor"], "llm");
    validate(&own_fields(&handoff), &handoff_schema()).unwrap();
    let summary = entry(&engine, &case, "call_summary", within).await;
    assert_eq!(summary["source"], "model", "{summary}");
    validate(&own_fields(&summary), &summary_schema()).unwrap();
    assert!(DISPOSITIONS.contains(&summary["disposition"].as_str().unwrap()));
    eprintln!(
        "the model's hand-off summary took {} ms: {}\nits call summary {} ms: {}",
        handoff["ms"],
        own_fields(&handoff),
        summary["ms"],
        own_fields(&summary)
    );

    // Streamed: the pieces arrive one by one and make the whole.
    let llm = Llm::from_config(&LlmConfig {
        max_tokens: 24,
        ..cfg.clone()
    })
    .unwrap()
    .unwrap();
    let mut pieces = vec![];
    let whole = llm
        .chat_stream(&[Message::user("Say hello to the caller.")], |p| {
            pieces.push(p.to_string())
        })
        .await
        .unwrap();
    assert!(pieces.len() >= 3, "{pieces:?}");
    assert_eq!(pieces.concat(), whole);

    // Schema-constrained JSON, parsed and checked (the slot's pattern too).
    let route = json!({
        "type": "object",
        "properties": {
            "intent": {"type": "string", "enum": ["confirm_reservation", "request_service", "none"]},
            "room_number": {"type": "string", "pattern": "^[0-9]{3,4}$"}
        },
        "required": ["intent", "room_number"],
        "additionalProperties": false
    });
    let llm = Llm::from_config(&cfg).unwrap().unwrap();
    let v = llm
        .chat_json(
            &[
                Message::system("Route the caller's request. Answer JSON."),
                Message::user("Could I get fresh towels in room 412?"),
            ],
            "route",
            &route,
        )
        .await
        .unwrap();
    validate(&v, &route).unwrap();
}

/// A scripted OpenAI-compatible server: each path prefix is one failure (or success), and every
/// request's `Authorization` header is kept.
async fn scripted() -> (String, Arc<Mutex<Vec<String>>>) {
    async fn complete(
        axum::extract::Path(mode): axum::extract::Path<String>,
        axum::extract::State(seen): axum::extract::State<Arc<Mutex<Vec<String>>>>,
        headers: axum::http::HeaderMap,
    ) -> (axum::http::StatusCode, String) {
        seen.lock().unwrap().push(
            headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string(),
        );
        let answer = |content: &str| {
            json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]})
                .to_string()
        };
        match mode.as_str() {
            "slow" => {
                tokio::time::sleep(Duration::from_secs(10)).await;
                (axum::http::StatusCode::OK, answer("{}"))
            }
            "down" => (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "overloaded".into(),
            ),
            "prose" => (
                axum::http::StatusCode::OK,
                answer("Sure! The caller wanted a reservation."),
            ),
            "shape" => (
                axum::http::StatusCode::OK,
                answer(r#"{"summary": "Asked about a reservation."}"#),
            ),
            _ => (
                axum::http::StatusCode::OK,
                answer(
                    r#"{"summary": "Card 4111 1111 1111 1111 noted.", "disposition": "abandoned"}"#,
                ),
            ),
        }
    }
    let seen = Arc::new(Mutex::new(vec![]));
    let app = axum::Router::new()
        .route("/{mode}/v1/chat/completions", axum::routing::post(complete))
        .with_state(seen.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (base, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_failing_or_wrong_model_leaves_the_engine_s_summary_with_the_reason() {
    let (base, seen) = scripted().await;
    // SAFETY: set once, before any model client of this test reads it; no other test reads
    // this variable.
    unsafe { std::env::set_var("SWITCHBOARD_TEST_LLM_KEY", "sk-test-123") };
    let dead = format!("http://127.0.0.1:{}/v1", free_port());
    for (url, reason) in [
        (format!("{base}/slow/v1"), "timeout"),
        (format!("{base}/down/v1"), "server error"),
        (format!("{base}/prose/v1"), "invalid answer"),
        (format!("{base}/shape/v1"), "invalid answer"),
        (dead, "unreachable"),
    ] {
        let engine = engine_for(LlmConfig {
            base_url: url.clone(),
            model: "m".into(),
            api_key_env: "SWITCHBOARD_TEST_LLM_KEY".into(),
            timeout_ms: 500,
            ..LlmConfig::default()
        });
        let case = a_call(&engine, "caller hung up").await;
        let d = entry(&engine, &case, "call_summary", Duration::from_secs(5)).await;
        assert_eq!(d["source"], "engine", "{url}: {d}");
        assert_eq!(d["reason"], reason, "{url}: {d}");
        assert_eq!(d["disposition"], "abandoned");
        assert!(
            d["summary"].as_str().unwrap().contains("ABC123"),
            "the engine's summary names the request: {d}"
        );
        validate(&own_fields(&d), &summary_schema()).unwrap();
        // Not transferred: no hand-off summary.
        let c = engine.case(&case).await.unwrap().unwrap();
        assert!(!c.audit.iter().any(|a| a.action == "handoff_summary"));
    }
    // A good answer is the model's, masked; the key went as a bearer token.
    let engine = engine_for(LlmConfig {
        base_url: format!("{base}/ok/v1"),
        model: "m".into(),
        api_key_env: "SWITCHBOARD_TEST_LLM_KEY".into(),
        timeout_ms: 2000,
        ..LlmConfig::default()
    });
    let case = a_call(&engine, "caller hung up").await;
    let d = entry(&engine, &case, "call_summary", Duration::from_secs(5)).await;
    assert_eq!(d["source"], "model", "{d}");
    assert!(
        !d["summary"]
            .as_str()
            .unwrap()
            .contains("4111 1111 1111 1111"),
        "{d}"
    );
    let auth = seen.lock().unwrap().clone();
    assert_eq!(
        auth.len(),
        5,
        "one request each but the dead server's: {auth:?}"
    );
    assert!(auth.iter().all(|a| a == "Bearer sk-test-123"), "{auth:?}");
}
