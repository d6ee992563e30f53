//! Live calls for the operations dashboard: who is on the line, what the bot is doing
//! (listening, thinking, speaking), the transcript as it happens, barge-ins — and a way for an
//! operator to hang up or transfer a call.
//!
//! Each call's session holds a [`Feed`] and tells it its events; the monitor keeps a snapshot of
//! every live call and broadcasts each change as one JSON text (the dashboard's server-sent
//! events). Nothing here runs per audio frame, no lock is held across an `.await`, and a slow
//! dashboard only misses updates (the broadcast channel is bounded), never slows a call.

use crate::call::{CallEvent, EventKind};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// Lines of transcript kept per live call for a dashboard that connects mid-call.
const LINES: usize = 100;
/// Updates a dashboard may fall behind by before it misses some.
const BACKLOG: usize = 1024;

/// What an operator asks of a live call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    HangUp,
    /// To the template's human line.
    Transfer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Listening,
    Thinking,
    Speaking,
}

#[derive(Debug, Clone, Serialize)]
pub struct Line {
    pub who: &'static str,
    pub text: String,
    pub t_ms: u64,
}

/// A live call as the dashboard shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LiveCall {
    pub id: String,
    pub provider: String,
    /// Masked as in the logs.
    pub caller: String,
    pub case_id: String,
    pub started_at_ms: u64,
    pub state: State,
    pub lines: VecDeque<Line>,
    pub barge_ins: u32,
}

type ControlFn = Box<dyn Fn(Control) -> bool + Send + Sync>;

struct Entry {
    call: LiveCall,
    control: ControlFn,
}

pub struct Monitor {
    calls: Mutex<BTreeMap<String, Entry>>,
    tx: broadcast::Sender<Arc<str>>,
}

impl Default for Monitor {
    fn default() -> Self {
        Monitor {
            calls: Mutex::new(BTreeMap::new()),
            tx: broadcast::channel(BACKLOG).0,
        }
    }
}

impl Monitor {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, v: Value) {
        if self.tx.receiver_count() > 0 {
            let _ = self.tx.send(Arc::from(v.to_string()));
        }
    }

    /// A call goes live. `control` delivers an operator's request to the call (false when the
    /// call could not take it); `t0` is the call's clock at this moment.
    pub fn open(
        self: &Arc<Self>,
        call: LiveCall,
        t0: u64,
        control: impl Fn(Control) -> bool + Send + Sync + 'static,
    ) -> Feed {
        let id = call.id.clone();
        let mut g = self.lock();
        self.publish(json!({"type": "call_started", "call": &call}));
        g.insert(
            id.clone(),
            Entry {
                call,
                control: Box::new(control),
            },
        );
        drop(g);
        Feed {
            hub: self.clone(),
            id,
            t0,
            ended: false,
        }
    }

    /// The live calls now, and the updates from this moment on (none lost in between).
    pub fn subscribe(&self) -> (Vec<LiveCall>, broadcast::Receiver<Arc<str>>) {
        let g = self.lock();
        let rx = self.tx.subscribe();
        (g.values().map(|e| e.call.clone()).collect(), rx)
    }

    pub fn calls(&self) -> Vec<LiveCall> {
        self.lock().values().map(|e| e.call.clone()).collect()
    }

    /// Asks live call `id` to end or transfer; false when no such call is live (or it could
    /// not take the request).
    pub fn control(&self, id: &str, c: Control) -> bool {
        let g = self.lock();
        let Some(e) = g.get(id) else {
            return false;
        };
        let ok = (e.control)(c);
        if ok {
            tracing::info!(call = id, control = ?c, "an operator asked the call to end");
        }
        ok
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut LiveCall) -> Option<Value>) {
        let mut g = self.lock();
        if let Some(e) = g.get_mut(id)
            && let Some(v) = f(&mut e.call)
        {
            self.publish(v);
        }
    }

    fn close(&self, id: &str, outcome: &str) {
        let mut g = self.lock();
        if g.remove(id).is_some() {
            self.publish(json!({"type": "call_ended", "id": id, "outcome": outcome}));
        }
    }
}

/// A live call's link to the monitor; dropping it ends the call there.
pub struct Feed {
    hub: Arc<Monitor>,
    id: String,
    t0: u64,
    ended: bool,
}

