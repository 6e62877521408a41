//! Fuzzes the Butane front end (YAML parsing, decoding, checks, sugar,
//! report rendering): no input may panic, and any output must be an
//! Ignition config the library accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let outcome = butane::transpile(data, &butane::Options::default());
    let _ = outcome.report.render_pretty(&String::from_utf8_lossy(data), "fuzz.bu", true);
    let _ = outcome.report.render_raw();
    if let Ok(out) = outcome.output
        && out.starts_with('{')
    {
        assert!(ignition_config::parse(out.as_bytes()).is_ok(), "{out}");
    }
});
