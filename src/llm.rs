//! A language model behind any OpenAI-compatible chat-completions endpoint (a hosted API, or
//! your own vLLM / llama.cpp server), used where it earns its latency — and never where the
//! deterministic engine must decide. Off unless `[llm] base_url` is set.
//!
//! The model has four roles, each switchable here and each with the engine's own result as the
//! fallback when the model is slow, down or answers something invalid:
//! - on a turn the deterministic router is unsure of, or finds out of scope, **routing and slot
//!   extraction** (`route`) as JSON constrained by a schema built from the template, and
//!   **answers from the template's facts and small talk** (`answer`), streamed clause by clause
//!   (the master agent does this: `agent::master::model`), within `turn_timeout_ms`;
//! - after a call, off every turn's path, the **hand-off summary** of a transferred call (who,
//!   what was asked, what was done, what is pending), for the person taking it over — also
//!   POSTed to `handoff_url` when set (a warm transfer: the desk reads it as it picks up);
//! - the **call summary** and its disposition.
//!
//! JSON answers are asked with `response_format: json_schema` and checked against the schema
//! here ([`validate`]). Either way the case records which one it is (`source`: `model` or
//! `engine`). Card numbers are masked before anything is sent and again in what comes back.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmConfig {
    /// The API's base URL, up to and including `/v1` (e.g. `https://api.openai.com/v1`,
    /// `http://127.0.0.1:8000/v1`). Empty: no model.
    pub base_url: String,
    pub model: String,
    /// The environment variable holding the API key (sent as a bearer token); empty or unset:
    /// none is sent.
    pub api_key_env: String,
    /// A request's whole budget; past it the engine's result stands.
    pub timeout_ms: u64,
    pub max_tokens: u32,
    pub temperature: f32,
    /// Write a hand-off summary on the case of a transferred call.
    pub handoff_summary: bool,
    /// Write a summary and disposition on every case when its call ends.
    pub call_summary: bool,
    /// Where a transferred call's hand-off summary is POSTed as JSON (`case_id`, `to`,
    /// `summary`) as soon as it is written: the human desk's webhook. Empty: the case only.
    pub handoff_url: String,
    /// On a turn the deterministic router is unsure of: ask the model for the intent and the
    /// slot values.
    pub route: bool,
    /// On a turn out of the line's scope, or small talk: the model answers from the template's
    /// facts, in its tone.
    pub answer: bool,
    /// A model call's budget on a turn's path; past it the engine's result stands.
    pub turn_timeout_ms: u64,
    /// Said when the model's answer has not begun within `filler_ms` (empty: none).
    pub filler: String,
    pub filler_ms: u64,
}

