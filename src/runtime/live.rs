//! The phone driver: one tokio task per media-stream WebSocket. It parses the provider's frames
//! ([`Wire`]), decodes and resamples caller audio to 16 kHz, and feeds a [`Session`], which owns
//! the call (the pure core, its effects, the case); bot audio, marks and `clear` go back through
//! the wire. The task sleeps until the next frame, effect result, or deadline — the core's
//! ([`Session::poll_timeout`]), a chunked provider's tail, a mark of a provider that echoes
//! none, or the call's own limits (no start, no media, maximum length) — never on a fixed tick.
//!
//! Nothing from the network can panic the task: a bad frame is logged with the call id and the
//! call goes on; a dropped socket is a hang-up. However the call ends, its case is closed with
//! the outcome, and its admission slot is given back.

use crate::agent::engine::Engine;
use crate::audio::g711::{decode_alaw_into, decode_l16le_into, decode_ulaw_into};
use crate::audio::resample::StreamResampler;
use crate::call::{CALLER_RATE, CallConfig, CallEvent, EndAction};
use crate::config::{CallsConfig, Config, PlivoConfig, TelnyxConfig, TwilioConfig, VonageConfig};
use crate::runtime::calls::{Admission, CallRegistry, Pending, Slot};
pub use crate::runtime::session::shown_caller;
use crate::runtime::session::{
    CallState, LocalMarks, MediaPort, Session, SessionParts, stop_requested,
};
use crate::runtime::speech::Speech;
use crate::runtime::stream_token::{StreamIdentity, now_ms};
use crate::transport::wire::{Frame, Wire};
use crate::transport::{Encoding, Inbound, ProtocolError, Provider, plivo, telnyx, twilio};
use anyhow::Context;
use axum::extract::ws::{Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// Everything a live call needs, shared by all calls.
pub struct LiveDeps {
    pub engine: Arc<Engine>,
    pub speech: Speech,
    pub call: CallConfig,
    pub calls: CallsConfig,
    pub twilio: TwilioConfig,
    pub telnyx: TelnyxConfig,
    pub plivo: PlivoConfig,
    pub vonage: VonageConfig,
    /// For provider REST calls (hang-up, transfer).
    pub http: reqwest::Client,
    pub registry: Arc<CallRegistry>,
    /// The media settings of browser calls (`[webrtc]`).
    pub rtc: crate::webrtc::peer::RtcSettings,
    /// How browser calls carry their media: over the network, or in the process for calls on
    /// a virtual clock.
    pub rtc_media: crate::webrtc::peer::RtcMedia,
    /// Per-call stream tokens handed out for providers that do not sign their media socket.
    pub stream_tokens: crate::runtime::stream_token::StreamTokens,
    /// Live calls, for the dashboard (and an operator's hang-up or transfer).
    pub monitor: Arc<crate::monitor::Monitor>,
    /// Where calls are recorded, when `[recording]` is on.
    pub recordings: Option<Arc<crate::recording::Recordings>>,
}

impl LiveDeps {
    pub fn new(engine: Arc<Engine>, speech: Speech, cfg: &Config) -> anyhow::Result<LiveDeps> {
        let calls = cfg.calls.clone().with_env();
        Ok(LiveDeps {
            stream_tokens: crate::runtime::stream_token::StreamTokens::new(&calls.media_token),
            engine,
            speech,
            call: cfg.speech.call.clone(),
            calls,
            twilio: cfg.twilio.clone().with_env(),
            telnyx: cfg.telnyx.clone().with_env(),
            plivo: cfg.plivo.clone().with_env(),
            vonage: cfg.vonage.clone().with_env(),
            http: crate::net::client_builder()
                .timeout(Duration::from_secs(5))
                .build()?,
            registry: Arc::new(CallRegistry::with_pending_limits(
                cfg.calls.max_active,
                (cfg.calls.max_active * 4).max(64),
                cfg.calls.max_pending_per_ip,
            )),
            rtc: crate::webrtc::settings(&cfg.webrtc),
            rtc_media: crate::webrtc::peer::RtcMedia::Network,
            monitor: Arc::default(),
            recordings: if cfg.recording.enabled {
                let dir = cfg.recordings_dir();
                Some(
                    crate::recording::Recordings::start(dir.clone(), cfg.recording.retention_days)
                        .with_context(|| {
                            format!("creating the recordings directory {}", dir.display())
                        })?,
                )
            } else {
                None
            },
        })
    }
}

impl LiveDeps {
    /// Whether any provider credential is configured (then nothing provider-facing is open).
    pub fn has_provider_credentials(&self) -> bool {
        !self.twilio.auth_token.is_empty()
            || !self.telnyx.api_key.is_empty()
            || !self.telnyx.public_key.is_empty()
            || !self.plivo.auth_token.is_empty()
            || !self.vonage.signature_secret.is_empty()
    }

    /// What every call's session is started with.
    pub fn parts(&self, out_rate: u32) -> SessionParts<'_> {
        SessionParts {
            engine: &self.engine,
            speech: &self.speech,
            call: &self.call,
            out_rate,
            monitor: Some(&self.monitor),
            recordings: self.recordings.as_ref(),
            // A call on a virtual clock must replay the same whatever else the process runs.
            follow_line: !self.speech.asr.is_on_virtual_clock(),
        }
    }
}

