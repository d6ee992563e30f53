//! The conversation engine: wires the master agent to its sub-agents, the router and the store,
//! and keeps conversations alive across turns and restarts. Each turn is persisted before its
//! reply is returned: the session state, the central log entries, the case's status changes and
//! audit actions, in one SQLite transaction run off the async workers.
//!
//! A conversation is owned by at most one turn at a time: it is taken out of the live map for
//! the turn (a second concurrent turn gets `Busy`) — no lock is held across an `.await`.

use crate::agent::agents::LocalAgent;
use crate::agent::clock::Clock;
use crate::agent::data::{DataSource, DemoData};
use crate::agent::embed::Embedder;
use crate::agent::master::model::TurnModel;
use crate::agent::master::{Conversation, Heard, Master, Turn, Undo};
use crate::agent::registry::{AgentCard, Dispatcher, Registry, RegistryError, SubAgent};
use crate::agent::remote::RemoteAgent;
use crate::agent::remote_policy::RemotePolicy;
use crate::agent::router::Router;
use crate::config::{Config, MASTER_AGENT, Template};
use crate::store::{
    Case, CaseStatus, LogEntry, LogQuery, NewCase, SessionLookup, SessionRecord, Store, StoreError,
};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Longest caller utterance accepted in one turn (a transcript of ~1 minute of speech).
pub const MAX_TEXT_CHARS: usize = 2000;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("no conversation with id {0:?}")]
    NotFound(String),
    #[error("conversation {0:?} has expired; start a new one")]
    Expired(String),
    #[error("conversation {0:?} is already handling a message; retry when it has answered")]
    Busy(String),
    #[error("{0}")]
    InvalidInput(String),
    #[error("storage failed: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Setup(String),
}

pub struct Engine {
    pub master: Master,
    pub store: Store,
    pub registry: Arc<Registry>,
    pub template: Arc<Template>,
    pub demo: Arc<DemoData>,
    pub clock: Arc<dyn Clock>,
    /// Where remote agents may live, and the client that reaches them.
    pub remote: RemotePolicy,
    remote_client: reqwest::Client,
    /// The language model, when `[llm]` names one (see `crate::llm`).
    pub llm: Option<Arc<crate::llm::Llm>>,
    session_ttl_ms: i64,
    live: Mutex<HashMap<String, Conversation>>,
    busy: Mutex<HashSet<String>>,
}

