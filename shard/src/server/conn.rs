//! One client connection: a reader task, a writer task, an answer task, a task per request
//! that waits for more than its commit (an activation, mail) and one per job subscription,
//! all on the shard's executor.
//!
//! A request that is one command (complete a job, publish a message, create an instance,
//! ...) gets no task of its own: the reader submits it and queues its answer slot, and the
//! answer task awaits the slots in order (the shard answers in the order of submission), so
//! one wake-up answers every command of a commit. A create that awaits its instance's result
//! is such a command too: once it is durable, its deadline starts
//! ([`super::awaits`]), and the end of its instance (or the wait given up) comes through the
//! connection's [`ResultQueue`], which the writer drains. (It had a task of its own, whose
//! spawn, polls and slots cost more than the engine's work for the create; see
//! bench/RESULTS.md.)

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use ringflow_core::limits::{JOBS_PER_ACTIVATION_MAX, NAME_BYTES_MAX};
use ringflow_core::{Command, Key, Response as Answer};
use ringflow_wire::frame::{FrameReader, LENGTH_PREFIX_BYTES};
use ringflow_wire::{
    ActivateJobs, CreateInstance, ErrorCode, FrameEncoder, InstanceResult, Message, Request,
    Response, SubscribeJobs, WireError,
};

use super::convert;
use super::{FrameLease, ShardServer};
use crate::shard::{QueuedResult, ResultQueue, SubmitError};
use crate::wait::{Notify, Slot, Wait, WaitList};

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 64 * 1024;
/// Answers gathered into one frame are sent once they reach this size.
const FRAME_FLUSH_BYTES: usize = 1024 * 1024;
/// After a bad frame is refused, what the client still sends is read and dropped for at
/// most this long (see `Conn::linger`).
pub const BAD_FRAME_LINGER_MS: u64 = 2_000;
/// ... and at most this many bytes.
pub const BAD_FRAME_LINGER_BYTES: usize = 64 * 1024 * 1024;

// A frame holds less than FRAME_FLUSH_BYTES of other answers and at most one more answer:
// the largest answer of jobs must leave such a frame within a client's default limit.
const _: () = assert!(
    ringflow_core::limits::ACTIVATION_ANSWER_BYTES_MAX + FRAME_FLUSH_BYTES + 64 * 1024
        <= ringflow_wire::frame::FRAME_BYTES_MAX_DEFAULT
);

struct Subscription {
    job_type: String,
    worker: String,
    lease_ms: u64,
    /// Only these variables in each pushed job; empty: all of them.
    fetch_variables: Vec<String>,
    credits: Cell<u64>,
    granted: Notify,
    ended: Cell<bool>,
}

pub(crate) struct Conn {
    server: Rc<ShardServer>,
    stream: RefCell<TcpStream>,
    encoder: RefCell<FrameEncoder>,
    out: RefCell<Vec<u8>>,
    /// Raised when there is something for the writer: an answer, a result in `results`, the
    /// connection closed.
    out_ready: Rc<Notify>,
    /// The ends of the instances this connection's awaited creates wait for.
    results: Rc<ResultQueue>,
    /// When the oldest answer not yet handed to the writer was queued.
    oldest_queued: Cell<Option<Instant>>,
    inflight: Cell<usize>,
    /// Bytes of the write in progress (handed to the socket, not yet taken by it).
    sending_bytes: Cell<usize>,
    /// Woken when a write to the socket returns.
    drained: WaitList,
    /// No more requests are read: the peer closed, a frame was bad, or shutdown began.
    closed: Cell<bool>,
    closed_event: WaitList,
    /// A bad frame was refused: the writer half-closes after the refusal instead of
    /// closing both ways, while the reader drains what the client still sends.
    lingering: Cell<bool>,
    subscriptions: RefCell<HashMap<u64, Rc<Subscription>>>,
    /// Submitted commands whose answers come in order (see the module documentation).
    ordered: RefCell<VecDeque<Ordered>>,
    ordered_ready: Notify,
}

/// A command submitted for a request, waiting for its answer.
struct Ordered {
    request_id: u64,
    /// When the shard read its frame.
    arrived: Instant,
    slot: Slot<Result<ringflow_core::Outcome, SubmitError>>,
    lease: Rc<FrameLease>,
    /// For a create that awaits its result: how long, in ms, from when it is durable.
    await_timeout_ms: Option<u32>,
}

/// What a request becomes: one command, a create that awaits its result (with the wait's
/// timeout in ms), or work for a task of its own.
enum Route {
    Command(Command),
    AwaitedCreate(Command, u32),
    Task(Request),
}

/// Starts serving an accepted connection.
pub(crate) fn start(server: Rc<ShardServer>, stream: TcpStream) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "set_nodelay failed");
    }
    let out_ready = Rc::new(Notify::default());
    let conn = Rc::new(Conn {
        server: server.clone(),
        stream: RefCell::new(stream),
        encoder: RefCell::new(FrameEncoder::default()),
        out: RefCell::new(Vec::new()),
        results: Rc::new(ResultQueue::new(Rc::clone(&out_ready))),
        out_ready,
        oldest_queued: Cell::new(None),
        inflight: Cell::new(0),
        sending_bytes: Cell::new(0),
        drained: WaitList::default(),
        closed: Cell::new(false),
        closed_event: WaitList::default(),
        lingering: Cell::new(false),
        subscriptions: RefCell::new(HashMap::new()),
        ordered: RefCell::new(VecDeque::new()),
        ordered_ready: Notify::default(),
    });
    server.connections.set(server.connections.get() + 1);
    if server.connections.get() > server.config.limits.connections_per_shard_max {
        let limit = server.config.limits.connections_per_shard_max;
        conn.respond(
            0,
            &Response::Error(busy(
                &server,
                format!(
                    "shard {} has connections_per_shard_max ({limit}) connections open",
                    server.shard.id()
                ),
            )),
        );
        conn.close();
    } else {
        glommio::spawn_local(conn.clone().read_loop()).detach();
        glommio::spawn_local(conn.clone().answer_loop()).detach();
    }
    glommio::spawn_local(conn.write_loop()).detach();
}

