//! Sub-agents: the `SubAgent` trait, the registry that knows which agents exist, what they can
//! do and whether they are healthy (seed 003), and the dispatcher that delegates one task with
//! per-attempt timeouts, retries with backoff, a circuit breaker per agent and a bounded
//! delegation depth (seed 000 "Error Handling and Reliability", seed 001).
//!
//! No lock is held across an `.await`: agents are cloned out of the registry (`Arc`) before
//! they are called, and results are recorded afterwards.

use crate::agent::protocol::{
    AgentInput, AgentOutput, ErrorCode, ErrorInfo, ProtocolError, Status,
};
use crate::agent::reliability::{BreakerState, CircuitBreaker, RetryPolicy};
use crate::config::ReliabilityConfig;
use crate::metrics;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::time::Instant;
use tracing::Instrument;

/// What an agent declares about itself (seed 003's agent definition).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentCard {
    pub id: String,
    #[serde(default)]
    pub specialty: String,
    /// "reservations", "billing", … for in-process agents; "remote" for HTTP ones.
    #[serde(default = "remote_kind")]
    pub kind: String,
    pub tasks: Vec<String>,
    #[serde(default)]
    pub capabilities: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_url: Option<String>,
}

impl AgentCard {
    /// Registered over the API (an HTTP service), as opposed to built into the binary.
    pub fn is_remote(&self) -> bool {
        self.kind == "remote"
    }
}

