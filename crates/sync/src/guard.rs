//! Checks an automerge sync message before automerge sees it.
//!
//! automerge trusts its input. Decoding a sync message and applying its changes, it divides by
//! the size of a peer's bloom filter (zero bits is a division by zero), allocates one entry per
//! probe the peer asks for, inflates compressed chunks and columns with no limit, and expands
//! run-length encoded columns into as many operations as a run says: ten bytes can ask for a
//! billion. The hub runs [`check_sync_message`] on every `request` and `sync` it receives and
//! refuses what fails, so what reaches automerge is bounded by [`SyncLimits`] and costs work
//! proportional to the frame.
//!
//! The walk mirrors automerge's own parsers (sync message, chunk headers, change and document
//! chunks, column metadata, the column encodings) as the storage format specifies them, and is
//! stricter where a well-behaved peer never goes: every byte of the changes must be a complete
//! chunk, LEB128 numbers must be minimal, bundle chunks (an experimental format no peer sends in
//! sync) are refused. It costs one pass over the frame plus at most
//! [`SyncLimits::max_inflated_bytes`] of inflation.
//!
//! The walk cannot know every way automerge's decoder relies on its input (the columns of a
//! document chunk must agree with each other in ways the format leaves to the implementation),
//! so its last step is a trial: each chunk that passed is decoded alone by automerge itself
//! (a document chunk loaded into a scratch document, a change chunk parsed), inside
//! `catch_unwind`. What automerge refuses or panics on is refused here, before it can touch the
//! hub's copy of a document. The trial runs only on what the walk bounded, so it costs at most
//! what applying the message would. Panics it catches are expected: [`quiet_trial_panics`]
//! keeps them out of the process's panic output.
//!
//! What a chunk alone cannot show is checked where the message meets the document: the hub
//! applies it under [`trial`] too, and [`faithful_changes_since`] checks that what it added
//! comes out of automerge again under the hashes it arrived with.
//!
//! **Invariant:** linear in the input: every loop consumes input or stops at a limit.

use std::cell::Cell;
use std::io::Read as _;
use std::panic::{self, AssertUnwindSafe};

/// What a sync message may ask of the hub. The defaults leave a wide margin over what real
/// peers send (a few heads, one `have`, a bloom filter with 7 probes, account documents of
/// thousands of operations) and stop what no peer needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncLimits {
    /// Heads, and hashes in each `have`'s `lastSync`.
    pub max_heads: usize,
    /// Hashes the peer asks for explicitly.
    pub max_need: usize,
    /// `have` entries (automerge sends one).
    pub max_haves: usize,
    /// Probes per bloom-filter lookup (automerge uses 7).
    pub max_bloom_probes: u32,
    /// Change and document chunks in one message.
    pub max_chunks: usize,
    /// Bytes all compressed chunks and columns of one message may inflate to.
    pub max_inflated_bytes: usize,
    /// Rows (operations, changes, values) all columns of one message may decode to, counted
    /// per chunk as its longest column.
    pub max_rows: u64,
    /// Bytes in one actor id.
    pub max_actor_bytes: usize,
}

impl Default for SyncLimits {
    fn default() -> Self {
        Self {
            max_heads: 1024,
            max_need: 16 * 1024,
            max_haves: 16,
            max_bloom_probes: 64,
            max_chunks: 100_000,
            max_inflated_bytes: 32 * 1024 * 1024,
            max_rows: 2_000_000,
            max_actor_bytes: 128,
        }
    }
}

/// What a message that passed will cost automerge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncMessageCost {
    pub chunks: usize,
    pub inflated_bytes: usize,
    pub rows: u64,
}

