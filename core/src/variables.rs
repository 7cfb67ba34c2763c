//! Variables: one JSON document per scope, and how new values find their scope.
//!
//! As in Camunda 8: a variable set from outside (a completed job, ...) goes to the nearest
//! scope, from the element outwards, that already has a variable of that name; if none has,
//! it goes to the process instance (the root scope).

use crate::engine::{Rejection, RejectionCode, Variables};
use crate::key::Key;
use crate::limits::VARIABLE_DOCUMENT_BYTES_MAX;
use crate::state::State;

/// Rejects a document whose JSON form is over `VARIABLE_DOCUMENT_BYTES_MAX`.
pub(crate) fn check_document_size(variables: &Variables) -> Result<(), Rejection> {
    checked_len(variables).map(drop)
}

/// The JSON length of `variables`, or a rejection when it is over
/// `VARIABLE_DOCUMENT_BYTES_MAX`.
pub(crate) fn checked_len(variables: &Variables) -> Result<usize, Rejection> {
    let bytes = json_len(variables);
    if bytes > VARIABLE_DOCUMENT_BYTES_MAX {
        return Err(over_limit(bytes));
    }
    Ok(bytes)
}

fn over_limit(bytes: usize) -> Rejection {
    Rejection::new(
        RejectionCode::LimitExceeded,
        format!(
            "the variables are {bytes} bytes as JSON, over VARIABLE_DOCUMENT_BYTES_MAX \
             ({VARIABLE_DOCUMENT_BYTES_MAX})"
        ),
    )
}

/// The length of `variables` as JSON (as `serde_json` writes it), counted without building
/// the text (this runs for every created instance, published message and completed job).
/// A walk over the values: strings are scanned 16 bytes at a time (SSE2) for what JSON escapes,
/// integers counted by their digits; only floats are formatted. Several times faster than
/// serializing into a counter on documents with long strings.
pub fn json_len(variables: &Variables) -> usize {
    object_len(variables)
}

fn object_len(map: &serde_json::Map<String, serde_json::Value>) -> usize {
    let mut len = 2 + map.len().saturating_sub(1);
    for (name, value) in map {
        len += string_len(name) + 1 + value_len(value);
    }
    len
}

fn value_len(value: &serde_json::Value) -> usize {
    use serde_json::Value;
    match value {
        Value::Null | Value::Bool(true) => 4,
        Value::Bool(false) => 5,
        Value::Number(number) => number_len(number),
        Value::String(text) => string_len(text),
        Value::Array(items) => {
            2 + items.len().saturating_sub(1) + items.iter().map(value_len).sum::<usize>()
        }
        Value::Object(map) => object_len(map),
    }
}

fn number_len(number: &serde_json::Number) -> usize {
    fn digits(mut n: u64) -> usize {
        let mut count = 1;
        while n >= 10 {
            n /= 10;
            count += 1;
        }
        count
    }
    if let Some(n) = number.as_u64() {
        digits(n)
    } else if let Some(n) = number.as_i64() {
        1 + digits(n.unsigned_abs())
    } else {
        struct Count(usize);
        impl std::io::Write for Count {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0 += bytes.len();
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut count = Count(0);
        serde_json::to_writer(&mut count, number).expect("a number always serializes");
        count.0
    }
}

/// The length of `text` as a JSON string: the quotes, the bytes, and one more byte for each
/// `"`, `\\`, `\b`, `\f`, `\n`, `\r` and `\t`, five more for other control characters
/// (`\u00XX`), as `serde_json` escapes them.
fn string_len(text: &str) -> usize {
    let bytes = text.as_bytes();
    let mut extra = 0;
    let mut chunks = bytes.chunks_exact(LANES);
    for chunk in &mut chunks {
        let mut mask = escapes_in(chunk);
        while mask != 0 {
            extra += escape_extra(chunk[mask.trailing_zeros() as usize]);
            mask &= mask - 1;
        }
    }
    extra += chunks
        .remainder()
        .iter()
        .map(|byte| escape_extra(*byte))
        .sum::<usize>();
    2 + bytes.len() + extra
}

/// Bytes looked at together for what JSON escapes: 16 with SSE2 (every x86-64 CPU has
/// it), else 8 in a `u64`.
#[cfg(target_arch = "x86_64")]
const LANES: usize = 16;
#[cfg(not(target_arch = "x86_64"))]
const LANES: usize = 8;

/// Bit i set: byte i of `chunk` (`LANES` bytes) is one JSON escapes (below 0x20, `"` or
/// `\`). Three compares and a `pmovmskb` for 16 bytes.
#[cfg(target_arch = "x86_64")]
#[inline]
fn escapes_in(chunk: &[u8]) -> u32 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    assert_eq!(chunk.len(), LANES);
    // SAFETY: SSE2 is part of x86-64, so these intrinsics are always available; the load
    // reads 16 bytes from a slice just checked to hold 16, and `loadu` needs no alignment.
    unsafe {
        let bytes = _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>());
        let quote = _mm_cmpeq_epi8(bytes, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(bytes, _mm_set1_epi8(b'\\' as i8));
        // Below 0x20 (unsigned): the byte is its own minimum with 0x1F.
        let control = _mm_cmpeq_epi8(_mm_min_epu8(bytes, _mm_set1_epi8(0x1F)), bytes);
        _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), control)) as u32
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn escapes_in(chunk: &[u8]) -> u32 {
    escapes_in_word(chunk)
}

