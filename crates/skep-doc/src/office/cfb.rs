//! OLE compound files (CFB): legacy doc/xls/ppt, and password-protected
//! OOXML, which Office writes as a compound file holding `EncryptionInfo`
//! and `EncryptedPackage` streams. Neither is read; this says which one a
//! file is, from the names in its directory.
//!
//! Only the header, the FAT sectors and the directory chain are read;
//! every chain walk is bounded by the number of sectors in the file, so a
//! looping or out-of-range chain ends the walk instead of spinning.

use skep_api::FailureReason;

use crate::DocError;

/// The compound file signature.
pub(crate) const MAGIC: [u8; 8] = [0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];

const HEADER_LEN: usize = 512;
/// Sector ids at and above this are markers (end of chain, free, ...).
const MAX_REGULAR_SECTOR: u32 = 0xFFFF_FFFA;
const DIR_ENTRY_LEN: usize = 128;

/// What a compound file holds, judged by its stream names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Compound {
    EncryptedOoxml,
    Word,
    Excel,
    PowerPoint,
    /// Another compound file (msi, msg, ...), or a directory that could
    /// not be read.
    Unknown,
}

pub(crate) fn is_compound(bytes: &[u8]) -> bool {
    bytes.starts_with(&MAGIC)
}

/// Directory entry names that say what a compound file is, strongest
/// first.
const SIGNS: [(&str, Compound); 5] = [
    ("EncryptionInfo", Compound::EncryptedOoxml),
    ("WordDocument", Compound::Word),
    ("Workbook", Compound::Excel),
    ("Book", Compound::Excel),
    ("PowerPoint Document", Compound::PowerPoint),
];

pub(crate) fn inspect(bytes: &[u8]) -> Compound {
    let mut seen = [false; SIGNS.len()];
    walk_directory(bytes, |name| {
        for (i, (sign, _)) in SIGNS.iter().enumerate() {
            seen[i] |= name.eq_ignore_ascii_case(sign);
        }
    });
    SIGNS
        .iter()
        .zip(seen)
        .find(|(_, seen)| *seen)
        .map_or(Compound::Unknown, |((_, kind), _)| *kind)
}

/// Why a compound file is not read.
pub(crate) fn refusal(bytes: &[u8]) -> DocError {
    let convert = |what: &str, to: &str| {
        DocError::unsupported(format!(
            "{what} in the legacy binary format is not read; convert it first, \
             e.g. `libreoffice --headless --convert-to {to}`"
        ))
    };
    match inspect(bytes) {
        Compound::EncryptedOoxml => DocError::new(
            FailureReason::Encrypted,
            "password-protected Office document; remove the password and retry",
        ),
        Compound::Word => convert("a Word document (.doc)", "docx"),
        Compound::Excel => convert("an Excel workbook (.xls)", "xlsx"),
        Compound::PowerPoint => convert("a PowerPoint presentation (.ppt)", "pptx"),
        Compound::Unknown => convert("an OLE compound file (legacy doc/xls/ppt or other)", "docx"),
    }
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

struct Sectors<'a> {
    bytes: &'a [u8],
    size: usize,
    /// Sectors in the file: the bound on every chain walk.
    count: usize,
    fat: Vec<u32>,
}

impl<'a> Sectors<'a> {
    fn get(&self, id: u32) -> Option<&'a [u8]> {
        let start = (id as usize).checked_add(1)?.checked_mul(self.size)?;
        let end = start.checked_add(self.size)?.min(self.bytes.len());
        self.bytes.get(start..end).filter(|s| !s.is_empty())
    }

    /// The sector after `id` in its chain.
    fn next(&self, id: u32) -> Option<u32> {
        let per = self.size / 4;
        let fat_sector = *self.fat.get(id as usize / per)?;
        u32_at(self.get(fat_sector)?, (id as usize % per) * 4)
    }
}

