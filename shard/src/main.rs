//! The `ringflow` binary. Everything lives in [`ringflow_shard::cli`].

/// mimalloc instead of glibc malloc: under load glibc spent about 40% of a shard's time in
/// malloc and free (see bench/RESULTS.md, "Where the time goes").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    ringflow_shard::cli::main()
}