/// The channel name a provider's calls are recorded under.
pub fn channel(p: Provider) -> &'static str {
    match p {
        Provider::Twilio => "twilio",
        Provider::Telnyx => "telnyx",
        Provider::Plivo => "plivo",
        Provider::Exotel => "exotel",
        Provider::Vonage => "vonage",
    }
}

/// Runs one media-stream call on `socket` until it ends. `pending` came from
/// [`CallRegistry::connect`] when the WebSocket was accepted; the call takes its slot at `start`.
pub async fn serve_call(
    socket: WebSocket,
    deps: Arc<LiveDeps>,
    provider: Provider,
    pending: Pending,
    base_url: Option<String>,
    identity: StreamIdentity,
) {
    let span = tracing::info_span!(
        "call",
        provider = channel(provider),
        id = tracing::field::Empty,
        case_id = tracing::field::Empty
    );
    let mut run = PhoneCall::new(deps, provider, pending, span.clone(), base_url, identity);
    async move {
        if let Err(e) = run.run(socket).await {
            tracing::warn!(error = %e, "call ended with an error");
            run.fail(&format!("error: {e}"));
        }
        run.finish().await;
    }
    .instrument(span)
    .await
}

/// The provider's side of the line as the session sees it.
struct PhonePort {
    wire: Wire,
    /// Frames to send after this loop turn.
    frames: Vec<Frame>,
    /// Providers without marks (Vonage): each mark is due when its audio will have played, in ms
    /// on the call's clock.
    local: LocalMarks,
    play_end_ms: u64,
    /// When the wire was last given time to send a chunker's tail.
    last_idle_ms: u64,
}

impl MediaPort for PhonePort {
    fn send_audio(&mut self, samples: &[f32], now: u64) {
        self.wire.audio(samples, &mut self.frames);
        let ms = samples.len() as u64 * 1000 / u64::from(self.wire.out_rate());
        self.play_end_ms = self.play_end_ms.max(now) + ms;
    }

    fn mark(&mut self, id: u64, _now: u64) {
        if self.wire.native_marks() {
            self.wire.mark(id, &mut self.frames);
        } else {
            self.local.push(self.play_end_ms, id);
        }
    }

    fn clear(&mut self, now: u64) {
        self.wire.clear(&mut self.frames);
        // Never played, never echoed: the core counts them unheard.
        self.local.drain().for_each(drop);
        self.play_end_ms = now;
    }

    fn event(&mut self, _e: &CallEvent) {}
}

