//! Test support: a Rust WebRTC peer that plays the browser's part against `peer::accept`.
//!
//! Creates an offer with one sendrecv Opus track, gathers (loopback) candidates, takes an answer,
//! then streams like a browser microphone: 20 ms Opus frames in real time, silence when nothing is
//! queued with [`OfferClient::play`]. It counts and decodes the Opus packets it receives (to
//! 16 kHz) and closes. Not used by the gateway itself.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use rtc::media::Sample;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, RTCPeerConnectionState, RTCSessionDescription, SettingEngineBuilder,
};
use webrtc::rtp_transceiver::RtpSender;

use crate::webrtc::peer::{
    self, DecodeStats, FRAME_DURATION, FRAME_SAMPLES, Handler, OpusDecoder16k, OpusEncoder16k,
    OpusSettings, Signal,
};

/// What the client got from the server.
#[derive(Default, Debug)]
pub struct ClientRecv {
    pub rtp_packets: u64,
    pub decode_errors: u64,
    pub concealed_frames: u64,
    /// Decoded server audio, 16 kHz mono.
    pub pcm16k: Vec<f32>,
    pub first_packet_at: Option<Instant>,
}

pub struct OfferClient {
    pc: Arc<dyn PeerConnection>,
    track: Arc<TrackLocalStaticSample>,
    sender: Arc<dyn RtpSender>,
    ssrc: u32,
    pt: Option<u8>,
    gathered_rx: mpsc::Receiver<()>,
    state_rx: watch::Receiver<RTCPeerConnectionState>,
    stop_tx: Option<oneshot::Sender<()>>,
    pump: Option<JoinHandle<ClientRecv>>,
    encoder: Option<OpusEncoder16k>,
    mic: Option<(mpsc::Sender<Vec<f32>>, JoinHandle<()>)>,
    /// Live counters: packets received, and received 20 ms frames with audible audio.
    pub packets: Arc<AtomicU64>,
    pub audible_frames: Arc<AtomicU64>,
}

impl OfferClient {
    pub async fn new(bind_ip: IpAddr) -> Result<Self> {
        Self::with_ice_timing(bind_ip, Duration::from_millis(20), 70).await
    }

    pub async fn with_ice_timing(
        bind_ip: IpAddr,
        check_interval: Duration,
        max_binding_requests: u16,
    ) -> Result<Self> {
        let (sig_tx, sig_rx) = mpsc::channel(32);
        let (gathered_tx, gathered_rx) = mpsc::channel(1);
        let handler = Arc::new(Handler::new(sig_tx, gathered_tx));
        // Test client only: webrtc-rs as DTLS *client* waits up to one ICE check interval after
        // ICE connects before sending its ClientHello (see REPORT.md). A 20 ms interval keeps
        // that artifact out of the server's connect-time measurement.
        let se = SettingEngineBuilder::new()
            .with_ice_connection_attempts(Some(check_interval), Some(max_binding_requests));
        let pc = peer::build_peer_connection(bind_ip, &[], handler, se).await?;
        let ssrc = peer::random_u32();
        let track = peer::new_opus_track(ssrc, "client")?;
        // add_track on a fresh connection creates a sendrecv audio transceiver → m=audio in the offer
        let sender = pc.add_track(track.clone()).await?;
        let (state_tx, state_rx) = watch::channel(RTCPeerConnectionState::New);
        let (stop_tx, stop_rx) = oneshot::channel();
        let packets = Arc::new(AtomicU64::new(0));
        let audible_frames = Arc::new(AtomicU64::new(0));
        let pump = tokio::spawn(pump(
            sig_rx,
            stop_rx,
            state_tx,
            packets.clone(),
            audible_frames.clone(),
        ));
        Ok(Self {
            pc,
            track,
            sender,
            ssrc,
            pt: None,
            gathered_rx,
            state_rx,
            stop_tx: Some(stop_tx),
            pump: Some(pump),
            encoder: Some(OpusEncoder16k::new(&OpusSettings::default())?),
            mic: None,
            packets,
            audible_frames,
        })
    }

    /// Offer SDP with all candidates included (waits for gathering to complete).
    pub async fn offer(&mut self, gather_timeout: Duration) -> Result<String> {
        let offer = self.pc.create_offer(None).await?;
        self.pc.set_local_description(offer).await?;
        if !peer::wait_gathered(&mut self.gathered_rx, gather_timeout).await {
            tracing::warn!("client: gathering incomplete");
        }
        Ok(self
            .pc
            .local_description()
            .await
            .ok_or_else(|| anyhow!("no local description"))?
            .sdp)
    }

    pub async fn accept_answer(&mut self, answer_sdp: &str) -> Result<()> {
        let answer = RTCSessionDescription::answer(answer_sdp.to_owned())?;
        self.pc
            .set_remote_description(answer)
            .await
            .context("client set_remote_description")?;
        self.pt = Some(peer::negotiated_opus_pt(&self.sender).await?);
        Ok(())
    }

