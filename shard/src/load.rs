//! A load driver over the binary protocol, used by `ringflow demo` and `ringflow-bench run`:
//! one thread, non-blocking sockets, `poll(2)`.
//!
//! Per shard it keeps two connections, as real deployments do: a *starter* that creates
//! instances (each with `await_result`, so that the answer arrives when the instance
//! completes) and publishes their messages, and a *worker* that subscribes to the
//! [`Workload`]'s job types and completes every pushed job at once, granting the credits
//! back. Everything one loop iteration produces for a connection goes out in one frame and
//! one `write`.
//!
//! Latency is measured end to end, from the moment a create was due to the moment its
//! result arrived. In the closed loop an instance is due when the one before it in its slot
//! finished; in the open loop it is due on the schedule `start + i / rate`, whether or not
//! the generator could send it then, which corrects for coordinated omission: when the
//! server stalls, the instances that should have started meanwhile are sent late but timed
//! from when they were due.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use ringflow_wire::frame::FrameReader;
use ringflow_wire::{
    CreateInstance, FrameEncoder, Job, Message, PublishMessage, Request, Response, SubscribeJobs,
    Topology,
};

/// What to run: the process, what each instance carries, and how jobs are completed.
pub trait Workload {
    /// The BPMN process id to start.
    fn process_id(&self) -> &str;
    /// The job types to subscribe to (empty when the process has no jobs).
    fn job_types(&self) -> Vec<String>;
    /// Instance number `n`: its variables, business key and messages.
    fn instance(&self, n: u64) -> InstanceSpec;
    /// Instance number `n` in a cluster where `shard_of` gives the shard a key routes to
    /// (for workloads that place keys on purpose); by default [`Workload::instance`].
    fn instance_in(&self, n: u64, shard_of: &dyn Fn(&str) -> u16) -> InstanceSpec {
        let _ = shard_of;
        self.instance(n)
    }
    /// The variables a job is completed with (JSON object text, or empty).
    fn job_result(&self, job: &Job) -> String;
}

/// One instance to start.
#[derive(Clone, Debug, Default)]
pub struct InstanceSpec {
    /// JSON object text, or empty.
    pub variables: String,
    /// Routes the instance to this key's shard; empty spreads instances round-robin.
    pub business_key: String,
    /// Published right after the create, each on the connection to the shard of its
    /// correlation key.
    pub messages: Vec<PublishMessage>,
}

/// Bytes read from a socket at a time.
const READ_CHUNK: usize = 256 * 1024;
/// The longest frame the generator accepts from the server.
const FRAME_BYTES_MAX: usize = 64 * 1024 * 1024;
/// How long an awaited result may take before the server answers with a timeout.
const AWAIT_TIMEOUT_MS: u32 = 120_000;
/// The lease of a pushed job: long, since the worker completes it at once.
const LEASE_MS: u64 = 120_000;

/// How instances are started.
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// Keep this many instances in flight (spread over the shards).
    Closed {
        /// Instances in flight.
        inflight: usize,
    },
    /// Start instances at this rate per second, never more than `inflight_max` in flight
    /// (what is due beyond that waits, and its latency counts the wait).
    Open {
        /// Instances per second.
        rate: f64,
        /// The cap on instances in flight.
        inflight_max: usize,
    },
}

/// What one measurement does.
#[derive(Clone, Debug)]
pub struct Config {
    /// The server's topology.
    pub topology: Topology,
    /// Closed or open loop.
    pub mode: Mode,
    /// Run this long before measuring.
    pub warmup: Duration,
    /// Measure this long.
    pub duration: Duration,
    /// After the measurement, wait at most this long for the instances still in flight.
    pub drain: Duration,
    /// Jobs the server may push ahead to each worker connection.
    pub credits: u32,
    /// Only these variables in each pushed job; empty: all of them.
    pub fetch_variables: Vec<String>,
    /// Print a progress line every second (to stderr).
    pub progress: bool,
    /// Open loop: send the creates that fell due at most this often, together (zero: as
    /// soon as each is due). Their latency still counts from when each was due.
    pub send_tick: Duration,
}

