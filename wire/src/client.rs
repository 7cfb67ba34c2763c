//! A blocking client over `std::net`, built on the sans-IO codec.
//!
//! - [`Connection`]: one TCP connection to one shard, with pipelining: [`Connection::send`]
//!   and [`Connection::send_batch`] return request ids at once, [`Connection::recv`] hands
//!   back answers as they come, and [`Connection::call`] does both for one request.
//! - [`Client`]: learns the topology from any node, keeps one connection per shard, routes
//!   every request to the shard that owns its key (see [`Client::route`]), refreshes the
//!   topology and retries once on `WRONG_SHARD`, and retries with backoff on `BUSY`.
//! - [`JobWorker`]: subscribes to a job type on every shard, runs a handler per pushed job,
//!   completes or fails it, and grants credits back as jobs finish.

use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::frame::{FRAME_BYTES_MAX_DEFAULT, FrameReader};
use crate::message::{
    ActivateJobs, CreateInstance, Deployed, ErrorCode, FrameEncoder, InstanceCreated,
    InstanceResult, Job, Message, PublishMessage, Request, Resource, Response, SubscribeJobs,
    TaskListenerDecision, WireError,
};
use crate::routing::shard_of_entity_key;
use crate::topology::Topology;

/// The address `ringflow` commands use when none is given.
pub const DEFAULT_ADDR: &str = "127.0.0.1:26500";

/// How long a client whose write the server broke off reads for the server's reason (see
/// `Connection::flush`): the refusal is sent before the close, so it is there at once.
pub const REFUSAL_READ_TIMEOUT: Duration = Duration::from_secs(1);

/// How a client behaves.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Longest frame accepted from a server.
    pub frame_bytes_max: usize,
    /// Longest wait to connect.
    pub connect_timeout: Duration,
    /// Longest wait for an answer (awaited results and long polls add their own timeout).
    pub request_timeout: Duration,
    /// How many times a `BUSY` answer is retried before it is returned.
    pub busy_retries: u32,
    /// The longest pause between `BUSY` retries (they start at the server's retry-after and
    /// double).
    pub busy_backoff_max: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            frame_bytes_max: FRAME_BYTES_MAX_DEFAULT,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            busy_retries: 10,
            busy_backoff_max: Duration::from_secs(1),
        }
    }
}

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The connection failed.
    #[error("{addr}: {error}")]
    Io {
        /// The server address.
        addr: String,
        /// What failed.
        error: std::io::Error,
    },
    /// The server refused the request.
    #[error("{0}")]
    Server(WireError),
    /// The server sent something this client cannot use.
    #[error("{addr}: protocol error: {message}")]
    Protocol {
        /// The server address.
        addr: String,
        /// What was wrong.
        message: String,
    },
    /// No answer in time.
    #[error("{addr}: no answer to request {request_id} within {timeout:?}")]
    Timeout {
        /// The server address.
        addr: String,
        /// The request.
        request_id: u64,
        /// How long it waited.
        timeout: Duration,
    },
}

impl ClientError {
    /// The server's error code, when the server refused the request.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server(error) => Some(error.code),
            _ => None,
        }
    }
}

/// One connection to one shard.
pub struct Connection {
    addr: String,
    stream: TcpStream,
    reader: FrameReader,
    encoder: FrameEncoder,
    out: Vec<u8>,
    next_id: u64,
    received: VecDeque<(u64, Response)>,
    timeout: Duration,
}

impl Connection {
    /// Connects to `addr` (`host:port`).
    pub fn open(addr: &str, config: &ClientConfig) -> Result<Connection, ClientError> {
        let io = |error| ClientError::Io {
            addr: addr.to_string(),
            error,
        };
        let mut last = std::io::Error::new(ErrorKind::NotFound, "the address resolves to nothing");
        let mut stream = None;
        for socket in addr.to_socket_addrs().map_err(io)? {
            match TcpStream::connect_timeout(&socket, config.connect_timeout) {
                Ok(connected) => {
                    stream = Some(connected);
                    break;
                }
                Err(error) => last = error,
            }
        }
        let stream = stream.ok_or_else(|| io(last))?;
        stream.set_nodelay(true).map_err(io)?;
        Ok(Connection {
            addr: addr.to_string(),
            stream,
            reader: FrameReader::new(config.frame_bytes_max),
            encoder: FrameEncoder::default(),
            out: Vec::new(),
            next_id: 1,
            received: VecDeque::new(),
            timeout: config.request_timeout,
        })
    }

