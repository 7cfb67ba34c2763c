//! `ringflow serve`: runs the shards of one node and serves the binary protocol.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, bail};
use ringflow_wire::{Node, Topology};

use crate::cold::Target;
use crate::journal::JournalConfig;
use crate::metrics::Registry;
use crate::runtime::{self, RuntimeConfig};
use crate::server::{ServerConfig, ServerLimits, serve_shard};
use crate::shard::ExportLimits;
use crate::shard::ShardConfig;

/// Runs a node: one shard per CPU, each listening on its own port.
///
/// Shard i listens on PORT+i of the --listen address. Data goes to DATA/shard-S/ (journal
/// and snapshots), S being the shard's cluster-wide id; a restart recovers from it. SIGTERM
/// or SIGINT stops it gracefully: no new connections, in-flight commands finish, a snapshot
/// is taken, exit status 0.
///
/// For a cluster, every node runs with the same --cluster file and its own --node; the file
/// lists the nodes in order:
///
///   [[node]]
///   host = "127.0.0.1"   # the address clients use, and the one the node binds
///   port = 26500         # its base port
///   shards = 2
///
/// Clients may contact any node: the topology they get covers them all.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The data directory (created if missing).
    #[arg(long, default_value = "ringflow-data")]
    data: PathBuf,
    /// Shards to run [default: one per CPU this process may use].
    #[arg(long, conflicts_with = "cluster")]
    shards: Option<usize>,
    /// The address of shard 0; shard i listens on PORT+i.
    #[arg(long, default_value = "127.0.0.1:26500", conflicts_with = "cluster")]
    listen: String,
    /// The host clients are told to use (in the topology) [default: the --listen host, or
    /// the node's host in the cluster file]. Needed when listening on 0.0.0.0.
    #[arg(long)]
    advertise: Option<String>,
    /// Bind this host instead of the one clients use (for example 0.0.0.0 in a container).
    #[arg(long)]
    bind: Option<String>,
    /// The CPUs to run the shards on, comma-separated (shard i on the i-th) [default: the
    /// first usable CPUs].
    #[arg(long, value_delimiter = ',')]
    cpus: Vec<usize>,
    /// This node's index in the cluster file.
    #[arg(long, requires = "cluster")]
    node: Option<u16>,
    /// The cluster file (TOML, see above).
    #[arg(long, requires = "node")]
    cluster: Option<PathBuf>,
    /// Journal segment size, in MiB.
    #[arg(long, default_value_t = 64)]
    segment_mib: u64,
    /// Take a snapshot after this many journal records.
    #[arg(long, default_value_t = crate::shard::SNAPSHOT_EVERY_RECORDS_DEFAULT)]
    snapshot_every_records: u64,
    /// Longest frame a client may send, in bytes.
    #[arg(long, default_value_t = ringflow_wire::frame::FRAME_BYTES_MAX_DEFAULT)]
    frame_bytes_max: usize,
    /// Requests in flight per shard before BUSY.
    #[arg(long, default_value_t = ServerLimits::default().inflight_per_shard_max)]
    inflight_per_shard_max: usize,
    /// Requests in flight per connection before BUSY.
    #[arg(long, default_value_t = ServerLimits::default().inflight_per_connection_max)]
    inflight_per_connection_max: usize,
    /// Where history goes: `none`, `sqlite:PATH` (or a path ending in .db), or a
    /// `postgres://user:password@host/db` URL [default: SQLite in DATA/cold.db].
    #[arg(long)]
    cold_store: Option<String>,
    /// Warn (log and the ringflow_exporter_lag_alarm metric) when this many durable journal
    /// records of a shard are not in the cold store yet.
    #[arg(long, default_value_t = crate::shard::EXPORT_LAG_WARN_RECORDS_DEFAULT)]
    export_lag_warn_records: u64,
    /// Refuse new work (create instance, publish message, deploy) with BUSY when this many
    /// durable records of a shard are not in the cold store yet. Their events wait in memory.
    #[arg(long, default_value_t = crate::shard::EXPORT_LAG_MAX_RECORDS_DEFAULT)]
    export_lag_max_records: u64,
    /// Serve Prometheus metrics at http://ADDR/metrics (for example 127.0.0.1:9600)
    /// [default: off].
    #[arg(long)]
    metrics: Option<std::net::SocketAddr>,
}

