//! The master agent (seed 000 "Master Agent (Router Node)"): owns the conversation and every
//! word said to the caller (seed 004: the entry point owns the request). One call to `turn`
//! takes the caller's words and the conversation's state and returns the reply, the new state
//! and what happened (dispatches, case changes, log entries) for the engine to persist.
//!
//! Per turn: honour "goodbye" and "a person, please" at any point; otherwise answer the
//! pending question (missing slots, a clarification, a yes/no confirmation, a topic choice,
//! a follow-up offer, "anything else?") or recognise a new intent; delegate to the sub-agent
//! with retries and the fallback chain (cached session data → alternative agent → degraded
//! answer → human); speak the result from the template's reply text.
//!
//! A caller's answer to a pending question stays with the sub-agent that asked: each agent
//! has its own thread and sees only that thread's history (seed 001).

use crate::agent::clock::Clock;
use crate::agent::protocol::{
    AgentInput, AgentOutput, ClarOption, Clarification, Context, ErrorCode, ErrorInfo,
    HistoryEntry, Priority, RequiredField, Status,
};
use crate::agent::registry::{Attempt, Dispatcher, unavailable};
use crate::agent::router::{RouteDecision, Router};
use crate::agent::slots::{self, DateSpec, Ordinal};
use crate::agent::speech;
use crate::config::{FieldType, MASTER_AGENT, RouterConfig, Template};
use crate::store::{CaseStatus, LogEntry, LogMetadata, LogType};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

const END_CALL: &str = "end_call";

/// Everything the master remembers about one conversation; persisted as JSON after each turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    pub id: String,
    pub caller_id: String,
    pub case_id: String,
    pub case_status: CaseStatus,
    pub channel: String,
    /// One thread per sub-agent (seed 001: each agent sees only its own thread).
    pub threads: BTreeMap<String, String>,
    pub history: Vec<Utterance>,
    pub pending: Pending,
    /// Values the caller has given (reservation number, name, …), reused across tasks.
    pub slots: Map<String, Value>,
    /// Last successful result per agent: the cached-data fallback.
    pub cache: BTreeMap<String, Value>,
    pub misunderstood: u32,
    #[serde(default)]
    pub created_at_ms: i64,
    /// 0 until the first turn is persisted.
    #[serde(default)]
    pub expires_at_ms: i64,
    pub ended: bool,
    pub escalated: bool,
    pub seq: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Utterance {
    pub role: String,
    pub content: String,
    pub timestamp: i64,
    #[serde(default)]
    pub thread: Option<String>,
    #[serde(default)]
    pub interrupted: bool,
}

/// The question the caller is expected to answer next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Pending {
    #[default]
    None,
    /// A sub-agent needs these fields for `task`.
    Slots {
        task: String,
        agent: String,
        params: Map<String, Value>,
        fields: Vec<RequiredField>,
        asks: u32,
    },
    /// A sub-agent asked the caller to choose.
    Clarify {
        task: String,
        agent: String,
        params: Map<String, Value>,
        clarification: Clarification,
        asks: u32,
    },
    /// The router was unsure between these tasks.
    TopicChoice {
        candidates: Vec<String>,
        utterance: String,
    },
    /// "Would you like me to help you make a payment?"
    FollowUp {
        task: String,
        params: Map<String, Value>,
    },
    /// "Is there anything else I can help you with?"
    AnythingElse,
}

/// The common part of a pending question: which agent asked, for which task, with what so far.
struct Asked {
    task: String,
    agent: String,
    params: Map<String, Value>,
    asks: u32,
}

/// What the telephony layer must do after speaking the reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CallAction {
    Hangup,
    Transfer { to: String },
}

/// One bot turn: the reply and everything that happened to produce it.
#[derive(Debug, Clone, Serialize)]
pub struct Turn {
    pub reply: String,
    pub intent: Option<String>,
    pub confidence: Option<f32>,
    pub agent: Option<String>,
    /// success | needs_info | error | partial (a sub-agent's), or the master's own:
    /// greeting | clarify_topic | fallback | escalated | ended | not_understood
    pub status: String,
    pub case_id: String,
    pub conversation_id: String,
    pub action: Option<CallAction>,
    pub ended: bool,
    pub attempts: Vec<Attempt>,
    /// Which fallback answered, if any: cached_data | alternative_agent | degraded | human.
    pub fallback: Option<String>,
    #[serde(skip)]
    pub case_changes: Vec<(CaseStatus, String)>,
    #[serde(skip)]
    pub audit: Vec<(String, Value)>,
    #[serde(skip)]
    pub logs: Vec<LogEntry>,
}

pub struct Master {
    pub template: Arc<Template>,
    pub router: Arc<Router>,
    pub dispatcher: Arc<Dispatcher>,
    pub clock: Arc<dyn Clock>,
    pub router_cfg: RouterConfig,
    pub history_cap: usize,
    /// Budget for one delegation including retries and fallbacks: the caller always hears
    /// something within it.
    pub turn_budget: Duration,
}

/// Builder for the turn being produced.
struct Ctx<'a> {
    conv: &'a mut Conversation,
    turn: Turn,
    deadline: Instant,
}

impl Conversation {
    pub fn new(id: String, caller_id: String, case_id: String, channel: String) -> Self {
        Self {
            id,
            caller_id,
            case_id,
            case_status: CaseStatus::New,
            channel,
            threads: BTreeMap::new(),
            history: vec![],
            pending: Pending::None,
            slots: Map::new(),
            cache: BTreeMap::new(),
            misunderstood: 0,
            created_at_ms: 0,
            expires_at_ms: 0,
            ended: false,
            escalated: false,
            seq: 0,
        }
    }

    /// Barge-in: the caller cut the bot off; keep only the part of the last bot reply that was
    /// actually heard, flagged as interrupted.
    pub fn truncate_last_reply(&mut self, heard: &str) {
        if let Some(u) = self.history.iter_mut().rev().find(|u| u.role == "agent") {
            u.content = heard.trim().to_string();
            u.interrupted = true;
        }
    }
}