impl Engine {
    /// Builds the engine for the configured template. `embedder` is the semantic router's
    /// model (None: keyword routing only).
    pub fn build(
        cfg: &Config,
        store: Store,
        embedder: Option<Arc<dyn Embedder>>,
        clock: Arc<dyn Clock>,
    ) -> Result<Engine, EngineError> {
        let template = Arc::new(
            cfg.load_template()
                .map_err(|e| EngineError::Setup(e.to_string()))?,
        );
        let text = cfg
            .demo_data_text()
            .map_err(|e| EngineError::Setup(e.to_string()))?;
        let demo = Arc::new(
            DemoData::from_toml(&text, &template.name, cfg.demo.reservation_system)
                .map_err(EngineError::Setup)?,
        );
        let registry = Arc::new(Registry::new(&cfg.reliability));
        let data: Arc<dyn DataSource> = demo.clone();
        for agent in LocalAgent::all(&template, data, clock.clone()) {
            registry
                .register(agent)
                .map_err(|e| EngineError::Setup(e.to_string()))?;
        }
        let router = Arc::new(
            Router::new(&template, embedder, cfg.router.temperature)
                .map_err(|e| EngineError::Setup(e.to_string()))?,
        );
        let remote = RemotePolicy::new(&cfg.remote_agents);
        let remote_client = remote.client(Duration::from_millis(cfg.reliability.task_timeout_ms));
        // Remote agents registered before a restart come back (if the policy still allows them).
        for card in store.remote_agents().map_err(EngineError::Store)? {
            let card: AgentCard = match serde_json::from_value(card) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "a stored remote agent is unreadable; skipped");
                    continue;
                }
            };
            let id = card.id.clone();
            match RemoteAgent::new(card, remote_client.clone(), &remote)
                .map_err(RegistryError::Invalid)
                .and_then(|a| registry.register(Arc::new(a)))
            {
                Ok(()) => tracing::info!(agent = %id, "remote agent registered again"),
                Err(e) => {
                    tracing::warn!(agent = %id, error = %e, "stored remote agent not registered")
                }
            }
        }
        let dispatcher = Arc::new(Dispatcher::new(registry.clone(), &cfg.reliability));
        let llm = crate::llm::Llm::from_config(&cfg.llm)
            .map_err(EngineError::Setup)?
            .map(Arc::new);
        let model = llm
            .as_deref()
            .and_then(|l| TurnModel::for_template(l, &template))
            .map(Arc::new);
        let master = Master {
            template: template.clone(),
            router,
            dispatcher,
            clock: clock.clone(),
            router_cfg: cfg.router.clone(),
            history_cap: cfg.session.history_cap,
            turn_budget: Duration::from_millis(cfg.reliability.turn_budget_ms),
            model,
        };
        Ok(Engine {
            master,
            store,
            registry,
            template,
            demo,
            clock,
            remote,
            remote_client,
            llm,
            session_ttl_ms: cfg.session.ttl_secs as i64 * 1000,
            live: Mutex::new(HashMap::new()),
            busy: Mutex::new(HashSet::new()),
        })
    }

    /// Starts a conversation (and its case) and returns the greeting.
    pub async fn start(&self, caller_id: &str, channel: &str) -> Result<Turn, EngineError> {
        self.start_with_handle(caller_id, channel, "").await
    }

    /// Starts a phone call's conversation: the caller is the customer the data source knows
    /// the number as (the provider's caller id); an unknown number is the caller itself and
    /// owns no records. A caller known only by their number (which can be spoofed) is asked a
    /// second factor for billing. A caller that is not a phone number is an identity the
    /// operator's application asserted in the authenticated stream's parameters (a customer
    /// it verified itself) and is taken as given.
    pub async fn start_call(&self, number: &str, channel: &str) -> Result<Turn, EngineError> {
        if crate::agent::data::e164(number).is_none() {
            return self.start(number, channel).await;
        }
        let customer = match self.demo.customer_for_phone(number) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "phone lookup failed; the caller stays unidentified");
                None
            }
        };
        let turn = self
            .start_inner(customer.as_deref().unwrap_or(number), channel, "", true)
            .await?;
        let detail = serde_json::json!({
            "number": crate::redact::mask_phone(number),
            "customer": customer,
            "by": "phone lookup",
        });
        self.note(&turn.conversation_id, "caller_identified", detail)
            .await?;
        Ok(turn)
    }

    /// Starts a conversation a text client owns: it proves so with the handle whose SHA-256
    /// (hex) is `handle_sha256`.
    pub async fn start_with_handle(
        &self,
        caller_id: &str,
        channel: &str,
        handle_sha256: &str,
    ) -> Result<Turn, EngineError> {
        self.start_inner(caller_id, channel, handle_sha256, false)
            .await
    }

    async fn start_inner(
        &self,
        caller_id: &str,
        channel: &str,
        handle_sha256: &str,
        by_line: bool,
    ) -> Result<Turn, EngineError> {
        let caller_id = caller_id.trim();
        if !crate::agent::caller::is_valid(caller_id) {
            return Err(EngineError::InvalidInput(format!(
                "caller_id must be 1 to {} bytes of printable characters",
                crate::agent::caller::MAX_BYTES
            )));
        }
        let now = self.clock.now_ms();
        let id = format!("conv_{}", uuid::Uuid::new_v4().simple());
        let new_case = NewCase {
            session_id: id.clone(),
            customer_id: caller_id.to_string(),
            owner: MASTER_AGENT.into(),
            channel: channel.to_string(),
            priority: "normal".into(),
        };
        let case = self
            .store
            .run(move |s| s.create_case(&new_case, now))
            .await?;
        let mut conv = Conversation::new(
            id.clone(),
            caller_id.to_string(),
            case.id,
            channel.to_string(),
        );
        conv.created_at_ms = now;
        conv.handle_sha256 = handle_sha256.to_string();
        conv.by_line = by_line;
        let turn = self.master.greet(&mut conv);
        self.persist(&mut conv, &turn).await?;
        self.lock_live().insert(id, conv);
        Ok(turn)
    }

    /// One caller utterance in, the bot's reply out.
    pub async fn say(&self, id: &str, text: &str) -> Result<Turn, EngineError> {
        self.hear(id, Heard::text(text)).await
    }

    /// One caller utterance, with what the audio path knows of it (how long it was spoken).
    pub async fn hear(&self, id: &str, heard: Heard<'_>) -> Result<Turn, EngineError> {
        check_length(heard.text)?;
        let _guard = self.claim(id)?;
        let conv = self.take(id).await?;
        self.run_turn(id, conv, heard, true).await
    }

    /// The caller's words `heard` go on with the words of the last turn, whose answer they
    /// never heard (they went on before it played; see `CallConfig::continue_ms`). That turn
    /// is taken back and its words and `heard` are heard as one utterance: "It's ABC" then
    /// "123, John Doe" is one request for that booking, not a lookup that asks again and then a
    /// code of its own. A turn that changed something beyond the conversation (a task that
    /// writes, the case resolved or escalated, the call's end) is not taken back: then `heard`
    /// is heard alone, and None is returned when it is empty (nothing new was said).
    ///
    /// `whole`: the same pieces heard together by the recogniser, from the first the caller
    /// said since they last heard an answer (`Said::Speech`'s `whole`). It replaces the joined
    /// words when the turn taken back heard everything since then (`Undo::whole`); otherwise
    /// it would hear again words a turn that cannot be taken back acted on, and is not used.
    pub async fn hear_continued(
        &self,
        id: &str,
        heard: Heard<'_>,
        whole: Option<&str>,
    ) -> Result<Option<Turn>, EngineError> {
        check_length(heard.text)?;
        let _guard = self.claim(id)?;
        let mut conv = self.take(id).await?;
        let joined = conv.undo.as_ref().map(|u| match whole {
            Some(w) if u.whole && !w.trim().is_empty() => w.trim().to_string(),
            _ => crate::call::join_words(&u.words, heard.text),
        });
        if let Err(e) = joined.as_deref().map_or(Ok(()), check_length) {
            self.lock_live().insert(id.to_string(), conv);
            return Err(e);
        }
        let (conv, text, speech_ms, from_start) = match (conv.undo.take(), joined.as_deref()) {
            (Some(undo), Some(joined)) => {
                tracing::info!(conversation = %id, heard_together = undo.whole && whole.is_some(), "the last turn is taken back: the caller went on");
                let mut before = undo.before;
                // Request ids go on counting (the taken-back turn's log entries stay), and the
                // case's status is the one stored (in progress, or waiting for the customer).
                before.seq = before.seq.max(conv.seq);
                before.case_status = conv.case_status;
                let ms = undo.speech_ms.zip(heard.speech_ms).map(|(a, b)| a + b);
                (before, joined, ms, undo.whole)
            }
            _ if heard.text.trim().is_empty() => {
                self.lock_live().insert(id.to_string(), conv);
                return Ok(None);
            }
            _ => {
                tracing::info!(conversation = %id, "the last turn cannot be taken back: the caller's new words are heard alone");
                (conv, heard.text, heard.speech_ms, false)
            }
        };
        let heard = Heard {
            text,
            speech_ms,
            ..heard
        };
        self.run_turn(id, conv, heard, from_start).await.map(Some)
    }

    /// Runs one turn on `conv` (taken out of the live map; put back after) and persists it.
    /// `from_start`: `heard` is everything the caller said since they last heard an answer.
    async fn run_turn(
        &self,
        id: &str,
        mut conv: Conversation,
        heard: Heard<'_>,
        from_start: bool,
    ) -> Result<Turn, EngineError> {
        // Card numbers and security codes never go further than this: not into the history,
        // the log, a sub-agent's request or a case note (nor an undo's words).
        let redacted = crate::redact::redact(heard.text);
        let heard = Heard {
            text: &redacted,
            ..heard
        };
        let started = tokio::time::Instant::now();
        conv.undo = None;
        let before = conv.clone();
        let turn = self.master.turn(&mut conv, heard).await;
        if can_take_back(&turn, &self.template) {
            conv.undo = Some(Box::new(Undo {
                before,
                words: heard.text.to_string(),
                speech_ms: heard.speech_ms,
                whole: from_start,
            }));
        }
        self.persist(&mut conv, &turn).await?;
        tracing::info!(
            conversation = %id,
            intent = turn.intent.as_deref().unwrap_or("-"),
            agent = turn.agent.as_deref().unwrap_or("-"),
            status = turn.status.as_str(),
            fallback = turn.fallback.map_or("-", |f| f.as_str()),
            ms = started.elapsed().as_millis() as u64,
            "turn"
        );
        self.lock_live().insert(id.to_string(), conv);
        Ok(turn)
    }

    /// Barge-in: the caller interrupted the last reply after hearing only `heard`.
    pub async fn interrupted(&self, id: &str, heard: &str) -> Result<(), EngineError> {
        let _guard = self.claim(id)?;
        let mut conv = self.take(id).await?;
        conv.truncate_last_reply(heard);
        let now = self.clock.now_ms();
        conv.expires_at_ms = now + self.session_ttl_ms;
        let rec = self.record(&conv, now);
        self.store.run(move |s| s.save_session(&rec)).await?;
        self.lock_live().insert(id.to_string(), conv);
        Ok(())
    }

    /// Appends a call event (stream status, barge-in, DTMF, hang-up...) to the conversation's
    /// case audit trail, as it happens.
    pub async fn note(
        &self,
        id: &str,
        action: &str,
        detail: serde_json::Value,
    ) -> Result<(), EngineError> {
        let case_id = self.case_id(id).await?;
        let now = self.clock.now_ms();
        let action = action.to_string();
        self.store
            .run(move |s| s.append_case_action(&case_id, MASTER_AGENT, &action, &detail, now))
            .await?;
        Ok(())
    }

    /// The call behind a conversation is over: records `outcome` as the case's resolution and
    /// closes the case (an escalated case stays escalated: a person owns it now). The session
    /// stays in the store (resumable until it expires) but leaves memory.
    pub async fn finish_call(&self, id: &str, outcome: &str) -> Result<(), EngineError> {
        let _guard = self.claim(id)?;
        let mut conv = self.take(id).await?;
        let now = self.clock.now_ms();
        conv.ended = true;
        let rec = self.record(&conv, now);
        let case_id = conv.case_id.clone();
        let outcome = outcome.to_string();
        if let Some(llm) = &self.llm {
            // After the call, off every turn's path: the case gets its summaries when they come.
            let llm = llm.clone();
            let store = self.store.clone();
            let clock = self.clock.clone();
            let call = call_record(&conv, &outcome);
            tokio::spawn(async move {
                for s in crate::llm::summarize_call(&llm, &call).await {
                    let actor = if s.by_model { "llm" } else { MASTER_AGENT };
                    let (case, now) = (call.case_id.clone(), clock.now_ms());
                    if let Err(e) = store
                        .run(move |st| {
                            st.append_case_action(&case, actor, s.action, &s.detail, now)
                        })
                        .await
                    {
                        tracing::warn!(case = %call.case_id, error = %e, "could not record a summary");
                    }
                }
            });
        }
        self.store
            .run(move |s| {
                s.save_session(&rec)?;
                s.set_case_resolution(&case_id, &outcome, MASTER_AGENT, now)?;
                let status = s
                    .get_case(&case_id)?
                    .map(|c| c.status)
                    .unwrap_or(CaseStatus::Closed);
                if !matches!(status, CaseStatus::Escalated | CaseStatus::Closed) {
                    // A call handed to a person (an operator's transfer) leaves its case with them.
                    let (to, why) = if outcome.starts_with("transferred") {
                        (CaseStatus::Escalated, "call transferred")
                    } else {
                        (CaseStatus::Closed, "call ended")
                    };
                    s.set_case_status(&case_id, to, MASTER_AGENT, why, now)?;
                }
                Ok(())
            })
            .await?;
        Ok(())
    }

    async fn case_id(&self, id: &str) -> Result<String, EngineError> {
        if let Some(c) = self.lock_live().get(id) {
            return Ok(c.case_id.clone());
        }
        let key = id.to_string();
        let now = self.clock.now_ms();
        match self.store.run(move |s| s.load_session(&key, now)).await? {
            SessionLookup::Active(rec) | SessionLookup::Expired(rec) => Ok(rec.case_id),
            SessionLookup::Missing => Err(EngineError::NotFound(id.into())),
        }
    }

    /// A conversation's current state (from memory or the store).
    pub async fn conversation(&self, id: &str) -> Result<Conversation, EngineError> {
        if let Some(c) = self.lock_live().get(id) {
            return Ok(c.clone());
        }
        let _guard = self.claim(id)?;
        let conv = self.take(id).await?;
        self.lock_live().insert(id.to_string(), conv.clone());
        Ok(conv)
    }

    /// Registers a remote agent (checked against the remote-agent policy) and keeps it across
    /// restarts.
    pub async fn register_remote(&self, card: AgentCard) -> Result<String, RegistryError> {
        let agent = RemoteAgent::new(card, self.remote_client.clone(), &self.remote)
            .map_err(RegistryError::Invalid)?;
        let id = agent.card().id.clone();
        let stored = serde_json::to_value(agent.card()).unwrap_or_default();
        self.registry
            .register_remote(Arc::new(agent), self.remote.max_agents())?;
        let now = self.clock.now_ms();
        let key = id.clone();
        if let Err(e) = self
            .store
            .run(move |s| s.save_remote_agent(&key, &stored, now))
            .await
        {
            tracing::error!(agent = %id, error = %e, "could not keep the agent's registration");
        }
        Ok(id)
    }

    /// Removes a remote agent (built-in ones cannot be removed).
    pub async fn remove_agent(&self, id: &str) -> Result<(), RegistryError> {
        self.registry.deregister(id)?;
        let key = id.to_string();
        if let Err(e) = self.store.run(move |s| s.delete_remote_agent(&key)).await {
            tracing::error!(agent = %id, error = %e, "could not forget the agent's registration");
        }
        Ok(())
    }

    /// The digest of the handle a text client owns conversation `id` by (empty: none).
    pub async fn conversation_handle(&self, id: &str) -> Result<String, EngineError> {
        if let Some(c) = self.lock_live().get(id) {
            return Ok(c.handle_sha256.clone());
        }
        Ok(self.conversation(id).await?.handle_sha256)
    }

    /// The `limit` most recently updated cases (no audit trails).
    pub async fn recent_cases(&self, limit: usize) -> Result<Vec<Case>, EngineError> {
        Ok(self.store.run(move |s| s.recent_cases(limit)).await?)
    }

    pub async fn case(&self, id: &str) -> Result<Option<Case>, EngineError> {
        let id = id.to_string();
        Ok(self.store.run(move |s| s.get_case(&id)).await?)
    }

    pub async fn logs(&self, q: LogQuery) -> Result<Vec<LogEntry>, EngineError> {
        Ok(self.store.run(move |s| s.query_logs(&q)).await?)
    }

    /// Conversations held in memory.
    pub fn in_memory(&self) -> usize {
        self.lock_live().len()
    }

    /// Drops expired conversations from memory (their state stays in the store until the
    /// retention purge), and the least recently active ones beyond `max` (they are reloaded
    /// from the store when they speak again). Returns how many left memory.
    pub fn evict(&self, max: usize) -> usize {
        let now = self.clock.now_ms();
        let mut live = self.lock_live();
        let before = live.len();
        live.retain(|_, c| c.expires_at_ms == 0 || c.expires_at_ms > now);
        if live.len() > max {
            let mut by_expiry: Vec<(i64, String)> = live
                .iter()
                .filter(|(_, c)| c.expires_at_ms != 0)
                .map(|(id, c)| (c.expires_at_ms, id.clone()))
                .collect();
            by_expiry.sort_unstable();
            let excess = live.len() - max;
            for (_, id) in by_expiry.into_iter().take(excess) {
                live.remove(&id);
            }
        }
        before - live.len()
    }

    /// Deletes sessions expired and log entries written more than `retention_ms` ago. Cases
    /// and their audit trails are business records and stay.
    pub async fn purge(&self, retention_ms: i64) -> Result<(usize, usize), EngineError> {
        let now = self.clock.now_ms();
        Ok(self
            .store
            .run(move |s| {
                let sessions = s.purge_expired_sessions(now, retention_ms)?;
                let logs = s.purge_logs_before(now.saturating_sub(retention_ms))?;
                Ok((sessions, logs))
            })
            .await?)
    }

    fn lock_live(&self) -> std::sync::MutexGuard<'_, HashMap<String, Conversation>> {
        // Only whole conversations are inserted or removed: never half-updated.
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn claim(&self, id: &str) -> Result<BusyGuard<'_>, EngineError> {
        let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        if !busy.insert(id.to_string()) {
            return Err(EngineError::Busy(id.into()));
        }
        Ok(BusyGuard {
            set: &self.busy,
            id: id.to_string(),
        })
    }

    /// Takes the conversation out of memory, or loads it from the store after a restart.
    async fn take(&self, id: &str) -> Result<Conversation, EngineError> {
        let now = self.clock.now_ms();
        let cached = self.lock_live().remove(id);
        if let Some(c) = cached {
            if c.expires_at_ms == 0 || c.expires_at_ms > now {
                return Ok(c);
            }
            return Err(EngineError::Expired(id.into()));
        }
        let key = id.to_string();
        match self.store.run(move |s| s.load_session(&key, now)).await? {
            SessionLookup::Active(rec) => serde_json::from_value(rec.state).map_err(|e| {
                EngineError::Setup(format!("stored conversation {id} is unreadable: {e}"))
            }),
            SessionLookup::Expired(_) => Err(EngineError::Expired(id.into())),
            SessionLookup::Missing => Err(EngineError::NotFound(id.into())),
        }
    }

    fn record(&self, conv: &Conversation, now: i64) -> SessionRecord {
        SessionRecord {
            id: conv.id.clone(),
            caller_id: conv.caller_id.clone(),
            template: self.template.name.clone(),
            case_id: conv.case_id.clone(),
            created_at_ms: conv.created_at_ms,
            updated_at_ms: now,
            expires_at_ms: now + self.session_ttl_ms,
            state: serde_json::to_value(conv).unwrap_or_default(),
        }
    }

    async fn persist(&self, conv: &mut Conversation, turn: &Turn) -> Result<(), EngineError> {
        let now = self.clock.now_ms();
        conv.expires_at_ms = now + self.session_ttl_ms;
        let rec = self.record(conv, now);
        let logs = turn.logs.clone();
        let changes = turn.case_changes.clone();
        let audit = turn.audit.clone();
        let case_id = conv.case_id.clone();
        self.store
            .run(move |s| {
                s.save_session(&rec)?;
                s.append_logs(&logs)?;
                for (action, detail) in &audit {
                    s.append_case_action(&case_id, MASTER_AGENT, action, detail, now)?;
                }
                for (status, note) in &changes {
                    s.set_case_status(&case_id, *status, MASTER_AGENT, note, now)?;
                }
                Ok(())
            })
            .await?;
        Ok(())
    }
}