/// What one measurement saw.
#[derive(Debug)]
pub struct Outcome {
    /// Instances that completed within the measured window.
    pub completed: u64,
    /// Jobs completed in the measured window.
    pub jobs: u64,
    /// The measured window.
    pub window: Duration,
    /// End-to-end latency of the instances completed in the window, in microseconds.
    pub latency_us: Histogram<u64>,
    /// Refusals and failures by kind (`create: BUSY`, `job: NOT_FOUND`, ...).
    pub errors: HashMap<String, u64>,
    /// Instances still unfinished when the drain ended.
    pub unfinished: u64,
    /// Open loop: the most that were due but not yet sent at once (the backlog).
    pub backlog_max: u64,
    /// Instances completed in total, warm-up and drain included.
    pub completed_total: u64,
    /// The key of one completed instance (to look at afterwards).
    pub sample_instance: Option<u64>,
    /// Each second of the run, warm-up and drain included: what the progress line shows.
    pub timeline: Vec<Second>,
    /// Where the latency of the instances completed in the window went.
    pub phases: Phases,
}

/// The end-to-end latency of an instance cut at the arrival of its last job at the
/// generator, and how late the generator sent creates; in microseconds, for the instances
/// completed in the window. The two parts of one instance add up to its latency, so each
/// part's percentiles are at most the whole's. The first part holds the generator's lateness
/// in sending the create, the server's create and commit, and the job's push; the second the
/// generator completing the job, the server's complete and commit, and the answer's way back.
#[derive(Debug)]
pub struct Phases {
    /// From when the instance was due to when its last job arrived at the generator (only
    /// instances with jobs).
    pub to_last_job_us: Histogram<u64>,
    /// From when its last job arrived to when its result arrived (only instances with jobs).
    pub last_job_to_result_us: Histogram<u64>,
    /// From when a create was due to when the generator queued it to be sent (open loop: how
    /// far the generator fell behind its schedule; closed loop: 0 but for BUSY re-sends).
    pub send_lag_us: Histogram<u64>,
}

/// One second of a run: the instances that completed in it and their latency.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Second {
    /// Seconds since the run began (this second ended then).
    pub at_s: u64,
    /// `warm-up`, `measuring` or `draining`.
    pub phase: &'static str,
    /// Instances completed in this second.
    pub completed: u64,
    /// Jobs completed in this second.
    pub jobs: u64,
    /// Instances in flight at its end.
    pub in_flight: u64,
    /// Latency of the instances completed in it, in microseconds (0 when none completed).
    pub p50_us: u64,
    /// The same, 99th percentile.
    pub p99_us: u64,
    /// The same, the slowest.
    pub max_us: u64,
    /// How late the generator queued the latest-sent create of this second, at most: its own
    /// stalls (open loop; 0 in the closed loop but for BUSY re-sends).
    pub send_lag_max_us: u64,
    /// The generator's longest stretch of work between two waits for its sockets (reading
    /// answers, completing jobs, starting creates, writing): while it works, answers that
    /// arrive wait to be read.
    pub loop_busy_max_us: u64,
}

impl Outcome {
    /// Completed instances per second in the window.
    pub fn throughput_per_s(&self) -> f64 {
        self.completed as f64 / self.window.as_secs_f64()
    }
}

struct Link {
    addr: String,
    stream: TcpStream,
    reader: FrameReader,
    encoder: FrameEncoder,
    out: Vec<u8>,
    written: usize,
    closed: bool,
}

impl Link {
    fn open(addr: &str) -> anyhow::Result<Link> {
        let stream =
            TcpStream::connect(addr).with_context(|| format!("cannot connect to {addr}"))?;
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        Ok(Link {
            addr: addr.to_string(),
            stream,
            reader: FrameReader::new(FRAME_BYTES_MAX),
            encoder: FrameEncoder::default(),
            out: Vec::new(),
            written: 0,
            closed: false,
        })
    }

    fn wants_write(&self) -> bool {
        self.written < self.out.len() || !self.encoder.is_empty()
    }