impl Master {
    /// Greets the caller at the start of a conversation.
    pub fn greet(&self, conv: &mut Conversation) -> Turn {
        let mut cx = self.ctx(conv);
        let greeting = self.template.greeting.clone();
        self.say(&mut cx, &greeting, None);
        cx.turn.status = "greeting".into();
        cx.turn
    }

    /// Handles one caller utterance.
    pub async fn turn(&self, conv: &mut Conversation, text: &str) -> Turn {
        let mut cx = self.ctx(conv);
        let text = text.trim().to_string();
        let now = self.clock.now_ms();
        cx.conv.history.push(Utterance {
            role: "caller".into(),
            content: text.clone(),
            timestamp: now,
            thread: None,
            interrupted: false,
        });
        let caller = cx.conv.caller_id.clone();
        self.log(
            &mut cx,
            LogType::CallerToAgent,
            &caller,
            MASTER_AGENT,
            &text,
            LogMetadata::default(),
        );
        if cx.conv.ended {
            self.say(&mut cx, "This call has ended.", None);
            cx.turn.status = "ended".into();
            cx.turn.ended = true;
            return cx.turn;
        }
        if slots::tokens(&text).is_empty() {
            self.say(
                &mut cx,
                "Sorry, I didn't catch that. Could you say it again?",
                None,
            );
            cx.turn.status = "not_understood".into();
            return cx.turn;
        }
        self.answer(&mut cx, &text).await;
        cx.turn
    }

