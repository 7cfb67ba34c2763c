//! `ringflow serve`: runs the shards of one node and serves the binary protocol.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;

use crate::config::{self, Flags};
use crate::metrics::Registry;
use crate::runtime::{self, RuntimeConfig};
use crate::server::{ServerConfig, ports, serve_shard};

/// Runs a node: one shard per CPU, each listening on its own port.
///
/// Shard i listens on PORT+i of the listen address; PORT 0 (a single node) picks a block of
/// free ports, printed on stderr. A port taken by another process stops the node before
/// it recovers, with the port named. Data goes to DATA/shard-S/ (journal and
/// snapshots), S being the shard's cluster-wide id; a restart recovers from it. SIGTERM,
/// SIGINT or SIGHUP stops it gracefully: no new connections, in-flight commands finish, a snapshot is
/// taken, exit status 0.
///
/// Every option is also a key of the same name in the TOML file given with --config (flags
/// override the file); --print-config prints the effective configuration, documented.
///
/// For a cluster, every node runs with the same cluster file and its own node index; the
/// file lists the nodes in order:
///
/// ```toml
/// [[node]]
/// host = "127.0.0.1"   # the address clients use, and the one the node binds
/// port = 26500         # its base port
/// shards = 2
/// ```
///
/// Clients may contact any node: the topology they get covers them all.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    flags: Box<Flags>,
}

/// Runs `ringflow serve`.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let config = config::effective(&args.flags)?;
    let usable = runtime::usable_cpus();
    let plan = config.plan(&usable)?;
    if args.flags.print_config {
        crate::say::stdout_text(&config.to_toml(Some(&plan)));
        return Ok(ExitCode::SUCCESS);
    }
    for warning in &plan.warnings {
        say!("ringflow: warning: {warning}");
    }
    if let Some(warning) = crate::preflight::data_filesystem_warning(&config.data) {
        say!("ringflow: warning: {warning} (`ringflow doctor` checks the machine)");
    }
    let (mut topology, node, mut me) = (plan.topology.clone(), plan.node, plan.me.clone());
    // Every shard's port is taken now, before any journal is opened: a taken port stops
    // the node here, with the port named. Port 0 (a single node) picks free ones.
    let bound = ports::bind_ports(&plan.bind_host, me.base_port, me.shard_count)
        .map_err(anyhow::Error::msg)?;
    if bound.base_port != me.base_port {
        me.base_port = bound.base_port;
        let mut nodes = topology.nodes.clone();
        nodes[usize::from(node)].base_port = bound.base_port;
        topology = ringflow_wire::Topology::uniform(nodes)
            .map_err(|error| anyhow::anyhow!("the topology with the ports picked: {error}"))?;
    }
    let sockets: Vec<Mutex<Option<socket2::Socket>>> = bound
        .sockets
        .into_iter()
        .map(|socket| Mutex::new(Some(socket)))
        .collect();
    let sockets = Arc::new(sockets);
    let cold_store = plan.cold_store.clone();
    let registry = Arc::new(Registry::default());
    if let Some(addr) = config.metrics {
        let bound = crate::metrics::serve(addr, Arc::clone(&registry))
            .with_context(|| format!("--metrics {addr}: cannot listen"))?;
        say!("ringflow: metrics at http://{bound}/metrics");
    }
    match &cold_store {
        Some(target) => say!(
            "ringflow: cold store: {} (history level {}, {})",
            target.describe(),
            plan.history.name(),
            match plan.history_ttl {
                Some(ttl) => format!("ended instances deleted after {}", describe_ttl(ttl)),
                None => "kept for good".to_string(),
            }
        ),
        None => say!("ringflow: no cold store (--cold-store none): history is not kept"),
    }
    let runtime_config = RuntimeConfig {
        data_dir: config.data.clone(),
        first_shard: me.first_shard,
        cpus: plan.cpus.clone(),
        io_memory_bytes: plan.io_memory_bytes,
        ring_depth: config.ring_depth,
        shard: plan.shard,
        cold_store,
        history: plan.history,
        history_ttl: plan.history_ttl,
        metrics: Some(registry),
        topology: Some(topology.clone()),
        io_worker_slice: plan.io_worker_slice,
    };
    let server = Arc::new(ServerConfig {
        bind_host: plan.bind_host.clone(),
        base_port: me.base_port,
        first_shard: me.first_shard,
        topology: topology.clone(),
        limits: plan.limits.clone(),
    });
    let shutdown = Arc::new(AtomicBool::new(false));
    // SIGHUP too: a terminal that closes would otherwise end the process with no
    // shutdown at all (the JVM engines treat it like SIGTERM as well).
    for signal in [
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(signal, shutdown.clone())
            .context("cannot install the signal handlers")?;
    }
    say!(
        "ringflow: node {node} of {} ({} shards in the cluster), shards {}..={} on {}..={}, data in {}",
        topology.nodes.len(),
        topology.shard_count(),
        me.first_shard,
        me.first_shard + me.shard_count - 1,
        ports::shown(&me.host, me.base_port),
        u32::from(me.base_port) + u32::from(me.shard_count) - 1,
        config.data.display()
    );
    let results = runtime::run(runtime_config, move |shard| async move {
        // A shard that cannot serve (listen failed) stops the node's other shards too,
        // rather than leaving the node up with a shard missing.
        let index = usize::from(shard.id() - server.first_shard);
        let socket = sockets[index]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let result = match socket {
            Some(socket) => serve_shard(shard, server, socket, Arc::clone(&shutdown)).await,
            None => Err(format!("shard {}: its socket was taken twice", shard.id())),
        };
        if result.is_err() {
            shutdown.store(true, Ordering::Relaxed);
        }
        result
    })
    .map_err(anyhow::Error::msg)?;
    let mut failed = false;
    for result in &results {
        if let Err(error) = result {
            say!("ringflow: {error}");
            failed = true;
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// A TTL in the largest unit that divides it (`30d`, `12h`, `90m`, `45s`, `1500ms`).
fn describe_ttl(ttl: std::time::Duration) -> String {
    let millis = ttl.as_millis();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if millis.is_multiple_of(size) {
            return format!("{}{unit}", millis / size);
        }
    }
    format!("{millis}ms")
}

#[cfg(test)]
mod ttl_tests {
    use std::time::Duration;

    #[test]
    fn a_ttl_is_described_in_its_largest_whole_unit() {
        let describe = |millis| super::describe_ttl(Duration::from_millis(millis));
        assert_eq!(describe(30 * 86_400_000), "30d");
        assert_eq!(describe(36 * 3_600_000), "36h");
        assert_eq!(describe(90 * 60_000), "90m");
        assert_eq!(describe(45_000), "45s");
        assert_eq!(describe(1_500), "1500ms");
    }
}
