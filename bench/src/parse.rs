//! `ringflow-bench parse`: how fast `ringflow_bpmn::parse` reads real models.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Arguments of `ringflow-bench parse`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Folder of BPMN files to parse (default: the shared conformance corpus).
    #[arg(long, default_value = "../shared/bpmn-corpus")]
    corpus: PathBuf,
    /// How long to measure, in seconds, after one warm-up pass.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

struct Sample {
    bytes: Vec<u8>,
    valid: bool,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let samples = load(&args.corpus)?;
    let valid = samples.iter().filter(|s| s.valid).count();
    println!("machine: {}", crate::machine::describe());
    println!(
        "corpus: {} ({} files, {} valid, {:.2} MB)",
        args.corpus.display(),
        samples.len(),
        valid,
        megabytes(samples.iter().map(|s| s.bytes.len()).sum())
    );
    let all = measure(&samples, |_| true, Duration::from_secs(args.seconds));
    let only_valid = measure(&samples, |s| s.valid, Duration::from_secs(args.seconds));
    println!(
        "{:<12} {:>10} {:>12} {:>10}",
        "files", "MB/s", "models/s", "passes"
    );
    for (name, result) in [("all", all), ("valid only", only_valid)] {
        println!(
            "{name:<12} {:>10.1} {:>12.0} {:>10}",
            megabytes(result.bytes) / result.elapsed.as_secs_f64(),
            result.models as f64 / result.elapsed.as_secs_f64(),
            result.passes
        );
    }
    Ok(())
}

fn load(corpus: &Path) -> anyhow::Result<Vec<Sample>> {
    let entries = std::fs::read_dir(corpus)
        .with_context(|| format!("cannot read the corpus folder {}", corpus.display()))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| {
            path.extension()
                .is_some_and(|ext| ext == "bpmn" || ext == "xml")
        })
        .collect();
    paths.sort();
    if paths.is_empty() {
        bail!("no .bpmn or .xml files in {}", corpus.display());
    }
    paths
        .into_iter()
        .map(|path| {
            let bytes =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            let valid = ringflow_bpmn::parse(&bytes).is_ok();
            Ok(Sample { bytes, valid })
        })
        .collect()
}

struct Measurement {
    bytes: usize,
    models: usize,
    passes: usize,
    elapsed: Duration,
}

fn measure(samples: &[Sample], keep: impl Fn(&Sample) -> bool, duration: Duration) -> Measurement {
    let chosen: Vec<&Sample> = samples.iter().filter(|s| keep(s)).collect();
    let pass = |chosen: &[&Sample]| {
        for sample in chosen {
            std::hint::black_box(ringflow_bpmn::parse(std::hint::black_box(&sample.bytes))).ok();
        }
    };
    pass(&chosen);
    let started = Instant::now();
    let mut passes = 0;
    while started.elapsed() < duration || passes == 0 {
        pass(&chosen);
        passes += 1;
    }
    let elapsed = started.elapsed();
    let bytes_per_pass: usize = chosen.iter().map(|s| s.bytes.len()).sum();
    Measurement {
        bytes: bytes_per_pass * passes,
        models: chosen.len() * passes,
        passes,
        elapsed,
    }
}

fn megabytes(bytes: usize) -> f64 {
    bytes as f64 / 1_000_000.0
}
