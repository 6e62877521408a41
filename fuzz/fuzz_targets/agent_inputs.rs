//! The update agent's inputs: any configuration fragment text, any graph
//! body (from a hostile or broken graph server) with the choice made on
//! it, and any state file. Nothing may panic; a chosen update is one of
//! the targets offered, never denylisted, and never older than the booted
//! release unless downgrades are allowed.
#![no_main]

use agent::graph::{Graph, Release, choose};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            let text = String::from_utf8_lossy(rest).into_owned();
            let _ = agent::config::parse(&[("fuzz.toml".into(), text)]);
        }
        1 => {
            let Ok(g) = serde_json::from_slice::<Graph>(rest) else {
                return;
            };
            let Some(booted) = g.nodes.first().map(|n| n.payload.clone()) else {
                return;
            };
            let allow = mode & 4 != 0;
            let deny = |r: &Release| r.payload.len() % 2 == 1;
            if let Ok(offer) = choose(&g, &booted, &deny, allow) {
                if let Some(u) = offer.update {
                    assert!(offer.targets.contains(&u));
                    assert!(!deny(&u));
                    if !allow {
                        let b = Release::from_node(&g.nodes[0]).unwrap();
                        assert!(u > b);
                    }
                }
            }
        }
        _ => {
            let dir = std::env::temp_dir().join(format!("agent-fuzz-{}", std::process::id()));
            let path = dir.join("var/lib/oxcore-agent/state.json");
            let _ = std::fs::create_dir_all(path.parent().unwrap());
            if std::fs::write(&path, rest).is_ok() {
                let _ = agent::state::Persistent::load(&agent::Root::new(&dir));
            }
        }
    }
});
