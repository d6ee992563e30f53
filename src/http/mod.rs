//! The HTTP API (axum): conversations, the agent registry (seed 003), the central log, cases,
//! and a health probe. Handlers are thin: parse the request once into types, call the engine,
//! map its errors onto status codes with a JSON body that says what is wrong.

use crate::agent::engine::{Engine, EngineError};
use crate::agent::registry::{AgentCard, RegistryError};
use crate::runtime::live::{self, LiveDeps};
use crate::runtime::stream_token::{StreamIdentity, now_ms};
use crate::store::{LogQuery, LogType};
use crate::transport::{Provider, plivo, twilio};
use axum::extract::rejection::JsonRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::http::header::{CONTENT_TYPE, HOST};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

mod admin;
mod answer;
pub mod auth;
pub mod server;
use auth::{ApiAuth, HANDLE_HEADER, Principal};

pub use crate::agent::caller::DEMO_CALLER;

#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    pub http: reqwest::Client,
    /// The speech stack for phone calls; None when the gateway serves text only.
    pub live: Option<Arc<LiveDeps>>,
    /// Public base URL for provider callbacks (e.g. https://gw.example.com); else the Host header.
    pub public_url: Option<String>,
    /// API tokens and the turn rate limit.
    pub auth: Arc<ApiAuth>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_page))
        .route("/v1/conversations", post(create_conversation))
        .route("/v1/conversations/{id}", get(get_conversation))
        .route("/v1/conversations/{id}/messages", post(post_message))
        .route("/v1/agents", get(list_agents).post(register_agent))
        .route("/v1/agents/{id}", delete(delete_agent))
        .route("/v1/logs", get(get_logs))
        .route("/v1/cases", get(admin::cases))
        .route("/v1/cases/{id}", get(get_case))
        .route("/v1/live", get(admin::live))
        .route("/v1/calls", get(admin::calls))
        .route("/v1/calls/{id}/hangup", post(admin::hang_up))
        .route("/v1/calls/{id}/transfer", post(admin::transfer))
        .route("/v1/recordings", get(admin::list_recordings))
        .route("/v1/recordings/{id}/call.wav", get(admin::recording_wav))
        .route(
            "/v1/recordings/{id}/timeline",
            get(admin::recording_timeline),
        )
        .route("/admin", get(admin::html))
        .route("/admin/dashboard.css", get(admin::css))
        .route("/admin/dashboard.js", get(admin::js))
        .route("/v1/stream-urls", post(stream_url))
        .route("/twilio/voice", post(twilio_voice))
        .route("/twilio/media", get(twilio_media))
        .route("/twilio/status", post(twilio_status))
        .route("/telnyx/voice", post(answer::telnyx_voice))
        .route("/telnyx/media", get(unsigned_media(Provider::Telnyx)))
        .route(
            "/plivo/voice",
            get(answer::plivo_voice).post(answer::plivo_voice),
        )
        .route("/plivo/media", get(unsigned_media(Provider::Plivo)))
        .route("/plivo/transfer", get(plivo_transfer).post(plivo_transfer))
        .route("/exotel/media", get(unsigned_media(Provider::Exotel)))
        .route(
            "/vonage/answer",
            get(answer::vonage_answer).post(answer::vonage_answer),
        )
        .route("/vonage/media", get(unsigned_media(Provider::Vonage)))
        .route("/softphone", get(softphone_page))
        .route("/softphone/softphone.css", get(softphone_css))
        .route("/softphone/softphone.js", get(softphone_js))
        .route("/softphone/templates", get(softphone_templates))
        .route("/softphone/config", get(softphone_config))
        .route("/webrtc/signal", get(webrtc_signal))
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .with_state(state)
}

