//! Butane configs of one shape at any size, for the linearity test
//! (`tests/butane_linear.rs`) and the scaling benchmark
//! (`benches/butane_scale.rs`): the same text at 1x, 2x, 4x, 8x. Items
//! of one shape cost the same (numbers that change which data URL wins,
//! and so whether contents are gzipped, are padded).
#![allow(dead_code)] // each user takes its own subset

use std::fmt::Write as _;
use std::path::Path;

/// The shapes of config that grow.
pub const SHAPES: &[Shape] = &[
    Shape::Files,
    Shape::Units,
    Shape::Inline,
    Shape::Trees,
    Shape::Findings,
];

/// What a config has many of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Files with short plain contents and a mode.
    Files,
    /// Units whose contents are block scalars (`contents: |`).
    Units,
    /// Files whose contents are block scalars (`inline: |`).
    Inline,
    /// A `trees` directory of that many local files.
    Trees,
    /// Files that each draw findings: an unused key, a decimal mode, and a
    /// sticky bit that the Ignition check warns about (mapped back to the
    /// YAML through the translation set).
    Findings,
}

impl Shape {
    /// The name printed by the benchmark.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Files => "files",
            Shape::Units => "units",
            Shape::Inline => "inline blocks",
            Shape::Trees => "trees",
            Shape::Findings => "findings",
        }
    }

    /// Writes the config for `n` items into `dir` (`config.bu`, and the
    /// tree under `files/` for [`Shape::Trees`]); returns the config's path.
    pub fn write(self, dir: &Path, n: usize) -> std::path::PathBuf {
        std::fs::create_dir_all(dir.join("files")).expect("create the files dir");
        let mut s = String::from("variant: fcos\nversion: 1.5.0\n");
        match self {
            Shape::Files => {
                s.push_str("storage:\n  files:\n");
                for i in 0..n {
                    let _ = write!(
                        s,
                        "    - path: /etc/oxcore/f{i}.conf\n      mode: 0644\n      contents:\n        inline: setting{i}=on\n"
                    );
                }
            }
            Shape::Units => {
                s.push_str("systemd:\n  units:\n");
                for i in 0..n {
                    let _ = write!(
                        s,
                        "    - name: svc{i}.service\n      enabled: true\n      contents: |\n        [Service]\n        ExecStart=/usr/bin/true {i}\n        [Install]\n        WantedBy=multi-user.target\n"
                    );
                }
            }
            Shape::Inline => {
                s.push_str("storage:\n  files:\n");
                for i in 0..n {
                    let _ = write!(
                        s,
                        "    - path: /etc/oxcore/b{i}.conf\n      contents:\n        inline: |\n          line one of file {i:05}\n          line two\n"
                    );
                }
            }
            Shape::Trees => {
                let tree = dir.join("files/tree");
                for i in 0..n {
                    let sub = tree.join(format!("d{}", i % 50));
                    std::fs::create_dir_all(&sub).expect("create a tree dir");
                    std::fs::write(
                        sub.join(format!("f{i}.conf")),
                        format!("key{i}=value {i}\nother=line\n"),
                    )
                    .expect("write a tree file");
                }
                s.push_str("storage:\n  trees:\n    - local: tree\n      path: /opt/tree\n");
            }
            Shape::Findings => {
                s.push_str("storage:\n  files:\n");
                for i in 0..n {
                    let _ = write!(
                        s,
                        "    - path: /etc/oxcore/w{i}.conf\n      mode: 1644\n      colour: blue\n      contents:\n        inline: x{i}\n"
                    );
                }
            }
        }
        let path = dir.join("config.bu");
        std::fs::write(&path, s).expect("write the config");
        path
    }
}
