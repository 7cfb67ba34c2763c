//! A property test over the whole corpus: mutated files (bytes flipped, spans cut, copied,
//! swapped or replaced with XML-ish fragments) must never panic or hang the parser; they are
//! accepted or rejected with diagnostics that carry a position.
//!
//! The mutations are seeded, so a failure names the seed and the file and is reproducible:
//! `RINGFLOW_MUTATION_SEED=<seed> cargo test -p ringflow-bpmn --test mutation`. More rounds:
//! `RINGFLOW_MUTATION_ROUNDS=<n>` (CI runs the default).

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

/// Mutants per corpus file in one run: enough to reach every parser stage on each file
/// while keeping the debug-build test around a minute on two cores.
const ROUNDS_DEFAULT: u64 = 200;
/// A whole file's mutants must finish within this; each parse takes milliseconds.
const FILE_TIMEOUT: Duration = Duration::from_secs(120);

const FRAGMENTS: &[&[u8]] = &[
    b"<",
    b">",
    b"/>",
    b"</bpmn:process>",
    b"<bpmn:startEvent id=\"x\"/>",
    b"<!DOCTYPE a [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>",
    b"&e;",
    b"&#0;",
    b"&#x110000;",
    b"<![CDATA[",
    b"]]>",
    b"xmlns:bpmn=\"urn:other\"",
    b"=",
    b"=a +",
    b"\"",
    b"\xC3",
    b"\xFF\xFE",
    b"<?xml version=\"1.0\" encoding=\"klingon\"?>",
    b"R5/PT",
    b"P1Y2M3DT4H5M6.7S",
    b"${x}",
    b"<bpmn:sequenceFlow id=\"x\" sourceRef=\"x\" targetRef=\"x\"/>",
];

/// xorshift64*: tiny, seedable, and good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut bytes = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = bytes.len();
        let at = rng.below(len + 1);
        let span = 1 + rng.below(64.min(len.max(1)));
        let end = (at + span).min(len);
        match rng.below(6) {
            0 if at < len => bytes[at] ^= 1 << rng.below(8),
            1 => {
                bytes.drain(at..end);
            }
            2 => bytes.truncate(at),
            3 => {
                let copy = bytes[at..end].to_vec();
                let to = rng.below(bytes.len() + 1);
                bytes.splice(to..to, copy);
            }
            4 => {
                let fragment = FRAGMENTS[rng.below(FRAGMENTS.len())];
                bytes.splice(at..at, fragment.iter().copied());
            }
            _ => {
                let fragment = FRAGMENTS[rng.below(FRAGMENTS.len())];
                bytes.splice(at..end, fragment.iter().copied());
            }
        }
    }
    bytes
}

fn corpus_files() -> Vec<PathBuf> {
    let dir = match std::env::var_os("RINGFLOW_BPMN_CORPUS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/bpmn-corpus"),
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("the BPMN corpus at {}: {error}", dir.display()))
        .map(|entry| entry.expect("entry").path())
        .filter(|path| {
            path.extension()
                .is_some_and(|ext| ext == "bpmn" || ext == "xml")
        })
        .collect();
    files.sort();
    files
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name)
        .ok()
        .map(|value| value.parse().expect("a whole number"))
}

#[test]
fn mutated_corpus_files_never_panic_or_hang() {
    let rounds = env_u64("RINGFLOW_MUTATION_ROUNDS").unwrap_or(ROUNDS_DEFAULT);
    let base_seed = env_u64("RINGFLOW_MUTATION_SEED").unwrap_or(0x005E_ED0F_B9A1);
    let files = corpus_files();
    assert!(!files.is_empty());
    let mut total = 0u64;
    for (file_number, path) in files.iter().enumerate() {
        let original = std::fs::read(path).expect("corpus file is readable");
        let seed = base_seed ^ ((file_number as u64 + 1) << 32);
        let (sender, receiver) = mpsc::channel();
        let worker = std::thread::spawn(move || {
            let mut rng = Rng(seed | 1);
            for round in 0..rounds {
                let mutant = mutate(&mut rng, &original);
                let outcome = std::panic::catch_unwind(|| ringflow_bpmn::parse(&mutant));
                match outcome {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => {
                        assert!(!error.diagnostics.is_empty(), "round {round}: empty error");
                        for diagnostic in &error.diagnostics {
                            assert!(diagnostic.position.line >= 1, "round {round}: {diagnostic}");
                            assert!(!diagnostic.message.is_empty(), "round {round}");
                        }
                    }
                    Err(_) => {
                        let _ = sender.send(Err(format!("round {round} panicked")));
                        return;
                    }
                }
            }
            let _ = sender.send(Ok(()));
        });
        match receiver.recv_timeout(FILE_TIMEOUT) {
            Ok(Ok(())) => {}
            Ok(Err(message)) => panic!("{} (seed {seed:#x}): {message}", path.display()),
            Err(_) => panic!(
                "{} (seed {seed:#x}): the parser hangs or died",
                path.display()
            ),
        }
        worker.join().expect("the worker finished");
        total += rounds;
    }
    assert_eq!(total, rounds * files.len() as u64);
}

#[test]
fn the_mutator_changes_its_input() {
    let mut rng = Rng(7);
    let input = b"<a><b/></a>".repeat(10);
    let changed = (0..100)
        .filter(|_| mutate(&mut rng, &input) != input)
        .count();
    assert!(changed > 90, "only {changed} of 100 mutants differ");
}