/// Why a sync message was refused. The text goes to the peer in an `error` message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("sync message ends early")]
    Truncated,
    #[error("sync message starts with {0:#04x}, not a sync message type")]
    NotASyncMessage(u8),
    #[error("sync message has a malformed number")]
    BadNumber,
    #[error("sync message has {count} {what}, over the limit of {limit}")]
    TooMany {
        what: &'static str,
        count: u64,
        limit: u64,
    },
    #[error("sync message has a bloom filter with no bits for {0} entries")]
    EmptyBloomFilter(u32),
    #[error("sync message has a bloom filter with {0} bits, too many")]
    BloomFilterTooLarge(u64),
    #[error("sync message has a change chunk without the automerge magic bytes")]
    BadMagic,
    #[error("sync message has a chunk of unknown type {0}")]
    UnknownChunkType(u8),
    #[error("sync message has a bundle chunk, which sync does not accept")]
    BundleChunk,
    #[error("sync message has a change with compressed columns")]
    CompressedChangeColumns,
    #[error("sync message has a compressed chunk that does not inflate")]
    BadDeflate,
    #[error("sync message inflates to more than {0} bytes")]
    InflatesTooMuch(usize),
    #[error("sync message decodes to more than {0} rows")]
    TooManyRows(u64),
    #[error("sync message has an actor id of {0} bytes")]
    BadActorId(usize),
    #[error("sync message has text that is not UTF-8")]
    NotUtf8,
    #[error("sync message has a chunk with bytes left over")]
    LeftoverBytes,
    #[error("sync message has a damaged {0} chunk")]
    Undecodable(&'static str),
}

const MESSAGE_TYPE_SYNC: u8 = 0x42;
const MESSAGE_TYPE_SYNC_V2: u8 = 0x43;
const HASH_BYTES: usize = 32;
const MAGIC_BYTES: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
const CHUNK_DOCUMENT: u8 = 0;
const CHUNK_CHANGE: u8 = 1;
const CHUNK_COMPRESSED_CHANGE: u8 = 2;
const CHUNK_BUNDLE: u8 = 3;
const COLUMN_DEFLATE: u32 = 0b1000;

/// Checks `data`, the `data` of a `request` or `sync` message. `Ok` means automerge may decode
/// it and apply its changes at the returned cost.
pub fn check_sync_message(data: &[u8], limits: &SyncLimits) -> Result<SyncMessageCost, Refusal> {
    let mut input = Input::new(data);
    let kind = input.byte()?;
    if kind != MESSAGE_TYPE_SYNC && kind != MESSAGE_TYPE_SYNC_V2 {
        return Err(Refusal::NotASyncMessage(kind));
    }
    hashes(&mut input, limits.max_heads, "heads")?;
    hashes(&mut input, limits.max_need, "needed hashes")?;
    let haves = input.count(limits.max_haves, "have entries")?;
    for _ in 0..haves {
        hashes(&mut input, limits.max_heads, "last-sync hashes")?;
        let bloom = input.length_prefixed()?;
        check_bloom(bloom, limits)?;
    }
    let entries = input.count(limits.max_chunks, "change entries")?;
    // automerge concatenates the entries and loads the result as one run of chunks, so a chunk
    // may straddle two entries: walk the concatenation.
    let mut joined = Vec::new();
    for _ in 0..entries {
        joined.extend_from_slice(input.length_prefixed()?);
    }
    // What follows is a length-prefixed list of flags, which automerge reads bit by bit
    // whatever they hold, then anything a later version appends, which it ignores.
    if !input.is_empty() {
        input.length_prefixed()?;
    }
    let mut budget = Budget::new(limits);
    let mut chunks = Input::new(&joined);
    let mut walked = Vec::new();
    while !chunks.is_empty() {
        let before = chunks.bytes;
        let kind = check_chunk(&mut chunks, limits, &mut budget)?;
        walked.push((kind, &before[..before.len() - chunks.bytes.len()]));
    }
    for (kind, chunk) in walked {
        trial_decode(kind, chunk)?;
    }
    Ok(budget.cost)
}

thread_local! {
    /// Set while [`trial_decode`] runs on this thread.
    static IN_TRIAL: Cell<bool> = const { Cell::new(false) };
}

/// Makes the process's panic hook skip panics the guard's trial decode catches (automerge
/// refusing a damaged chunk by panicking); every other panic goes to the hook as before. Call it
/// once at start-up, after any other hook is installed (the fuzz targets call it after
/// libFuzzer's, which aborts on every panic).
pub fn quiet_trial_panics() {
    let previous = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        if !IN_TRIAL.with(Cell::get) {
            previous(info);
        }
    }));
}

