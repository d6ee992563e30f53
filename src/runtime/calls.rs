//! Active calls: admission control (a cap on concurrent calls), the provider-call-id →
//! conversation map that status callbacks are logged through, and draining on shutdown.
//!
//! A call holds a [`Slot`] for as long as its task runs; dropping the slot frees it, so a call
//! that ends any way at all (hang-up, error, panic unwinding) gives its place back.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// Ended calls remembered so late status callbacks still find their case.
const RECENT: usize = 512;

pub struct CallRegistry {
    max_active: usize,
    /// Connections that have not started a call yet, at most, and from one address.
    max_pending: usize,
    max_pending_per_ip: usize,
    inner: Mutex<Inner>,
    changed: Notify,
    draining: AtomicBool,
    /// Set when the drain timeout passes: every call task ends its call.
    stop_tx: watch::Sender<bool>,
}

#[derive(Default)]
struct Inner {
    /// Connections waiting to start a call, per peer address (None: unknown).
    pending: HashMap<Option<IpAddr>, usize>,
    pending_total: usize,
    next: u64,
    active: HashMap<u64, Option<(String, String)>>,
    recent: VecDeque<(String, String)>,
}

/// Whether a new call may be served.
pub enum Admission {
    Admitted(Slot),
    /// Over the cap: the caller hears the busy message. The slot is held while it plays.
    Busy(Slot),
    /// Shutting down: no new calls.
    Draining,
}

/// Why a connection was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Draining,
    /// Too many connections waiting to start a call (from this address, or in all).
    TooManyPending,
}

impl CallRegistry {
    pub fn new(max_active: usize) -> CallRegistry {
        Self::with_pending_limits(max_active, (max_active * 4).max(64), 16)
    }

    /// `max_pending` connections may wait to start a call at once, `per_ip` from one address.
    pub fn with_pending_limits(
        max_active: usize,
        max_pending: usize,
        per_ip: usize,
    ) -> CallRegistry {
        CallRegistry {
            max_pending: max_pending.max(1),
            max_pending_per_ip: per_ip.max(1),
            max_active: max_active.max(1),
            inner: Mutex::new(Inner::default()),
            changed: Notify::new(),
            draining: AtomicBool::new(false),
            stop_tx: watch::channel(false).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a call, or says why not. Busy calls hold a slot too (they are short), so a
    /// flood of callers over the cap is bounded at twice the cap.
    pub fn admit(self: &Arc<Self>) -> Admission {
        if self.is_draining() {
            return Admission::Draining;
        }
        let mut g = self.lock();
        let n = g.active.len();
        if n >= self.max_active * 2 {
            return Admission::Draining;
        }
        g.next += 1;
        let id = g.next;
        g.active.insert(id, None);
        drop(g);
        let slot = Slot {
            reg: self.clone(),
            id,
        };
        if n >= self.max_active {
            Admission::Busy(slot)
        } else {
            Admission::Admitted(slot)
        }
    }

    /// A connection that will start a call: it holds no call slot until it does (see
    /// [`Pending::admit`]), so sockets that never start cannot keep callers out; they are
    /// bounded in all and per address instead.
    pub fn connect(self: &Arc<Self>, peer: Option<IpAddr>) -> Result<Pending, Refusal> {
        if self.is_draining() {
            return Err(Refusal::Draining);
        }
        let mut g = self.lock();
        let from_peer = g.pending.get(&peer).copied().unwrap_or(0);
        if g.pending_total >= self.max_pending || from_peer >= self.max_pending_per_ip {
            return Err(Refusal::TooManyPending);
        }
        *g.pending.entry(peer).or_insert(0) += 1;
        g.pending_total += 1;
        Ok(Pending {
            reg: self.clone(),
            peer,
            done: false,
        })
    }

    /// Connections waiting to start a call.
    pub fn pending(&self) -> usize {
        self.lock().pending_total
    }

    fn release_pending(&self, peer: Option<IpAddr>) {
        let mut g = self.lock();
        if let Some(n) = g.pending.get_mut(&peer) {
            *n -= 1;
            if *n == 0 {
                g.pending.remove(&peer);
            }
            g.pending_total -= 1;
        }
    }

    /// Calls (including busy ones still playing their message) being served.
    pub fn active(&self) -> usize {
        self.lock().active.len()
    }

    pub fn max_active(&self) -> usize {
        self.max_active
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// The conversation of a provider call, active or recently ended.
    pub fn conversation_for(&self, provider_call_id: &str) -> Option<String> {
        let g = self.lock();
        g.active
            .values()
            .flatten()
            .chain(g.recent.iter())
            .find(|(c, _)| c == provider_call_id)
            .map(|(_, conv)| conv.clone())
    }

    /// Becomes true when active calls must end now (drain timeout passed).
    pub fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop_tx.subscribe()
    }

    /// Stops admitting calls, waits up to `timeout` for active ones to finish, then tells the rest
    /// to end and waits a little for them to close their records. Returns how many were cut off.
    pub async fn drain(&self, timeout: Duration) -> usize {
        self.draining.store(true, Ordering::SeqCst);
        let n = self.active();
        if n > 0 {
            tracing::info!(
                active = n,
                "draining: no new calls; waiting up to {timeout:?} for active calls to finish"
            );
        }
        if self.wait_idle(timeout).await {
            return 0;
        }
        let cut = self.active();
        tracing::warn!(active = cut, "drain timeout: ending the remaining calls");
        let _ = self.stop_tx.send(true);
        self.wait_idle(Duration::from_secs(5)).await;
        cut
    }

    async fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            if self.active() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.active() == 0;
            }
        }
    }
}

