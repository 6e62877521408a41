//! How Butane and ignition-validate scale: every shape of config
//! (tests/common/scale.rs: many files, many units, many inline blocks, a
//! large `trees` directory, many findings) at 1x, 2x, 4x and 8x, timed as
//! whole processes (best of several runs), with the growth factor per
//! doubling (2.0 is linear).
//!
//! Upstream runs beside it when found: Butane from `$BUTANE_ORACLE` (else a
//! `butane` on the PATH that is not oxcore), ignition-validate from
//! `$IGNITION_VALIDATE_ORACLE` (else on the PATH). At 8x the ratio
//! upstream / oxcore is printed, and whether the outputs are identical.
//!
//! Run: `BUTANE_ORACLE=... IGNITION_VALIDATE_ORACLE=... cargo bench -p oxcore --bench butane_scale`
//! (`SCALE_BASE=N` changes the 1x size, 1000 items by default).

#[path = "../tests/common/scale.rs"]
mod scale;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use scale::SHAPES;

const FACTORS: [usize; 4] = [1, 2, 4, 8];

/// Best time of `runs` runs, and the output of the last. The best, not the
/// median: on a shared machine the load only ever adds time, and the
/// short oxcore runs would suffer more from it than upstream's.
fn time(bin: &Path, args: &[&Path], runs: usize) -> Option<(Duration, Vec<u8>)> {
    let mut samples = Vec::new();
    let mut out = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        let o = Command::new(bin).args(args).output().ok()?;
        samples.push(start.elapsed());
        // ignition-validate exits 0 with warnings, Butane too.
        if !o.status.success() {
            eprintln!(
                "{} failed: {}",
                bin.display(),
                String::from_utf8_lossy(&o.stderr)
            );
            return None;
        }
        out = o.stdout;
    }
    Some((samples.into_iter().min()?, out))
}

/// An upstream tool: the variable's path, else `name` on the PATH unless it
/// is oxcore itself.
fn oracle(var: &str, name: &str, ours: &Path) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(var) {
        return Some(PathBuf::from(p));
    }
    let ours = std::fs::canonicalize(ours).ok();
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|b| b.is_file() && std::fs::canonicalize(b).ok() != ours)
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let base: usize = std::env::var("SCALE_BASE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let dir = std::env::temp_dir().join(format!("oxcore-butane-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench dir");
    let ours = Path::new(env!("CARGO_BIN_EXE_oxcore"));
    let butane = dir.join("butane");
    let validate = dir.join("ignition-validate");
    std::os::unix::fs::symlink(ours, &butane).expect("link");
    std::os::unix::fs::symlink(ours, &validate).expect("link");
    let up_butane = oracle("BUTANE_ORACLE", "butane", ours);
    let up_validate = oracle("IGNITION_VALIDATE_ORACLE", "ignition-validate", ours);
    match &up_butane {
        Some(p) => println!("upstream butane: {}", p.display()),
        None => println!(
            "upstream butane: NOT FOUND (set BUTANE_ORACLE): no side-by-side figures for Butane"
        ),
    }
    match &up_validate {
        Some(p) => println!("upstream ignition-validate: {}", p.display()),
        None => println!(
            "upstream ignition-validate: NOT FOUND (set IGNITION_VALIDATE_ORACLE): no side-by-side figures for it"
        ),
    }
    println!(
        "1x = {base} items; times are the best of 5 runs (upstream: 3); growth is per doubling\n"
    );

    for &shape in SHAPES {
        println!("== {}", shape.name());
        println!(
            "{:>7} {:>12} {:>7} {:>12} {:>7} {:>13} {:>13}",
            "size", "butane", "growth", "validate", "growth", "up butane", "up validate"
        );
        let mut prev: Option<(Duration, Duration)> = None;
        for f in FACTORS {
            let case = dir.join(format!("{}-{f}", shape.name().replace(' ', "-")));
            let config = shape.write(&case, base * f);
            let files = case.join("files");
            let (tb, json) =
                time(&butane, &[Path::new("-d"), &files, &config], 5).expect("oxcore butane runs");
            let ign = case.join("config.ign");
            std::fs::write(&ign, &json).expect("write JSON");
            let (tv, _) = time(&validate, &[&ign], 5).expect("oxcore ignition-validate runs");
            let growth = |now: Duration, before: Option<Duration>| {
                before.map_or("".to_string(), |b| {
                    format!("{:.2}", now.as_secs_f64() / b.as_secs_f64())
                })
            };
            let (up_b, same) = match &up_butane {
                Some(up) => match time(up, &[Path::new("-d"), &files, &config], 3) {
                    Some((t, out)) => (Some(t), Some(out == json)),
                    None => (None, None),
                },
                None => (None, None),
            };
            let up_v = up_validate
                .as_ref()
                .and_then(|up| time(up, &[&ign], 3))
                .map(|(t, _)| t);
            println!(
                "{:>6}x {:>9.1} ms {:>7} {:>9.1} ms {:>7} {:>13} {:>13}",
                f,
                ms(tb),
                growth(tb, prev.map(|p| p.0)),
                ms(tv),
                growth(tv, prev.map(|p| p.1)),
                up_b.map_or("-".into(), |t| format!("{:.1} ms", ms(t))),
                up_v.map_or("-".into(), |t| format!("{:.1} ms", ms(t))),
            );
            if f == 8 {
                if let Some(t) = up_b {
                    println!(
                        "   8x ratio upstream/oxcore: butane {:.1}x (outputs {})",
                        t.as_secs_f64() / tb.as_secs_f64(),
                        if same == Some(true) {
                            "identical"
                        } else {
                            "DIFFER"
                        }
                    );
                }
                if let Some(t) = up_v {
                    println!(
                        "   8x ratio upstream/oxcore: ignition-validate {:.1}x",
                        t.as_secs_f64() / tv.as_secs_f64()
                    );
                }
            }
            prev = Some((tb, tv));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
