//! Fuzzes the YAML alias expander: the input chooses a document of anchors
//! whose values alias earlier anchors (sequences, mappings, merge keys,
//! anchors used inside themselves), placed where the decoder walks through
//! them. However the aliases nest, Butane must answer (a config, or
//! yaml.v3's refusal) in bounded memory and time: libFuzzer's RSS limit
//! and timeout catch a blow-up, the assertions a wrong answer.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// Where the last anchor is used: paths the decoder walks into.
const PLACES: &[&str] = &[
    "storage:\n  files: *{}\n",
    "storage:\n  files:\n    - path: /a\n      append: *{}\n",
    "kernel_arguments:\n  should_exist: *{}\n",
    "passwd:\n  users: *{}\n",
    "storage:\n  files:\n    - <<: *{}\n      path: /b\n",
    "systemd:\n  units: *{}\n",
    "x: *{}\n",
];

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let mut yaml = String::from("variant: fcos\nversion: 1.5.0\nanchors:\n");
    yaml.push_str("  - &a0 {path: /a, name: a, source: 'http://x', value: v}\n");
    let mut anchors = 1;
    for chunk in data[1..].chunks(3) {
        let (kind, width, pick) = (chunk[0], chunk.get(1).copied().unwrap_or(1), chunk.get(2).copied().unwrap_or(0));
        let width = usize::from(width % 12) + 1;
        let name = format!("a{anchors}");
        let target = |k: usize| format!("*a{}", (usize::from(pick) + k) % anchors);
        let items: Vec<String> = (0..width).map(target).collect();
        let value = match kind % 6 {
            0 => format!("[{}]", items.join(", ")),
            1 => format!("{{path: /p, append: [{}]}}", items.join(", ")),
            2 => format!("{{<<: [{}], name: n}}", items.join(", ")),
            3 => format!("{{path: /q, http_headers: [{}], x: *{name}}}", items.join(", ")),
            4 => format!("[{}, *{name}]", items.join(", ")),
            _ => format!("{{name: u, contents: {}, dropins: [{}]}}", target(0), items.join(", ")),
        };
        yaml.push_str(&format!("  - &{name} {value}\n"));
        anchors += 1;
        if anchors > 64 {
            break;
        }
    }
    let place = PLACES[usize::from(data[0]) % PLACES.len()];
    yaml.push_str(&place.replace("{}", &format!("a{}", anchors - 1)));
    let outcome = butane::transpile(yaml.as_bytes(), &butane::Options::default());
    let _ = outcome.report.render_raw();
    if let Ok(out) = outcome.output {
        assert!(out.len() < (256 << 20), "output of {} bytes", out.len());
        assert!(ignition_config::parse(out.as_bytes()).is_ok(), "{out}");
    }
});
