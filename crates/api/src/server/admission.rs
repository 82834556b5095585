//! What one client may hold of the server, and whom to close when a limit is reached:
//! connections per process and per client address (the oldest idle connection goes first,
//! then the one that has been sending its request body longest, and only then is the new
//! one refused), request bodies being received per client address, and bytes of answers
//! waiting for clients that do not read them (past the process's total, the connections
//! that have not read for longest are closed); and the idle sweep, which closes the
//! connections that waited for a request past the idle timeout. [`Shared`] is what every
//! worker's connections share, [`Tracked`] one open connection as the limits see it.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::sync::{Notify, watch};

use super::limits::Limits;
use super::metrics::{Gauges, Registry as Metrics};
use crate::health::Draining;
use crate::request_id::ProcessIds;

/// How often idle connections are looked for, at least and at most (an eighth of the
/// idle timeout in between).
const SWEEP_MIN: Duration = Duration::from_millis(10);
const SWEEP_MAX: Duration = Duration::from_secs(1);

/// What the connections of every worker share.
pub(super) struct Shared {
    pub(super) limits: Limits,
    pub(super) draining: Draining,
    pub(super) metrics: Metrics,
    /// Whether `/metrics` is answered on the API's listeners.
    pub(super) metrics_here: bool,
    /// Whether every request gets an access log line.
    pub(super) access_log: bool,
    /// Where every worker's request ids come from.
    pub(super) ids: ProcessIds,
    pub(super) open: AtomicUsize,
    /// Listeners still open: the shutdown counts the connections left once every worker
    /// has taken the last ones its listener had and closed it.
    pub(super) listening: AtomicUsize,
    /// Bytes of answers waiting for their clients to read them (see
    /// [`Tracked::set_unsent`]); may dip below 0 for an instant.
    pub(super) unsent: AtomicI64,
    /// Requests in flight, one counter per worker so that workers do not contend for one
    /// cache line on every request.
    in_flight: Mutex<Vec<Arc<AtomicUsize>>>,
    /// Every open connection, oldest first (entries of closed ones are pruned lazily), and
    /// every client address with open connections.
    pub(super) registry: Mutex<Connections>,
    /// Set (under the registry's lock) once every connection was told to close: a worker
    /// that accepts one more before it sees the listeners close must close that one too,
    /// or it would hold the shutdown until the timeout.
    pub(super) all_closed: AtomicBool,
    /// Where the idle stamps of [`Tracked`] count from.
    epoch: std::time::Instant,
}

/// One open connection as the limits see it, and what its requests need to reach.
pub(super) struct Tracked {
    pub(super) shared: Arc<Shared>,
    /// Its client address's counters.
    pub(super) client: Arc<Client>,
    /// Requests being answered on it.
    pub(super) busy: AtomicUsize,
    /// Told to close (shed, or the shutdown).
    pub(super) closing: AtomicBool,
    pub(super) close: Notify,
    /// Told to close at once, whatever it is doing (shed while it holds a slot or memory
    /// that others need).
    pub(super) aborted: AtomicBool,
    abort: Notify,
    /// While it receives a request body: since when (milliseconds since [`Shared::epoch`]
    /// plus one); 0 otherwise.
    pub(super) body_since: AtomicU64,
    /// Bytes of answers it holds that its client has not read yet.
    pub(super) unsent: AtomicUsize,
    /// While it holds such bytes: since its client last read (as `body_since`).
    pub(super) stalled_since: AtomicU64,
    /// While the front waits for a request: when it began to wait, in milliseconds since
    /// [`Shared::epoch`] plus one; 0 when it is not waiting (busy, or served by hyper,
    /// which keeps its own header-read timer).
    idle_since: AtomicU64,
}

impl Shared {
    pub(super) fn new(limits: Limits, metrics_here: bool, access_log: bool) -> Arc<Self> {
        Arc::new(Self {
            limits,
            draining: Draining::default(),
            metrics: Metrics::new(),
            metrics_here,
            access_log,
            ids: ProcessIds::new(),
            open: AtomicUsize::new(0),
            listening: AtomicUsize::new(0),
            unsent: AtomicI64::new(0),
            in_flight: Mutex::new(Vec::new()),
            registry: Mutex::new(Connections::default()),
            all_closed: AtomicBool::new(false),
            epoch: std::time::Instant::now(),
        })
    }

    pub(super) fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Every metric in the text exposition format.
    pub(super) fn render_metrics(&self) -> String {
        self.metrics.render(&Gauges {
            in_flight: self.in_flight(),
            open_connections: self.open_connections(),
        })
    }

    pub(super) fn in_flight(&self) -> usize {
        self.in_flight.lock().map_or(0, |counters| {
            counters.iter().map(|c| c.load(Ordering::Relaxed)).sum()
        })
    }

