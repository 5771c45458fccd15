//! Bounded reading of a zip archive held in memory.
//!
//! The `zip` crate reads the central directory and hands over each
//! entry's raw bytes; inflating, size accounting and the checksum are done
//! here, so that every bound counts bytes actually produced: the sizes an
//! archive declares are never trusted, and an entry stops inflating as soon
//! as it passes a bound.

use std::collections::HashMap;
use std::io::{self, Cursor, Read};

use flate2::Crc;
use flate2::read::DeflateDecoder;
use skep_api::FailureReason;
use zip::{CompressionMethod, ZipArchive};

use super::limits::Meter;
use crate::DocError;

/// The compression ratio is checked once an entry has produced this much.
const RATIO_GRACE_BYTES: u64 = 1 << 20;

/// A zip archive whose entries are read under a [`Meter`].
pub(crate) struct Archive<'a> {
    zip: ZipArchive<Cursor<&'a [u8]>>,
    /// Entry index by ASCII-lowercased name: OPC part names are
    /// case-insensitive.
    by_name: HashMap<String, usize>,
    meter: &'a Meter,
}

impl<'a> Archive<'a> {
    /// Reads the central directory of `bytes`.
    pub fn open(bytes: &'a [u8], meter: &'a Meter) -> Result<Self, DocError> {
        // NB: checked before the zip crate reads (and allocates for) the
        // directory, and again after.
        let declared = declared_entries(bytes);
        if declared > meter.limits.max_entries as u64 {
            return Err(DocError::too_large(format!(
                "zip archive declares more than {} entries",
                meter.limits.max_entries
            )));
        }
        let zip = ZipArchive::new(Cursor::new(bytes)).map_err(|_| DocError::corrupt("not a readable zip archive"))?;
        if zip.len() > meter.limits.max_entries {
            return Err(DocError::too_large(format!(
                "zip archive has more than {} entries",
                meter.limits.max_entries
            )));
        }
        // NB: two entries of one name would let two readers see two documents.
        if zip.has_duplicate_names() {
            return Err(DocError::corrupt("zip archive has two entries of the same name"));
        }
        let mut by_name = HashMap::with_capacity(zip.len());
        for index in 0..zip.len() {
            if let Some(Ok(name)) = zip.name_for_index(index) {
                by_name.entry(name.to_ascii_lowercase()).or_insert(index);
            }
        }
        Ok(Self { zip, by_name, meter })
    }

    pub fn meter(&self) -> &'a Meter {
        self.meter
    }

    pub fn contains(&self, name: &str) -> bool {
        self.index(name).is_some()
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.zip
            .index_for_name(name)
            .or_else(|| self.by_name.get(&name.to_ascii_lowercase()).copied())
    }

    /// A reader of the entry `name` (a part name without the leading `/`),
    /// or `None` if the archive has no such entry.
    pub fn entry(&mut self, name: &str) -> Result<Option<Entry<'_, 'a>>, DocError> {
        let Some(index) = self.index(name) else {
            return Ok(None);
        };
        let (method, crc) = {
            let data = self
                .zip
                .by_index_data(index)
                .map_err(|_| DocError::corrupt("unreadable zip entry"))?;
            if data.encrypted() {
                return Err(DocError::new(FailureReason::Encrypted, "zip entry is encrypted"));
            }
            (data.compression(), data.crc32())
        };
        let meter = self.meter;
        let raw = self
            .zip
            .by_index_raw(index)
            .map_err(|_| DocError::corrupt("unreadable zip entry"))?;
        let source = match method {
            CompressionMethod::Stored => Source::Stored(raw),
            CompressionMethod::Deflated => Source::Deflated(DeflateDecoder::new(raw)),
            _ => {
                return Err(DocError::unsupported(
                    "zip entry uses a compression method other than deflate",
                ));
            }
        };
        let entry = Entry {
            source,
            meter,
            crc: Crc::new(),
            expected_crc: crc,
            out: 0,
            done: false,
        };
        Ok(Some(entry))
    }

    /// The whole entry `name`, which must inflate to at most `max` bytes.
    pub fn read_small(&mut self, name: &str, max: u64) -> Result<Option<Vec<u8>>, DocError> {
        let Some(entry) = self.entry(name)? else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        entry.take(max + 1).read_to_end(&mut bytes).map_err(|e| io_to_doc(&e))?;
        if bytes.len() as u64 > max {
            return Err(DocError::too_large(format!("zip entry is larger than {max} bytes")));
        }
        Ok(Some(bytes))
    }
}