    /// The server's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends one request in its own frame; returns its request id.
    pub fn send(&mut self, request: &Request) -> Result<u64, ClientError> {
        let id = self.take_id();
        self.encoder.push_request(id, request);
        self.flush()?;
        Ok(id)
    }

    /// Sends many requests in one frame (for ingestion); returns their ids in order.
    pub fn send_batch(&mut self, requests: &[Request]) -> Result<Vec<u64>, ClientError> {
        let ids: Vec<u64> = requests
            .iter()
            .map(|request| {
                let id = self.take_id();
                self.encoder.push_request(id, request);
                id
            })
            .collect();
        if !ids.is_empty() {
            self.flush()?;
        }
        Ok(ids)
    }

    /// Writes raw bytes (for tests of the server's handling of bad frames).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        let addr = self.addr.clone();
        self.stream
            .write_all(bytes)
            .map_err(|error| ClientError::Io { addr, error })
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn flush(&mut self) -> Result<(), ClientError> {
        self.out.clear();
        self.encoder.finish_into(&mut self.out);
        let Err(error) = self.stream.write_all(&self.out) else {
            return Ok(());
        };
        if matches!(
            error.kind(),
            ErrorKind::BrokenPipe | ErrorKind::ConnectionReset
        ) && let Some(refusal) = self.refusal_of_a_broken_write()
        {
            return Err(ClientError::Server(refusal));
        }
        Err(ClientError::Io {
            addr: self.addr.clone(),
            error,
        })
    }

    /// The error the server answered before it closed the connection in the middle of a
    /// write, if it sent one: a frame over its `frame_bytes_max` is refused with
    /// FRAME_TOO_LARGE as soon as its length is read, and the connection closed, so a client
    /// still writing the body sees only EPIPE or ECONNRESET. The answer is in the socket's
    /// receive queue by then; it is read for up to [`REFUSAL_READ_TIMEOUT`].
    fn refusal_of_a_broken_write(&mut self) -> Option<WireError> {
        match self.recv_timeout(REFUSAL_READ_TIMEOUT) {
            Ok(Some((_, Response::Error(error)))) => Some(error),
            _ => None,
        }
    }

    /// The next answer, whatever its request, waiting up to the request timeout.
    pub fn recv(&mut self) -> Result<(u64, Response), ClientError> {
        let timeout = self.timeout;
        match self.recv_timeout(timeout)? {
            Some(answer) => Ok(answer),
            None => Err(ClientError::Timeout {
                addr: self.addr.clone(),
                request_id: 0,
                timeout,
            }),
        }
    }

    /// The next answer, or `None` when nothing came within `timeout`.
    pub fn recv_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<(u64, Response)>, ClientError> {
        if let Some(answer) = self.received.pop_front() {
            return Ok(Some(answer));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let frame = self
                .reader
                .next_frame()
                .map_err(|error| ClientError::Protocol {
                    addr: self.addr.clone(),
                    message: format!("{error}{}", not_ringflow_hint(&error)),
                })?;
            if let Some(envelopes) = frame {
                for envelope in envelopes {
                    match envelope.message {
                        Message::Response(response) => {
                            self.received.push_back((envelope.request_id, response));
                        }
                        Message::Request(request) => {
                            return Err(ClientError::Protocol {
                                addr: self.addr.clone(),
                                message: format!("the server sent a {} request", request.name()),
                            });
                        }
                    }
                }
                if let Some(answer) = self.received.pop_front() {
                    return Ok(Some(answer));
                }
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let addr = self.addr.clone();
            let io = |error| ClientError::Io { addr, error };
            self.stream
                .set_read_timeout(Some(left))
                .map_err(io.clone())?;
            let spare = 64 * 1024;
            let buffer = self.reader.spare(spare);
            let read = self.stream.read(buffer);
            match read {
                Ok(0) => {
                    self.reader.filled(spare, 0);
                    return Err(ClientError::Io {
                        addr: self.addr.clone(),
                        error: std::io::Error::new(
                            ErrorKind::UnexpectedEof,
                            "the server closed the connection",
                        ),
                    });
                }
                Ok(count) => self.reader.filled(spare, count),
                Err(error)
                    if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                {
                    self.reader.filled(spare, 0);
                }
                Err(error) if error.kind() == ErrorKind::Interrupted => {
                    self.reader.filled(spare, 0);
                }
                Err(error) => {
                    self.reader.filled(spare, 0);
                    return Err(ClientError::Io {
                        addr: self.addr.clone(),
                        error,
                    });
                }
            }
        }
    }

    /// Waits for the answer to `request_id`, keeping answers to other requests for
    /// [`Connection::recv`].
    pub fn wait_for(
        &mut self,
        request_id: u64,
        timeout: Duration,
    ) -> Result<Response, ClientError> {
        if let Some(index) = self.received.iter().position(|(id, _)| *id == request_id) {
            let (_, response) = self.received.remove(index).expect("found");
            return Ok(response);
        }
        let deadline = Instant::now() + timeout;
        let mut others = Vec::new();
        let result = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv_timeout(left) {
                Ok(Some((id, response))) if id == request_id => break Ok(response),
                // The connection's own error (a refused frame, say): the server sends nothing
                // after it, so no other answer comes (PROTOCOL.md, request id 0).
                Ok(Some((0, Response::Error(error)))) => break Err(ClientError::Server(error)),
                Ok(Some(other)) => others.push(other),
                Ok(None) => {
                    break Err(ClientError::Timeout {
                        addr: self.addr.clone(),
                        request_id,
                        timeout,
                    });
                }
                Err(error) => break Err(error),
            }
        };
        for other in others.into_iter().rev() {
            self.received.push_front(other);
        }
        result
    }

