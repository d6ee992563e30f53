//! Server (answerer) side of a WebRTC audio call, on `webrtc` 0.21 (webrtc-rs) + libopus.
//!
//! ```text
//!   accept(offer) ──► (answer SDP with every candidate, RtcCall)
//!   RtcCall::recv()        → RtcEvent::{Connected, Audio(20 ms @ 16 kHz mono f32), Closed(reason)}
//!   RtcCall::send_frame()  ← 20 ms @ 16 kHz mono f32 (320 samples), Opus-encoded, one RTP packet
//!   RtcCall::close()       → tears the peer connection down and waits for every task to end
//! ```
//!
//! Tasks per call: webrtc-rs's own driver (sockets, ICE/DTLS/SRTP timers; spawned by
//! `PeerConnectionBuilder::build`) and one `call_task` of ours (connection state, inbound
//! decode, connect timeout, teardown). Both end when the call closes — `close()`, the remote
//! failing/closing, the connect timeout, or dropping the `RtcCall`.
//!
//! Deps: webrtc, rtc (webrtc's sans-I/O core, same version: several types the API needs live
//! only there), bytes, async-trait (the handler trait is `#[async_trait]`), opus (libopus).
//! Pitfalls found while building it (DTLS role, late hang-up detection, mDNS, #906) are in the
//! comments below.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bytes::BytesMut;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use rtc::ice::mdns::MulticastDnsMode;
use rtc::interceptor::Registry;
use rtc::media::Sample;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::configure_rtcp_reports;
use rtc::peer_connection::configuration::media_engine::MIME_TYPE_OPUS;
use rtc::peer_connection::transport::RTCDtlsRole;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceGatheringState, RTCIceServer, RTCPeerConnectionState,
    RTCSessionDescription, SettingEngineBuilder,
};
use webrtc::rtp_transceiver::RtpSender;
use webrtc::runtime::TokioRuntime;

/// Sample rate of PCM crossing this module's API (both directions).
pub const SAMPLE_RATE: u32 = 16_000;
/// One 20 ms frame at 16 kHz mono.
pub const FRAME_SAMPLES: usize = 320;
pub const FRAME_DURATION: Duration = Duration::from_millis(20);
/// Opus RTP clock is always 48 kHz, whatever rate the codec runs at (RFC 7587).
const OPUS_RTP_CLOCK: u32 = 48_000;
/// Longest Opus packet is 120 ms: 1920 samples at 16 kHz.
const MAX_DECODED_SAMPLES: usize = 1920;
/// Largest encoded 20 ms frame we allow (libopus recommends 4000 as a safe upper bound).
const MAX_ENCODED_BYTES: usize = 1500;
/// Event-queue slots kept free for lifecycle events (Connected, Closed), so they are never lost
/// to a consumer that fell behind on audio.
const RESERVED_LIFECYCLE_SLOTS: usize = 2;
/// Longest sequence gap we conceal (PLC/FEC). Larger jumps are treated as a discontinuity.
const MAX_CONCEALED_FRAMES: u16 = 10;

pub const SDES_MID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";

// ───────────────────────────── settings ─────────────────────────────

#[derive(Clone, Debug, Default)]
pub struct IceServer {
    /// e.g. `stun:stun.example.org:3478`, `turn:turn.example.org:3478?transport=udp`
    pub urls: Vec<String>,
    pub username: String,
    pub credential: String,
}

#[derive(Clone, Debug)]
pub struct OpusSettings {
    /// Target bitrate, bits/s. 24 kb/s is transparent for 16 kHz speech (SILK wideband).
    pub bitrate: i32,
    /// 0..=10. CPU vs quality; see REPORT.md for the measured cost.
    pub complexity: i32,
    /// In-band FEC (LBRR). Chromium offers `useinbandfec=1`; the decoder uses it on single losses.
    pub inband_fec: bool,
    /// Expected loss %, drives how much FEC the encoder spends.
    pub packet_loss_perc: i32,
}

impl Default for OpusSettings {
    fn default() -> Self {
        Self {
            bitrate: 24_000,
            complexity: 5,
            inband_fec: true,
            packet_loss_perc: 5,
        }
    }
}

#[derive(Clone, Debug)]
pub struct RtcSettings {
    /// IP to bind the call's UDP socket to (port is ephemeral). `127.0.0.1` for loopback tests;
    /// `0.0.0.0` binds one socket per non-loopback interface (webrtc-rs expands the wildcard).
    pub bind_ip: IpAddr,
    /// STUN/TURN servers. Empty = host candidates only (loopback / same-LAN tests).
    pub ice_servers: Vec<IceServer>,
    /// Longest `accept()` waits for candidate gathering before answering with what it has.
    pub gather_timeout: Duration,
    /// Call is closed with `CloseReason::ConnectTimeout` if not connected this long after accept.
    pub connect_timeout: Duration,
    /// Close with `CloseReason::MediaTimeout` when no RTP arrived for this long (counted from
    /// Connected, then from the last packet). Needed because a remote hang-up is otherwise only
    /// noticed by ICE consent failure ~30 s later: Chromium's `pc.close()` (and webrtc-rs's own
    /// `close()`) do not make our side's state change promptly — see REPORT.md. Browsers send
    /// Opus continuously (no DTX unless `usedtx=1` is negotiated, which we never offer), so 3 s
    /// of silence on the wire means the caller is gone. `None` disables it.
    pub media_timeout: Option<Duration>,
    /// Capacity of the inbound event queue, in 20 ms frames (+2 reserved lifecycle slots).
    pub event_queue_frames: usize,
    pub opus: OpusSettings,
    /// Answer `a=setup:passive` (we are the DTLS server, the browser sends the ClientHello).
    /// `false` = webrtc-rs default `a=setup:active`, which costs ~one ICE check interval
    /// (200 ms) per call in rtc 0.21.1: the DTLS client's first flight is queued when ICE
    /// selects a pair but only transmitted on the next core timer tick. See REPORT.md.
    pub dtls_passive: bool,
}

