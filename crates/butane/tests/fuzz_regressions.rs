//! Inputs the fuzzer found that once panicked; each must now transpile (or
//! fail) cleanly.

#[test]
fn fuzz_regressions_do_not_panic() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fuzz");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        let outcome = butane::transpile(&data, &butane::Options::default());
        let _ = outcome
            .report
            .render_pretty(&String::from_utf8_lossy(&data), "f.bu", false);
        n += 1;
    }
    assert!(n > 0);
}