/// Calls `visit` with the name of each directory entry read before the
/// header or the directory chain turns out unreadable (`None`).
fn walk_directory(bytes: &[u8], mut visit: impl FnMut(&str)) -> Option<()> {
    if !bytes.starts_with(&MAGIC) || bytes.len() < HEADER_LEN {
        return None;
    }
    let size = match u16_at(bytes, 0x1E)? {
        9 => 512,
        12 => 4096,
        _ => return None,
    };
    let count = bytes.len().div_ceil(size).saturating_sub(1);
    let fat_sectors = (u32_at(bytes, 0x2C)? as usize).min(count);
    let mut sectors = Sectors {
        bytes,
        size,
        count,
        fat: Vec::new(),
    };
    // The first 109 FAT sector ids are in the header, the rest in the
    // DIFAT chain.
    for i in 0..109.min(fat_sectors) {
        sectors.fat.push(u32_at(bytes, 0x4C + 4 * i)?);
    }
    let mut difat = u32_at(bytes, 0x44)?;
    let mut steps = 0;
    while sectors.fat.len() < fat_sectors && difat < MAX_REGULAR_SECTOR && steps <= count {
        let sector = sectors.get(difat)?;
        let per = size / 4 - 1;
        for i in 0..per {
            if sectors.fat.len() < fat_sectors {
                sectors.fat.push(u32_at(sector, 4 * i)?);
            }
        }
        difat = u32_at(sector, 4 * per)?;
        steps += 1;
    }
    let mut dir = u32_at(bytes, 0x30)?;
    let mut steps = 0;
    while dir < MAX_REGULAR_SECTOR && steps <= sectors.count {
        let Some(sector) = sectors.get(dir) else {
            break;
        };
        for entry in sector.chunks_exact(DIR_ENTRY_LEN) {
            let name_len = usize::from(u16_at(entry, 0x40)?).min(64);
            if entry[0x42] == 0 || name_len < 2 {
                continue;
            }
            let units: Vec<u16> = entry[..name_len - 2]
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            visit(&String::from_utf16_lossy(&units));
        }
        let Some(next) = sectors.next(dir) else {
            break;
        };
        dir = next;
        steps += 1;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A compound file of 512-byte sectors: header, one FAT sector (0),
    /// directory sectors 1.., `dir_chain` giving each directory sector's
    /// successor.
    fn compound(names: &[&str], dir_next: Option<u32>) -> Vec<u8> {
        let mut out = vec![0u8; HEADER_LEN];
        out[..8].copy_from_slice(&MAGIC);
        out[0x1A..0x1C].copy_from_slice(&3u16.to_le_bytes());
        out[0x1C..0x1E].copy_from_slice(&0xFFFEu16.to_le_bytes());
        out[0x1E..0x20].copy_from_slice(&9u16.to_le_bytes());
        out[0x2C..0x30].copy_from_slice(&1u32.to_le_bytes());
        out[0x30..0x34].copy_from_slice(&1u32.to_le_bytes());
        out[0x44..0x48].copy_from_slice(&0xFFFF_FFFEu32.to_le_bytes());
        for i in 0..109 {
            let id: u32 = if i == 0 { 0 } else { 0xFFFF_FFFF };
            out[0x4C + 4 * i..0x50 + 4 * i].copy_from_slice(&id.to_le_bytes());
        }
        let mut fat = vec![0xFFu8; 512];
        fat[0..4].copy_from_slice(&0xFFFF_FFFDu32.to_le_bytes());
        fat[4..8].copy_from_slice(&dir_next.unwrap_or(0xFFFF_FFFE).to_le_bytes());
        out.extend(fat);
        let mut dir = vec![0u8; 512];
        for (i, name) in names.iter().enumerate() {
            let entry = &mut dir[i * 128..(i + 1) * 128];
            let units: Vec<u16> = name.encode_utf16().collect();
            for (k, u) in units.iter().enumerate() {
                entry[2 * k..2 * k + 2].copy_from_slice(&u.to_le_bytes());
            }
            entry[0x40..0x42].copy_from_slice(&(((units.len() + 1) * 2) as u16).to_le_bytes());
            entry[0x42] = if i == 0 { 5 } else { 2 };
        }
        out.extend(dir);
        out
    }

    #[test]
    fn streams_name_the_format() {
        assert_eq!(
            inspect(&compound(&["Root Entry", "WordDocument"], None)),
            Compound::Word
        );
        assert_eq!(inspect(&compound(&["Root Entry", "Workbook"], None)), Compound::Excel);
        assert_eq!(
            inspect(&compound(&["Root Entry", "PowerPoint Document"], None)),
            Compound::PowerPoint
        );
        assert_eq!(
            inspect(&compound(&["Root Entry", "EncryptionInfo", "EncryptedPackage"], None)),
            Compound::EncryptedOoxml
        );
        assert_eq!(inspect(&compound(&["Root Entry", "Other"], None)), Compound::Unknown);
    }

    #[test]
    fn looping_and_broken_chains_end() {
        // The directory sector names itself as its successor.
        let looping = compound(&["Root Entry", "WordDocument"], Some(1));
        assert_eq!(inspect(&looping), Compound::Word);
        let mut header_only = compound(&[], None);
        header_only.truncate(HEADER_LEN);
        assert_eq!(inspect(&header_only), Compound::Unknown);
        assert_eq!(inspect(&MAGIC), Compound::Unknown);
    }
}