    /// Finishes the pending frame and writes what the socket takes.
    fn flush(&mut self) -> anyhow::Result<()> {
        if !self.encoder.is_empty() {
            if self.written == self.out.len() {
                self.out.clear();
                self.written = 0;
            }
            self.encoder.finish_into(&mut self.out);
        }
        while self.written < self.out.len() {
            match self.stream.write(&self.out[self.written..]) {
                Ok(0) => bail!("{}: the server closed the connection", self.addr),
                Ok(count) => self.written += count,
                Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => return Err(error).with_context(|| format!("write to {}", self.addr)),
            }
        }
        if self.written == self.out.len() {
            self.out.clear();
            self.written = 0;
        }
        Ok(())
    }

    /// Reads what has arrived and hands back the messages of the whole frames.
    fn receive(&mut self, into: &mut Vec<(u64, Response)>) -> anyhow::Result<()> {
        loop {
            let spare = self.reader.spare(READ_CHUNK);
            match self.stream.read(spare) {
                Ok(0) => {
                    self.reader.filled(READ_CHUNK, 0);
                    self.closed = true;
                    break;
                }
                Ok(count) => {
                    self.reader.filled(READ_CHUNK, count);
                    if count < READ_CHUNK {
                        break;
                    }
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => {
                    self.reader.filled(READ_CHUNK, 0);
                    break;
                }
                Err(error) if error.kind() == ErrorKind::Interrupted => {
                    self.reader.filled(READ_CHUNK, 0);
                }
                Err(error) => {
                    self.reader.filled(READ_CHUNK, 0);
                    return Err(error).with_context(|| format!("read from {}", self.addr));
                }
            }
        }
        while let Some(envelopes) = self
            .reader
            .next_frame()
            .with_context(|| format!("a bad frame from {}", self.addr))?
        {
            for envelope in envelopes {
                match envelope.message {
                    Message::Response(response) => into.push((envelope.request_id, response)),
                    Message::Request(request) => {
                        bail!("{} sent a request: {}", self.addr, request.name())
                    }
                }
            }
        }
        Ok(())
    }
}

struct Pending {
    /// When the instance was due, in nanoseconds since the run began.
    due_ns: u64,
    /// Which shard it went to (for re-sends after BUSY).
    shard: usize,
    /// Its number (its correlation key and variables derive from it).
    n: u64,
}

struct Generator<'a> {
    config: &'a Config,
    workload: &'a dyn Workload,
    process_id: String,
    begin: Instant,
    starters: Vec<Link>,
    workers: Vec<Link>,
    /// Per worker connection: the request ids of its subscriptions.
    subscriptions: Vec<Vec<u64>>,
    next_id: u64,
    next_n: u64,
    round_robin: usize,
    pending: HashMap<u64, Pending>,
    /// Creates refused with BUSY, to send again once the server's retry-after has passed:
    /// (not before, due_ns, shard, n).
    retry: Vec<(u64, u64, usize, u64)>,
    /// Publishes not answered yet, by request id: the instance's number and the message's
    /// index among its messages (to make it again if it must be sent again).
    publishes: HashMap<u64, (u64, usize)>,
    /// Publishes refused with BUSY, to send again on their own once the retry-after has
    /// passed (not before, n, index): its instance may be running already, waiting for it.
    publish_retry: Vec<(u64, u64, usize)>,
    // Measurement.
    window_start_ns: u64,
    window_end_ns: u64,
    completed: u64,
    jobs: u64,
    latency: Histogram<u64>,
    errors: HashMap<String, u64>,
    // Progress, per second.
    second: Histogram<u64>,
    second_completed: u64,
    second_jobs: u64,
    sample_instance: Option<u64>,
    /// The largest send lag of this second, µs.
    second_send_lag_max: u64,
    /// The longest stretch of work between two waits this second, µs.
    second_busy_max: u64,
    /// When the latest job of each instance in flight arrived, by instance key.
    last_job_ns: HashMap<u64, u64>,
    phases: Phases,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// Runs one measurement against a running server.
pub fn run(config: &Config, workload: &dyn Workload) -> anyhow::Result<Outcome> {
    let shards = config.topology.shard_count();
    let mut starters = Vec::with_capacity(shards);
    let mut workers = Vec::with_capacity(shards);
    for shard in 0..shards {
        let (host, port) = config
            .topology
            .address_of(shard as u16)
            .context("a shard without an address in the topology")?;
        let addr = format!("{host}:{port}");
        starters.push(Link::open(&addr)?);
        if !workload.job_types().is_empty() {
            workers.push(Link::open(&addr)?);
        }
    }
    let warmup_ns = config.warmup.as_nanos() as u64;
    let mut generator = Generator {
        config,
        workload,
        process_id: workload.process_id().to_string(),
        begin: Instant::now(),
        starters,
        workers,
        subscriptions: Vec::new(),
        next_id: 1,
        next_n: 0,
        round_robin: 0,
        pending: HashMap::new(),
        retry: Vec::new(),
        publishes: HashMap::new(),
        publish_retry: Vec::new(),
        window_start_ns: warmup_ns,
        window_end_ns: warmup_ns + config.duration.as_nanos() as u64,
        completed: 0,
        jobs: 0,
        latency: histogram(),
        errors: HashMap::new(),
        second: histogram(),
        second_completed: 0,
        second_jobs: 0,
        sample_instance: None,
        last_job_ns: HashMap::new(),
        second_send_lag_max: 0,
        second_busy_max: 0,
        phases: Phases {
            to_last_job_us: histogram(),
            last_job_to_result_us: histogram(),
            send_lag_us: histogram(),
        },
    };
    generator.subscribe();
    generator.run()
}

impl Generator<'_> {
    fn now_ns(&self) -> u64 {
        self.begin.elapsed().as_nanos() as u64
    }

