//! The `reports` rows of a batch in ClickHouse's RowBinary, written once and sent as they are.
//!
//! A batch keeps its rows as one buffer plus where each row ends ([`Rows`]), not as a
//! `Vec<ReportRow>` of ~40 owned strings each: the enricher writes a row's columns straight
//! into the buffer from a view of the window's first message (`crate::enrich`), and an insert
//! sends byte ranges of it (`crate::write::insert`). Retries, the halving that isolates a
//! rejected row and a replay after a restart all send the same bytes again, so the idempotence
//! of the writes is unchanged. The few things later stages need of a row without its columns
//! (rollup hours, dead-letter keys) are kept beside it as a [`RowKey`]; a whole row is read back
//! ([`Rows::row`]) only for a dead letter, a probe insert or a test.
//!
//! RowBinary, for the types `reports` uses: `UInt8/16/32/64` (and `Date` = `UInt16` days,
//! `DateTime` = `UInt32` seconds) little-endian, `String` as an unsigned LEB128 byte length then
//! the bytes. Columns are positional, in [`COLUMNS`](super::COLUMNS) order; the test
//! `written_rows_are_what_the_typed_insert_sends` holds [`ReportRow::write_rowbinary`] to the
//! `clickhouse` crate's own serialisation of [`ReportRow`], and the enricher's rows to it in
//! `enrich::tests`.

use std::ops::Range;

use super::ReportRow;

/// Why bytes are not a RowBinary `reports` row (only rows this module wrote are ever read, so
/// this means a bug, never bad input).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RowBinaryError {
    #[error("row truncated at byte {0}")]
    Truncated(usize),
    #[error("string at byte {0} is not utf-8")]
    Utf8(usize),
    #[error("{0} bytes after the row")]
    Trailing(usize),
    #[error("no row {0} in the batch")]
    NoSuchRow(usize),
}

/// What the stages after the insert need of a row: its identity, count and rollup group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RowKey {
    pub row_id: u64,
    pub dedup_key: u64,
    pub project_id: u64,
    /// `DateTime`: Unix seconds.
    pub window_start: u32,
    pub occurrences: u32,
}

impl From<&ReportRow> for RowKey {
    fn from(row: &ReportRow) -> Self {
        Self {
            row_id: row.row_id,
            dedup_key: row.dedup_key,
            project_id: row.project_id,
            window_start: row.window_start,
            occurrences: row.occurrences,
        }
    }
}

/// Rows in RowBinary: one buffer, the end of each row in it, and each row's [`RowKey`].
///
/// Bounded by its owner: a batch holds at most what `--batch-rows` / `--batch-bytes` let it
/// (plus one tick's closed windows, see `crate::batch`); the bytes are exactly what the inserts
/// send.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rows {
    bytes: Vec<u8>,
    /// `ends[i]` is where row `i` ends in `bytes`; it starts where row `i - 1` ends (or at 0).
    ends: Vec<usize>,
    keys: Vec<RowKey>,
}

impl Rows {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// RowBinary bytes of every row.
    pub fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    /// Appends a typed row (tests, replays, the probe row).
    pub fn push(&mut self, row: &ReportRow) {
        self.push_with(RowKey::from(row), |out| row.write_rowbinary(out));
    }

    /// Appends one row: `write` writes its columns, in [`COLUMNS`](super::COLUMNS) order, and
    /// `key` must be what it writes. If `write` writes nothing, no row is added.
    pub fn push_with(&mut self, key: RowKey, write: impl FnOnce(&mut RowWriter<'_>)) {
        let start = self.bytes.len();
        write(&mut RowWriter {
            out: &mut self.bytes,
        });
        if self.bytes.len() > start {
            self.ends.push(self.bytes.len());
            self.keys.push(key);
        }
    }

    pub fn keys(&self) -> &[RowKey] {
        &self.keys
    }

    /// Byte range of rows `rows` in the buffer.
    fn span(&self, rows: Range<usize>) -> Range<usize> {
        if rows.is_empty() {
            return 0..0;
        }
        let start = match rows.start {
            0 => 0,
            i => self.ends[i - 1],
        };
        start..self.ends[rows.end - 1]
    }

    /// The RowBinary of rows `rows` (indexes into this batch), contiguous.
    ///
    /// # Panics
    /// If `rows` is out of bounds (a bug of the caller, as slice indexing).
    pub fn bytes_of(&self, rows: Range<usize>) -> &[u8] {
        &self.bytes[self.span(rows)]
    }

    /// Where the rows of `rows` end, relative to the start of [`Self::bytes_of`] of the same
    /// range: the row boundaries an insert may cut its chunks at.
    pub fn ends_of(&self, rows: Range<usize>) -> impl Iterator<Item = usize> + '_ {
        let base = self.span(rows.clone()).start;
        self.ends[rows].iter().map(move |end| end - base)
    }