/// Runs `work` (automerge on input that may be hostile) with its panics caught and kept out of
/// the panic output: `None` if it panicked.
pub(crate) fn trial<T>(work: impl FnOnce() -> T) -> Option<T> {
    IN_TRIAL.with(|flag| flag.set(true));
    let outcome = panic::catch_unwind(AssertUnwindSafe(work));
    IN_TRIAL.with(|flag| flag.set(false));
    outcome.ok()
}

/// Decodes one chunk that passed the walk with automerge itself, alone.
fn trial_decode(kind: u8, chunk: &[u8]) -> Result<(), Refusal> {
    let what = match kind {
        CHUNK_DOCUMENT => "document",
        _ => "change",
    };
    let decoded = trial(|| match kind {
        CHUNK_DOCUMENT => automerge::Automerge::load_with_options(
            chunk,
            automerge::LoadOptions::new()
                .on_partial_load(automerge::OnPartialLoad::Error)
                .verification_mode(automerge::VerificationMode::Check),
        )
        .is_ok(),
        _ => automerge::Change::try_from(chunk).is_ok(),
    });
    match decoded {
        Some(true) => Ok(()),
        Some(false) | None => Err(Refusal::Undecodable(what)),
    }
}

/// The changes `doc` gained since `before`, encoded for the store, if automerge reproduces
/// each of them exactly; `None` if it does not.
///
/// automerge 0.12 keeps no change's bytes: it keeps operations and encodes a change again
/// when asked for it. A change whose bytes pass every check can still hold what the operation
/// set cannot keep (a `pred` naming an operation that never existed, found by the fuzzer), so
/// it comes out again with other bytes and another hash. Stored so, it would make the
/// document's heads after a reload differ from the heads the hub acknowledged, and every later
/// change of the sender would wait forever for a dependency the store does not have. So the
/// hub compares the hashes the change graph recorded on arrival with the hashes of the
/// changes encoded again, and refuses the message (rebuilding the document from the store)
/// when they differ. automerge's own debug build makes the same comparison and panics on a
/// difference, which [`trial`] turns into the same `None`.
/// (The hub, server code, runs only on automerge's 0.12 line; 0.6 has no `get_changes_meta`.)
#[cfg(not(any(target_arch = "wasm32", fieldnotes_browser_automerge)))]
pub fn faithful_changes_since(
    doc: &automerge::Automerge,
    before: &[automerge::ChangeHash],
) -> Option<Vec<u8>> {
    trial(|| {
        let mut arrived: Vec<automerge::ChangeHash> = doc
            .get_changes_meta(before)
            .into_iter()
            .map(|meta| meta.hash)
            .collect();
        let changes = doc.get_changes(before);
        let mut encoded: Vec<automerge::ChangeHash> =
            changes.iter().map(automerge::Change::hash).collect();
        arrived.sort_unstable();
        encoded.sort_unstable();
        (arrived == encoded).then(|| {
            changes
                .iter()
                .flat_map(|change| change.raw_bytes().iter().copied())
                .collect()
        })
    })
    .flatten()
}

fn hashes(input: &mut Input<'_>, limit: usize, what: &'static str) -> Result<(), Refusal> {
    let count = input.count(limit, what)?;
    input.take(count * HASH_BYTES)?;
    Ok(())
}

/// A bloom filter as automerge parses it: empty, or three numbers and the bits they imply.
fn check_bloom(bytes: &[u8], limits: &SyncLimits) -> Result<(), Refusal> {
    if bytes.is_empty() {
        return Ok(());
    }
    let mut input = Input::new(bytes);
    let entries = input.u32()?;
    let bits_per_entry = input.u32()?;
    let probes = input.u32()?;
    if probes > limits.max_bloom_probes {
        return Err(Refusal::TooMany {
            what: "bloom filter probes",
            count: u64::from(probes),
            limit: u64::from(limits.max_bloom_probes),
        });
    }
    let bits = u64::from(entries) * u64::from(bits_per_entry);
    // automerge takes the modulo of a probe by the number of bits, as a u32.
    if bits > u64::from(u32::MAX) / 2 {
        return Err(Refusal::BloomFilterTooLarge(bits));
    }
    let bytes_needed = bits.div_ceil(8) as usize;
    if entries > 0 && bytes_needed == 0 {
        return Err(Refusal::EmptyBloomFilter(entries));
    }
    input.take(bytes_needed)?;
    Ok(())
}

