//! Remote sub-agents: an external HTTP service speaking the same JSON protocol. The master
//! `POST`s an `AgentInput` to the agent's endpoint and validates whatever comes back as an
//! `AgentOutput` (malformed → `INVALID_OUTPUT`); health is a `GET` on its health URL.

use crate::agent::protocol::{AgentInput, AgentOutput};
use crate::agent::registry::{AgentCard, DispatchError, SubAgent};
use crate::agent::remote_policy::RemotePolicy;
use std::time::Duration;

/// Largest response body accepted from a remote agent.
const MAX_BODY: usize = 1 << 20;

pub struct RemoteAgent {
    card: AgentCard,
    client: reqwest::Client,
    endpoint: reqwest::Url,
    health: Option<reqwest::Url>,
}

impl RemoteAgent {
    /// Validates the card's URLs against `policy`; `client` is shared (connection pooling) and
    /// should be [`RemotePolicy::client`].
    pub fn new(
        card: AgentCard,
        client: reqwest::Client,
        policy: &RemotePolicy,
    ) -> Result<RemoteAgent, String> {
        let endpoint = card
            .endpoint
            .as_deref()
            .ok_or("a remote agent needs an endpoint URL")?;
        let endpoint = parse_http_url(endpoint, "endpoint")?;
        policy
            .check(&endpoint)
            .map_err(|e| format!("endpoint: {e}"))?;
        let health = card
            .health_url
            .as_deref()
            .map(|u| parse_http_url(u, "health_url"))
            .transpose()?;
        if let Some(h) = &health {
            policy.check(h).map_err(|e| format!("health_url: {e}"))?;
        }
        Ok(RemoteAgent {
            card: AgentCard {
                kind: "remote".into(),
                ..card
            },
            client,
            endpoint,
            health,
        })
    }
}

/// What went wrong reaching an agent, in words that say nothing of what was (or was not)
/// behind the address: no error text from the network or the agent is passed on.
fn failure(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "could not connect".into()
    } else if e.is_redirect() || e.status().is_some_and(|s| s.is_redirection()) {
        "answered with a redirect (not followed)".into()
    } else {
        "request failed".into()
    }
}

fn parse_http_url(s: &str, what: &str) -> Result<reqwest::Url, String> {
    if s.len() > 2048 {
        return Err(format!("{what} is longer than 2048 characters"));
    }
    let u = reqwest::Url::parse(s).map_err(|e| format!("{what} is not a URL: {e}"))?;
    if u.scheme() != "http" && u.scheme() != "https" {
        return Err(format!("{what} must be http or https"));
    }
    Ok(u)
}

#[async_trait::async_trait]
impl SubAgent for RemoteAgent {
    fn card(&self) -> &AgentCard {
        &self.card
    }

    async fn handle(&self, input: AgentInput) -> Result<AgentOutput, DispatchError> {
        let mut req = self.client.post(self.endpoint.clone()).json(&input);
        // The trace goes on into the agent's own (W3C Trace Context), when the call is traced.
        if let Some(tp) = crate::telemetry::traceparent() {
            req = req.header("traceparent", tp);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| DispatchError::Transport(failure(&e)))?;
        let status = resp.status();
        if status.is_redirection() {
            return Err(DispatchError::Transport(
                "answered with a redirect (not followed)".into(),
            ));
        }
        if resp.content_length().is_some_and(|n| n as usize > MAX_BODY) {
            return Err(DispatchError::Protocol(
                crate::agent::protocol::ProtocolError::invalid_output("response body too large"),
            ));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| DispatchError::Transport(failure(&e)))?;
        if body.len() > MAX_BODY {
            return Err(DispatchError::Protocol(
                crate::agent::protocol::ProtocolError::invalid_output("response body too large"),
            ));
        }
        // A protocol answer is accepted whatever the HTTP status (an agent may send its
        // `status: error` with a 4xx/5xx); a non-protocol 5xx is a transport failure.
        match AgentOutput::from_json(&body, &input) {
            Ok(out) => Ok(out),
            Err(_) if status.is_server_error() => {
                Err(DispatchError::Transport(format!("HTTP {status}")))
            }
            Err(e) => Err(DispatchError::Protocol(e)),
        }
    }

    async fn health(&self) -> Result<(), String> {
        let Some(url) = &self.health else {
            return Ok(());
        };
        let resp = self
            .client
            .get(url.clone())
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .map_err(|e| failure(&e))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {}", resp.status().as_u16()))
        }
    }
}