    fn id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn subscribe(&mut self) {
        let job_types = self.workload.job_types();
        for index in 0..self.workers.len() {
            let mut ids = Vec::with_capacity(job_types.len());
            for job_type in &job_types {
                let id = self.id();
                self.workers[index].encoder.push_request(
                    id,
                    &Request::SubscribeJobs(SubscribeJobs {
                        job_type: job_type.clone(),
                        worker: format!("ringflow-load-{}", std::process::id()),
                        credits: self.config.credits,
                        lease_ms: LEASE_MS,
                        fetch_variables: self.config.fetch_variables.clone(),
                    }),
                );
                ids.push(id);
            }
            self.subscriptions.push(ids);
        }
    }

    /// Queues the create (and messages) of instance `n`, due at `due_ns`.
    /// Sends the create of instance `n` (on `shard`, for a re-send) and, the first time,
    /// its messages; a create sent again after BUSY leaves its messages alone (each one
    /// refused is sent again on its own).
    fn start(&mut self, due_ns: u64, shard: Option<usize>, n: u64) {
        let first = shard.is_none();
        let topology = &self.config.topology;
        let spec = self
            .workload
            .instance_in(n, &|text| topology.shard_of_text(text));
        let shard = match shard {
            Some(shard) => shard,
            None if !spec.business_key.is_empty() => {
                usize::from(self.config.topology.shard_of_text(&spec.business_key))
            }
            None => {
                self.round_robin = (self.round_robin + 1) % self.starters.len();
                self.round_robin
            }
        };
        let id = self.id();
        let create = Request::CreateInstance(CreateInstance {
            bpmn_process_id: self.process_id.clone(),
            variables: spec.variables,
            business_key: spec.business_key,
            await_result: true,
            await_timeout_ms: AWAIT_TIMEOUT_MS,
            ..CreateInstance::default()
        });
        self.starters[shard].encoder.push_request(id, &create);
        if first {
            for (index, message) in spec.messages.into_iter().enumerate() {
                self.publish(n, index, message);
            }
        }
        let now = self.now_ns();
        let lag = now.saturating_sub(due_ns) / 1_000;
        self.second_send_lag_max = self.second_send_lag_max.max(lag);
        if self.in_window(now) {
            self.phases.send_lag_us.saturating_record(lag);
        }
        self.pending.insert(id, Pending { due_ns, shard, n });
    }