    /// A copy of rows `rows` (the writer keeps its last written row as the probe).
    pub fn copy_of(&self, rows: Range<usize>) -> Rows {
        Rows {
            bytes: self.bytes_of(rows.clone()).to_vec(),
            ends: self.ends_of(rows.clone()).collect(),
            keys: self.keys[rows].to_vec(),
        }
    }

    /// Row `index` read back as a [`ReportRow`].
    pub fn row(&self, index: usize) -> Result<ReportRow, RowBinaryError> {
        if index >= self.len() {
            return Err(RowBinaryError::NoSuchRow(index));
        }
        ReportRow::read_rowbinary(self.bytes_of(index..index + 1))
    }

    /// Every row read back (tests and tools).
    pub fn to_report_rows(&self) -> Result<Vec<ReportRow>, RowBinaryError> {
        (0..self.len()).map(|index| self.row(index)).collect()
    }
}

impl<'a> FromIterator<&'a ReportRow> for Rows {
    fn from_iter<I: IntoIterator<Item = &'a ReportRow>>(rows: I) -> Self {
        let mut encoded = Rows::default();
        for row in rows {
            encoded.push(row);
        }
        encoded
    }
}

impl From<&[ReportRow]> for Rows {
    fn from(rows: &[ReportRow]) -> Self {
        rows.iter().collect()
    }
}

/// Appends RowBinary values to a [`Rows`] buffer.
#[derive(Debug)]
pub struct RowWriter<'a> {
    out: &'a mut Vec<u8>,
}

impl RowWriter<'_> {
    pub fn u8(&mut self, value: u8) {
        self.out.push(value);
    }

    pub fn u16(&mut self, value: u16) {
        self.out.extend_from_slice(&value.to_le_bytes());
    }

    pub fn u32(&mut self, value: u32) {
        self.out.extend_from_slice(&value.to_le_bytes());
    }

    pub fn u64(&mut self, value: u64) {
        self.out.extend_from_slice(&value.to_le_bytes());
    }

    pub fn str(&mut self, text: &str) {
        self.bytes(text.as_bytes());
    }

    /// A string column from its bytes (RowBinary strings are bytes; the columns' text was
    /// checked as UTF-8 where it came in).
    pub fn bytes(&mut self, bytes: &[u8]) {
        self.length(bytes.len());
        self.out.extend_from_slice(bytes);
    }

    /// One string column made of `parts`, one after the other.
    pub fn concat(&mut self, parts: &[&[u8]]) {
        self.length(parts.iter().map(|part| part.len()).sum());
        for part in parts {
            self.out.extend_from_slice(part);
        }
    }

    /// A string's length: unsigned LEB128, the binary Kafka layout's varint.
    fn length(&mut self, len: usize) {
        schemas::binary::varint(self.out, len as u64);
    }

    /// An optional string: `None` is the empty string (the columns have no `Nullable`).
    pub fn text(&mut self, text: Option<&[u8]>) {
        self.bytes(text.unwrap_or_default());
    }
}

impl ReportRow {
    /// Appends this row in RowBinary (what `clickhouse::Client::insert::<ReportRow>` sends).
    pub fn write_rowbinary(&self, w: &mut RowWriter<'_>) {
        w.u64(self.row_id);
        w.u64(self.version);
        w.u64(self.project_id);
        w.u16(self.day);
        w.u32(self.window_start);
        w.u32(self.first_seen);
        w.u32(self.last_seen);
        w.u32(self.occurrences);
        w.u64(self.fingerprint);
        w.u64(self.dedup_key);
        for text in [
            &self.message_id,
            &self.kind,
            &self.report_type,
            &self.wire,
            &self.disposition,
            &self.environment,
            &self.release,
            &self.document_url,
            &self.document_origin,
            &self.document_host,
            &self.document_path,
            &self.referrer,
            &self.blocked_url,
            &self.blocked_class,
            &self.blocked_scheme,
            &self.blocked_host,
            &self.blocked_domain,
            &self.blocked_origin,
        ] {
            w.str(text);
        }
        w.u8(self.third_party);
        for text in [
            &self.effective_directive,
            &self.directive_family,
            &self.violated_directive,
            &self.source_file,
            &self.source_host,
        ] {
            w.str(text);
        }
        w.u32(self.line_number);
        w.u32(self.column_number);
        w.str(&self.sample);
        w.u16(self.status_code);
        w.u64(self.policy_hash);
        for text in [
            &self.original_policy,
            &self.user_agent,
            &self.ua_family,
            &self.ua_major,
            &self.os_family,
            &self.device_class,
            &self.client_ip,
            &self.country,
            &self.noise,
            &self.nel_phase,
            &self.nel_type,
            &self.server_ip,
        ] {
            w.str(text);
        }
        w.u32(self.elapsed_ms);
        w.str(&self.cert_hostname);
        w.u16(self.cert_port);
        w.str(&self.details);
    }

