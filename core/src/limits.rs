//! Bounds on Automerge bytes that come from outside: changes a phone pushes (on the server)
//! and changes and saved documents a server sends (on the phone). Automerge itself trusts
//! its input: it inflates DEFLATE data without a cap, expands run-length columns into as
//! many operations as they claim, does not verify chunk checksums, and some malformed
//! columns make it panic. So every byte from outside passes here first:
//!
//! 1. the chunk header is read by hand; a compressed chunk or column is inflated only up to
//!    a hard cap;
//! 2. every column's row count is summed from its run headers (cheap: runs, not rows) and
//!    capped, so automerge is never asked to expand a run of a billion operations;
//! 3. the chunk is parsed by automerge inside `catch_unwind`, and a change's checksum is
//!    verified against its hash;
//! 4. the operations are walked for string lengths.
//!
//! Nesting depth cannot be read from one change (an object's parent may live in another):
//! [`crate::doc::Document::check_limits`] walks the merged document, with a depth guard,
//! before anything reads it recursively.
//!
//! Sans-I/O: nothing here touches SQLite or the network.

use std::io::Read;

use automerge::Change;

/// The bounds. The defaults fit every record the model can hold many times over: a visit
/// is about six levels deep, its longest text 5,000 characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of one change once inflated.
    pub max_change_bytes: usize,
    /// Operations in one change.
    pub max_change_ops: u64,
    /// Bytes of one saved document once its columns are inflated.
    pub max_document_bytes: usize,
    /// Operations (and changes) of one document.
    pub max_document_ops: u64,
    /// Nesting of maps and lists below the root.
    pub max_depth: usize,
    /// Bytes of one string or byte value.
    pub max_value_bytes: usize,
    /// Bytes of a change's message (the author it names).
    pub max_message_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_change_bytes: 1024 * 1024,
            max_change_ops: 50_000,
            max_document_bytes: 8 * 1024 * 1024,
            max_document_ops: 500_000,
            max_depth: 16,
            max_value_bytes: 64 * 1024,
            max_message_bytes: 1024,
        }
    }
}

/// Why bytes from outside were refused. Messages name the limit, never the contents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("not an Automerge change or document: {0}")]
    Malformed(String),
    #[error("the checksum does not match the contents (corrupted in transit or forged)")]
    Checksum,
    #[error("{what} is {found} once decompressed, at most {max}")]
    TooLarge { what: &'static str, found: u64, max: u64 },
    #[error("{what} holds {found} operations, at most {max}")]
    TooManyOps { what: &'static str, found: u64, max: u64 },
    #[error("nested {found} levels deep, at most {max}")]
    TooDeep { found: usize, max: usize },
    #[error("a value of {found} bytes, at most {max}")]
    ValueTooLong { found: usize, max: usize },
    #[error("automerge could not read it")]
    Undecodable,
}

impl Refusal {
    /// A short machine-readable code for the refusal.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Malformed(_) | Refusal::Undecodable => "invalid_change",
            Refusal::Checksum => "checksum_mismatch",
            Refusal::TooLarge { .. } | Refusal::TooManyOps { .. } | Refusal::ValueTooLong { .. } => "too_large",
            Refusal::TooDeep { .. } => "too_deep",
        }
    }

    /// The refusal for a person, in Chinese.
    pub fn message_zh(&self) -> String {
        match self {
            Refusal::Malformed(_) | Refusal::Undecodable => "数据格式无法识别".to_string(),
            Refusal::Checksum => "校验和不符（传输中损坏或被篡改）".to_string(),
            Refusal::TooLarge { found, max, .. } => format!("数据过大：解压后 {found} 字节，上限 {max}"),
            Refusal::TooManyOps { found, max, .. } => format!("操作过多：{found} 个，上限 {max}"),
            Refusal::TooDeep { found, max } => format!("嵌套过深：{found} 层，上限 {max}"),
            Refusal::ValueTooLong { found, max } => format!("字段值过长：{found} 字节，上限 {max}"),
        }
    }
}