    /// Sends one request and waits for its answer (a server error is `Ok(Response::Error)`).
    pub fn call(&mut self, request: &Request) -> Result<Response, ClientError> {
        let extra = match request {
            Request::CreateInstance(create) if create.await_result => {
                Duration::from_millis(u64::from(create.await_timeout_ms))
            }
            Request::ActivateJobs(activate) => {
                Duration::from_millis(u64::from(activate.long_poll_ms))
            }
            _ => Duration::ZERO,
        };
        let id = self.send(request)?;
        self.wait_for(id, self.timeout + extra)
    }
}

/// Where a request goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// One shard.
    Shard(u16),
    /// Every shard (a deployment).
    All,
    /// Any shard: the client spreads these round robin.
    Any,
}

/// The shard of an entity key or a text key, by the topology.
pub fn route(topology: &Topology, request: &Request) -> Route {
    let key = |key: u64| Route::Shard(shard_of_entity_key(key));
    match request {
        Request::Topology | Request::ActivateJobs(_) | Request::SubscribeJobs(_) => Route::Any,
        Request::JobCredits { .. }
        | Request::BroadcastSignal { .. }
        | Request::EvaluateConditional { .. } => Route::Any,
        Request::Deploy { .. } => Route::All,
        Request::CreateInstance(create) => {
            if !create.business_key.is_empty() {
                Route::Shard(topology.shard_of_text(&create.business_key))
            } else if create.process_definition_key != 0 {
                key(create.process_definition_key)
            } else {
                Route::Any
            }
        }
        Request::PublishMessage(publish) => {
            Route::Shard(topology.shard_of_text(&publish.correlation_key))
        }
        Request::CancelInstance {
            process_instance_key,
        } => key(*process_instance_key),
        Request::CompleteJob { job_key, .. }
        | Request::CompleteAdHocJob { job_key, .. }
        | Request::CompleteTaskListenerJob { job_key, .. }
        | Request::AssignUserTask { job_key, .. }
        | Request::UpdateUserTask { job_key, .. }
        | Request::FailJob { job_key, .. }
        | Request::ThrowError { job_key, .. }
        | Request::UpdateJobRetries { job_key, .. } => key(*job_key),
        Request::SetVariables { scope_key, .. } => key(*scope_key),
        Request::ActivateAdHocActivities { ad_hoc_key, .. } => key(*ad_hoc_key),
        Request::ResolveIncident { incident_key } => key(*incident_key),
        Request::ShardMail { to_shard, .. } => Route::Shard(*to_shard),
    }
}

/// A client of a whole cluster.
pub struct Client {
    config: ClientConfig,
    topology: Topology,
    seed: String,
    connections: HashMap<u16, Connection>,
    round_robin: usize,
}

impl Client {
    /// Connects to any node of the cluster and learns the topology from it.
    pub fn connect(addr: &str) -> Result<Client, ClientError> {
        Client::connect_with(addr, ClientConfig::default())
    }

    /// [`Client::connect`] with settings.
    pub fn connect_with(addr: &str, config: ClientConfig) -> Result<Client, ClientError> {
        let mut seed = Connection::open(addr, &config)?;
        let topology = fetch_topology(&mut seed)?;
        let mut client = Client {
            config,
            topology,
            seed: addr.to_string(),
            connections: HashMap::new(),
            round_robin: 0,
        };
        // Keep the seed connection when it is the address of a shard.
        let shard = (0..client.topology.shard_count() as u16).find(|shard| {
            client
                .topology
                .address_of(*shard)
                .is_some_and(|(host, port)| format!("{host}:{port}") == addr)
        });
        if let Some(shard) = shard {
            client.connections.insert(shard, seed);
        }
        Ok(client)
    }