struct PhoneCall {
    deps: Arc<LiveDeps>,
    /// The gateway's public base URL as the provider reached it (Plivo fetches a transfer's XML
    /// from there).
    base_url: Option<String>,
    /// Who the caller is, or where to find out at start.
    identity: StreamIdentity,
    port: PhonePort,
    /// Until the call starts: its place among connections waiting to start.
    pending: Option<Pending>,
    /// From the start: its call slot.
    slot: Option<Slot>,
    call: CallState,
    call_id: String,
    /// When the provider last sent anything (ms on the call's clock).
    last_inbound_ms: u64,
    span: tracing::Span,
    // Inbound audio.
    resampler: Option<StreamResampler>,
    pcm_in: Vec<f32>,
    pcm16: Vec<f32>,
    // Diagnostics.
    bad_frames: u32,
    early_media: u32,
}

impl PhoneCall {
    fn new(
        deps: Arc<LiveDeps>,
        provider: Provider,
        pending: Pending,
        span: tracing::Span,
        base_url: Option<String>,
        identity: StreamIdentity,
    ) -> Self {
        PhoneCall {
            identity,
            port: PhonePort {
                wire: Wire::new(provider),
                frames: Vec::with_capacity(16),
                local: LocalMarks::default(),
                play_end_ms: 0,
                last_idle_ms: 0,
            },
            pending: Some(pending),
            slot: None,
            call: CallState::default(),
            call_id: String::new(),
            last_inbound_ms: 0,
            span,
            resampler: None,
            pcm_in: Vec::with_capacity(4096),
            pcm16: Vec::with_capacity(8192),
            bad_frames: 0,
            early_media: 0,
            deps,
            base_url,
        }
    }

    fn now(&self) -> u64 {
        self.call.now()
    }

    /// Ends the call with `outcome` (the first one given is kept).
    fn fail(&mut self, outcome: &str) {
        let now = self.now();
        self.call.hang_up(now, outcome);
    }

    /// The next time something is due: the core's deadline, the wire's tail, a local mark, the
    /// call's own limits.
    fn next_deadline(&self, now: u64) -> u64 {
        let c = &self.deps.calls;
        let mut next = if !self.port.wire.is_started() {
            c.start_timeout_ms
        } else {
            (self.last_inbound_ms + c.media_timeout_ms).min(c.max_call_secs.saturating_mul(1000))
        };
        if let Some(t) = self.call.session().and_then(Session::poll_timeout) {
            next = next.min(t);
        }
        if let Some(t) = self.port.local.next_at() {
            next = next.min(t);
        }
        if self.port.wire.needs_idle() {
            next = next.min(self.port.last_idle_ms.max(now) + 20);
        }
        next.max(now)
    }