impl Default for LlmConfig {
    fn default() -> Self {
        LlmConfig {
            base_url: String::new(),
            model: String::new(),
            api_key_env: "OPENAI_API_KEY".into(),
            timeout_ms: 8000,
            max_tokens: 300,
            temperature: 0.2,
            handoff_summary: true,
            call_summary: true,
            handoff_url: String::new(),
            route: true,
            answer: true,
            turn_timeout_ms: 2500,
            filler: "One moment.".into(),
            filler_ms: 700,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LlmError {
    #[error("the model did not answer within {0} ms")]
    Timeout(u64),
    #[error("the model's server answered {0}: {1}")]
    Status(u16, String),
    #[error("the model's server could not be reached: {0}")]
    Transport(String),
    #[error("the model's answer is not valid: {0}")]
    Invalid(String),
}

impl LlmError {
    /// A short reason for the case record.
    pub fn reason(&self) -> &'static str {
        match self {
            LlmError::Timeout(_) => "timeout",
            LlmError::Status(..) => "server error",
            LlmError::Transport(_) => "unreachable",
            LlmError::Invalid(_) => "invalid answer",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Message {
    pub role: &'static str,
    pub content: String,
}

impl Message {
    pub fn system(text: impl Into<String>) -> Message {
        Message {
            role: "system",
            content: text.into(),
        }
    }
    pub fn user(text: impl Into<String>) -> Message {
        Message {
            role: "user",
            content: text.into(),
        }
    }
}

#[derive(Serialize)]
struct Request<'a> {
    model: &'a str,
    messages: &'a [Message],
    max_tokens: u32,
    temperature: f32,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<Value>,
}

#[derive(Deserialize)]
struct Response {
    choices: Vec<Choice>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    message: Option<ChoiceMessage>,
    #[serde(default)]
    delta: Option<ChoiceMessage>,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    #[serde(default)]
    content: Option<String>,
}

/// The model's client.
pub struct Llm {
    cfg: LlmConfig,
    url: String,
    key: Option<String>,
    client: reqwest::Client,
}

impl std::fmt::Debug for Llm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Llm")
            .field("url", &self.url)
            .field("model", &self.cfg.model)
            .finish()
    }
}

impl Llm {
    /// The configured model, or None when `base_url` is empty.
    pub fn from_config(cfg: &LlmConfig) -> Result<Option<Llm>, String> {
        if cfg.base_url.trim().is_empty() {
            return Ok(None);
        }
        let base = cfg.base_url.trim().trim_end_matches('/');
        let url = format!("{base}/chat/completions");
        let parsed = url::Url::parse(&url).map_err(|e| format!("llm.base_url: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err("llm.base_url must be http or https".into());
        }
        let key = (!cfg.api_key_env.is_empty())
            .then(|| std::env::var(&cfg.api_key_env).ok())
            .flatten()
            .filter(|k| !k.trim().is_empty());
        // The longest budget of any call; each call is held to its own (`within`).
        let longest = cfg.timeout_ms.max(cfg.turn_timeout_ms).max(1);
        let client = crate::net::client_builder()
            .timeout(Duration::from_millis(longest))
            .build()
            .map_err(|e| format!("the model's HTTP client: {e}"))?;
        Ok(Some(Llm {
            cfg: cfg.clone(),
            url,
            key,
            client,
        }))
    }

    /// The same endpoint with another model (an agent's model tier) and/or temperature.
    pub fn tier(&self, model: Option<&str>, temperature: Option<f32>) -> Llm {
        let mut cfg = self.cfg.clone();
        if let Some(m) = model {
            cfg.model = m.to_string();
        }
        if let Some(t) = temperature {
            cfg.temperature = t;
        }
        Llm {
            cfg,
            url: self.url.clone(),
            key: self.key.clone(),
            client: self.client.clone(),
        }
    }

    /// The same, with `turn_timeout_ms` as its budget: for calls on a turn's path.
    pub fn for_turns(&self) -> Llm {
        let mut l = self.tier(None, None);
        l.cfg.timeout_ms = self.cfg.turn_timeout_ms.max(1);
        l
    }

    /// The model's name.
    pub fn model(&self) -> &str {
        &self.cfg.model
    }

    /// The configuration it was built from.
    pub fn settings(&self) -> &LlmConfig {
        &self.cfg
    }

    /// Sends one completion request; a response other than 2xx is an error.
    async fn send(
        &self,
        messages: &[Message],
        stream: bool,
        response_format: Option<Value>,
    ) -> Result<reqwest::Response, LlmError> {
        let body = Request {
            model: &self.cfg.model,
            messages,
            max_tokens: self.cfg.max_tokens,
            temperature: self.cfg.temperature,
            stream,
            response_format,
        };
        let mut r = self.client.post(&self.url).json(&body);
        if let Some(k) = &self.key {
            r = r.bearer_auth(k);
        }
        let resp = r.send().await.map_err(|e| self.map_err(e))?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            return Err(LlmError::Status(
                status.as_u16(),
                text.chars().take(200).collect(),
            ));
        }
        Ok(resp)
    }

    /// A warm transfer: POSTs `call`'s hand-off summary to `handoff_url` (when set) for the desk
    /// taking the call over; the `handoff_delivered` entry says whether it arrived.
    async fn deliver_handoff(&self, call: &CallRecord, summary: &Value) -> Option<Summary> {
        let url = self.cfg.handoff_url.trim();
        if url.is_empty() {
            return None;
        }
        let to = call.transfer_target();
        let body = json!({"case_id": call.case_id, "to": to, "summary": summary});
        let sent = self
            .within(async {
                let resp = self
                    .client
                    .post(url)
                    .json(&body)
                    .send()
                    .await
                    .map_err(|e| self.map_err(e))?;
                if resp.status().is_success() {
                    Ok(())
                } else {
                    Err(LlmError::Status(resp.status().as_u16(), String::new()))
                }
            })
            .await;
        if let Err(e) = &sent {
            tracing::warn!(case = %call.case_id, error = %e, "the hand-off summary was not delivered");
        }
        Some(Summary {
            action: "handoff_delivered",
            detail: json!({"delivered": sent.is_ok(), "to": to}),
            by_model: false,
        })
    }

    /// `work` within the request budget.
    async fn within<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, LlmError>>,
    ) -> Result<T, LlmError> {
        let budget = Duration::from_millis(self.cfg.timeout_ms.max(1));
        tokio::time::timeout(budget, work)
            .await
            .map_err(|_| LlmError::Timeout(self.cfg.timeout_ms))?
    }

    fn map_err(&self, e: reqwest::Error) -> LlmError {
        if e.is_timeout() {
            LlmError::Timeout(self.cfg.timeout_ms)
        } else {
            // Only the kind of failure: no address or server text.
            LlmError::Transport(
                if e.is_connect() {
                    "could not connect"
                } else {
                    "request failed"
                }
                .into(),
            )
        }
    }

    /// One completion's text. With `schema` (`(name, JSON schema)`), the server is asked to
    /// answer JSON of that shape.
    pub async fn chat(
        &self,
        messages: &[Message],
        schema: Option<(&str, &Value)>,
    ) -> Result<String, LlmError> {
        let format = schema.map(|(name, s)| {
            json!({"type": "json_schema",
                   "json_schema": {"name": name, "strict": strict_ok(s), "schema": s}})
        });
        self.within(async {
            let resp = self.send(messages, false, format).await?;
            let text = resp.text().await.map_err(|e| self.map_err(e))?;
            let r: Response = serde_json::from_str(&text)
                .map_err(|e| LlmError::Invalid(format!("not a chat completion: {e}")))?;
            r.choices
                .into_iter()
                .next()
                .and_then(|c| c.message)
                .and_then(|m| m.content)
                .ok_or_else(|| LlmError::Invalid("no message in the completion".into()))
        })
        .await
    }

    /// A completion streamed: `on_delta` gets each piece of text as it arrives (server-sent
    /// events); returns the whole text.
    pub async fn chat_stream(
        &self,
        messages: &[Message],
        mut on_delta: impl FnMut(&str),
    ) -> Result<String, LlmError> {
        self.within(async {
            let mut resp = self.send(messages, true, None).await?;
            let mut buf = Vec::<u8>::new();
            let mut whole = String::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| self.map_err(e))? {
                buf.extend_from_slice(&chunk);
                // Each complete line; an SSE event's data is on its `data:` lines.
                while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=nl).collect();
                    let line = String::from_utf8_lossy(&line);
                    let Some(data) = line.trim().strip_prefix("data:") else {
                        continue;
                    };
                    let data = data.trim();
                    if data == "[DONE]" {
                        return Ok(whole);
                    }
                    let r: Response = serde_json::from_str(data)
                        .map_err(|e| LlmError::Invalid(format!("a bad stream event: {e}")))?;
                    if let Some(piece) = r
                        .choices
                        .into_iter()
                        .next()
                        .and_then(|c| c.delta)
                        .and_then(|d| d.content)
                        && !piece.is_empty()
                    {
                        on_delta(&piece);
                        whole.push_str(&piece);
                    }
                }
            }
            Ok(whole)
        })
        .await
    }

    /// A JSON answer of `schema`'s shape, parsed and checked against it.
    pub async fn chat_json(
        &self,
        messages: &[Message],
        name: &str,
        schema: &Value,
    ) -> Result<Value, LlmError> {
        let text = self.chat(messages, Some((name, schema))).await?;
        let v: Value = serde_json::from_str(text.trim())
            .map_err(|e| LlmError::Invalid(format!("not JSON ({e}): {}", clip(&text))))?;
        validate(&v, schema).map_err(LlmError::Invalid)?;
        Ok(v)
    }
}

