//! The call session (`runtime::session`) on a virtual clock, with the real conversation engine,
//! whisper and espeak-ng: what reaches the agent when turns are cancelled, and typed keys.
//! The line is simulated (every sample plays the moment it is sent; marks echo at once), and
//! time advances only to the deadlines the core names (`poll_timeout`).

use crate::common::{Setup, config, engine_with};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use switchboard::agent::engine::Engine;
use switchboard::agent::master::Role;
use switchboard::call::CallEvent;
use switchboard::runtime::session::{MediaPort, Session, SessionParts};
use switchboard::runtime::speech::Speech;

/// A line that plays everything at once and echoes every mark.
#[derive(Default)]
struct InstantLine {
    marks: Vec<u64>,
    samples: usize,
    events: Vec<CallEvent>,
}

impl MediaPort for InstantLine {
    fn send_audio(&mut self, samples: &[f32], _now: u64) {
        self.samples += samples.len();
    }
    fn mark(&mut self, id: u64, _now: u64) {
        self.marks.push(id);
    }
    fn clear(&mut self, _now: u64) {}
    fn event(&mut self, e: &CallEvent) {
        self.events.push(e.clone());
    }
}

struct Rig {
    engine: Arc<Engine>,
    session: Session,
    line: InstantLine,
    t: u64,
}

impl Rig {
    async fn start() -> Rig {
        let setup = Setup::default();
        let mut cfg = config(&setup);
        cfg.models_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models");
        let engine = Arc::new(engine_with(setup, &cfg));
        let speech = Speech::load(&cfg).unwrap();
        // No worker may still be decoding when this short test's process exits.
        speech.asr.warmed().await;
        let parts = SessionParts {
            engine: &engine,
            speech: &speech,
            call: &cfg.speech.call,
            out_rate: 8000,
            monitor: None,
            recordings: None,
            follow_line: false,
        };
        let session = Session::start(&parts, "user_789", "test", json!({}), 0)
            .await
            .unwrap();
        let mut rig = Rig {
            engine,
            session,
            line: InstantLine::default(),
            t: 0,
        };
        rig.play_out().await;
        rig
    }

    /// Runs effects, echoes marks and advances to the core's deadlines until the bot is quiet.
    async fn play_out(&mut self) {
        for _ in 0..10_000 {
            self.session.settle(self.t, &mut self.line).await.unwrap();
            for id in std::mem::take(&mut self.line.marks) {
                self.session.mark_played(self.t, id);
            }
            if !self.session.bot_speaking() {
                self.session.settle(self.t, &mut self.line).await.unwrap();
                return;
            }
            if let Some(at) = self.session.poll_timeout() {
                self.t = self.t.max(at);
                self.session.timeout(self.t);
            }
        }
        panic!("the bot never finished speaking");
    }

    async fn history(&self) -> Vec<(Role, String, bool)> {
        let id = self.session.conversation_id().unwrap();
        let conv = self.engine.conversation(id).await.unwrap();
        conv.history
            .iter()
            .map(|u| (u.role, u.content.clone(), u.interrupted))
            .collect()
    }

    /// What the caller said, as the agent's history holds it.
    async fn caller_said(&self) -> Vec<String> {
        self.history()
            .await
            .into_iter()
            .filter(|(r, _, _)| *r == Role::Caller)
            .map(|(_, c, _)| c)
            .collect()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_cancelled_turns_queued_agent_request_never_reaches_the_agent() {
    let mut rig = Rig::start().await;
    assert!(rig.line.samples > 0, "the greeting was played");
    // The caller keys 5#, then 6# before the agent has taken the first request: the first
    // turn is cancelled, and its request must not reach the agent.
    for d in ['5', '#'] {
        rig.session.dtmf(rig.t, d);
    }
    rig.session.flush(rig.t, &mut rig.line).await.unwrap();
    for d in ['6', '#'] {
        rig.session.dtmf(rig.t, d);
    }
    rig.play_out().await;
    let said = rig.caller_said().await;
    assert_eq!(said, vec!["6".to_string()], "{:#?}", rig.history().await);
    // Exactly one answer besides the greeting, and it was spoken.
    let replies: Vec<_> = rig
        .history()
        .await
        .into_iter()
        .filter(|(r, _, _)| *r == Role::Agent)
        .collect();
    assert_eq!(replies.len(), 2, "{replies:#?}");
    assert!(replies.iter().all(|(_, _, cut)| !cut), "{replies:#?}");
}

#[tokio::test(flavor = "current_thread")]
async fn keypad_zero_reaches_the_agent_as_a_key_and_transfers() {
    let mut rig = Rig::start().await;
    rig.session.dtmf(rig.t, '0');
    rig.play_out().await;
    let keys = rig
        .line
        .events
        .iter()
        .find_map(|e| match &e.kind {
            switchboard::call::EventKind::Keys { keys, .. } => Some(keys.clone()),
            _ => None,
        })
        .expect("a keys event");
    assert_eq!(keys, "0");
    assert!(
        matches!(
            rig.session.end_action(),
            Some(switchboard::call::EndAction::Transfer { .. })
        ),
        "{:?}",
        rig.session.end_action()
    );
    assert_eq!(rig.caller_said().await, vec!["0".to_string()]);
}
