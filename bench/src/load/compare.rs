//! `ringflow-bench compare`: two server binaries, alternated in pairs of runs.
//!
//! On a machine whose pace moves (a VM: 1.6x within minutes here, ±15% between
//! consecutive 5 s runs), one run of each build says nothing, and even alternated pairs
//! mislead when the same build always goes first: in 16 pairs of 5 s on the 2-CPU VM the
//! second run of a pair was the faster in 12, whichever build it was. So `compare` runs
//! `--pairs` pairs, the baseline first in the odd pairs and the candidate first in the even
//! ones, and reports per pair and in all: how often the candidate was better (by order
//! too), the means, and a two-sided sign test. Closed loop compares throughput; open loop
//! (`--rate`) compares p99 latency.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, bail};

use super::report::{Report, thousands};
use super::scenario::Scenario;
use super::{Common, Plan, measure, mode_of};

/// Arguments of `ringflow-bench compare`.
#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// The scenario.
    #[arg(long, value_enum)]
    scenario: Scenario,
    /// Open loop at this many instances per second, comparing p99 latency [default: closed
    /// loop, comparing throughput].
    #[arg(long)]
    rate: Option<f64>,
    /// Shards of the servers.
    #[arg(long, default_value_t = 1)]
    shards: usize,
    /// The `ringflow` binary to compare against.
    #[arg(long)]
    baseline: PathBuf,
    /// The `ringflow` binary to compare (it may be the baseline's, with other
    /// `--candidate-arg`s).
    #[arg(long)]
    candidate: PathBuf,
    /// An extra argument for the baseline's `ringflow serve`, after every `--server-arg`
    /// (repeat it: `--baseline-arg=--journal-sync --baseline-arg=fdatasync`).
    #[arg(long = "baseline-arg", allow_hyphen_values = true)]
    baseline_args: Vec<String>,
    /// An extra argument for the candidate's `ringflow serve`, after every `--server-arg`.
    #[arg(long = "candidate-arg", allow_hyphen_values = true)]
    candidate_args: Vec<String>,
    /// Pairs of runs: the baseline runs first in the odd pairs, the candidate in the even.
    #[arg(long, default_value_t = 8)]
    pairs: usize,
    /// The folder for compare.md and one JSON per run.
    #[arg(long, default_value = "bench-compare")]
    out: PathBuf,
    #[command(flatten)]
    common: Common,
}

/// One pair: which ran first, and the figure of each.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pair {
    /// The baseline ran first.
    pub baseline_first: bool,
    /// The baseline's figure.
    pub baseline: f64,
    /// The candidate's figure.
    pub candidate: f64,
}

/// What the pairs say.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Pairs where the candidate was better (ties count for neither).
    pub candidate_better: usize,
    /// Pairs where the baseline was better.
    pub baseline_better: usize,
    /// Of the pairs with the baseline first, those the candidate won, and how many.
    pub candidate_better_going_second: (usize, usize),
    /// Of the pairs with the candidate first, those the candidate won, and how many.
    pub candidate_better_going_first: (usize, usize),
    /// Pairs whose second run was the better.
    pub second_better: usize,
    /// Means of the baseline's and the candidate's figures.
    pub means: (f64, f64),
    /// Two-sided sign test over the pairs that were not ties.
    pub p_value: f64,
}

/// Two-sided sign test: the chance of a split at least as uneven as `wins` of `n` if
/// either side were as likely to win each pair.
pub fn sign_test(wins: usize, n: usize) -> f64 {
    if n == 0 {
        return 1.0;
    }
    let tail = wins.min(n - wins);
    // C(n, k) / 2^n summed in floating point: n stays small (pairs of runs).
    let mut term = 0.5f64.powi(n as i32);
    let mut sum = 0.0;
    for k in 0..=tail {
        if k > 0 {
            term *= (n - k + 1) as f64 / k as f64;
        }
        sum += term;
    }
    (2.0 * sum).min(1.0)
}