struct Budget<'l> {
    limits: &'l SyncLimits,
    cost: SyncMessageCost,
}

impl<'l> Budget<'l> {
    fn new(limits: &'l SyncLimits) -> Self {
        Self {
            limits,
            cost: SyncMessageCost::default(),
        }
    }

    fn chunk(&mut self) -> Result<(), Refusal> {
        self.cost.chunks += 1;
        if self.cost.chunks > self.limits.max_chunks {
            return Err(Refusal::TooMany {
                what: "chunks",
                count: self.cost.chunks as u64,
                limit: self.limits.max_chunks as u64,
            });
        }
        Ok(())
    }

    fn rows_left(&self) -> u64 {
        self.limits.max_rows - self.cost.rows
    }

    fn add_rows(&mut self, rows: u64) {
        self.cost.rows += rows;
    }

    /// Inflates raw deflate data, stopping at what the budget has left.
    fn inflate(&mut self, compressed: &[u8]) -> Result<Vec<u8>, Refusal> {
        let left = self.limits.max_inflated_bytes - self.cost.inflated_bytes;
        let mut out = Vec::new();
        flate2::read::DeflateDecoder::new(compressed)
            .take(left as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|_| Refusal::BadDeflate)?;
        if out.len() > left {
            return Err(Refusal::InflatesTooMuch(self.limits.max_inflated_bytes));
        }
        self.cost.inflated_bytes += out.len();
        Ok(out)
    }
}

/// Walks one chunk and returns its type.
fn check_chunk(
    input: &mut Input<'_>,
    limits: &SyncLimits,
    budget: &mut Budget<'_>,
) -> Result<u8, Refusal> {
    if input.take(4)? != MAGIC_BYTES {
        return Err(Refusal::BadMagic);
    }
    input.take(4)?; // checksum, which automerge verifies
    let kind = input.byte()?;
    if kind > CHUNK_BUNDLE {
        return Err(Refusal::UnknownChunkType(kind));
    }
    let length = input.usize()?;
    let body = input.take(length)?;
    budget.chunk()?;
    match kind {
        CHUNK_CHANGE => check_change(body, limits, budget)?,
        CHUNK_COMPRESSED_CHANGE => {
            let inflated = budget.inflate(body)?;
            check_change(&inflated, limits, budget)?
        }
        CHUNK_DOCUMENT => check_document(body, limits, budget)?,
        CHUNK_BUNDLE => return Err(Refusal::BundleChunk),
        other => return Err(Refusal::UnknownChunkType(other)),
    }
    Ok(kind)
}

fn actor_id(input: &mut Input<'_>, limits: &SyncLimits) -> Result<(), Refusal> {
    let length = input.usize()?;
    if length == 0 || length > limits.max_actor_bytes {
        return Err(Refusal::BadActorId(length));
    }
    input.take(length)?;
    Ok(())
}

fn actor_ids(input: &mut Input<'_>, limits: &SyncLimits) -> Result<(), Refusal> {
    // Each id takes at least two bytes, so the input bounds the count.
    let count = input.u64()?;
    for _ in 0..count {
        actor_id(input, limits)?;
    }
    Ok(())
}

/// A change chunk's body: automerge's `Change::parse_following_header`.
fn check_change(body: &[u8], limits: &SyncLimits, budget: &mut Budget<'_>) -> Result<(), Refusal> {
    let mut input = Input::new(body);
    hashes(&mut input, limits.max_heads, "dependencies")?;
    actor_id(&mut input, limits)?;
    input.u64()?; // seq
    input.u64()?; // start op
    input.i64()?; // time
    let message = input.length_prefixed()?;
    std::str::from_utf8(message).map_err(|_| Refusal::NotUtf8)?;
    actor_ids(&mut input, limits)?;
    let columns = column_metadata(&mut input)?;
    if columns.iter().any(|c| c.spec & COLUMN_DEFLATE != 0) {
        return Err(Refusal::CompressedChangeColumns);
    }
    let data = input.take(total_length(&columns)?)?;
    // The rest is extra bytes a newer version may add; automerge keeps them as they are.
    let rows = rows_of_columns(data, &columns, budget)?;
    budget.add_rows(rows);
    Ok(())
}