/// `s` in at most `max` characters: cut at a word with "…" when longer.
fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let cut: String = s.chars().take(max.saturating_sub(1)).collect();
    let cut = match cut.rfind(' ') {
        Some(i) if i > max / 2 => &cut[..i],
        _ => cut.as_str(),
    };
    format!("{}…", cut.trim_end())
}

fn clip(s: &str) -> String {
    s.chars().take(120).collect()
}

/// Whether `schema` may be sent as strict (OpenAI's structured outputs): every object's
/// properties are all required and no others allowed. The routing schema's fields are optional,
/// so it is sent as a plain schema (and checked here all the same).
fn strict_ok(schema: &Value) -> bool {
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if schema.get("additionalProperties") != Some(&Value::Bool(false))
            || props.keys().any(|k| !required.contains(&k.as_str()))
            || !props.values().all(strict_ok)
        {
            return false;
        }
    }
    schema.get("items").is_none_or(strict_ok)
}

/// Takes the first complete clause off the front of `buf` (streamed text so far): up to a
/// sentence's end (`.`, `!`, `?`) or, once it has `min_words` words, a `,` `;` `:` — each
/// followed by a space (so "3.5" and "e.g." inside a word do not split). None until one is
/// complete; what is left at the stream's end is the last clause.
pub fn take_clause(buf: &mut String, min_words: usize) -> Option<String> {
    loop {
        let b = buf.as_bytes();
        let end = (0..b.len()).find(|&i| {
            b.get(i + 1).is_some_and(|n| n.is_ascii_whitespace())
                && match b[i] {
                    b'.' | b'!' | b'?' => true,
                    b',' | b';' | b':' => buf[..i].split_whitespace().count() >= min_words,
                    _ => false,
                }
        })?;
        let clause = buf[..=end].trim().to_string();
        buf.drain(..=end);
        if !clause.is_empty() {
            return Some(clause);
        }
    }
}

