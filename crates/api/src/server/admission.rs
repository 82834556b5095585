//! What one client may hold of the server, and whom to close when a limit is reached:
//! connections per process and per client address (the oldest idle connection goes first,
//! then the one that has been sending its request body longest, and only then is the new
//! one refused), request bodies being received per client address, and bytes of answers
//! waiting for clients that do not read them (past the process's total, the connections
//! that have not read for longest are closed).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use super::connections::{Shared, Tracked};
use super::metrics::WorkerMetrics;

/// Every open connection, oldest first, and every client address with open connections.
#[derive(Default)]
pub(super) struct Registry {
    /// Entries of closed connections are pruned lazily.
    connections: VecDeque<Weak<Tracked>>,
    /// Entries of addresses without connections are pruned lazily.
    clients: HashMap<IpAddr, Weak<Client>>,
}

/// One client address's counters, shared by its connections.
pub(super) struct Client {
    address: IpAddr,
    /// Its open connections.
    pub(super) connections: AtomicUsize,
    /// Its request bodies being received.
    bodies: AtomicUsize,
}

impl Registry {
    /// Forgets closed connections and addresses without connections.
    pub(super) fn prune(&mut self) {
        self.connections.retain(|entry| entry.strong_count() > 0);
        self.clients.retain(|_, client| client.strong_count() > 0);
    }

    /// The open connections, oldest first.
    pub(super) fn live(&self) -> impl Iterator<Item = Arc<Tracked>> + '_ {
        self.connections.iter().filter_map(Weak::upgrade)
    }

    /// The counters of `address`, made when it has none.
    fn client(&mut self, address: IpAddr) -> Arc<Client> {
        if let Some(client) = self.clients.get(&address).and_then(Weak::upgrade) {
            return client;
        }
        let client = Arc::new(Client {
            address,
            connections: AtomicUsize::new(0),
            bodies: AtomicUsize::new(0),
        });
        self.clients.insert(address, Arc::downgrade(&client));
        client
    }

    /// Closes one connection (of `address`, or of anyone) to make room for a new one: the
    /// oldest idle one, else the one that has been sending its body longest. `None` when
    /// every such connection is busy otherwise.
    fn make_room(&self, address: Option<IpAddr>) -> Option<()> {
        let candidates = || {
            self.live()
                .filter(|c| !c.is_closing() && address.is_none_or(|a| c.client.address == a))
        };
        if let Some(idle) = candidates().find(|c| c.busy.load(Ordering::Relaxed) == 0) {
            // An idle connection may still hold an answer its client does not read.
            idle.abort();
            return Some(());
        }
        let slowest = candidates()
            .filter_map(|c| since(&c.body_since).map(|at| (at, c)))
            .min_by_key(|(at, _)| *at)?;
        slowest.1.abort();
        Some(())
    }
}

/// The stamp in `at`, if set (0 means unset).
fn since(at: &std::sync::atomic::AtomicU64) -> Option<u64> {
    Some(at.load(Ordering::Relaxed)).filter(|&stamp| stamp != 0)
}

impl Shared {
    /// Takes a new connection from `peer`, making room when its address or the process is
    /// at its limit (see [`Registry::make_room`]); `None` when no room can be made.
    pub(super) fn admit(
        self: &Arc<Self>,
        peer: IpAddr,
        worker_in_flight: &Arc<AtomicUsize>,
        worker_metrics: &Arc<WorkerMetrics>,
    ) -> Option<Arc<Tracked>> {
        let peer = peer.to_canonical();
        let Ok(mut registry) = self.registry.lock() else {
            return None;
        };
        let client = registry.client(peer);
        if client.connections.load(Ordering::Relaxed) >= self.limits.max_client_connections {
            registry.prune();
            registry.make_room(Some(peer))?;
        } else if self.open.load(Ordering::Relaxed) >= self.limits.max_connections {
            registry.prune();
            registry.make_room(None)?;
        }
        let tracked = Arc::new(Tracked::new(self, client, worker_in_flight, worker_metrics));
        if registry.connections.len() >= self.limits.max_connections.saturating_mul(2) {
            registry.prune();
        }
        registry.connections.push_back(Arc::downgrade(&tracked));
        tracked.client.connections.fetch_add(1, Ordering::Relaxed);
        self.open.fetch_add(1, Ordering::Relaxed);
        if self.all_closed.load(Ordering::Relaxed) {
            // Admitted after the shutdown closed everything: closed like an idle one.
            tracked.shut();
        }
        Some(tracked)
    }