    /// Sends message `index` of instance `n` to the shard of its correlation key.
    fn publish(&mut self, n: u64, index: usize, message: PublishMessage) {
        let id = self.id();
        let owner = usize::from(self.config.topology.shard_of_text(&message.correlation_key));
        self.starters[owner]
            .encoder
            .push_request(id, &Request::PublishMessage(message));
        self.publishes.insert(id, (n, index));
    }

    fn run(mut self) -> anyhow::Result<Outcome> {
        let mut responses = Vec::new();
        let mut fds: Vec<libc::pollfd> = Vec::new();
        let mut next_progress_ns = 1_000_000_000u64;
        let mut last_progress = (0u64, 0u64);
        let mut timeline = Vec::new();
        let drain_end_ns = self.window_end_ns + self.config.drain.as_nanos() as u64;
        // Open loop: the schedule.
        let mut scheduled = 0u64;
        let mut backlog_max = 0u64;
        // When the last wait for the sockets returned.
        let mut woke_ns: Option<u64> = None;
        // Open loop: the next time due creates are sent.
        let mut next_send_ns = 0u64;
        let send_tick_ns = self.config.send_tick.as_nanos() as u64;
        loop {
            let now = self.now_ns();
            let measuring = now < self.window_end_ns;
            if !measuring && (self.pending.is_empty() || now >= drain_end_ns) {
                break;
            }
            // Publishes refused with BUSY go again, also while the last instances drain.
            if !self.publish_retry.is_empty() {
                let (ready, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.publish_retry)
                    .into_iter()
                    .partition(|retry| retry.0 <= now);
                self.publish_retry = later;
                for (_, n, index) in ready {
                    let topology = &self.config.topology;
                    let spec = self
                        .workload
                        .instance_in(n, &|text| topology.shard_of_text(text));
                    if let Some(message) = spec.messages.into_iter().nth(index) {
                        self.publish(n, index, message);
                    }
                }
            }
            // Start what is due.
            if measuring {
                let (ready, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.retry)
                    .into_iter()
                    .partition(|retry| retry.0 <= now);
                self.retry = later;
                for (_, due_ns, shard, n) in ready {
                    self.start(due_ns, Some(shard), n);
                }
                match self.config.mode {
                    Mode::Closed { inflight } => {
                        while self.pending.len() + self.retry.len() < inflight {
                            let n = self.next_n;
                            self.next_n += 1;
                            self.start(now, None, n);
                        }
                    }
                    Mode::Open { rate, inflight_max } if now >= next_send_ns => {
                        next_send_ns = now + send_tick_ns;
                        let due_total = (now as f64 / 1e9 * rate) as u64;
                        backlog_max = backlog_max.max(due_total.saturating_sub(scheduled));
                        while scheduled < due_total
                            && self.pending.len() + self.retry.len() < inflight_max
                        {
                            let due_ns = (scheduled as f64 * 1e9 / rate) as u64;
                            let n = self.next_n;
                            self.next_n += 1;
                            scheduled += 1;
                            self.start(due_ns, None, n);
                        }
                    }
                    Mode::Open { .. } => {}
                }
            }
            for link in self.starters.iter_mut().chain(self.workers.iter_mut()) {
                link.flush()?;
            }
            // Wait for answers, or until the next instance is due.
            let timeout_ns = match self.config.mode {
                Mode::Open { rate, .. } if measuring => {
                    let next_due = ((scheduled + 1) as f64 * 1e9 / rate) as u64;
                    next_due
                        .max(next_send_ns)
                        .saturating_sub(self.now_ns())
                        .min(10_000_000)
                }
                _ => 10_000_000,
            };
            fds.clear();
            for link in self.starters.iter().chain(self.workers.iter()) {
                let mut events = libc::POLLIN;
                if link.wants_write() {
                    events |= libc::POLLOUT;
                }
                fds.push(libc::pollfd {
                    fd: link.stream.as_raw_fd(),
                    events,
                    revents: 0,
                });
            }
            let timeout = libc::timespec {
                tv_sec: (timeout_ns / 1_000_000_000) as libc::time_t,
                tv_nsec: (timeout_ns % 1_000_000_000) as libc::c_long,
            };
            if let Some(woke) = woke_ns {
                let busy = self.now_ns().saturating_sub(woke) / 1_000;
                self.second_busy_max = self.second_busy_max.max(busy);
            }
            // SAFETY: fds is a live slice of pollfd of the length given; timeout outlives the
            // call; a null signal mask leaves the mask unchanged.
            let ready = unsafe {
                libc::ppoll(
                    fds.as_mut_ptr(),
                    fds.len() as libc::nfds_t,
                    &timeout,
                    std::ptr::null(),
                )
            };
            woke_ns = Some(self.now_ns());
            if ready < 0 {
                let error = std::io::Error::last_os_error();
                if error.kind() != ErrorKind::Interrupted {
                    return Err(error).context("poll");
                }
                continue;
            }
            let starters = self.starters.len();
            for (index, fd) in fds.iter().enumerate() {
                if fd.revents == 0 {
                    continue;
                }
                if fd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                    responses.clear();
                    if index < starters {
                        self.starters[index].receive(&mut responses)?;
                        if self.starters[index].closed {
                            bail!("{} closed the connection", self.starters[index].addr);
                        }
                        for (id, response) in responses.drain(..) {
                            self.on_starter_answer(id, response);
                        }
                    } else {
                        let worker = index - starters;
                        self.workers[worker].receive(&mut responses)?;
                        if self.workers[worker].closed {
                            bail!("{} closed the connection", self.workers[worker].addr);
                        }
                        for (id, response) in responses.drain(..) {
                            self.on_worker_answer(worker, id, response)?;
                        }
                    }
                }
            }
            if self.now_ns() >= next_progress_ns {
                // The second that just ended, named by its end and labelled by its start.
                let began_ns = next_progress_ns - 1_000_000_000;
                let at_s = next_progress_ns / 1_000_000_000;
                next_progress_ns += 1_000_000_000;
                let phase = if began_ns < self.window_start_ns {
                    "warm-up"
                } else if began_ns < self.window_end_ns {
                    "measuring"
                } else {
                    "draining"
                };
                let second = Second {
                    at_s,
                    phase,
                    completed: self.second_completed - last_progress.0,
                    jobs: self.second_jobs - last_progress.1,
                    in_flight: self.pending.len() as u64,
                    p50_us: self.second.value_at_quantile(0.5),
                    p99_us: self.second.value_at_quantile(0.99),
                    max_us: self.second.max(),
                    send_lag_max_us: std::mem::take(&mut self.second_send_lag_max),
                    loop_busy_max_us: std::mem::take(&mut self.second_busy_max),
                };
                if self.config.progress {
                    say!(
                        "  {:>3}s {phase:<9} {:>8} inst/s {:>9} jobs/s  completed {:>9}  in flight {:>6}  p50 {:>6.1} ms  p99 {:>6.1} ms",
                        second.at_s,
                        second.completed,
                        second.jobs,
                        self.second_completed,
                        second.in_flight,
                        second.p50_us as f64 / 1000.0,
                        second.p99_us as f64 / 1000.0,
                    );
                }
                timeline.push(second);
                last_progress = (self.second_completed, self.second_jobs);
                self.second.reset();
            }
        }
        Ok(Outcome {
            completed: self.completed,
            jobs: self.jobs,
            window: self.config.duration,
            latency_us: self.latency,
            errors: self.errors,
            unfinished: self.pending.len() as u64,
            backlog_max,
            completed_total: self.second_completed,
            sample_instance: self.sample_instance,
            timeline,
            phases: self.phases,
        })
    }

    fn in_window(&self, now: u64) -> bool {
        (self.window_start_ns..self.window_end_ns).contains(&now)
    }

    fn error(&mut self, what: &str, code: &str) {
        *self.errors.entry(format!("{what}: {code}")).or_default() += 1;
    }

    fn on_starter_answer(&mut self, id: u64, response: Response) {
        let Some(pending) = self.pending.remove(&id) else {
            // A published message's answer.
            let publish = self.publishes.remove(&id);
            if let Response::Error(error) = response {
                self.error("publish", error.code.name());
                if error.code == ringflow_wire::ErrorCode::Busy
                    && let Some((n, index)) = publish
                {
                    let not_before =
                        self.now_ns() + u64::from(error.retry_after_ms.max(1)) * 1_000_000;
                    self.publish_retry.push((not_before, n, index));
                }
            }
            return;
        };
        match response {
            Response::InstanceResult(result) => {
                let key = result.created.process_instance_key;
                self.sample_instance = Some(key);
                let now = self.now_ns();
                let micros = (now.saturating_sub(pending.due_ns) / 1_000).max(1);
                self.second.saturating_record(micros);
                self.second_completed += 1;
                let last_job = self.last_job_ns.remove(&key);
                if self.in_window(now) {
                    self.completed += 1;
                    self.latency.saturating_record(micros);
                    if let Some(job_ns) = last_job {
                        let before = job_ns.saturating_sub(pending.due_ns) / 1_000;
                        let after = now.saturating_sub(job_ns) / 1_000;
                        self.phases.to_last_job_us.saturating_record(before);
                        self.phases.last_job_to_result_us.saturating_record(after);
                    }
                }
            }
            Response::Error(error) => {
                self.error("create", error.code.name());
                if error.code == ringflow_wire::ErrorCode::Busy {
                    // Sent again after the server's retry-after, still timed from when it was
                    // due; it keeps its place in flight meanwhile.
                    let not_before =
                        self.now_ns() + u64::from(error.retry_after_ms.max(1)) * 1_000_000;
                    self.retry
                        .push((not_before, pending.due_ns, pending.shard, pending.n));
                }
            }
            other => self.error("create", &format!("unexpected {other:?}")),
        }
    }

    fn on_worker_answer(
        &mut self,
        worker: usize,
        id: u64,
        response: Response,
    ) -> anyhow::Result<()> {
        if self.subscriptions[worker].contains(&id) {
            let subscription = id;
            match response {
                Response::Jobs(jobs) => {
                    let now = self.now_ns();
                    let count = jobs.len() as u32;
                    for job in jobs {
                        self.last_job_ns.insert(job.process_instance_key, now);
                        let id = self.id();
                        let variables = self.workload.job_result(&job);
                        self.workers[worker].encoder.push_request(
                            id,
                            &Request::CompleteJob {
                                job_key: job.key,
                                variables,
                            },
                        );
                    }
                    let id = self.id();
                    self.workers[worker].encoder.push_request(
                        id,
                        &Request::JobCredits {
                            subscription_request_id: subscription,
                            credits: count,
                        },
                    );
                    self.second_jobs += u64::from(count);
                    if self.in_window(now) {
                        self.jobs += u64::from(count);
                    }
                }
                Response::Error(error) => {
                    bail!(
                        "the job subscription on {} failed: {error}",
                        self.workers[worker].addr
                    )
                }
                other => bail!("unexpected answer to SubscribeJobs: {other:?}"),
            }
            return Ok(());
        }
        if let Response::Error(error) = response {
            self.error("job", error.code.name());
        }
        Ok(())
    }
}

