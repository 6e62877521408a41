//! Fuzzes the Ignition config parser: any input must give a config or a
//! failure with a report, never a panic; a config that parses must survive
//! serialization and parse again to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((config, _)) = ignition_config::parse(data) {
        let again = ignition_config::to_json(&config);
        if let Ok((back, _)) = ignition_config::parse(again.as_bytes()) {
            assert_eq!(back, config);
        }
    }
});
