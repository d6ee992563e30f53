//! The seed's worked scenarios as data files (`tests/scenarios/*.toml`), run through the real
//! engine (MiniLM router, in-process sub-agents, SQLite) on virtual time. Each turn asserts the
//! route, the statuses of every delegation attempt, the slots sent, fallbacks, and the key facts
//! of the spoken reply.

use crate::common::{Setup, engine};
use serde::Deserialize;
use serde_json::Value;
use std::path::Path;
use switchboard::config::SystemMode;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    name: String,
    template: String,
    today: String,
    caller_id: String,
    turn: Vec<TurnSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TurnSpec {
    caller: String,
    reservation_system: Option<SystemMode>,
    intent: Option<String>,
    agent: Option<String>,
    status: Option<String>,
    attempts: Option<Vec<String>>,
    errors: Option<Vec<String>>,
    params: Option<toml::Table>,
    fallback: Option<String>,
    source: Option<String>,
    #[serde(default)]
    reply_contains: Vec<String>,
    case_status: Option<String>,
    ended: Option<bool>,
    deferred_writes: Option<Vec<String>>,
}

async fn run(file: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scenarios")
        .join(file);
    let sc: Scenario = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let leak = |s: &str| -> &'static str { Box::leak(s.to_string().into_boxed_str()) };
    let e = engine(Setup {
        template: leak(&sc.template),
        today: leak(&sc.today),
        ..Setup::default()
    });
    let greeting = e.start(&sc.caller_id, "text").await.unwrap();
    let mut transcript = format!("[{}]\nbot: {}\n", sc.name, greeting.reply);
    for (i, t) in sc.turn.iter().enumerate() {
        if let Some(mode) = t.reservation_system {
            e.demo.set_reservation_system(mode);
        }
        let turn = e.say(&greeting.conversation_id, &t.caller).await.unwrap();
        transcript.push_str(&format!("caller: {}\nbot: {}\n", t.caller, turn.reply));
        let ctx = format!(
            "{transcript}\nturn {} of {}: {:#?}",
            i + 1,
            sc.name,
            turn.attempts
        );
        if let Some(x) = &t.intent {
            assert_eq!(turn.intent.as_deref(), Some(x.as_str()), "intent\n{ctx}");
        }
        if let Some(x) = &t.agent {
            assert_eq!(turn.agent.as_deref(), Some(x.as_str()), "agent\n{ctx}");
        }
        if let Some(x) = &t.status {
            assert_eq!(turn.status.as_str(), x, "status\n{ctx}");
        }
        if let Some(x) = &t.attempts {
            let got: Vec<&str> = turn.attempts.iter().map(|a| a.outcome.as_str()).collect();
            assert_eq!(got, *x, "attempt outcomes\n{ctx}");
        }
        if let Some(x) = &t.errors {
            let got: Vec<String> = turn
                .attempts
                .iter()
                .filter_map(|a| a.error_code.clone())
                .collect();
            assert_eq!(&got, x, "error codes\n{ctx}");
        }
        if let Some(x) = &t.params {
            let last = turn
                .attempts
                .last()
                .unwrap_or_else(|| panic!("no delegation\n{ctx}"));
            for (k, v) in x {
                let want: Value = serde_json::to_value(v).unwrap();
                assert_eq!(last.parameters.get(k), Some(&want), "parameter {k}\n{ctx}");
            }
        }
        if let Some(x) = &t.fallback {
            assert_eq!(
                turn.fallback.map(|f| f.as_str()),
                Some(x.as_str()),
                "fallback\n{ctx}"
            );
        } else {
            assert_eq!(turn.fallback, None, "no fallback expected\n{ctx}");
        }
        if let Some(x) = &t.source {
            let last = turn.attempts.last().expect("a delegation");
            assert_eq!(last.source.as_deref(), Some(x.as_str()), "source\n{ctx}");
        }
        for needle in &t.reply_contains {
            assert!(
                turn.reply.contains(needle.as_str()),
                "reply lacks {needle:?}\n{ctx}"
            );
        }
        assert!(
            !turn.reply.contains('{') && !turn.reply.contains('*'),
            "reply is not plain speech\n{ctx}"
        );
        if let Some(x) = t.ended {
            assert_eq!(turn.ended, x, "ended\n{ctx}");
        }
        if let Some(x) = &t.case_status {
            let case = e.case(&turn.case_id).await.unwrap().unwrap();
            assert_eq!(case.status.as_str(), x, "case status\n{ctx}");
        }
        if let Some(x) = &t.deferred_writes {
            let got: Vec<String> = e
                .demo
                .deferred_writes()
                .iter()
                .map(|w| format!("{}:{}", w.kind, w.reference))
                .collect();
            assert_eq!(&got, x, "deferred writes\n{ctx}");
        }
    }
    println!("{transcript}");
}

#[tokio::test(start_paused = true)]
async fn scenario_1_reservation_confirmation() {
    run("01_reservation_confirmation.toml").await;
}

#[tokio::test(start_paused = true)]
async fn scenario_2_billing_with_clarification() {
    run("02_billing_clarification.toml").await;
}

#[tokio::test(start_paused = true)]
async fn scenario_3_cancellation_with_failure_retry_and_cached_fallback() {
    run("03_cancellation_fallback.toml").await;
}
