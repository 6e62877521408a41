//! Reading a disk's partition table: the logical sector size and the GPT
//! partitions, from the primary table or, when that is damaged, the backup
//! at the end of the disk, each checked by its CRC-32 (what upstream reads
//! through libblkid). A DOS partition table is refused, as upstream.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read as _, Seek as _, SeekFrom};
use std::os::unix::fs::FileExt as _;
use std::path::Path;

/// One partition as the GPT records it; sectors are logical sectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Partition number (entry index + 1).
    pub number: i64,
    /// First sector.
    pub start: i64,
    /// Size in sectors.
    pub size: i64,
    /// Partition name, decoded from UTF-16.
    pub label: String,
    /// Unique partition GUID, upper case.
    pub guid: String,
    /// Partition type GUID, upper case.
    pub type_guid: String,
}

/// A disk's logical sector size and GPT partitions (what upstream's
/// `DumpDisk` reads through libblkid).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiskInfo {
    /// Logical sector size in bytes (512 or 4096).
    pub logical_sector_size: i64,
    /// The partitions in table order.
    pub partitions: Vec<PartitionInfo>,
}

impl DiskInfo {
    /// The partition numbered `number`, if any.
    pub fn partition(&self, number: i64) -> Option<&PartitionInfo> {
        self.partitions.iter().find(|p| p.number == number)
    }
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Formats a GPT's mixed-endian GUID, upper case.
fn guid_string(b: &[u8]) -> String {
    let mut s = String::with_capacity(36);
    for i in [3, 2, 1, 0] {
        let _ = write!(s, "{:02X}", b[i]);
    }
    s.push('-');
    for i in [5, 4] {
        let _ = write!(s, "{:02X}", b[i]);
    }
    s.push('-');
    for i in [7, 6] {
        let _ = write!(s, "{:02X}", b[i]);
    }
    s.push('-');
    for x in &b[8..10] {
        let _ = write!(s, "{x:02X}");
    }
    s.push('-');
    for x in &b[10..16] {
        let _ = write!(s, "{x:02X}");
    }
    s
}

/// Reads and checks the GPT header at `lba` and its entry array; `None`
/// when either is missing or fails its CRC.
fn read_gpt_at(f: &File, sector: u64, lba: u64) -> Option<Vec<PartitionInfo>> {
    let mut header = vec![0u8; sector as usize];
    f.read_exact_at(&mut header, lba.checked_mul(sector)?)
        .ok()?;
    if &header[..8] != b"EFI PART" {
        return None;
    }
    let size = le_u32(&header, 12) as usize;
    if !(92..=sector as usize).contains(&size) {
        return None;
    }
    let mut h = header[..size].to_vec();
    h[16..20].fill(0);
    if util::crc32(&h) != le_u32(&header, 16) || le_u64(&header, 24) != lba {
        return None;
    }
    let entries_lba = le_u64(&header, 72);
    let count = le_u32(&header, 80) as usize;
    let entry_size = le_u32(&header, 84) as usize;
    if entry_size < 128 || !entry_size.is_multiple_of(8) || count.checked_mul(entry_size)? > 4 << 20
    {
        return None;
    }
    let mut entries = vec![0u8; count * entry_size];
    f.read_exact_at(&mut entries, entries_lba.checked_mul(sector)?)
        .ok()?;
    if util::crc32(&entries) != le_u32(&header, 88) {
        return None;
    }
    let mut parts = Vec::new();
    for (i, e) in entries.chunks_exact(entry_size).enumerate() {
        if e[..16].iter().all(|&b| b == 0) {
            continue;
        }
        let first = le_u64(e, 32);
        let last = le_u64(e, 40);
        let name: Vec<u16> = e[56..128]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&c| c != 0)
            .collect();
        parts.push(PartitionInfo {
            number: i as i64 + 1,
            start: first as i64,
            size: (last as i64) - (first as i64) + 1,
            label: String::from_utf16_lossy(&name),
            guid: guid_string(&e[16..32]),
            type_guid: guid_string(&e[..16]),
        });
    }
    Some(parts)
}

/// Whether sector 0 holds a DOS partition table (with real partitions, not
/// only a GPT's protective entry, and not a FAT/NTFS boot sector).
fn is_dos_table(mbr: &[u8]) -> bool {
    if mbr.len() < 512 || mbr[510] != 0x55 || mbr[511] != 0xAA {
        return false;
    }
    if &mbr[0x36..0x39] == b"FAT" || &mbr[0x52..0x57] == b"FAT32" || &mbr[3..7] == b"NTFS" {
        return false;
    }
    let entries: Vec<&[u8]> = (0..4).map(|i| &mbr[446 + 16 * i..462 + 16 * i]).collect();
    entries.iter().all(|e| e[0] == 0 || e[0] == 0x80)
        && entries.iter().any(|e| e[4] != 0 && e[4] != 0xEE)
}

/// Reads the logical sector size and the GPT of `device`: the primary
/// table, or the backup one at the end of the disk when the primary is
/// damaged. A disk with no partition table has no partitions; one with a
/// DOS table is refused, like upstream.
pub fn read_partition_table(device: &Path) -> io::Result<DiskInfo> {
    let mut f = File::open(device)?;
    let sector = match rustix::fs::ioctl_blksszget(&f) {
        Ok(s) if s >= 512 && s % 512 == 0 => u64::from(s),
        Ok(s) => {
            return Err(io::Error::other(format!(
                "logical sector size {s} is not a multiple of 512"
            )));
        }
        // Not a block device (an image file): 512-byte sectors.
        Err(_) => 512,
    };
    let len = f.seek(SeekFrom::End(0))?;
    let last_lba = (len / sector).saturating_sub(1);
    let parts = match read_gpt_at(&f, sector, 1) {
        Some(p) => p,
        None => match read_gpt_at(&f, sector, last_lba) {
            Some(p) => p,
            None => {
                let mut mbr = vec![0u8; 512];
                f.seek(SeekFrom::Start(0))?;
                if f.read_exact(&mut mbr).is_ok() && is_dos_table(&mbr) {
                    return Err(io::Error::other("disk does not have a GPT"));
                }
                Vec::new()
            }
        },
    };
    Ok(DiskInfo {
        logical_sector_size: sector as i64,
        partitions: parts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids() {
        let raw = [
            0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e,
            0xc9, 0x3b,
        ];
        assert_eq!(guid_string(&raw), "C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
    }
}