impl RtcSettings {
    pub fn loopback() -> Self {
        Self {
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ice_servers: vec![],
            gather_timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(15),
            media_timeout: Some(Duration::from_secs(3)),
            event_queue_frames: 50,
            opus: OpusSettings::default(),
            dtls_passive: true,
        }
    }
}

// ───────────────────────────── events ─────────────────────────────

/// One 20 ms frame of caller audio, 16 kHz mono, nominal range [-1, 1].
#[derive(Clone)]
pub struct AudioFrame {
    pub samples: [f32; FRAME_SAMPLES],
    /// Frame contains (partly) concealed audio (packet-loss concealment or FEC).
    pub concealed: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// `RtcCall::close()` was called.
    Local,
    /// The `RtcCall` (or every handle to it) was dropped without `close()`.
    Dropped,
    /// Peer connection went to `Failed` (ICE consent lost, DTLS failure …).
    Failed,
    /// Peer connection went to `Closed` (the remote sent DTLS close_notify, or similar).
    RemoteClosed,
    /// Not connected within `RtcSettings::connect_timeout`.
    ConnectTimeout,
    /// No inbound RTP for `RtcSettings::media_timeout` (the caller hung up or vanished).
    MediaTimeout,
}

#[allow(clippy::large_enum_variant)] // by design: frames travel inline, no per-frame Box
pub enum RtcEvent {
    Connected,
    Audio(AudioFrame),
    Closed(CloseReason),
}

impl std::fmt::Debug for RtcEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RtcEvent::Connected => write!(f, "Connected"),
            RtcEvent::Audio(a) => write!(f, "Audio(concealed={})", a.concealed),
            RtcEvent::Closed(r) => write!(f, "Closed({r:?})"),
        }
    }
}

/// Counters, readable at any time (relaxed atomics).
#[derive(Default, Debug)]
pub struct CallCounters {
    pub rtp_packets_in: AtomicU64,
    pub frames_out_to_app: AtomicU64,
    /// Frames dropped because the app did not drain the event queue.
    pub frames_dropped_queue_full: AtomicU64,
    pub frames_concealed: AtomicU64,
    pub packets_late_or_dup: AtomicU64,
    pub decode_errors: AtomicU64,
    pub frames_sent: AtomicU64,
    /// `send_frame` calls made before Connected / after close (skipped, not an error).
    pub frames_skipped_not_connected: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct CallStats {
    pub rtp_packets_in: u64,
    pub frames_out_to_app: u64,
    pub frames_dropped_queue_full: u64,
    pub frames_concealed: u64,
    pub packets_late_or_dup: u64,
    pub decode_errors: u64,
    pub frames_sent: u64,
    pub frames_skipped_not_connected: u64,
}

struct Shared {
    connected: AtomicBool,
    /// Set when the call task starts tearing down (send_frame stops encoding).
    closed: AtomicBool,
    /// Set when teardown is complete (peer connection closed, handles dropped).
    finished: AtomicBool,
    counters: CallCounters,
}

// ───────────────── liveness accounting (leak checks) ─────────────────

static LIVE_PEER_CONNECTIONS: AtomicUsize = AtomicUsize::new(0);
static LIVE_CALL_TASKS: AtomicUsize = AtomicUsize::new(0);

/// Peer connections whose internals (`PeerConnectionRef`, which owns our handler) are still
/// allocated. Counted by a guard inside the event handler, so it only drops to 0 if webrtc-rs
/// really freed the connection — the #906 symptom is this number growing per call.
pub fn live_peer_connections() -> usize {
    LIVE_PEER_CONNECTIONS.load(Ordering::SeqCst)
}

/// Our own per-call tasks still running.
pub fn live_call_tasks() -> usize {
    LIVE_CALL_TASKS.load(Ordering::SeqCst)
}

pub(crate) struct LiveGuard(&'static AtomicUsize);
impl LiveGuard {
    pub(crate) fn new(counter: &'static AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Self(counter)
    }
}
impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

pub(crate) fn pc_live_guard() -> LiveGuard {
    LiveGuard::new(&LIVE_PEER_CONNECTIONS)
}

// ───────────────────────────── handler ─────────────────────────────

pub(crate) enum Signal {
    State(RTCPeerConnectionState),
    Track(Arc<dyn TrackRemote>),
}

/// Runs on webrtc-rs's driver task: must never block or await anything slow. Everything is a
/// `try_send` into small bounded queues (a handful of events per call, so they cannot fill).
/// Holds no reference to the peer connection (that would be a cycle: the connection owns us).
pub(crate) struct Handler {
    pub(crate) sig_tx: mpsc::Sender<Signal>,
    pub(crate) gathered_tx: mpsc::Sender<()>,
    pub(crate) _live: LiveGuard,
}

impl Handler {
    pub(crate) fn new(sig_tx: mpsc::Sender<Signal>, gathered_tx: mpsc::Sender<()>) -> Self {
        Self {
            sig_tx,
            gathered_tx,
            _live: pc_live_guard(),
        }
    }
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        tracing::debug!(?state, "ice gathering");
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered_tx.try_send(());
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::debug!(?state, "peer connection state");
        if self.sig_tx.try_send(Signal::State(state)).is_err() {
            tracing::warn!(
                ?state,
                "call task gone or signal queue full; state change dropped"
            );
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        if self.sig_tx.try_send(Signal::Track(track)).is_err() {
            tracing::warn!("call task gone or signal queue full; remote track dropped");
        }
    }
}

// ───────────────────────────── building blocks shared with the test client ─────────────────────────────

pub(crate) fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: OPUS_RTP_CLOCK,
        channels: 2, // SDP always says opus/48000/2 (RFC 7587), even for mono content
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

/// Opus-only media engine + the RTCP SR/RR interceptor. No video codecs: a video m-line in the
/// offer is answered as rejected (port 0) instead of failing.
pub(crate) fn audio_media_engine() -> Result<(MediaEngine, Registry)> {
    let mut me = MediaEngine::default();
    me.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: opus_codec(),
            payload_type: 111,
        },
        RtpCodecKind::Audio,
    )?;
    // BUNDLE demux by MID (Chromium sends the mid extension on every packet).
    me.register_header_extension(
        RTCRtpHeaderExtensionCapability {
            uri: SDES_MID_URI.to_owned(),
        },
        RtpCodecKind::Audio,
        None,
    )?;
    let registry = configure_rtcp_reports(Registry::new());
    Ok((me, registry))
}

