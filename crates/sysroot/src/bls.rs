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