/// Shard 0's `HOST:PORT` from `ringflow serve`'s stderr `log`: its line `ringflow: node N of
/// M (...), shards A..=B on HOST:BASE..=LAST, data in DIR` (the last such line), which says
/// which ports it took (`--listen HOST:0` too).
pub fn listen_addr_in(log: &str) -> Option<String> {
    let line = log
        .lines()
        .rev()
        .find(|line| line.starts_with("ringflow: node "))?;
    let ports = line.split(" on ").nth(1)?;
    Some(ports.split("..=").next()?.to_string())
}

/// The address of `ringflow: metrics at http://HOST:PORT/metrics` in `ringflow serve`'s
/// stderr `log` (the last such line).
pub fn metrics_addr_in(log: &str) -> Option<String> {
    let line = log
        .lines()
        .rev()
        .find(|line| line.starts_with("ringflow: metrics at http://"))?;
    let addr = line.strip_prefix("ringflow: metrics at http://")?;
    Some(addr.strip_suffix("/metrics")?.to_string())
}

/// A `ringflow serve` started as a child process (by `ringflow demo` and `ringflow-bench`):
/// waits until every shard answers, and stops it with SIGTERM (SIGKILL after a timeout).
pub struct ServerProcess {
    child: Option<std::process::Child>,
    addr: String,
    log: std::path::PathBuf,
}