/// Checks `v` against the subset of JSON Schema the project's schemas use: `type` (object,
/// string, integer, number, boolean, array), `properties`, `required`,
/// `additionalProperties: false`, `enum`, `pattern`, `maxLength`, `items`.
pub fn validate(v: &Value, schema: &Value) -> Result<(), String> {
    validate_at(v, schema, "$")
}

fn validate_at(v: &Value, schema: &Value, at: &str) -> Result<(), String> {
    if let Some(t) = schema.get("type").and_then(Value::as_str) {
        let ok = match t {
            "object" => v.is_object(),
            "string" => v.is_string(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            "array" => v.is_array(),
            _ => true,
        };
        if !ok {
            return Err(format!("{at} is not a {t}"));
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(v)
    {
        return Err(format!("{at} is not one of {options:?}"));
    }
    if let Some(s) = v.as_str() {
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
            && s.chars().count() as u64 > max
        {
            return Err(format!("{at} is longer than {max}"));
        }
        if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
            let re = regex::Regex::new(p).map_err(|e| format!("{at}: bad pattern: {e}"))?;
            if !re.is_match(s) {
                return Err(format!("{at} does not match {p}"));
            }
        }
    }
    if let Some(obj) = v.as_object() {
        let props = schema.get("properties").and_then(Value::as_object);
        if let Some(req) = schema.get("required").and_then(Value::as_array) {
            for k in req.iter().filter_map(Value::as_str) {
                if !obj.contains_key(k) {
                    return Err(format!("{at}.{k} is missing"));
                }
            }
        }
        for (k, val) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(s) => validate_at(val, s, &format!("{at}.{k}"))?,
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    return Err(format!("{at}.{k} is not allowed"));
                }
                None => {}
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), v.as_array()) {
        for (i, x) in arr.iter().enumerate() {
            validate_at(x, items, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// The call's words as the model reads them: one line per utterance, masked.
pub fn transcript_text(lines: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (who, text) in lines {
        out.push_str(who);
        out.push_str(": ");
        out.push_str(&crate::redact::redact(text));
        out.push('\n');
    }
    out
}

/// The hand-off summary's shape.
pub fn handoff_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "who": {"type": "string", "maxLength": 100},
            "asked": {"type": "string", "maxLength": 200},
            "done": {"type": "string", "maxLength": 200},
            "pending": {"type": "string", "maxLength": 200}
        },
        "required": ["who", "asked", "done", "pending"],
        "additionalProperties": false
    })
}

/// Dispositions a call summary may give.
pub const DISPOSITIONS: &[&str] = &["resolved", "transferred", "abandoned", "unresolved"];