    /// A new worker's in-flight counter (allocated on the worker's thread).
    pub(super) fn worker_counter(&self) -> Arc<AtomicUsize> {
        let counter = Arc::new(AtomicUsize::new(0));
        if let Ok(mut counters) = self.in_flight.lock() {
            counters.push(Arc::clone(&counter));
        }
        counter
    }

    pub(super) fn millis(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    /// Closes the connections whose front has waited for a request longer than the idle
    /// timeout, every `tick` until the listeners close. One sweep for all connections
    /// rather than a timer per request: a request that comes in time costs nothing.
    pub(super) async fn sweep_idle(self: Arc<Self>, mut closing: watch::Receiver<bool>) {
        let timeout = u64::try_from(self.limits.idle_timeout.as_millis()).unwrap_or(u64::MAX);
        let tick = (self.limits.idle_timeout / 8).clamp(SWEEP_MIN, SWEEP_MAX);
        let mut ticks = tokio::time::interval(tick);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = closing.wait_for(|closed| *closed) => return,
            }
            let now = self.millis() + 1;
            let Ok(mut registry) = self.registry.lock() else {
                return;
            };
            registry.prune();
            for connection in registry.live() {
                let since = connection.idle_since.load(Ordering::Relaxed);
                if since != 0 && now.saturating_sub(since) >= timeout {
                    connection.shut();
                }
            }
        }
    }

    /// Tells every open connection to close once its in-flight request is answered.
    pub(super) fn close_all_connections(&self) {
        if let Ok(registry) = self.registry.lock() {
            self.all_closed.store(true, Ordering::Relaxed);
            registry.live().for_each(|c| c.shut());
        }
    }
}

impl Tracked {
    pub(super) fn new(shared: &Arc<Shared>, client: Arc<Client>) -> Self {
        Self {
            shared: Arc::clone(shared),
            client,
            busy: AtomicUsize::new(0),
            closing: AtomicBool::new(false),
            close: Notify::new(),
            aborted: AtomicBool::new(false),
            abort: Notify::new(),
            body_since: AtomicU64::new(0),
            unsent: AtomicUsize::new(0),
            stalled_since: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
        }
    }

    /// Tells the connection to close once its in-flight request is answered.
    pub(super) fn shut(&self) {
        self.closing.store(true, Ordering::Relaxed);
        self.close.notify_one();
    }

    /// Tells the connection to close at once, dropping what it holds; what it held no
    /// longer counts against the process's total of unsent bytes from now on.
    pub(super) fn abort(&self) {
        self.aborted.store(true, Ordering::Relaxed);
        self.release_unsent();
        self.shut();
        self.abort.notify_one();
    }

    /// Whether the connection was told to close at once.
    pub(super) fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::Relaxed)
    }

    /// Waits until the connection was told to close at once.
    pub(super) async fn aborted(&self) {
        self.abort.notified().await;
    }

    /// Whether the connection was told to close.
    pub(super) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    /// Waits until the connection was told to close.
    pub(super) async fn closed(&self) {
        self.close.notified().await;
    }

    /// Notes that the front starts (`true`) or stops waiting for a request.
    pub(super) fn set_idle(&self, idle: bool) {
        let stamp = match idle {
            true => self.shared.millis() + 1,
            false => 0,
        };
        self.idle_since.store(stamp, Ordering::Relaxed);
    }

    pub(super) fn limits(&self) -> &Limits {
        &self.shared.limits
    }

    /// Whether `/metrics` is answered on the API's listeners.
    pub(super) fn metrics_here(&self) -> bool {
        self.shared.metrics_here
    }
}

/// Counts the connection open (in the process and for its client) while it lives.
pub(super) struct OpenConnection(pub(super) Arc<Tracked>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        let tracked = &self.0;
        tracked.release_unsent();
        tracked.client.connections.fetch_sub(1, Ordering::Relaxed);
        tracked.shared.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Every open connection, oldest first, and every client address with open connections.
#[derive(Default)]
pub(super) struct Connections {
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

impl Connections {
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
    /// at its limit (see [`Connections::make_room`]); `None` when no room can be made.
    pub(super) fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<Arc<Tracked>> {
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
        let tracked = Arc::new(Tracked::new(self, client));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_admitted_after_everything_was_closed_is_closed_at_once() {
        let shared = Shared::new(Limits::default(), true, false);
        let peer = IpAddr::from([127, 0, 0, 1]);
        let before = shared.admit(peer);
        assert!(before.is_some_and(|c| !c.closing.load(Ordering::Relaxed)));
        shared.close_all_connections();
        let late = shared.admit(peer);
        assert!(
            late.is_some_and(|c| c.closing.load(Ordering::Relaxed)),
            "a connection taken after the close must be told to close too"
        );
    }
}