/// Bit i set: byte i of `chunk` (8 bytes) is one JSON escapes. A word test first (it may
/// say yes for a word without one, never no for one with one), then each byte. Compiled
/// everywhere, so that tests on x86-64 check it against the SSE2 version.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
#[inline]
fn escapes_in_word(chunk: &[u8]) -> u32 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    if below_space | zero(word ^ (ONES * b'"' as u64)) | zero(word ^ (ONES * b'\\' as u64)) == 0 {
        return 0;
    }
    let mut mask = 0;
    for (i, byte) in chunk.iter().enumerate() {
        if escape_extra(*byte) > 0 {
            mask |= 1 << i;
        }
    }
    mask
}

/// Appends `variables` as JSON to `out`, byte for byte what `serde_json::to_writer` writes
/// (compact, in the map's order), without going through `serde`: strings are copied in runs
/// between the bytes JSON escapes, found 16 bytes at a time as in [`json_len`]. The
/// journal, the snapshot and the wire write every document this way; with long strings it
/// takes a fraction of `serde_json`'s instructions, which look at each byte.
pub fn write_json(variables: &Variables, out: &mut Vec<u8>) {
    write_object(variables, out);
}

/// `variables` as JSON text (see [`write_json`]).
pub fn to_json_string(variables: &Variables) -> String {
    let mut out = Vec::with_capacity(64);
    write_json(variables, &mut out);
    json_text(out)
}

/// The text that the writers above put in an empty `out`, without checking it again:
/// checking each job's 10 KiB cost 4% of a `realistic` instance's instructions (callgrind,
/// bench/RESULTS.md of 2026-12-07).
fn json_text(out: Vec<u8>) -> String {
    debug_assert!(std::str::from_utf8(&out).is_ok(), "the writers write UTF-8");
    // SAFETY: the writers append only ASCII (punctuation, digits, `true`/`false`/`null`,
    // escapes, numbers from serde_json) and runs of a `&str`'s bytes cut before or after an
    // ASCII byte (the bytes JSON escapes are all ASCII), so every run is whole characters
    // and `out` is UTF-8. Debug builds (every test) check it above.
    unsafe { String::from_utf8_unchecked(out) }
}

/// The merge of a scope chain's documents (innermost first; an inner variable hides an
/// outer one of the same name) as JSON text, byte for byte what [`to_json_string`] gives for
/// the merged map, without building it: no value is copied. `capacity` is the expected
/// length (the documents' kept lengths add up to at least the merge's).
pub(crate) fn merged_json(documents: &[&Variables], capacity: usize) -> String {
    let mut out = Vec::with_capacity(capacity);
    match documents {
        [] => out.extend_from_slice(b"{}"),
        [only] => write_object(only, &mut out),
        _ => {
            // serde_json's map is ordered by name (no `preserve_order`), and so is this.
            let mut merged: std::collections::BTreeMap<&str, &serde_json::Value> =
                std::collections::BTreeMap::new();
            for document in documents.iter().rev() {
                for (name, value) in document.iter() {
                    merged.insert(name, value);
                }
            }
            out.push(b'{');
            for (i, (name, value)) in merged.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(name, &mut out);
                out.push(b':');
                write_json_value(value, &mut out);
            }
            out.push(b'}');
        }
    }
    json_text(out)
}

/// Appends `value` as JSON to `out` (see [`write_json`]).
pub fn write_json_value(value: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(number) => {
            if let Some(n) = number.as_u64() {
                write_u64(n, out);
            } else if let Some(n) = number.as_i64() {
                out.push(b'-');
                write_u64(n.unsigned_abs(), out);
            } else {
                serde_json::to_writer(&mut *out, number).expect("a number always serializes");
            }
        }
        Value::String(text) => write_string(text, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json_value(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => write_object(map, out),
    }
}

fn write_object(map: &serde_json::Map<String, serde_json::Value>, out: &mut Vec<u8>) {
    out.push(b'{');
    for (i, (name, value)) in map.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(name, out);
        out.push(b':');
        write_json_value(value, out);
    }
    out.push(b'}');
}

