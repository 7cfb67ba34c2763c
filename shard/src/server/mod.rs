//! The network server: each shard listens on its own port and serves its connections on its
//! own executor, so a request never crosses cores on its way to the engine.
//!
//! ```text
//! client ──frame──▶ shard i's port (base_port + i)
//!   reader task: FrameReader ─▶ verify ─▶ per request: limits (BUSY), then
//!     one command (complete a job, publish, create, ...): Shard::submit_now ─▶ answer queue
//!     anything that waits longer (activation, mail): a task of its own
//!   answer task: awaits the queued answers in order (durable) ─▶ answer; for an awaited
//!     create, its deadline starts instead; a user task transition held for its task
//!     listeners gets a task of its own that answers when they are done
//!   request task: wire request ─▶ core Command ─▶ Shard::submit ─▶ durable ─▶ answer
//!   writer task: the ends of awaited instances (the connection's result queue, filled
//!     when the command that ended each is durable) and the answers, gathered into one
//!     frame per write
//!   sweeper tasks (two per shard): give up awaited results, and the answers of held user
//!     task transitions, whose time is over
//! ```
//!
//! Limits ([`ServerLimits`], all named and enforced): frames over `frame_bytes_max` end the
//! connection with `FRAME_TOO_LARGE`; frames wait for room in a per-shard byte budget before
//! they are read (so the memory frames hold is bounded whatever the clients send); requests
//! over the per-connection or per-shard in-flight counts are answered `BUSY` with a
//! retry-after; connections over the per-shard count are refused with `BUSY`.

mod awaits;
mod conn;
mod convert;
pub mod ports;

pub use awaits::{AWAIT_COMPACT_MIN, AWAIT_TICK_MS};

use std::cell::Cell;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use glommio::net::TcpListener;
use ringflow_wire::Topology;

use crate::shard::Shard;
use crate::storage::dma::DmaDir;
use crate::wait::WaitList;

/// Default base port: shard `i` listens on `26500 + i`.
pub const BASE_PORT_DEFAULT: u16 = 26500;

/// The smallest `frame_bytes_max` a node takes: 64 KiB. Below it a job with its headers, or
/// a small deployment, would not fit, and every such request would be refused
/// FRAME_TOO_LARGE; a value of 1 was taken before and made a node that refused everything.
pub const FRAME_BYTES_MAX_MIN: usize = 64 * 1024;

/// The server's limits and defaults. Every one is enforced; the README lists them.
#[derive(Clone, Debug)]
pub struct ServerLimits {
    /// Longest frame accepted, in bytes after the length prefix.
    pub frame_bytes_max: usize,
    /// Bytes of frames one shard holds at once (being read, or with requests not yet
    /// answered). A frame waits for room before it is read.
    pub frame_budget_bytes: usize,
    /// How long a frame's body may take to arrive once its length was read and its bytes
    /// taken from the budget, in milliseconds. Past it the frame is refused (TIMEOUT) and
    /// the connection closed: a client that stalls in the middle of a frame (a host gone
    /// dark, a connection never reset) would otherwise hold its share of the budget for
    /// good, and a few of them every other connection's next frame.
    pub frame_read_timeout_ms: u64,
    /// Answer bytes one connection may have waiting for its client to read them. Past it
    /// the connection's requests are not read, and its subscriptions pushed no jobs, until
    /// the client reads: a client that sends
    /// and never reads made one shard queue 6 GB of answers in 12 s.
    pub unsent_bytes_per_connection_max: usize,
    /// Requests in flight on one shard; more are answered BUSY.
    pub inflight_per_shard_max: usize,
    /// Requests in flight on one connection; more are answered BUSY.
    pub inflight_per_connection_max: usize,
    /// Open connections per shard; more are refused with BUSY.
    pub connections_per_shard_max: usize,
    /// Job subscriptions per connection.
    pub subscriptions_per_connection_max: usize,
    /// The retry-after sent with BUSY, in milliseconds.
    pub busy_retry_after_ms: u32,
    /// How long an awaited result is waited for when the request says 0, in milliseconds.
    pub await_timeout_default_ms: u32,
    /// The longest awaited-result wait a request may ask for, in milliseconds.
    pub await_timeout_max_ms: u32,
    /// How long a user task's completion, assignment or update that waits for its task
    /// listeners is waited for before the request is answered TIMEOUT (the transition goes
    /// on), in milliseconds. Under the client's request timeout (30 s by default).
    pub task_listener_wait_ms: u32,
    /// The longest long poll, in milliseconds.
    pub long_poll_max_ms: u32,
    /// A job's lease when the request says 0, in milliseconds.
    pub lease_default_ms: u64,
    /// How long a shutdown waits for in-flight requests to be answered before it closes the
    /// connections, in milliseconds. (Awaited results, long polls and subscriptions are
    /// answered at once when the shutdown begins.)
    pub shutdown_grace_ms: u64,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            frame_bytes_max: ringflow_wire::frame::FRAME_BYTES_MAX_DEFAULT,
            frame_budget_bytes: 256 * 1024 * 1024,
            frame_read_timeout_ms: 30_000,
            unsent_bytes_per_connection_max: 64 * 1024 * 1024,
            inflight_per_shard_max: 65_536,
            inflight_per_connection_max: 8_192,
            connections_per_shard_max: 1_024,
            subscriptions_per_connection_max: 64,
            busy_retry_after_ms: 10,
            await_timeout_default_ms: 30_000,
            await_timeout_max_ms: 600_000,
            task_listener_wait_ms: 10_000,
            long_poll_max_ms: 60_000,
            lease_default_ms: 300_000,
            shutdown_grace_ms: 5_000,
        }
    }
}