/// An error response: `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// 401s tell the client which scheme to use (`WWW-Authenticate: Bearer`).
    challenge: bool,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            challenge: false,
        }
    }

    fn with_bearer_challenge(mut self) -> Self {
        self.challenge = true;
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": {"code": self.code, "message": self.message}}));
        if self.challenge {
            (
                self.status,
                [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
                body,
            )
                .into_response()
        } else {
            (self.status, body).into_response()
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let (status, code) = match &e {
            EngineError::NotFound(_) => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            EngineError::Expired(_) => (StatusCode::GONE, "EXPIRED"),
            EngineError::Busy(_) => (StatusCode::CONFLICT, "BUSY"),
            EngineError::InvalidInput(_) => (StatusCode::BAD_REQUEST, "INVALID_INPUT"),
            EngineError::Store(_) | EngineError::Setup(_) => {
                // The details go to the log, never to the client.
                tracing::error!(error = %e, "request failed");
                return ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "INTERNAL_ERROR",
                    "internal error; the gateway's log has the details",
                );
            }
        };
        ApiError::new(status, code, e.to_string())
    }
}

fn bad_json(r: JsonRejection) -> ApiError {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(r.status(), "TOO_LARGE", r.body_text())
    } else {
        ApiError::new(StatusCode::BAD_REQUEST, "INVALID_INPUT", r.body_text())
    }
}

/// The conversation `id` if the principal may use it: an admin may use any; a client only the
/// one whose handle it presents. Anything else is "not found", so ids cannot be probed.
async fn own_conversation(
    s: &AppState,
    who: &Principal,
    headers: &HeaderMap,
    id: &str,
) -> Result<(), ApiError> {
    if who.is_admin() {
        return Ok(());
    }
    let presented = headers.get(HANDLE_HEADER).and_then(|h| h.to_str().ok());
    let stored = s.engine.conversation_handle(id).await.unwrap_or_default();
    if auth::handle_matches(&stored, presented) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!(
                "no conversation with id {id:?} for this client (send its {HANDLE_HEADER} header)"
            ),
        ))
    }
}

/// Prometheus metrics (`crate::metrics`); admin scope, as they describe every call.
async fn metrics_page(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    s.auth.admin(&headers)?;
    Ok((
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        crate::metrics::render(),
    )
        .into_response())
}

async fn healthz(State(s): State<AppState>) -> Response {
    let (active, draining) = s.live.as_ref().map_or((0, false), |l| {
        (l.registry.active(), l.registry.is_draining())
    });
    let body = Json(json!({
        "status": if draining { "draining" } else { "ok" },
        "template": s.engine.template.name,
        "agents": s.engine.registry.status().len(),
        "speech": s.live.is_some(),
        "active_calls": active,
        "conversations_in_memory": s.engine.in_memory(),
    }));
    // A draining gateway fails its health check so load balancers stop sending calls.
    let code = if draining {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, body).into_response()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NewConversation {
    caller_id: Option<String>,
    channel: Option<String>,
}

async fn create_conversation(
    State(s): State<AppState>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let who = s.auth.authenticate(&headers, None)?;
    s.auth.turn(&who, server::peer(&ext))?;
    let body = body.map_err(|r| ApiError::new(r.status(), "INVALID_INPUT", r.body_text()))?;
    // The body is optional: no body means the demo caller on the text channel.
    let req: NewConversation = if body.iter().all(u8::is_ascii_whitespace) {
        NewConversation::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_INPUT",
                format!("invalid JSON body: {e}"),
            )
        })?
    };
    // Who is calling is the server's word, not the client's: only an admin (a trusted backend,
    // or anyone in development mode) may name the caller.
    let caller = match req.caller_id {
        Some(c) if who.is_admin() => c,
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                "caller_id is set by the gateway for client tokens",
            ));
        }
        None if s.auth.is_open() => DEMO_CALLER.into(),
        None => format!("text_{}", uuid::Uuid::new_v4().simple()),
    };
    let channel = req.channel.unwrap_or_else(|| "text".into());
    let handle = auth::new_handle();
    let turn = s
        .engine
        .start_with_handle(&caller, &channel, &auth::handle_digest(&handle))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"conversation_id": turn.conversation_id, "handle": handle, "case_id": turn.case_id, "reply": turn.reply}),
        ),
    ))
}