fn write_u64(mut n: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

fn write_string(text: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = text.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    // `start`: where the run of bytes not yet copied begins.
    let mut start = 0;
    let escape_from = |at: usize, start: &mut usize, out: &mut Vec<u8>| {
        let byte = bytes[at];
        let short = match byte {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            0x0C => b'f',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x00..=0x1F => b'u',
            _ => return,
        };
        out.extend_from_slice(&bytes[*start..at]);
        out.push(b'\\');
        out.push(short);
        if short == b'u' {
            out.extend_from_slice(b"00");
            out.push(HEX[usize::from(byte >> 4)]);
            out.push(HEX[usize::from(byte & 0xF)]);
        }
        *start = at + 1;
    };
    let mut at = 0;
    while at + LANES <= bytes.len() {
        let mut mask = escapes_in(&bytes[at..at + LANES]);
        while mask != 0 {
            escape_from(at + mask.trailing_zeros() as usize, &mut start, out);
            mask &= mask - 1;
        }
        at += LANES;
    }
    for i in at..bytes.len() {
        escape_from(i, &mut start, out);
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// The bytes JSON adds to escape `byte`.
fn escape_extra(byte: u8) -> usize {
    match byte {
        b'"' | b'\\' | 0x08 | 0x0C | b'\n' | b'\r' | b'\t' => 1,
        0x00..=0x1F => 5,
        _ => 0,
    }
}

/// Variables to set in one scope (added, or replacing those of the same names), and the
/// JSON length of the scope's document after: what a plan checked against
/// `VARIABLE_DOCUMENT_BYTES_MAX` before anything changes. Applied in place
/// (`State::merge_variables`): the document is not copied, and its length is kept, so the
/// next change is checked without measuring it again.
#[derive(Debug)]
pub(crate) struct Update {
    pub(crate) scope: Key,
    pub(crate) entries: Variables,
    pub(crate) len: usize,
}

/// The JSON length of one scope's document as variables are added to it, from its known
/// length and the lengths of what is added and replaced, without measuring the rest.
struct Sizer<'s> {
    document: Option<&'s Variables>,
    len: usize,
    count: usize,
}

impl<'s> Sizer<'s> {
    fn new(state: &'s State, scope: Key) -> Self {
        let document = state.variables.get(&scope);
        Sizer {
            document,
            len: state.document_len(scope),
            count: document.map_or(0, serde_json::Map::len),
        }
    }

    /// `name` set to `value`; each name at most once per plan.
    fn add(&mut self, name: &str, value: &serde_json::Value) {
        match self.document.and_then(|document| document.get(name)) {
            Some(old) => self.len = self.len + value_len(value) - value_len(old),
            None => {
                if self.count > 0 {
                    self.len += 1;
                }
                self.len += string_len(name) + 1 + value_len(value);
                self.count += 1;
            }
        }
    }

    fn checked(&self) -> Result<usize, Rejection> {
        if self.len > VARIABLE_DOCUMENT_BYTES_MAX {
            return Err(over_limit(self.len));
        }
        Ok(self.len)
    }
}

/// `variables` set in `scope` itself (local variables: nothing propagates), checked against
/// `VARIABLE_DOCUMENT_BYTES_MAX`.
pub(crate) fn plan_local(
    state: &State,
    scope: Key,
    variables: Variables,
) -> Result<Update, Rejection> {
    let mut sizer = Sizer::new(state, scope);
    for (name, value) in &variables {
        sizer.add(name, value);
    }
    let len = sizer.checked()?;
    Ok(Update {
        scope,
        entries: variables,
        len,
    })
}

/// Where each variable goes, Camunda 8 style (the nearest scope from `from` outwards that
/// has a variable of its name, else the process instance), checked against the size limit
/// before anything changes: the updates to apply, by scope.
pub(crate) fn plan_propagation(
    state: &State,
    from: Key,
    variables: Variables,
) -> Result<Vec<Update>, Rejection> {
    check_document_size(&variables)?;
    let mut chain = Vec::new();
    let mut next = Some(from);
    while let Some(key) = next {
        chain.push(key);
        next = state.elements[&key].scope;
    }
    let root = *chain.last().expect("the chain holds at least the element");
    let mut updates: Vec<(Update, Sizer<'_>)> = Vec::new();
    for (name, value) in variables {
        let owner = chain
            .iter()
            .copied()
            .find(|scope| {
                state
                    .variables
                    .get(scope)
                    .is_some_and(|doc| doc.contains_key(&name))
            })
            .unwrap_or(root);
        let position = match updates.iter().position(|(update, _)| update.scope == owner) {
            Some(position) => position,
            None => {
                let update = Update {
                    scope: owner,
                    entries: Variables::new(),
                    len: 0,
                };
                updates.push((update, Sizer::new(state, owner)));
                updates.len() - 1
            }
        };
        let (update, sizer) = &mut updates[position];
        sizer.add(&name, &value);
        update.entries.insert(name, value);
    }
    updates
        .into_iter()
        .map(|(mut update, sizer)| {
            update.len = sizer.checked()?;
            Ok(update)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counted_length_is_the_length_of_the_json_text() {
        let document: Variables = serde_json::from_str(
            r#"{"order":{"id":"o-1","lines":[1,2.5,-3e10],"note":"ä \"q\" \n"},"ok":true,"n":null}"#,
        )
        .expect("JSON");
        let text = serde_json::to_vec(&document).expect("serializes");
        assert_eq!(json_len(&document), text.len());
        assert_eq!(json_len(&Variables::new()), 2);
    }

    /// A random JSON value: every kind, strings with every byte class JSON escapes (at any
    /// offset, so the scan meets them in every lane and in the tail).
    fn random_value(seed: &mut u64, depth: u32) -> serde_json::Value {
        let mut next = |bound: u64| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            *seed % bound
        };
        let kind = if depth >= 3 { next(5) } else { next(7) };
        match kind {
            0 => serde_json::Value::Null,
            1 => serde_json::Value::Bool(next(2) == 0),
            2 => serde_json::json!(next(u64::MAX) as i64 >> next(64)),
            3 => {
                let floats = [0.5, -0.0, 1e300, -3e-10, 123.456, 1.0, f64::MIN_POSITIVE];
                serde_json::json!(floats[next(floats.len() as u64) as usize])
            }
            4 => {
                let pieces = [
                    "a", "ä", "\"", "\\", "\n", "\t", "\u{1}", "\u{1f}", "\u{7f}", "€", "𝄞", " ",
                    "\u{8}", "\u{c}", "\r",
                ];
                let text: String = (0..next(40))
                    .map(|_| pieces[next(pieces.len() as u64) as usize])
                    .collect();
                serde_json::Value::String(text)
            }
            5 => serde_json::Value::Array(
                (0..next(4))
                    .map(|_| random_value(seed, depth + 1))
                    .collect(),
            ),
            _ => {
                let mut map = serde_json::Map::new();
                for i in 0..next(4) {
                    map.insert(format!("k{i}\"\n"), random_value(seed, depth + 1));
                }
                serde_json::Value::Object(map)
            }
        }
    }

    #[test]
    fn the_count_equals_serde_json_for_random_documents() {
        let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
        for _ in 0..5_000 {
            let mut document = Variables::new();
            for i in 0..4 {
                document.insert(format!("v{i}"), random_value(&mut seed, 0));
            }
            let text = serde_json::to_vec(&document).expect("serializes");
            assert_eq!(
                json_len(&document),
                text.len(),
                "{}",
                String::from_utf8_lossy(&text)
            );
        }
    }

    /// A scope chain's documents written as one equal the merged map written, the inner
    /// documents hiding the outer ones' variables of the same name.
    #[test]
    fn merged_documents_are_written_as_their_merge() {
        let mut seed = 0x05EE_D0FC_4A1B_u64;
        for round in 0..2_000 {
            let chain: Vec<Variables> = (0..1 + round % 4)
                .map(|_| {
                    let mut document = Variables::new();
                    for _ in 0..random_value(&mut seed, 3).to_string().len() % 5 {
                        let name = ["a", "b", "c\"", "ä", "e"][(seed % 5) as usize];
                        document.insert(name.to_string(), random_value(&mut seed, 1));
                    }
                    document
                })
                .collect();
            let mut merged = Variables::new();
            for document in chain.iter().rev() {
                for (name, value) in document {
                    merged.insert(name.clone(), value.clone());
                }
            }
            let documents: Vec<&Variables> = chain.iter().collect();
            assert_eq!(
                merged_json(&documents, 0),
                serde_json::to_string(&merged).expect("serializes"),
                "round {round}"
            );
        }
        assert_eq!(merged_json(&[], 0), "{}");
        let vars = |text: &str| -> Variables { serde_json::from_str(text).expect("JSON") };
        let inner = vars(r#"{"x": 2, "y": "inner"}"#);
        let outer = vars(r#"{"x": 1, "z": [1]}"#);
        assert_eq!(
            merged_json(&[&inner, &outer], 8),
            r#"{"x":2,"y":"inner","z":[1]}"#
        );
    }

    /// The portable scan finds what the SSE2 one finds, on every byte value in every lane.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn both_scans_find_the_same_bytes() {
        let mut seed = 0x0DDB_1A5E_5BAD_5EED_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..20_000 {
            let mut chunk = [0u8; 16];
            for byte in &mut chunk {
                // Mostly plain text, with each special byte somewhere now and then.
                *byte = match next() % 8 {
                    0 => (next() % 256) as u8,
                    1 => [b'"', b'\\', 0x1F, 0x20, 0x00, 0x7F, 0x80, 0xFF][(next() % 8) as usize],
                    _ => b'a' + (next() % 26) as u8,
                };
            }
            if round < 256 {
                chunk[round % 16] = round as u8;
            }
            let portable = escapes_in_word(&chunk[..8]) | escapes_in_word(&chunk[8..]) << 8;
            let expected = (0..16)
                .filter(|i| escape_extra(chunk[*i]) > 0)
                .fold(0, |mask, i| mask | 1 << i);
            assert_eq!(escapes_in(&chunk), expected, "{chunk:?}");
            assert_eq!(portable, expected, "{chunk:?}");
        }
    }

    #[test]
    fn the_writer_writes_what_serde_json_writes() {
        let mut seed = 0x2545_F491_4F6C_DD1D_u64;
        for round in 0..5_000 {
            let mut document = Variables::new();
            for i in 0..4 {
                // Names with escapes too (a name is a JSON string like any other).
                let name = match random_value(&mut seed, 3) {
                    serde_json::Value::String(text) => text,
                    _ => format!("v{i}"),
                };
                document.insert(name, random_value(&mut seed, 0));
            }
            let expected = serde_json::to_vec(&document).expect("serializes");
            let mut written = b"prefix".to_vec();
            write_json(&document, &mut written);
            assert_eq!(
                &written[6..],
                &expected[..],
                "round {round}: {}",
                String::from_utf8_lossy(&expected)
            );
            assert_eq!(to_json_string(&document).as_bytes(), &expected[..]);
        }
        for number in [
            serde_json::json!(0),
            serde_json::json!(u64::MAX),
            serde_json::json!(i64::MIN),
            serde_json::json!(-1),
            serde_json::json!(1e300),
            serde_json::json!(-0.0),
        ] {
            let mut written = Vec::new();
            write_json_value(&number, &mut written);
            assert_eq!(written, serde_json::to_vec(&number).expect("serializes"));
        }
    }

    /// An update's length, computed from the kept length and what it adds and replaces,
    /// is the length of the merged document, measured; and the kept length follows.
    #[test]
    fn an_updates_length_is_the_merged_documents_length() {
        let mut seed = 0x1234_5678_9ABC_DEF1_u64;
        let mut state = State::new(0);
        let scope = Key::new(0, 1);
        for round in 0..2_000 {
            let mut update = Variables::new();
            for _ in 0..1 + round % 4 {
                // Few names, so updates often replace a variable.
                let name = format!("v{}", random_value(&mut seed, 3).to_string().len() % 6);
                update.insert(name, random_value(&mut seed, 0));
            }
            if round % 7 == 0 {
                // Sometimes the kept length is gone, and measured instead.
                state.variable_lens.clear();
            }
            let planned = plan_local(&state, scope, update.clone()).expect("small");
            let mut merged = state.variables.get(&scope).cloned().unwrap_or_default();
            merged.extend(update);
            assert_eq!(planned.len, json_len(&merged), "round {round}");
            state.merge_variables(planned);
            assert_eq!(state.variables[&scope], merged);
            assert_eq!(state.document_len(scope), json_len(&merged));
        }
    }

    #[test]
    fn a_document_over_the_limit_is_rejected_with_its_size() {
        let mut document = Variables::new();
        document.insert(
            "big".to_string(),
            serde_json::Value::String("x".repeat(VARIABLE_DOCUMENT_BYTES_MAX)),
        );
        let rejection = check_document_size(&document).expect_err("over the limit");
        assert_eq!(rejection.code, RejectionCode::LimitExceeded);
        let size = VARIABLE_DOCUMENT_BYTES_MAX + r#"{"big":""}"#.len();
        assert!(
            rejection.message.contains(&size.to_string()),
            "{}",
            rejection.message
        );
        document.clear();
        assert!(check_document_size(&document).is_ok());
    }
}