pub(crate) async fn build_peer_connection(
    bind_ip: IpAddr,
    ice_servers: &[IceServer],
    handler: Arc<dyn PeerConnectionEventHandler>,
    setting_engine: SettingEngineBuilder,
) -> Result<Arc<dyn PeerConnection>> {
    let (media_engine, registry) = audio_media_engine()?;
    let config = RTCConfigurationBuilder::new()
        .with_ice_servers(
            ice_servers
                .iter()
                .map(|s| RTCIceServer {
                    urls: s.urls.clone(),
                    username: s.username.clone(),
                    credential: s.credential.clone(),
                })
                .collect(),
        )
        .build();
    // mDNS off: a server never shares a link with the browser, so it cannot resolve `.local`
    // candidates anyway (the browser's checks still reach us and ICE learns it as peer-reflexive),
    // and QueryOnly would bind a multicast socket on :5353 per call.
    let setting_engine = setting_engine
        .with_multicast_dns_mode(MulticastDnsMode::Disabled)
        .build();
    let pc = PeerConnectionBuilder::new()
        .with_configuration(config)
        .with_media_engine(media_engine)
        .with_interceptor_registry(registry)
        .with_setting_engine(setting_engine)
        .with_runtime(Arc::new(TokioRuntime))
        .with_handler(handler)
        .with_udp_addrs(vec![SocketAddr::new(bind_ip, 0)])
        .build()
        .await
        .context("PeerConnectionBuilder::build")?;
    Ok(Arc::new(pc))
}

pub(crate) fn random_u32() -> u32 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(Instant::now().elapsed().as_nanos() as u64);
    (h.finish() as u32).max(1)
}

pub(crate) fn new_opus_track(ssrc: u32, label: &str) -> Result<Arc<TrackLocalStaticSample>> {
    let id = random_u32();
    let track = MediaStreamTrack::new(
        format!("{label}-stream-{id:08x}"),
        format!("{label}-audio-{id:08x}"),
        label.to_owned(),
        RtpCodecKind::Audio,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: opus_codec(),
            ..Default::default()
        }],
    );
    Ok(Arc::new(TrackLocalStaticSample::new(
        Instant::now(),
        track,
    )?))
}

/// The payload type the remote chose for Opus (Chromium: 111, but never assume it).
pub(crate) async fn negotiated_opus_pt(sender: &Arc<dyn RtpSender>) -> Result<u8> {
    let params = sender.get_parameters().await?;
    params
        .rtp_parameters
        .codecs
        .iter()
        .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(MIME_TYPE_OPUS))
        .map(|c| c.payload_type)
        .ok_or_else(|| anyhow!("Opus was not negotiated on the sender"))
}

pub(crate) async fn wait_gathered(rx: &mut mpsc::Receiver<()>, timeout: Duration) -> bool {
    matches!(tokio::time::timeout(timeout, rx.recv()).await, Ok(Some(())))
}

// ───────────────────────────── Opus wrappers (allocation-free per frame) ─────────────────────────────

/// 16 kHz mono f32 → Opus packets. Allocation-free after construction.
pub struct OpusEncoder16k {
    enc: opus::Encoder,
    out: BytesMut,
}

impl OpusEncoder16k {
    pub fn new(s: &OpusSettings) -> Result<Self> {
        let mut enc =
            opus::Encoder::new(SAMPLE_RATE, opus::Channels::Mono, opus::Application::Voip)?;
        enc.set_bitrate(opus::Bitrate::Bits(s.bitrate))?;
        enc.set_complexity(s.complexity)?;
        enc.set_inband_fec(s.inband_fec)?;
        enc.set_packet_loss_perc(s.packet_loss_perc)?;
        enc.set_vbr(true)?;
        enc.set_dtx(false)?;
        Ok(Self {
            enc,
            out: BytesMut::with_capacity(MAX_ENCODED_BYTES),
        })
    }