    /// The topology as last learnt.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Asks the cluster for its topology again (any connected shard, else the seed address).
    pub fn refresh_topology(&mut self) -> Result<&Topology, ClientError> {
        let mut topology = None;
        for connection in self.connections.values_mut() {
            if let Ok(fetched) = fetch_topology(connection) {
                topology = Some(fetched);
                break;
            }
        }
        let topology = match topology {
            Some(topology) => topology,
            None => fetch_topology(&mut Connection::open(&self.seed, &self.config)?)?,
        };
        if topology != self.topology {
            self.connections.clear();
            self.topology = topology;
        }
        Ok(&self.topology)
    }

    /// The connection to `shard`, opened on first use.
    pub fn connection(&mut self, shard: u16) -> Result<&mut Connection, ClientError> {
        if !self.connections.contains_key(&shard) {
            let (host, port) =
                self.topology
                    .address_of(shard)
                    .ok_or_else(|| ClientError::Protocol {
                        addr: self.seed.clone(),
                        message: format!(
                            "shard {shard} is not in the topology ({} shards)",
                            self.topology.shard_count()
                        ),
                    })?;
            let connection = Connection::open(&format!("{host}:{port}"), &self.config)?;
            self.connections.insert(shard, connection);
        }
        Ok(self.connections.get_mut(&shard).expect("inserted"))
    }

    /// The shard a request goes to; `Any` requests take the next shard round robin.
    pub fn route(&mut self, request: &Request) -> Vec<u16> {
        let shards = self.topology.shard_count() as u16;
        match route(&self.topology, request) {
            Route::Shard(shard) => vec![shard],
            Route::All => (0..shards).collect(),
            Route::Any => {
                self.round_robin = self.round_robin.wrapping_add(1);
                vec![(self.round_robin % usize::from(shards)) as u16]
            }
        }
    }

    /// Sends a request to one shard; retries `BUSY` with backoff. A server error comes back
    /// as `Err(ClientError::Server)`.
    pub fn call_shard(&mut self, shard: u16, request: &Request) -> Result<Response, ClientError> {
        let mut busy_tries = 0;
        loop {
            let connection = self.connection(shard)?;
            let answer = connection.call(request);
            if answer.is_err() {
                // A broken connection is reopened on the next call.
                self.connections.remove(&shard);
            }
            match answer? {
                Response::Error(error)
                    if error.code == ErrorCode::Busy && busy_tries < self.config.busy_retries =>
                {
                    busy_tries += 1;
                    let base = u64::from(error.retry_after_ms.max(1));
                    let pause = Duration::from_millis(base << busy_tries.min(10))
                        .min(self.config.busy_backoff_max);
                    std::thread::sleep(pause);
                }
                Response::Error(error) => return Err(ClientError::Server(error)),
                response => return Ok(response),
            }
        }
    }

    /// Routes a request to its shard and sends it. On `WRONG_SHARD` it takes the topology
    /// from the answer and tries once more. A deployment goes to every shard in order and
    /// the first shard's answer is returned.
    pub fn request(&mut self, request: &Request) -> Result<Response, ClientError> {
        let shards = self.route(request);
        let mut first = None;
        for shard in shards {
            let answer = match self.call_shard(shard, request) {
                Err(ClientError::Server(error)) if error.code == ErrorCode::WrongShard => {
                    if let Some(topology) = error.topology.clone() {
                        if topology != self.topology {
                            self.connections.clear();
                            self.topology = topology;
                        }
                    } else {
                        self.refresh_topology()?;
                    }
                    let again = self.route(request);
                    let Some(shard) = again.first().copied() else {
                        return Err(ClientError::Server(error));
                    };
                    self.call_shard(shard, request)?
                }
                other => other?,
            };
            first.get_or_insert(answer);
        }
        first.ok_or_else(|| ClientError::Protocol {
            addr: self.seed.clone(),
            message: "the topology has no shards".to_string(),
        })
    }

    /// Deploys BPMN files to every shard (each shard keeps its own copy; deploying the same
    /// files again is harmless, so a failed deployment is simply repeated).
    pub fn deploy(&mut self, resources: Vec<Resource>) -> Result<Deployed, ClientError> {
        match self.request(&Request::Deploy { resources })? {
            Response::Deployed(deployed) => Ok(deployed),
            other => Err(self.unexpected("Deploy", &other)),
        }
    }

