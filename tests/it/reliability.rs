//! Delegation reliability on virtual time (tokio's paused clock): backoff shape, circuit
//! breaker, per-attempt timeouts, the fallback chain, INVALID_OUTPUT and bounded delegation.

use crate::common::{Setup, engine};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard::agent::agents::LocalAgent;
use switchboard::agent::clock::VirtualClock;
use switchboard::agent::data::{DataSource, DemoData};
use switchboard::agent::protocol::{AgentInput, AgentOutput, Context, ErrorCode, Priority, Status};
use switchboard::agent::registry::{AgentCard, DispatchError, Dispatcher, Registry, SubAgent};
use switchboard::agent::reliability::RetryPolicy;
use switchboard::config::{Config, SystemMode};
use tokio::time::Instant;

#[derive(Clone, Copy)]
enum Behaviour {
    FailRetryable,
    Slow,
    Malformed,
    Delegate(&'static str),
}

struct Scripted {
    card: AgentCard,
    behaviour: Behaviour,
    calls: Mutex<Vec<Instant>>,
}

impl Scripted {
    fn new(id: &str, tasks: &[&str], behaviour: Behaviour) -> Arc<Scripted> {
        Arc::new(Scripted {
            card: AgentCard {
                id: id.into(),
                specialty: "test".into(),
                kind: "test".into(),
                tasks: tasks.iter().map(|t| t.to_string()).collect(),
                capabilities: vec![],
                endpoint: None,
                health_url: None,
            },
            behaviour,
            calls: Mutex::new(vec![]),
        })
    }
}

#[async_trait::async_trait]
impl SubAgent for Scripted {
    fn card(&self) -> &AgentCard {
        &self.card
    }
    async fn handle(&self, input: AgentInput) -> Result<AgentOutput, DispatchError> {
        self.calls.lock().unwrap().push(Instant::now());
        Ok(match self.behaviour {
            Behaviour::FailRetryable => AgentOutput::error(
                &input,
                ErrorCode::ExternalApiFailure,
                "system down",
                json!(null),
                1,
            ),
            Behaviour::Slow => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                AgentOutput::success(&input, json!({}), 1)
            }
            Behaviour::Malformed => {
                let mut o = AgentOutput::success(&input, json!({}), 1);
                o.status = Status::Error; // an error status without an error object
                o
            }
            Behaviour::Delegate(next) => {
                let mut o = AgentOutput::success(
                    &input,
                    json!({"delegate": {"task": next, "parameters": {}}}),
                    1,
                );
                o.status = Status::Partial;
                o
            }
        })
    }
}

fn input(task: &str) -> AgentInput {
    AgentInput {
        task: task.into(),
        parameters: Default::default(),
        context: Context {
            thread_id: "t".into(),
            session_id: "s".into(),
            caller_id: "c".into(),
            conversation_history: vec![],
            metadata: Default::default(),
        },
        request_id: "req_1".into(),
        timestamp: 1,
        priority: Priority::Normal,
        timeout: None,
        retry_count: 0,
    }
}

fn reliability() -> switchboard::config::ReliabilityConfig {
    Config::embedded().unwrap().reliability
}

