//! The configuration of `ringflow serve`: defaults, a TOML file, and flags.
//!
//! Every option is a flag of `ringflow serve` and a key of the same name in the file given
//! with `--config` (`--segment-mib 64` is `segment-mib = 64`). Flags override the file, the
//! file overrides the defaults. `ringflow serve --print-config` prints the effective
//! configuration, one documented key per option, and what the unset ones resolve to.
//!
//! Relative `data` and `cluster` paths in a file are relative to the file's folder (so a file
//! and its cluster file can sit side by side in `/etc/ringflow/`); relative paths given as
//! flags are relative to the working directory.
//!
//! The options are declared once, in the `serve_options!` invocation below: the flags, the
//! file's keys, the defaults and [`OPTIONS`] (the documentation `--print-config` prints and
//! the README's table lists) all come from it.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use ringflow_wire::{Node, Topology};
use serde::{Deserialize, Serialize};

use crate::cold::Target;
use crate::journal::JournalConfig;
use crate::runtime;
use crate::server::ServerLimits;
use crate::shard::{ExportLimits, ShardConfig};

/// One option's documentation.
#[derive(Debug, Clone, Copy)]
pub struct OptionDoc {
    /// The key in the file; the flag is `--KEY`.
    pub key: &'static str,
    /// What it does.
    pub doc: &'static str,
    /// Its unit (or the form of its value).
    pub unit: &'static str,
    /// What happens when it is not set, for options without a fixed default.
    pub when_unset: Option<&'static str>,
}

/// CPUs named by number: `0,2,4` on the command line, `[0, 2, 4]` in the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CpuList(pub Vec<usize>);

impl std::str::FromStr for CpuList {
    type Err = String;

    fn from_str(text: &str) -> Result<CpuList, String> {
        text.split(',')
            .map(|cpu| {
                cpu.trim().parse::<usize>().map_err(|_| {
                    format!("`{cpu}` is not a CPU number (expected a list like 0,2,4)")
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(CpuList)
    }
}

/// Which node of the cluster file this is: an index, or `ordinal`, the number after the last
/// `-` of the host name (a Kubernetes StatefulSet names its pods `NAME-0`, `NAME-1`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeSpec {
    /// The node's index in the cluster file.
    Index(u16),
    /// The host name's ordinal.
    Ordinal,
}

impl std::str::FromStr for NodeSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<NodeSpec, String> {
        if text == "ordinal" {
            return Ok(NodeSpec::Ordinal);
        }
        text.parse::<u16>().map(NodeSpec::Index).map_err(|_| {
            format!("`{text}` is neither a node index nor `ordinal` (the host name's number)")
        })
    }
}

impl Serialize for NodeSpec {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            NodeSpec::Index(index) => serializer.serialize_u16(*index),
            NodeSpec::Ordinal => serializer.serialize_str("ordinal"),
        }
    }
}

