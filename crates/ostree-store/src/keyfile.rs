//! The GLib key-file format of a repository's `config`: `[group]` headers
//! and `key=value` lines. Comments and order are kept when it is rewritten.

/// A parsed key file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyFile {
    lines: Vec<Line>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    Group(String),
    Entry(String, String),
    Other(String),
}

/// A line that is neither a group, an entry, a comment nor blank.
#[derive(Debug, Clone, thiserror::Error)]
#[error("line {line}: {msg}")]
pub struct KeyFileError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub msg: String,
}

impl KeyFile {
    /// Parses the text of a key file.
    pub fn parse(text: &str) -> Result<KeyFile, KeyFileError> {
        let mut lines = Vec::new();
        let mut in_group = false;
        for (i, raw) in text.lines().enumerate() {
            let t = raw.trim();
            if t.is_empty() || t.starts_with('#') {
                lines.push(Line::Other(raw.to_string()));
            } else if let Some(name) = t.strip_prefix('[') {
                let Some(name) = name.strip_suffix(']') else {
                    return Err(KeyFileError {
                        line: i + 1,
                        msg: format!("invalid group header {t:?}"),
                    });
                };
                in_group = true;
                lines.push(Line::Group(name.to_string()));
            } else if let Some((k, v)) = t.split_once('=') {
                if !in_group {
                    return Err(KeyFileError {
                        line: i + 1,
                        msg: "key outside of any group".into(),
                    });
                }
                lines.push(Line::Entry(
                    k.trim().to_string(),
                    v.trim_start().to_string(),
                ));
            } else {
                return Err(KeyFileError {
                    line: i + 1,
                    msg: format!("not a key=value line: {t:?}"),
                });
            }
        }
        Ok(KeyFile { lines })
    }

    /// The value of `key` in `group`.
    pub fn get(&self, group: &str, key: &str) -> Option<&str> {
        let mut cur = None;
        let mut found = None;
        for l in &self.lines {
            match l {
                Line::Group(g) => cur = Some(g.as_str()),
                Line::Entry(k, v) if cur == Some(group) && k == key => found = Some(v.as_str()),
                _ => {}
            }
        }
        found
    }

    /// A boolean value (`true`/`false`, as GLib accepts them).
    pub fn get_bool(&self, group: &str, key: &str) -> Option<bool> {
        match self.get(group, key)? {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => None,
        }
    }

    /// The names of all groups, in order.
    pub fn groups(&self) -> Vec<&str> {
        self.lines
            .iter()
            .filter_map(|l| match l {
                Line::Group(g) => Some(g.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Sets `key` in `group`, adding the group at the end if needed.
    pub fn set(&mut self, group: &str, key: &str, value: &str) {
        let mut cur: Option<&str> = None;
        let mut group_end = None;
        for (i, l) in self.lines.iter_mut().enumerate() {
            match l {
                Line::Group(g) => cur = Some(g.as_str()),
                Line::Entry(k, v) if cur == Some(group) && k == key => {
                    *v = value.to_string();
                    return;
                }
                _ => {}
            }
            if cur == Some(group) {
                group_end = Some(i + 1);
            }
        }
        let entry = Line::Entry(key.to_string(), value.to_string());
        match group_end {
            Some(i) => self.lines.insert(i, entry),
            None => {
                self.lines.push(Line::Group(group.to_string()));
                self.lines.push(entry);
            }
        }
    }

    /// Removes a whole group; returns whether it existed.
    pub fn remove_group(&mut self, group: &str) -> bool {
        let mut keep = Vec::with_capacity(self.lines.len());
        let mut inside = false;
        let mut found = false;
        for l in self.lines.drain(..) {
            if let Line::Group(g) = &l {
                inside = g == group;
                found |= inside;
            }
            if !inside {
                keep.push(l);
            }
        }
        self.lines = keep;
        found
    }
}

impl std::fmt::Display for KeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for l in &self.lines {
            match l {
                Line::Group(g) => writeln!(f, "[{g}]")?,
                Line::Entry(k, v) => writeln!(f, "{k}={v}")?,
                Line::Other(s) => writeln!(f, "{s}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_set_and_print() {
        let mut k = KeyFile::parse("[core]\nrepo_version=1\nmode=archive-z2\n").unwrap();
        assert_eq!(k.get("core", "mode"), Some("archive-z2"));
        k.set("remote \"origin\"", "url", "http://127.0.0.1/repo");
        k.set("core", "fsync", "false");
        assert_eq!(
            k.to_string(),
            "[core]\nrepo_version=1\nmode=archive-z2\nfsync=false\n[remote \"origin\"]\nurl=http://127.0.0.1/repo\n"
        );
        assert!(k.remove_group("remote \"origin\""));
        assert_eq!(k.groups(), vec!["core"]);
        assert!(KeyFile::parse("x=1").is_err());
        assert!(KeyFile::parse("[core\n").is_err());
    }
}