async fn get_conversation(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let who = s.auth.authenticate(&headers, None)?;
    own_conversation(&s, &who, &headers, &id).await?;
    let c = s.engine.conversation(&id).await?;
    Ok(Json(json!({
        "conversation_id": c.id, "caller_id": c.caller_id, "case_id": c.case_id, "ended": c.ended,
        "history": c.history, "pending": c.pending, "expires_at_ms": c.expires_at_ms,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Message {
    text: String,
}

async fn post_message(
    State(s): State<AppState>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
    Path(id): Path<String>,
    body: Result<Json<Message>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let who = s.auth.authenticate(&headers, None)?;
    own_conversation(&s, &who, &headers, &id).await?;
    s.auth.turn(&who, server::peer(&ext))?;
    let Json(msg) = body.map_err(bad_json)?;
    let t = s.engine.say(&id, &msg.text).await?;
    Ok(Json(json!({
        "reply": t.reply, "intent": t.intent, "agent": t.agent, "status": t.status, "case_id": t.case_id,
        "conversation_id": t.conversation_id, "confidence": t.confidence, "ended": t.ended,
        "action": t.action, "fallback": t.fallback,
    })))
}

async fn list_agents(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    s.auth.admin(&headers)?;
    Ok(Json(json!({"agents": s.engine.registry.status()})))
}

async fn register_agent(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<AgentCard>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    s.auth.admin(&headers)?;
    let Json(card) = body.map_err(bad_json)?;
    let template = &s.engine.template;
    if let Some(unknown) = card.tasks.iter().find(|t| !template.tasks.contains_key(*t)) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_INPUT",
            format!(
                "task {unknown:?} is not declared by template {}; remote agents take over or back up its tasks: {}",
                template.name,
                template
                    .tasks
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let id = s.engine.register_remote(card).await.map_err(|e| match e {
        RegistryError::Duplicate(_) => {
            ApiError::new(StatusCode::CONFLICT, "DUPLICATE", e.to_string())
        }
        RegistryError::Full(_) => ApiError::new(StatusCode::CONFLICT, "FULL", e.to_string()),
        _ => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_INPUT",
            e.to_string(),
        ),
    })?;
    tracing::info!(agent = %id, "remote agent registered");
    let status = s
        .engine
        .registry
        .status()
        .into_iter()
        .find(|a| a.card.id == id);
    Ok((StatusCode::CREATED, Json(json!(status))))
}

async fn delete_agent(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.auth.admin(&headers)?;
    s.engine.remove_agent(&id).await.map_err(|e| match e {
        RegistryError::BuiltIn(_) => {
            ApiError::new(StatusCode::FORBIDDEN, "BUILT_IN", e.to_string())
        }
        _ => ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", e.to_string()),
    })?;
    tracing::info!(agent = %id, "agent removed");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogParams {
    session: Option<String>,
    agent: Option<String>,
    #[serde(rename = "type")]
    log_type: Option<String>,
    from: Option<i64>,
    to: Option<i64>,
    limit: Option<usize>,
}

async fn get_logs(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<LogParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    s.auth.admin(&headers)?;
    let Query(p) =
        q.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "INVALID_INPUT", e.body_text()))?;
    let log_type = p
        .log_type
        .as_deref()
        .map(|t| {
            t.parse::<LogType>().map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "INVALID_INPUT",
                    format!("type must be one of caller_to_agent, agent_to_caller, agent_to_agent, system (got {t:?})"),
                )
            })
        })
        .transpose()?;
    if let (Some(f), Some(t)) = (p.from, p.to)
        && f > t
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_INPUT",
            "from is after to",
        ));
    }
    let logs = s
        .engine
        .logs(LogQuery {
            session_id: p.session,
            agent: p.agent,
            log_type,
            from_ms: p.from,
            to_ms: p.to,
            limit: p.limit,
        })
        .await?;
    Ok(Json(json!({"count": logs.len(), "logs": logs})))
}

async fn get_case(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    s.auth.admin(&headers)?;
    match s.engine.case(&id).await? {
        Some(c) => Ok(Json(json!(c))),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("no case with id {id:?}"),
        )),
    }
}