impl ServerLimits {
    /// Checks that the limits fit together.
    pub fn check(&self) -> Result<(), String> {
        if self.frame_bytes_max < FRAME_BYTES_MAX_MIN {
            return Err(format!(
                "frame_bytes_max ({}) must be at least {FRAME_BYTES_MAX_MIN} (64 KiB)",
                self.frame_bytes_max
            ));
        }
        if self.frame_budget_bytes
            < self.frame_bytes_max + ringflow_wire::frame::LENGTH_PREFIX_BYTES
        {
            return Err(format!(
                "frame_budget_bytes ({}) must hold at least one frame of frame_bytes_max ({})",
                self.frame_budget_bytes, self.frame_bytes_max
            ));
        }
        let counts = [
            self.inflight_per_shard_max,
            self.inflight_per_connection_max,
            self.connections_per_shard_max,
            self.subscriptions_per_connection_max,
        ];
        if counts.contains(&0) {
            return Err("in-flight, connection and subscription limits must be at least 1".into());
        }
        if self.unsent_bytes_per_connection_max == 0 {
            return Err("unsent_bytes_per_connection_max must be at least 1".into());
        }
        if self.frame_read_timeout_ms == 0 {
            return Err("frame_read_timeout_ms must be at least 1".into());
        }
        if self.lease_default_ms == 0 {
            // Every job activated without a lease of its own would expire at once.
            return Err("lease_default_ms must be at least 1".into());
        }
        Ok(())
    }
}

/// What every shard of a node needs to serve.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The address to bind (this node's host in the topology, or 0.0.0.0).
    pub bind_host: String,
    /// Shard `first_shard + i` of this node listens on `base_port + i`.
    pub base_port: u16,
    /// The cluster-wide id of this node's first shard.
    pub first_shard: u16,
    /// The whole cluster, for Topology answers and WRONG_SHARD.
    pub topology: Topology,
    /// Limits and defaults.
    pub limits: ServerLimits,
}

/// One shard's server state, shared by its connections (all on the shard's thread).
pub(crate) struct ShardServer {
    pub(crate) shard: Rc<Shard<DmaDir>>,
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) inflight: Cell<usize>,
    pub(crate) connections: Cell<usize>,
    budget: Cell<usize>,
    budget_freed: WaitList,
    closing: Cell<bool>,
    closing_event: WaitList,
    /// The deadlines of awaited creates (see [`awaits`]).
    pub(crate) awaits: awaits::AwaitDeadlines,
    /// The deadlines of the answers to held user task transitions (see [`awaits`]).
    pub(crate) transition_awaits: awaits::AwaitDeadlines,
    /// The shard's metrics (request latency).
    pub(crate) metrics: Arc<crate::metrics::ShardMetrics>,
}