struct BusyGuard<'a> {
    set: &'a Mutex<HashSet<String>>,
    id: String,
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

/// What the language model summarises a finished call from (the caller masked).
fn call_record(conv: &Conversation, outcome: &str) -> crate::llm::CallRecord {
    use crate::agent::master::Role;
    crate::llm::CallRecord {
        case_id: conv.case_id.clone(),
        caller: crate::redact::shown_caller(&conv.caller_id),
        outcome: outcome.to_string(),
        lines: conv
            .history
            .iter()
            .map(|u| {
                let who = match u.role {
                    Role::Caller => "caller",
                    Role::Agent => "agent",
                };
                (who, u.content.clone())
            })
            .collect(),
        slots: serde_json::Value::Object(conv.slots.clone()),
    }
}

fn check_length(text: &str) -> Result<(), EngineError> {
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(EngineError::InvalidInput(format!(
            "text is longer than {MAX_TEXT_CHARS} characters"
        )));
    }
    Ok(())
}

/// Whether `turn` changed nothing beyond its conversation, so that it can be taken back: no
/// task that changes something (`writes`) ran or may have run (only asked for values or was
/// skipped), the case was neither resolved, escalated nor closed (it may have gone to "in
/// progress" or "waiting for the customer", as any turn's question does), and the call goes on.
fn can_take_back(turn: &Turn, template: &Template) -> bool {
    turn.case_changes
        .iter()
        .all(|(s, _)| matches!(s, CaseStatus::InProgress | CaseStatus::WaitingCustomer))
        && turn.action.is_none()
        && !turn.ended
        && turn.attempts.iter().all(|a| {
            !template.tasks.get(&a.task).is_some_and(|t| t.writes)
                || matches!(a.outcome.as_str(), "needs_info" | "skipped")
        })
}