    /// Encode one 20 ms frame (exactly 320 samples) and return it as `Bytes`.
    ///
    /// Reuses one buffer: `split().freeze()` hands out a view of it, and once webrtc-rs has
    /// dropped that view (the packet went out — well before the next frame, 20 ms later),
    /// `reserve` reclaims the same allocation instead of allocating.
    pub fn encode(&mut self, pcm: &[f32]) -> Result<bytes::Bytes> {
        if pcm.len() != FRAME_SAMPLES {
            bail!(
                "send_frame wants {FRAME_SAMPLES} samples (20 ms @ 16 kHz), got {}",
                pcm.len()
            );
        }
        self.out.reserve(MAX_ENCODED_BYTES);
        // SAFETY-free way to get a writable slice: resize zero-fills (cheap, 1.5 kB memset).
        self.out.resize(MAX_ENCODED_BYTES, 0);
        let n = self.enc.encode_float(pcm, &mut self.out[..])?;
        self.out.truncate(n);
        Ok(self.out.split().freeze())
    }

    pub fn encode_into(&mut self, pcm: &[f32], out: &mut [u8]) -> Result<usize> {
        Ok(self.enc.encode_float(pcm, out)?)
    }
}

/// RTP Opus payloads → 16 kHz mono f32, re-chunked to exact 20 ms frames, with PLC/FEC on
/// sequence gaps. Allocation-free after construction.
pub struct OpusDecoder16k {
    dec: opus::Decoder,
    scratch: Box<[f32; MAX_DECODED_SAMPLES]>,
    acc: [f32; FRAME_SAMPLES],
    acc_len: usize,
    acc_concealed: bool,
    last_seq: Option<u16>,
    last_frame_samples: usize,
}

pub struct DecodeStats {
    pub concealed_frames: u64,
    pub late_or_dup: u64,
    pub errors: u64,
}

impl OpusDecoder16k {
    pub fn new() -> Result<Self> {
        Ok(Self {
            dec: opus::Decoder::new(SAMPLE_RATE, opus::Channels::Mono)?,
            scratch: Box::new([0.0; MAX_DECODED_SAMPLES]),
            acc: [0.0; FRAME_SAMPLES],
            acc_len: 0,
            acc_concealed: false,
            last_seq: None,
            last_frame_samples: FRAME_SAMPLES,
        })
    }

    /// Feed one RTP packet; `emit` is called once per completed 20 ms frame.
    pub fn push_packet(
        &mut self,
        seq: u16,
        payload: &[u8],
        stats: &mut DecodeStats,
        mut emit: impl FnMut(&[f32; FRAME_SAMPLES], bool),
    ) {
        if let Some(last) = self.last_seq {
            let gap = seq.wrapping_sub(last.wrapping_add(1));
            if gap >= 0x8000 {
                // behind the newest packet: late (no jitter buffer here) or duplicate
                stats.late_or_dup += 1;
                return;
            }
            if gap > 0 && gap <= MAX_CONCEALED_FRAMES {
                let n = self.last_frame_samples.min(MAX_DECODED_SAMPLES);
                for i in 0..gap {
                    // last missing packet: try the FEC copy carried in this packet, else PLC
                    let use_fec = i + 1 == gap;
                    let input: &[u8] = if use_fec { payload } else { &[] };
                    match self
                        .dec
                        .decode_float(input, &mut self.scratch[..n], use_fec)
                    {
                        Ok(got) => {
                            stats.concealed_frames += 1;
                            self.push_pcm(got, true, &mut emit);
                        }
                        Err(_) => stats.errors += 1,
                    }
                }
            }
            // gap > MAX_CONCEALED_FRAMES: discontinuity (e.g. remote restarted); just resume
        }
        self.last_seq = Some(seq);
        match self.dec.decode_float(payload, &mut self.scratch[..], false) {
            Ok(got) => {
                self.last_frame_samples = got.max(1);
                self.push_pcm(got, false, &mut emit);
            }
            Err(_) => stats.errors += 1,
        }
    }

    fn push_pcm(
        &mut self,
        n: usize,
        concealed: bool,
        emit: &mut impl FnMut(&[f32; FRAME_SAMPLES], bool),
    ) {
        let mut off = 0;
        while off < n {
            let take = (FRAME_SAMPLES - self.acc_len).min(n - off);
            self.acc[self.acc_len..self.acc_len + take]
                .copy_from_slice(&self.scratch[off..off + take]);
            self.acc_len += take;
            self.acc_concealed |= concealed;
            off += take;
            if self.acc_len == FRAME_SAMPLES {
                emit(&self.acc, self.acc_concealed);
                self.acc_len = 0;
                self.acc_concealed = false;
            }
        }
    }

    /// Decode straight into a caller buffer (benchmarks).
    pub fn decode_into(&mut self, payload: &[u8], out: &mut [f32]) -> Result<usize> {
        Ok(self.dec.decode_float(payload, out, false)?)
    }
}

// ───────────────────────────── the call ─────────────────────────────