fn remote_kind() -> String {
    "remote".into()
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum DispatchError {
    /// The agent could not be reached or did not answer properly at the transport level.
    #[error("agent unreachable: {0}")]
    Transport(String),
    /// The agent answered with something that is not a valid protocol message.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

#[async_trait::async_trait]
pub trait SubAgent: Send + Sync {
    fn card(&self) -> &AgentCard;
    async fn handle(&self, input: AgentInput) -> Result<AgentOutput, DispatchError>;
    /// Ok if the agent can take work. In-process agents are always healthy.
    async fn health(&self) -> Result<(), String> {
        Ok(())
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum RegistryError {
    #[error("an agent with id {0:?} is already registered")]
    Duplicate(String),
    #[error("no agent with id {0:?}")]
    Unknown(String),
    #[error("{0}")]
    Invalid(String),
    #[error("agent {0:?} is built in and cannot be removed")]
    BuiltIn(String),
    #[error("at most {0} remote agents can be registered")]
    Full(usize),
}

struct Entry {
    agent: Arc<dyn SubAgent>,
    healthy: bool,
    last_error: Option<String>,
    breaker: CircuitBreaker,
}

/// Status of one agent for `GET /v1/agents`.
#[derive(Debug, Clone, Serialize)]
pub struct AgentStatus {
    #[serde(flatten)]
    pub card: AgentCard,
    pub healthy: bool,
    pub breaker: BreakerState,
    pub consecutive_failures: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

pub struct Registry {
    entries: RwLock<BTreeMap<String, Entry>>,
    /// Registration order, so the first-declared agent of a task is its primary.
    order: RwLock<Vec<String>>,
    breaker_failures: u32,
    breaker_open: Duration,
}

impl Registry {
    pub fn new(cfg: &ReliabilityConfig) -> Self {
        Self {
            entries: RwLock::new(BTreeMap::new()),
            order: RwLock::new(vec![]),
            breaker_failures: cfg.breaker_failures,
            breaker_open: Duration::from_secs(cfg.breaker_open_secs),
        }
    }

    // Registry locks guard plain maps updated by single assignments; a panic elsewhere
    // cannot leave them inconsistent, so poisoning is recovered rather than propagated.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Entry>> {
        self.entries.read().unwrap_or_else(|p| p.into_inner())
    }
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Entry>> {
        self.entries.write().unwrap_or_else(|p| p.into_inner())
    }
    fn order(&self) -> Vec<String> {
        self.order.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn register(&self, agent: Arc<dyn SubAgent>) -> Result<(), RegistryError> {
        let card = agent.card().clone();
        if card.id.trim().is_empty() {
            return Err(RegistryError::Invalid("agent id is empty".into()));
        }
        if card.tasks.is_empty() {
            return Err(RegistryError::Invalid(format!(
                "agent {} declares no tasks",
                card.id
            )));
        }
        if card.id.len() > 64 || card.id.chars().any(|c| c.is_control() || c == '/') {
            return Err(RegistryError::Invalid(
                "agent id must be at most 64 characters, no '/' or control characters".into(),
            ));
        }
        let mut entries = self.write();
        if entries.contains_key(&card.id) {
            return Err(RegistryError::Duplicate(card.id));
        }
        entries.insert(
            card.id.clone(),
            Entry {
                agent,
                healthy: true,
                last_error: None,
                breaker: CircuitBreaker::new(self.breaker_failures, self.breaker_open),
            },
        );
        drop(entries);
        self.order
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(card.id);
        Ok(())
    }

    /// Registers a remote agent unless `max` remote agents are already registered.
    pub fn register_remote(
        &self,
        agent: Arc<dyn SubAgent>,
        max: usize,
    ) -> Result<(), RegistryError> {
        let remote = self
            .read()
            .values()
            .filter(|e| e.agent.card().is_remote())
            .count();
        if remote >= max {
            return Err(RegistryError::Full(max));
        }
        self.register(agent)
    }

    /// Removes any agent, built in or not: for wiring in-process (a deployment's own agent in
    /// place of a demo one, tests). The API uses [`Registry::deregister`].
    pub fn remove_any(&self, id: &str) -> Result<(), RegistryError> {
        if self.write().remove(id).is_none() {
            return Err(RegistryError::Unknown(id.into()));
        }
        self.order
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|x| x != id);
        Ok(())
    }

    /// Removes a remote agent. Built-in agents stay: the template's tasks depend on them.
    pub fn deregister(&self, id: &str) -> Result<(), RegistryError> {
        let mut entries = self.write();
        match entries.get(id) {
            None => return Err(RegistryError::Unknown(id.into())),
            Some(e) if !e.agent.card().is_remote() => {
                return Err(RegistryError::BuiltIn(id.into()));
            }
            Some(_) => {}
        }
        entries.remove(id);
        drop(entries);
        self.order
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|x| x != id);
        Ok(())
    }

    pub fn get(&self, id: &str) -> Option<Arc<dyn SubAgent>> {
        self.read().get(id).map(|e| e.agent.clone())
    }

    pub fn status(&self) -> Vec<AgentStatus> {
        let now = Instant::now();
        let entries = self.read();
        self.order()
            .iter()
            .filter_map(|id| entries.get(id))
            .map(|e| AgentStatus {
                card: e.agent.card().clone(),
                healthy: e.healthy,
                breaker: e.breaker.state(now),
                consecutive_failures: e.breaker.consecutive_failures(),
                last_error: e.last_error.clone(),
            })
            .collect()
    }

    /// Agents that declare `task`, are healthy and whose breaker lets calls through, primary first.
    pub fn candidates(&self, task: &str) -> Vec<Arc<dyn SubAgent>> {
        let now = Instant::now();
        let entries = self.read();
        self.order()
            .iter()
            .filter_map(|id| entries.get(id))
            .filter(|e| e.healthy && e.breaker.routable(now))
            .filter(|e| e.agent.card().tasks.iter().any(|t| t == task))
            .map(|e| e.agent.clone())
            .collect()
    }

    pub fn can_serve(&self, task: &str) -> bool {
        !self.candidates(task).is_empty()
    }

    /// Polls every agent's health once and records the result.
    /// Asks every agent for its health at once; an agent that has not answered within 3 s is
    /// unhealthy.
    pub async fn refresh_health(&self) {
        let agents: Vec<Arc<dyn SubAgent>> =
            self.read().values().map(|e| e.agent.clone()).collect();
        let checks = agents.iter().map(|a| async move {
            match tokio::time::timeout(Duration::from_secs(3), a.health()).await {
                Ok(r) => r,
                Err(_) => Err("health check timed out".to_string()),
            }
        });
        let results = futures_util::future::join_all(checks).await;
        for (agent, result) in agents.iter().zip(results) {
            let id = &agent.card().id;
            if let Some(e) = self.write().get_mut(id) {
                match result {
                    Ok(()) => {
                        if !e.healthy {
                            tracing::info!(agent = %id, "agent is healthy again");
                        }
                        e.healthy = true;
                        e.last_error = None;
                    }
                    Err(err) => {
                        if e.healthy {
                            tracing::warn!(agent = %id, error = %err, "agent marked unhealthy");
                        }
                        e.healthy = false;
                        e.last_error = Some(err);
                    }
                }
            }
        }
    }

    fn allow(&self, id: &str) -> bool {
        self.write()
            .get_mut(id)
            .is_some_and(|e| e.breaker.allow(Instant::now()))
    }

    fn record(&self, id: &str, ok: bool, error: Option<String>) {
        if let Some(e) = self.write().get_mut(id) {
            if ok {
                e.breaker.record_success();
            } else {
                e.breaker.record_failure(Instant::now());
                e.last_error = error;
                if e.breaker.state(Instant::now()) == BreakerState::Open {
                    tracing::warn!(agent = %id, "circuit breaker open");
                }
            }
            // Agent ids are the registry's (built in or registered by an admin).
            let open = e.breaker.state(Instant::now()) == BreakerState::Open;
            metrics::count(
                metrics::AGENT_CALLS,
                &[("agent", id), ("result", if ok { "ok" } else { "error" })],
                1.0,
            );
            metrics::gauge_set(
                metrics::AGENT_BREAKER_OPEN,
                &[("agent", id)],
                if open { 1.0 } else { 0.0 },
            );
        }
    }
}

/// One call to one agent, as recorded in the turn outcome and the central log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attempt {
    pub agent: String,
    pub task: String,
    pub request_id: String,
    pub retry: u32,
    pub depth: u32,
    /// success | needs_info | error | partial | timeout | unreachable | invalid_output | skipped
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    pub parameters: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub elapsed_ms: u64,
    pub output: Option<AgentOutput>,
}

/// The result of delegating a task to one agent, retries included.
#[derive(Debug, Clone)]
pub struct Delegation {
    pub agent: String,
    pub result: Result<AgentOutput, ErrorInfo>,
    pub attempts: Vec<Attempt>,
}

pub struct Dispatcher {
    pub registry: Arc<Registry>,
    pub retry: RetryPolicy,
    pub attempt_timeout: Duration,
    pub max_depth: u32,
}

impl Dispatcher {
    pub fn new(registry: Arc<Registry>, cfg: &ReliabilityConfig) -> Self {
        Self {
            registry,
            retry: RetryPolicy::from_config(cfg),
            attempt_timeout: Duration::from_millis(cfg.task_timeout_ms),
            max_depth: cfg.max_delegation_depth,
        }
    }

    /// Delegates `input` to `agent`: each attempt bounded by the timeout, retryable errors
    /// retried with backoff, and a `partial` answer carrying `data.delegate = {task, parameters}`
    /// followed to the delegated task at depth + 1, up to `max_depth`. Nothing goes out after
    /// `deadline`: attempts are cut to it and a retry that would not fit is not made.
    pub async fn delegate(
        &self,
        agent: Arc<dyn SubAgent>,
        input: AgentInput,
        depth: u32,
        deadline: Instant,
    ) -> Delegation {
        let mut attempts = vec![];
        let mut agent = agent;
        let mut input = input;
        let mut depth = depth;
        loop {
            let (result, mut tries) = self
                .call_with_retries(&agent, &input, depth, deadline)
                .await;
            attempts.append(&mut tries);
            let agent_id = agent.card().id.clone();
            let next = match &result {
                Ok(out) if out.status == Status::Partial => delegate_target(out),
                _ => None,
            };
            let Some((task, params)) = next else {
                return Delegation {
                    agent: agent_id,
                    result,
                    attempts,
                };
            };
            if depth + 1 > self.max_depth {
                tracing::warn!(agent = %agent_id, task, depth, "delegation depth exceeded");
                return Delegation {
                    agent: agent_id,
                    result: Err(ErrorInfo {
                        code: ErrorCode::DelegationDepthExceeded,
                        message: format!("delegation chain longer than {}", self.max_depth),
                        details: json!({"task": task}),
                        retryable: false,
                    }),
                    attempts,
                };
            }
            let Some(next_agent) = self.registry.candidates(&task).into_iter().next() else {
                return Delegation {
                    agent: agent_id,
                    result: Err(unavailable(&task)),
                    attempts,
                };
            };
            depth += 1;
            input.task = task;
            input.parameters = params;
            input.request_id = format!("{}.{depth}", input.request_id);
            input.retry_count = 0;
            agent = next_agent;
        }
    }

    async fn call_with_retries(
        &self,
        agent: &Arc<dyn SubAgent>,
        input: &AgentInput,
        depth: u32,
        deadline: Instant,
    ) -> (Result<AgentOutput, ErrorInfo>, Vec<Attempt>) {
        let id = agent.card().id.clone();
        let mut attempts = vec![];
        let mut retry = 0;
        loop {
            let mut input = input.clone();
            input.retry_count = retry;
            let started = Instant::now();
            let limit = self
                .attempt_timeout
                .min(deadline.saturating_duration_since(started));
            let result = if limit.is_zero() {
                Err(ErrorInfo {
                    code: ErrorCode::TimeoutError,
                    message: "no time left in this turn's budget".into(),
                    details: Value::Null,
                    retryable: false,
                })
            } else if self.registry.allow(&id) {
                let span = tracing::info_span!(
                    "subagent",
                    agent = %id,
                    task = %input.task,
                    retry
                );
                match tokio::time::timeout(limit, agent.handle(input.clone()))
                    .instrument(span)
                    .await
                {
                    Err(_) => Err(ErrorInfo {
                        code: ErrorCode::TimeoutError,
                        message: format!("{id} did not answer within {} ms", limit.as_millis()),
                        details: Value::Null,
                        retryable: true,
                    }),
                    Ok(Err(DispatchError::Transport(e))) => Err(ErrorInfo {
                        code: ErrorCode::NetworkError,
                        message: e,
                        details: Value::Null,
                        retryable: true,
                    }),
                    Ok(Err(DispatchError::Protocol(p))) => Err(ErrorInfo {
                        code: p.code,
                        message: p.message,
                        details: Value::Null,
                        retryable: false,
                    }),
                    Ok(Ok(out)) => match out.validate(&input) {
                        Ok(()) => Ok(out),
                        Err(p) => Err(ErrorInfo {
                            code: p.code,
                            message: p.message,
                            details: Value::Null,
                            retryable: false,
                        }),
                    },
                }
            } else {
                Err(unavailable(&input.task))
            };
            let elapsed_ms = started.elapsed().as_millis() as u64;
            // An agent that answered with a well-formed error is up; only transport, timeout,
            // protocol and retryable upstream errors count against its breaker.
            let failed_call = match &result {
                Ok(out) => out.error.as_ref().is_some_and(|e| e.retryable),
                Err(e) => e.code != ErrorCode::AgentUnavailable,
            };
            if result.is_ok() || failed_call {
                let err_text = match &result {
                    Ok(out) => out.error.as_ref().map(|e| e.message.clone()),
                    Err(e) => Some(e.message.clone()),
                };
                self.registry.record(&id, !failed_call, err_text);
            }
            attempts.push(attempt_record(
                &id, &input, retry, depth, &result, elapsed_ms,
            ));
            let retryable = match &result {
                Ok(out) => {
                    out.status == Status::Error && out.error.as_ref().is_some_and(|e| e.retryable)
                }
                Err(e) => e.retryable,
            };
            let delay = self.retry.delay(retry);
            let fits = Instant::now() + delay < deadline;
            if retryable && fits && self.retry.should_retry(retry, true) {
                metrics::count(metrics::AGENT_RETRIES, &[("agent", &id)], 1.0);
                tracing::info!(agent = %id, task = %input.task, retry = retry + 1, delay_ms = delay.as_millis() as u64, "retrying");
                tokio::time::sleep(delay).await;
                retry += 1;
                continue;
            }
            return (result, attempts);
        }
    }
}

fn delegate_target(out: &AgentOutput) -> Option<(String, serde_json::Map<String, Value>)> {
    let d = out.data.get("delegate")?;
    let task = d.get("task")?.as_str()?.to_string();
    let params = d
        .get("parameters")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    Some((task, params))
}

pub fn unavailable(task: &str) -> ErrorInfo {
    ErrorInfo {
        code: ErrorCode::AgentUnavailable,
        message: format!("no healthy agent can do {task}"),
        details: Value::Null,
        retryable: false,
    }
}

fn attempt_record(
    agent: &str,
    input: &AgentInput,
    retry: u32,
    depth: u32,
    result: &Result<AgentOutput, ErrorInfo>,
    elapsed_ms: u64,
) -> Attempt {
    let (outcome, error_code, source, output) = match result {
        Ok(out) => (
            out.status.as_str().to_string(),
            out.error.as_ref().map(|e| e.code.as_str().to_string()),
            out.metadata.source.clone(),
            Some(out.clone()),
        ),
        Err(e) => (
            match e.code {
                ErrorCode::TimeoutError => "timeout",
                ErrorCode::NetworkError => "unreachable",
                ErrorCode::InvalidOutput => "invalid_output",
                ErrorCode::AgentUnavailable => "skipped",
                _ => "error",
            }
            .to_string(),
            Some(e.code.as_str().to_string()),
            None,
            None,
        ),
    };
    Attempt {
        agent: agent.into(),
        task: input.task.clone(),
        request_id: input.request_id.clone(),
        retry,
        depth,
        outcome,
        error_code,
        parameters: Value::Object(input.parameters.clone()),
        source,
        elapsed_ms,
        output,
    }
}