    fn ctx<'a>(&self, conv: &'a mut Conversation) -> Ctx<'a> {
        let turn = Turn {
            reply: String::new(),
            intent: None,
            confidence: None,
            agent: None,
            status: String::new(),
            case_id: conv.case_id.clone(),
            conversation_id: conv.id.clone(),
            action: None,
            ended: false,
            attempts: vec![],
            fallback: None,
            case_changes: vec![],
            audit: vec![],
            logs: vec![],
        };
        Ctx {
            conv,
            turn,
            deadline: Instant::now() + self.turn_budget,
        }
    }

    async fn answer(&self, cx: &mut Ctx<'_>, text: &str) {
        // "Goodbye" and "a person, please" are honoured whatever was pending.
        let global = |t: &str| t == END_CALL || Some(t) == self.template.handoff_task();
        if let Some(task) = self.router.route_keywords(text, &global) {
            cx.turn.intent = Some(task.clone());
            cx.turn.confidence = Some(1.0);
            if task == END_CALL {
                return self.end_call(cx);
            }
            return self.escalate(cx, "caller asked for a person").await;
        }
        if cx.conv.pending != Pending::None {
            self.set_case(cx, CaseStatus::InProgress, "caller answered");
        }
        match std::mem::take(&mut cx.conv.pending) {
            Pending::None => self.new_request(cx, text).await,
            Pending::Slots {
                task,
                agent,
                params,
                fields,
                asks,
            } => {
                let asked = Asked {
                    task,
                    agent,
                    params,
                    asks,
                };
                self.answer_slots(cx, text, asked, fields).await
            }
            Pending::Clarify {
                task,
                agent,
                params,
                clarification,
                asks,
            } => {
                let asked = Asked {
                    task,
                    agent,
                    params,
                    asks,
                };
                self.answer_clarify(cx, text, asked, clarification).await
            }
            Pending::TopicChoice {
                candidates,
                utterance,
            } => self.answer_topic(cx, text, candidates, utterance).await,
            Pending::FollowUp { task, params } => match slots::extract_yes_no(text) {
                Some(true) => {
                    cx.turn.intent = Some(task.clone());
                    self.start_task(cx, &task, params, text).await
                }
                Some(false) => {
                    let reply = format!("Okay. {}", self.template.anything_else);
                    self.say(cx, &reply, None);
                    cx.turn.status = "success".into();
                    cx.conv.pending = Pending::AnythingElse;
                }
                None => self.new_request(cx, text).await,
            },
            Pending::AnythingElse => {
                let short = slots::tokens(text).len() <= 3;
                match slots::extract_yes_no(text) {
                    Some(false) => self.end_call(cx),
                    Some(true) if short => {
                        self.say(cx, "Sure. What else can I help you with?", None);
                        cx.turn.status = "success".into();
                    }
                    _ => self.new_request(cx, text).await,
                }
            }
        }
    }

    /// Routes off the async workers (the embedding takes milliseconds of CPU). All tasks the
    /// template declares are ranked — not only those with a healthy agent right now — so a
    /// request whose agent is down is recognised for what it is and goes down the fallback
    /// chain instead of being mistaken for something else.
    async fn route(&self, text: &str, candidates: Option<Vec<String>>) -> RouteDecision {
        let router = self.router.clone();
        let text = text.to_string();
        let tasks: Vec<String> =
            candidates.unwrap_or_else(|| self.template.tasks.keys().cloned().collect());
        let job = tokio::task::spawn_blocking(move || {
            router.route(&text, &|t| tasks.iter().any(|x| x == t))
        });
        match job.await {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "intent router failed");
                RouteDecision::none()
            }
            Err(e) => {
                tracing::error!(error = %e, "intent router task failed");
                RouteDecision::none()
            }
        }
    }

    async fn new_request(&self, cx: &mut Ctx<'_>, text: &str) {
        let decision = self.route(text, None).await;
        cx.turn.intent = decision.task.clone();
        cx.turn.confidence = Some(decision.confidence);
        cx.turn.audit.push((
            "routed".into(),
            json!({"task": decision.task, "confidence": decision.confidence, "path": decision.path,
                   "ranked": decision.ranked.iter().take(3).collect::<Vec<_>>()}),
        ));
        match decision.task {
            Some(task) if decision.confidence >= self.router_cfg.threshold => {
                cx.conv.misunderstood = 0;
                if task == END_CALL {
                    return self.end_call(cx);
                }
                let params = self.extract_for_task(cx, &task, text);
                self.start_task(cx, &task, params, text).await
            }
            _ => {
                cx.conv.misunderstood += 1;
                if cx.conv.misunderstood >= self.router_cfg.max_failures.max(1) {
                    return self.escalate(cx, "could not understand the request").await;
                }
                let candidates: Vec<String> = decision
                    .ranked
                    .iter()
                    .filter(|s| s.task != END_CALL)
                    .take(2)
                    .map(|s| s.task.clone())
                    .collect();
                let question = match candidates.as_slice() {
                    [a, b] => self.topic_question(a, b),
                    _ => "Sorry, I didn't quite get that. Could you tell me what you're calling about?".into(),
                };
                self.ask(cx, &question, None);
                cx.turn.status = "clarify_topic".into();
                cx.conv.pending = if candidates.len() == 2 {
                    Pending::TopicChoice {
                        candidates,
                        utterance: text.to_string(),
                    }
                } else {
                    Pending::None
                };
            }
        }
    }

    /// "Is this about billing or a reservation?" — or, when both tasks share a topic,
    /// "Would you like to confirm your reservation or cancel your reservation?"
    fn topic_question(&self, a: &str, b: &str) -> String {
        let (ta, tb) = (self.template.tasks.get(a), self.template.tasks.get(b));
        match (ta, tb) {
            (Some(x), Some(y)) if x.topic != y.topic => {
                format!("Is this about {} or {}?", x.topic, y.topic)
            }
            (Some(x), Some(y)) => format!("Would you like to {} or {}?", x.phrase, y.phrase),
            _ => "Could you tell me a little more about what you need?".into(),
        }
    }

    async fn answer_topic(
        &self,
        cx: &mut Ctx<'_>,
        text: &str,
        candidates: Vec<String>,
        utterance: String,
    ) {
        let chosen = self.pick_topic(text, &candidates).await;
        match chosen {
            Some(task) => {
                cx.conv.misunderstood = 0;
                cx.turn.intent = Some(task.clone());
                cx.turn.confidence = Some(1.0);
                let combined = format!("{utterance} {text}");
                let params = self.extract_for_task(cx, &task, &combined);
                self.start_task(cx, &task, params, &utterance).await
            }
            None => {
                cx.conv.misunderstood += 1;
                if cx.conv.misunderstood >= self.router_cfg.max_failures.max(1) {
                    return self.escalate(cx, "could not understand the request").await;
                }
                // Maybe the caller simply said something new.
                self.new_request(cx, text).await
            }
        }
    }

    async fn pick_topic(&self, text: &str, candidates: &[String]) -> Option<String> {
        if let Some(o) = slots::extract_ordinal(text) {
            let i = match o {
                Ordinal::Nth(n) => n.checked_sub(1)?,
                Ordinal::Last => candidates.len().checked_sub(1)?,
            };
            return candidates.get(i).cloned();
        }
        let allowed = |t: &str| candidates.iter().any(|c| c == t);
        if let Some(t) = self.router.route_keywords(text, &allowed) {
            return Some(t);
        }
        let toks = slots::tokens(text);
        let mut hits: Vec<&String> = candidates
            .iter()
            .filter(|c| {
                self.template.tasks.get(c.as_str()).is_some_and(|spec| {
                    slots::tokens(&format!("{} {}", spec.topic, spec.phrase))
                        .iter()
                        .filter(|w| w.len() > 3 && !STOP.contains(&w.as_str()))
                        .any(|w| {
                            toks.iter()
                                .any(|t| t == w || t.trim_end_matches('s') == w.as_str())
                        })
                })
            })
            .collect();
        if hits.len() == 1 {
            return hits.pop().cloned();
        }
        let d = self.route(text, Some(candidates.to_vec())).await;
        d.task.filter(|_| d.confidence >= self.router_cfg.threshold)
    }

    /// Slot values the caller already said in the request itself.
    fn extract_for_task(&self, cx: &mut Ctx<'_>, task: &str, text: &str) -> Map<String, Value> {
        let mut params = Map::new();
        let Some(spec) = self.template.tasks.get(task) else {
            return params;
        };
        let today = self.clock.today();
        for f in spec.required.iter().chain(&spec.optional) {
            let value = match f.field_type {
                // A name is only taken from a request with an explicit cue, never guessed.
                FieldType::Name if text.to_lowercase().contains("name") => {
                    slots::extract_name(text).map(Value::from)
                }
                FieldType::Name => cx.conv.slots.get(&f.field).cloned(),
                FieldType::Text => Some(Value::from(text)),
                FieldType::Choice | FieldType::Confirm => None,
                other => extract_value(other, f.pattern.as_deref(), text, today),
            };
            if let Some(v) = value {
                if f.field_type == FieldType::Date
                    && let Some(phrase) = timeframe_phrase(text, &v)
                {
                    params.insert(format!("{}_text", f.field), Value::from(phrase));
                }
                params.insert(f.field.clone(), v);
            }
        }
        params
    }

    async fn answer_slots(
        &self,
        cx: &mut Ctx<'_>,
        text: &str,
        asked: Asked,
        fields: Vec<RequiredField>,
    ) {
        let Asked {
            task,
            agent,
            mut params,
            asks,
        } = asked;
        cx.turn.intent = Some(task.clone());
        let today = self.clock.today();
        // A yes/no confirmation is answered before anything else.
        if let Some(confirm) = fields
            .iter()
            .find(|f| FieldType::parse(&f.field_type) == FieldType::Confirm)
        {
            match slots::extract_yes_no(text) {
                Some(true) => {
                    params.insert(confirm.field.clone(), Value::Bool(true));
                    return self.dispatch(cx, &task, Some(agent), params).await;
                }
                Some(false) => {
                    let declined = self
                        .template
                        .tasks
                        .get(&task)
                        .and_then(|t| t.replies.get("declined"))
                        .cloned()
                        .unwrap_or_else(|| "Okay, I won't do that.".into());
                    let reply = format!("{declined} {}", self.template.anything_else);
                    self.say(cx, &reply, Some(&agent));
                    cx.turn.status = "success".into();
                    cx.conv.pending = Pending::AnythingElse;
                    return;
                }
                None => {}
            }
        }
        let mut got = 0;
        for f in &fields {
            let ft = FieldType::parse(&f.field_type);
            let pattern = f.validation.as_ref().and_then(|v| v.pattern.as_deref());
            let value = match ft {
                FieldType::Name => name_in(text).map(Value::from),
                FieldType::Text => Some(Value::from(text)),
                FieldType::Confirm | FieldType::Choice => None,
                other => extract_value(other, pattern, text, today),
            };
            if let Some(v) = value {
                if ft == FieldType::Name || f.field.contains("number") {
                    cx.conv.slots.insert(f.field.clone(), v.clone());
                }
                params.insert(f.field.clone(), v);
                got += 1;
            }
        }
        if got == 0 {
            // Nothing usable: maybe the caller changed the subject.
            let allowed = |t: &str| self.task_available(t) && t != task;
            if let Some(other) = self.router.route_keywords(text, &allowed) {
                cx.turn.intent = Some(other.clone());
                let p = self.extract_for_task(cx, &other, text);
                return self.start_task(cx, &other, p, text).await;
            }
            if asks >= 2 {
                return self.escalate(cx, "could not collect the details").await;
            }
            let descs: Vec<String> = fields.iter().map(|f| f.description.clone()).collect();
            let q = format!(
                "Sorry, I didn't catch {}. Could you say it again?",
                speech::join_spoken(&descs, "and")
            );
            self.ask(cx, &q, Some(&agent));
            cx.turn.status = "needs_info".into();
            cx.conv.pending = Pending::Slots {
                task,
                agent,
                params,
                fields,
                asks: asks + 1,
            };
            return;
        }
        self.dispatch(cx, &task, Some(agent), params).await
    }

    async fn answer_clarify(
        &self,
        cx: &mut Ctx<'_>,
        text: &str,
        asked: Asked,
        clar: Clarification,
    ) {
        let Asked {
            task,
            agent,
            mut params,
            asks,
        } = asked;
        cx.turn.intent = Some(task.clone());
        let field = clar.field.clone().unwrap_or_else(|| "choice".into());
        match match_option(text, &clar.options) {
            Some(i) => {
                params.insert(field, Value::from(clar.options[i].value.clone()));
                cx.turn.audit.push((
                    "clarified".into(),
                    json!({"task": task, "choice": clar.options[i].value}),
                ));
                self.dispatch(cx, &task, Some(agent), params).await
            }
            None => {
                let allowed = |t: &str| self.task_available(t) && t != task;
                if let Some(other) = self.router.route_keywords(text, &allowed) {
                    cx.turn.intent = Some(other.clone());
                    let p = self.extract_for_task(cx, &other, text);
                    return self.start_task(cx, &other, p, text).await;
                }
                if asks >= 2 {
                    return self
                        .escalate(cx, "could not resolve the clarification")
                        .await;
                }
                let q = format!("Sorry, which one? {}", options_sentence(&clar.options));
                self.ask(cx, &q, Some(&agent));
                cx.turn.status = "needs_info".into();
                cx.conv.pending = Pending::Clarify {
                    task,
                    agent,
                    params,
                    clarification: clar,
                    asks: asks + 1,
                };
            }
        }
    }

    fn task_available(&self, task: &str) -> bool {
        if task == END_CALL {
            return true;
        }
        self.dispatcher.registry.can_serve(task)
    }

    async fn start_task(
        &self,
        cx: &mut Ctx<'_>,
        task: &str,
        params: Map<String, Value>,
        _text: &str,
    ) {
        self.set_case(cx, CaseStatus::InProgress, &format!("working on {task}"));
        if Some(task) == self.template.handoff_task() {
            return self.escalate(cx, "caller asked for a person").await;
        }
        self.dispatch(cx, task, None, params).await
    }

    /// Delegates `task`, then speaks the outcome; on failure walks the fallback chain.
    async fn dispatch(
        &self,
        cx: &mut Ctx<'_>,
        task: &str,
        agent: Option<String>,
        params: Map<String, Value>,
    ) {
        let candidates = self.dispatcher.registry.candidates(task);
        let primary = agent
            .as_deref()
            .and_then(|id| candidates.iter().find(|a| a.card().id == id).cloned())
            .or_else(|| candidates.first().cloned());
        let Some(primary) = primary else {
            return self
                .fallback(cx, task, None, params, unavailable(task))
                .await;
        };
        let id = primary.card().id.clone();
        cx.turn.agent = Some(id.clone());
        let input = self.input(cx, task, &id, params.clone());
        let d = self
            .dispatcher
            .delegate(primary, input, 0, cx.deadline)
            .await;
        self.record_attempts(cx, &d.attempts);
        match d.result {
            Ok(out)
                if !(out.status == Status::Error
                    && out.error.as_ref().is_some_and(|e| e.retryable)) =>
            {
                self.speak_output(cx, task, &d.agent, &params, out)
            }
            Ok(out) => {
                let err = out.error.unwrap_or_else(|| unavailable(task));
                self.fallback(cx, task, Some(id), params, err).await
            }
            Err(e)
                if e.code == ErrorCode::InvalidOutput
                    || e.code == ErrorCode::DelegationDepthExceeded =>
            {
                self.escalate(cx, &format!("{id}: {}", e.message)).await
            }
            Err(e) => self.fallback(cx, task, Some(id), params, e).await,
        }
    }

    /// Seed 000 fallback chain: cached data → alternative agent → degraded answer → human.
    async fn fallback(
        &self,
        cx: &mut Ctx<'_>,
        task: &str,
        failed: Option<String>,
        params: Map<String, Value>,
        error: ErrorInfo,
    ) {
        self.system(
            cx,
            &format!(
                "{task} failed with {}: {}; trying fallbacks",
                error.code, error.message
            ),
        );
        // 1. Cached data from earlier in the session, re-sent to the same agent.
        if let Some(agent_id) = &failed
            && let Some(Value::Object(cached)) = cx.conv.cache.get(agent_id).cloned()
            && let Some(agent) = self.dispatcher.registry.get(agent_id)
            && Instant::now() < cx.deadline
        {
            let mut p = params.clone();
            for (k, v) in &cached {
                p.insert(format!("cached_{k}"), v.clone());
            }
            for (k, v) in &cx.conv.slots {
                p.entry(k.clone()).or_insert_with(|| v.clone());
            }
            let input = self.input(cx, task, agent_id, p.clone());
            let d = self.dispatcher.delegate(agent, input, 0, cx.deadline).await;
            self.record_attempts(cx, &d.attempts);
            if let Ok(out) = d.result
                && out.status != Status::Error
            {
                cx.turn.fallback = Some("cached_data".into());
                cx.turn.audit.push((
                    "fallback".into(),
                    json!({"task": task, "used": "cached_data"}),
                ));
                return self.speak_output(cx, task, &d.agent, &p, out);
            }
        }
        // 2. Another healthy agent that declares the task.
        let alternatives: Vec<_> = self
            .dispatcher
            .registry
            .candidates(task)
            .into_iter()
            .filter(|a| Some(&a.card().id) != failed.as_ref())
            .collect();
        for alt in alternatives {
            if Instant::now() >= cx.deadline {
                break;
            }
            let id = alt.card().id.clone();
            let input = self.input(cx, task, &id, params.clone());
            let d = self.dispatcher.delegate(alt, input, 0, cx.deadline).await;
            self.record_attempts(cx, &d.attempts);
            if let Ok(out) = d.result
                && out.status != Status::Error
            {
                cx.turn.fallback = Some("alternative_agent".into());
                cx.turn.agent = Some(id.clone());
                cx.turn.audit.push((
                    "fallback".into(),
                    json!({"task": task, "used": "alternative_agent", "agent": id}),
                ));
                return self.speak_output(cx, task, &d.agent, &params, out);
            }
        }
        // 3. A degraded answer for transient failures, if the template has one.
        let degraded = self
            .template
            .tasks
            .get(task)
            .and_then(|t| t.replies.get("degraded"));
        if let Some(text) = degraded
            && (error.retryable || error.code == ErrorCode::AgentUnavailable)
        {
            let ctx = Value::Object(params.clone());
            let reply = format!(
                "{} {}",
                speech::render(text, &ctx),
                self.template.anything_else
            );
            cx.turn.fallback = Some("degraded".into());
            cx.turn.audit.push((
                "fallback".into(),
                json!({"task": task, "used": "degraded", "error": error.code}),
            ));
            self.say(cx, &reply, failed.as_deref());
            cx.turn.status = "fallback".into();
            cx.conv.pending = Pending::AnythingElse;
            return;
        }
        // 4. A person.
        cx.turn.fallback = Some("human".into());
        self.escalate(cx, &format!("{task} failed: {}", error.message))
            .await
    }

    fn speak_output(
        &self,
        cx: &mut Ctx<'_>,
        task: &str,
        agent: &str,
        params: &Map<String, Value>,
        out: AgentOutput,
    ) {
        cx.turn.status = out.status.as_str().into();
        let spec = self.template.tasks.get(task);
        match out.status {
            Status::Success | Status::Partial => {
                cx.conv.cache.insert(agent.into(), out.data.clone());
                let mut ctx = params.clone();
                if let Value::Object(d) = &out.data {
                    ctx.extend(d.clone());
                }
                let ctx = Value::Object(ctx);
                let body = spec
                    .and_then(|s| s.replies.get("success"))
                    .map(|t| speech::render(t, &ctx))
                    .unwrap_or_else(|| "That's done.".into());
                if Some(task) == self.template.handoff_task() {
                    return self.say(cx, &body, Some(agent));
                }
                self.set_case(cx, CaseStatus::Resolved, &format!("{task} done"));
                // Offer the follow-up the sub-agent suggested, if the template knows how.
                let follow = spec.and_then(|s| s.follow_up.as_ref()).filter(|f| {
                    out.metadata.suggested_actions.contains(&f.task) && self.task_available(&f.task)
                });
                match follow {
                    Some(f) => {
                        let carried: Map<String, Value> = f
                            .carry
                            .iter()
                            .filter_map(|(to, from)| ctx.get(from).map(|v| (to.clone(), v.clone())))
                            .collect();
                        let reply = format!("{body} {}", f.question);
                        self.ask(cx, &reply, Some(agent));
                        cx.conv.pending = Pending::FollowUp {
                            task: f.task.clone(),
                            params: carried,
                        };
                    }
                    None => {
                        let reply = format!("{body} {}", self.template.anything_else);
                        self.say(cx, &reply, Some(agent));
                        cx.conv.pending = Pending::AnythingElse;
                    }
                }
            }
            Status::NeedsInfo => {
                if let Some(clar) = out.clarification {
                    let q = format!("{} {}", clar.question, options_sentence(&clar.options));
                    self.ask(cx, &q, Some(agent));
                    cx.conv.pending = Pending::Clarify {
                        task: task.into(),
                        agent: agent.into(),
                        params: params.clone(),
                        clarification: clar,
                        asks: 0,
                    };
                    return;
                }
                let confirm = out
                    .required
                    .iter()
                    .find(|f| FieldType::parse(&f.field_type) == FieldType::Confirm)
                    .cloned();
                let asking: Vec<RequiredField> = match confirm {
                    // Everything else is known: ask the yes/no question the agent phrased.
                    Some(c) if out.required.len() == 1 => {
                        self.ask(cx, &c.description, Some(agent));
                        vec![c]
                    }
                    _ => {
                        let fields: Vec<RequiredField> = out
                            .required
                            .iter()
                            .filter(|f| FieldType::parse(&f.field_type) != FieldType::Confirm)
                            .cloned()
                            .collect();
                        let descs: Vec<String> =
                            fields.iter().map(|f| f.description.clone()).collect();
                        let list = speech::join_spoken(&descs, "and");
                        let given = spec.is_some_and(|s| {
                            s.required.iter().any(|f| params.contains_key(&f.field))
                        });
                        let again = fields.iter().any(|f| params.contains_key(&f.field));
                        let q = if again {
                            format!("Sorry, I still need {list}. Could you say it again?")
                        } else if given {
                            format!("Thanks. I still need {list}.")
                        } else {
                            let phrase =
                                spec.map(|s| s.phrase.as_str()).unwrap_or("help with that");
                            format!(
                                "I'll need a bit more information to {phrase}. Can you please provide {list}?"
                            )
                        };
                        self.ask(cx, &q, Some(agent));
                        fields
                    }
                };
                cx.conv.pending = Pending::Slots {
                    task: task.into(),
                    agent: agent.into(),
                    params: params.clone(),
                    fields: asking,
                    asks: 0,
                };
            }
            Status::Error => {
                let code = out.error_code().unwrap_or(ErrorCode::UnexpectedError);
                let text = spec.and_then(|s| s.replies.get(code.as_str()));
                match text {
                    Some(t) => {
                        let reply = speech::render(t, &Value::Object(params.clone()));
                        self.ask(cx, &reply, Some(agent));
                        // Re-ask the identifying fields for a not-found answer.
                        let fields: Vec<RequiredField> = spec
                            .map(|s| {
                                s.required
                                    .iter()
                                    .filter(|f| {
                                        f.field_type != FieldType::Name
                                            && f.field_type != FieldType::Confirm
                                    })
                                    .map(|f| RequiredField {
                                        field: f.field.clone(),
                                        field_type: f.field_type.as_str().into(),
                                        description: f.description.clone(),
                                        validation: Some(crate::agent::protocol::Validation {
                                            pattern: f.pattern.clone(),
                                            example: f.example.clone(),
                                        }),
                                    })
                                    .collect()
                            })
                            .unwrap_or_default();
                        let mut p = params.clone();
                        for f in &fields {
                            p.remove(&f.field);
                        }
                        cx.conv.pending = if fields.is_empty() {
                            Pending::None
                        } else {
                            Pending::Slots {
                                task: task.into(),
                                agent: agent.into(),
                                params: p,
                                fields,
                                asks: 0,
                            }
                        };
                    }
                    None => {
                        let reply = format!(
                            "Sorry, I couldn't {} just now. {}",
                            spec.map(|s| s.phrase.as_str()).unwrap_or("do that"),
                            self.template.anything_else
                        );
                        self.say(cx, &reply, Some(agent));
                        cx.conv.pending = Pending::AnythingElse;
                    }
                }
            }
        }
    }

    async fn escalate(&self, cx: &mut Ctx<'_>, reason: &str) {
        cx.turn
            .intent
            .get_or_insert_with(|| self.template.handoff_task().unwrap_or("escalate").into());
        self.system(cx, &format!("escalating to a human: {reason}"));
        let mut reply = "Please hold while I connect you with a member of our team.".to_string();
        let mut to = self.template.human_number.clone();
        if let Some(task) = self.template.handoff_task()
            && let Some(agent) = self.dispatcher.registry.candidates(task).into_iter().next()
        {
            let id = agent.card().id.clone();
            cx.turn.agent = Some(id.clone());
            let input = self.input(cx, task, &id, slots_map(&[("reason", reason)]));
            let deadline = Instant::now() + self.dispatcher.attempt_timeout;
            let d = self.dispatcher.delegate(agent, input, 0, deadline).await;
            self.record_attempts(cx, &d.attempts);
            if let Ok(out) = d.result
                && out.status == Status::Success
            {
                if let Some(n) = out.data.get("transfer_to").and_then(Value::as_str) {
                    to = n.to_string();
                }
                if let Some(t) = self
                    .template
                    .tasks
                    .get(task)
                    .and_then(|s| s.replies.get("success"))
                {
                    reply = speech::render(t, &out.data);
                }
            }
        }
        self.set_case(cx, CaseStatus::Escalated, reason);
        self.say(cx, &reply, cx.turn.agent.clone().as_deref());
        cx.turn.status = "escalated".into();
        cx.turn.action = Some(CallAction::Transfer { to });
        cx.turn.ended = true;
        cx.conv.ended = true;
        cx.conv.escalated = true;
        cx.conv.pending = Pending::None;
    }

    fn end_call(&self, cx: &mut Ctx<'_>) {
        cx.turn.intent = Some(END_CALL.into());
        let farewell = self.template.farewell.clone();
        self.say(cx, &farewell, None);
        self.set_case(cx, CaseStatus::Closed, "caller ended the call");
        cx.turn.status = "ended".into();
        cx.turn.action = Some(CallAction::Hangup);
        cx.turn.ended = true;
        cx.conv.ended = true;
        cx.conv.pending = Pending::None;
    }

    /// Says something that expects an answer: the case waits on the customer.
    fn ask(&self, cx: &mut Ctx<'_>, text: &str, agent: Option<&str>) {
        self.say(cx, text, agent);
        self.set_case(cx, CaseStatus::WaitingCustomer, "asked the caller");
    }

    fn say(&self, cx: &mut Ctx<'_>, text: &str, agent: Option<&str>) {
        let thread = agent.and_then(|a| cx.conv.threads.get(a).cloned());
        cx.conv.history.push(Utterance {
            role: "agent".into(),
            content: text.to_string(),
            timestamp: self.clock.now_ms(),
            thread,
            interrupted: false,
        });
        let excess = cx.conv.history.len().saturating_sub(self.history_cap);
        cx.conv.history.drain(..excess);
        if !cx.turn.reply.is_empty() {
            cx.turn.reply.push(' ');
        }
        cx.turn.reply.push_str(text);
        let caller = cx.conv.caller_id.clone();
        self.log(
            cx,
            LogType::AgentToCaller,
            MASTER_AGENT,
            &caller,
            text,
            LogMetadata::default(),
        );
    }

    fn set_case(&self, cx: &mut Ctx<'_>, to: CaseStatus, note: &str) {
        let from = cx.conv.case_status;
        if from == to || cx.conv.escalated || !from.can_transition_to(to) {
            return;
        }
        cx.conv.case_status = to;
        cx.turn.case_changes.push((to, note.to_string()));
    }

    fn system(&self, cx: &mut Ctx<'_>, text: &str) {
        tracing::info!(conversation = %cx.conv.id, "{text}");
        self.log(
            cx,
            LogType::System,
            MASTER_AGENT,
            MASTER_AGENT,
            text,
            LogMetadata::default(),
        );
    }

    fn log(
        &self,
        cx: &mut Ctx<'_>,
        t: LogType,
        from: &str,
        to: &str,
        message: &str,
        metadata: LogMetadata,
    ) {
        cx.turn.logs.push(LogEntry {
            id: format!("log_{}", uuid::Uuid::new_v4().simple()),
            timestamp: self.clock.now_ms(),
            session_id: cx.conv.id.clone(),
            log_type: t,
            from: from.into(),
            to: to.into(),
            message: message.into(),
            metadata,
        });
    }

    /// Builds the protocol input for `agent`, tagging the latest caller words with its thread.
    fn input(
        &self,
        cx: &mut Ctx<'_>,
        task: &str,
        agent: &str,
        params: Map<String, Value>,
    ) -> AgentInput {
        cx.conv.seq += 1;
        let thread = cx
            .conv
            .threads
            .entry(agent.to_string())
            .or_insert_with(|| format!("thread_{}_{agent}", cx.conv.id))
            .clone();
        if let Some(u) = cx
            .conv
            .history
            .iter_mut()
            .rev()
            .find(|u| u.role == "caller")
            && u.thread.is_none()
        {
            u.thread = Some(thread.clone());
        }
        let history = cx
            .conv
            .history
            .iter()
            .filter(|u| u.thread.as_deref() == Some(thread.as_str()))
            .map(|u| HistoryEntry {
                role: u.role.clone(),
                content: u.content.clone(),
                timestamp: Some(u.timestamp),
                interrupted: u.interrupted,
            })
            .collect();
        let mut metadata = Map::new();
        metadata.insert("accessLevel".into(), json!("standard"));
        metadata.insert("language".into(), json!("en"));
        metadata.insert("caseId".into(), json!(cx.conv.case_id));
        metadata.insert("channel".into(), json!(cx.conv.channel));
        AgentInput {
            task: task.into(),
            parameters: params,
            context: Context {
                thread_id: thread,
                session_id: cx.conv.id.clone(),
                caller_id: cx.conv.caller_id.clone(),
                conversation_history: history,
                metadata,
            },
            request_id: format!("req_{:03}", cx.conv.seq),
            timestamp: self.clock.now_ms(),
            priority: Priority::Normal,
            timeout: Some(self.dispatcher.attempt_timeout.as_millis() as u64),
            retry_count: 0,
        }
    }

    fn record_attempts(&self, cx: &mut Ctx<'_>, attempts: &[Attempt]) {
        for a in attempts {
            let thread = cx.conv.threads.get(&a.agent).cloned();
            let request = json!({"task": a.task, "parameters": a.parameters, "requestId": a.request_id, "retryCount": a.retry});
            self.log(
                cx,
                LogType::AgentToAgent,
                MASTER_AGENT,
                &a.agent,
                &format!("REQUEST {request}"),
                LogMetadata {
                    message_id: Some(a.request_id.clone()),
                    thread_id: thread.clone(),
                    ..Default::default()
                },
            );
            let reply = match &a.output {
                Some(o) => serde_json::to_string(o).unwrap_or_default(),
                None => format!("{} {}", a.outcome, a.error_code.clone().unwrap_or_default()),
            };
            let performative = match a.outcome.as_str() {
                "needs_info" => "CLARIFY",
                _ => "INFORM",
            };
            self.log(
                cx,
                LogType::AgentToAgent,
                &a.agent,
                MASTER_AGENT,
                &format!("{performative} {reply}"),
                LogMetadata {
                    message_id: Some(a.request_id.clone()),
                    thread_id: thread,
                    duration: Some(a.elapsed_ms as i64),
                    success: Some(matches!(
                        a.outcome.as_str(),
                        "success" | "needs_info" | "partial"
                    )),
                    error: a.error_code.clone(),
                },
            );
            if a.retry > 0 {
                self.system(
                    cx,
                    &format!("retry {} of {} to {}", a.retry, a.task, a.agent),
                );
            }
        }
        cx.turn.attempts.extend_from_slice(attempts);
        cx.turn.audit.extend(attempts.iter().map(|a| {
            (
                "delegated".to_string(),
                json!({"agent": a.agent, "task": a.task, "requestId": a.request_id, "retry": a.retry,
                       "outcome": a.outcome, "error": a.error_code, "source": a.source}),
            )
        }));
    }
}