const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
const CHUNK_DOCUMENT: u8 = 0;
const CHUNK_CHANGE: u8 = 1;
const CHUNK_COMPRESSED: u8 = 2;
const COLUMN_DEFLATE: u32 = 0b1000;

/// Decodes one change from outside within `limits`: inflated under the cap, its columns'
/// row counts capped before automerge expands them, parsed without letting a panic out,
/// its checksum verified, its values' lengths checked.
pub fn decode_change(bytes: &[u8], limits: &Limits) -> Result<Change, Refusal> {
    let header = ChunkHeader::parse(bytes)?;
    let (body, rebuilt) = match header.chunk_type {
        CHUNK_CHANGE => (header.data, None),
        CHUNK_COMPRESSED => {
            let inflated = inflate(header.data, limits.max_change_bytes, "a change")?;
            // The checksum of a compressed chunk is that of the uncompressed one, which is
            // what automerge would rebuild: rebuild it here and parse that.
            let mut chunk = Vec::with_capacity(inflated.len() + 16);
            chunk.extend_from_slice(&MAGIC);
            chunk.extend_from_slice(&header.checksum);
            chunk.push(CHUNK_CHANGE);
            write_uleb(&mut chunk, inflated.len() as u64);
            chunk.extend_from_slice(&inflated);
            (&[][..], Some(chunk))
        }
        CHUNK_DOCUMENT => return Err(Refusal::Malformed("a whole document where a change was expected".into())),
        t => return Err(Refusal::Malformed(format!("unknown chunk type {t}"))),
    };
    let (raw, body) = match &rebuilt {
        Some(chunk) => (chunk.as_slice(), ChunkHeader::parse(chunk)?.data),
        None => (bytes, body),
    };
    if body.len() > limits.max_change_bytes {
        return Err(Refusal::TooLarge {
            what: "a change",
            found: body.len() as u64,
            max: limits.max_change_bytes as u64,
        });
    }
    check_change_body(body, limits)?;
    let owned = raw.to_vec();
    let change = std::panic::catch_unwind(move || Change::from_bytes(owned))
        .map_err(|_| Refusal::Undecodable)?
        .map_err(|e| Refusal::Malformed(e.to_string()))?;
    if change.hash().0[..4] != header.checksum {
        return Err(Refusal::Checksum);
    }
    if change.message().is_some_and(|m| m.len() > limits.max_message_bytes) {
        return Err(Refusal::ValueTooLong {
            found: change.message().map_or(0, str::len),
            max: limits.max_message_bytes,
        });
    }
    let expanded = std::panic::catch_unwind(|| change.decode()).map_err(|_| Refusal::Undecodable)?;
    for op in &expanded.operations {
        if let automerge::legacy::OpType::Put(value) = &op.action {
            let len = match value {
                automerge::ScalarValue::Str(s) => s.len(),
                automerge::ScalarValue::Bytes(b) => b.len(),
                automerge::ScalarValue::Unknown { bytes, .. } => bytes.len(),
                _ => 0,
            };
            if len > limits.max_value_bytes {
                return Err(Refusal::ValueTooLong { found: len, max: limits.max_value_bytes });
            }
        }
        if let automerge::legacy::Key::Map(key) = &op.key {
            if key.len() > limits.max_value_bytes {
                return Err(Refusal::ValueTooLong { found: key.len(), max: limits.max_value_bytes });
            }
        }
    }
    Ok(change)
}

