//! The `ringflow` binary. Everything lives in [`ringflow_shard::cli`].

/// jemalloc instead of glibc malloc: under load glibc spent about 40% of a shard's time in
/// malloc and free, and mimalloc's fast path missed the cache where jemalloc's per-thread
/// cache hands back the block freed last (see bench/RESULTS.md, "Where the time goes").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    // FEEL date-times without a zone are "local" to dsntk's evaluator, which then reads the
    // machine's zone (chrono's `Local`: the TZ variable, else /etc/localtime). The engine must
    // give the same result on every machine, on replay too, so local is UTC here, whatever
    // the machine is set to.
    // SAFETY: the first statement of the process: no other thread exists yet that could
    // read the environment at the same time.
    unsafe {
        std::env::set_var("TZ", "UTC");
    }
    ringflow_shard::cli::main()
}
