//! Boot Loader Specification entries as OSTree writes them:
//! `boot/loader.N/entries/ostree-<version>-<os>.conf` with `title`,
//! `version`, `options` (the kernel arguments plus
//! `ostree=/ostree/boot.N/<os>/<bootcsum>/<bootserial>`), `linux` and
//! `initrd` paths relative to `/boot`.

/// One entry: its keys in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct BootEntry {
    /// `(key, value)` lines.
    pub fields: Vec<(String, String)>,
}

impl BootEntry {
    /// Parses an entry file (`key value` lines, `#` comments).
    pub fn parse(text: &str) -> BootEntry {
        let mut fields = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = match line.split_once([' ', '\t']) {
                Some((k, v)) => (k, v.trim()),
                None => (line, ""),
            };
            fields.push((k.to_string(), v.to_string()));
        }
        BootEntry { fields }
    }

    /// The value of a key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The `version` key as a number (0 when missing or not a number): the
    /// order of entries, highest first.
    pub fn version_number(&self) -> u64 {
        self.get("version")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Sets a key (replacing, or appending).
    pub fn set(&mut self, key: &str, value: &str) {
        match self.fields.iter_mut().find(|(k, _)| k == key) {
            Some(f) => f.1 = value.to_string(),
            None => self.fields.push((key.to_string(), value.to_string())),
        }
    }

    /// The `ostree=` argument of `options`.
    pub(crate) fn ostree_arg(&self) -> Option<&str> {
        self.get("options")?
            .split_whitespace()
            .find_map(|a| a.strip_prefix("ostree="))
    }

    /// The entry's text.
    pub(crate) fn to_text(&self) -> String {
        self.fields
            .iter()
            .map(|(k, v)| format!("{k} {v}\n"))
            .collect()
    }
}

/// A boot counter in an entry's file name, as the Boot Loader
/// Specification's boot counting has it (`<name>+LEFT[-DONE].conf`): the
/// bootloader decrements `left` and increments `done` before each try of
/// the entry, and an entry with no tries left is "bad" and sorted after the
/// others; `systemd-bless-boot` removes the counter once the boot is good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootCounter {
    /// Tries left.
    pub left: u32,
    /// Tries made.
    pub done: u32,
}

impl BootCounter {
    /// A fresh counter of `tries` tries.
    pub fn new(tries: u32) -> BootCounter {
        BootCounter {
            left: tries,
            done: 0,
        }
    }

    /// The file-name suffix (`+3`, `+2-1`), as systemd writes it: `-DONE`
    /// only once a try was made.
    pub fn suffix(&self) -> String {
        if self.done == 0 {
            format!("+{}", self.left)
        } else {
            format!("+{}-{}", self.left, self.done)
        }
    }

    /// Splits `name.conf` into the name without the counter and the
    /// counter, if the name carries a valid one.
    pub fn split_file_name(file: &str) -> (String, Option<BootCounter>) {
        let stem = file.strip_suffix(".conf").unwrap_or(file);
        let digits =
            |s: &str| !s.is_empty() && s.len() <= 9 && s.bytes().all(|b| b.is_ascii_digit());
        if let Some((name, counter)) = stem.rsplit_once('+') {
            let (left, done) = match counter.split_once('-') {
                Some((l, d)) => (l, Some(d)),
                None => (counter, None),
            };
            if digits(left) && done.is_none_or(digits) {
                let parsed = BootCounter {
                    left: left.parse().unwrap_or(0),
                    done: done.map_or(0, |d| d.parse().unwrap_or(0)),
                };
                return (name.to_string(), Some(parsed));
            }
        }
        (stem.to_string(), None)
    }

    /// Whether the bootloader has given up on the entry.
    pub fn exhausted(&self) -> bool {
        self.left == 0
    }
}

/// Parses `ostree=/ostree/boot.N/<os>/<bootcsum>/<serial>`.
pub(crate) fn parse_ostree_arg(arg: &str) -> Option<(u8, String, String, u32)> {
    let rest = arg.strip_prefix("/ostree/boot.")?;
    let mut parts = rest.split('/');
    let bootversion = parts.next()?.parse().ok()?;
    let os = parts.next()?.to_string();
    let bootcsum = parts.next()?.to_string();
    let serial = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some((bootversion, os, bootcsum, serial))
}

