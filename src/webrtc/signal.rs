//! The softphone's signaling protocol on the `/webrtc/signal` WebSocket: JSON text messages.
//!
//! page → gateway: `call {template, sdp, caller?}` (the offer, sent once ICE gathering is
//! complete: the gateway does not trickle), `hangup`, `mute {muted}`.
//! gateway → page: `answer {sdp, call_id}`, `agent_state {state}`, `caption {who, text, turn}`,
//! `interrupted {turn, heard}`, `latency {turn, ms, turn_end_ms}`, `ended {reason, detail}`,
//! `error {message}`.

use serde::{Deserialize, Serialize};

/// Largest signaling message accepted (an SDP offer is a few KB).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromPage {
    Call {
        sdp: String,
        #[serde(default)]
        template: Option<String>,
        /// The caller id the conversation is opened for (the demo caller when absent).
        #[serde(default)]
        caller: Option<String>,
    },
    Hangup,
    Mute {
        #[serde(default = "yes")]
        muted: bool,
    },
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    Listening,
    Thinking,
    Speaking,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Who {
    Caller,
    Bot,
}

/// Why a call ended, as the page shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    Hangup,
    Transfer,
    Busy,
    Error,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToPage {
    Answer {
        sdp: String,
        call_id: String,
    },
    AgentState {
        state: AgentState,
    },
    Caption {
        who: Who,
        text: String,
        turn: u64,
    },
    Interrupted {
        turn: u64,
        heard: String,
    },
    /// Measured on the gateway: from the caller's last audible frame (`ms`), and from the moment
    /// the turn was judged over (`turn_end_ms`), to the first packet of the bot's answer sent.
    Latency {
        turn: u64,
        ms: u64,
        turn_end_ms: u64,
    },
    Ended {
        reason: EndReason,
        detail: String,
    },
    Error {
        message: String,
    },
}

impl ToPage {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| r#"{"type":"error"}"#.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_page_messages() {
        let m: FromPage =
            serde_json::from_str(r#"{"type":"call","template":"hospitality","sdp":"v=0"}"#)
                .unwrap();
        assert_eq!(
            m,
            FromPage::Call {
                sdp: "v=0".into(),
                template: Some("hospitality".into()),
                caller: None
            }
        );
        let m: FromPage = serde_json::from_str(r#"{"type":"mute","muted":false}"#).unwrap();
        assert_eq!(m, FromPage::Mute { muted: false });
        assert_eq!(
            serde_json::from_str::<FromPage>(r#"{"type":"hangup"}"#).unwrap(),
            FromPage::Hangup
        );
        assert!(serde_json::from_str::<FromPage>(r#"{"type":"dial"}"#).is_err());
    }

    #[test]
    fn writes_the_gateway_messages() {
        let j = ToPage::Caption {
            who: Who::Bot,
            text: "Hi".into(),
            turn: 2,
        }
        .to_json();
        assert_eq!(j, r#"{"type":"caption","who":"bot","text":"Hi","turn":2}"#);
        let j = ToPage::AgentState {
            state: AgentState::Thinking,
        }
        .to_json();
        assert_eq!(j, r#"{"type":"agent_state","state":"thinking"}"#);
        let j = ToPage::Ended {
            reason: EndReason::Hangup,
            detail: "bot hung up".into(),
        }
        .to_json();
        assert_eq!(
            j,
            r#"{"type":"ended","reason":"hangup","detail":"bot hung up"}"#
        );
    }
}
