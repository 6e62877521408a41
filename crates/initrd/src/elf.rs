//! What a dynamically linked ELF program needs: its interpreter
//! (`PT_INTERP`) and the libraries it names (`DT_NEEDED`). Only 64-bit
//! little-endian files (x86_64, aarch64) are read; everything is bounds
//! checked, so a damaged file is an error, never a crash.

/// The needs of one ELF file.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// The program interpreter (the dynamic loader), if any.
    pub interp: Option<String>,
    /// The `DT_NEEDED` library names.
    pub needed: Vec<String>,
    /// `DT_RUNPATH` (or `DT_RPATH`) directories, `$ORIGIN` unexpanded.
    pub runpath: Vec<String>,
}

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(o..o.checked_add(2)?)?.try_into().ok()?,
    ))
}
fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(o..o.checked_add(4)?)?.try_into().ok()?,
    ))
}
fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(o..o.checked_add(8)?)?.try_into().ok()?,
    ))
}
fn cstr(b: &[u8], o: usize) -> Option<String> {
    let rest = b.get(o..)?;
    let end = rest.iter().position(|&c| c == 0)?;
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}

/// Whether `b` starts like an ELF file.
pub fn is_elf(b: &[u8]) -> bool {
    b.starts_with(b"\x7fELF")
}

/// Reads the needs of an ELF file; `None` when it is not a 64-bit
/// little-endian ELF file or is damaged.
pub fn needs(b: &[u8]) -> Option<Needs> {
    if !is_elf(b) || b.get(4) != Some(&2) || b.get(5) != Some(&1) {
        return None;
    }
    let phoff = usize::try_from(u64_at(b, 0x20)?).ok()?;
    let phentsize = usize::from(u16_at(b, 0x36)?);
    let phnum = usize::from(u16_at(b, 0x38)?);
    let mut out = Needs::default();
    let mut loads = Vec::new();
    let mut dynamic = None;
    for i in 0..phnum {
        let p = phoff.checked_add(i.checked_mul(phentsize)?)?;
        let kind = u32_at(b, p)?;
        let offset = u64_at(b, p.checked_add(8)?)?;
        let vaddr = u64_at(b, p.checked_add(16)?)?;
        let filesz = u64_at(b, p.checked_add(32)?)?;
        match kind {
            1 => loads.push((vaddr, offset, filesz)),
            2 => dynamic = Some((offset, filesz)),
            3 => out.interp = cstr(b, usize::try_from(offset).ok()?),
            _ => {}
        }
    }
    let Some((doff, dsize)) = dynamic else {
        return Some(out);
    };
    let mut strtab = None;
    let mut needed = Vec::new();
    let mut runpath = None;
    let mut o = usize::try_from(doff).ok()?;
    let end = o.checked_add(usize::try_from(dsize).ok()?)?;
    while o.checked_add(16)? <= end {
        let tag = u64_at(b, o)?;
        let val = u64_at(b, o + 8)?;
        match tag {
            0 => break,
            1 => needed.push(val),
            5 => strtab = Some(val),
            15 | 29 => runpath = Some(val),
            _ => {}
        }
        o += 16;
    }
    let strtab = strtab?;
    // DT_STRTAB is an address: the PT_LOAD segment holding it gives its
    // place in the file.
    let (vaddr, offset, _) = loads
        .iter()
        .find(|(v, _, sz)| strtab >= *v && strtab - v < *sz)?;
    let base = (strtab - vaddr).checked_add(*offset)?;
    let at = |n: u64| cstr(b, usize::try_from(base.checked_add(n)?).ok()?);
    for n in needed {
        out.needed.push(at(n)?);
    }
    if let Some(r) = runpath {
        out.runpath = at(r)?
            .split(':')
            .filter(|d| !d.is_empty())
            .map(str::to_string)
            .collect();
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_test_binary_and_refuses_junk() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let n = needs(&me).expect("the test binary is ELF64");
        // Built dynamically (the default), it needs libc and a loader.
        if let Some(interp) = &n.interp {
            assert!(interp.contains("ld-linux"), "{interp}");
            assert!(n.needed.iter().any(|l| l.starts_with("libc.so")), "{n:?}");
        }
        assert_eq!(needs(b"not elf"), None);
        let mut cut = me[..64].to_vec();
        cut[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(needs(&cut), None);
    }
}