/// Twilio's incoming-call webhook: answer with TwiML that connects the call's audio to our
/// Media Streams WebSocket, passing the caller's number and the template as parameters.
/// Twilio's request-signing check, when an auth token is configured.
fn twilio_signed(
    open: bool,
    live: &LiveDeps,
    public_url: Option<&str>,
    headers: &HeaderMap,
    uri: &Uri,
    ws: bool,
    params: &[(String, String)],
) -> bool {
    let token = &live.twilio.auth_token;
    if token.is_empty() {
        // Unsigned Twilio requests only in development mode.
        return open;
    }
    let Some(sig) = headers
        .get("x-twilio-signature")
        .and_then(|h| h.to_str().ok())
    else {
        return false;
    };
    for https in called_urls(public_url, headers, uri) {
        if ws {
            // On the WebSocket upgrade Twilio signs the wss:// URL (reported; not documented).
            let wss = https
                .replacen("https://", "wss://", 1)
                .replacen("http://", "ws://", 1);
            if twilio::verify_signature(token, &wss, params, sig) {
                return true;
            }
        }
        if twilio::verify_signature(token, &https, params, sig) {
            return true;
        }
    }
    false
}

/// The URLs a provider may have signed for this request: the configured public URL, or `https://`
/// and the Host it came in on, with the path and query it asked for.
fn called_urls(public_url: Option<&str>, headers: &HeaderMap, uri: &Uri) -> Vec<String> {
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let mut out = Vec::with_capacity(2);
    if let Some(u) = public_url {
        out.push(format!("{}{path}", u.trim_end_matches('/')));
    }
    if let Some(h) = headers.get(HOST).and_then(|h| h.to_str().ok()) {
        out.push(format!("https://{h}{path}"));
    }
    out
}

/// Development mode for provider-facing routes: no API token and no provider credential
/// configured (then unsigned webhooks and token-less media sockets are let in, on loopback).
fn dev_mode(s: &AppState, live: &LiveDeps) -> bool {
    s.auth.is_open() && !live.has_provider_credentials()
}

/// One call's media stream as the provider is to open it.
struct OneCallStream {
    /// `{ws base}/{provider}/media`, with `?token=` except for Twilio (whose stream URL takes no
    /// query: the token goes in a stream parameter).
    url: String,
    token: String,
    expires_at_ms: u64,
}

/// A one-call stream of `provider` for `caller` (empty: the stream's parameters will say),
/// valid for `ttl_ms`, at the public base the request came in on.
fn one_call_stream(
    s: &AppState,
    live: &LiveDeps,
    headers: &HeaderMap,
    provider: &str,
    ttl_ms: u64,
    caller: &str,
) -> Result<OneCallStream, ApiError> {
    let base = public_base(s, headers)
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "INVALID_INPUT", "no Host header"))?;
    let (token, expires_at_ms) = live.stream_tokens.mint(provider, now_ms(), ttl_ms, caller);
    let mut url = format!("{}/{provider}/media", ws_base(&base));
    if provider != "twilio" {
        url.push_str("?token=");
        url.push_str(&token);
    }
    Ok(OneCallStream {
        url,
        token,
        expires_at_ms,
    })
}

fn forbidden() -> Response {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "BAD_SIGNATURE",
        "X-Twilio-Signature is missing or does not match",
    )
    .into_response()
}

fn no_speech() -> Response {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "NO_SPEECH",
        "this gateway was started without speech",
    )
    .into_response()
}

fn parse_form(body: &[u8]) -> Result<Vec<(String, String)>, ApiError> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_INPUT",
            format!("form body: {e}"),
        )
    })
}

type Form = Vec<(String, String)>;

/// A Twilio webhook's form, once its signature is checked (and the speech stack it is for).
// The error is the response to send; it is built once per refused request, off the audio path.
#[allow(clippy::result_large_err)]
fn signed_webhook(
    s: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    body: &[u8],
) -> Result<(Arc<LiveDeps>, Form), Response> {
    let Some(live) = s.live.clone() else {
        return Err(no_speech());
    };
    let form = parse_form(body).map_err(IntoResponse::into_response)?;
    if !twilio_signed(
        s.auth.is_open(),
        &live,
        s.public_url.as_deref(),
        headers,
        uri,
        false,
        &form,
    ) {
        tracing::warn!(path = %uri.path(), "Twilio webhook with a bad signature refused");
        return Err(forbidden());
    }
    Ok((live, form))
}

