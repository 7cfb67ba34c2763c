//! `ringflow-bench json`: how fast the engine writes and measures a variable document.
//!
//! Every command's variables are measured against `VARIABLE_DOCUMENT_BYTES_MAX`
//! (`ringflow_core::json_len`) and written as JSON into the journal and onto the wire
//! (`ringflow_core::write_json`). This times both on one document with a string of
//! `--bytes` bytes (`realistic`'s payload is 10 KiB), with a `"` every `--escape-every`
//! bytes (0: none), on the calling thread.

use std::time::{Duration, Instant};

use anyhow::bail;

/// Arguments of `ringflow-bench json`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Bytes of the document's string variable.
    #[arg(long, default_value_t = 10 * 1024)]
    bytes: usize,
    /// A `"` (escaped as `\"`) every this many bytes of the string; 0: none.
    #[arg(long, default_value_t = 0)]
    escape_every: usize,
    /// How long to time each of the two operations, in seconds.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    if args.bytes == 0 || args.bytes > ringflow_core::limits::VARIABLE_DOCUMENT_BYTES_MAX {
        bail!(
            "--bytes is {}; give 1 to VARIABLE_DOCUMENT_BYTES_MAX ({})",
            args.bytes,
            ringflow_core::limits::VARIABLE_DOCUMENT_BYTES_MAX
        );
    }
    let payload: String = (0..args.bytes)
        .map(|i| {
            if args.escape_every > 0 && i % args.escape_every == args.escape_every - 1 {
                '"'
            } else {
                char::from(b'a' + (i % 26) as u8)
            }
        })
        .collect();
    let mut document = ringflow_core::Variables::new();
    document.insert("orderId".into(), serde_json::json!("order-123456"));
    document.insert("amount".into(), serde_json::json!(1234.5));
    document.insert("payload".into(), serde_json::Value::String(payload));
    let expected = serde_json::to_vec(&document)?;
    let mut out = Vec::with_capacity(expected.len());
    ringflow_core::write_json(&document, &mut out);
    if out != expected || ringflow_core::json_len(&document) != expected.len() {
        bail!("the writer or the measure disagrees with serde_json on this document");
    }
    println!("machine: {}", crate::machine::describe());
    println!(
        "document: {} bytes as JSON ({} bytes of string, {})",
        expected.len(),
        args.bytes,
        match args.escape_every {
            0 => "nothing to escape".to_string(),
            n => format!("a quote every {n} bytes"),
        }
    );
    let time = |name: &str, mut once: Box<dyn FnMut() + '_>| {
        let budget = Duration::from_secs(args.seconds);
        let started = Instant::now();
        let mut rounds = 0u64;
        while started.elapsed() < budget {
            for _ in 0..64 {
                once();
            }
            rounds += 64;
        }
        let ns = started.elapsed().as_nanos() as f64 / rounds as f64;
        let gb_per_s = expected.len() as f64 / ns;
        println!("{name:<28} {ns:>10.0} ns per document {gb_per_s:>8.2} GB/s");
    };
    time(
        "write_json (journal, wire)",
        Box::new(|| {
            out.clear();
            ringflow_core::write_json(std::hint::black_box(&document), &mut out);
            std::hint::black_box(&out);
        }),
    );
    time(
        "json_len (the size limit)",
        Box::new(|| {
            std::hint::black_box(ringflow_core::json_len(std::hint::black_box(&document)));
        }),
    );
    time(
        "serde_json::to_writer",
        Box::new(|| {
            let mut text = Vec::with_capacity(expected.len());
            serde_json::to_writer(&mut text, std::hint::black_box(&document)).expect("JSON");
            std::hint::black_box(&text);
        }),
    );
    Ok(())
}
