//! Writing a cpio archive in the `newc` format the kernel unpacks into
//! its initial root filesystem.

use std::io::{self, Write};

/// A `newc` archive being written.
pub struct Writer<W: Write> {
    out: W,
    ino: u32,
    mtime: u32,
    written: u64,
}

fn pad(n: u64) -> usize {
    ((4 - (n % 4)) % 4) as usize
}

impl<W: Write> Writer<W> {
    /// An archive whose entries all carry `mtime` (for reproducible
    /// images).
    pub fn new(out: W, mtime: u32) -> Writer<W> {
        Writer {
            out,
            ino: 1,
            mtime,
            written: 0,
        }
    }

    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.out.write_all(b)?;
        self.written += b.len() as u64;
        Ok(())
    }

    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) -> io::Result<()> {
        let size = u32::try_from(data.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file over 4 GiB"))?;
        let nlink = if mode & 0o170000 == 0o040000 { 2 } else { 1 };
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino,
            mode,
            0,
            0,
            nlink,
            self.mtime,
            size,
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() + 1,
            0
        );
        self.ino += 1;
        self.put(header.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        let p = pad(self.written);
        self.put(&[0; 4][..p])?;
        self.put(data)?;
        let p = pad(self.written);
        self.put(&[0; 4][..p])
    }

    /// A directory.
    pub fn dir(&mut self, name: &str, perm: u32) -> io::Result<()> {
        self.entry(name, 0o040000 | perm, (0, 0), &[])
    }

    /// A regular file.
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        self.entry(name, 0o100000 | perm, (0, 0), data)
    }

    /// A symbolic link.
    pub fn symlink(&mut self, name: &str, target: &str) -> io::Result<()> {
        self.entry(name, 0o120777, (0, 0), target.as_bytes())
    }

    /// A character device node.
    pub fn char_dev(&mut self, name: &str, perm: u32, major: u32, minor: u32) -> io::Result<()> {
        self.entry(name, 0o020000 | perm, (major, minor), &[])
    }

    /// Writes the trailer and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.entry("TRAILER!!!", 0, (0, 0), &[])?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_layout() {
        let mut w = Writer::new(Vec::new(), 7);
        w.dir("etc", 0o755).unwrap();
        w.file("etc/x", 0o644, b"hello").unwrap();
        w.symlink("init", "usr/bin/oxcore").unwrap();
        let out = w.finish().unwrap();
        assert_eq!(&out[..6], b"070701");
        // Every header starts on a 4-byte boundary.
        let text = String::from_utf8_lossy(&out);
        for (i, _) in text.match_indices("070701") {
            assert_eq!(i % 4, 0);
        }
        assert!(text.contains("etc/x\0"));
        assert!(text.contains("hello"));
        assert!(text.contains("TRAILER!!!\0"));
        assert_eq!(out.len() % 4, 0);
        // The file's header: mode 0100644, size 5, mtime 7.
        let h = text.find("etc/x").unwrap() - 110;
        assert_eq!(&text[h + 14..h + 22], "000081a4");
        assert_eq!(&text[h + 46..h + 54], "00000007");
        assert_eq!(&text[h + 54..h + 62], "00000005");
    }
}