/// Sums up the pairs; `higher_is_better` for throughput, not for latency.
pub fn verdict(pairs: &[Pair], higher_is_better: bool) -> Verdict {
    let better = |a: f64, b: f64| if higher_is_better { a > b } else { a < b };
    let mut verdict = Verdict {
        candidate_better: 0,
        baseline_better: 0,
        candidate_better_going_second: (0, 0),
        candidate_better_going_first: (0, 0),
        second_better: 0,
        means: (0.0, 0.0),
        p_value: 1.0,
    };
    for pair in pairs {
        let candidate_won = better(pair.candidate, pair.baseline);
        let baseline_won = better(pair.baseline, pair.candidate);
        verdict.candidate_better += usize::from(candidate_won);
        verdict.baseline_better += usize::from(baseline_won);
        let by_order = if pair.baseline_first {
            &mut verdict.candidate_better_going_second
        } else {
            &mut verdict.candidate_better_going_first
        };
        by_order.0 += usize::from(candidate_won);
        by_order.1 += 1;
        let second_won = if pair.baseline_first {
            candidate_won
        } else {
            baseline_won
        };
        verdict.second_better += usize::from(second_won);
    }
    if !pairs.is_empty() {
        let n = pairs.len() as f64;
        verdict.means = (
            pairs.iter().map(|p| p.baseline).sum::<f64>() / n,
            pairs.iter().map(|p| p.candidate).sum::<f64>() / n,
        );
    }
    verdict.p_value = sign_test(
        verdict.candidate_better,
        verdict.candidate_better + verdict.baseline_better,
    );
    verdict
}

/// The figure compared: throughput in the closed loop, p99 in µs in the open loop.
fn figure(report: &Report, open_loop: bool) -> f64 {
    if open_loop {
        report.latency_us.p99 as f64
    } else {
        report.throughput_per_s
    }
}

/// `ringflow-bench compare`.
pub fn compare(args: &CompareArgs) -> anyhow::Result<()> {
    if args.pairs == 0 {
        bail!("--pairs must be at least 1 (8 or more to tell a difference on a VM)");
    }
    if args.common.addr.is_some() || args.common.server_bin.is_some() {
        bail!(
            "compare starts both servers itself: give --baseline and --candidate, not --addr or --server-bin"
        );
    }
    for binary in [&args.baseline, &args.candidate] {
        if !binary.is_file() {
            bail!("{} is not a file (a `ringflow` binary)", binary.display());
        }
    }
    let mode = mode_of(args.rate, &args.common)?;
    let open_loop = args.rate.is_some();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut pairs = Vec::new();
    let mut rows = Vec::new();
    for index in 0..args.pairs {
        let baseline_first = index % 2 == 0;
        let baseline = ("baseline", &args.baseline, &args.baseline_args);
        let candidate = ("candidate", &args.candidate, &args.candidate_args);
        let order = if baseline_first {
            [baseline, candidate]
        } else {
            [candidate, baseline]
        };
        let mut figures = [0.0; 2];
        let mut paces = Vec::new();
        for (which, binary, extra) in order {
            eprintln!(
                "ringflow-bench compare: pair {} of {}: {which} ({}{}{})",
                index + 1,
                args.pairs,
                binary.display(),
                if extra.is_empty() { "" } else { " " },
                extra.join(" ")
            );
            let mut common = args.common.clone();
            common.server_bin = Some(binary.clone());
            common.server_args.extend(extra.iter().cloned());
            let report = measure(&Plan {
                scenario: args.scenario,
                mode,
                shards: args.shards,
                common: &common,
            })?;
            let name = format!("pair-{:02}-{which}.json", index + 1);
            std::fs::write(args.out.join(&name), report.to_json())
                .with_context(|| format!("cannot write {name}"))?;
            figures[usize::from(which == "candidate")] = figure(&report, open_loop);
            if let Some((before, after)) = report.engine_pace_per_s {
                paces.push(format!(
                    "{} {}/{}",
                    which,
                    thousands(before.round() as u64),
                    thousands(after.round() as u64)
                ));
            }
        }
        let pair = Pair {
            baseline_first,
            baseline: figures[0],
            candidate: figures[1],
        };
        pairs.push(pair);
        rows.push(paces.join(", "));
    }
    let verdict = verdict(&pairs, !open_loop);
    let markdown = markdown(args, &pairs, &rows, &verdict, open_loop);
    println!("{markdown}");
    let path = args.out.join("compare.md");
    std::fs::write(&path, &markdown).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!(
        "ringflow-bench compare: compare.md and one JSON per run in {}",
        args.out.display()
    );
    Ok(())
}

/// ` with ARGS` for a side's extra server arguments, or nothing.
fn with_args(extra: &[String]) -> String {
    if extra.is_empty() {
        String::new()
    } else {
        format!(" with `{}`", extra.join(" "))
    }
}

