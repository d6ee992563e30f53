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

/// Whether the server on `port` says its model is loaded (`GET /health` → 200) within `within`.
async fn loaded(port: u16, within: Duration) -> bool {
    let t0 = std::time::Instant::now();
    let url = format!("http://127.0.0.1:{port}/health");
    while t0.elapsed() < within {
        if let Ok(r) = switchboard::net::get(&url).await
            && r.status() == 200
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
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
        // llama.cpp's server listens while it is still loading the model and answers 503
        // ("Loading model") until then: wait for its health check, not only for the port (a
        // busy machine loads slowly, and a first request then failed as a server error).
        if listening(port, 600).await && loaded(port, Duration::from_secs(600)).await {
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
    // On a turn's path: an unsure turn is routed by the real model (JSON of the template's
    // schema, checked), and a question out of scope is answered, streamed clause by clause.
    let setup = Setup::default();
    let mut c = config(&setup);
    c.llm = LlmConfig {
        turn_timeout_ms: 120_000,
        filler_ms: 600_000,
        call_summary: false,
        handoff_summary: false,
        ..cfg.clone()
    };
    c.reliability.turn_budget_ms = 240_000;
    let engine = Arc::new(engine_with(setup, &c));
    for said in [UNSURE, WEATHER] {
        let (turn, clauses, took) = first_turn(&engine, said).await;
        let logs = model_logs(&engine, &turn).await;
        eprintln!(
            "{said:?}: the model's path {:?} in {took:?}: {:?} → {:?}",
            turn.model,
            logs.iter().map(|l| &l.message).collect::<Vec<_>>(),
            turn.reply
        );
        assert!(
            turn.model.is_some_and(|m| m.starts_with("route")),
            "{turn:?}"
        );
        // The routing answer is valid JSON of the schema (else the entry says it failed).
        assert_eq!(logs[0].metadata.success, Some(true), "{logs:?}");
        let routed: Value = serde_json::from_str(&logs[0].message).unwrap();
        validate(
            &routed,
            &switchboard::agent::master::model::route_schema(&engine.template),
        )
        .unwrap();
        if let Some(answer) = logs.get(1)
            && answer.metadata.success == Some(true)
        {
            // What was streamed is what was said.
            assert_eq!(clauses.join(" "), answer.message);
            assert!(turn.reply.contains(&answer.message));
        }
    }
    // The answer alone (no routing): a question out of scope is answered by the real model,
    // streamed; what the caller heard is what was streamed, and the first clause came first.
    let setup = Setup::default();
    c.llm.route = false;
    let engine = Arc::new(engine_with(setup, &c));
    let (turn, clauses, took) = first_turn(&engine, WEATHER).await;
    assert_eq!(turn.model, Some("answer"));
    let logs = model_logs(&engine, &turn).await;
    let (_, audit) = turn.audit.iter().find(|(a, _)| a == "model").unwrap();
    eprintln!(
        "answered in {took:?}, first clause after {} ms: {clauses:?} ({audit})",
        audit["first_clause_ms"]
    );
    if logs[0].metadata.success == Some(true) {
        assert_eq!(clauses.join(" "), logs[0].message);
        assert_eq!(turn.reply, logs[0].message);
        assert!(audit["first_clause_ms"].as_u64().unwrap() <= audit["ms"].as_u64().unwrap());
    } else {
        // Refused by the filter: nothing of it was said.
        assert!(clauses.is_empty(), "{clauses:?}");
        assert_eq!(audit["fallback"], "invalid answer");
    }

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_failing_or_wrong_model_leaves_the_engine_s_summary_with_the_reason() {
    let ok = |json: &'static str| Script {
        json,
        answer: &[],
        status: 200,
        delay_ms: 0,
    };
    let (base, seen) = scripted(vec![
        (
            "slow",
            Script {
                delay_ms: 10_000,
                ..ok("{}")
            },
        ),
        (
            "down",
            Script {
                status: 503,
                ..ok("")
            },
        ),
        ("prose", ok("Sure! The caller wanted a reservation.")),
        ("shape", ok(r#"{"summary": "Asked about a reservation."}"#)),
        (
            "ok",
            ok(r#"{"summary": "Card 4111 1111 1111 1111 noted.", "disposition": "abandoned"}"#),
        ),
    ])
    .await;
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
    let auth: Vec<Value> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|r| r["authorization"].clone())
        .collect();
    assert_eq!(
        auth.len(),
        5,
        "one request each but the dead server's: {auth:?}"
    );
    assert!(auth.iter().all(|a| a == "Bearer sk-test-123"), "{auth:?}");
}

/// What a scripted OpenAI-compatible server answers, by the first part of its path (after
/// `delay_ms`, with `status`): a request for one answer gets `json` as the message (a routing
/// answer, a summary — or anything else); a streamed one gets `answer`'s pieces (`~N ` before a
/// piece: wait N ms first).
#[derive(Clone)]
struct Script {
    json: &'static str,
    answer: &'static [&'static str],
    status: u16,
    delay_ms: u64,
}

/// Every request a scripted server received: its JSON body, with the request's `Authorization`
/// header added as `authorization`.
type Seen = Arc<Mutex<Vec<Value>>>;

async fn scripted(scripts: Vec<(&'static str, Script)>) -> (String, Seen) {
    type St = (Arc<Vec<(&'static str, Script)>>, Seen);
    async fn complete(
        axum::extract::Path(mode): axum::extract::Path<String>,
        axum::extract::State((scripts, seen)): axum::extract::State<St>,
        headers: axum::http::HeaderMap,
        axum::Json(body): axum::Json<Value>,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        let mut kept = body.clone();
        kept["authorization"] = json!(
            headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
        );
        seen.lock().unwrap().push(kept);
        let s = scripts
            .iter()
            .find(|(m, _)| *m == mode)
            .map(|(_, s)| s.clone())
            .unwrap();
        tokio::time::sleep(Duration::from_millis(s.delay_ms)).await;
        let status = axum::http::StatusCode::from_u16(s.status).unwrap();
        if !status.is_success() {
            return (status, "overloaded").into_response();
        }
        if body["stream"] == true {
            let pieces: Vec<String> = s.answer.iter().map(|p| p.to_string()).collect();
            let events = async_stream(pieces);
            return axum::response::Response::builder()
                .header("content-type", "text/event-stream")
                .body(axum::body::Body::from_stream(events))
                .unwrap();
        }
        let content = s.json;
        axum::Json(json!({"choices": [{"index": 0,
            "message": {"role": "assistant", "content": content}}]}))
        .into_response()
    }
    /// The pieces as server-sent events, each after its `~N` wait.
    fn async_stream(
        pieces: Vec<String>,
    ) -> impl futures_util::Stream<Item = Result<String, std::io::Error>> {
        futures_util::stream::unfold((pieces.into_iter(), false), |(mut it, done)| async move {
            if done {
                return None;
            }
            match it.next() {
                Some(p) => {
                    let (wait, text) = match p.strip_prefix('~') {
                        Some(rest) => {
                            let (n, t) = rest.split_once(' ').unwrap();
                            (n.parse().unwrap(), t.to_string())
                        }
                        None => (0, p),
                    };
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                    let ev = json!({"choices": [{"index": 0, "delta": {"content": text}}]});
                    Some((Ok(format!("data: {ev}\n\n")), (it, false)))
                }
                None => Some((Ok("data: [DONE]\n\n".to_string()), (it, true))),
            }
        })
    }
    let seen: Seen = Arc::new(Mutex::new(vec![]));
    let app = axum::Router::new()
        .route("/{mode}/v1/chat/completions", axum::routing::post(complete))
        .with_state((Arc::new(scripts), seen.clone()));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (base, seen)
}

/// The central log's entries of the model in `turn`'s conversation.
async fn model_logs(
    engine: &Engine,
    turn: &switchboard::agent::master::Turn,
) -> Vec<switchboard::store::LogEntry> {
    engine
        .logs(switchboard::store::LogQuery {
            session_id: Some(turn.conversation_id.clone()),
            agent: Some("llm".into()),
            ..Default::default()
        })
        .await
        .unwrap()
}

const UNSURE: &str = "Is my stay with you guys still on? It's under a BC123, John Doe.";
const WEATHER: &str =
    "What's the weather going to be like tomorrow? My card is 4111 1111 1111 1111.";

fn turn_engine(base_url: String, turn_timeout_ms: u64) -> Arc<Engine> {
    engine_for(LlmConfig {
        base_url,
        model: "front-desk".into(),
        turn_timeout_ms,
        filler_ms: 300,
        call_summary: false,
        handoff_summary: false,
        ..LlmConfig::default()
    })
}

/// One fresh conversation's first turn, with the clauses it streamed.
async fn first_turn(
    engine: &Engine,
    text: &str,
) -> (switchboard::agent::master::Turn, Vec<String>, Duration) {
    let start = engine.start_call("user_789", "test").await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(16);
    let mut heard = Heard::speech(text, 2500);
    heard.clauses = Some(&tx);
    let t0 = std::time::Instant::now();
    let turn = engine.hear(&start.conversation_id, heard).await.unwrap();
    let took = t0.elapsed();
    drop(tx);
    let mut clauses = vec![];
    while let Some(c) = rx.recv().await {
        clauses.push(c);
    }
    (turn, clauses, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_unsure_turns_the_model_routes_and_answers_within_the_budget_else_the_engine_does() {
    let ok = |json: &'static str, answer: &'static [&'static str]| Script {
        json,
        answer,
        status: 200,
        delay_ms: 0,
    };
    let (base, seen) = scripted(vec![
        (
            "route",
            ok(
                r#"{"intent": "confirm_reservation", "fields": {"reservation_number": "ABC123", "full_name": "John Doe"}}"#,
                &[],
            ),
        ),
        (
            "invented",
            ok(
                r#"{"intent": "confirm_reservation", "fields": {"reservation_number": "KTP560", "full_name": "Jane Roe"}}"#,
                &[],
            ),
        ),
        (
            "answer",
            ok(
                r#"{"intent": "out_of_scope", "fields": {}}"#,
                &["I'm sorry, I can", "'t check the weather. ", "I can help with reservations", " and your bill."],
            ),
        ),
        (
            "late",
            ok(
                r#"{"intent": "small_talk", "fields": {}}"#,
                &["~900 Thank you, ", "that's very kind of you!"],
            ),
        ),
        (
            "records",
            ok(
                r#"{"intent": "out_of_scope", "fields": {}}"#,
                &["Your booking KTP560 is confirmed for 2 nights."],
            ),
        ),
        (
            "card",
            ok(
                r#"{"intent": "out_of_scope", "fields": {}}"#,
                &["Your card 4111 1111 1111 1111 is on file."],
            ),
        ),
        (
            "chatty",
            ok(
                r#"{"intent": "small_talk", "fields": {}}"#,
                &["Your booking KTP560 is confirmed for 2 nights."],
            ),
        ),
        ("enum", ok(r#"{"intent": "fly_to_the_moon", "fields": {}}"#, &[])),
        ("prose", ok("It is about a reservation.", &[])),
        (
            "slow",
            Script {
                delay_ms: 10_000,
                ..ok(r#"{"intent": "confirm_reservation", "fields": {}}"#, &[])
            },
        ),
        (
            "down",
            Script {
                status: 503,
                ..ok("", &[])
            },
        ),
    ])
    .await;
    let plain = engine_for(LlmConfig::default());
    let (baseline, _, _) = first_turn(&plain, UNSURE).await;
    assert_eq!(baseline.status.as_str(), "clarify_topic", "{baseline:?}");
    assert_eq!(baseline.model, None);
    let (oos, _, _) = first_turn(&plain, WEATHER).await;
    assert_eq!(oos.status.as_str(), "out_of_scope");

    // 1. Routing and slots by the model: the task runs with the values the caller said.
    let engine = turn_engine(format!("{base}/route/v1"), 2000);
    let (turn, clauses, _) = first_turn(&engine, UNSURE).await;
    assert_eq!(turn.model, Some("route"));
    assert_eq!(turn.intent.as_deref(), Some("confirm_reservation"));
    assert_eq!(turn.status.as_str(), "success", "{turn:?}");
    let p = &turn.attempts.last().unwrap().parameters;
    assert_eq!(
        (p["reservation_number"].as_str(), p["full_name"].as_str()),
        (Some("ABC123"), Some("John Doe"))
    );
    assert!(
        clauses.is_empty(),
        "a routed task's reply is the engine's: {clauses:?}"
    );
    // The request carried the template's schema; the model's output is in the central log.
    let req = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(req["model"], "front-desk");
    let schema = &req["response_format"]["json_schema"]["schema"];
    assert!(
        schema["properties"]["intent"]["enum"]
            .as_array()
            .unwrap()
            .contains(&json!("cancel_reservation"))
    );
    assert_eq!(
        schema["properties"]["fields"]["properties"]["reservation_number"]["pattern"],
        "^[A-Z0-9]{6}$"
    );
    let logs = model_logs(&engine, &turn).await;
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert!(logs[0].message.contains("confirm_reservation"));
    assert_eq!(logs[0].metadata.success, Some(true));

    // 2. Values the caller never said are not taken: the engine asks for them.
    let engine = turn_engine(format!("{base}/invented/v1"), 2000);
    let (turn, _, _) = first_turn(&engine, "Is my stay with you guys still on?").await;
    assert_eq!(turn.intent.as_deref(), Some("confirm_reservation"));
    assert_eq!(turn.status.as_str(), "needs_info", "{turn:?}");
    let p = &turn.attempts.last().unwrap().parameters;
    assert_eq!(
        p,
        &json!({}),
        "the invented values were passed on: {turn:?}"
    );

    // 3. Out of scope: the model answers from the facts, streamed clause by clause; the card
    //    number never reached it.
    let engine = turn_engine(format!("{base}/answer/v1"), 2000);
    let (turn, clauses, _) = first_turn(&engine, WEATHER).await;
    assert_eq!(turn.model, Some("route+answer"));
    assert_eq!(turn.status.as_str(), "out_of_scope");
    assert_eq!(
        clauses,
        [
            "I'm sorry, I can't check the weather.",
            "I can help with reservations and your bill."
        ]
    );
    assert_eq!(turn.reply, clauses.join(" "));
    let all = serde_json::to_string(&*seen.lock().unwrap()).unwrap();
    assert!(
        !all.contains("4111 1111 1111 1111"),
        "a card number was sent to the model"
    );

    // 4. Small talk whose first clause is late: the filler first, then the answer.
    let engine = turn_engine(format!("{base}/late/v1"), 3000);
    let (turn, clauses, _) = first_turn(&engine, "You are all so lovely, honestly.").await;
    assert_eq!(turn.intent.as_deref(), Some("small_talk"), "{turn:?}");
    assert_eq!(
        clauses,
        ["One moment.", "Thank you, that's very kind of you!"]
    );
    assert_eq!(
        turn.reply,
        "One moment. Thank you, that's very kind of you!"
    );

    // 5. What the filter refuses (an invented record, a card number) is never said: the
    //    engine's answer stands.
    for mode in ["records", "card"] {
        let engine = turn_engine(format!("{base}/{mode}/v1"), 2000);
        let (turn, clauses, _) = first_turn(&engine, WEATHER).await;
        assert!(clauses.is_empty(), "{mode}: {clauses:?}");
        assert_eq!(turn.reply, oos.reply, "{mode}");
        assert_eq!(turn.model, Some("route+answer"));
    }

    // Small talk whose answer is refused: the engine's turn, and the model is not asked for
    // an answer a second time.
    let engine = turn_engine(format!("{base}/chatty/v1"), 2000);
    let before = seen.lock().unwrap().len();
    let (turn, clauses, _) = first_turn(&engine, WEATHER).await;
    assert!(clauses.is_empty(), "{clauses:?}");
    assert_eq!(turn.reply, oos.reply);
    assert_eq!(turn.intent.as_deref(), Some("out_of_scope"));
    assert_eq!(
        seen.lock().unwrap().len(),
        before + 2,
        "a route and one answer"
    );

    // 6. Slow, down, invalid, unreachable: the engine's own turn, within the model's budget.
    let dead = format!("http://127.0.0.1:{}/v1", free_port());
    for url in [
        format!("{base}/enum/v1"),
        format!("{base}/prose/v1"),
        format!("{base}/slow/v1"),
        format!("{base}/down/v1"),
        dead,
    ] {
        let engine = turn_engine(url.clone(), 500);
        let (turn, clauses, took) = first_turn(&engine, UNSURE).await;
        assert_eq!(turn.reply, baseline.reply, "{url}");
        assert_eq!(turn.status.as_str(), "clarify_topic", "{url}");
        assert_eq!(turn.model, Some("route"), "{url}");
        assert!(clauses.is_empty());
        assert!(
            took < Duration::from_secs(5),
            "{url}: the turn took {took:?}"
        );
        let logs = model_logs(&engine, &turn).await;
        assert_eq!(logs[0].metadata.success, Some(false), "{url}");
        assert!(logs[0].metadata.error.is_some(), "{url}");
    }

    // 7. A turn the engine decided never asks the model.
    let before = seen.lock().unwrap().len();
    let engine = turn_engine(format!("{base}/route/v1"), 2000);
    let (turn, _, _) = first_turn(&engine, "Confirm reservation ABC123 for John Doe.").await;
    assert_eq!(turn.model, None);
    assert_eq!(turn.status.as_str(), "success");
    assert_eq!(seen.lock().unwrap().len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_picks_its_model_an_agent_its_tier_and_the_desk_gets_the_hand_off() {
    let (base, seen) = scripted(vec![(
        "tier",
        Script {
            json: r#"{"intent": "confirm_reservation", "fields": {"reservation_number": "ABC123", "full_name": "John Doe"}}"#,
            answer: &[],
            status: 200,
            delay_ms: 0,
        },
    )])
    .await;
    // The desk taking transferred calls: it keeps what it is sent, and fails on /broken.
    let got: Seen = Arc::new(Mutex::new(vec![]));
    async fn desk(
        axum::extract::Path(which): axum::extract::Path<String>,
        axum::extract::State(got): axum::extract::State<Seen>,
        axum::Json(body): axum::Json<Value>,
    ) -> axum::http::StatusCode {
        got.lock().unwrap().push(body);
        if which == "broken" {
            axum::http::StatusCode::INTERNAL_SERVER_ERROR
        } else {
            axum::http::StatusCode::NO_CONTENT
        }
    }
    let app = axum::Router::new()
        .route("/{which}", axum::routing::post(desk))
        .with_state(got.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let desk_base = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });

    // The template names its own model, and the reservation agent a tier of its own.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("templates")).unwrap();
    let cfg0 = config(&Setup::default());
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/templates/hospitality.toml"),
    )
    .unwrap();
    let text = text.replacen(
        "id = \"reservation_agent\"",
        "id = \"reservation_agent\"\nmodel = \"reservations-tier\"",
        1,
    ) + "\n[llm]\nmodel = \"front-desk-hotel\"\n";
    std::fs::write(dir.path().join("templates/hospitality.toml"), text).unwrap();
    for (desk_path, delivered) in [("desk", true), ("broken", false)] {
        let mut cfg = cfg0.clone();
        cfg.base_dir = Some(dir.path().to_path_buf());
        cfg.llm = LlmConfig {
            base_url: format!("{base}/tier/v1"),
            model: "gateway-default".into(),
            timeout_ms: 2000,
            call_summary: false,
            handoff_url: format!("{desk_base}/{desk_path}"),
            ..LlmConfig::default()
        };
        let engine = Arc::new(engine_with(Setup::default(), &cfg));
        let start = engine.start_call("user_789", "test").await.unwrap();
        seen.lock().unwrap().clear();
        let turn = engine
            .hear(&start.conversation_id, Heard::speech(UNSURE, 2500))
            .await
            .unwrap();
        assert_eq!(turn.status.as_str(), "success", "{turn:?}");
        let reqs = seen.lock().unwrap().clone();
        let who: Vec<(&str, &str)> = reqs
            .iter()
            .map(|r| {
                (
                    r["model"].as_str().unwrap(),
                    r["response_format"]["json_schema"]["name"]
                        .as_str()
                        .unwrap(),
                )
            })
            .collect();
        assert_eq!(
            who,
            [
                ("front-desk-hotel", "route"),
                ("reservations-tier", "fields")
            ]
        );
        // The tier's schema names only its task and that task's fields.
        let tier = &reqs[1]["response_format"]["json_schema"]["schema"]["properties"];
        assert_eq!(tier["intent"]["enum"], json!(["confirm_reservation"]));
        assert!(tier["fields"]["properties"].get("room_number").is_none());

        // A warm transfer: the hand-off summary goes to the desk as it is written.
        engine
            .finish_call(&start.conversation_id, "transferred to +15005550006")
            .await
            .unwrap();
        let d = entry(
            &engine,
            &start.case_id,
            "handoff_delivered",
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(d["delivered"], delivered, "{d}");
        assert_eq!(d["to"], "+15005550006");
        let sent = got.lock().unwrap().last().cloned().unwrap();
        assert_eq!(sent["case_id"], start.case_id.as_str());
        assert_eq!(sent["to"], "+15005550006");
        let summary = entry(
            &engine,
            &start.case_id,
            "handoff_summary",
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(own_fields(&sent["summary"]), own_fields(&summary));
        validate(&own_fields(&sent["summary"]), &handoff_schema()).unwrap();
    }
    assert_eq!(got.lock().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_phone_call_the_model_s_streamed_answer_is_spoken_clause_by_clause() {
    use switchboard::testkit::simcall::{self, Script as Call, Step};
    let (base, seen) = scripted(vec![(
        "phone",
        Script {
            json: r#"{"intent": "out_of_scope", "fields": {}}"#,
            answer: &[
                "Check-in is at 3 PM, ",
                "~300 and breakfast is included with every room.",
            ],
            status: 200,
            delay_ms: 0,
        },
    )])
    .await;
    let gw = crate::twilio::gateway(|c| {
        c.llm = LlmConfig {
            base_url: format!("{base}/phone/v1"),
            model: "front-desk".into(),
            turn_timeout_ms: 5000,
            call_summary: false,
            handoff_summary: false,
            ..LlmConfig::default()
        };
    })
    .await;
    let wait = || Step::WaitBotDone { max_ms: 60_000 };
    let script = crate::twilio::signed(
        &gw,
        Call::new(
            "user_789",
            vec![
                wait(),
                // "go forward ten meters": nothing a hotel's line does.
                Step::Say(crate::twilio::ulaw_fixture("real/goforward.wav")),
                wait(),
                Step::HangUp,
            ],
        ),
    )
    .await;
    let log = simcall::run(&gw.url("/twilio/media"), &script)
        .await
        .unwrap();
    assert!(log.unexpected.is_empty(), "{:?}", log.unexpected);
    crate::twilio::idle(&gw).await;
    // The model was asked twice: the route, then the answer (streamed).
    let reqs = seen.lock().unwrap().clone();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(reqs[1]["stream"], true);
    // The master said the model's words, logged as the model's, and the caller heard them.
    let logs = gw
        .engine
        .logs(switchboard::store::LogQuery::default())
        .await
        .unwrap();
    let said: Vec<&str> = logs
        .iter()
        .filter(|l| l.log_type == switchboard::store::LogType::AgentToCaller)
        .map(|l| l.message.as_str())
        .collect();
    let answer = "Check-in is at 3 PM, and breakfast is included with every room.";
    assert_eq!(said.get(1), Some(&answer), "{said:?}");
    assert!(
        logs.iter()
            .any(|l| l.from == "llm" && l.message == answer && l.metadata.success == Some(true))
    );
    let heard = crate::twilio::heard_text(&gw.live.speech, &log).await;
    let reply = heard[1].to_lowercase();
    assert!(
        reply.contains("check") && reply.contains("breakfast") && reply.contains("every room"),
        "the caller heard {heard:?}"
    );
    // One stretch of audio for the answer, though it was synthesised clause by clause.
    assert_eq!(log.heard.len(), 2, "{heard:?}");
    // The turn is counted on the model's path.
    let page = switchboard::metrics::render();
    assert!(
        page.lines().any(|l| l
            .starts_with("switchboard_turn_latency_seconds_count{path=\"model\"}")
            && !l.ends_with(" 0")),
        "{page}"
    );
}