fn busy(server: &ShardServer, message: String) -> WireError {
    server
        .shard
        .metrics()
        .server_busy
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    WireError {
        retry_after_ms: server.config.limits.busy_retry_after_ms,
        ..WireError::new(ErrorCode::Busy, message)
    }
}

impl Conn {
    fn close(&self) {
        if !self.closed.replace(true) {
            self.closed_event.wake_all();
            for subscription in self.subscriptions.borrow().values() {
                subscription.ended.set(true);
                subscription.granted.notify();
            }
            self.out_ready.notify();
            self.ordered_ready.notify();
        }
    }

    /// Answers the submitted commands in order, until the connection is closed and every
    /// one is answered.
    async fn answer_loop(self: Rc<Self>) {
        loop {
            let next = self.ordered.borrow_mut().pop_front();
            let Some(ordered) = next else {
                if self.closed.get() {
                    return;
                }
                self.ordered_ready.notified().await;
                continue;
            };
            let answer = ordered.slot.await;
            if let Ok(outcome) = &answer
                && let Answer::UserTaskTransitionHeld {
                    key, event, seq, ..
                } = outcome.response
            {
                self.answer_transition_later(ordered.request_id, ordered.arrived, key, event, seq);
                continue;
            }
            let response = match ordered.await_timeout_ms {
                None => Some(match answer {
                    Ok(outcome) => convert::outcome(outcome),
                    Err(error) => Response::Error(convert::submit_error(error)),
                }),
                Some(timeout_ms) => self.awaited_create_durable(answer, timeout_ms),
            };
            self.answered(ordered.request_id, ordered.arrived, ordered.lease, response);
        }
    }

    /// A user task transition that waits for its task listeners is answered when they are
    /// done, by a task of its own: the answers after it do not wait. (Out of line: the
    /// answer loop stays small.)
    #[cold]
    #[inline(never)]
    fn answer_transition_later(
        self: &Rc<Self>,
        request_id: u64,
        arrived: Instant,
        key: Key,
        event: ringflow_core::ListenerEvent,
        seq: u64,
    ) {
        // The request's latency is its command's, as for the others: the wait for the
        // listeners is the workers' time, not the server's.
        self.server.metrics.record_request(arrived);
        let conn = self.clone();
        glommio::spawn_local(async move {
            let response = conn.transition_answer(key, event, seq).await;
            conn.respond(request_id, &response);
            conn.finished_one();
        })
        .detach();
    }

    /// A request's command is durable (or refused): its latency is recorded, its frame's
    /// bytes go back to the budget, and its answer goes out, unless it comes later through
    /// `results` (an awaited create).
    fn answered(
        &self,
        request_id: u64,
        arrived: Instant,
        lease: Rc<FrameLease>,
        response: Option<Response>,
    ) {
        self.server.metrics.record_request(arrived);
        drop(lease);
        if let Some(response) = response {
            self.respond(request_id, &response);
            self.finished_one();
        }
    }

    /// An awaited create's own answer, once it is durable or refused: the answer to send
    /// now, or none when the instance's end will come through `results` (then its deadline
    /// starts now, or it is given up at once when the server is shutting down).
    fn awaited_create_durable(
        &self,
        answer: Result<ringflow_core::Outcome, SubmitError>,
        timeout_ms: u32,
    ) -> Option<Response> {
        let outcome = match answer {
            Ok(outcome) => outcome,
            Err(error) => return Some(Response::Error(convert::submit_error(error))),
        };
        let ringflow_core::Response::InstanceCreated {
            process_instance_key: instance,
            ..
        } = outcome.response
        else {
            return Some(convert::outcome(outcome));
        };
        let shard = &self.server.shard;
        if self.server.is_closing() {
            // A result that is in the queue already is still answered.
            shard.give_up_result(instance);
        } else {
            // The server's sweeper gives the wait up when its time is over or the server
            // shuts down (server/awaits.rs).
            self.server.awaits.add(
                instance,
                Duration::from_millis(u64::from(timeout_ms)),
                shard.awaited_results(),
                |key| shard.awaits_result(key),
            );
        }
        None
    }

    /// Answers the awaited creates whose instances ended or whose waits were given up.
    fn answer_results(&self, results: &mut Vec<QueuedResult>) {
        self.results.take(results);
        for result in results.drain(..) {
            let response = match (convert::created(&result.created), result.variables) {
                (Some(created), Some(variables)) => Response::InstanceResult(InstanceResult {
                    created,
                    variables: convert::variables_text(&variables),
                }),
                (created, None) => {
                    let instance = created.map_or(0, |created| created.process_instance_key);
                    Response::Error(if self.server.is_closing() {
                        WireError::new(
                            ErrorCode::Unavailable,
                            format!(
                                "the server is shutting down; instance {instance} was created and goes on running"
                            ),
                        )
                    } else {
                        WireError::new(
                            ErrorCode::Timeout,
                            format!(
                                "instance {instance} did not complete within {} ms; it was created and goes on running",
                                result.timeout_ms
                            ),
                        )
                    })
                }
                (None, Some(_)) => unreachable!("a queued result carries its InstanceCreated"),
            };
            self.respond(result.token, &response);
            self.finished_one();
        }
    }