fn markdown(
    args: &CompareArgs,
    pairs: &[Pair],
    paces: &[String],
    verdict: &Verdict,
    open_loop: bool,
) -> String {
    let (unit, what) = if open_loop {
        ("p99 µs", "lower")
    } else {
        ("instances/s", "higher")
    };
    let mut out = format!(
        "Baseline: {}{}\nCandidate: {}{}\n\n| pair | first | baseline {unit} | candidate {unit} | candidate − baseline | engine alone before/after |\n|---:|---|---:|---:|---:|---|\n",
        args.baseline.display(),
        with_args(&args.baseline_args),
        args.candidate.display(),
        with_args(&args.candidate_args)
    );
    for (index, (pair, pace)) in pairs.iter().zip(paces).enumerate() {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:+.1}% | {} |",
            index + 1,
            if pair.baseline_first {
                "baseline"
            } else {
                "candidate"
            },
            thousands(pair.baseline.round() as u64),
            thousands(pair.candidate.round() as u64),
            (pair.candidate - pair.baseline) * 100.0 / pair.baseline.max(1.0),
            if pace.is_empty() { "-" } else { pace }
        );
    }
    let n = pairs.len();
    let _ = writeln!(
        out,
        "\nThe candidate was better ({what} {unit}) in {} of {n} pairs: {} of {} going second, {} of {} going first. The second run of a pair was the better in {} of {n}. Means: baseline {}, candidate {} ({:+.1}%). Sign test, two-sided: p = {:.3}{}.",
        verdict.candidate_better,
        verdict.candidate_better_going_second.0,
        verdict.candidate_better_going_second.1,
        verdict.candidate_better_going_first.0,
        verdict.candidate_better_going_first.1,
        verdict.second_better,
        thousands(verdict.means.0.round() as u64),
        thousands(verdict.means.1.round() as u64),
        (verdict.means.1 - verdict.means.0) * 100.0 / verdict.means.0.max(1.0),
        verdict.p_value,
        if verdict.p_value < 0.05 {
            ": a difference"
        } else {
            ": no difference shown"
        }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sign_test_matches_the_binomial_tails() {
        assert_eq!(sign_test(0, 0), 1.0);
        assert_eq!(sign_test(4, 8), 1.0);
        // 8 of 8: 2 / 256.
        assert!((sign_test(8, 8) - 2.0 / 256.0).abs() < 1e-12);
        assert!((sign_test(0, 8) - 2.0 / 256.0).abs() < 1e-12);
        // 7 of 8: 2 * (1 + 8) / 256.
        assert!((sign_test(7, 8) - 18.0 / 256.0).abs() < 1e-12);
        // 12 of 16: 2 * (1 + 16 + 120 + 560 + 1820) / 65536.
        assert!((sign_test(12, 16) - 2.0 * 2517.0 / 65536.0).abs() < 1e-12);
    }

    #[test]
    fn a_verdict_counts_wins_by_order_and_the_second_run() {
        let pair = |baseline_first, baseline, candidate| Pair {
            baseline_first,
            baseline,
            candidate,
        };
        // Throughput: the second run always did better, whichever it was.
        let pairs = [
            pair(true, 90.0, 100.0),
            pair(false, 100.0, 90.0),
            pair(true, 80.0, 85.0),
            pair(false, 95.0, 94.0),
        ];
        let verdict = verdict(&pairs, true);
        assert_eq!(verdict.candidate_better, 2);
        assert_eq!(verdict.baseline_better, 2);
        assert_eq!(verdict.candidate_better_going_second, (2, 2));
        assert_eq!(verdict.candidate_better_going_first, (0, 2));
        assert_eq!(verdict.second_better, 4);
        assert_eq!(verdict.means, (91.25, 92.25));
        assert_eq!(verdict.p_value, 1.0);
        // Latency: lower is better; a tie counts for neither side.
        let verdict = super::verdict(
            &[
                pair(true, 5.0, 4.0),
                pair(false, 5.0, 5.0),
                pair(true, 6.0, 4.0),
            ],
            false,
        );
        assert_eq!(verdict.candidate_better, 2);
        assert_eq!(verdict.baseline_better, 0);
        assert!((verdict.p_value - 0.5).abs() < 1e-12);
    }
}
