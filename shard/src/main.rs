//! The `ringflow` binary. Everything lives in [`ringflow_shard::cli`].

/// jemalloc instead of glibc malloc: under load glibc spent about 40% of a shard's time in
/// malloc and free, and mimalloc's fast path missed the cache where jemalloc's per-thread
/// cache hands back the block freed last (see bench/RESULTS.md, "Where the time goes").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    ringflow_shard::cli::main()
}