/// The call summary's shape.
pub fn summary_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "summary": {"type": "string", "maxLength": 300},
            "disposition": {"type": "string", "enum": DISPOSITIONS}
        },
        "required": ["summary", "disposition"],
        "additionalProperties": false
    })
}

/// Masks card numbers in every string of a model's answer.
pub fn mask_strings(v: &mut Value) {
    match v {
        Value::String(s) => {
            if let std::borrow::Cow::Owned(m) = crate::redact::redact(s) {
                *s = m;
            }
        }
        Value::Array(a) => a.iter_mut().for_each(mask_strings),
        Value::Object(o) => o.values_mut().for_each(mask_strings),
        _ => {}
    }
}

/// What a finished call's summaries are written from.
#[derive(Debug, Clone)]
pub struct CallRecord {
    pub case_id: String,
    /// Masked as in the logs.
    pub caller: String,
    pub outcome: String,
    /// (who, what), in order.
    pub lines: Vec<(&'static str, String)>,
    /// The values the caller gave (reservation number, name, …).
    pub slots: Value,
}

impl CallRecord {
    fn transferred(&self) -> bool {
        self.outcome.starts_with("transferred")
    }

    /// Where a transferred call went: the end of its outcome ("transferred [by an operator] to
    /// +1…").
    fn transfer_target(&self) -> &str {
        self.outcome.rsplit_once(" to ").map_or("", |(_, to)| to)
    }

    fn last(&self, who: &str) -> String {
        self.lines
            .iter()
            .rev()
            .find(|(w, _)| *w == who)
            .map(|(_, t)| crate::redact::redact(t).into_owned())
            .unwrap_or_default()
    }

    /// The engine's hand-off summary: who, their last request, the bot's last answer — each
    /// cut to the schema's length.
    pub fn engine_handoff(&self) -> Value {
        json!({
            "who": shorten(&self.caller, 100),
            "asked": shorten(&self.last("caller"), 200),
            "done": shorten(&self.last("agent"), 200),
            "pending": shorten(&format!("{} (values given: {})", self.outcome, self.slots), 200),
        })
    }