    /// Reads exactly one row written by [`Self::write_rowbinary`] (or by the enricher).
    pub fn read_rowbinary(bytes: &[u8]) -> Result<Self, RowBinaryError> {
        let mut r = Reader { bytes, at: 0 };
        let mut row = ReportRow {
            row_id: r.u64()?,
            version: r.u64()?,
            project_id: r.u64()?,
            day: r.u16()?,
            window_start: r.u32()?,
            first_seen: r.u32()?,
            last_seen: r.u32()?,
            occurrences: r.u32()?,
            fingerprint: r.u64()?,
            dedup_key: r.u64()?,
            ..ReportRow::default()
        };
        for text in [
            &mut row.message_id,
            &mut row.kind,
            &mut row.report_type,
            &mut row.wire,
            &mut row.disposition,
            &mut row.environment,
            &mut row.release,
            &mut row.document_url,
            &mut row.document_origin,
            &mut row.document_host,
            &mut row.document_path,
            &mut row.referrer,
            &mut row.blocked_url,
            &mut row.blocked_class,
            &mut row.blocked_scheme,
            &mut row.blocked_host,
            &mut row.blocked_domain,
            &mut row.blocked_origin,
        ] {
            *text = r.string()?;
        }
        row.third_party = r.u8()?;
        for text in [
            &mut row.effective_directive,
            &mut row.directive_family,
            &mut row.violated_directive,
            &mut row.source_file,
            &mut row.source_host,
        ] {
            *text = r.string()?;
        }
        row.line_number = r.u32()?;
        row.column_number = r.u32()?;
        row.sample = r.string()?;
        row.status_code = r.u16()?;
        row.policy_hash = r.u64()?;
        for text in [
            &mut row.original_policy,
            &mut row.user_agent,
            &mut row.ua_family,
            &mut row.ua_major,
            &mut row.os_family,
            &mut row.device_class,
            &mut row.client_ip,
            &mut row.country,
            &mut row.noise,
            &mut row.nel_phase,
            &mut row.nel_type,
            &mut row.server_ip,
        ] {
            *text = r.string()?;
        }
        row.elapsed_ms = r.u32()?;
        row.cert_hostname = r.string()?;
        row.cert_port = r.u16()?;
        row.details = r.string()?;
        if r.at != bytes.len() {
            return Err(RowBinaryError::Trailing(bytes.len() - r.at));
        }
        Ok(row)
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], RowBinaryError> {
        let end = self.at + N;
        let taken = self
            .bytes
            .get(self.at..end)
            .and_then(|slice| <[u8; N]>::try_from(slice).ok())
            .ok_or(RowBinaryError::Truncated(self.at))?;
        self.at = end;
        Ok(taken)
    }

    fn u8(&mut self) -> Result<u8, RowBinaryError> {
        self.take::<1>().map(|[byte]| byte)
    }

    fn u16(&mut self) -> Result<u16, RowBinaryError> {
        self.take().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Result<u32, RowBinaryError> {
        self.take().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, RowBinaryError> {
        self.take().map(u64::from_le_bytes)
    }

    fn string(&mut self) -> Result<String, RowBinaryError> {
        let start = self.at;
        let mut len = 0usize;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            len |= usize::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
        }
        let end = self
            .at
            .checked_add(len)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(RowBinaryError::Truncated(start))?;
        let text = std::str::from_utf8(&self.bytes[self.at..end])
            .map_err(|_| RowBinaryError::Utf8(self.at))?
            .to_owned();
        self.at = end;
        Ok(text)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests;