    /// Starts an instance: on the business key's shard, else round robin.
    pub fn create_instance(
        &mut self,
        create: CreateInstance,
    ) -> Result<InstanceCreated, ClientError> {
        let create = CreateInstance {
            await_result: false,
            ..create
        };
        match self.request(&Request::CreateInstance(create))? {
            Response::InstanceCreated(created) => Ok(created),
            other => Err(self.unexpected("CreateInstance", &other)),
        }
    }

    /// Starts an instance and waits until it completes.
    pub fn create_instance_with_result(
        &mut self,
        create: CreateInstance,
    ) -> Result<InstanceResult, ClientError> {
        let create = CreateInstance {
            await_result: true,
            ..create
        };
        match self.request(&Request::CreateInstance(create))? {
            Response::InstanceResult(result) => Ok(result),
            other => Err(self.unexpected("CreateInstance", &other)),
        }
    }

    /// Broadcasts a signal (to any shard, which passes it to every other); returns the
    /// signal's key. `variables` is JSON object text, or empty.
    pub fn broadcast_signal(&mut self, name: &str, variables: &str) -> Result<u64, ClientError> {
        self.done(&Request::BroadcastSignal {
            name: name.to_string(),
            variables: variables.to_string(),
        })
    }

    /// Evaluates the conditional start events of the latest version of every process (or of
    /// `bpmn_process_id`, unless empty) against `variables` (JSON object text, or empty) on
    /// one shard, which starts an instance at each whose condition holds; returns them.
    pub fn evaluate_conditional(
        &mut self,
        bpmn_process_id: &str,
        variables: &str,
    ) -> Result<Vec<crate::message::StartedInstance>, ClientError> {
        let request = Request::EvaluateConditional {
            bpmn_process_id: bpmn_process_id.to_string(),
            variables: variables.to_string(),
        };
        match self.request(&request)? {
            Response::InstancesStarted(started) => Ok(started),
            other => Err(self.unexpected("EvaluateConditional", &other)),
        }
    }

    /// Activates elements of the running ad-hoc subprocess instance `ad_hoc_key` on its
    /// shard, each in an inner instance of its own with its variables (JSON object text, or
    /// empty); with `cancel_remaining_instances`, the inner instances still running are
    /// terminated first.
    /// Completes the job of an ad-hoc subprocess's worker with its decision: the elements to
    /// activate (id, JSON object text or empty for the activation's variables), whether the
    /// subprocess is done, whether the activations that run are terminated.
    pub fn complete_ad_hoc_job(
        &mut self,
        job_key: u64,
        variables: &str,
        activate_elements: Vec<(String, String)>,
        completion_condition_fulfilled: bool,
        cancel_remaining_instances: bool,
    ) -> Result<(), ClientError> {
        self.done(&Request::CompleteAdHocJob {
            job_key,
            variables: variables.to_string(),
            activate_elements,
            completion_condition_fulfilled,
            cancel_remaining_instances,
        })
        .map(|_| ())
    }

    /// Assigns the user task whose job is `job_key` to `assignee`, or unassigns it (empty).
    pub fn assign_user_task(&mut self, job_key: u64, assignee: &str) -> Result<(), ClientError> {
        self.done(&Request::AssignUserTask {
            job_key,
            assignee: assignee.to_string(),
        })
        .map(|_| ())
    }

    /// Completes the job of a user task's task listener with its decision: deny the task's
    /// completion (completing listeners), or correct the task's properties.
    pub fn complete_task_listener_job(
        &mut self,
        job_key: u64,
        decision: TaskListenerDecision,
    ) -> Result<(), ClientError> {
        self.done(&Request::CompleteTaskListenerJob {
            job_key,
            decision: Box::new(decision),
        })
        .map(|_| ())
    }

    pub fn activate_ad_hoc_activities(
        &mut self,
        ad_hoc_key: u64,
        elements: Vec<(String, String)>,
        cancel_remaining_instances: bool,
    ) -> Result<(), ClientError> {
        self.done(&Request::ActivateAdHocActivities {
            ad_hoc_key,
            elements,
            cancel_remaining_instances,
        })
        .map(|_| ())
    }

    /// Publishes a message to its correlation key's shard; returns the message key.
    pub fn publish_message(&mut self, publish: PublishMessage) -> Result<u64, ClientError> {
        self.done(&Request::PublishMessage(publish))
    }