/// The cold store `serve` uses: `--cold-store`, or SQLite in the data directory.
pub fn cold_store_target(data: &Path, cold_store: Option<&str>) -> anyhow::Result<Option<Target>> {
    match cold_store {
        None => Ok(Some(Target::Sqlite(data.join(crate::cold::SQLITE_FILE)))),
        Some("none") => Ok(None),
        Some(text) => Target::parse(text)
            .map(Some)
            .map_err(|error| anyhow::anyhow!("--cold-store: {error}")),
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

fn split_listen(listen: &str) -> anyhow::Result<(String, u16)> {
    let (host, port) = listen
        .rsplit_once(':')
        .with_context(|| format!("--listen {listen}: expected HOST:PORT"))?;
    let port = port
        .parse::<u16>()
        .with_context(|| format!("--listen {listen}: {port} is not a port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((host.to_string(), port))
}

/// Runs `ringflow serve`.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let usable = runtime::usable_cpus();
    let (topology, node) = match (&args.cluster, args.node) {
        (Some(path), Some(node)) => {
            let topology = read_cluster(path)?;
            if usize::from(node) >= topology.nodes.len() {
                bail!(
                    "--node {node}: the cluster file {} lists {} nodes (0 to {})",
                    path.display(),
                    topology.nodes.len(),
                    topology.nodes.len() - 1
                );
            }
            if args.advertise.is_some() {
                bail!("--advertise: with --cluster, each node's host comes from the cluster file");
            }
            (topology, node)
        }
        _ => {
            let (host, port) = split_listen(&args.listen)?;
            let shards = args.shards.unwrap_or(usable.len());
            if shards == 0 || shards > runtime::SHARDS_MAX {
                bail!(
                    "--shards must be 1 to {}, not {shards}",
                    runtime::SHARDS_MAX
                );
            }
            let node = Node {
                id: 0,
                host: args.advertise.clone().unwrap_or(host),
                base_port: port,
                first_shard: 0,
                shard_count: shards as u16,
            };
            (Topology::uniform(vec![node])?, 0)
        }
    };
    let me = topology.nodes[usize::from(node)].clone();
    let shards = usize::from(me.shard_count);
    let cpus = if args.cpus.is_empty() {
        if shards > usable.len() {
            bail!(
                "{shards} shards but this process may use {} CPUs ({usable:?}); run fewer shards or name the CPUs with --cpus",
                usable.len()
            );
        }
        usable[..shards].to_vec()
    } else {
        if args.cpus.len() != shards {
            bail!("--cpus names {} CPUs for {shards} shards", args.cpus.len());
        }
        args.cpus.clone()
    };
    let limits = ServerLimits {
        frame_bytes_max: args.frame_bytes_max,
        inflight_per_shard_max: args.inflight_per_shard_max,
        inflight_per_connection_max: args.inflight_per_connection_max,
        ..ServerLimits::default()
    };
    limits.check().map_err(anyhow::Error::msg)?;
    let mut journal = JournalConfig::new(me.first_shard);
    journal.segment_bytes = args
        .segment_mib
        .checked_mul(1024 * 1024)
        .context("--segment-mib is too large")?;
    if args.export_lag_warn_records == 0
        || args.export_lag_max_records < args.export_lag_warn_records
    {
        bail!(
            "--export-lag-warn-records must be at least 1 and at most --export-lag-max-records \
             ({} and {} given)",
            args.export_lag_warn_records,
            args.export_lag_max_records
        );
    }
    let shard = ShardConfig {
        journal,
        snapshot_every_records: args.snapshot_every_records,
        export: ExportLimits {
            warn_lag_records: args.export_lag_warn_records,
            max_lag_records: args.export_lag_max_records,
        },
        ..ShardConfig::new(me.first_shard)
    };
    let cold_store = cold_store_target(&args.data, args.cold_store.as_deref())?;
    let registry = Arc::new(Registry::default());
    if let Some(addr) = args.metrics {
        let bound = crate::metrics::serve(addr, Arc::clone(&registry))
            .with_context(|| format!("--metrics {addr}: cannot listen"))?;
        eprintln!("ringflow: metrics at http://{bound}/metrics");
    }
    match &cold_store {
        Some(target) => eprintln!("ringflow: cold store: {}", target.describe()),
        None => eprintln!("ringflow: no cold store (--cold-store none): history is not kept"),
    }
    let config = RuntimeConfig {
        data_dir: args.data.clone(),
        first_shard: me.first_shard,
        cpus,
        io_memory_bytes: runtime::IO_MEMORY_BYTES_DEFAULT,
        ring_depth: runtime::RING_DEPTH_DEFAULT,
        shard,
        cold_store,
        metrics: Some(registry),
    };
    let bind_host = match (&args.bind, &args.cluster) {
        (Some(bind), _) => bind.clone(),
        (None, Some(_)) => me.host.clone(),
        (None, None) => split_listen(&args.listen)?.0,
    };
    if me.host == "0.0.0.0" || me.host == "::" {
        bail!(
            "clients cannot connect to {}: name the address they should use with --advertise",
            me.host
        );
    }
    let server = Arc::new(ServerConfig {
        bind_host,
        base_port: me.base_port,
        first_shard: me.first_shard,
        topology: topology.clone(),
        limits,
    });
    let shutdown = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, shutdown.clone())
            .context("cannot install the signal handlers")?;
    }
    eprintln!(
        "ringflow: node {node} of {} ({} shards in the cluster), shards {}..={} on {}:{}..={}, data in {}",
        topology.nodes.len(),
        topology.shard_count(),
        me.first_shard,
        me.first_shard + me.shard_count - 1,
        me.host,
        me.base_port,
        u32::from(me.base_port) + u32::from(me.shard_count) - 1,
        args.data.display()
    );
    let results = runtime::run(config, move |shard| serve_shard(shard, server, shutdown))
        .map_err(anyhow::Error::msg)?;
    let mut failed = false;
    for result in &results {
        if let Err(error) = result {
            eprintln!("ringflow: {error}");
            failed = true;
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