/// `https://host` → `wss://host` (and http → ws): where a provider opens the media socket.
fn ws_base(base: &str) -> String {
    base.replacen("https://", "wss://", 1)
        .replacen("http://", "ws://", 1)
}

/// Twilio's incoming-call webhook: answers TwiML that connects the call to our media WebSocket.
async fn twilio_voice(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    body: axum::body::Bytes,
) -> Response {
    let (live, form) = match signed_webhook(&s, &headers, &uri, &body) {
        Ok(x) => x,
        Err(r) => return r,
    };
    if live.registry.is_draining() {
        // Shutting down: the caller is told, not left in silence.
        let twiml = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Say>{}</Say><Hangup/></Response>"#,
            answer::DRAINING
        );
        return ([(CONTENT_TYPE, "text/xml")], twiml).into_response();
    }
    let caller = form
        .iter()
        .find(|(k, _)| k == "From")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    // The caller as Twilio signed it, bound into a one-call token the stream's start must carry
    // (its `caller` parameter alone is not believed once signing is on).
    let stream = match one_call_stream(&s, &live, &headers, "twilio", answer::TOKEN_TTL_MS, caller)
    {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    let twiml = twilio::connect_twiml(
        &stream.url,
        &[
            ("caller", caller),
            ("template", &s.engine.template.name),
            ("token", &stream.token),
        ],
    );
    ([(CONTENT_TYPE, "text/xml")], twiml).into_response()
}