/// A connection that has not started its call yet. Dropping it frees its place.
pub struct Pending {
    reg: Arc<CallRegistry>,
    peer: Option<IpAddr>,
    done: bool,
}

impl Pending {
    /// The call starts: it takes a call slot now (or hears the busy message, or is refused
    /// when the gateway is draining).
    pub fn admit(mut self) -> Admission {
        self.done = true;
        self.reg.release_pending(self.peer);
        self.reg.admit()
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.done {
            self.reg.release_pending(self.peer);
        }
    }
}

/// A place among the active calls.
pub struct Slot {
    reg: Arc<CallRegistry>,
    id: u64,
}

impl Slot {
    /// Records which provider call and conversation this slot serves.
    pub fn bind(&self, provider_call_id: &str, conversation: &str) {
        if let Some(v) = self.reg.lock().active.get_mut(&self.id) {
            *v = Some((provider_call_id.to_string(), conversation.to_string()));
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut g = self.reg.lock();
        if let Some(Some(pair)) = g.active.remove(&self.id) {
            if g.recent.len() >= RECENT {
                g.recent.pop_front();
            }
            g.recent.push_back(pair);
        }
        drop(g);
        self.reg.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_cap_then_busy_then_refuses() {
        let r = Arc::new(CallRegistry::new(2));
        let a = r.admit();
        let b = r.admit();
        assert!(matches!(a, Admission::Admitted(_)));
        assert!(matches!(b, Admission::Admitted(_)));
        let c = r.admit();
        let d = r.admit();
        assert!(matches!(c, Admission::Busy(_)));
        assert!(matches!(d, Admission::Busy(_)));
        assert!(matches!(r.admit(), Admission::Draining));
        assert_eq!(r.active(), 4);
        drop((a, c, d));
        assert_eq!(r.active(), 1);
        assert!(matches!(r.admit(), Admission::Admitted(_)));
    }

    #[test]
    fn connections_waiting_to_start_take_no_call_slot_and_are_bounded() {
        let r = Arc::new(CallRegistry::with_pending_limits(2, 5, 3));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let idle: Vec<Pending> = (0..3).map(|_| r.connect(Some(a)).unwrap()).collect();
        assert_eq!(r.connect(Some(a)).err(), Some(Refusal::TooManyPending));
        let more: Vec<Pending> = (0..2).map(|_| r.connect(Some(b)).unwrap()).collect();
        assert_eq!(r.connect(None).err(), Some(Refusal::TooManyPending));
        assert_eq!(r.pending(), 5);
        assert_eq!(r.active(), 0, "no call slot is held before start");
        drop(more);
        let call = r.connect(Some(b)).unwrap();
        assert!(matches!(call.admit(), Admission::Admitted(_)));
        assert_eq!(r.pending(), 3);
        drop(idle);
        assert_eq!(r.pending(), 0);
        assert!(r.connect(Some(a)).is_ok());
    }

    #[test]
    fn ended_calls_are_still_found_by_their_provider_id() {
        let r = Arc::new(CallRegistry::new(2));
        {
            let Admission::Admitted(s) = r.admit() else {
                panic!()
            };
            s.bind("CA1", "conv_1");
            assert_eq!(r.conversation_for("CA1").as_deref(), Some("conv_1"));
        }
        assert_eq!(r.active(), 0);
        assert_eq!(r.conversation_for("CA1").as_deref(), Some("conv_1"));
        assert_eq!(r.conversation_for("CA2"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn drain_waits_for_calls_then_cuts_the_rest_off() {
        let r = std::sync::Arc::new(CallRegistry::new(4));
        let mut stop = r.stop_signal();
        let r2 = r.clone();
        let call = tokio::spawn(async move {
            let Admission::Admitted(_slot) = r2.admit() else {
                panic!()
            };
            // A call that only ends when told to.
            let _ = stop.wait_for(|s| *s).await;
        });
        tokio::task::yield_now().await;
        assert_eq!(r.active(), 1);
        let cut = r.drain(Duration::from_secs(30)).await;
        assert_eq!(cut, 1);
        call.await.unwrap();
        assert_eq!(r.active(), 0);
        assert!(matches!(r.admit(), Admission::Draining));
    }

    #[tokio::test(start_paused = true)]
    async fn drain_returns_as_soon_as_the_last_call_ends() {
        let r = std::sync::Arc::new(CallRegistry::new(4));
        let r2 = r.clone();
        tokio::spawn(async move {
            let Admission::Admitted(_slot) = r2.admit() else {
                panic!()
            };
            tokio::time::sleep(Duration::from_secs(3)).await;
        });
        tokio::task::yield_now().await;
        let t0 = tokio::time::Instant::now();
        assert_eq!(r.drain(Duration::from_secs(30)).await, 0);
        assert_eq!(t0.elapsed(), Duration::from_secs(3));
    }
}