    pub async fn wait_connected(&mut self, timeout: Duration) -> Result<()> {
        let res = tokio::time::timeout(
            timeout,
            self.state_rx.wait_for(|s| {
                matches!(
                    s,
                    RTCPeerConnectionState::Connected
                        | RTCPeerConnectionState::Failed
                        | RTCPeerConnectionState::Closed
                )
            }),
        )
        .await
        .map_err(|_| anyhow!("client: not connected within {timeout:?}"))?
        .map_err(|_| anyhow!("client: state channel closed"))?;
        let res = *res;
        if res != RTCPeerConnectionState::Connected {
            bail!("client: connection ended in {res:?}");
        }
        Ok(())
    }

    /// Starts the microphone: from now on a 20 ms Opus frame is sent every 20 ms, taken from
    /// the audio queued with [`OfferClient::play`], or silence (browsers send audio continuously).
    pub fn start_mic(&mut self) -> Result<()> {
        let pt = self.pt.ok_or_else(|| anyhow!("no answer applied yet"))?;
        let mut encoder = self
            .encoder
            .take()
            .ok_or_else(|| anyhow!("the microphone is already on"))?;
        let (tx, mut rx) = mpsc::channel::<Vec<f32>>(16);
        let track = self.track.clone();
        let ssrc = self.ssrc;
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(FRAME_DURATION);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut queue: std::collections::VecDeque<f32> = Default::default();
            let mut frame = [0f32; FRAME_SAMPLES];
            loop {
                tick.tick().await;
                loop {
                    match rx.try_recv() {
                        Ok(pcm) => queue.extend(pcm),
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => return,
                    }
                }
                let n = queue.len().min(FRAME_SAMPLES);
                for (d, s) in frame.iter_mut().zip(queue.drain(..n)) {
                    *d = s;
                }
                frame[n..].fill(0.0);
                let Ok(data) = encoder.encode(&frame) else {
                    return;
                };
                let sample = Sample {
                    data,
                    duration: FRAME_DURATION,
                    ..Sample::new(Instant::now())
                };
                if track
                    .sample_writer(ssrc, pt)
                    .write_sample(&sample)
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        self.mic = Some((tx, task));
        Ok(())
    }

    /// Queues caller audio (16 kHz mono) on the microphone; returns how long it plays.
    pub async fn play(&self, pcm16k: Vec<f32>) -> Result<Duration> {
        let (tx, _) = self
            .mic
            .as_ref()
            .ok_or_else(|| anyhow!("start the microphone first"))?;
        let d = Duration::from_secs_f64(pcm16k.len() as f64 / f64::from(peer::SAMPLE_RATE));
        tx.send(pcm16k)
            .await
            .map_err(|_| anyhow!("the microphone stopped"))?;
        Ok(d)
    }

    /// Close the peer connection and return what was received.
    pub async fn close(mut self) -> Result<ClientRecv> {
        if let Some((tx, task)) = self.mic.take() {
            drop(tx);
            let _ = task.await;
        }
        self.pc.close().await?;
        if let Some(tx) = self.stop_tx.take() {
            let _ = tx.send(());
        }
        let recv = match self.pump.take() {
            Some(p) => p.await?,
            None => ClientRecv::default(),
        };
        Ok(recv)
    }
}

async fn pump(
    mut sig_rx: mpsc::Receiver<Signal>,
    mut stop_rx: oneshot::Receiver<()>,
    state_tx: watch::Sender<RTCPeerConnectionState>,
    packets: Arc<AtomicU64>,
    audible: Arc<AtomicU64>,
) -> ClientRecv {
    let mut out = ClientRecv::default();
    let mut track: Option<Arc<dyn TrackRemote>> = None;
    let mut dec = OpusDecoder16k::new().expect("opus decoder");
    let mut dstats = DecodeStats {
        concealed_frames: 0,
        late_or_dup: 0,
        errors: 0,
    };
    let mut sig_open = true;
    loop {
        tokio::select! {
            biased;
            _ = &mut stop_rx => break,
            sig = sig_rx.recv(), if sig_open => match sig {
                Some(Signal::State(s)) => { let _ = state_tx.send(s); }
                Some(Signal::Track(t)) => track = Some(t),
                None => sig_open = false,
            },
            ev = async { match &track { Some(t) => t.poll().await, None => std::future::pending().await } }, if track.is_some() => match ev {
                Some(TrackRemoteEvent::OnRtpPacket(p)) => {
                    out.rtp_packets += 1;
                    packets.fetch_add(1, Ordering::Relaxed);
                    out.first_packet_at.get_or_insert_with(Instant::now);
                    let pcm = &mut out.pcm16k;
                    dec.push_packet(p.header.sequence_number, &p.payload, &mut dstats, |f, _| {
                        let ms = f.iter().map(|s| s * s).sum::<f32>() / f.len() as f32;
                        if ms > 1e-4 {
                            audible.fetch_add(1, Ordering::Relaxed);
                        }
                        pcm.extend_from_slice(f);
                    });
                }
                Some(TrackRemoteEvent::OnEnded) | None => track = None,
                Some(_) => {}
            },
        }
    }
    out.decode_errors = dstats.errors;
    out.concealed_frames = dstats.concealed_frames;
    out
}