/// Kernel arguments edited as `rpm-ostree kargs` does: `--append=K[=V]`
/// adds (keeping duplicates out), `--delete=K[=V]` removes a key (all its
/// values) or one `K=V`, `--replace=K=V` sets every instance of K to V
/// (or `K=OLD=NEW` one value).
pub fn edit_kargs(
    kargs: &str,
    append: &[String],
    delete: &[String],
    replace: &[String],
) -> Result<String, String> {
    let mut args: Vec<String> = kargs.split_whitespace().map(str::to_string).collect();
    let key = |a: &str| a.split('=').next().unwrap_or("").to_string();
    for d in delete {
        let before = args.len();
        if d.contains('=') {
            args.retain(|a| a != d);
        } else {
            args.retain(|a| key(a) != *d);
        }
        if args.len() == before {
            return Err(format!("No karg '{d}' found"));
        }
    }
    for r in replace {
        let parts: Vec<&str> = r.splitn(3, '=').collect();
        match parts.as_slice() {
            [k, old, new] => {
                let from = format!("{k}={old}");
                let pos = args
                    .iter()
                    .position(|a| *a == from)
                    .ok_or_else(|| format!("No karg '{from}' found"))?;
                args[pos] = format!("{k}={new}");
            }
            [k, v] => {
                let mut found = false;
                for a in args.iter_mut().filter(|a| key(a) == *k) {
                    *a = format!("{k}={v}");
                    found = true;
                }
                if !found {
                    return Err(format!("No karg '{k}' found"));
                }
            }
            _ => return Err(format!("Invalid --replace '{r}': expected KEY=VALUE")),
        }
    }
    for a in append {
        if !args.contains(a) {
            args.push(a.clone());
        }
    }
    Ok(args.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print_an_entry() {
        let text = "title Fedora CoreOS 41 41.2 (ostree:0)\nversion 2\noptions root=LABEL=root rw ostree=/ostree/boot.0/fcos/ff6d/0\nlinux /ostree/fcos-ff6d/vmlinuz-6.1.0\n";
        let e = BootEntry::parse(text);
        assert_eq!(e.get("version"), Some("2"));
        assert_eq!(
            e.get("options"),
            Some("root=LABEL=root rw ostree=/ostree/boot.0/fcos/ff6d/0")
        );
        assert_eq!(
            parse_ostree_arg(e.ostree_arg().unwrap()),
            Some((0, "fcos".into(), "ff6d".into(), 0))
        );
        assert_eq!(e.to_text(), text);
        assert_eq!(parse_ostree_arg("/ostree/boot.0/fcos/x/0/extra"), None);
    }

    #[test]
    fn boot_counters_in_file_names() {
        let split = BootCounter::split_file_name;
        assert_eq!(split("ostree-2-fcos.conf"), ("ostree-2-fcos".into(), None));
        assert_eq!(
            split("ostree-2-fcos+3.conf"),
            ("ostree-2-fcos".into(), Some(BootCounter::new(3)))
        );
        assert_eq!(
            split("ostree-2-fcos+0-3.conf"),
            (
                "ostree-2-fcos".into(),
                Some(BootCounter { left: 0, done: 3 })
            )
        );
        // Not counters: the name keeps them.
        assert_eq!(split("a+b.conf"), ("a+b".into(), None));
        assert_eq!(split("a+1-.conf"), ("a+1-".into(), None));
        assert_eq!(split("a+-1.conf"), ("a+-1".into(), None));
        assert_eq!(BootCounter { left: 2, done: 1 }.suffix(), "+2-1");
        assert_eq!(BootCounter::new(3).suffix(), "+3");
        assert!(BootCounter { left: 0, done: 3 }.exhausted());
    }

    #[test]
    fn karg_edits() {
        let k = "root=LABEL=root rw console=tty0 console=ttyS0";
        assert_eq!(
            edit_kargs(k, &["quiet".into()], &[], &[]).unwrap(),
            format!("{k} quiet")
        );
        assert_eq!(edit_kargs(k, &["rw".into()], &[], &[]).unwrap(), k);
        assert_eq!(
            edit_kargs(k, &[], &["console".into()], &[]).unwrap(),
            "root=LABEL=root rw"
        );
        assert_eq!(
            edit_kargs(k, &[], &["console=tty0".into()], &[]).unwrap(),
            "root=LABEL=root rw console=ttyS0"
        );
        assert_eq!(
            edit_kargs(k, &[], &[], &["console=ttyS0=ttyS1".into()]).unwrap(),
            "root=LABEL=root rw console=tty0 console=ttyS1"
        );
        assert!(edit_kargs(k, &[], &["nope".into()], &[]).is_err());
    }
}