impl Feed {
    /// One of the call's events (most change nothing the dashboard shows).
    pub fn event(&self, e: &CallEvent) {
        let t_ms = e.t_ms.saturating_sub(self.t0);
        let id = self.id.as_str();
        let state = |c: &mut LiveCall, s: State| {
            (c.state != s).then(|| {
                c.state = s;
                json!({"type": "state", "id": id, "state": s})
            })
        };
        let line = |c: &mut LiveCall, who: &'static str, text: &str| {
            let text = crate::redact::redact(text.trim()).into_owned();
            if c.lines.len() >= LINES {
                c.lines.pop_front();
            }
            let v = json!({"type": "line", "id": id, "who": who, "text": &text, "t_ms": t_ms});
            c.lines.push_back(Line { who, text, t_ms });
            v
        };
        match &e.kind {
            EventKind::Transcript { text, .. } if !text.trim().is_empty() => {
                self.hub.update(id, |c| {
                    let v = line(c, "caller", text);
                    self.hub.publish(v);
                    state(c, State::Thinking)
                })
            }
            EventKind::Keys { keys, .. } => self.hub.update(id, |c| {
                let v = line(c, "caller", &format!("(keys {keys})"));
                self.hub.publish(v);
                state(c, State::Thinking)
            }),
            EventKind::BotReply { text, .. } if !text.trim().is_empty() => {
                self.hub.update(id, |c| Some(line(c, "bot", text)))
            }
            EventKind::BotAudioStart { .. } | EventKind::BotResumed { .. } => {
                self.hub.update(id, |c| state(c, State::Speaking))
            }
            EventKind::BotAudioEnd { .. } | EventKind::BotPaused { .. } => {
                self.hub.update(id, |c| state(c, State::Listening))
            }
            EventKind::BargeIn { heard, .. } => self.hub.update(id, |c| {
                c.barge_ins += 1;
                c.state = State::Listening;
                let heard = crate::redact::redact(heard).into_owned();
                Some(json!({"type": "barge_in", "id": id, "heard": heard, "t_ms": t_ms}))
            }),
            _ => {}
        }
    }

    /// The call ended with `outcome`.
    pub fn end(mut self, outcome: &str) {
        self.ended = true;
        self.hub.close(&self.id, outcome);
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        if !self.ended {
            self.hub.close(&self.id, "ended");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn call(id: &str) -> LiveCall {
        LiveCall {
            id: id.into(),
            provider: "twilio".into(),
            caller: "+1555…0100".into(),
            case_id: id.into(),
            started_at_ms: 1,
            state: State::Listening,
            lines: VecDeque::new(),
            barge_ins: 0,
        }
    }

    fn ev(t_ms: u64, kind: EventKind) -> CallEvent {
        CallEvent { t_ms, kind }
    }

    fn next(rx: &mut broadcast::Receiver<Arc<str>>) -> Value {
        serde_json::from_str(&rx.try_recv().unwrap()).unwrap()
    }

    #[test]
    fn a_call_s_events_become_lines_states_and_its_end_in_order() {
        let m = Arc::new(Monitor::default());
        let (snap, mut rx) = m.subscribe();
        assert!(snap.is_empty());
        let asked = Arc::new(AtomicUsize::new(0));
        let a = asked.clone();
        let feed = m.open(call("c1"), 1000, move |c| {
            assert_eq!(c, Control::HangUp);
            a.fetch_add(1, Ordering::SeqCst);
            true
        });
        assert_eq!(next(&mut rx)["type"], "call_started");
        feed.event(&ev(
            1500,
            EventKind::BotReply {
                turn: 0,
                text: "Hello.".into(),
            },
        ));
        feed.event(&ev(1600, EventKind::BotAudioStart { turn: 0 }));
        feed.event(&ev(3000, EventKind::BotAudioEnd { turn: 0 }));
        feed.event(&ev(
            5000,
            EventKind::Transcript {
                turn: 1,
                text: "my card is 4111 1111 1111 1111".into(),
            },
        ));
        feed.event(&ev(5100, EventKind::CallerNoise { duration_ms: 10 }));
        feed.event(&ev(
            5200,
            EventKind::BargeIn {
                turn: 1,
                heard: "One".into(),
            },
        ));
        let got: Vec<Value> = (0..6).map(|_| next(&mut rx)).collect();
        assert!(rx.try_recv().is_err(), "noise changes nothing shown");
        assert_eq!(
            got[0],
            json!({"type": "line", "id": "c1", "who": "bot", "text": "Hello.", "t_ms": 500})
        );
        assert_eq!(
            got[1],
            json!({"type": "state", "id": "c1", "state": "speaking"})
        );
        assert_eq!(
            got[2],
            json!({"type": "state", "id": "c1", "state": "listening"})
        );
        assert_eq!(got[3]["who"], "caller");
        assert_eq!(got[3]["t_ms"], 4000);
        assert!(
            !got[3]["text"].as_str().unwrap().contains("4111 1111"),
            "{}",
            got[3]
        );
        assert_eq!(
            got[4],
            json!({"type": "state", "id": "c1", "state": "thinking"})
        );
        assert_eq!(
            got[5],
            json!({"type": "barge_in", "id": "c1", "heard": "One", "t_ms": 4200})
        );
        // A dashboard connecting now sees the same call.
        let snap = m.calls();
        assert_eq!(snap.len(), 1);
        assert_eq!(snap[0].lines.len(), 2);
        assert_eq!(snap[0].barge_ins, 1);
        assert_eq!(snap[0].state, State::Listening);
        assert!(m.control("c1", Control::HangUp));
        assert_eq!(asked.load(Ordering::SeqCst), 1);
        assert!(!m.control("c2", Control::HangUp), "no such call");
        feed.end("resolved");
        assert_eq!(
            next(&mut rx),
            json!({"type": "call_ended", "id": "c1", "outcome": "resolved"})
        );
        assert!(m.calls().is_empty());
        assert!(!m.control("c1", Control::HangUp), "no longer live");
        // A feed dropped without an outcome still ends its call.
        drop(m.open(call("c3"), 0, |_| true));
        assert_eq!(next(&mut rx)["type"], "call_started");
        assert_eq!(
            next(&mut rx),
            json!({"type": "call_ended", "id": "c3", "outcome": "ended"})
        );
    }
}