/// Checks a saved document from outside before automerge loads it: a document chunk (or
/// several, as `save` then `save_incremental` write), compressed columns inflated under the
/// cap, every column's rows capped.
pub fn check_document(bytes: &[u8], limits: &Limits) -> Result<(), Refusal> {
    let mut rest = bytes;
    let mut budget = Budget { bytes: limits.max_document_bytes as u64, rows: limits.max_document_ops };
    if rest.is_empty() {
        return Err(Refusal::Malformed("empty document".into()));
    }
    while !rest.is_empty() {
        let header = ChunkHeader::parse(rest)?;
        match header.chunk_type {
            CHUNK_DOCUMENT => check_document_body(header.data, &mut budget, limits)?,
            CHUNK_CHANGE => {
                budget.take_bytes(header.data.len() as u64, "a document")?;
                check_change_body(header.data, limits)?;
            }
            CHUNK_COMPRESSED => {
                let inflated = inflate(header.data, budget.bytes as usize, "a document")?;
                budget.take_bytes(inflated.len() as u64, "a document")?;
                check_change_body(&inflated, limits)?;
            }
            t => return Err(Refusal::Malformed(format!("unknown chunk type {t}"))),
        }
        rest = &rest[header.total_len..];
    }
    Ok(())
}

struct ChunkHeader<'a> {
    checksum: [u8; 4],
    chunk_type: u8,
    data: &'a [u8],
    total_len: usize,
}

impl<'a> ChunkHeader<'a> {
    fn parse(bytes: &'a [u8]) -> Result<ChunkHeader<'a>, Refusal> {
        let mut r = Reader(bytes);
        if r.take(4)? != MAGIC {
            return Err(Refusal::Malformed("no Automerge magic bytes".into()));
        }
        let checksum: [u8; 4] = r.take(4)?.try_into().expect("four bytes");
        let chunk_type = r.take(1)?[0];
        let len = r.uleb()? as usize;
        let header_len = bytes.len() - r.0.len();
        let data = r.take(len)?;
        Ok(ChunkHeader { checksum, chunk_type, data, total_len: header_len + len })
    }
}

/// What a document may still spend: inflated bytes and rows.
struct Budget {
    bytes: u64,
    rows: u64,
}

impl Budget {
    fn take_bytes(&mut self, n: u64, what: &'static str) -> Result<(), Refusal> {
        self.bytes = self.bytes.checked_sub(n).ok_or(Refusal::TooLarge { what, found: n, max: self.bytes })?;
        Ok(())
    }
}

fn inflate(data: &[u8], cap: usize, what: &'static str) -> Result<Vec<u8>, Refusal> {
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(data)
        .take(cap as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| Refusal::Malformed(format!("bad DEFLATE data: {e}")))?;
    if out.len() > cap {
        return Err(Refusal::TooLarge { what, found: out.len() as u64, max: cap as u64 });
    }
    Ok(out)
}

/// The body of a change chunk: header fields, then its operation columns, then extra bytes.
fn check_change_body(body: &[u8], limits: &Limits) -> Result<(), Refusal> {
    let mut r = Reader(body);
    let deps = r.uleb()?;
    r.take(usize::try_from(deps.saturating_mul(32)).unwrap_or(usize::MAX))?;
    r.length_prefixed()?; // actor
    r.uleb()?; // seq
    r.uleb()?; // start op
    r.sleb()?; // time
    let message = r.length_prefixed()?;
    if message.len() > limits.max_message_bytes {
        return Err(Refusal::ValueTooLong { found: message.len(), max: limits.max_message_bytes });
    }
    let other_actors = r.uleb()?;
    for _ in 0..other_actors {
        r.length_prefixed()?;
    }
    let columns = r.columns()?;
    let mut budget = Budget { bytes: u64::MAX, rows: limits.max_change_ops };
    for (spec, data) in columns.iter_data(&mut r)? {
        if spec & COLUMN_DEFLATE != 0 {
            return Err(Refusal::Malformed("compressed columns inside a change".into()));
        }
        count_rows(spec, data, &mut budget, "a change")?;
    }
    Ok(())
}

/// The body of a document chunk: actors, heads, change columns, operation columns.
fn check_document_body(body: &[u8], budget: &mut Budget, limits: &Limits) -> Result<(), Refusal> {
    let mut r = Reader(body);
    let actors = r.uleb()?;
    for _ in 0..actors {
        r.length_prefixed()?;
    }
    let heads = r.uleb()?;
    r.take(usize::try_from(heads.saturating_mul(32)).unwrap_or(usize::MAX))?;
    let change_columns = r.columns()?;
    let op_columns = r.columns()?;
    for columns in [change_columns, op_columns] {
        for (spec, data) in columns.iter_data(&mut r)? {
            let inflated;
            let data = if spec & COLUMN_DEFLATE != 0 {
                inflated = inflate(data, budget.bytes.min(limits.max_document_bytes as u64) as usize, "a document")?;
                &inflated[..]
            } else {
                data
            };
            budget.take_bytes(data.len() as u64, "a document")?;
            let mut rows = Budget { bytes: 0, rows: limits.max_document_ops };
            count_rows(spec & !COLUMN_DEFLATE, data, &mut rows, "a document")?;
        }
    }
    let _ = budget.rows;
    Ok(())
}

/// Column metadata: (spec, length) pairs.
struct Columns(Vec<(u32, usize)>);

impl Columns {
    fn iter_data<'a>(&self, r: &mut Reader<'a>) -> Result<Vec<(u32, &'a [u8])>, Refusal> {
        self.0.iter().map(|&(spec, len)| Ok((spec, r.take(len)?))).collect()
    }
}