/// Twilio's stream status callbacks (`statusCallback` on `<Stream>`): logged on the call's case.
async fn twilio_status(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    body: axum::body::Bytes,
) -> Response {
    let (live, form) = match signed_webhook(&s, &headers, &uri, &body) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let get = |k: &str| {
        form.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let call_sid = get("CallSid");
    let detail = json!({
        "event": get("StreamEvent"),
        "stream_sid": get("StreamSid"),
        "call_sid": call_sid,
        "error": get("StreamError"),
        "timestamp": get("Timestamp"),
    });
    match live.registry.conversation_for(&call_sid) {
        Some(conv) => {
            if let Err(e) = live.engine.note(&conv, "stream_status", detail).await {
                tracing::warn!(call = %call_sid, error = %e, "could not record a stream status");
            }
        }
        None => {
            tracing::info!(call = %call_sid, %detail, "stream status for a call we do not know")
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

/// The gateway's public base URL (no trailing slash): `public_url` from config, else
/// `https://` and the request's Host.
fn public_base(s: &AppState, headers: &HeaderMap) -> Option<String> {
    match &s.public_url {
        Some(u) => Some(u.trim_end_matches('/').to_string()),
        None => headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .map(|h| format!("https://{h}")),
    }
}

/// Accepts a provider's media WebSocket: admission control, then the call's task. `base` is the
/// public URL the provider reached us at, for callbacks the call may need (Plivo's transfer).
fn media_socket(
    s: &AppState,
    ws: WebSocketUpgrade,
    provider: Provider,
    base: Option<String>,
    peer: Option<std::net::IpAddr>,
    identity: StreamIdentity,
) -> Response {
    let Some(live) = s.live.clone() else {
        return no_speech();
    };
    let pending = match connect(&live, live::channel(provider), peer) {
        Ok(p) => p,
        Err(r) => return r,
    };
    ws.max_message_size(crate::transport::MAX_MESSAGE_BYTES)
        .on_failed_upgrade(|e| tracing::warn!(error = %e, "media WebSocket upgrade failed"))
        .on_upgrade(move |socket| live::serve_call(socket, live, provider, pending, base, identity))
}

type MediaQuery = Result<Query<MediaToken>, axum::extract::rejection::QueryRejection>;

/// A place among connections waiting to start a call, or the 503 that says why not.
#[allow(clippy::result_large_err)]
fn connect(
    live: &LiveDeps,
    channel: &str,
    peer: Option<std::net::IpAddr>,
) -> Result<crate::runtime::calls::Pending, Response> {
    live.registry.connect(peer).map_err(|why| {
        tracing::warn!(provider = channel, peer = ?peer, ?why, "call refused");
        let outcome = match why {
            crate::runtime::calls::Refusal::Draining => "drained",
            crate::runtime::calls::Refusal::TooManyPending => "refused",
        };
        crate::metrics::count(
            crate::metrics::CALLS_ENDED,
            &[("provider", channel), ("outcome", outcome)],
            1.0,
        );
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "not taking calls now",
        )
        .into_response()
    })
}

#[derive(Deserialize, Default)]
struct MediaToken {
    token: Option<String>,
}

/// Whether a media socket of Telnyx, Plivo, Exotel or Vonage may connect, and who its caller is:
/// a one-call token (from the gateway's answer to a signed webhook, or `POST /v1/stream-urls`)
/// opens one socket and may name the caller; the static media token opens any; without either,
/// only development mode (no API token and no provider credential configured) lets it in.
fn media_allowed(
    s: &AppState,
    live: &LiveDeps,
    provider: Provider,
    presented: Option<&str>,
) -> Option<StreamIdentity> {
    if let Some(t) = presented
        && t.contains('.')
    {
        let grant = live
            .stream_tokens
            .redeem(t, live::channel(provider), now_ms())?;
        return Some(match grant.caller {
            Some(c) => StreamIdentity::Bound(c),
            None => StreamIdentity::FromParams,
        });
    }
    let expected = live.calls.media_token.as_str();
    if expected.is_empty() {
        return dev_mode(s, live).then_some(StreamIdentity::FromParams);
    }
    presented
        .is_some_and(|p| {
            bool::from(subtle::ConstantTimeEq::ct_eq(
                auth::digest(p).as_slice(),
                auth::digest(expected).as_slice(),
            ))
        })
        .then_some(StreamIdentity::FromParams)
}

/// The media WebSocket of a provider whose stream carries no request signature: authenticated
/// by the media token in its URL.
fn unsigned_media(
    provider: Provider,
) -> impl Fn(
    State<AppState>,
    HeaderMap,
    axum::http::Extensions,
    MediaQuery,
    WebSocketUpgrade,
) -> std::future::Ready<Response>
+ Clone {
    move |State(s), headers, ext, query, ws| {
        let mut identity = StreamIdentity::FromParams;
        if let Some(live) = &s.live {
            let token = query.as_ref().ok().and_then(|q| q.token.as_deref());
            match media_allowed(&s, live, provider, token) {
                Some(i) => identity = i,
                None => {
                    tracing::warn!(
                        provider = live::channel(provider),
                        peer = ?server::peer(&ext),
                        "media WebSocket without a valid token refused"
                    );
                    return std::future::ready(
                        ApiError::new(
                            StatusCode::FORBIDDEN,
                            "BAD_TOKEN",
                            "this media URL needs the gateway's media token",
                        )
                        .into_response(),
                    );
                }
            }
        }
        let base = public_base(&s, &headers);
        std::future::ready(media_socket(
            &s,
            ws,
            provider,
            base,
            server::peer(&ext),
            identity,
        ))
    }
}

#[derive(Deserialize)]
struct TransferQuery {
    to: String,
    sig: String,
}

/// Where Plivo fetches the instructions of a call the gateway transfers (`aleg_url`): Plivo XML
/// dialling the destination, for a destination this gateway signed with the account's token.
async fn plivo_transfer(
    State(s): State<AppState>,
    query: Result<Query<TransferQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let token = s.live.as_ref().map_or("", |l| l.plivo.auth_token.as_str());
    match query {
        Ok(Query(q)) if plivo::verify_transfer_signature(token, &q.to, &q.sig) => {
            tracing::info!(to = %q.to, "Plivo fetched a transfer's XML");
            ([(CONTENT_TYPE, "application/xml")], plivo::dial_xml(&q.to)).into_response()
        }
        _ => {
            tracing::warn!("Plivo transfer URL without a valid signature refused");
            ApiError::new(
                StatusCode::FORBIDDEN,
                "BAD_SIGNATURE",
                "this transfer URL was not signed by this gateway",
            )
            .into_response()
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamUrlRequest {
    provider: String,
    ttl_secs: Option<u64>,
    /// The caller as the operator's application knows it (from the provider's signed webhook);
    /// bound into the token, so the stream's own parameters cannot change it.
    caller: Option<String>,
}

/// A media stream URL for one call, for an answer application of the operator's own to hand to
/// the provider (instead of the gateway's answer webhooks), optionally naming the caller it
/// verified; for Twilio, whose stream URL takes no query, the token is a stream parameter.
async fn stream_url(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<StreamUrlRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    s.auth.admin(&headers)?;
    let Json(req) = body.map_err(bad_json)?;
    let Some(live) = s.live.as_ref() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "NO_SPEECH",
            "this gateway was started without speech",
        ));
    };
    let provider = match req.provider.as_str() {
        "twilio" | "telnyx" | "plivo" | "exotel" | "vonage" => req.provider.as_str(),
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_INPUT",
                "provider must be twilio, telnyx, plivo, exotel or vonage",
            ));
        }
    };
    let caller = req.caller.as_deref().unwrap_or("").trim();
    if caller.len() > crate::runtime::stream_token::MAX_CALLER_BYTES {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_INPUT",
            "caller is too long",
        ));
    }
    let ttl_ms = req.ttl_secs.unwrap_or(60).saturating_mul(1000);
    let stream = one_call_stream(&s, live, &headers, provider, ttl_ms, caller)?;
    let mut body = json!({"url": stream.url, "expires_at_ms": stream.expires_at_ms});
    if provider == "twilio" {
        // The token goes in a <Parameter name="token">.
        body["parameters"] = json!({"token": stream.token});
    }
    Ok((StatusCode::CREATED, Json(body)))
}

