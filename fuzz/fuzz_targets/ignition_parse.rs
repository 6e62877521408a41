//! Fuzzes the Ignition config parser: any input gives a config or a failure
//! with a report, never a panic; full validation never panics either; and a
//! config that decodes survives serialization and decodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ignition_config::parse(data);
    if let Ok((config, _)) = ignition_config::parse_unvalidated(data) {
        let again = ignition_config::to_json(&config);
        let (back, _) = ignition_config::parse_unvalidated(again.as_bytes())
            .expect("serialized config decodes");
        assert_eq!(back, config);
    }
});