type RawEntry<'z, 'a> = zip::read::ZipFile<'z, Cursor<&'a [u8]>>;

enum Source<'z, 'a> {
    Stored(RawEntry<'z, 'a>),
    Deflated(DeflateDecoder<RawEntry<'z, 'a>>),
}

/// One entry's inflated bytes. Fails (with a [`DocError`] inside the
/// `io::Error`; see [`io_to_doc`]) as soon as a bound is passed, on bad
/// deflate data, and at the end on a checksum mismatch.
pub(crate) struct Entry<'z, 'a> {
    source: Source<'z, 'a>,
    meter: &'a Meter,
    crc: Crc,
    expected_crc: u32,
    out: u64,
    done: bool,
}

impl Entry<'_, '_> {
    fn compressed_in(&self) -> u64 {
        match &self.source {
            Source::Stored(_) => self.out,
            Source::Deflated(d) => d.total_in(),
        }
    }

    fn account(&mut self, n: usize) -> Result<(), DocError> {
        let limits = &self.meter.limits;
        self.out += n as u64;
        self.meter.inflate(n as u64)?;
        if self.out > limits.max_entry_bytes {
            return Err(DocError::too_large(format!(
                "zip entry inflates to more than {} bytes",
                limits.max_entry_bytes
            )));
        }
        if self.out > RATIO_GRACE_BYTES && self.out / self.compressed_in().max(1) > limits.max_ratio {
            return Err(DocError::too_large(format!(
                "zip entry inflates more than {}:1",
                limits.max_ratio
            )));
        }
        Ok(())
    }
}

impl Read for Entry<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        let read = match &mut self.source {
            Source::Stored(r) => r.read(buf),
            Source::Deflated(r) => r.read(buf),
        };
        let n = read.map_err(|_| doc_to_io(DocError::corrupt("zip entry does not inflate")))?;
        if n == 0 {
            self.done = true;
            if self.crc.sum() != self.expected_crc {
                return Err(doc_to_io(DocError::corrupt("zip entry fails its checksum")));
            }
            return Ok(0);
        }
        self.account(n).map_err(doc_to_io)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }
}

/// The largest entry count declared by any end-of-central-directory
/// record (zip64 ones included) where a reader looks for one: the last
/// 64 KiB + 22 bytes of the file.
fn declared_entries(bytes: &[u8]) -> u64 {
    const EOCD: &[u8] = b"PK\x05\x06";
    const EOCD64_LOCATOR: &[u8] = b"PK\x06\x07";
    const EOCD64: &[u8] = b"PK\x06\x06";
    let u16_at = |at: usize| {
        bytes
            .get(at..at + 2)
            .map_or(0, |b| u64::from(u16::from_le_bytes([b[0], b[1]])))
    };
    let u64_at = |at: usize| {
        bytes
            .get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_le_bytes)
    };
    let from = bytes.len().saturating_sub(22 + 0xFFFF);
    let mut most = 0;
    for at in from..bytes.len().saturating_sub(21) {
        if !bytes[at..].starts_with(EOCD) {
            continue;
        }
        most = most.max(u16_at(at + 8)).max(u16_at(at + 10));
        // A zip64 record, found through its locator just before.
        if let Some(locator) = at.checked_sub(20)
            && bytes[locator..].starts_with(EOCD64_LOCATOR)
            && let Ok(record) = usize::try_from(u64_at(locator + 8))
            && bytes.get(record..).is_some_and(|r| r.starts_with(EOCD64))
        {
            most = most.max(u64_at(record + 24)).max(u64_at(record + 32));
        }
    }
    most
}

fn doc_to_io(error: DocError) -> io::Error {
    io::Error::other(error)
}

/// The [`DocError`] an entry reader failed with, or `Corrupt` for any
/// other I/O error.
pub(crate) fn io_to_doc(error: &io::Error) -> DocError {
    error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<DocError>())
        .cloned()
        .unwrap_or_else(|| DocError::corrupt("zip entry is unreadable"))
}