/// Sums the rows of one column from its run headers and refuses more than `budget.rows`.
/// Group columns also count the rows their values announce for the grouped columns.
fn count_rows(spec: u32, data: &[u8], budget: &mut Budget, what: &'static str) -> Result<(), Refusal> {
    let column_type = spec & 0b111;
    let max = budget.rows;
    let mut rows: u64 = 0;
    let mut group_total: u64 = 0;
    let mut r = Reader(data);
    let over = |found| Refusal::TooManyOps { what, found, max };
    match column_type {
        // Boolean: alternating run lengths.
        4 => {
            while !r.0.is_empty() {
                rows = rows.saturating_add(r.uleb()?);
                if rows > max {
                    return Err(over(rows));
                }
            }
        }
        // Raw values: bytes, not rows (their lengths are in the metadata column).
        7 => {}
        // Run-length encoded: group (0), actor (1), uint (2), delta (3), string (5), value metadata (6).
        _ => {
            while !r.0.is_empty() {
                let count = r.sleb()?;
                if count > 0 {
                    let value = r.rle_value(column_type)?;
                    rows = rows.saturating_add(count as u64);
                    group_total = group_total.saturating_add(value.saturating_mul(count as u64));
                } else if count < 0 {
                    let n = count.unsigned_abs();
                    if rows.saturating_add(n) > max {
                        return Err(over(rows.saturating_add(n)));
                    }
                    for _ in 0..n {
                        let value = r.rle_value(column_type)?;
                        group_total = group_total.saturating_add(value);
                    }
                    rows += n;
                } else {
                    rows = rows.saturating_add(r.uleb()?);
                }
                if rows > max {
                    return Err(over(rows));
                }
                if column_type == 0 && group_total > max.saturating_mul(8) {
                    return Err(over(group_total));
                }
            }
        }
    }
    Ok(())
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Refusal> {
        if n > self.0.len() {
            return Err(Refusal::Malformed("truncated".into()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn uleb(&mut self) -> Result<u64, Refusal> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = self.take(1)?[0];
            value |= u64::from(byte & 0x7f).checked_shl(shift).unwrap_or(0);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Refusal::Malformed("LEB128 number too long".into()))
    }

    fn sleb(&mut self) -> Result<i64, Refusal> {
        let mut value: i64 = 0;
        let mut shift = 0;
        loop {
            let byte = self.take(1)?[0];
            if shift < 64 {
                value |= i64::from(byte & 0x7f) << shift;
            }
            shift += 7;
            if byte & 0x80 == 0 {
                if shift < 64 && byte & 0x40 != 0 {
                    value |= -1i64 << shift;
                }
                return Ok(value);
            }
            if shift > 70 {
                return Err(Refusal::Malformed("LEB128 number too long".into()));
            }
        }
    }

    fn length_prefixed(&mut self) -> Result<&'a [u8], Refusal> {
        let n = self.uleb()?;
        self.take(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn columns(&mut self) -> Result<Columns, Refusal> {
        let n = self.uleb()?;
        if n > 64 {
            return Err(Refusal::Malformed(format!("{n} columns")));
        }
        let mut out = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let spec = u32::try_from(self.uleb()?).map_err(|_| Refusal::Malformed("column spec".into()))?;
            let len = usize::try_from(self.uleb()?).unwrap_or(usize::MAX);
            out.push((spec, len));
        }
        Ok(Columns(out))
    }

    /// One value of a run-length encoded column; returns it when it is a number.
    fn rle_value(&mut self, column_type: u32) -> Result<u64, Refusal> {
        match column_type {
            3 => self.sleb().map(|_| 0),
            5 => self.length_prefixed().map(|_| 0),
            _ => self.uleb(),
        }
    }
}

fn write_uleb(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::{Author, Document};
    use crate::model::RecordKind;
    use automerge::ActorId;

    fn visit_change(text: &str) -> Change {
        let mut doc = Document::genesis(RecordKind::Visit, "v1");
        let author = Author { user: "u".into(), device: "d".into() };
        let new = serde_json::json!({"visit_date": "2025-01-02", "notes": text});
        doc.write_diff(&ActorId::random(), &author, &serde_json::json!({}), &new).unwrap().unwrap()
    }

    #[test]
    fn honest_changes_pass_compressed_or_not() {
        let mut change = visit_change(&"字".repeat(2_000));
        let raw = change.raw_bytes().to_vec();
        let compressed = change.bytes().to_vec();
        assert_ne!(raw, compressed, "a change over 256 bytes is compressed");
        for bytes in [&raw, &compressed] {
            assert_eq!(decode_change(bytes, &Limits::default()).unwrap().hash(), change.hash());
        }
    }

    #[test]
    fn a_flipped_bit_fails_the_checksum() {
        let mut change = visit_change(&"字".repeat(2_000));
        let mut compressed = change.bytes().to_vec();
        let n = compressed.len();
        compressed[n - 20] ^= 0x10;
        compressed[n - 30] ^= 0x01;
        let found = decode_change(&compressed, &Limits::default()).unwrap_err();
        assert!(matches!(found, Refusal::Checksum | Refusal::Malformed(_)), "{found:?}");
        let mut raw = change.raw_bytes().to_vec();
        let n = raw.len();
        raw[n - 40] ^= 0x04;
        assert!(decode_change(&raw, &Limits::default()).is_err());
    }

    #[test]
    fn an_inflation_bomb_is_refused_before_it_inflates() {
        let change = visit_change("x");
        let raw = change.raw_bytes().to_vec();
        let header = ChunkHeader::parse(&raw).unwrap();
        // A "compressed change" whose DEFLATE data inflates to 64 MiB of zeros.
        let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut enc, &vec![0u8; 64 * 1024 * 1024]).unwrap();
        let deflated = enc.finish().unwrap();
        let mut chunk = MAGIC.to_vec();
        chunk.extend_from_slice(&header.checksum);
        chunk.push(CHUNK_COMPRESSED);
        write_uleb(&mut chunk, deflated.len() as u64);
        chunk.extend_from_slice(&deflated);
        assert!(chunk.len() < 100_000);
        let found = decode_change(&chunk, &Limits::default()).unwrap_err();
        assert!(matches!(found, Refusal::TooLarge { .. }), "{found:?}");
    }

    #[test]
    fn a_long_string_is_refused() {
        let change = visit_change(&"a".repeat(100_000));
        let found = decode_change(change.raw_bytes(), &Limits::default()).unwrap_err();
        assert!(matches!(found, Refusal::ValueTooLong { found: 100_000, .. }), "{found:?}");
    }

    #[test]
    fn too_many_operations_are_refused_by_their_run_headers() {
        let mut doc = Document::genesis(RecordKind::Visit, "v1");
        let author = Author { user: "u".into(), device: "d".into() };
        let items: serde_json::Map<String, serde_json::Value> =
            (0..300).map(|i| (format!("k{i}"), serde_json::json!(i))).collect();
        let change = doc
            .write_diff(&ActorId::random(), &author, &serde_json::json!({}), &serde_json::json!({"notes": items}))
            .unwrap()
            .unwrap();
        let limits = Limits { max_change_ops: 100, ..Limits::default() };
        let found = decode_change(change.raw_bytes(), &limits).unwrap_err();
        assert!(matches!(found, Refusal::TooManyOps { .. }), "{found:?}");
        assert!(decode_change(change.raw_bytes(), &Limits::default()).is_ok());
    }

    #[test]
    fn documents_pass_and_bombs_do_not() {
        let mut doc = Document::genesis(RecordKind::Visit, "v1");
        let author = Author { user: "u".into(), device: "d".into() };
        let new = serde_json::json!({"notes": "字".repeat(3_000)});
        doc.write_diff(&ActorId::random(), &author, &serde_json::json!({}), &new).unwrap();
        let saved = doc.save();
        check_document(&saved, &Limits::default()).unwrap();
        let small = Limits { max_document_bytes: 1_000, ..Limits::default() };
        assert!(matches!(check_document(&saved, &small), Err(Refusal::TooLarge { .. })));
        assert!(check_document(&saved[..saved.len() / 2], &Limits::default()).is_err());
        assert!(check_document(b"garbage", &Limits::default()).is_err());
    }

    /// A change nesting maps 2,000 levels deep: applied, refused by the walk, and no read of
    /// it overflows a small stack.
    #[test]
    fn deep_nesting_is_refused_and_reads_stay_bounded() {
        use automerge::transaction::Transactable;
        let genesis = Document::genesis(RecordKind::Visit, "v1");
        let mut am = genesis.automerge().clone().with_actor(ActorId::random());
        let mut tx = am.transaction();
        let mut obj = automerge::ROOT;
        for _ in 0..2_000 {
            obj = tx.put_object(&obj, "n", automerge::ObjType::Map).unwrap();
        }
        tx.commit();
        let change = am.get_last_local_change().unwrap().clone();
        let decoded = decode_change(change.raw_bytes(), &Limits::default()).unwrap();
        let outcome = std::thread::Builder::new()
            .stack_size(1024 * 1024)
            .spawn(move || {
                let mut doc = Document::genesis(RecordKind::Visit, "v1");
                doc.apply_changes(vec![decoded]).unwrap();
                let refused = doc.check_limits(&Limits::default());
                let json = doc.json(None);
                let conflicts = doc.conflicts().len();
                (refused, json.get("n").is_some(), conflicts)
            })
            .unwrap()
            .join()
            .expect("no stack overflow");
        assert!(matches!(outcome.0, Err(Refusal::TooDeep { .. })), "{:?}", outcome.0);
        assert!(outcome.1);
        assert_eq!(outcome.2, 0);
    }

    #[test]
    fn garbage_never_panics() {
        let mut change = visit_change(&"字".repeat(500));
        let seeds = [change.raw_bytes().to_vec(), change.bytes().to_vec()];
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        for seed in &seeds {
            for _ in 0..2_000 {
                let mut bytes = seed.clone();
                for _ in 0..3 {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let i = (rng as usize) % bytes.len();
                    bytes[i] ^= 1u8 << (rng >> 61);
                }
                rng ^= rng << 13;
                if rng.is_multiple_of(5) && !bytes.is_empty() {
                    bytes.truncate((rng as usize >> 8) % bytes.len());
                }
                let _ = decode_change(&bytes, &Limits::default());
                let _ = check_document(&bytes, &Limits::default());
            }
        }
    }
}