    /// Answer bytes not yet taken by the socket: queued in the encoder, finished for the
    /// writer, and in the write in progress.
    fn unsent_bytes(&self) -> usize {
        self.encoder.borrow().pending_bytes() + self.out.borrow().len() + self.sending_bytes.get()
    }

    /// When the answers not yet taken by the socket are past
    /// `unsent_bytes_per_connection_max`: the wait for the writer's next write to return
    /// (registered before the check, so that no wake is missed). `None` under the limit.
    fn over_unsent_limit(&self) -> Option<Wait<'_>> {
        let limit = self.server.config.limits.unsent_bytes_per_connection_max;
        if self.unsent_bytes() <= limit {
            return None;
        }
        let drained = self.drained.wait();
        (self.unsent_bytes() > limit).then_some(drained)
    }

    /// A request is in flight, on this connection and on the shard, until [`Self::finished_one`].
    fn started_one(&self) {
        self.inflight.set(self.inflight.get() + 1);
        let server = &self.server;
        server.inflight.set(server.inflight.get() + 1);
    }

    /// A request in flight was answered.
    fn finished_one(&self) {
        self.inflight.set(self.inflight.get() - 1);
        let server = &self.server;
        server.inflight.set(server.inflight.get() - 1);
        self.out_ready.notify();
    }

    /// Resolves once the connection stops taking requests.
    async fn until_closed(&self) {
        loop {
            let event = self.closed_event.wait();
            if self.closed.get() {
                return;
            }
            event.await;
        }
    }

    /// Queues an answer; the writer sends it with others that are ready.
    fn respond(&self, request_id: u64, response: &Response) {
        if self.oldest_queued.get().is_none() {
            self.oldest_queued.set(Some(Instant::now()));
        }
        let mut encoder = self.encoder.borrow_mut();
        encoder.push_response(request_id, response);
        if encoder.pending_bytes() >= FRAME_FLUSH_BYTES {
            encoder.finish_into(&mut self.out.borrow_mut());
        }
        drop(encoder);
        self.out_ready.notify();
    }

    async fn read_loop(self: Rc<Self>) {
        let limits = &self.server.config.limits;
        let mut reader = FrameReader::new(limits.frame_bytes_max);
        let mut lease: Option<FrameLease> = None;
        // When the body of the frame whose bytes `lease` holds must have arrived.
        let mut frame_deadline: Option<Instant> = None;
        let frame_read_timeout = Duration::from_millis(limits.frame_read_timeout_ms);
        loop {
            if self.server.is_closing() {
                break;
            }
            // A client that does not read its answers gets no more frames read until it
            // does: its answers would otherwise pile up here without bound. Only between
            // frames: a frame begun is read to its end (its client may be writing it before
            // it reads, and the frame's read timeout must not run while this waits).
            if lease.is_none()
                && let Some(drained) = self.over_unsent_limit()
            {
                futures_lite::future::or(drained, self.server.closing()).await;
                continue;
            }
            // Before the body of a frame is read, take its bytes from the shard's budget.
            if lease.is_none()
                && let Some(length) = reader.announced()
                && length <= limits.frame_bytes_max
            {
                lease = Some(self.server.lease(length + LENGTH_PREFIX_BYTES).await);
            }
            match reader.next_frame() {
                Ok(Some(envelopes)) => {
                    frame_deadline = None;
                    let lease = Rc::new(lease.take().expect("a lease for every whole frame"));
                    let arrived = Instant::now();
                    for envelope in envelopes {
                        match envelope.message {
                            Message::Request(request) => {
                                self.dispatch(envelope.request_id, request, &lease, arrived);
                            }
                            Message::Response(_) => self.respond(
                                envelope.request_id,
                                &Response::Error(WireError::new(
                                    ErrorCode::Malformed,
                                    "a client sends requests, not responses",
                                )),
                            ),
                        }
                    }
                    continue;
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::debug!(shard = self.server.shard.id(), %error, "bad frame");
                    self.respond(
                        0,
                        &Response::Error(WireError::new(error.code(), error.to_string())),
                    );
                    self.lingering.set(true);
                    self.close();
                    self.linger().await;
                    break;
                }
            }
            // A frame begun: its body has frame_read_timeout_ms from the first read that
            // waits for it (a frame that arrives whole in one read never starts the clock).
            let deadline = match (&lease, frame_deadline) {
                (Some(_), None) => {
                    let deadline = Instant::now() + frame_read_timeout;
                    frame_deadline = Some(deadline);
                    Some(deadline)
                }
                (Some(_), deadline) => deadline,
                (None, _) => None,
            };
            let buffer = reader.spare(READ_CHUNK);
            let read = futures_lite::future::or(
                async { Some(read_some(&self.stream, buffer).await) },
                async {
                    match deadline {
                        Some(deadline) => {
                            futures_lite::future::or(self.server.closing(), async {
                                glommio::timer::sleep(
                                    deadline.saturating_duration_since(Instant::now()),
                                )
                                .await;
                            })
                            .await;
                        }
                        None => self.server.closing().await,
                    }
                    None
                },
            )
            .await;
            let count = match &read {
                Some(Ok(count)) => *count,
                _ => 0,
            };
            reader.filled(READ_CHUNK, count);
            match read {
                None if !self.server.is_closing() && lease.is_some() => {
                    // The frame's time ran out (the other way out of the read is closing).
                    self.respond(
                        0,
                        &Response::Error(WireError::new(
                            ErrorCode::Timeout,
                            format!(
                                "the frame of {} bytes did not arrive within \
                                 frame_read_timeout_ms ({}); the connection is closed",
                                reader.announced().unwrap_or(0),
                                limits.frame_read_timeout_ms
                            ),
                        )),
                    );
                    break;
                }
                Some(Ok(0)) | None => break,
                Some(Ok(_)) => {}
                Some(Err(error)) => {
                    tracing::debug!(%error, "read failed");
                    break;
                }
            }
        }
        self.close();
    }

    /// After a bad frame was refused: reads and drops what the client still sends until it
    /// closes its side, `BAD_FRAME_LINGER_MS` pass or `BAD_FRAME_LINGER_BYTES` arrive. A
    /// socket closed with bytes unread is reset, and a client still writing the refused
    /// frame (a deployment over `frame_bytes_max`, say) then fails its write with a broken
    /// pipe and may never read the refusal; drained, its write ends, it reads the refusal,
    /// then the end of the stream.
    #[cold]
    async fn linger(&self) {
        let deadline = Instant::now() + Duration::from_millis(BAD_FRAME_LINGER_MS);
        let mut scratch = vec![0; READ_CHUNK];
        let mut drained = 0;
        while drained < BAD_FRAME_LINGER_BYTES && !self.server.is_closing() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let read = futures_lite::future::or(
                async { Some(read_some(&self.stream, &mut scratch).await) },
                async {
                    futures_lite::future::or(self.server.closing(), async {
                        glommio::timer::sleep(left).await;
                    })
                    .await;
                    None
                },
            )
            .await;
            match read {
                Some(Ok(count)) if count > 0 => drained += count,
                _ => break,
            }
        }
    }

    async fn write_loop(self: Rc<Self>) {
        let mut sending = Vec::new();
        let mut results = Vec::new();
        loop {
            self.answer_results(&mut results);
            {
                let mut encoder = self.encoder.borrow_mut();
                let mut out = self.out.borrow_mut();
                if !encoder.is_empty() {
                    encoder.finish_into(&mut out);
                }
                std::mem::swap(&mut *out, &mut sending);
            }
            let oldest = self.oldest_queued.take();
            if !sending.is_empty() {
                self.sending_bytes.set(sending.len());
                let written = write_all(&self.stream, &sending).await;
                self.sending_bytes.set(0);
                self.drained.wake_all();
                if let Err(error) = written {
                    tracing::debug!(%error, "write failed");
                    self.close();
                    break;
                }
                if let Some(oldest) = oldest {
                    self.server.metrics.record_answer_write(oldest);
                }
                sending.clear();
                continue;
            }
            if self.closed.get() && self.inflight.get() == 0 {
                break;
            }
            self.out_ready.notified().await;
        }
        // Ends the reader too, if it still waits for bytes (unless it drains after a bad
        // frame: then the client is told only that no more answers come). The descriptor
        // closes when the last task holding the connection ends.
        let how = if self.lingering.get() {
            libc::SHUT_WR
        } else {
            libc::SHUT_RDWR
        };
        let fd = std::os::fd::AsRawFd::as_raw_fd(&*self.stream.borrow());
        // SAFETY: shutdown(2) on a socket descriptor this connection owns and has not closed.
        unsafe {
            libc::shutdown(fd, how);
        }
        let server = &self.server;
        server.connections.set(server.connections.get() - 1);
    }

    /// Starts one request: checks the in-flight limits, then submits its command and queues
    /// its answer, or runs it in a task of its own. Inlined into its one caller, the
    /// connection's read loop (callgrind: out of line it cost one_task about 100
    /// instructions per instance, its queue pushes and notifications no longer inlined).
    #[inline(always)]
    fn dispatch(
        self: &Rc<Self>,
        request_id: u64,
        request: Request,
        lease: &Rc<FrameLease>,
        arrived: Instant,
    ) {
        let server = &self.server;
        let limits = &server.config.limits;
        match request {
            Request::Topology => {
                let topology = server.config.topology.clone();
                self.respond(request_id, &Response::Topology(topology));
                return;
            }
            Request::SubscribeJobs(subscribe) => {
                self.subscribe(request_id, subscribe);
                return;
            }
            Request::JobCredits {
                subscription_request_id,
                credits,
            } => {
                let subscription = self
                    .subscriptions
                    .borrow()
                    .get(&subscription_request_id)
                    .cloned();
                let response = match subscription {
                    Some(subscription) => {
                        let total = subscription
                            .credits
                            .get()
                            .saturating_add(u64::from(credits));
                        subscription.credits.set(total);
                        subscription.granted.notify();
                        Response::Done {
                            key: subscription_request_id,
                            incident_key: 0,
                        }
                    }
                    None => Response::Error(WireError::new(
                        ErrorCode::InvalidArgument,
                        format!(
                            "no subscription opened by request {subscription_request_id} on this connection"
                        ),
                    )),
                };
                self.respond(request_id, &response);
                return;
            }
            _ => {}
        }
        if self.inflight.get() >= limits.inflight_per_connection_max {
            let message = format!(
                "{} requests in flight on this connection (inflight_per_connection_max)",
                self.inflight.get()
            );
            self.respond(request_id, &Response::Error(busy(server, message)));
            return;
        }
        if server.inflight.get() >= limits.inflight_per_shard_max {
            let message = format!(
                "{} requests in flight on shard {} (inflight_per_shard_max)",
                server.inflight.get(),
                server.shard.id()
            );
            self.respond(request_id, &Response::Error(busy(server, message)));
            return;
        }
        let (submitted, await_timeout_ms) = match self.route(request) {
            Err(error) => {
                self.respond(request_id, &Response::Error(error));
                return;
            }
            Ok(Route::Command(command)) => (server.shard.submit_now(command), None),
            Ok(Route::AwaitedCreate(command, timeout_ms)) => (
                server
                    .shard
                    .submit_now_awaited(command, &self.results, request_id, timeout_ms),
                Some(timeout_ms),
            ),
            Ok(Route::Task(request)) => {
                self.spawn_request(request_id, Ok(request), lease, arrived);
                return;
            }
        };
        match submitted {
            Ok(slot) => {
                self.started_one();
                self.ordered.borrow_mut().push_back(Ordered {
                    request_id,
                    arrived,
                    slot,
                    lease: lease.clone(),
                    await_timeout_ms,
                });
                self.ordered_ready.notify();
            }
            // No room in the open batch: a task waits for it.
            Err(command) => match await_timeout_ms {
                None => self.spawn_request(request_id, Err(command), lease, arrived),
                Some(timeout_ms) => {
                    self.spawn_awaited_create(request_id, command, timeout_ms, lease, arrived)
                }
            },
        }
    }

    /// An awaited create for which the open batch had no room: a task waits for room, then
    /// goes on as the answer task would.
    fn spawn_awaited_create(
        self: &Rc<Self>,
        request_id: u64,
        command: Command,
        timeout_ms: u32,
        lease: &Rc<FrameLease>,
        arrived: Instant,
    ) {
        self.started_one();
        let conn = self.clone();
        let lease = lease.clone();
        glommio::spawn_local(async move {
            let shard = &conn.server.shard;
            let answer = shard
                .submit_awaited(command, &conn.results, request_id, timeout_ms)
                .await;
            let response = conn.awaited_create_durable(answer, timeout_ms);
            conn.answered(request_id, arrived, lease, response);
        })
        .detach();
    }

    /// Runs a request in a task of its own: one that waits for more than its commit
    /// (`Ok`), or a command for which the open batch had no room (`Err`).
    fn spawn_request(
        self: &Rc<Self>,
        request_id: u64,
        request: Result<Request, Command>,
        lease: &Rc<FrameLease>,
        arrived: Instant,
    ) {
        self.started_one();
        let conn = self.clone();
        let lease = lease.clone();
        glommio::spawn_local(async move {
            // A long poll waits on purpose; a user task transition held for its listeners
            // is recorded at its commit (the wait for them is the workers' time).
            let mut counted = !matches!(request, Ok(Request::ActivateJobs(_)));
            let answer = match request {
                Ok(request) => conn.handle(request).await,
                Err(command) => {
                    let outcome = conn.server.shard.submit(command).await;
                    match outcome {
                        Ok(outcome) => match outcome.response {
                            Answer::UserTaskTransitionHeld {
                                key, event, seq, ..
                            } => {
                                conn.server.metrics.record_request(arrived);
                                counted = false;
                                drop(lease);
                                Ok(conn.transition_answer(key, event, seq).await)
                            }
                            _ => Ok(convert::outcome(outcome)),
                        },
                        Err(error) => Err(convert::submit_error(error)),
                    }
                }
            };
            let response = match answer {
                Ok(response) => response,
                Err(error) => Response::Error(error),
            };
            conn.respond(request_id, &response);
            if counted {
                conn.server.metrics.record_request(arrived);
            }
            conn.finished_one();
        })
        .detach();
    }

    fn wrong_shard(&self, owner: u16, what: &str) -> WireError {
        let server = &self.server;
        WireError {
            topology: Some(server.config.topology.clone()),
            ..WireError::new(
                ErrorCode::WrongShard,
                format!(
                    "{what} belongs to shard {owner}, not shard {}",
                    server.shard.id()
                ),
            )
        }
    }

    fn check_key(&self, key: u64, what: &str) -> Result<Key, WireError> {
        let key = Key(key);
        if key.shard() != self.server.shard.id() {
            return Err(self.wrong_shard(key.shard(), &format!("{what} {}", key.0)));
        }
        Ok(key)
    }

    fn check_text_key(&self, key: &str, what: &str) -> Result<(), WireError> {
        let owner = self.server.config.topology.shard_of_text(key);
        if owner != self.server.shard.id() {
            return Err(self.wrong_shard(owner, &format!("{what} {key:?}")));
        }
        Ok(())
    }

    async fn submit(&self, command: Command) -> Result<Answer, WireError> {
        let outcome = self.server.shard.submit(command).await;
        outcome
            .map(|outcome| outcome.response)
            .map_err(convert::submit_error)
    }

    /// The answer to a user task's completion, assignment or update that waits for its
    /// task listeners (the shard's wait `seq`): once the command that ends it is durable,
    /// or a TIMEOUT after `task_listener_wait_ms` (the transition goes on), or
    /// UNAVAILABLE when the server shuts down first.
    async fn transition_answer(
        &self,
        key: Key,
        event: ringflow_core::ListenerEvent,
        seq: u64,
    ) -> Response {
        let shard = &self.server.shard;
        let what = convert::transition_name(event);
        let Some(end) = shard.claim_transition(seq) else {
            return Response::Error(WireError::new(
                ErrorCode::Unavailable,
                format!("the wait for the {what} of the user task of job {key} was lost"),
            ));
        };
        let timeout_ms = self.server.config.limits.task_listener_wait_ms;
        if self.server.is_closing() {
            shard.give_up_transition(seq);
        } else {
            // The transitions' sweeper gives the wait up when its time is over or the
            // server shuts down (server/awaits.rs): no timer per wait.
            self.server.transition_awaits.add(
                Key(seq),
                Duration::from_millis(u64::from(timeout_ms)),
                shard.transition_waits(),
                |key| shard.awaits_transition(key.0),
            );
        }
        if let Some(end) = end.await {
            return convert::transition_end(key, event, end);
        }
        let (code, why) = if self.server.is_closing() {
            (
                ErrorCode::Unavailable,
                "waits for its task listeners and the server is shutting down".to_string(),
            )
        } else {
            (
                ErrorCode::Timeout,
                format!("still waits for its task listeners after {timeout_ms} ms"),
            )
        };
        Response::Error(WireError::new(
            code,
            format!(
                "the {what} of the user task of job {key} {why}; it goes on when they are done"
            ),
        ))
    }

    /// The work of a request that waits for more than its command's commit.
    async fn handle(&self, request: Request) -> Result<Response, WireError> {
        match request {
            Request::ActivateJobs(activate) => self.activate(activate).await,
            Request::ShardMail {
                from_shard,
                to_shard,
                mails,
            } => self.take_mail(from_shard, to_shard, mails).await,
            _ => unreachable!("dispatch hands only activations and mail to a task"),
        }
    }

    /// The command a request is, or the request back when it needs a task of its own.
    fn route(&self, request: Request) -> Result<Route, WireError> {
        let command = match request {
            Request::Deploy { resources } => Command::Deploy {
                resources: convert::resources(resources),
            },
            Request::CreateInstance(create) => {
                let awaited = create.await_result;
                let (command, timeout_ms) = self.create_command(create)?;
                if awaited {
                    return Ok(Route::AwaitedCreate(command, timeout_ms));
                }
                command
            }
            Request::ActivateJobs(_) | Request::ShardMail { .. } => {
                return Ok(Route::Task(request));
            }
            Request::CancelInstance {
                process_instance_key,
            } => Command::CancelInstance {
                key: self.check_key(process_instance_key, "process instance")?,
            },
            Request::PublishMessage(publish) => {
                self.check_text_key(&publish.correlation_key, "correlation key")?;
                Command::PublishMessage {
                    name: publish.name,
                    correlation_key: publish.correlation_key,
                    variables: convert::variables(&publish.variables)?,
                    ttl_millis: publish.ttl_ms,
                    message_id: (!publish.message_id.is_empty()).then_some(publish.message_id),
                }
            }
            Request::BroadcastSignal { name, variables } => Command::BroadcastSignal {
                name,
                variables: convert::variables(&variables)?,
            },
            Request::EvaluateConditional {
                bpmn_process_id,
                variables,
            } => Command::EvaluateConditional {
                bpmn_process_id: (!bpmn_process_id.is_empty()).then_some(bpmn_process_id),
                variables: convert::variables(&variables)?,
            },
            Request::CompleteJob { job_key, variables } => Command::CompleteJob {
                key: self.check_key(job_key, "job")?,
                variables: convert::variables(&variables)?,
            },
            Request::FailJob {
                job_key,
                retries,
                retry_backoff_ms,
                message,
            } => Command::FailJob {
                key: self.check_key(job_key, "job")?,
                retries,
                retry_backoff_millis: retry_backoff_ms,
                message,
            },
            Request::ThrowError {
                job_key,
                error_code,
                message,
            } => Command::ThrowError {
                key: self.check_key(job_key, "job")?,
                error_code,
                message,
            },
            Request::UpdateJobRetries { job_key, retries } => Command::UpdateJobRetries {
                key: self.check_key(job_key, "job")?,
                retries,
            },
            Request::SetVariables {
                scope_key,
                variables,
                local,
            } => Command::SetVariables {
                scope: self.check_key(scope_key, "scope")?,
                variables: convert::variables(&variables)?,
                local,
            },
            Request::ResolveIncident { incident_key } => Command::ResolveIncident {
                key: self.check_key(incident_key, "incident")?,
            },
            Request::CompleteAdHocJob {
                job_key,
                variables,
                activate_elements,
                completion_condition_fulfilled,
                cancel_remaining_instances,
            } => Command::CompleteAdHocJob {
                key: self.check_key(job_key, "job")?,
                variables: convert::variables(&variables)?,
                result: ringflow_core::adhoc::AdHocJobResult {
                    activate_elements: convert::ad_hoc_activations(activate_elements)?,
                    completion_condition_fulfilled,
                    cancel_remaining_instances,
                },
            },
            Request::UpdateUserTask { job_key, changes } => Command::UpdateUserTask {
                key: self.check_key(job_key, "job")?,
                changes: Box::new(ringflow_core::usertasks::UserTaskCorrections {
                    assignee: None,
                    candidate_groups: changes.candidate_groups,
                    candidate_users: changes.candidate_users,
                    due_date: changes.due_date,
                    follow_up_date: changes.follow_up_date,
                    priority: changes.priority,
                }),
            },
            Request::AssignUserTask { job_key, assignee } => Command::AssignUserTask {
                key: self.check_key(job_key, "job")?,
                assignee: (!assignee.is_empty()).then_some(assignee),
            },
            Request::CompleteTaskListenerJob { job_key, decision } => {
                Command::CompleteTaskListenerJob {
                    key: self.check_key(job_key, "job")?,
                    result: convert::task_listener_result(*decision),
                }
            }
            Request::ActivateAdHocActivities {
                ad_hoc_key,
                elements,
                cancel_remaining_instances,
            } => Command::ActivateAdHocActivities {
                key: self.check_key(ad_hoc_key, "ad-hoc subprocess")?,
                elements: convert::ad_hoc_activations(elements)?,
                cancel_remaining_instances,
            },
            Request::Topology | Request::SubscribeJobs(_) | Request::JobCredits { .. } => {
                unreachable!("answered in dispatch")
            }
        };
        Ok(Route::Command(command))
    }

    /// Mail from a shard of another node (see `crate::mail`): answered with the highest
    /// number this shard has taken from the sender, once that is durable.
    async fn take_mail(
        &self,
        from: u16,
        to: u16,
        mails: Vec<(u64, Vec<u8>)>,
    ) -> Result<Response, WireError> {
        let shard = &self.server.shard;
        if to != shard.id() {
            return Err(self.wrong_shard(to, &format!("mail for shard {to}")));
        }
        let shards = self.server.config.topology.shard_count();
        if usize::from(from) >= shards || from == to {
            return Err(WireError::new(
                ringflow_wire::ErrorCode::InvalidArgument,
                format!("mail from shard {from}, which is not another shard of this cluster"),
            ));
        }
        let taken = shard
            .take_mail(from, mails)
            .await
            .map_err(convert::submit_error)?;
        Ok(Response::Done {
            key: taken,
            incident_key: 0,
        })
    }

    /// The command of a create, checked, and how long its result is awaited.
    fn create_command(&self, create: CreateInstance) -> Result<(Command, u32), WireError> {
        let limits = &self.server.config.limits;
        if !create.business_key.is_empty() {
            self.check_text_key(&create.business_key, "business key")?;
        }
        if create.process_definition_key != 0 {
            self.check_key(create.process_definition_key, "process definition")?;
        }
        let timeout_ms = match create.await_timeout_ms {
            0 => limits.await_timeout_default_ms,
            asked if asked > limits.await_timeout_max_ms => {
                return Err(WireError::new(
                    ErrorCode::LimitExceeded,
                    format!(
                        "await_timeout_ms {asked} is over await_timeout_max_ms ({})",
                        limits.await_timeout_max_ms
                    ),
                ));
            }
            asked => asked,
        };
        let command = Command::CreateInstance {
            process: convert::process_ref(create.bpmn_process_id, create.process_definition_key)?,
            variables: convert::variables(&create.variables)?,
            business_key: (!create.business_key.is_empty()).then_some(create.business_key),
            await_result: create.await_result,
        };
        Ok((command, timeout_ms))
    }

    async fn activate(&self, activate: ActivateJobs) -> Result<Response, WireError> {
        let limits = &self.server.config.limits;
        check_jobs_request(
            &activate.job_type,
            &activate.worker,
            &activate.fetch_variables,
        )?;
        if activate.max_jobs == 0 || activate.max_jobs > JOBS_PER_ACTIVATION_MAX {
            return Err(WireError::new(
                ErrorCode::LimitExceeded,
                format!(
                    "max_jobs is {}; ask for 1 to JOBS_PER_ACTIVATION_MAX ({JOBS_PER_ACTIVATION_MAX})",
                    activate.max_jobs
                ),
            ));
        }
        if activate.long_poll_ms > limits.long_poll_max_ms {
            return Err(WireError::new(
                ErrorCode::LimitExceeded,
                format!(
                    "long_poll_ms {} is over long_poll_max_ms ({})",
                    activate.long_poll_ms, limits.long_poll_max_ms
                ),
            ));
        }
        let lease_ms = match activate.lease_ms {
            0 => limits.lease_default_ms,
            lease => lease,
        };
        let shard = &self.server.shard;
        let deadline = Instant::now() + Duration::from_millis(u64::from(activate.long_poll_ms));
        loop {
            let available = shard.jobs_available();
            if shard.ready_jobs(&activate.job_type) > 0 {
                let answer = self
                    .submit(Command::ActivateJobs {
                        job_type: activate.job_type.clone(),
                        worker: activate.worker.clone(),
                        max_jobs: activate.max_jobs,
                        lease_millis: lease_ms,
                        fetch_variables: activate.fetch_variables.clone(),
                    })
                    .await?;
                if let Answer::JobsActivated(jobs) = answer
                    && !jobs.is_empty()
                {
                    let jobs = jobs.into_iter().map(convert::job).collect();
                    return Ok(Response::Jobs(jobs));
                }
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.server.is_closing() {
                return Ok(Response::Jobs(Vec::new()));
            }
            let sleep = glommio::timer::sleep(left);
            futures_lite::future::or(
                available,
                futures_lite::future::or(sleep, self.server.closing()),
            )
            .await;
        }
    }

    fn subscribe(self: &Rc<Self>, request_id: u64, subscribe: SubscribeJobs) {
        let limits = &self.server.config.limits;
        let refused = if let Err(error) = check_jobs_request(
            &subscribe.job_type,
            &subscribe.worker,
            &subscribe.fetch_variables,
        ) {
            Some(error)
        } else if self.subscriptions.borrow().contains_key(&request_id) {
            Some(WireError::new(
                ErrorCode::InvalidArgument,
                format!("request id {request_id} already names a subscription on this connection"),
            ))
        } else if self.subscriptions.borrow().len() >= limits.subscriptions_per_connection_max {
            Some(WireError::new(
                ErrorCode::LimitExceeded,
                format!(
                    "this connection has subscriptions_per_connection_max ({}) subscriptions",
                    limits.subscriptions_per_connection_max
                ),
            ))
        } else {
            None
        };
        if let Some(error) = refused {
            self.respond(request_id, &Response::Error(error));
            return;
        }
        let subscription = Rc::new(Subscription {
            job_type: subscribe.job_type,
            worker: subscribe.worker,
            fetch_variables: subscribe.fetch_variables,
            lease_ms: match subscribe.lease_ms {
                0 => limits.lease_default_ms,
                lease => lease,
            },
            credits: Cell::new(u64::from(subscribe.credits)),
            granted: Notify::default(),
            ended: Cell::new(false),
        });
        self.subscriptions
            .borrow_mut()
            .insert(request_id, subscription.clone());
        glommio::spawn_local(self.clone().push_jobs(request_id, subscription)).detach();
    }

    /// A subscription's task: while it has credits and jobs of its type are ready, activates
    /// them and pushes them with the subscription's request id.
    async fn push_jobs(self: Rc<Self>, request_id: u64, subscription: Rc<Subscription>) {
        let shard = self.server.shard.clone();
        loop {
            if subscription.ended.get() || self.closed.get() || self.server.is_closing() {
                break;
            }
            let available = shard.jobs_available();
            let credits = subscription.credits.get();
            if credits == 0 || shard.ready_jobs(&subscription.job_type) == 0 {
                let woken = async {
                    if credits > 0 {
                        futures_lite::future::or(available, subscription.granted.notified()).await;
                    } else {
                        subscription.granted.notified().await;
                    }
                };
                futures_lite::future::or(woken, self.until_closed()).await;
                continue;
            }
            // A client that does not read its pushes gets no more jobs until it does: they
            // stay ready for other workers instead of piling up here.
            if let Some(drained) = self.over_unsent_limit() {
                futures_lite::future::or(drained, self.until_closed()).await;
                continue;
            }
            let max_jobs = credits.min(u64::from(JOBS_PER_ACTIVATION_MAX)) as u32;
            let started = Instant::now();
            let answer = self
                .submit(Command::ActivateJobs {
                    job_type: subscription.job_type.clone(),
                    worker: subscription.worker.clone(),
                    max_jobs,
                    lease_millis: subscription.lease_ms,
                    fetch_variables: subscription.fetch_variables.clone(),
                })
                .await;
            match answer {
                Ok(Answer::JobsActivated(jobs)) => {
                    if jobs.is_empty() {
                        continue;
                    }
                    let pushed = jobs.len() as u64;
                    subscription
                        .credits
                        .set(subscription.credits.get().saturating_sub(pushed));
                    let jobs = jobs.into_iter().map(convert::job).collect();
                    self.respond(request_id, &Response::Jobs(jobs));
                    self.server.metrics.record_push(started);
                }
                Ok(other) => {
                    tracing::error!(?other, "ActivateJobs answered with something else");
                    break;
                }
                Err(error) => {
                    self.respond(request_id, &Response::Error(error));
                    break;
                }
            }
        }
        self.subscriptions.borrow_mut().remove(&request_id);
        if self.server.is_closing() && !self.closed.get() {
            self.respond(
                request_id,
                &Response::Error(WireError::new(
                    ErrorCode::Unavailable,
                    "the server is shutting down; the subscription ends",
                )),
            );
        }
    }
}

fn check_jobs_request(
    job_type: &str,
    worker: &str,
    fetch_variables: &[String],
) -> Result<(), WireError> {
    ringflow_core::check_fetch_variables(fetch_variables).map_err(convert::rejection)?;
    if job_type.is_empty() || job_type.len() > NAME_BYTES_MAX || worker.len() > NAME_BYTES_MAX {
        return Err(WireError::new(
            ErrorCode::InvalidArgument,
            format!(
                "the job type must be 1 to NAME_BYTES_MAX ({NAME_BYTES_MAX}) bytes, the worker name at most that"
            ),
        ));
    }
    Ok(())
}

async fn read_some(stream: &RefCell<TcpStream>, buffer: &mut [u8]) -> std::io::Result<usize> {
    poll_fn(|context| Pin::new(&mut *stream.borrow_mut()).poll_read(context, buffer)).await
}

async fn write_all(stream: &RefCell<TcpStream>, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        let written =
            poll_fn(|context| Pin::new(&mut *stream.borrow_mut()).poll_write(context, bytes))
                .await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        bytes = &bytes[written..];
    }
    Ok(())
}