    async fn run(&mut self, socket: WebSocket) -> anyhow::Result<()> {
        let (mut tx, mut rx) = socket.split();
        let mut stop = self.deps.registry.stop_signal();
        loop {
            let deadline = self.call.instant_at(self.next_deadline(self.now()));
            tokio::select! {
                msg = rx.next() => {
                    let frame = match msg {
                        Some(Ok(m)) => {
                            self.last_inbound_ms = self.now();
                            m
                        }
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "connection failed");
                            self.fail("connection dropped");
                            break;
                        }
                        None => {
                            self.fail("connection dropped");
                            break;
                        }
                    };
                    let parsed = match &frame {
                        Message::Text(t) => self.port.wire.parse_text(t.as_str()),
                        Message::Binary(b) => self.port.wire.parse_binary(b),
                        Message::Close(_) => {
                            self.fail("caller hung up");
                            break;
                        }
                        _ => continue,
                    };
                    self.inbound(parsed).await?;
                }
                _ = tokio::time::sleep_until(deadline) => self.timers(),
                                Some(d) = self.call.next_done() => self.call.done_now(d),
                                _ = stop_requested(&mut stop) => self.call.shutdown(),
            }
            self.flush().await?;
            self.send_frames(&mut tx).await?;
            if self.call.over() {
                break;
            }
        }
        self.flush().await?;
        let _ = self.send_frames(&mut tx).await;
        if let Some(action) = self.call.session().and_then(|s| s.end_action().cloned()) {
            self.provider_end(&action).await;
        }
        let _ = tx.close().await;
        Ok(())
    }

    fn end_by_gateway(&mut self, why: &str) {
        let now = self.now();
        self.call.end_by_gateway(now, why);
    }

    /// Whatever has come due: the call's limits, the core's deadline, the wire's tail, marks.
    fn timers(&mut self) {
        let now = self.now();
        if let Some(why) = self.overdue(now) {
            tracing::warn!("{why}");
            self.end_by_gateway(why);
        }
        if let Some(s) = self.call.session_mut()
            && s.poll_timeout().is_some_and(|t| t <= now)
        {
            s.timeout(now);
        }
        if self.port.wire.needs_idle() && now >= self.port.last_idle_ms + 20 {
            self.port.last_idle_ms = now;
            self.port.wire.idle(&mut self.port.frames);
        }
        while let Some(id) = self.port.local.pop_due(now) {
            if let Some(s) = self.call.session_mut() {
                s.mark_played(now, id);
            }
        }
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        let now = self.now();
        self.call.flush(now, &mut self.port).await
    }

    /// A deadline the call has passed: no start, no media, too long.
    fn overdue(&self, now: u64) -> Option<&'static str> {
        let c = &self.deps.calls;
        if self.call.over() {
            None
        } else if !self.port.wire.is_started() {
            (now >= c.start_timeout_ms).then_some("no start message in time: connection closed")
        } else if now.saturating_sub(self.last_inbound_ms) >= c.media_timeout_ms {
            Some("the provider sent nothing for too long: call ended")
        } else if now >= c.max_call_secs.saturating_mul(1000) {
            Some("the call reached its maximum length: call ended")
        } else {
            None
        }
    }

    async fn inbound(&mut self, parsed: Result<Inbound, ProtocolError>) -> anyhow::Result<()> {
        let now = self.now();
        match parsed {
            Ok(Inbound::Start {
                stream_id,
                call_id,
                format,
                params,
            }) => {
                if self.port.wire.is_started() {
                    tracing::warn!("a second start was ignored");
                    return Ok(());
                }
                let admission = match self.pending.take() {
                    Some(p) => p.admit(),
                    None => Admission::Draining,
                };
                let (slot, busy) = match admission {
                    Admission::Admitted(s) => (s, false),
                    Admission::Busy(s) => (s, true),
                    Admission::Draining => {
                        tracing::warn!("call refused at start: the gateway is shutting down");
                        crate::metrics::count(
                            crate::metrics::CALLS_ENDED,
                            &[
                                ("provider", channel(self.port.wire.provider())),
                                ("outcome", "drained"),
                            ],
                            1.0,
                        );
                        self.call.hang_up(now, "refused: shutting down");
                        return Ok(());
                    }
                };
                self.span.record("id", call_id.as_str());
                self.call_id = call_id;
                self.port.wire.start(&stream_id, format)?;
                if format.sample_rate != CALLER_RATE {
                    self.resampler = Some(StreamResampler::new(
                        format.sample_rate,
                        CALLER_RATE,
                        format.sample_rate as usize / 50,
                    )?);
                }
                let parts = self.deps.parts(self.port.wire.out_rate());
                if busy {
                    tracing::warn!(
                        cap = self.deps.registry.max_active(),
                        "over the call cap: playing the busy message"
                    );
                    self.call.start(Session::busy(
                        &parts,
                        channel(self.port.wire.provider()),
                        &self.deps.calls.busy_message,
                        now,
                    ));
                    self.slot = Some(slot);
                    return Ok(());
                }
                let caller = self.identity.caller(
                    &self.deps.stream_tokens,
                    channel(self.port.wire.provider()),
                    &params,
                    now_ms(),
                );
                if caller.is_empty() && self.identity == StreamIdentity::TokenParam {
                    tracing::warn!(
                        "a signed stream without a valid caller token from the gateway's answer: \
                         the caller is unknown"
                    );
                }
                if let Some(t) = params.get("template")
                    && *t != self.deps.engine.template.name
                {
                    tracing::warn!(
                        asked = %t,
                        serving = %self.deps.engine.template.name,
                        "this gateway serves one template; the call's template parameter is ignored"
                    );
                }
                // The stream's parameters go on the case with phone numbers masked.
                let shown: BTreeMap<&String, String> =
                    params.iter().map(|(k, v)| (k, shown_caller(v))).collect();
                let detail = json!({"call_id": self.call_id, "stream_id": stream_id,
                       "format": format!("{:?}/{}", format.encoding, format.sample_rate),
                       "params": shown});
                let channel = channel(self.port.wire.provider());
                let session = Session::start(&parts, &caller, channel, detail, now).await?;
                if let Some(conv) = session.conversation_id() {
                    slot.bind(&self.call_id, conv);
                }
                self.slot = Some(slot);
                self.call.start(session);
            }
            Ok(Inbound::Media { payload, seq, .. }) => {
                if !self.port.wire.is_started() {
                    self.early_media += 1;
                    if self.early_media == 1 {
                        tracing::warn!("media before start ignored");
                    }
                    return Ok(());
                }
                self.port.wire.push_media(payload, seq);
                self.feed_media(now);
            }
            Ok(Inbound::Mark { name }) => {
                if let (Ok(id), Some(s)) = (name.parse::<u64>(), self.call.session_mut()) {
                    s.mark_played(now, id);
                }
            }
            Ok(Inbound::Dtmf { digit }) => {
                if let Some(s) = self.call.session_mut() {
                    s.dtmf(now, digit);
                }
            }
            Ok(Inbound::Stop) => {
                self.port.wire.drain_media();
                self.feed_media(now);
                self.fail("caller hung up");
            }
            Ok(Inbound::Connected | Inbound::Ignored) => {}
            Err(e) => {
                self.bad_frames += 1;
                if self.bad_frames <= 5 || self.bad_frames.is_multiple_of(100) {
                    tracing::warn!(error = %e, count = self.bad_frames, "bad frame ignored");
                }
            }
        }
        Ok(())
    }

    /// Decodes queued inbound media to 16 kHz and gives it to the session.
    fn feed_media(&mut self, now: u64) {
        let Some(session) = self.call.session_mut() else {
            return;
        };
        let format = self.port.wire.format();
        while let Some(payload) = self.port.wire.next_media() {
            if session.is_busy() {
                continue;
            }
            let n = match format.encoding {
                Encoding::L16 => payload.len() / 2,
                _ => payload.len(),
            };
            self.pcm_in.resize(n, 0.0);
            match format.encoding {
                Encoding::Mulaw => decode_ulaw_into(&payload, &mut self.pcm_in),
                Encoding::Alaw => decode_alaw_into(&payload, &mut self.pcm_in),
                Encoding::L16 => decode_l16le_into(&payload, &mut self.pcm_in),
            };
            match &mut self.resampler {
                Some(r) => {
                    self.pcm16.clear();
                    r.process(&self.pcm_in, &mut self.pcm16);
                    session.caller_audio(now, &self.pcm16);
                }
                None => session.caller_audio(now, &self.pcm_in),
            }
        }
    }

    async fn send_frames(
        &mut self,
        tx: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    ) -> anyhow::Result<()> {
        if self.port.frames.is_empty() {
            return Ok(());
        }
        for f in self.port.frames.drain(..) {
            tx.feed(match f {
                Frame::Text(t) => Message::Text(t.into()),
                Frame::Binary(b) => Message::Binary(b.into()),
            })
            .await?;
        }
        tx.flush().await?;
        Ok(())
    }

    /// Hangs up or transfers through the provider's REST API: Twilio, Telnyx and Plivo (hang-up,
    /// transfer). Without credentials, or for Exotel and Vonage, the call ends by closing the
    /// media stream.
    async fn provider_end(&self, action: &EndAction) {
        let http = &self.deps.http;
        let req = match self.port.wire.provider() {
            Provider::Twilio => {
                let tw = &self.deps.twilio;
                if tw.account_sid.is_empty() || tw.auth_token.is_empty() {
                    None
                } else {
                    let form = match action {
                        EndAction::Hangup => twilio::hangup_form(),
                        EndAction::Transfer { to } => twilio::transfer_form(to),
                    };
                    Some(
                        http.post(twilio::call_url(
                            &tw.api_base,
                            &tw.account_sid,
                            &self.call_id,
                        ))
                        .basic_auth(&tw.account_sid, Some(&tw.auth_token))
                        .header(
                            reqwest::header::CONTENT_TYPE,
                            "application/x-www-form-urlencoded",
                        )
                        .body(serde_urlencoded::to_string(&form).unwrap_or_default()),
                    )
                }
            }
            Provider::Telnyx if !self.deps.telnyx.api_key.is_empty() => {
                let tx = &self.deps.telnyx;
                let (url, body) = match action {
                    EndAction::Hangup => {
                        (telnyx::hangup_url(&tx.api_base, &self.call_id), json!({}))
                    }
                    EndAction::Transfer { to } => (
                        telnyx::transfer_url(&tx.api_base, &self.call_id),
                        json!({ "to": to }),
                    ),
                };
                Some(
                    http.post(url)
                        .bearer_auth(&tx.api_key)
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(body.to_string()),
                )
            }
            Provider::Plivo if !self.deps.plivo.auth_id.is_empty() => {
                let pl = &self.deps.plivo;
                let url = plivo::call_url(&pl.api_base, &pl.auth_id, &self.call_id);
                match (action, &self.base_url) {
                    (EndAction::Hangup, _) => Some(
                        http.delete(url)
                            .basic_auth(&pl.auth_id, Some(&pl.auth_token)),
                    ),
                    (EndAction::Transfer { to }, Some(base)) => {
                        let xml_url = plivo::transfer_xml_url(base, &pl.auth_token, to);
                        Some(
                            http.post(url)
                                .basic_auth(&pl.auth_id, Some(&pl.auth_token))
                                .header(reqwest::header::CONTENT_TYPE, "application/json")
                                .body(plivo::transfer_body(&xml_url)),
                        )
                    }
                    (EndAction::Transfer { .. }, None) => {
                        tracing::warn!(
                            ?action,
                            "no public URL (config public_url, or a Host header) for Plivo to fetch the transfer from: closing the stream"
                        );
                        None
                    }
                }
            }
            p => {
                tracing::info!(
                    ?action,
                    provider = channel(p),
                    "no REST call control configured: closing the media stream"
                );
                return;
            }
        };
        let Some(req) = req else {
            tracing::warn!(
                ?action,
                "no provider credentials configured: closing the stream instead of a REST call update"
            );
            return;
        };
        match req.send().await {
            Ok(r) if r.status().is_success() => tracing::info!(?action, "provider call updated"),
            Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => {
                tracing::info!("the provider says the call is already gone")
            }
            Ok(r) => {
                tracing::warn!(status = %r.status(), ?action, "the provider refused the call update")
            }
            Err(e) => tracing::warn!(error = %e, ?action, "provider call update failed"),
        }
    }

    /// Closes the case with the outcome, after every queued agent job has been recorded.
    async fn finish(&mut self) {
        let detail = json!({"bad_frames": self.bad_frames, "media_before_start": self.early_media});
        self.call.finish(detail).await;
    }
}