/// Sending half: Opus-encodes 20 ms frames and writes them to the call's outbound track.
pub struct AudioSender {
    out: Outbound,
    payload_type: u8,
    encoder: OpusEncoder16k,
    shared: Arc<Shared>,
}

/// Where encoded bot audio goes.
enum Outbound {
    /// The peer connection's track: RTP over SRTP to the browser.
    Track {
        track: Arc<TrackLocalStaticSample>,
        ssrc: u32,
    },
    /// An in-process far end ([`InProcessPeer`]): the Opus packets themselves.
    InProcess(mpsc::Sender<bytes::Bytes>),
}

impl AudioSender {
    /// Encode one 20 ms frame of bot audio (**16 kHz mono f32, exactly 320 samples**) and send
    /// it as one RTP packet. Does not pace: call it every 20 ms (the caller owns the clock, so
    /// barge-in can stop audio within one frame).
    ///
    /// Returns `Ok(false)` (frame skipped) before `Connected` and after close.
    pub async fn send_frame(&mut self, pcm16k_20ms: &[f32]) -> Result<bool> {
        if !self.shared.connected.load(Ordering::Acquire)
            || self.shared.closed.load(Ordering::Acquire)
        {
            self.shared
                .counters
                .frames_skipped_not_connected
                .fetch_add(1, Ordering::Relaxed);
            return Ok(false);
        }
        let data = self.encoder.encode(pcm16k_20ms)?;
        match &self.out {
            Outbound::Track { track, ssrc } => {
                let sample = Sample {
                    data,
                    duration: FRAME_DURATION,
                    ..Sample::new(Instant::now())
                };
                track
                    .sample_writer(*ssrc, self.payload_type)
                    .write_sample(&sample)
                    .await?;
            }
            // A far end that does not keep up loses packets, as it would on a network.
            Outbound::InProcess(tx) => {
                if tx.try_send(data).is_err() {
                    return Ok(false);
                }
            }
        }
        self.shared
            .counters
            .frames_sent
            .fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    pub fn payload_type(&self) -> u8 {
        self.payload_type
    }

    pub fn stats(&self) -> CallStats {
        stats_of(&self.shared)
    }
}

/// Cloneable handle that can close the call from anywhere (idempotent).
#[derive(Clone)]
pub struct CallCloser {
    close_tx: Arc<std::sync::Mutex<Option<oneshot::Sender<()>>>>,
    done: Arc<tokio::sync::Notify>,
    shared: Arc<Shared>,
}

impl CallCloser {
    /// Close the call and wait until the peer connection and our task are gone.
    pub async fn close(&self) {
        let tx = self
            .close_tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let notified = self.done.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(tx) = tx {
            let _ = tx.send(());
        }
        if !self.shared.finished.load(Ordering::Acquire) {
            notified.await;
        }
    }
}

pub struct RtcCall {
    pub events: mpsc::Receiver<RtcEvent>,
    pub audio: AudioSender,
    closer: CallCloser,
    task: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl RtcCall {
    pub async fn recv(&mut self) -> Option<RtcEvent> {
        self.events.recv().await
    }

    /// See [`AudioSender::send_frame`]: 16 kHz mono, 320 samples.
    pub async fn send_frame(&mut self, pcm16k_20ms: &[f32]) -> Result<bool> {
        self.audio.send_frame(pcm16k_20ms).await
    }

    /// Tear the call down completely: closes the peer connection (webrtc-rs stops its driver,
    /// closes the socket) and waits for our call task to finish. Idempotent.
    pub async fn close(&mut self) {
        self.closer.close().await;
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    pub fn closer(&self) -> CallCloser {
        self.closer.clone()
    }

    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::Acquire)
    }

    pub fn stats(&self) -> CallStats {
        stats_of(&self.shared)
    }