    /// Asks the shards in turn for up to `max_jobs` jobs of a type, until one has some. With
    /// `long_poll_ms`, the last shard asked waits that long.
    pub fn activate_jobs(&mut self, activate: ActivateJobs) -> Result<Vec<Job>, ClientError> {
        let shards = self.topology.shard_count() as u16;
        for step in 0..shards {
            let shard = ((self.round_robin + usize::from(step)) % usize::from(shards)) as u16;
            let last = step + 1 == shards;
            let request = Request::ActivateJobs(ActivateJobs {
                long_poll_ms: if last { activate.long_poll_ms } else { 0 },
                ..activate.clone()
            });
            match self.call_shard(shard, &request)? {
                Response::Jobs(jobs) if !jobs.is_empty() => {
                    self.round_robin = usize::from(shard) + 1;
                    return Ok(jobs);
                }
                Response::Jobs(_) => {}
                other => return Err(self.unexpected("ActivateJobs", &other)),
            }
        }
        Ok(Vec::new())
    }

    /// Sends a command whose answer is `Done` and returns the key it names.
    pub fn done(&mut self, request: &Request) -> Result<u64, ClientError> {
        match self.request(request)? {
            Response::Done { key, .. } => Ok(key),
            other => Err(self.unexpected(request.name(), &other)),
        }
    }

    fn unexpected(&self, what: &str, response: &Response) -> ClientError {
        ClientError::Protocol {
            addr: self.seed.clone(),
            message: format!("unexpected answer to {what}: {response:?}"),
        }
    }
}

/// Why a frame from a server was refused, when its length prefix reads as text: the
/// address is another kind of server (`ringflow topology --addr` of the metrics port gave
/// "frame of 1347703880 bytes": the bytes `HTTP`).
fn not_ringflow_hint(error: &crate::message::FrameError) -> String {
    let crate::message::FrameError::TooLarge { length, .. } = error else {
        return String::new();
    };
    let Ok(length) = u32::try_from(*length) else {
        return String::new();
    };
    let bytes = length.to_le_bytes();
    if bytes
        .iter()
        .all(|byte| byte.is_ascii_graphic() || *byte == b' ')
    {
        format!(
            " (its first bytes are the text {:?}: not a ringflow shard's port? an HTTP \
             server, the metrics port for one, starts with \"HTTP\")",
            String::from_utf8_lossy(&bytes)
        )
    } else {
        String::new()
    }
}

/// How long a Topology request (the first on a connection, answered on the spot by any
/// shard) is waited for, whatever the request timeout: something that accepts connections
/// but does not answer is not a ringflow shard, and saying so after 30 s helps nobody.
pub const TOPOLOGY_ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

fn fetch_topology(connection: &mut Connection) -> Result<Topology, ClientError> {
    let id = connection.send(&Request::Topology)?;
    let timeout = TOPOLOGY_ANSWER_TIMEOUT.min(connection.timeout);
    let answer = connection
        .wait_for(id, timeout)
        .map_err(|error| match error {
            ClientError::Timeout { addr, .. } => ClientError::Protocol {
                message: format!(
                    "no answer to a Topology request within {timeout:?}: is {addr} a ringflow \
                 shard's port? (a shard answers it at once unless its frame budget is full)"
                ),
                addr,
            },
            other => other,
        })?;
    match answer {
        Response::Topology(topology) => Ok(topology),
        Response::Error(error) => Err(ClientError::Server(error)),
        other => Err(ClientError::Protocol {
            addr: connection.addr().to_string(),
            message: format!("unexpected answer to Topology: {other:?}"),
        }),
    }
}

/// What a job handler decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobOutcome {
    /// Complete the job with these variables (JSON object text, or empty).
    Complete {
        /// The variables.
        variables: String,
    },
    /// Fail the job: it is retried while retries are left (the worker counts one down),
    /// else it becomes an incident.
    Fail {
        /// Why.
        message: String,
        /// Wait this long before the retry.
        retry_backoff_ms: u64,
    },
    /// Throw a BPMN error.
    ThrowError {
        /// The error code.
        code: String,
        /// What happened.
        message: String,
    },
}

/// Counts of what a [`JobWorker`] did.
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Jobs handled.
    pub handled: AtomicU64,
    /// Completions, failures or errors the server refused (say, the lease ran out first).
    pub refused: AtomicU64,
    /// Subscriptions made again after a lost connection ([`JobWorker::reconnect`]).
    pub reconnects: AtomicU64,
}

