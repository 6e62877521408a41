//! Just enough of a systemd unit-file reader to validate units as upstream
//! does: whether the contents parse, and whether any option sits in the
//! `[Install]` section.
//!
//! The grammar and error messages are those of the go-systemd lexer that
//! upstream uses: text before the first section is skipped, `#` and `;`
//! start comment lines (continued by a trailing backslash), a section header
//! must end its line, an option name must end with `=` before the line does.

/// The parsed shape of a unit file: the section of each option, in order.
pub fn option_sections(contents: &str) -> Result<Vec<String>, String> {
    let b = contents.as_bytes();
    // Upstream refuses lines that systemd would truncate.
    if b.split(|&c| c == b'\n' || c == b'\r')
        .any(|l| l.len() >= 2048)
    {
        return Err("line too long (max 2048 bytes)".into());
    }
    let mut sections = Vec::new();
    let mut section: Option<String> = None;
    let mut i = 0;
    let eol = |i: usize| {
        b[i..]
            .iter()
            .position(|&c| c == b'\n')
            .map_or(b.len(), |p| i + p)
    };
    // Skips a comment line and its backslash continuations.
    let skip_comment = |mut i: usize| loop {
        let end = eol(i);
        let line = &b[i..end];
        let line = line.strip_suffix(b" ").unwrap_or(line);
        i = (end + 1).min(b.len());
        if !line.ends_with(b"\\") || end >= b.len() {
            return i;
        }
    };
    while i < b.len() {
        let c = b[i];
        if section.is_none() {
            i += 1;
            match c {
                b'[' => {}
                b'#' | b';' => {
                    i = skip_comment(i);
                    continue;
                }
                _ => continue,
            }
        } else {
            if (c as char).is_whitespace() || c == 0x85 || c == 0xa0 {
                i += 1;
                continue;
            }
            if c == b'#' || c == b';' {
                i = skip_comment(i + 1);
                continue;
            }
            if c != b'[' {
                // An option: name up to '=', value to the end of the line,
                // continued by a trailing backslash.
                let mut j = i;
                loop {
                    match b.get(j) {
                        None => return Err("EOF".into()),
                        Some(b'\n' | b'\r') => {
                            return Err(
                                "unexpected newline encountered while parsing option name".into()
                            );
                        }
                        Some(b'=') => break,
                        Some(_) => j += 1,
                    }
                }
                i = j + 1;
                loop {
                    let end = eol(i);
                    let line = &b[i..end];
                    i = (end + 1).min(b.len());
                    let trimmed = line.trim_ascii();
                    let continued = !trimmed.is_empty()
                        && line.trim_ascii_end().ends_with(b"\\")
                        && end < b.len();
                    if !continued {
                        break;
                    }
                }
                sections.push(section.clone().unwrap_or_default());
                continue;
            }
            i += 1;
        }
        // A section header: the name runs to the first ']'.
        let Some(close) = b[i..].iter().position(|&c| c == b']') else {
            return Err("unable to find end of section".into());
        };
        let name = String::from_utf8_lossy(&b[i..i + close]).into_owned();
        i += close + 1;
        let end = eol(i);
        let garbage = b[i..end].trim_ascii();
        if !garbage.is_empty() {
            return Err(format!(
                "found garbage after section name : {}",
                util::go_quote(&String::from_utf8_lossy(garbage))
            ));
        }
        i = (end + 1).min(b.len());
        section = Some(name);
    }
    Ok(sections)
}

/// Whether the contents parse and have an option in `[Install]`.
pub fn has_install_section(contents: &str) -> Option<bool> {
    option_sections(contents)
        .ok()
        .map(|s| s.iter().any(|s| s == "Install"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_of_options() {
        let u = "# comment \\\n still comment\n[Unit]\nDescription=x\n\n[Service]\nExecStart=/bin/a \\\n  b\n[Install]\nWantedBy=multi-user.target\n";
        assert_eq!(option_sections(u).unwrap(), ["Unit", "Service", "Install"]);
        assert_eq!(has_install_section(u), Some(true));
        assert_eq!(
            has_install_section("[Service]\nExecStart=/bin/true"),
            Some(false)
        );
        // A bare header with no options does not count.
        assert_eq!(has_install_section("[Install]\n"), Some(false));
    }

    #[test]
    fn errors_in_upstream_words() {
        assert_eq!(
            option_sections("[Unit").unwrap_err(),
            "unable to find end of section"
        );
        assert_eq!(
            option_sections("[Unit] x\n").unwrap_err(),
            "found garbage after section name : \"x\""
        );
        assert_eq!(
            option_sections("[Unit]\nfoo\nbar=1\n").unwrap_err(),
            "unexpected newline encountered while parsing option name"
        );
        assert_eq!(option_sections("[Unit]\nfoo").unwrap_err(), "EOF");
        let long = format!("[Unit]\nA={}\n", "x".repeat(3000));
        assert_eq!(
            option_sections(&long).unwrap_err(),
            "line too long (max 2048 bytes)"
        );
    }
}