    /// For callers that read and write from different tasks. Dropping every part without
    /// `close()` still closes the call (reason `Dropped`) once the closer is dropped.
    pub fn split(mut self) -> (mpsc::Receiver<RtcEvent>, AudioSender, CallCloser) {
        self.task.take(); // detach; the closer waits on `done` instead
        let RtcCall {
            events,
            audio,
            closer,
            ..
        } = self;
        (events, audio, closer)
    }
}

fn stats_of(shared: &Shared) -> CallStats {
    let c = &shared.counters;
    let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
    CallStats {
        rtp_packets_in: l(&c.rtp_packets_in),
        frames_out_to_app: l(&c.frames_out_to_app),
        frames_dropped_queue_full: l(&c.frames_dropped_queue_full),
        frames_concealed: l(&c.frames_concealed),
        packets_late_or_dup: l(&c.packets_late_or_dup),
        decode_errors: l(&c.decode_errors),
        frames_sent: l(&c.frames_sent),
        frames_skipped_not_connected: l(&c.frames_skipped_not_connected),
    }
}

/// Answer a WebRTC offer. Returns the answer SDP — non-trickle: every local candidate is in it —
/// and the call. The answer must be delivered to the offerer promptly; ICE starts now.
pub async fn accept(offer_sdp: &str, settings: &RtcSettings) -> Result<(String, RtcCall)> {
    let (sig_tx, sig_rx) = mpsc::channel(32);
    let (gathered_tx, mut gathered_rx) = mpsc::channel(1);
    let handler = Arc::new(Handler::new(sig_tx, gathered_tx));
    let mut se = SettingEngineBuilder::new();
    if settings.dtls_passive {
        se = se.with_answering_dtls_role(RTCDtlsRole::Server);
    }
    let encoder = OpusEncoder16k::new(&settings.opus)?; // fail before anything is bound
    let pc = build_peer_connection(settings.bind_ip, &settings.ice_servers, handler, se).await?;

    match negotiate(&pc, offer_sdp, settings, &mut gathered_rx).await {
        Ok((answer, track, ssrc, pt)) => {
            let call = start_call(
                settings,
                Media {
                    pc: Some(pc),
                    inbound: None,
                    out: Outbound::Track { track, ssrc },
                    payload_type: pt,
                },
                sig_rx,
                encoder,
            );
            Ok((answer, call))
        }
        Err(e) => {
            let _ = pc.close().await;
            Err(e)
        }
    }
}

/// A call's media, as `call_task` and the `AudioSender` see it.
struct Media {
    /// None for an in-process call.
    pc: Option<Arc<dyn PeerConnection>>,
    /// Inbound packets known from the start (an in-process call); a network call's arrive with
    /// the remote track.
    inbound: Option<Inbound>,
    out: Outbound,
    payload_type: u8,
}

/// Starts a call's task on `media` and returns the call: its events, its sending half and its
/// closer, over one shared state.
fn start_call(
    settings: &RtcSettings,
    media: Media,
    sig_rx: mpsc::Receiver<Signal>,
    encoder: OpusEncoder16k,
) -> RtcCall {
    let shared = Arc::new(Shared {
        connected: AtomicBool::new(false),
        closed: AtomicBool::new(false),
        finished: AtomicBool::new(false),
        counters: CallCounters::default(),
    });
    let (ev_tx, ev_rx) =
        mpsc::channel(settings.event_queue_frames.max(1) + RESERVED_LIFECYCLE_SLOTS);
    let (close_tx, close_rx) = oneshot::channel();
    let done = Arc::new(tokio::sync::Notify::new());
    let task = tokio::spawn(call_task(CallTask {
        pc: media.pc,
        inbound: media.inbound,
        sig_rx,
        close_rx,
        ev_tx,
        shared: shared.clone(),
        done: done.clone(),
        connect_deadline: tokio::time::Instant::now() + settings.connect_timeout,
        media_timeout: settings.media_timeout,
        _live: LiveGuard::new(&LIVE_CALL_TASKS),
    }));
    let audio = AudioSender {
        out: media.out,
        payload_type: media.payload_type,
        encoder,
        shared: shared.clone(),
    };
    let closer = CallCloser {
        close_tx: Arc::new(std::sync::Mutex::new(Some(close_tx))),
        done,
        shared: shared.clone(),
    };
    RtcCall {
        events: ev_rx,
        audio,
        closer,
        task: Some(task),
        shared,
    }
}

async fn negotiate(
    pc: &Arc<dyn PeerConnection>,
    offer_sdp: &str,
    settings: &RtcSettings,
    gathered_rx: &mut mpsc::Receiver<()>,
) -> Result<(String, Arc<TrackLocalStaticSample>, u32, u8)> {
    let offer = RTCSessionDescription::offer(offer_sdp.to_owned()).context("parse offer")?;
    pc.set_remote_description(offer)
        .await
        .context("set_remote_description(offer)")?;

    // add_track after the offer is applied re-uses the offer's audio transceiver (recvonly →
    // sendrecv), so the answer keeps exactly the offer's m-lines.
    let ssrc = random_u32();
    let track = new_opus_track(ssrc, "switchboard")?;
    let sender = pc.add_track(track.clone()).await.context("add_track")?;

    let answer = pc.create_answer(None).await.context("create_answer")?;
    pc.set_local_description(answer)
        .await
        .context("set_local_description(answer)")?;
    if !wait_gathered(gathered_rx, settings.gather_timeout).await {
        tracing::warn!(timeout = ?settings.gather_timeout, "ICE gathering not complete; answering with the candidates gathered so far");
    }
    let local = pc
        .local_description()
        .await
        .ok_or_else(|| anyhow!("no local description"))?;
    let pt = negotiated_opus_pt(&sender).await?;
    Ok((local.sdp, track, ssrc, pt))
}

struct CallTask {
    /// None for an in-process call.
    pc: Option<Arc<dyn PeerConnection>>,
    /// The inbound packets, when known from the start (an in-process call); a network call's
    /// arrive with the remote track.
    inbound: Option<Inbound>,
    sig_rx: mpsc::Receiver<Signal>,
    close_rx: oneshot::Receiver<()>,
    ev_tx: mpsc::Sender<RtcEvent>,
    shared: Arc<Shared>,
    done: Arc<tokio::sync::Notify>,
    connect_deadline: tokio::time::Instant,
    media_timeout: Option<Duration>,
    _live: LiveGuard,
}

async fn call_task(mut t: CallTask) {
    let counters = &t.shared.counters;
    let mut decoder = match OpusDecoder16k::new() {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::error!("opus decoder: {e:#}");
            None
        }
    };
    let mut dstats = DecodeStats {
        concealed_frames: 0,
        late_or_dup: 0,
        errors: 0,
    };
    let mut track: Option<Inbound> = t.inbound.take();
    let mut sig_open = true;
    // media watchdog: a coarse 250 ms tick instead of re-arming a timer on every packet
    let mut last_rtp = tokio::time::Instant::now();
    let mut watchdog = tokio::time::interval(Duration::from_millis(250));
    watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let reason = loop {
        tokio::select! {
            biased;
            r = &mut t.close_rx => {
                break if r.is_ok() { CloseReason::Local } else { CloseReason::Dropped };
            }
            sig = t.sig_rx.recv(), if sig_open => match sig {
                Some(Signal::State(RTCPeerConnectionState::Connected)) => {
                    if !t.shared.connected.swap(true, Ordering::AcqRel) {
                        last_rtp = tokio::time::Instant::now();
                        // reserved slot: cannot fail unless the receiver is gone
                        let _ = t.ev_tx.try_send(RtcEvent::Connected);
                    }
                }
                Some(Signal::State(RTCPeerConnectionState::Failed)) => break CloseReason::Failed,
                Some(Signal::State(RTCPeerConnectionState::Closed)) => break CloseReason::RemoteClosed,
                Some(Signal::State(_)) => {}
                Some(Signal::Track(tr)) => {
                    if track.is_some() {
                        tracing::warn!("second remote audio track ignored");
                    } else {
                        track = Some(Inbound::Track(tr));
                    }
                }
                None => sig_open = false,
            },
            ev = poll_inbound(&mut track), if track.is_some() => match ev {
                InEvent::Packet(seq, payload) => {
                    counters.rtp_packets_in.fetch_add(1, Ordering::Relaxed);
                    last_rtp = tokio::time::Instant::now();
                    let Some(dec) = decoder.as_mut() else { continue };
                    let ev_tx = &t.ev_tx;
                    dec.push_packet(seq, &payload, &mut dstats, |pcm, concealed| {
                        // keep RESERVED_LIFECYCLE_SLOTS free; single producer, so check-then-send is exact
                        if ev_tx.capacity() > RESERVED_LIFECYCLE_SLOTS
                            && ev_tx.try_send(RtcEvent::Audio(AudioFrame { samples: *pcm, concealed })).is_ok()
                        {
                            counters.frames_out_to_app.fetch_add(1, Ordering::Relaxed);
                        } else {
                            counters.frames_dropped_queue_full.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                    counters.frames_concealed.store(dstats.concealed_frames, Ordering::Relaxed);
                    counters.packets_late_or_dup.store(dstats.late_or_dup, Ordering::Relaxed);
                    counters.decode_errors.store(dstats.errors, Ordering::Relaxed);
                }
                InEvent::Ended => track = None,
                InEvent::Other => {}
            },
            _ = tokio::time::sleep_until(t.connect_deadline), if !t.shared.connected.load(Ordering::Acquire) => {
                break CloseReason::ConnectTimeout;
            }
            _ = watchdog.tick(), if t.media_timeout.is_some() && t.shared.connected.load(Ordering::Acquire) => {
                if t.media_timeout.is_some_and(|mt| last_rtp.elapsed() >= mt) {
                    break CloseReason::MediaTimeout;
                }
            }
        }
    };

    tracing::debug!(?reason, "closing call");
    t.shared.closed.store(true, Ordering::Release);
    // Order matters only for tidiness: close the connection (stops the driver, ends the track's
    // event stream, frees the socket), then drop every handle we hold to webrtc-rs objects.
    if let Some(pc) = &t.pc
        && let Err(e) = pc.close().await
    {
        tracing::debug!("pc.close: {e}");
    }
    drop(track);
    drop(t.pc);
    drop(t.sig_rx);
    let _ = t.ev_tx.try_send(RtcEvent::Closed(reason));
    t.shared.finished.store(true, Ordering::Release);
    t.done.notify_waiters();
}

/// A call's source of inbound Opus packets.
enum Inbound {
    /// The browser's remote track (RTP over SRTP).
    Track(Arc<dyn TrackRemote>),
    /// An in-process far end: (sequence number, Opus payload).
    InProcess(mpsc::Receiver<(u16, bytes::Bytes)>),
}

enum InEvent {
    Packet(u16, bytes::Bytes),
    /// The source ended: no more packets (the media watchdog then ends the call).
    Ended,
    Other,
}

async fn poll_inbound(src: &mut Option<Inbound>) -> InEvent {
    match src {
        Some(Inbound::Track(t)) => match t.poll().await {
            Some(TrackRemoteEvent::OnRtpPacket(pkt)) => {
                InEvent::Packet(pkt.header.sequence_number, pkt.payload)
            }
            Some(TrackRemoteEvent::OnEnded) | None => InEvent::Ended,
            Some(_) => InEvent::Other,
        },
        Some(Inbound::InProcess(rx)) => match rx.recv().await {
            Some((seq, payload)) => InEvent::Packet(seq, payload),
            None => InEvent::Ended,
        },
        None => std::future::pending().await,
    }
}

// ───────────────────────────── in-process calls ─────────────────────────────

/// How browser calls carry their media.
#[derive(Clone, Default)]
pub enum RtcMedia {
    /// WebRTC over the network (ICE, DTLS, SRTP), answered by [`accept`]: what the softphone
    /// page uses.
    #[default]
    Network,
    /// In the process, answered by [`accept_in_process`]: each call's far end is handed, with
    /// the call's id, to this channel. For browser calls on a virtual clock
    /// (`testkit::vbrowser`), where no socket can take part; the call task, the Opus codec, the
    /// watchdog and everything above them are the network path's.
    InProcess(mpsc::Sender<(String, InProcessPeer)>),
}

/// The answer an in-process call gives to whatever offer it was sent.
pub const IN_PROCESS_ANSWER: &str = "in-process";

/// Packets either way an in-process call buffers (5 s of 20 ms frames).
const IN_PROCESS_QUEUE: usize = 250;

/// The far end of an in-process call: it connects, sends Opus packets as a browser's track
/// would, receives the bot's, and hangs up or goes silent.
pub struct InProcessPeer {
    sig: mpsc::Sender<Signal>,
    packets: Option<mpsc::Sender<(u16, bytes::Bytes)>>,
    audio: Option<mpsc::Receiver<bytes::Bytes>>,
}

impl InProcessPeer {
    /// The media path is up (the peer connection's `Connected`).
    pub fn connect(&self) {
        let _ = self
            .sig
            .try_send(Signal::State(RTCPeerConnectionState::Connected));
    }

    /// One inbound Opus packet. False once the call no longer takes any.
    pub async fn send(&self, seq: u16, payload: bytes::Bytes) -> bool {
        match &self.packets {
            Some(tx) => tx.send((seq, payload)).await.is_ok(),
            None => false,
        }
    }

    /// The bot's audio, one Opus packet per 20 ms frame, for a task of its own (None the
    /// second time). The channel closes when the call is over.
    pub fn take_audio(&mut self) -> Option<mpsc::Receiver<bytes::Bytes>> {
        self.audio.take()
    }

    /// Stops sending for good, as a vanished browser does: the media watchdog ends the call.
    pub fn go_silent(&mut self) {
        self.packets = None;
    }
}

/// Answers an offer in the process: the call is [`accept`]'s, with its packets exchanged with
/// the returned [`InProcessPeer`] instead of a peer connection.
pub fn accept_in_process(settings: &RtcSettings) -> Result<(RtcCall, InProcessPeer)> {
    let encoder = OpusEncoder16k::new(&settings.opus)?;
    let (sig_tx, sig_rx) = mpsc::channel(32);
    let (pkt_tx, pkt_rx) = mpsc::channel(IN_PROCESS_QUEUE);
    let (audio_tx, audio_rx) = mpsc::channel(IN_PROCESS_QUEUE);
    let call = start_call(
        settings,
        Media {
            pc: None,
            inbound: Some(Inbound::InProcess(pkt_rx)),
            out: Outbound::InProcess(audio_tx),
            payload_type: IN_PROCESS_PAYLOAD_TYPE,
        },
        sig_rx,
        encoder,
    );
    Ok((
        call,
        InProcessPeer {
            sig: sig_tx,
            packets: Some(pkt_tx),
            audio: Some(audio_rx),
        },
    ))
}

/// The payload type an in-process call reports (Opus's usual dynamic one; nothing reads it).
const IN_PROCESS_PAYLOAD_TYPE: u8 = 111;

#[cfg(test)]
mod tests {
    use super::*;

    fn packets(ms: usize, count: usize) -> Vec<Vec<u8>> {
        // encode at 16 kHz with the requested frame duration
        let mut enc =
            opus::Encoder::new(SAMPLE_RATE, opus::Channels::Mono, opus::Application::Voip).unwrap();
        let n = SAMPLE_RATE as usize * ms / 1000;
        (0..count)
            .map(|k| {
                let pcm: Vec<f32> = (0..n)
                    .map(|i| 0.3 * ((k * n + i) as f32 * 0.1).sin())
                    .collect();
                enc.encode_vec_float(&pcm, 1500).unwrap()
            })
            .collect()
    }

    fn run(pkts: &[(u16, Vec<u8>)]) -> (Vec<bool>, DecodeStats) {
        let mut d = OpusDecoder16k::new().unwrap();
        let mut st = DecodeStats {
            concealed_frames: 0,
            late_or_dup: 0,
            errors: 0,
        };
        let mut frames = vec![];
        for (seq, p) in pkts {
            d.push_packet(*seq, p, &mut st, |_, c| frames.push(c));
        }
        (frames, st)
    }

    #[test]
    fn rechunks_any_opus_frame_size_to_20ms() {
        for (ms, count, expect) in [(20, 10, 10), (40, 5, 10), (60, 4, 12), (10, 10, 5)] {
            let p: Vec<_> = packets(ms, count)
                .into_iter()
                .enumerate()
                .map(|(i, p)| (i as u16, p))
                .collect();
            let (frames, st) = run(&p);
            assert_eq!(frames.len(), expect, "{ms} ms packets");
            assert_eq!(st.errors, 0);
        }
    }

    #[test]
    fn conceals_gaps_drops_late_and_handles_wraparound() {
        let p = packets(20, 6);
        // seq 65534, 65535, (0 lost), 1, 2, then a late 65535
        let seq = [65534u16, 65535, 1, 2];
        let mut v: Vec<(u16, Vec<u8>)> = seq
            .iter()
            .zip(p.iter())
            .map(|(s, p)| (*s, p.clone()))
            .collect();
        v.push((65535, p[5].clone()));
        let (frames, st) = run(&v);
        assert_eq!(frames.len(), 5, "4 packets + 1 concealed");
        assert_eq!(frames.iter().filter(|c| **c).count(), 1);
        assert_eq!(st.concealed_frames, 1);
        assert_eq!(st.late_or_dup, 1);
    }
}