/// A document chunk's body: automerge's `Document::parse`.
fn check_document(
    body: &[u8],
    limits: &SyncLimits,
    budget: &mut Budget<'_>,
) -> Result<(), Refusal> {
    let mut input = Input::new(body);
    actor_ids(&mut input, limits)?;
    let heads = input.count(limits.max_heads, "document heads")?;
    input.take(heads * HASH_BYTES)?;
    let change_columns = column_metadata(&mut input)?;
    let op_columns = column_metadata(&mut input)?;
    let change_data = input.take(total_length(&change_columns)?)?;
    let op_data = input.take(total_length(&op_columns)?)?;
    // The suffix: one index per head, or nothing (documents from old JavaScript versions).
    if !input.is_empty() {
        for _ in 0..heads {
            input.u64()?;
        }
    }
    if !input.is_empty() {
        return Err(Refusal::LeftoverBytes);
    }
    let change_rows = rows_of_columns(change_data, &change_columns, budget)?;
    budget.add_rows(change_rows);
    let op_rows = rows_of_columns(op_data, &op_columns, budget)?;
    budget.add_rows(op_rows);
    Ok(())
}

struct ColumnMeta {
    spec: u32,
    length: usize,
}

fn column_metadata(input: &mut Input<'_>) -> Result<Vec<ColumnMeta>, Refusal> {
    // Each column takes at least two bytes of metadata, so the input bounds the count.
    let count = input.u64()?;
    let mut columns = Vec::new();
    for _ in 0..count {
        let spec = input.u32()?;
        let length = input.usize()?;
        columns.push(ColumnMeta { spec, length });
    }
    Ok(columns)
}

fn total_length(columns: &[ColumnMeta]) -> Result<usize, Refusal> {
    columns
        .iter()
        .try_fold(0usize, |sum, c| sum.checked_add(c.length))
        .ok_or(Refusal::Truncated)
}

/// The longest column's row count: how many operations (or changes) the chunk holds.
fn rows_of_columns(
    data: &[u8],
    columns: &[ColumnMeta],
    budget: &mut Budget<'_>,
) -> Result<u64, Refusal> {
    let mut rest = Input::new(data);
    let mut longest = 0;
    for column in columns {
        let raw = rest.take(column.length)?;
        let inflated;
        let bytes = if column.spec & COLUMN_DEFLATE != 0 {
            inflated = budget.inflate(raw)?;
            &inflated[..]
        } else {
            raw
        };
        let rows = column_rows(bytes, column.spec & 0b111, budget.rows_left())?;
        longest = longest.max(rows);
    }
    Ok(longest)
}

const GROUP: u32 = 0;
const ACTOR: u32 = 1;
const INTEGER: u32 = 2;
const DELTA_INTEGER: u32 = 3;
const BOOLEAN: u32 = 4;
const STRING: u32 = 5;
const VALUE_METADATA: u32 = 6;