const STOP: &[&str] = &[
    "the",
    "one",
    "this",
    "that",
    "about",
    "your",
    "with",
    "account",
    "ending",
    "priority",
    "please",
    "reservation",
];

fn slots_map(pairs: &[(&str, &str)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), Value::from(*v)))
        .collect()
}

/// A name said alone or beside other details: "ABC123, John Doe", "John Doe and it's ABC123".
fn name_in(text: &str) -> Option<String> {
    slots::extract_name(text).or_else(|| {
        text.split([',', ';'])
            .flat_map(|part| part.split(" and "))
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .find_map(slots::extract_name)
    })
}

/// Typed extraction of one field from speech.
fn extract_value(
    ft: FieldType,
    pattern: Option<&str>,
    text: &str,
    today: chrono::NaiveDate,
) -> Option<Value> {
    match ft {
        FieldType::String => {
            let re = regex::Regex::new(pattern.unwrap_or("^[A-Z0-9]{3,12}$")).ok()?;
            slots::extract_code(text, &re).map(Value::from)
        }
        FieldType::Name => slots::extract_name(text).map(Value::from),
        FieldType::Date => slots::extract_date(text, today).map(|d| match d {
            DateSpec::Day(d) => Value::from(d.format("%Y-%m-%d").to_string()),
            DateSpec::Range { start, end } => {
                json!({"start": start.format("%Y-%m-%d").to_string(), "end": end.format("%Y-%m-%d").to_string()})
            }
        }),
        FieldType::Month => slots::extract_month(text, today).map(|m| Value::from(m.to_string_ym())),
        FieldType::Amount => slots::extract_amount_cents(text).map(|c| json!(c as f64 / 100.0)),
        FieldType::Text => Some(Value::from(text.trim())),
        FieldType::Confirm => slots::extract_yes_no(text).map(Value::Bool),
        FieldType::Choice => None,
    }
}

