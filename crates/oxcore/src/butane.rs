//! `oxcore butane` and the `butane` personality: upstream Butane's command
//! line (GNU-style flags as Go's pflag parses them), output and exit codes.

use std::ffi::OsString;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE_BODY: &str = "Options:
  -c, --check                     check config without producing output
      --color string[=\"always\"]   control color output: \"auto\", \"always\", or \"never\" (default \"auto\")
  -d, --files-dir string          allow embedding local files from this directory
  -h, --help                      show usage and exit
  -o, --output string             write to output file instead of stdout
  -p, --pretty                    output formatted json
  -r, --raw                       never wrap in a MachineConfig; force Ignition output
      --raw-errors                show raw errors, rather than pretty printing them
  -s, --strict                    fail on any warning
  -V, --version                   print the version and exit
";

#[derive(Default)]
struct Flags {
    check: bool,
    color: Option<String>,
    files_dir: Option<String>,
    help: bool,
    output: Option<String>,
    pretty: bool,
    raw: bool,
    raw_errors: bool,
    strict: bool,
    version: bool,
    input: Option<String>,
    args: Vec<String>,
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Parses arguments as pflag does; `Err` is the message for exit code 2.
fn parse(args: &[String]) -> Result<Flags, String> {
    let mut f = Flags::default();
    let mut i = 0;
    // (long, short, takes a value)
    const FLAGS: [(&str, Option<char>, bool); 13] = [
        ("check", Some('c'), false),
        ("color", None, true),
        ("colour", None, true),
        ("files-dir", Some('d'), true),
        ("help", Some('h'), false),
        ("output", Some('o'), true),
        ("pretty", Some('p'), false),
        ("raw", Some('r'), false),
        ("raw-errors", None, false),
        ("strict", Some('s'), false),
        ("version", Some('V'), false),
        ("input", None, true),
        ("", None, false),
    ];
    let set = |f: &mut Flags, name: &str, value: Option<String>| -> Result<(), String> {
        let b = |v: Option<String>, shown: &str| -> Result<bool, String> {
            match v {
                None => Ok(true),
                Some(v) => parse_bool(&v).ok_or_else(|| {
                    format!("invalid argument {v:?} for \"{shown}\" flag: strconv.ParseBool: parsing {v:?}: invalid syntax")
                }),
            }
        };
        match name {
            "check" => f.check = b(value, "-c, --check")?,
            "help" => f.help = b(value, "-h, --help")?,
            "pretty" => f.pretty = b(value, "-p, --pretty")?,
            "raw" => f.raw = b(value, "-r, --raw")?,
            "raw-errors" => f.raw_errors = b(value, "--raw-errors")?,
            "strict" => f.strict = b(value, "-s, --strict")?,
            "version" => f.version = b(value, "-V, --version")?,
            "color" | "colour" => f.color = Some(value.unwrap_or_else(|| "always".into())),
            "files-dir" => f.files_dir = value,
            "output" => f.output = value,
            "input" => {
                eprintln!(
                    "Flag --input has been deprecated, specify filename directly on command line"
                );
                f.input = value;
            }
            _ => {}
        }
        Ok(())
    };
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if a == "--" {
            f.args.extend(args[i..].iter().cloned());
            break;
        }
        if let Some(long) = a.strip_prefix("--") {
            if long.starts_with('-') || long.starts_with('=') {
                return Err(format!("bad flag syntax: {a}"));
            }
            let (name, value) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let Some(&(flag, _, takes)) =
                FLAGS.iter().find(|(l, _, _)| *l == name && !l.is_empty())
            else {
                return Err(format!("unknown flag: --{name}"));
            };
            let value = if takes && value.is_none() && flag != "color" && flag != "colour" {
                match args.get(i) {
                    Some(v) => {
                        i += 1;
                        Some(v.clone())
                    }
                    None => return Err(format!("flag needs an argument: --{name}")),
                }
            } else {
                value
            };
            set(&mut f, flag, value)?;
        } else if a.len() > 1 && a.starts_with('-') {
            let shorts: Vec<char> = a[1..].chars().collect();
            let mut j = 0;
            while j < shorts.len() {
                let c = shorts[j];
                j += 1;
                let Some(&(flag, _, takes)) = FLAGS.iter().find(|(_, s, _)| *s == Some(c)) else {
                    return Err(format!("unknown shorthand flag: '{c}' in {a}"));
                };
                if takes {
                    let rest: String = shorts[j..].iter().collect();
                    let value = if let Some(v) = rest.strip_prefix('=') {
                        v.to_string()
                    } else if !rest.is_empty() {
                        rest
                    } else {
                        match args.get(i) {
                            Some(v) => {
                                i += 1;
                                v.clone()
                            }
                            None => return Err(format!("flag needs an argument: '{c}' in {a}")),
                        }
                    };
                    set(&mut f, flag, Some(value))?;
                    break;
                }
                let value = if shorts.get(j) == Some(&'=') {
                    let v: String = shorts[j + 1..].iter().collect();
                    j = shorts.len();
                    Some(v)
                } else {
                    None
                };
                set(&mut f, flag, value)?;
            }
        } else {
            f.args.push(a.clone());
        }
    }
    Ok(f)
}

fn usage(argv0: &str) -> String {
    format!("Usage: {argv0} [options] [input-file]\n{USAGE_BODY}")
}

/// Runs Butane with the full argument vector (`args[0]` is the name shown
/// in the usage).
pub fn main(args: Vec<OsString>) -> ExitCode {
    let args: Vec<String> = args
        .into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let argv0 = args.first().cloned().unwrap_or_else(|| "butane".into());
    let flags = match parse(&args[1..]) {
        Ok(f) => f,
        Err(e) => {
            eprint!("{}", usage(&argv0));
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let color = match flags.color.as_deref().unwrap_or("auto") {
        "always" | "yes" => true,
        "auto" => std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal(),
        _ => false,
    };
    let input_name = match (flags.args.len(), &flags.input) {
        (0, None) => None,
        (0, Some(i)) => Some(i.clone()),
        (1, None) => Some(flags.args[0].clone()),
        _ => {
            eprint!("{}", usage(&argv0));
            return ExitCode::from(2);
        }
    };
    if flags.help {
        print!("{}", usage(&argv0));
        return ExitCode::SUCCESS;
    }
    if flags.version {
        println!("Butane oxcore-{}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let mut data = Vec::new();
    let display_name = match &input_name {
        None => {
            if let Err(e) = std::io::stdin().read_to_end(&mut data) {
                eprintln!("failed to read /dev/stdin: {}", butane::errno_text(&e));
                return ExitCode::from(1);
            }
            "<stdin>".to_string()
        }
        Some(name) => {
            let mut f = match std::fs::File::open(name) {
                Ok(f) => f,
                Err(e) => {
                    eprintln!(
                        "failed to open {name}: {}",
                        butane::go_error("open", Path::new(name), &e)
                    );
                    return ExitCode::from(1);
                }
            };
            if let Err(e) = f.read_to_end(&mut data) {
                eprintln!(
                    "failed to read {name}: {}",
                    butane::go_error("read", Path::new(name), &e)
                );
                return ExitCode::from(1);
            }
            name.clone()
        }
    };
    let opts = butane::Options {
        files_dir: flags.files_dir.as_ref().map(PathBuf::from),
        raw: flags.raw,
        pretty: flags.pretty,
        exiting: true,
    };
    let outcome = butane::transpile(&data, &opts);
    let report = if flags.raw_errors {
        outcome.report.render_raw()
    } else if outcome.report.entries.is_empty() {
        String::new()
    } else {
        outcome
            .report
            .render_pretty(&String::from_utf8_lossy(&data), &display_name, color)
    };
    eprint!("{report}");
    let output = match outcome.output {
        Ok(o) => o,
        Err(e) => {
            eprintln!("Error translating config: {e}");
            return ExitCode::from(1);
        }
    };
    if flags.strict && !outcome.report.entries.is_empty() {
        eprintln!("Config produced warnings and --strict was specified");
        return ExitCode::from(1);
    }
    if flags.check {
        return ExitCode::SUCCESS;
    }
    match &flags.output {
        None => {
            let mut out = std::io::stdout().lock();
            if out
                .write_all(output.as_bytes())
                .and_then(|_| out.write_all(b"\n"))
                .is_err()
            {
                return ExitCode::from(1);
            }
        }
        Some(file) => {
            if let Err(e) = util::write_atomic(
                Path::new(file),
                format!("{output}\n").as_bytes(),
                0o644,
                true,
            ) {
                eprintln!("Failed to write config to {file}: {e}");
                return ExitCode::from(1);
            }
        }
    }
    ExitCode::SUCCESS
}