/// How many rows one column decodes to, refusing more than `limit`.
fn column_rows(bytes: &[u8], column_type: u32, limit: u64) -> Result<u64, Refusal> {
    let mut input = Input::new(bytes);
    let mut rows: u64 = 0;
    let mut add = |n: u64| -> Result<(), Refusal> {
        rows = rows.saturating_add(n);
        if rows > limit {
            Err(Refusal::TooManyRows(limit))
        } else {
            Ok(())
        }
    };
    match column_type {
        // A raw value column holds the bytes its metadata column describes; it has no rows.
        7 => {}
        BOOLEAN => {
            while !input.is_empty() {
                add(input.u64()?)?;
            }
        }
        GROUP | ACTOR | INTEGER | DELTA_INTEGER | STRING | VALUE_METADATA => {
            // Run-length encoding: a positive count is one value repeated, a negative count
            // that many literal values, zero a run of nulls.
            let value = |input: &mut Input<'_>| -> Result<(), Refusal> {
                match column_type {
                    DELTA_INTEGER => input.i64().map(drop),
                    STRING => {
                        let text = input.length_prefixed()?;
                        std::str::from_utf8(text).map_err(|_| Refusal::NotUtf8)?;
                        Ok(())
                    }
                    _ => input.u64().map(drop),
                }
            };
            while !input.is_empty() {
                let count = input.i64()?;
                if count > 0 {
                    value(&mut input)?;
                    add(count as u64)?;
                } else if count < 0 {
                    let literals = count.unsigned_abs();
                    add(literals)?;
                    for _ in 0..literals {
                        value(&mut input)?;
                    }
                } else {
                    add(input.u64()?)?;
                }
            }
        }
        _ => unreachable!("column types are three bits"),
    }
    Ok(rows)
}

/// A cursor over bytes with automerge's LEB128 rules (minimal encodings only).
struct Input<'a> {
    bytes: &'a [u8],
}