/// What happened to a worker's connection to one shard (see [`JobWorker::on_connection`]).
#[derive(Debug)]
pub enum ConnectionEvent<'a> {
    /// The connection was lost; the worker tries again, with a growing pause.
    Lost {
        /// The shard's address.
        addr: &'a str,
        /// Why.
        error: &'a ClientError,
    },
    /// Subscribed again after `tries` attempts.
    Restored {
        /// The shard's address.
        addr: &'a str,
        /// Connection attempts it took.
        tries: u32,
    },
}

/// A callback for [`ConnectionEvent`]s, called from the shard's worker thread.
pub type ConnectionCallback = Arc<dyn Fn(ConnectionEvent<'_>) + Send + Sync>;

/// Subscribes to a job type on every shard and runs a handler for each pushed job, one
/// thread per shard.
pub struct JobWorker {
    /// The job type.
    pub job_type: String,
    /// The worker's name, kept with each job.
    pub worker: String,
    /// Jobs pushed ahead per shard (credits kept granted).
    pub credits: u32,
    /// The lease per job, in milliseconds.
    pub lease_ms: u64,
    /// Only these variables in each job; empty (the default): all of them.
    pub fetch_variables: Vec<String>,
    /// Set to stop the worker; it returns within about `POLL`.
    pub stop: Arc<AtomicBool>,
    /// What the worker did.
    pub stats: Arc<WorkerStats>,
    /// Whether a lost connection (the server stopped, restarted, or the network failed) is
    /// made again, with pauses from [`Self::RECONNECT_PAUSE_MIN`] doubling to
    /// [`Self::RECONNECT_PAUSE_MAX`], until the worker is stopped. Off by default: `run`
    /// then returns the error. Jobs that were in hand are not lost: their leases run out
    /// and they are handed out again.
    pub reconnect: bool,
    /// Told when a connection is lost and when it is made again.
    pub on_connection: Option<ConnectionCallback>,
}

impl JobWorker {
    /// How often a worker thread looks at the stop flag.
    pub const POLL: Duration = Duration::from_millis(100);
    /// How long a stopping worker waits for the answers to what it sent.
    pub const DRAIN: Duration = Duration::from_secs(5);
    /// The first pause before a lost connection is made again ([`Self::reconnect`]).
    pub const RECONNECT_PAUSE_MIN: Duration = Duration::from_millis(100);
    /// The longest pause between attempts to make a lost connection again.
    pub const RECONNECT_PAUSE_MAX: Duration = Duration::from_secs(5);

    /// A worker for `job_type` with 32 credits per shard and a 30 s lease.
    pub fn new(job_type: &str) -> JobWorker {
        JobWorker {
            job_type: job_type.to_string(),
            worker: format!("ringflow-worker-{}", std::process::id()),
            credits: 32,
            lease_ms: 30_000,
            fetch_variables: Vec::new(),
            stop: Arc::new(AtomicBool::new(false)),
            stats: Arc::new(WorkerStats::default()),
            reconnect: false,
            on_connection: None,
        }
    }

    /// Runs until the stop flag is set or a shard's subscription fails.
    pub fn run<H>(
        &self,
        topology: &Topology,
        config: &ClientConfig,
        handler: H,
    ) -> Result<(), ClientError>
    where
        H: Fn(&Job) -> JobOutcome + Sync,
    {
        let shards: Vec<u16> = (0..topology.shard_count() as u16).collect();
        std::thread::scope(|scope| {
            let threads: Vec<_> = shards
                .iter()
                .map(|shard| {
                    let (host, port) = topology
                        .address_of(*shard)
                        .expect("a shard of the topology");
                    let addr = format!("{host}:{port}");
                    let handler = &handler;
                    scope.spawn(move || self.run_shard(&addr, config, handler))
                })
                .collect();
            let mut result = Ok(());
            for thread in threads {
                let outcome = thread.join().unwrap_or_else(|_| {
                    Err(ClientError::Protocol {
                        addr: String::new(),
                        message: "a worker thread panicked".to_string(),
                    })
                });
                if let Err(error) = outcome {
                    self.stop.store(true, Ordering::Relaxed);
                    if result.is_ok() {
                        result = Err(error);
                    }
                }
            }
            result
        })
    }

    /// Serves one shard's subscription; with [`Self::reconnect`], makes it again after a
    /// lost connection until stopped.
    fn run_shard<H>(
        &self,
        addr: &str,
        config: &ClientConfig,
        handler: &H,
    ) -> Result<(), ClientError>
    where
        H: Fn(&Job) -> JobOutcome + Sync,
    {
        let mut pause = Self::RECONNECT_PAUSE_MIN;
        // Attempts since the connection was lost; 0 while connected.
        let tries = std::cell::Cell::new(0u32);
        loop {
            let connected = std::cell::Cell::new(false);
            let subscribed = || {
                connected.set(true);
                if tries.get() > 0 {
                    self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                    if let Some(callback) = &self.on_connection {
                        callback(ConnectionEvent::Restored {
                            addr,
                            tries: tries.get(),
                        });
                    }
                    tries.set(0);
                }
            };
            let error = match self.serve_shard(addr, config, handler, &subscribed) {
                Ok(()) => return Ok(()),
                Err(error) => error,
            };
            let lost = matches!(&error, ClientError::Io { .. } | ClientError::Timeout { .. })
                || matches!(
                    &error,
                    ClientError::Server(refusal) if refusal.code == ErrorCode::Unavailable
                );
            if !self.reconnect || !lost || self.stop.load(Ordering::Relaxed) {
                return Err(error);
            }
            if connected.get() {
                // Lost after a subscription: start over with the shortest pause.
                pause = Self::RECONNECT_PAUSE_MIN;
            }
            if tries.get() == 0
                && let Some(callback) = &self.on_connection
            {
                callback(ConnectionEvent::Lost {
                    addr,
                    error: &error,
                });
            }
            tries.set(tries.get().saturating_add(1));
            let until = Instant::now() + pause;
            while Instant::now() < until {
                if self.stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                std::thread::sleep(Self::POLL.min(until.saturating_duration_since(Instant::now())));
            }
            pause = (pause * 2).min(Self::RECONNECT_PAUSE_MAX);
        }
    }

    fn serve_shard<H>(
        &self,
        addr: &str,
        config: &ClientConfig,
        handler: &H,
        subscribed: &dyn Fn(),
    ) -> Result<(), ClientError>
    where
        H: Fn(&Job) -> JobOutcome + Sync,
    {
        let mut connection = Connection::open(addr, config)?;
        let subscription = connection.send(&Request::SubscribeJobs(SubscribeJobs {
            job_type: self.job_type.clone(),
            worker: self.worker.clone(),
            credits: self.credits,
            lease_ms: self.lease_ms,
            fetch_variables: self.fetch_variables.clone(),
        }))?;
        subscribed();
        // Answers still owed for completions, failures and credits sent.
        let mut outstanding = 0usize;
        let mut drain_until = None;
        loop {
            if drain_until.is_none() && self.stop.load(Ordering::Relaxed) {
                drain_until = Some(Instant::now() + Self::DRAIN);
            }
            if let Some(until) = drain_until
                && (outstanding == 0 || Instant::now() >= until)
            {
                break;
            }
            let Some((id, response)) = connection.recv_timeout(Self::POLL)? else {
                continue;
            };
            if id != subscription && id != 0 {
                outstanding = outstanding.saturating_sub(1);
            }
            match response {
                Response::Jobs(jobs) if id == subscription && drain_until.is_some() => {
                    // Stopping: these jobs are not handled; their leases run out and they go
                    // to another worker.
                    let _ = jobs;
                }
                Response::Jobs(jobs) if id == subscription => {
                    let mut answers = Vec::with_capacity(jobs.len() + 1);
                    for job in &jobs {
                        if self.stop.load(Ordering::Relaxed) {
                            // Not handled: its lease runs out and it goes to another worker.
                            break;
                        }
                        answers.push(match handler(job) {
                            JobOutcome::Complete { variables } => Request::CompleteJob {
                                job_key: job.key,
                                variables,
                            },
                            JobOutcome::Fail {
                                message,
                                retry_backoff_ms,
                            } => Request::FailJob {
                                job_key: job.key,
                                retries: job.retries.saturating_sub(1),
                                retry_backoff_ms,
                                message,
                            },
                            JobOutcome::ThrowError { code, message } => Request::ThrowError {
                                job_key: job.key,
                                error_code: code,
                                message,
                            },
                        });
                        self.stats.handled.fetch_add(1, Ordering::Relaxed);
                    }
                    answers.push(Request::JobCredits {
                        subscription_request_id: subscription,
                        credits: answers.len() as u32,
                    });
                    outstanding += answers.len();
                    connection.send_batch(&answers)?;
                }
                // Its subscription's end, or the connection's (request id 0: the server
                // sends nothing after it).
                Response::Error(error) if id == subscription || id == 0 => {
                    return Err(ClientError::Server(error));
                }
                Response::Error(_) => {
                    self.stats.refused.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
        }
        Ok(())
    }
}