/// The words the caller used for a date ("next week"), for replies.
fn timeframe_phrase(text: &str, v: &Value) -> Option<String> {
    let lower = text.to_lowercase();
    for p in [
        "next week",
        "this week",
        "tomorrow",
        "today",
        "this weekend",
        "next weekend",
        "next month",
    ] {
        if lower.contains(p) {
            return Some(p.to_string());
        }
    }
    let day = v
        .as_str()
        .or_else(|| v.get("start").and_then(Value::as_str))?;
    chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d")
        .ok()
        .map(speech::spoken_date)
}

/// "You can say Personal Account ending in 4567, or Business Account ending in 7890."
fn options_sentence(options: &[ClarOption]) -> String {
    let labels: Vec<String> = options
        .iter()
        .map(|o| speech::speakable_label(&o.label))
        .collect();
    match labels.len() {
        0 => String::new(),
        2 => format!(
            "You have {} or {}.",
            with_article(&labels[0]),
            with_article(&labels[1])
        ),
        _ => format!("You can say {}.", speech::join_spoken(&labels, "or")),
    }
}

fn with_article(label: &str) -> String {
    let first = label.chars().next().map(|c| c.to_ascii_lowercase());
    let lower = label.to_lowercase();
    if lower.starts_with("reservation ")
        || lower.starts_with("the ")
        || first.is_some_and(|c| c.is_ascii_digit())
    {
        return label.to_string();
    }
    if label.split_whitespace().count() == 2 && lower.ends_with(" priority") {
        return label.to_string();
    }
    match first {
        Some('a' | 'e' | 'i' | 'o' | 'u') => format!("an {label}"),
        Some(_) => format!("a {label}"),
        None => String::new(),
    }
}