impl ServerProcess {
    /// Spawns `command` (whose output goes to `log`) and waits up to `timeout` until the
    /// node at `addr` and every shard of its topology accept connections. An `addr` with
    /// port 0 (the server picks free ports) is read from the server's log once it says
    /// ([`ServerProcess::addr`]).
    ///
    /// The server is stopped (SIGTERM: a graceful stop) when this process dies, however it
    /// dies: a `ringflow demo` or `ringflow-bench` killed with SIGKILL left its server
    /// running, pinned to its CPUs, with nobody to stop it. The kernel sends that signal
    /// when the thread that spawned the server ends (PR_SET_PDEATHSIG), so call this from a
    /// thread that outlives the server: the main thread, as `demo` and `ringflow-bench` do.
    pub fn start(
        mut command: std::process::Command,
        addr: &str,
        log: &std::path::Path,
        timeout: Duration,
    ) -> anyhow::Result<(ServerProcess, ringflow_wire::Client)> {
        let parent = std::process::id();
        // SAFETY: the closure runs in the child between fork and exec and calls only
        // prctl, getppid and raise, which are async-signal-safe; it touches no memory the
        // parent's other threads could have left locked.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent died between fork and prctl: nothing would send the signal.
                if libc::getppid() as u32 != parent {
                    libc::raise(libc::SIGTERM);
                }
                Ok(())
            });
        }
        let child = command.spawn().context("cannot start ringflow serve")?;
        let mut server = ServerProcess {
            child: Some(child),
            addr: addr.to_string(),
            log: log.to_path_buf(),
        };
        let client = server.wait_ready(timeout)?;
        Ok((server, client))
    }

    /// Shard 0's address (the one the server reported, when it was started on port 0).
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The metrics address the server reported in its log (`--metrics HOST:0` too).
    pub fn metrics_addr(&self) -> Option<String> {
        metrics_addr_in(&std::fs::read_to_string(&self.log).ok()?)
    }

    fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<ringflow_wire::Client> {
        let started = Instant::now();
        let mut resolved = !self.addr.ends_with(":0");
        loop {
            if !resolved
                && let Some(addr) = std::fs::read_to_string(&self.log)
                    .ok()
                    .and_then(|log| listen_addr_in(&log))
            {
                self.addr = addr;
                resolved = true;
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                bail!(
                    "the server exited at start ({status}); its log:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if resolved && let Ok(client) = ringflow_wire::Client::connect(&self.addr) {
                let topology = client.topology();
                let all = (0..topology.shard_count() as u16).all(|shard| {
                    topology
                        .address_of(shard)
                        .is_some_and(|(host, port)| TcpStream::connect((host, port)).is_ok())
                });
                if all {
                    return Ok(client);
                }
            }
            if started.elapsed() > timeout {
                bail!(
                    "the server did not answer on {} within {timeout:?}; its log: {}",
                    self.addr,
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's process id (0 once stopped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, std::process::Child::id)
    }

    /// Stops the server: SIGTERM, then SIGKILL when it takes longer than `timeout`. An exit
    /// status other than 0 is an error.
    pub fn stop(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        // SAFETY: kill(2) on the pid of a child this process started and has not reaped.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    bail!(
                        "the server exited with {status}; its log: {}",
                        self.log.display()
                    );
                }
                return Ok(());
            }
            if started.elapsed() > timeout {
                child.kill()?;
                child.wait()?;
                bail!(
                    "the server did not stop within {timeout:?} and was killed; its log: {}",
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Err(error) = self.stop(Duration::from_secs(30)) {
            say!("{error:#}");
        }
    }
}