    /// The engine's call summary: how many turns, the last request, and the outcome's class.
    pub fn engine_summary(&self) -> Value {
        let turns = self.lines.iter().filter(|(w, _)| *w == "caller").count();
        let disposition = if self.transferred() {
            "transferred"
        } else if self.outcome == "bot hung up" {
            "resolved"
        } else if self.outcome == "caller hung up" {
            "abandoned"
        } else {
            "unresolved"
        };
        json!({
            "summary": shorten(&format!(
                "{turns} caller turn(s); last request: {:?}; ended: {}",
                self.last("caller"),
                self.outcome
            ), 300),
            "disposition": disposition,
        })
    }
}

/// One summary for the case's audit trail.
#[derive(Debug, Clone)]
pub struct Summary {
    /// `handoff_summary` or `call_summary`.
    pub action: &'static str,
    pub detail: Value,
    /// Written by the model (else by the engine: `detail.reason` says why).
    pub by_model: bool,
}

/// The call's summaries: the hand-off summary when the call was transferred
/// (`handoff_summary`, then whether the desk got it when `handoff_url` is set), and the call
/// summary (`call_summary`), each by the model when it answers in time with valid JSON, else by
/// the engine with the reason.
pub async fn summarize_call(llm: &Llm, call: &CallRecord) -> Vec<Summary> {
    let lines: Vec<(&str, &str)> = call.lines.iter().map(|(w, t)| (*w, t.as_str())).collect();
    let transcript = transcript_text(&lines);
    let mut jobs: Vec<(&str, Value, String, Value)> = vec![];
    if llm.cfg.handoff_summary && call.transferred() {
        jobs.push((
            "handoff_summary",
            handoff_schema(),
            "You hand a phone call over to a human colleague. From the transcript, write JSON: \
             who is calling, what they asked, what was done, what is still pending. Short, \
             factual, only what the transcript says."
                .to_string(),
            call.engine_handoff(),
        ));
    }
    if llm.cfg.call_summary {
        jobs.push((
            "call_summary",
            summary_schema(),
            format!(
                "Summarise this phone call in one or two sentences and give its disposition \
                 (one of {}). The call ended: {}. Only what the transcript says.",
                DISPOSITIONS.join(", "),
                call.outcome
            ),
            call.engine_summary(),
        ));
    }
    let mut out = vec![];
    for (action, schema, instructions, fallback) in jobs {
        let started = std::time::Instant::now();
        let messages = [
            Message::system(instructions),
            Message::user(transcript.clone()),
        ];
        let (mut detail, by_model) = match llm.chat_json(&messages, action, &schema).await {
            Ok(mut v) => {
                mask_strings(&mut v);
                v["source"] = json!("model");
                v["model"] = json!(llm.cfg.model);
                (v, true)
            }
            Err(e) => {
                tracing::warn!(case = %call.case_id, action, error = %e, "the model's summary failed: the engine's is kept");
                let mut v = fallback;
                v["source"] = json!("engine");
                v["reason"] = json!(e.reason());
                (v, false)
            }
        };
        detail["ms"] = json!(started.elapsed().as_millis() as u64);
        let delivered = match action {
            "handoff_summary" => llm.deliver_handoff(call, &detail).await,
            _ => None,
        };
        out.push(Summary {
            action,
            detail,
            by_model,
        });
        out.extend(delivered);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_follows_the_schema_subset() {
        let s = summary_schema();
        assert!(validate(&json!({"summary": "ok", "disposition": "resolved"}), &s).is_ok());
        assert_eq!(
            validate(&json!({"summary": "ok"}), &s),
            Err("$.disposition is missing".into())
        );
        assert!(
            validate(&json!({"summary": "ok", "disposition": "happy"}), &s)
                .unwrap_err()
                .contains("not one of")
        );
        assert_eq!(
            validate(&json!({"summary": 3, "disposition": "resolved"}), &s),
            Err("$.summary is not a string".into())
        );
        assert_eq!(
            validate(
                &json!({"summary": "a", "disposition": "resolved", "extra": 1}),
                &s
            ),
            Err("$.extra is not allowed".into())
        );
        let p = json!({"type": "object", "properties": {"room": {"type": "string", "pattern": "^[0-9]{3,4}$"}}});
        assert!(validate(&json!({"room": "412"}), &p).is_ok());
        assert!(validate(&json!({"room": "41a"}), &p).is_err());
        // Strict only where every property is required and no other allowed.
        assert!(strict_ok(&s) && strict_ok(&handoff_schema()));
        assert!(!strict_ok(&p));
    }

    #[test]
    fn the_engine_s_summaries_fit_their_schemas_however_long_the_call() {
        let long = "word ".repeat(200);
        let call = CallRecord {
            case_id: "c".into(),
            caller: "+1***0000".into(),
            outcome: "transferred to +15005550006".into(),
            lines: vec![("caller", long.clone()), ("agent", long)],
            slots: json!({"note": "x".repeat(400)}),
        };
        validate(&call.engine_handoff(), &handoff_schema()).unwrap();
        validate(&call.engine_summary(), &summary_schema()).unwrap();
        assert_eq!(shorten("short", 10), "short");
        assert_eq!(shorten("one two three four", 12), "one two…");
    }

    #[test]
    fn streamed_text_is_cut_into_clauses_at_their_ends() {
        let mut buf = String::from("Check-in is at 3 pm");
        assert_eq!(take_clause(&mut buf, 4), None);
        buf.push_str(". Breakfast, served 6.30 to 10, is free, and");
        assert_eq!(
            take_clause(&mut buf, 4).as_deref(),
            Some("Check-in is at 3 pm.")
        );
        // "Breakfast," is too short to stand alone; "6.30" is no sentence end.
        assert_eq!(
            take_clause(&mut buf, 4).as_deref(),
            Some("Breakfast, served 6.30 to 10,")
        );
        assert_eq!(buf, " is free, and");
        assert_eq!(take_clause(&mut buf, 4), None);
    }

    #[test]
    fn answers_are_masked_and_a_model_is_only_built_when_configured() {
        let mut v = json!({"done": ["card 4111 1111 1111 1111 charged"]});
        mask_strings(&mut v);
        assert!(!v.to_string().contains("4111 1111 1111 1111"), "{v}");
        assert!(Llm::from_config(&LlmConfig::default()).unwrap().is_none());
        let bad = LlmConfig {
            base_url: "ftp://x/v1".into(),
            ..LlmConfig::default()
        };
        assert!(Llm::from_config(&bad).is_err());
    }
}
