//! What the master remembers about a conversation between turns (persisted as JSON after each
//! turn), and the typed pieces of a turn's result.

use crate::agent::protocol::{Clarification, RequiredField};
use crate::agent::registry::Attempt;
use crate::store::{CaseStatus, LogEntry};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Who said an utterance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Caller,
    Agent,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Caller => "caller",
            Role::Agent => "agent",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Utterance {
    pub role: Role,
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
    /// "I have reservation ABC123 under John Doe. Is that right?": the agent's most plausible
    /// record for what was heard; `matched` are its identifying fields.
    ConfirmMatch {
        task: String,
        agent: String,
        params: Map<String, Value>,
        matched: Map<String, Value>,
    },
    /// The router was unsure between these tasks.
    TopicChoice {
        candidates: Vec<String>,
        utterance: String,
    },
    /// "Would you like me to help you make a payment?" (a sub-agent's suggestion, or a second
    /// request the caller made in the same breath).
    FollowUp {
        task: String,
        params: Map<String, Value>,
    },
    /// "Is there anything else I can help you with?"
    AnythingElse,
    /// A goodbye that did not sound like one in context ("Bye." as the first words of a call).
    ConfirmEnd,
}

/// A task that was carried out, kept for corrections and repeats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DoneTask {
    pub task: String,
    pub agent: String,
    pub params: Map<String, Value>,
}

/// A second request heard in the same utterance, offered once the first is answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Queued {
    pub task: String,
    pub params: Map<String, Value>,
}

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
    /// Misunderstood or out-of-scope turns in a row.
    pub misunderstood: u32,
    #[serde(default)]
    pub created_at_ms: i64,
    /// 0 until the first turn is persisted.
    #[serde(default)]
    pub expires_at_ms: i64,
    pub ended: bool,
    pub escalated: bool,
    pub seq: u64,
    /// The bot's last reply in full, for "say that again".
    #[serde(default)]
    pub last_reply: String,
    /// The bot's last question, asked again after a digression ("what time is check-in?").
    #[serde(default)]
    pub last_question: String,
    /// The last task carried out, for "no, the name is Jane" and repeated requests.
    #[serde(default)]
    pub last_task: Option<DoneTask>,
    /// A second request waiting to be offered.
    #[serde(default)]
    pub queued: Option<Queued>,
    /// Caller turns so far.
    #[serde(default)]
    pub caller_turns: u32,
    /// SHA-256 (hex) of the secret handle a text client proves the conversation is its own
    /// with; empty for calls.
    #[serde(default)]
    pub handle_sha256: String,
    /// The caller is known only by their phone line (a number can be spoofed): billing asks a
    /// second factor.
    #[serde(default)]
    pub by_line: bool,
    /// The last turn, while it can be taken back (it changed nothing beyond the conversation):
    /// a caller who went on before hearing its answer is heard again from before it, its words
    /// and theirs together (`Engine::hear_continued`). Kept in memory only.
    #[serde(skip)]
    pub undo: Option<Box<Undo>>,
}

/// What taking back a conversation's last turn needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Undo {
    /// The conversation before the turn.
    pub before: Conversation,
    /// The words the turn heard (masked), and how long they were spoken.
    pub words: String,
    pub speech_ms: Option<u64>,
    /// `words` are everything the caller said since they last heard an answer (the turn was
    /// heard fresh, or took back one that was): a transcript of all of it may replace them.
    pub whole: bool,
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
            last_reply: String::new(),
            last_question: String::new(),
            last_task: None,
            queued: None,
            caller_turns: 0,
            handle_sha256: String::new(),
            by_line: false,
            undo: None,
        }
    }

    /// Barge-in: the caller cut the bot off; keep only the part of the last bot reply that was
    /// actually heard, flagged as interrupted. A goodbye the caller talked over is not a
    /// goodbye: the conversation goes on (a transfer, once announced, stands).
    pub fn truncate_last_reply(&mut self, heard: &str) {
        if let Some(u) = self
            .history
            .iter_mut()
            .rev()
            .find(|u| u.role == Role::Agent)
        {
            u.content = heard.trim().to_string();
            u.interrupted = true;
        }
        if self.ended && !self.escalated {
            self.ended = false;
            self.pending = Pending::AnythingElse;
        }
    }
}