    /// Closes the connections whose clients have not read for longest until the unsent
    /// bytes are back within the limit.
    fn shed_stalled(&self) {
        let Ok(registry) = self.registry.lock() else {
            return;
        };
        let mut stalled: Vec<_> = registry
            .live()
            .filter(|c| !c.is_aborted())
            .filter_map(|c| since(&c.stalled_since).map(|at| (at, c)))
            .collect();
        stalled.sort_unstable_by_key(|(at, _)| *at);
        for (_, connection) in stalled {
            if self.unsent_total() <= self.limits.max_unsent_bytes {
                break;
            }
            connection.abort();
        }
    }

    fn unsent_total(&self) -> usize {
        usize::try_from(self.unsent.load(Ordering::Relaxed)).unwrap_or(0)
    }
}

impl Tracked {
    /// Notes that `bytes` of answers wait for the client to read them (0: none), and
    /// whether it read some since the last note: they count against the process's total,
    /// and past it the connections that have not read for longest are closed (this one too,
    /// if it is among them).
    pub(super) fn set_unsent(&self, bytes: usize, progressed: bool) {
        // Nothing held before or now (nearly every write): the shared total is not touched.
        if self.is_aborted() || (bytes == 0 && self.unsent.load(Ordering::Relaxed) == 0) {
            return;
        }
        let before = self.unsent.swap(bytes, Ordering::Relaxed);
        let delta =
            i64::try_from(bytes).unwrap_or(i64::MAX) - i64::try_from(before).unwrap_or(i64::MAX);
        self.shared.unsent.fetch_add(delta, Ordering::Relaxed);
        // Stamped when it starts to wait, and again whenever its client read something:
        // a client that reads slowly is not one that never reads.
        let stamp = match bytes {
            0 => 0,
            _ if before == 0 || progressed => self.shared.millis() + 1,
            _ => self.stalled_since.load(Ordering::Relaxed),
        };
        self.stalled_since.store(stamp, Ordering::Relaxed);
        if delta > 0 && self.shared.unsent_total() > self.shared.limits.max_unsent_bytes {
            self.shared.shed_stalled();
        }
    }

    /// Takes this connection's unsent bytes out of the process's total.
    pub(super) fn release_unsent(&self) {
        let held = self.unsent.swap(0, Ordering::Relaxed);
        self.stalled_since.store(0, Ordering::Relaxed);
        if held > 0 {
            let held = i64::try_from(held).unwrap_or(i64::MAX);
            self.shared.unsent.fetch_sub(held, Ordering::Relaxed);
        }
    }

    /// Notes that a request body starts to arrive; past its client's limit of bodies, the
    /// client's connection that has been sending its body longest is closed.
    fn body_started(&self) {
        self.body_since
            .store(self.shared.millis() + 1, Ordering::Relaxed);
        let bodies = self.client.bodies.fetch_add(1, Ordering::Relaxed) + 1;
        if bodies > self.shared.limits.max_client_bodies {
            self.shed_slowest_body_of_client();
        }
    }

    fn body_ended(&self) {
        if self.body_since.swap(0, Ordering::Relaxed) != 0 {
            self.client.bodies.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Closes the other connection of this client that has been sending its body longest.
    fn shed_slowest_body_of_client(&self) {
        let Ok(registry) = self.shared.registry.lock() else {
            return;
        };
        let slowest = registry
            .live()
            .filter(|c| Arc::ptr_eq(&c.client, &self.client) && !std::ptr::eq(&**c, self))
            .filter(|c| !c.is_aborted())
            .filter_map(|c| since(&c.body_since).map(|at| (at, c)))
            .min_by_key(|(at, _)| *at);
        if let Some((_, connection)) = slowest {
            connection.abort();
        }
    }
}

/// A request body, counted as being received (for its client's limit and for shedding the
/// slowest sender) from its head until its end, an error, or its drop.
pub(super) struct WatchedBody {
    inner: Incoming,
    /// The connection, while the body is being received.
    receiving: Option<Arc<Tracked>>,
}

impl WatchedBody {
    /// `inner`, watched when `tracked` is given (a request that says a body follows).
    pub(super) fn new(inner: Incoming, tracked: Option<Arc<Tracked>>) -> Self {
        if let Some(tracked) = &tracked {
            tracked.body_started();
        }
        Self {
            inner,
            receiving: tracked,
        }
    }

    fn ended(&mut self) {
        if let Some(tracked) = self.receiving.take() {
            tracked.body_ended();
        }
    }
}

impl Drop for WatchedBody {
    fn drop(&mut self) {
        self.ended();
    }
}

impl Body for WatchedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) || this.inner.is_end_stream() {
            this.ended();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
