//! The operations dashboard and its admin API: the page (built into the binary, no CDN), live
//! calls as server-sent events, an operator's hang-up and transfer, recent cases and recordings.
//! Every data route needs the admin scope; the page itself holds no data (it asks for a token).

use super::{ApiError, AppState};
use crate::monitor::Control;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

const HTML: &str = include_str!("assets/dashboard.html");
const CSS: &str = include_str!("assets/dashboard.css");
const JS: &str = include_str!("assets/dashboard.js");

fn page(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, content_type),
            (CACHE_CONTROL, "no-cache"),
            (
                CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; media-src 'self' blob:",
            ),
        ],
        body,
    )
        .into_response()
}

pub async fn html() -> Response {
    page("text/html; charset=utf-8", HTML)
}

pub async fn css() -> Response {
    page("text/css; charset=utf-8", CSS)
}

pub async fn js() -> Response {
    page("text/javascript; charset=utf-8", JS)
}

fn no_calls() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "this gateway serves no calls (speech is off)",
    )
}

/// Live calls: a snapshot, then each change, as server-sent events (`data: <json>`). A
/// dashboard that falls behind gets a fresh snapshot instead of the updates it missed.
pub async fn live(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>>, ApiError> {
    s.auth.admin(&headers)?;
    let monitor = s.live.as_ref().ok_or_else(no_calls)?.monitor.clone();
    let (calls, rx) = monitor.subscribe();
    let first = json!({"type": "snapshot", "calls": calls}).to_string();
    let stream = futures_util::stream::unfold(
        (Some(first), rx, monitor),
        |(first, mut rx, monitor)| async move {
            if let Some(f) = first {
                return Some((Ok(Event::default().data(f)), (None, rx, monitor)));
            }
            let data: String = match rx.recv().await {
                Ok(text) => text.to_string(),
                Err(RecvError::Lagged(_)) => {
                    json!({"type": "snapshot", "calls": monitor.calls()}).to_string()
                }
                Err(RecvError::Closed) => return None,
            };
            Some((Ok(Event::default().data(data)), (None, rx, monitor)))
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// The live calls now.
pub async fn calls(State(s): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    s.auth.admin(&headers)?;
    let monitor = &s.live.as_ref().ok_or_else(no_calls)?.monitor;
    Ok(Json(json!({"calls": monitor.calls()})))
}

async fn control(
    s: &AppState,
    headers: &HeaderMap,
    id: &str,
    c: Control,
) -> Result<Response, ApiError> {
    s.auth.admin(headers)?;
    let monitor = &s.live.as_ref().ok_or_else(no_calls)?.monitor;
    if !monitor.control(id, c) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("no live call with id {id:?}"),
        ));
    }
    tracing::info!(call = id, control = ?c, "operator request accepted");
    Ok((StatusCode::ACCEPTED, Json(json!({"ok": true}))).into_response())
}

pub async fn hang_up(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    control(&s, &headers, &id, Control::HangUp).await
}

pub async fn transfer(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    control(&s, &headers, &id, Control::Transfer).await
}

#[derive(Deserialize)]
pub struct Limit {
    limit: Option<usize>,
}

/// The most recently updated cases (20 unless `?limit=`, at most 200).
pub async fn cases(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<Limit>,
) -> Result<Json<Value>, ApiError> {
    s.auth.admin(&headers)?;
    let limit = q.limit.unwrap_or(20).clamp(1, 200);
    let cases = s.engine.recent_cases(limit).await?;
    Ok(Json(json!({"cases": cases})))
}

fn recordings(s: &AppState) -> Result<&Arc<crate::recording::Recordings>, ApiError> {
    s.live
        .as_ref()
        .and_then(|l| l.recordings.as_ref())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "recordings are off ([recording] enabled = false)",
            )
        })
}

/// Every recording's metadata, newest first.
pub async fn list_recordings(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    s.auth.admin(&headers)?;
    let recs = recordings(&s)?.clone();
    let list = tokio::task::spawn_blocking(move || recs.list())
        .await
        .unwrap_or_default();
    Ok(Json(json!({"recordings": list})))
}

async fn recording_file(
    s: &AppState,
    headers: &HeaderMap,
    id: &str,
    file: &'static str,
    content_type: &'static str,
) -> Result<Response, ApiError> {
    s.auth.admin(headers)?;
    let path = recordings(s)?.file(id, file).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("no recording with id {id:?}"),
        )
    })?;
    let body = tokio::fs::read(&path).await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            format!("reading the recording: {e}"),
        )
    })?;
    Ok((
        [(CONTENT_TYPE, content_type), (CACHE_CONTROL, "no-store")],
        body,
    )
        .into_response())
}

pub async fn recording_wav(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    recording_file(&s, &headers, &id, "call.wav", "audio/wav").await
}

pub async fn recording_timeline(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    recording_file(
        &s,
        &headers,
        &id,
        "timeline.jsonl",
        "application/jsonl; charset=utf-8",
    )
    .await
}