/// Twilio's bidirectional Media Streams WebSocket.
async fn twilio_media(
    State(s): State<AppState>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
    uri: Uri,
    ws: WebSocketUpgrade,
) -> Response {
    if let Some(live) = &s.live
        && !twilio_signed(
            s.auth.is_open(),
            live,
            s.public_url.as_deref(),
            &headers,
            &uri,
            true,
            &[],
        )
    {
        tracing::warn!("Twilio media WebSocket with a bad signature refused");
        return forbidden();
    }
    let base = public_base(&s, &headers);
    // With signing on, the caller is named only by the token of the gateway's own answer.
    let identity = match &s.live {
        Some(l) if !l.twilio.auth_token.is_empty() => StreamIdentity::TokenParam,
        _ => StreamIdentity::FromParams,
    };
    media_socket(&s, ws, Provider::Twilio, base, server::peer(&ext), identity)
}

/// The softphone's files are built into the binary; the page loads nothing from elsewhere.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, content_type),
            (axum::http::header::CACHE_CONTROL, "no-cache"),
            (
                axum::http::header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:",
            ),
        ],
        body,
    )
        .into_response()
}

async fn softphone_page() -> Response {
    asset("text/html; charset=utf-8", crate::webrtc::assets::HTML)
}

async fn softphone_css() -> Response {
    asset("text/css; charset=utf-8", crate::webrtc::assets::CSS)
}

async fn softphone_js() -> Response {
    asset("text/javascript; charset=utf-8", crate::webrtc::assets::JS)
}

/// The templates a call can be placed with: this gateway serves one.
async fn softphone_templates(State(s): State<AppState>) -> Json<Value> {
    let name = &s.engine.template.name;
    Json(json!({"default": name, "templates": [name]}))
}

#[derive(Deserialize, Default)]
struct AccessToken {
    access_token: Option<String>,
}

/// The page's `RTCPeerConnection` configuration: the same STUN/TURN servers the gateway uses
/// (TURN credentials only to a client with a token, when tokens are configured).
async fn softphone_config(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    s.auth.authenticate(&headers, None)?;
    Ok(softphone_ice(&s))
}