#[tokio::test(start_paused = true)]
async fn backoff_follows_the_seed_shape_on_virtual_time() {
    let registry = Arc::new(Registry::new(&reliability()));
    // Its own agent id: /metrics is the process's, and this test reads its agent's series.
    let agent = Scripted::new("flaky-backoff", &["x"], Behaviour::FailRetryable);
    registry.register(agent.clone()).unwrap();
    let d = Dispatcher {
        registry,
        retry: RetryPolicy {
            max_retries: 3,
            ..RetryPolicy::seed()
        },
        attempt_timeout: Duration::from_secs(30),
        max_depth: 3,
    };
    let t0 = Instant::now();
    let out = d
        .delegate(agent.clone(), input("x"), 0, t0 + Duration::from_secs(60))
        .await;
    let at: Vec<u128> = agent
        .calls
        .lock()
        .unwrap()
        .iter()
        .map(|t| (*t - t0).as_millis())
        .collect();
    assert_eq!(
        at,
        [0, 1000, 3000, 7000],
        "attempts after 1000, 2000, 4000 ms of backoff"
    );
    assert_eq!(
        out.attempts.iter().map(|a| a.retry).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    assert_eq!(
        out.result.unwrap().error_code(),
        Some(ErrorCode::ExternalApiFailure)
    );
    assert_eq!(
        metric("switchboard_agent_calls_total{agent=\"flaky-backoff\",result=\"error\"}"),
        Some(4.0)
    );
    assert_eq!(
        metric("switchboard_agent_retries_total{agent=\"flaky-backoff\"}"),
        Some(3.0)
    );
}

/// One series of `/metrics`' page, by its name and labels as written.
fn metric(series: &str) -> Option<f64> {
    switchboard::metrics::render()
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(start_paused = true)]
async fn no_retry_is_started_that_would_overrun_the_budget() {
    let registry = Arc::new(Registry::new(&reliability()));
    let agent = Scripted::new("flaky", &["x"], Behaviour::FailRetryable);
    registry.register(agent.clone()).unwrap();
    let d = Dispatcher {
        registry,
        retry: RetryPolicy {
            max_retries: 3,
            ..RetryPolicy::seed()
        },
        attempt_timeout: Duration::from_secs(30),
        max_depth: 3,
    };
    let t0 = Instant::now();
    d.delegate(
        agent.clone(),
        input("x"),
        0,
        t0 + Duration::from_millis(2500),
    )
    .await;
    assert_eq!(
        agent.calls.lock().unwrap().len(),
        2,
        "0 ms and 1000 ms; the 3000 ms retry would not fit"
    );
    assert!(Instant::now() - t0 < Duration::from_millis(2500));
}

#[tokio::test(start_paused = true)]
async fn circuit_breaker_stops_routing_after_five_failures_for_sixty_seconds() {
    let registry = Arc::new(Registry::new(&reliability()));
    let agent = Scripted::new("flaky-breaker", &["x"], Behaviour::FailRetryable);
    registry.register(agent.clone()).unwrap();
    let d = Dispatcher {
        registry: registry.clone(),
        retry: RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::seed()
        },
        attempt_timeout: Duration::from_secs(1),
        max_depth: 3,
    };
    for _ in 0..5 {
        assert_eq!(registry.candidates("x").len(), 1);
        d.delegate(
            agent.clone(),
            input("x"),
            0,
            Instant::now() + Duration::from_secs(5),
        )
        .await;
    }
    assert!(
        registry.candidates("x").is_empty(),
        "breaker open: not routed to"
    );
    let st = registry.status();
    assert_eq!(serde_json::to_value(&st[0]).unwrap()["breaker"], "open");
    assert_eq!(
        metric("switchboard_agent_breaker_open{agent=\"flaky-breaker\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric("switchboard_agent_calls_total{agent=\"flaky-breaker\",result=\"error\"}"),
        Some(5.0)
    );
    tokio::time::advance(Duration::from_secs(59)).await;
    assert!(registry.candidates("x").is_empty());
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(
        registry.candidates("x").len(),
        1,
        "half-open after 60 s: one trial allowed"
    );
}

#[tokio::test(start_paused = true)]
async fn delegation_depth_is_bounded() {
    let registry = Arc::new(Registry::new(&reliability()));
    let ping = Scripted::new("ping", &["ping"], Behaviour::Delegate("pong"));
    let pong = Scripted::new("pong", &["pong"], Behaviour::Delegate("ping"));
    registry.register(ping.clone()).unwrap();
    registry.register(pong.clone()).unwrap();
    let d = Dispatcher::new(registry, &reliability());
    let out = d
        .delegate(
            ping.clone(),
            input("ping"),
            0,
            Instant::now() + Duration::from_secs(10),
        )
        .await;
    assert_eq!(
        out.result.unwrap_err().code,
        ErrorCode::DelegationDepthExceeded
    );
    assert_eq!(out.attempts.len(), 4, "depth 0..=3, then cut");
    assert_eq!(
        out.attempts.iter().map(|a| a.depth).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
}

/// Replaces the template's reservation agent with `agents` (registration order = priority).
fn swap_reservation_agents(e: &switchboard::agent::engine::Engine, agents: Vec<Arc<dyn SubAgent>>) {
    e.registry.remove_any("reservation_agent").unwrap();
    for a in agents {
        e.registry.register(a).unwrap();
    }
}

const RES_TASKS: &[&str] = &[
    "confirm_reservation",
    "modify_reservation",
    "cancel_reservation",
];

#[tokio::test(start_paused = true)]
async fn timeout_then_degraded_answer_within_the_turn_budget() {
    let e = engine(Setup {
        semantic: false,
        ..Setup::default()
    });
    swap_reservation_agents(
        &e,
        vec![Scripted::new("slow_res", RES_TASKS, Behaviour::Slow)],
    );
    let c = e.start("user_789", "text").await.unwrap();
    let t0 = Instant::now();
    let t = e
        .say(&c.conversation_id, "Cancel my reservation ABC123")
        .await
        .unwrap();
    let took = Instant::now() - t0;
    assert!(
        took <= Duration::from_millis(4000),
        "caller heard something after {took:?}"
    );
    assert_eq!(
        t.attempts
            .iter()
            .map(|a| a.outcome.as_str())
            .collect::<Vec<_>>(),
        ["timeout", "timeout"]
    );
    assert_eq!(t.fallback.map(|f| f.as_str()), Some("degraded"));
    assert!(
        t.reply
            .contains("I can't reach our reservation system right now"),
        "{}",
        t.reply
    );
    assert_eq!(t.status.as_str(), "fallback");
}

#[tokio::test(start_paused = true)]
async fn alternative_agent_takes_over_when_the_primary_fails() {
    let e = engine(Setup {
        semantic: false,
        ..Setup::default()
    });
    let cfg = crate::common::config(&Setup::default());
    let template = cfg.load_template().unwrap();
    let spec = template
        .agents
        .iter()
        .find(|a| a.id == "reservation_agent")
        .unwrap()
        .clone();
    let backup = switchboard::config::AgentSpec {
        id: "reservation_backup".into(),
        ..spec
    };
    let data: Arc<dyn DataSource> = Arc::new(
        DemoData::from_toml(
            &cfg.demo_data_text().unwrap(),
            "hospitality",
            SystemMode::Up,
        )
        .unwrap(),
    );
    let clock = Arc::new(VirtualClock::new(
        0,
        chrono::NaiveDate::from_ymd_opt(2025, 11, 24).unwrap(),
    ));
    swap_reservation_agents(
        &e,
        vec![
            Scripted::new("reservation_primary", RES_TASKS, Behaviour::FailRetryable),
            Arc::new(LocalAgent::new(&backup, &template, data, clock)),
        ],
    );
    let c = e.start("user_789", "text").await.unwrap();
    let t = e
        .say(
            &c.conversation_id,
            "Confirm my reservation A B C 1 2 3, name is John Doe",
        )
        .await
        .unwrap();
    let trail: Vec<(&str, &str)> = t
        .attempts
        .iter()
        .map(|a| (a.agent.as_str(), a.outcome.as_str()))
        .collect();
    assert_eq!(
        trail,
        [
            ("reservation_primary", "error"),
            ("reservation_primary", "error"),
            ("reservation_backup", "success")
        ]
    );
    assert_eq!(t.fallback.map(|f| f.as_str()), Some("alternative_agent"));
    assert_eq!(t.agent.as_deref(), Some("reservation_backup"));
    assert!(t.reply.contains("Deluxe Suite"), "{}", t.reply);
}

#[tokio::test(start_paused = true)]
async fn malformed_sub_agent_output_is_invalid_output_and_goes_to_a_human() {
    let e = engine(Setup {
        semantic: false,
        ..Setup::default()
    });
    swap_reservation_agents(
        &e,
        vec![Scripted::new("broken_res", RES_TASKS, Behaviour::Malformed)],
    );
    let c = e.start("user_789", "text").await.unwrap();
    let t = e
        .say(&c.conversation_id, "Confirm my reservation ABC123")
        .await
        .unwrap();
    assert_eq!(t.attempts[0].outcome, "invalid_output");
    assert_eq!(t.attempts[0].error_code.as_deref(), Some("INVALID_OUTPUT"));
    assert_eq!(t.status.as_str(), "escalated");
    assert!(matches!(
        t.action,
        Some(switchboard::agent::master::EndAction::Transfer { .. })
    ));
    let case = e.case(&t.case_id).await.unwrap().unwrap();
    assert_eq!(case.status.as_str(), "escalated");
}