/// What the telephony layer must do after speaking the reply: the call core's own type.
pub use crate::call::EndAction;

/// How a turn ended: a sub-agent's status, or the master's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TurnStatus {
    Greeting,
    Success,
    NeedsInfo,
    Error,
    Partial,
    /// The router was unsure: "Is this about billing or a reservation?"
    ClarifyTopic,
    /// A fallback answered (degraded reply).
    Fallback,
    Escalated,
    Ended,
    NotUnderstood,
    /// Nothing the line does: the caller heard what it can do.
    OutOfScope,
    /// Answered by the master itself: an FAQ, small talk, a repeat, a dropped task.
    Answered,
    /// A goodbye or a near match waits for the caller's yes.
    Confirming,
}

impl TurnStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TurnStatus::Greeting => "greeting",
            TurnStatus::Success => "success",
            TurnStatus::NeedsInfo => "needs_info",
            TurnStatus::Error => "error",
            TurnStatus::Partial => "partial",
            TurnStatus::ClarifyTopic => "clarify_topic",
            TurnStatus::Fallback => "fallback",
            TurnStatus::Escalated => "escalated",
            TurnStatus::Ended => "ended",
            TurnStatus::NotUnderstood => "not_understood",
            TurnStatus::OutOfScope => "out_of_scope",
            TurnStatus::Answered => "answered",
            TurnStatus::Confirming => "confirming",
        }
    }
}

/// Which step of the fallback chain answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    CachedData,
    AlternativeAgent,
    Degraded,
    Human,
}

impl Fallback {
    pub fn as_str(self) -> &'static str {
        match self {
            Fallback::CachedData => "cached_data",
            Fallback::AlternativeAgent => "alternative_agent",
            Fallback::Degraded => "degraded",
            Fallback::Human => "human",
        }
    }
}

/// One bot turn: the reply and everything that happened to produce it.
#[derive(Debug, Clone, Serialize)]
pub struct Turn {
    pub reply: String,
    pub intent: Option<String>,
    pub confidence: Option<f32>,
    pub agent: Option<String>,
    pub status: TurnStatus,
    pub case_id: String,
    pub conversation_id: String,
    pub action: Option<EndAction>,
    pub ended: bool,
    pub attempts: Vec<Attempt>,
    /// Which fallback answered, if any.
    pub fallback: Option<Fallback>,
    /// The language model's part in this turn, if it had one: `route`, `answer` or
    /// `route+answer` (the turn took the model's path).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<&'static str>,
    /// whisper's initial prompt for the caller's next words (what the bot just asked for).
    #[serde(skip)]
    pub asr_prompt: String,
    #[serde(skip)]
    pub case_changes: Vec<(CaseStatus, String)>,
    #[serde(skip)]
    pub audit: Vec<(String, Value)>,
    #[serde(skip)]
    pub logs: Vec<LogEntry>,
}

/// The caller's words for one turn, with what the audio path knows about them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Heard<'a> {
    pub text: &'a str,
    /// How long the caller spoke (voice only).
    pub speech_ms: Option<u64>,
    /// `text` is keys pressed on the keypad (digits, `*`), not words.
    pub keys: bool,
    /// Where the clauses of a model's streamed answer go as each is ready (a live call speaks
    /// them at once); None: only the whole reply, in the turn.
    pub clauses: Option<&'a super::model::ClauseSink>,
}

impl<'a> Heard<'a> {
    pub fn text(text: &'a str) -> Self {
        Heard {
            text,
            speech_ms: None,
            keys: false,
            clauses: None,
        }
    }

    pub fn speech(text: &'a str, speech_ms: u64) -> Self {
        Heard {
            text,
            speech_ms: Some(speech_ms),
            keys: false,
            clauses: None,
        }
    }

    pub fn keys(keys: &'a str) -> Self {
        Heard {
            text: keys,
            speech_ms: None,
            keys: true,
            clauses: None,
        }
    }
}