/// Bytes of the frame budget held by one frame until its last request is answered.
pub(crate) struct FrameLease {
    server: Rc<ShardServer>,
    bytes: usize,
}

impl Drop for FrameLease {
    fn drop(&mut self) {
        let server = &self.server;
        server.budget.set(server.budget.get() + self.bytes);
        server.budget_freed.wake_all();
    }
}

impl ShardServer {
    /// Waits until `bytes` of the frame budget are free and takes them.
    pub(crate) async fn lease(self: &Rc<Self>, bytes: usize) -> FrameLease {
        loop {
            let freed = self.budget_freed.wait();
            let available = self.budget.get();
            if available >= bytes {
                self.budget.set(available - bytes);
                return FrameLease {
                    server: self.clone(),
                    bytes,
                };
            }
            freed.await;
        }
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.closing.get()
    }

    /// Resolves once shutdown begins.
    pub(crate) async fn closing(&self) {
        loop {
            let event = self.closing_event.wait();
            if self.closing.get() {
                return;
            }
            event.await;
        }
    }
}

/// Serves one shard until `shutdown` is raised: listens on its port (`socket`, bound by
/// [`ports::bind_ports`] before recovery), serves connections, and on shutdown stops
/// accepting, lets in-flight requests finish (up to the grace time), takes a snapshot and
/// returns.
pub async fn serve_shard(
    shard: Rc<Shard<DmaDir>>,
    config: Arc<ServerConfig>,
    socket: socket2::Socket,
    shutdown: Arc<AtomicBool>,
) -> Result<(), String> {
    let index = shard
        .id()
        .checked_sub(config.first_shard)
        .ok_or_else(|| format!("shard {} is not on this node", shard.id()))?;
    let addr = ports::shown(&config.bind_host, config.base_port.saturating_add(index));
    ports::listen(&socket, &addr)?;
    // SAFETY: the descriptor is a bound, listening TCP socket that this listener now owns
    // (into_raw_fd gives up the Socket's ownership); from_raw_fd runs on the shard's
    // executor, which the listener registers with.
    let listener = unsafe { TcpListener::from_raw_fd(socket.into_raw_fd()) };
    say!("ringflow: shard {} listening on {addr}", shard.id());
    let server = Rc::new(ShardServer {
        metrics: shard.metrics(),
        shard: shard.clone(),
        budget: Cell::new(config.limits.frame_budget_bytes),
        config,
        inflight: Cell::new(0),
        connections: Cell::new(0),
        budget_freed: WaitList::default(),
        closing: Cell::new(false),
        closing_event: WaitList::default(),
        awaits: awaits::AwaitDeadlines::new(),
        transition_awaits: awaits::AwaitDeadlines::new(),
    });
    let sweeper = glommio::spawn_local(awaits::sweep(server.clone(), awaits::Waits::Results));
    let transition_sweeper =
        glommio::spawn_local(awaits::sweep(server.clone(), awaits::Waits::Transitions));
    let watcher = {
        let server = server.clone();
        glommio::spawn_local(async move {
            loop {
                if shutdown.load(Ordering::Relaxed) || server.shard.stopped().is_some() {
                    server.closing.set(true);
                    server.closing_event.wake_all();
                    return;
                }
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            server.closing().await;
            None
        })
        .await;
        let Some(accepted) = accepted else { break };
        match accepted {
            Ok(stream) => conn::start(server.clone(), stream),
            Err(error) => {
                tracing::warn!(shard = shard.id(), %error, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    drop(listener);
    watcher.await;
    sweeper.await;
    transition_sweeper.await;
    // Let requests in flight finish, up to the grace time.
    let grace = Duration::from_millis(server.config.limits.shutdown_grace_ms);
    let started = std::time::Instant::now();
    while (server.inflight.get() > 0 || server.connections.get() > 0) && started.elapsed() < grace {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    if let Some(reason) = shard.stopped() {
        return Err(reason);
    }
    let lsn = shard
        .snapshot()
        .await
        .map_err(|error| format!("final snapshot failed: {error}"))?;
    say!(
        "ringflow: shard {} stopped; snapshot at LSN {lsn}",
        shard.id()
    );
    Ok(())
}