/// Which option did the caller pick? By ordinal ("the first one"), by value, or by the words
/// that set one label apart from the others ("the personal one", "the one ending in 7890").
pub fn match_option(text: &str, options: &[ClarOption]) -> Option<usize> {
    if options.is_empty() {
        return None;
    }
    let toks = slots::tokens(text);
    // Distinctive words first: "the business one" is not an ordinal.
    let label_words: Vec<Vec<String>> = options
        .iter()
        .map(|o| {
            let mut w = slots::tokens(&o.label);
            w.extend(slots::tokens(&o.value.replace('_', " ")));
            w.retain(|x| !STOP.contains(&x.as_str()) && x != "in" && x != "a" && x != "an");
            w
        })
        .collect();
    let scores: Vec<usize> = label_words
        .iter()
        .enumerate()
        .map(|(i, words)| {
            words
                .iter()
                .filter(|w| {
                    // Only words that set this option apart from every other count.
                    label_words
                        .iter()
                        .enumerate()
                        .all(|(j, other)| j == i || !other.contains(w))
                })
                .filter(|w| toks.contains(w))
                .count()
        })
        .collect();
    let best = *scores.iter().max()?;
    if best > 0 && scores.iter().filter(|s| **s == best).count() == 1 {
        return scores.iter().position(|s| *s == best);
    }
    if let Some(digits) = slots::extract_digits(text) {
        let hits: Vec<usize> = options
            .iter()
            .enumerate()
            .filter(|(_, o)| o.label.contains(&digits) || o.value.contains(&digits))
            .map(|(i, _)| i)
            .collect();
        if hits.len() == 1 {
            return Some(hits[0]);
        }
    }
    match slots::extract_ordinal(text)? {
        Ordinal::Nth(n) if n >= 1 && n <= options.len() => Some(n - 1),
        Ordinal::Last => Some(options.len() - 1),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accounts() -> Vec<ClarOption> {
        vec![
            ClarOption {
                value: "acc_456".into(),
                label: "Personal Account (ending in 4567)".into(),
            },
            ClarOption {
                value: "acc_789".into(),
                label: "Business Account (ending in 7890)".into(),
            },
        ]
    }

    #[test]
    fn clarification_answers_by_label_value_and_ordinal() {
        let o = accounts();
        assert_eq!(match_option("The personal one", &o), Some(0));
        assert_eq!(match_option("business please", &o), Some(1));
        assert_eq!(match_option("the first one", &o), Some(0));
        assert_eq!(match_option("the second one", &o), Some(1));
        assert_eq!(match_option("the last one", &o), Some(1));
        assert_eq!(
            match_option("the one ending in seven eight nine zero", &o),
            Some(1)
        );
        assert_eq!(match_option("acc 456", &o), Some(0));
        assert_eq!(match_option("the account", &o), None);
        assert_eq!(match_option("the fifth one", &o), None);
        assert_eq!(match_option("", &o), None);
    }

    #[test]
    fn options_are_spoken_naturally() {
        assert_eq!(
            options_sentence(&accounts()),
            "You have a Personal Account ending in 4567 or a Business Account ending in 7890."
        );
    }
}