impl<'a> Input<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn byte(&mut self) -> Result<u8, Refusal> {
        let (&first, rest) = self.bytes.split_first().ok_or(Refusal::Truncated)?;
        self.bytes = rest;
        Ok(first)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Refusal> {
        if n > self.bytes.len() {
            return Err(Refusal::Truncated);
        }
        let (taken, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(taken)
    }

    fn length_prefixed(&mut self) -> Result<&'a [u8], Refusal> {
        let length = self.usize()?;
        self.take(length)
    }

    /// A count of items that each take at least one byte, checked against `limit`.
    fn count(&mut self, limit: usize, what: &'static str) -> Result<usize, Refusal> {
        let count = self.u64()?;
        if count > limit as u64 {
            return Err(Refusal::TooMany {
                what,
                count,
                limit: limit as u64,
            });
        }
        Ok(count as usize)
    }

    fn u64(&mut self) -> Result<u64, Refusal> {
        let mut result: u64 = 0;
        let mut shift = 0;
        loop {
            let byte = self.byte()?;
            if shift == 63 && byte > 1 {
                return Err(Refusal::BadNumber);
            }
            result |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                if shift > 0 && byte == 0 {
                    return Err(Refusal::BadNumber);
                }
                return Ok(result);
            }
            shift += 7;
            if shift > 63 {
                return Err(Refusal::BadNumber);
            }
        }
    }

    fn u32(&mut self) -> Result<u32, Refusal> {
        u32::try_from(self.u64()?).map_err(|_| Refusal::BadNumber)
    }

    fn usize(&mut self) -> Result<usize, Refusal> {
        usize::try_from(self.u64()?).map_err(|_| Refusal::BadNumber)
    }

    fn i64(&mut self) -> Result<i64, Refusal> {
        let mut result: i64 = 0;
        let mut shift = 0;
        let mut previous = 0u8;
        loop {
            let byte = self.byte()?;
            if shift == 63 && byte != 0 && byte != 0x7f {
                return Err(Refusal::BadNumber);
            }
            result |= i64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                if shift > 0
                    && ((byte == 0 && previous & 0x40 == 0)
                        || (byte == 0x7f && previous & 0x40 != 0))
                {
                    return Err(Refusal::BadNumber);
                }
                if shift + 7 < 64 && byte & 0x40 != 0 {
                    result |= -1i64 << (shift + 7);
                }
                return Ok(result);
            }
            previous = byte;
            shift += 7;
            if shift > 63 {
                return Err(Refusal::BadNumber);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(data: &[u8]) -> Result<SyncMessageCost, Refusal> {
        check_sync_message(data, &SyncLimits::default())
    }

    #[test]
    fn the_bloom_filter_without_bits_is_refused() {
        // One `have` whose bloom filter claims an entry with zero bits per entry: automerge
        // 0.12 divides by zero on it while generating its reply.
        let data = [0x42, 0x00, 0x00, 0x01, 0x00, 0x03, 0x01, 0x00, 0x01, 0x00];
        assert_eq!(check(&data), Err(Refusal::EmptyBloomFilter(1)));
    }

    #[test]
    fn a_bloom_filter_with_a_billion_probes_is_refused() {
        // entries 1, 10 bits per entry, 2^30 probes, 2 bytes of bits.
        let mut bloom = vec![0x01, 0x0a];
        bloom.extend([0x80, 0x80, 0x80, 0x80, 0x04]);
        bloom.extend([0xff, 0xff]);
        let mut data = vec![0x42, 0x00, 0x00, 0x01, 0x00, bloom.len() as u8];
        data.extend(bloom);
        data.push(0x00);
        assert!(matches!(
            check(&data),
            Err(Refusal::TooMany {
                what: "bloom filter probes",
                ..
            })
        ));
    }

    /// A sync message carrying `chunks`, as automerge 0.12 sends a whole document.
    fn message_with(chunks: &[Vec<u8>]) -> Vec<u8> {
        fn leb128(mut n: usize, out: &mut Vec<u8>) {
            loop {
                let byte = (n & 0x7f) as u8;
                n >>= 7;
                if n == 0 {
                    out.push(byte);
                    return;
                }
                out.push(byte | 0x80);
            }
        }
        let mut data = vec![MESSAGE_TYPE_SYNC, 0x00, 0x00, 0x00];
        leb128(chunks.len(), &mut data);
        for chunk in chunks {
            leb128(chunk.len(), &mut data);
            data.extend_from_slice(chunk);
        }
        data
    }

    fn a_document() -> automerge::Automerge {
        use automerge::transaction::Transactable as _;
        let mut doc = automerge::Automerge::new().with_actor(automerge::ActorId::from(b"guard"));
        let mut tx = doc.transaction();
        tx.put(automerge::ROOT, "name", "Harbour Hardware").unwrap();
        tx.commit();
        doc
    }

    #[test]
    fn a_whole_document_that_automerge_loads_passes() {
        let data = message_with(&[a_document().save()]);
        assert!(check(&data).is_ok());
    }

    #[test]
    fn a_document_that_only_automerge_can_see_is_damaged_is_refused_by_the_trial() {
        // The walk does not verify checksums; automerge does, so the trial load refuses it.
        let mut chunk = a_document().save();
        chunk[4] ^= 0xff;
        let data = message_with(&[chunk]);
        assert_eq!(check(&data), Err(Refusal::Undecodable("document")));
    }

    #[test]
    fn leb128_rules_match_automerge() {
        assert_eq!(Input::new(&[0x80, 0x01]).u64(), Ok(128));
        assert_eq!(Input::new(&[0x80, 0x00]).u64(), Err(Refusal::BadNumber));
        assert_eq!(Input::new(&[0x7f]).i64(), Ok(-1));
        assert_eq!(Input::new(&[0xff, 0x7f]).i64(), Err(Refusal::BadNumber));
        assert_eq!(Input::new(&[0x80, 0x7f]).i64(), Ok(-128));
        assert_eq!(Input::new(&[0x3f]).i64(), Ok(63));
        assert_eq!(Input::new(&[0xc0, 0x00]).i64(), Ok(64));
        let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(Input::new(&max).u64(), Ok(u64::MAX));
        let over = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert_eq!(Input::new(&over).u64(), Err(Refusal::BadNumber));
        assert_eq!(Input::new(&[0x80]).u64(), Err(Refusal::Truncated));
    }

    #[test]
    fn a_run_of_a_billion_rows_is_refused_without_decoding_it() {
        // A boolean column of one run of 2^40 falses.
        let column = [0x80, 0x80, 0x80, 0x80, 0x80, 0x20];
        assert_eq!(
            column_rows(&column, BOOLEAN, 1_000_000),
            Err(Refusal::TooManyRows(1_000_000))
        );
        // Run-length encoded: a null run, a repeated value, literals.
        let column = [0x00, 0x05, 0x03, 0x07, 0x7e, 0x01, 0x02];
        assert_eq!(column_rows(&column, INTEGER, 100), Ok(5 + 3 + 2));
    }
}