impl<'de> Deserialize<'de> for NodeSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<NodeSpec, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Index(u16),
            Text(String),
        }
        match Raw::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom("expected a node index (0 to 65535) or \"ordinal\"")
        })? {
            Raw::Index(index) => Ok(NodeSpec::Index(index)),
            Raw::Text(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl NodeSpec {
    /// The node index, reading the host name for `ordinal`.
    pub fn resolve(&self) -> anyhow::Result<u16> {
        match self {
            NodeSpec::Index(index) => Ok(*index),
            NodeSpec::Ordinal => {
                let host = host_name().context("node = ordinal: cannot read the host name")?;
                ordinal_of(&host).with_context(|| {
                    format!(
                        "node = ordinal: the host name `{host}` does not end in -NUMBER \
                         (as a StatefulSet's pods do)"
                    )
                })
            }
        }
    }
}

/// This machine's host name.
pub fn host_name() -> anyhow::Result<String> {
    let text = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .context("reading /proc/sys/kernel/hostname")?;
    Ok(text.trim().to_string())
}

/// The number after the last `-` of a host name (`ringflow-2` -> 2); a pod's host name is
/// its name, which may be followed by a domain.
pub fn ordinal_of(host: &str) -> Option<u16> {
    let name = host.split('.').next()?;
    let (_, number) = name.rsplit_once('-')?;
    if number.is_empty() || !number.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    number.parse().ok()
}

fn help(doc: &str, unit: &str, default: String) -> String {
    format!("{doc} ({unit}) [default: {default}]")
}

fn help_unset(doc: &str, unit: &str, when_unset: &str) -> String {
    format!("{doc} ({unit}) [default: {when_unset}]")
}

fn default_text<T: Serialize>(value: T) -> String {
    toml::Value::try_from(&value)
        .map(|value| value.to_string())
        .unwrap_or_default()
}

/// Declares the options once; see the module docs.
macro_rules! serve_options {
    (
        with_default {
            $( $field:ident $key:literal : $ty:ty = $default:expr, $unit:literal, $doc:literal; )*
        }
        optional {
            $( $ofield:ident $okey:literal : $oty:ty, $ounit:literal, $odoc:literal, unset $unset:literal; )*
        }
    ) => {
        /// The flags of `ringflow serve`: each option, unset unless given.
        #[derive(Debug, Default, clap::Args)]
        pub struct Flags {
            /// Read options from this TOML file (keys named like these flags, without the
            /// dashes in front); flags given here override it.
            #[arg(long, value_name = "FILE")]
            pub config: Option<PathBuf>,
            /// Print the effective configuration (defaults, then the file, then the flags) as
            /// TOML with each option documented, and exit without starting.
            #[arg(long)]
            pub print_config: bool,
            $(
                #[arg(long = $key, help = help($doc, $unit, default_text::<$ty>($default)))]
                pub $field: Option<$ty>,
            )*
            $(
                #[arg(long = $okey, help = help_unset($odoc, $ounit, $unset))]
                pub $ofield: Option<$oty>,
            )*
        }

        /// The keys of a configuration file, each optional.
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct FileConfig {
            $( #[serde(rename = $key)] pub $field: Option<$ty>, )*
            $( #[serde(rename = $okey)] pub $ofield: Option<$oty>, )*
        }

        /// The effective configuration of `ringflow serve`.
        #[derive(Debug, Clone, PartialEq, Serialize)]
        pub struct ServeConfig {
            $(
                #[doc = $doc]
                #[serde(rename = $key)]
                pub $field: $ty,
            )*
            $(
                #[doc = $odoc]
                #[serde(rename = $okey, skip_serializing_if = "Option::is_none")]
                pub $ofield: Option<$oty>,
            )*
        }

        impl Default for ServeConfig {
            fn default() -> ServeConfig {
                ServeConfig {
                    $( $field: $default, )*
                    $( $ofield: None, )*
                }
            }
        }

        impl ServeConfig {
            fn overlay_file(&mut self, file: FileConfig) {
                $( if let Some(value) = file.$field { self.$field = value; } )*
                $( if file.$ofield.is_some() { self.$ofield = file.$ofield; } )*
            }

            fn overlay_flags(&mut self, flags: &Flags) {
                $( if let Some(value) = &flags.$field { self.$field = value.clone(); } )*
                $( if flags.$ofield.is_some() { self.$ofield = flags.$ofield.clone(); } )*
            }
        }

        /// Every option, in the order `--print-config` prints them.
        pub const OPTIONS: &[OptionDoc] = &[
            $( OptionDoc {
                key: $key,
                doc: $doc,
                unit: $unit,
                when_unset: None,
            }, )*
            $( OptionDoc {
                key: $okey,
                doc: $odoc,
                unit: $ounit,
                when_unset: Some($unset),
            }, )*
        ];
    };
}

serve_options! {
    with_default {
        data "data": PathBuf = PathBuf::from("ringflow-data"), "path",
            "The data directory: journals, snapshots and the SQLite cold store (created if missing)";
        listen "listen": String = "127.0.0.1:26500".to_string(), "HOST:PORT",
            "The address of shard 0 on a single node; shard i listens on PORT+i; PORT 0 picks free ports and prints them";
        segment_mib "segment-mib": u64 = 64, "MiB",
            "Journal segment size";
        spare_segments "spare-segments": usize = crate::journal::writer::SPARE_SEGMENTS_DEFAULT, "segments per shard, 0: delete",
            "Covered journal segments kept and reused for new ones (their blocks are written already, so their fdatasyncs flush data only, and nothing is unlinked); the others are deleted";
        prefill_segments "prefill-segments": usize = crate::journal::writer::PREFILL_SEGMENTS_DEFAULT, "segments per shard, 0: none",
            "On a shard's first start, write zeros through this many spare segments (at most spare-segments) so that its first segments are written-through as well";
        snapshot_every_records "snapshot-every-records": u64 = crate::shard::SNAPSHOT_EVERY_RECORDS_DEFAULT, "records, 0: never",
            "Take a snapshot after this many journal records";
        snapshot_every_mib "snapshot-every-mib": u64 = crate::shard::SNAPSHOT_EVERY_BYTES_DEFAULT >> 20, "MiB, 0: never",
            "Take a snapshot after this much journal";
        frame_bytes_max "frame-bytes-max": usize = ServerLimits::default().frame_bytes_max, "bytes",
            "Longest frame a client may send";
        frame_budget_mib "frame-budget-mib": usize = ServerLimits::default().frame_budget_bytes >> 20, "MiB per shard",
            "Frames a shard holds at once (being read or not yet answered); more wait to be read";
        unsent_mib_per_connection_max "unsent-mib-per-connection-max": usize = ServerLimits::default().unsent_bytes_per_connection_max >> 20, "MiB",
            "Answers a connection may have waiting for its client to read them; past it the connection's requests are not read until the client reads";
        frame_read_timeout_ms "frame-read-timeout-ms": u64 = ServerLimits::default().frame_read_timeout_ms, "ms",
            "How long a frame's body may take to arrive after its length; a slower one is refused (TIMEOUT) and its connection closed, giving its bytes back to the budget";
        inflight_per_shard_max "inflight-per-shard-max": usize = ServerLimits::default().inflight_per_shard_max, "requests",
            "Requests in flight per shard before BUSY";
        inflight_per_connection_max "inflight-per-connection-max": usize = ServerLimits::default().inflight_per_connection_max, "requests",
            "Requests in flight per connection before BUSY";
        connections_per_shard_max "connections-per-shard-max": usize = ServerLimits::default().connections_per_shard_max, "connections",
            "Open connections per shard; more are refused with BUSY";
        subscriptions_per_connection_max "subscriptions-per-connection-max": usize = ServerLimits::default().subscriptions_per_connection_max, "subscriptions",
            "Job subscriptions per connection";
        busy_retry_after_ms "busy-retry-after-ms": u32 = ServerLimits::default().busy_retry_after_ms, "ms",
            "The retry-after sent with BUSY";
        await_timeout_default_ms "await-timeout-default-ms": u32 = ServerLimits::default().await_timeout_default_ms, "ms",
            "How long an awaited result is waited for when the request says 0";
        await_timeout_max_ms "await-timeout-max-ms": u32 = ServerLimits::default().await_timeout_max_ms, "ms",
            "The longest awaited-result wait a request may ask for";
        task_listener_wait_ms "task-listener-wait-ms": u32 = ServerLimits::default().task_listener_wait_ms, "ms",
            "How long a user task's completion, assignment or update that waits for its task listeners is waited for before the request is answered TIMEOUT (the transition goes on)";
        long_poll_max_ms "long-poll-max-ms": u32 = ServerLimits::default().long_poll_max_ms, "ms",
            "The longest long poll for jobs";
        lease_default_ms "lease-default-ms": u64 = ServerLimits::default().lease_default_ms, "ms",
            "A job's lease when the request says 0";
        shutdown_grace_ms "shutdown-grace-ms": u64 = ServerLimits::default().shutdown_grace_ms, "ms",
            "How long a shutdown waits for in-flight requests before closing connections";
        export_lag_warn_records "export-lag-warn-records": u64 = crate::shard::EXPORT_LAG_WARN_RECORDS_DEFAULT, "records",
            "Warn (log and ringflow_exporter_lag_alarm) when this many durable records of a shard are not in the cold store yet";
        export_lag_max_records "export-lag-max-records": u64 = crate::shard::EXPORT_LAG_MAX_RECORDS_DEFAULT, "records",
            "Refuse new work (create, publish, deploy) with BUSY when this many durable records of a shard are not in the cold store yet";
        history_level "history-level": String = crate::cold::HistoryLevel::default().name().to_string(), "full or instances",
            "What the cold store keeps: `full` (process instances, every element instance, jobs, incidents, variables) or `instances` (the same without element instances, most of the rows: a faster exporter, no element history)";
        history_ttl "history-ttl": String = "0".to_string(), "a duration: 30d, 12h, 90m, 30s; 0: keep forever",
            "Delete process instances from the cold store (with their element instances, jobs, user tasks, incidents and variables) once they ended this long ago; active instances are kept however old";
        io_memory_kib "io-memory-kib": usize = runtime::IO_MEMORY_BYTES_DEFAULT >> 10, "KiB per shard",
            "io_uring I/O memory, registered (locked) with each of a shard's 3 rings";
        ring_depth "ring-depth": usize = runtime::RING_DEPTH_DEFAULT, "entries",
            "io_uring submission ring depth";
        slow_commit_ms "slow-commit-ms": u64 = crate::shard::SLOW_COMMIT_MICROS_DEFAULT / 1000, "ms, 0: never",
            "Log a commit that takes this long (batch wait, segment, write, fdatasync, release) with where the time went";
        journal_sync "journal-sync": String = crate::journal::writer::JournalSync::default().name().to_string(), "fdatasync or dsync",
            "How a journal batch is made durable: `fdatasync` (a write, then an fdatasync, which io_uring hands to a kernel worker thread on the shard's CPU) or `dsync` (segments opened O_DSYNC: each write returns durable, with no fdatasync and no worker thread; two batches in flight, released in LSN order)";
        io_worker_slice_us "io-worker-slice-us": u64 = 0, "µs, 0: off (else 100 to 100000)",
            "Give each shard's io_uring worker threads (which run its fdatasyncs) this scheduler slice, so that a woken worker preempts the shard instead of waiting out the shard's slice (Linux 6.12 or later; threads that are not SCHED_OTHER or SCHED_BATCH are left alone)";
    }
    optional {
        shards "shards": usize, "count", "Shards to run on a single node",
            unset "one per CPU this process may use";
        advertise "advertise": String, "host", "The host clients are told to use in the topology; needed when listening on 0.0.0.0",
            unset "the listen host, or the node's host in the cluster file";
        bind "bind": String, "host", "Bind this host instead of the one clients use (for example 0.0.0.0 in a container)",
            unset "the host clients use";
        cpus "cpus": CpuList, "CPU numbers", "The CPUs of the shards, shard i on the i-th",
            unset "the first CPUs this process may use";
        cluster "cluster": PathBuf, "path", "The cluster file (TOML: `[[node]]` tables with host, port, shards) for a multi-node cluster",
            unset "a single node";
        node "node": NodeSpec, "index or \"ordinal\"", "This node's index in the cluster file; `ordinal` takes the number after the last - of the host name",
            unset "required with cluster";
        cold_store "cold-store": String, "none, sqlite-shards:DIR, sqlite:PATH or postgres://URL",
            "Where history goes (sqlite-shards: a SQLite file per shard, whose exporters write side by side; sqlite: one file the shards take turns on)",
            unset "SQLite, a file per shard in DATA/cold/ (DATA/cold.db where an earlier ringflow made it)";
        metrics "metrics": SocketAddr, "HOST:PORT", "Serve Prometheus metrics at http://HOST:PORT/metrics",
            unset "off";
    }
}

/// Reads a configuration file. Unknown keys and values of the wrong type are errors that name
/// the key, the line and the file.
pub fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
    parse_file(&text, path)
}

/// Parses a configuration file's text; `path` names it in errors and anchors relative paths.
pub fn parse_file(text: &str, path: &Path) -> anyhow::Result<FileConfig> {
    let mut file: FileConfig = toml::from_str(text)
        .map_err(|error| anyhow::anyhow!("{}: {}", path.display(), error.to_string().trim()))?;
    let folder = path.parent().unwrap_or(Path::new(""));
    if let Some(data) = &mut file.data
        && data.is_relative()
    {
        *data = folder.join(&*data);
    }
    if let Some(cluster) = &mut file.cluster
        && cluster.is_relative()
    {
        *cluster = folder.join(&*cluster);
    }
    Ok(file)
}

/// The effective configuration: the defaults, then the file of `--config`, then the flags.
pub fn effective(flags: &Flags) -> anyhow::Result<ServeConfig> {
    let mut config = ServeConfig::default();
    if let Some(path) = &flags.config {
        config.overlay_file(read_file(path)?);
    }
    config.overlay_flags(flags);
    Ok(config)
}

/// What a node runs, resolved from a [`ServeConfig`] and checked.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The cluster.
    pub topology: Topology,
    /// This node's index.
    pub node: u16,
    /// This node.
    pub me: Node,
    /// The CPU of each shard.
    pub cpus: Vec<usize>,
    /// Whether the CPUs were chosen (true) or named.
    pub cpus_chosen: bool,
    /// The address the shards bind.
    pub bind_host: String,
    /// The server's limits.
    pub limits: ServerLimits,
    /// The shards' journal, snapshot and export settings.
    pub shard: ShardConfig,
    /// The cold store, if any.
    pub cold_store: Option<Target>,
    /// What the exporters write to it.
    pub history: crate::cold::HistoryLevel,
    /// How long the cold store keeps an ended process instance; `None`: for good.
    pub history_ttl: Option<Duration>,
    /// I/O memory per shard, in bytes.
    pub io_memory_bytes: usize,
    /// The slice of the shards' io_uring workers, if set.
    pub io_worker_slice: Option<Duration>,
    /// Settings that run, but slower than they could: `serve` prints each at the start.
    pub warnings: Vec<String>,
}

/// The cold store `serve` uses: `--cold-store`, or SQLite in the data directory
/// ([`crate::cold::default_target`]).
pub fn cold_store_target(data: &Path, cold_store: Option<&str>) -> anyhow::Result<Option<Target>> {
    match cold_store {
        None => Ok(Some(crate::cold::default_target(data))),
        Some("none") => Ok(None),
        Some(text) => Target::parse(text)
            .map(Some)
            .map_err(|error| anyhow::anyhow!("cold-store: {error}")),
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterFile {
    node: Vec<ClusterNode>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterNode {
    host: String,
    port: u16,
    shards: u16,
}

/// Reads a cluster file into a topology.
pub fn read_cluster(path: &Path) -> anyhow::Result<Topology> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the cluster file {}", path.display()))?;
    let file: ClusterFile =
        toml::from_str(&text).with_context(|| format!("cluster file {}", path.display()))?;
    let mut nodes = Vec::with_capacity(file.node.len());
    let mut first_shard = 0u32;
    for (index, node) in file.node.iter().enumerate() {
        if node.port == 0 {
            bail!(
                "cluster file {}: node {index} has port 0; every node of a cluster needs a \
                 fixed base port that the others can reach (port 0, free ports, is only for \
                 --listen on a single node)",
                path.display()
            );
        }
        nodes.push(Node {
            id: u16::try_from(index).context("too many nodes")?,
            host: node.host.clone(),
            base_port: node.port,
            first_shard: u16::try_from(first_shard).context("too many shards")?,
            shard_count: node.shards,
        });
        first_shard += u32::from(node.shards);
    }
    Topology::uniform(nodes).with_context(|| format!("cluster file {}", path.display()))
}

/// Splits `HOST:PORT` (the host may be a bracketed IPv6 address).
pub fn split_listen(listen: &str) -> anyhow::Result<(String, u16)> {
    let (host, port) = listen
        .rsplit_once(':')
        .with_context(|| format!("listen = {listen}: expected HOST:PORT"))?;
    let port = port
        .parse::<u16>()
        .with_context(|| format!("listen = {listen}: {port} is not a port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((host.to_string(), port))
}

impl ServeConfig {
    /// Resolves and checks everything `serve` needs; `usable` is the CPUs this process may
    /// use. Reads the cluster file (and the host name for `node = "ordinal"`).
    pub fn plan(&self, usable: &[usize]) -> anyhow::Result<Plan> {
        let (topology, node) = match (&self.cluster, &self.node) {
            (Some(path), Some(node)) => {
                if self.shards.is_some() {
                    bail!("shards: with a cluster file, each node's shards come from the file");
                }
                if self.advertise.is_some() {
                    bail!("advertise: with a cluster file, each node's host comes from the file");
                }
                let topology = read_cluster(path)?;
                let node = node.resolve()?;
                if usize::from(node) >= topology.nodes.len() {
                    bail!(
                        "node {node}: the cluster file {} lists {} nodes (0 to {})",
                        path.display(),
                        topology.nodes.len(),
                        topology.nodes.len() - 1
                    );
                }
                (topology, node)
            }
            (Some(_), None) => bail!("cluster is set but node is not: which node is this?"),
            (None, Some(_)) => bail!("node is set but cluster is not: name the cluster file"),
            (None, None) => {
                let (host, port) = split_listen(&self.listen)?;
                let shards = self.shards.unwrap_or(usable.len());
                if shards == 0 || shards > runtime::SHARDS_MAX {
                    bail!("shards must be 1 to {}, not {shards}", runtime::SHARDS_MAX);
                }
                let node = Node {
                    id: 0,
                    host: self.advertise.clone().unwrap_or(host),
                    base_port: port,
                    first_shard: 0,
                    shard_count: shards as u16,
                };
                (Topology::uniform(vec![node])?, 0)
            }
        };
        let me = topology.nodes[usize::from(node)].clone();
        let shards = usize::from(me.shard_count);
        let (cpus, cpus_chosen) = match &self.cpus {
            None => {
                if shards > usable.len() {
                    bail!(
                        "{shards} shards but this process may use {} CPUs ({usable:?}); run \
                         fewer shards or name the CPUs with cpus",
                        usable.len()
                    );
                }
                (usable[..shards].to_vec(), true)
            }
            Some(CpuList(cpus)) => {
                if cpus.len() != shards {
                    bail!("cpus names {} CPUs for {shards} shards", cpus.len());
                }
                let mut sorted = cpus.clone();
                sorted.sort_unstable();
                if let Some(pair) = sorted.windows(2).find(|pair| pair[0] == pair[1]) {
                    bail!(
                        "cpus names CPU {} twice: each shard needs a CPU of its own",
                        pair[0]
                    );
                }
                (cpus.clone(), false)
            }
        };
        let limits = ServerLimits {
            frame_bytes_max: self.frame_bytes_max,
            frame_budget_bytes: self
                .frame_budget_mib
                .checked_mul(1 << 20)
                .context("frame-budget-mib is too large")?,
            frame_read_timeout_ms: self.frame_read_timeout_ms,
            unsent_bytes_per_connection_max: self
                .unsent_mib_per_connection_max
                .checked_mul(1 << 20)
                .context("unsent-mib-per-connection-max is too large")?,
            inflight_per_shard_max: self.inflight_per_shard_max,
            inflight_per_connection_max: self.inflight_per_connection_max,
            connections_per_shard_max: self.connections_per_shard_max,
            subscriptions_per_connection_max: self.subscriptions_per_connection_max,
            busy_retry_after_ms: self.busy_retry_after_ms,
            await_timeout_default_ms: self.await_timeout_default_ms,
            await_timeout_max_ms: self.await_timeout_max_ms,
            task_listener_wait_ms: self.task_listener_wait_ms,
            long_poll_max_ms: self.long_poll_max_ms,
            lease_default_ms: self.lease_default_ms,
            shutdown_grace_ms: self.shutdown_grace_ms,
        };
        limits.check().map_err(anyhow::Error::msg)?;
        if self.await_timeout_default_ms > self.await_timeout_max_ms {
            bail!(
                "await-timeout-default-ms ({}) is longer than await-timeout-max-ms ({})",
                self.await_timeout_default_ms,
                self.await_timeout_max_ms
            );
        }
        let mut journal = JournalConfig::new(me.first_shard);
        journal.segment_bytes = self
            .segment_mib
            .checked_mul(1 << 20)
            .context("segment-mib is too large")?;
        journal.spare_segments = self.spare_segments;
        journal.prefill_segments = self.prefill_segments.min(self.spare_segments);
        journal.sync = crate::journal::writer::JournalSync::parse(&self.journal_sync)
            .map_err(anyhow::Error::msg)?;
        journal
            .check()
            .map_err(|error| anyhow::anyhow!("segment-mib or spare-segments: {error}"))?;
        if self.export_lag_warn_records == 0
            || self.export_lag_max_records < self.export_lag_warn_records
        {
            bail!(
                "export-lag-warn-records must be at least 1 and at most export-lag-max-records \
                 ({} and {} given)",
                self.export_lag_warn_records,
                self.export_lag_max_records
            );
        }
        if self.io_memory_kib == 0 || self.ring_depth == 0 {
            bail!("io-memory-kib and ring-depth must be at least 1");
        }
        let shard = ShardConfig {
            journal,
            snapshot_every_records: self.snapshot_every_records,
            snapshot_every_bytes: self
                .snapshot_every_mib
                .checked_mul(1 << 20)
                .context("snapshot-every-mib is too large")?,
            export: ExportLimits {
                warn_lag_records: self.export_lag_warn_records,
                max_lag_records: self.export_lag_max_records,
            },
            cluster_shards: u16::try_from(topology.shard_count())
                .context("the cluster has more shards than keys can name")?,
            slow_commit_micros: self
                .slow_commit_ms
                .checked_mul(1000)
                .context("slow-commit-ms is too large")?,
        };
        let cold_store = cold_store_target(&self.data, self.cold_store.as_deref())?;
        let history =
            crate::cold::HistoryLevel::parse(&self.history_level).map_err(anyhow::Error::msg)?;
        let bind_host = match (&self.bind, &self.cluster) {
            (Some(bind), _) => bind.clone(),
            (None, Some(_)) => me.host.clone(),
            (None, None) => split_listen(&self.listen)?.0,
        };
        if bind_host.parse::<std::net::IpAddr>().is_err()
            && (bind_host.is_empty() || bind_host.contains([':', '/', ' ']))
        {
            bail!(
                "bind = {bind_host:?}: not a host (give a host name or an IP address without a \
                 port; the ports come from listen or the cluster file)"
            );
        }
        if me.host == "0.0.0.0" || me.host == "::" {
            bail!(
                "clients cannot connect to {}: name the address they should use with advertise",
                me.host
            );
        }
        let slices =
            crate::sched::IO_WORKER_SLICE_MICROS_MIN..=crate::sched::IO_WORKER_SLICE_MICROS_MAX;
        let io_worker_slice = match self.io_worker_slice_us {
            0 => None,
            micros if slices.contains(&micros) => Some(Duration::from_micros(micros)),
            micros => bail!(
                "io-worker-slice-us = {micros}: give 0 (off) or {} to {} (the slices Linux takes)",
                slices.start(),
                slices.end()
            ),
        };
        let ttl_text = self.history_ttl.trim();
        if ttl_text != "0" && !ttl_text.is_empty() && ttl_text.bytes().all(|b| b.is_ascii_digit()) {
            // A bare number is milliseconds to parse_millis: `30` meant as days would delete
            // every ended instance at once.
            bail!(
                "history-ttl = {ttl_text}: give a unit (30d, 12h, 90m, 30s), or 0 to keep everything"
            );
        }
        let history_ttl = match crate::cli::client::parse_millis(ttl_text) {
            Ok(0) => None,
            Ok(millis) => Some(Duration::from_millis(millis)),
            Err(error) => bail!("history-ttl: {error}"),
        };
        let mut warnings = Vec::new();
        if history_ttl.is_some() && cold_store.is_none() {
            warnings.push(
                "history-ttl has no effect without a cold store (cold-store = \"none\")"
                    .to_string(),
            );
        }
        if io_worker_slice.is_some() {
            match crate::sched::kernel_takes_slices() {
                Ok(true) => {}
                Ok(false) => warnings.push(
                    "io-worker-slice-us has no effect: this kernel keeps the default slice of \
                     SCHED_OTHER threads (Linux 6.12 or later takes sched_attr.sched_runtime)"
                        .to_string(),
                ),
                Err(error) => warnings.push(format!(
                    "io-worker-slice-us has no effect: sched_setattr fails here ({error})"
                )),
            }
        }
        if let Some(Target::Sqlite(path)) = &cold_store
            && me.shard_count > 1
        {
            warnings.push(format!(
                "the SQLite cold store {} is one file for {} shards: their exporters take turns \
                 at its write lock (a file each ran one_task 43% faster at 2 shards, \
                 bench/RESULTS.md); a file per shard is cold-store = \"sqlite-shards:DIR\" (a \
                 new store: the history in this file stays readable with `ringflow instances \
                 --cold-store sqlite:{}`)",
                path.display(),
                me.shard_count,
                path.display()
            ));
        }
        let retired = crate::journal::writer::segments_per_snapshot_max(
            shard.snapshot_every_bytes,
            shard.journal.segment_bytes,
            shard.journal.batch.bytes_max,
        );
        if shard.journal.spare_segments > 0 && shard.journal.spare_segments < retired {
            warnings.push(format!(
                "spare-segments = {} is fewer than the {retired} segments one snapshot period \
                 (snapshot-every-mib = {}, segment-mib = {}) can retire: the others are deleted, \
                 and a deletion stalls the journal's writes (11-29 ms per 64 MiB segment on ext4 \
                 with discard, see deploy/tuning.md); set spare-segments to {retired}",
                shard.journal.spare_segments, self.snapshot_every_mib, self.segment_mib
            ));
        }
        Ok(Plan {
            topology,
            node,
            me,
            cpus,
            cpus_chosen,
            bind_host,
            limits,
            shard,
            cold_store,
            history,
            history_ttl,
            io_memory_bytes: self
                .io_memory_kib
                .checked_mul(1024)
                .context("io-memory-kib is too large")?,
            io_worker_slice,
            warnings,
        })
    }

    /// The configuration as TOML: every option with its documentation, unit and default; set
    /// options as keys, unset ones as comments saying what they resolve to.
    pub fn to_toml(&self, plan: Option<&Plan>) -> String {
        let values = toml::Table::try_from(self).unwrap_or_default();
        let defaults = toml::Table::try_from(ServeConfig::default()).unwrap_or_default();
        let mut out = String::new();
        out.push_str(
            "# ringflow serve: the effective configuration (defaults, then --config FILE, then\n\
             # flags). Each key is also a flag of `ringflow serve`: --KEY VALUE.\n",
        );
        for option in OPTIONS {
            let _ = writeln!(out, "\n# {}.", option.doc);
            match (option.when_unset, defaults.get(option.key)) {
                (Some(unset), _) => {
                    let _ = writeln!(out, "# Unit: {}. When unset: {unset}.", option.unit);
                }
                (None, Some(default)) => {
                    let _ = writeln!(out, "# Unit: {}. Default: {default}.", option.unit);
                }
                (None, None) => {}
            }
            match values.get(option.key) {
                Some(value) => {
                    let _ = writeln!(out, "{} = {value}", option.key);
                }
                None => {
                    let _ = writeln!(out, "# {} =", option.key);
                }
            }
        }
        if let Some(plan) = plan {
            let cold = match &plan.cold_store {
                Some(target) => target.describe(),
                None => "none".to_string(),
            };
            let _ = write!(
                out,
                "\n# Resolved on this machine: node {} of {}, {} shard(s) (ids {}..={}) on CPUs \
                 {:?}, clients use {}:{}..={}, bound to {}, cold store {cold}, {} KiB of locked \
                 memory needed.\n",
                plan.node,
                plan.topology.nodes.len(),
                plan.me.shard_count,
                plan.me.first_shard,
                plan.me.first_shard + plan.me.shard_count - 1,
                plan.cpus,
                plan.me.host,
                plan.me.base_port,
                u32::from(plan.me.base_port) + u32::from(plan.me.shard_count) - 1,
                plan.bind_host,
                crate::preflight::memlock_needed_bytes(plan.cpus.len(), plan.io_memory_bytes)
                    .div_ceil(1024),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        flags: Flags,
    }

    fn flags(args: &[&str]) -> Flags {
        let mut all = vec!["serve"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).expect("flags parse").flags
    }

    #[test]
    fn keys_match_serde_names_and_every_option_is_documented() {
        let config = ServeConfig {
            shards: Some(1),
            advertise: Some("a".into()),
            bind: Some("b".into()),
            cpus: Some(CpuList(vec![0])),
            cluster: Some("c".into()),
            node: Some(NodeSpec::Index(0)),
            cold_store: Some("none".into()),
            metrics: Some("127.0.0.1:1".parse().unwrap()),
            ..ServeConfig::default()
        };
        let table = toml::Table::try_from(&config).expect("serializes");
        let mut serde_keys: Vec<&str> = table.keys().map(String::as_str).collect();
        let mut keys: Vec<&str> = OPTIONS.iter().map(|option| option.key).collect();
        serde_keys.sort_unstable();
        keys.sort_unstable();
        assert_eq!(serde_keys, keys);
        for option in OPTIONS {
            assert!(
                !option.doc.is_empty() && !option.unit.is_empty(),
                "{option:?}"
            );
        }
    }

    #[test]
    fn the_readme_lists_every_option() {
        let readme = include_str!("../../README.md");
        for option in OPTIONS {
            assert!(
                readme.contains(&format!("| `{}` |", option.key)),
                "README.md's option table lacks {}",
                option.key
            );
        }
    }

    #[test]
    fn flags_override_the_file_which_overrides_the_defaults() {
        let dir = std::env::temp_dir().join(format!("ringflow-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ringflow.toml");
        std::fs::write(
            &path,
            "data = \"here\"\nsegment-mib = 16\nring-depth = 64\ncpus = [1]\nnode = \"ordinal\"\n",
        )
        .unwrap();
        let path_text = path.to_str().unwrap();
        let config = effective(&flags(&["--config", path_text, "--segment-mib", "32"])).unwrap();
        assert_eq!(config.segment_mib, 32, "the flag wins");
        assert_eq!(config.ring_depth, 64, "the file wins over the default");
        assert_eq!(
            config.data,
            dir.join("here"),
            "relative to the file's folder"
        );
        assert_eq!(config.cpus, Some(CpuList(vec![1])));
        assert_eq!(config.node, Some(NodeSpec::Ordinal));
        assert_eq!(
            config.snapshot_every_records,
            crate::shard::SNAPSHOT_EVERY_RECORDS_DEFAULT
        );
        let config = effective(&flags(&["--cpus", "0,3", "--data", "there"])).unwrap();
        assert_eq!(config.cpus, Some(CpuList(vec![0, 3])));
        assert_eq!(
            config.data,
            PathBuf::from("there"),
            "flags: relative to the cwd"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_files_name_the_key_and_the_line() {
        let path = Path::new("/etc/ringflow/ringflow.toml");
        let error = parse_file("data = \"x\"\nsegmnt-mib = 3\n", path).unwrap_err();
        let text = format!("{error:#}");
        assert!(
            text.contains("segmnt-mib") && text.contains("line 2"),
            "{text}"
        );
        assert!(text.contains("/etc/ringflow/ringflow.toml"), "{text}");
        let error = parse_file("ring-depth = \"deep\"\n", path).unwrap_err();
        assert!(format!("{error:#}").contains("ring-depth"), "{error:#}");
        let error = parse_file("node = \"first\"\n", path).unwrap_err();
        assert!(format!("{error:#}").contains("ordinal"), "{error:#}");
        let error = parse_file("data = [\n", path).unwrap_err();
        assert!(format!("{error:#}").contains("line 1"), "{error:#}");
    }

    #[test]
    fn printed_configuration_reads_back_as_the_same_configuration() {
        let config = effective(&flags(&[
            "--shards",
            "2",
            "--metrics",
            "127.0.0.1:9600",
            "--cold-store",
            "none",
            "--lease-default-ms",
            "1000",
        ]))
        .unwrap();
        let plan = config.plan(&[0, 1]).unwrap();
        let text = config.to_toml(Some(&plan));
        for option in OPTIONS {
            assert!(
                text.contains(option.doc),
                "{} is not documented",
                option.key
            );
        }
        assert!(text.contains("\n# cpus =\n"), "{text}");
        assert!(text.contains("on CPUs [0, 1]"), "{text}");
        let back = parse_file(&text, Path::new("")).unwrap();
        let mut read = ServeConfig::default();
        read.overlay_file(back);
        assert_eq!(read, config);
    }

    #[test]
    fn plans_reject_what_cannot_run_and_say_why() {
        let plan_of = |args: &[&str]| effective(&flags(args)).unwrap().plan(&[0, 1]);
        let error = |args: &[&str]| format!("{:#}", plan_of(args).unwrap_err());
        assert!(error(&["--shards", "3"]).contains("3 shards but"));
        assert!(
            error(&["--frame-bytes-max", "1"])
                .contains("frame_bytes_max (1) must be at least 65536 (64 KiB)"),
            "{}",
            error(&["--frame-bytes-max", "1"])
        );
        assert!(plan_of(&["--frame-bytes-max", "65536"]).is_ok());
        assert!(
            error(&["--lease-default-ms", "0"]).contains("lease_default_ms must be at least 1")
        );
        assert!(
            error(&["--segment-mib", "100000"]).contains("over SEGMENT_BYTES_MAX"),
            "{}",
            error(&["--segment-mib", "100000"])
        );
        assert!(plan_of(&["--segment-mib", "4096"]).is_ok());
        assert!(error(&["--shards", "0"]).contains("shards must be 1"));
        assert!(error(&["--cpus", "0,1", "--shards", "1"]).contains("cpus names 2"));
        assert!(error(&["--cpus", "1,1", "--shards", "2"]).contains("CPU 1 twice"));
        assert!(error(&["--node", "1"]).contains("cluster is not"));
        assert!(error(&["--listen", "nowhere"]).contains("HOST:PORT"));
        assert!(error(&["--listen", "0.0.0.0:1"]).contains("advertise"));
        assert!(error(&["--bind", "127.0.0.1:26900"]).contains("without a port"));
        assert!(error(&["--bind", ""]).contains("not a host"));
        assert!(plan_of(&["--bind", "::"]).is_ok());
        assert!(plan_of(&["--bind", "localhost"]).is_ok());
        assert!(error(&["--segment-mib", "0"]).contains("segment-mib"));
        assert!(
            error(&[
                "--export-lag-warn-records",
                "10",
                "--export-lag-max-records",
                "5"
            ])
            .contains("export-lag-warn-records")
        );
        assert!(error(&["--frame-budget-mib", "0"]).contains("frame_budget_bytes"));
        assert!(
            error(&[
                "--await-timeout-default-ms",
                "9",
                "--await-timeout-max-ms",
                "8"
            ])
            .contains("await-timeout")
        );
        // Port 0 picks free ports on a single node; a cluster file names fixed ones.
        assert_eq!(
            plan_of(&["--listen", "127.0.0.1:0"]).unwrap().me.base_port,
            0
        );
        // A folder of this test's own: the tests of this module run side by side.
        let dir =
            std::env::temp_dir().join(format!("ringflow-config-port-0-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cluster = dir.join("cluster.toml");
        std::fs::write(
            &cluster,
            "[[node]]\nhost = \"127.0.0.1\"\nport = 7000\nshards = 1\n\n\
             [[node]]\nhost = \"127.0.0.1\"\nport = 0\nshards = 1\n",
        )
        .unwrap();
        let refused = format!("{:#}", read_cluster(&cluster).unwrap_err());
        assert!(
            refused.contains("node 1 has port 0") && refused.contains("fixed base port"),
            "{refused}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
        let plan = plan_of(&["--listen", "0.0.0.0:7000", "--advertise", "db1"]).unwrap();
        assert_eq!(
            (plan.me.host.as_str(), plan.bind_host.as_str()),
            ("db1", "0.0.0.0")
        );
        assert_eq!(plan.me.base_port, 7000);
        assert!(plan.cpus_chosen);
        assert_eq!(
            plan.shard.slow_commit_micros,
            crate::shard::SLOW_COMMIT_MICROS_DEFAULT
        );
        let plan = plan_of(&["--slow-commit-ms", "5"]).unwrap();
        assert_eq!(plan.shard.slow_commit_micros, 5_000);
        use crate::journal::writer::JournalSync;
        assert_eq!(plan.shard.journal.sync, JournalSync::Fdatasync);
        let dsync = plan_of(&["--journal-sync", "dsync"]).unwrap();
        assert_eq!(dsync.shard.journal.sync, JournalSync::Dsync);
        assert_eq!(plan.io_worker_slice, None, "off by default");
        let sliced = plan_of(&["--io-worker-slice-us", "100"]).unwrap();
        assert_eq!(sliced.io_worker_slice, Some(Duration::from_micros(100)));
        for outside in ["99", "100001"] {
            let refused = error(&["--io-worker-slice-us", outside]);
            assert!(
                refused.contains(&format!("io-worker-slice-us = {outside}"))
                    && refused.contains("100 to 100000"),
                "{refused}"
            );
        }
        use crate::cold::HistoryLevel;
        assert_eq!(plan.history, HistoryLevel::Full, "full history by default");
        assert_eq!(plan.history_ttl, None, "history kept for good by default");
        let ttl = plan_of(&["--history-ttl", "30d"]).unwrap();
        assert_eq!(ttl.history_ttl, Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(plan_of(&["--history-ttl", "0"]).unwrap().history_ttl, None);
        let refused = error(&["--history-ttl", "a month"]);
        assert!(
            refused.contains("history-ttl") && refused.contains("not a duration"),
            "{refused}"
        );
        let bare = error(&["--history-ttl", "30"]);
        assert!(bare.contains("give a unit"), "{bare}");
        let unit = error(&["--history-ttl", "1y"]);
        assert!(unit.contains("unknown unit"), "{unit}");
        let instances = plan_of(&["--history-level", "instances"]).unwrap();
        assert_eq!(instances.history, HistoryLevel::Instances);
        let refused = error(&["--history-level", "audit"]);
        assert!(
            refused.contains("history-level") && refused.contains("`audit`"),
            "{refused}"
        );
        let unknown = error(&["--journal-sync", "fsync"]);
        assert!(
            unknown.contains("journal-sync `fsync`") && unknown.contains("`dsync`"),
            "{unknown}"
        );
        assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
        // Too few spares for the snapshot period: it runs, with a warning that names the fix.
        let plan = plan_of(&["--spare-segments", "2"]).unwrap();
        assert_eq!(plan.warnings.len(), 1);
        assert!(
            plan.warnings[0].contains("set spare-segments to 5"),
            "{:?}",
            plan.warnings
        );
        let plan = plan_of(&["--spare-segments", "4", "--snapshot-every-mib", "128"]).unwrap();
        assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
        // No spares at all, or no snapshot by bytes: deletion was asked for, or no bound.
        assert!(
            plan_of(&["--spare-segments", "0"])
                .unwrap()
                .warnings
                .is_empty()
        );
        let plan = plan_of(&["--spare-segments", "1", "--snapshot-every-mib", "0"]).unwrap();
        assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
        // One SQLite file for several shards runs, with a warning that names a file each.
        let shared = plan_of(&["--shards", "2", "--cold-store", "sqlite:/var/h/cold.db"]).unwrap();
        assert_eq!(shared.warnings.len(), 1, "{:?}", shared.warnings);
        assert!(
            shared.warnings[0].contains("one file for 2 shards")
                && shared.warnings[0].contains("sqlite-shards:DIR"),
            "{:?}",
            shared.warnings
        );
        for args in [
            &["--shards", "1", "--cold-store", "sqlite:/var/h/cold.db"][..],
            &["--shards", "2", "--cold-store", "sqlite-shards:/var/h/cold"][..],
            &["--shards", "2"][..],
        ] {
            let plan = plan_of(args).unwrap();
            assert!(plan.warnings.is_empty(), "{args:?}: {:?}", plan.warnings);
        }
        assert!(error(&["--slow-commit-ms", "18446744073709551615"]).contains("slow-commit-ms"));
    }

    #[test]
    fn ordinals_come_from_statefulset_host_names() {
        assert_eq!(ordinal_of("ringflow-0"), Some(0));
        assert_eq!(ordinal_of("ringflow-12.ringflow.default.svc"), Some(12));
        assert_eq!(ordinal_of("my-flow-engine-3"), Some(3));
        assert_eq!(ordinal_of("ringflow"), None);
        assert_eq!(ordinal_of("ringflow-"), None);
        assert_eq!(ordinal_of("ringflow-x1"), None);
        assert_eq!("ordinal".parse::<NodeSpec>(), Ok(NodeSpec::Ordinal));
        assert_eq!("7".parse::<NodeSpec>(), Ok(NodeSpec::Index(7)));
        assert!("-1".parse::<NodeSpec>().is_err());
    }
}