fn softphone_ice(s: &AppState) -> Json<Value> {
    let servers: Vec<Value> = s
        .live
        .as_ref()
        .map(|l| {
            l.rtc
                .ice_servers
                .iter()
                .map(|i| {
                    let mut v = json!({"urls": i.urls});
                    if !i.username.is_empty() {
                        v["username"] = json!(i.username);
                        v["credential"] = json!(i.credential);
                    }
                    v
                })
                .collect()
        })
        .unwrap_or_default();
    Json(json!({"iceServers": servers}))
}

/// The softphone's signaling WebSocket: one call per connection (see `webrtc::signal`). With
/// API tokens configured it needs one (`?access_token=`, as a browser cannot set headers on a
/// WebSocket) and the caller is an identity the gateway issues, not one the page names.
async fn webrtc_signal(
    State(s): State<AppState>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
    query: Result<Query<AccessToken>, axum::extract::rejection::QueryRejection>,
    ws: WebSocketUpgrade,
) -> Response {
    let Some(live) = s.live.clone() else {
        return no_speech();
    };
    let token = query.as_ref().ok().and_then(|q| q.access_token.as_deref());
    let who = match s.auth.authenticate(&headers, token) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!("softphone signaling without a valid token refused");
            return e.into_response();
        }
    };
    // An admin (anyone in development mode) may name the caller on the page; a client is who
    // the gateway says.
    let caller = (!who.is_admin()).then(|| format!("web_{}", uuid::Uuid::new_v4().simple()));
    let pending = match connect(&live, "webrtc", server::peer(&ext)) {
        Ok(p) => p,
        Err(r) => return r,
    };
    ws.max_message_size(crate::webrtc::signal::MAX_MESSAGE_BYTES)
        .on_failed_upgrade(|e| tracing::warn!(error = %e, "signaling WebSocket upgrade failed"))
        .on_upgrade(move |socket| crate::runtime::browser::serve(socket, live, pending, caller))
}

/// Every `session.sweep_secs`: expired conversations leave memory, the in-memory map is kept
/// within `session.max_in_memory`, and records older than the retention are purged (hourly).
pub async fn housekeeping(engine: Arc<Engine>, session: crate::config::SessionConfig) {
    let every = std::time::Duration::from_secs(session.sweep_secs.max(1));
    let retention_ms =
        i64::try_from(session.retention_days.saturating_mul(86_400_000)).unwrap_or(i64::MAX);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_purge: Option<tokio::time::Instant> = None;
    loop {
        tick.tick().await;
        let evicted = engine.evict(session.max_in_memory);
        if evicted > 0 {
            tracing::debug!(
                evicted,
                in_memory = engine.in_memory(),
                "conversations left memory"
            );
            // Hand the freed heap back to the system, so the process shrinks after a burst of
            // conversations (glibc otherwise keeps the pages for reuse).
            #[cfg(all(target_os = "linux", target_env = "gnu"))]
            let _ = tokio::task::spawn_blocking(|| {
                // SAFETY: malloc_trim only releases free memory at the top of glibc's heaps and
                // arenas; it has no preconditions.
                unsafe { libc::malloc_trim(0) }
            })
            .await;
        }
        if last_purge.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(3600)) {
            last_purge = Some(tokio::time::Instant::now());
            match engine.purge(retention_ms).await {
                Ok((0, 0)) => {}
                Ok((sessions, logs)) => {
                    tracing::info!(sessions, logs, "records past the retention purged")
                }
                Err(e) => tracing::warn!(error = %e, "retention purge failed"),
            }
        }
    }
}

/// Deletes recordings past their retention, hourly.
pub async fn purge_recordings(recordings: Arc<crate::recording::Recordings>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let r = recordings.clone();
        let now = now_ms();
        match tokio::task::spawn_blocking(move || r.purge(now)).await {
            Ok(0) | Err(_) => {}
            Ok(n) => tracing::info!(recordings = n, "recordings past the retention deleted"),
        }
    }
}

/// Polls remote agents' health until `shutdown` resolves.
pub async fn health_loop(engine: Arc<Engine>, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        engine.registry.refresh_health().await;
    }
}
