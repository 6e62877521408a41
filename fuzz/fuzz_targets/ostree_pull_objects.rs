//! The pull's object reader on what a hostile server may send as a
//! `.filez`: any bytes, any claimed size, truncated or endless deflate
//! streams, into an archive and a bare-user repository. Nothing may panic,
//! nothing may be staged unless its content is named by the checksum asked
//! for, and memory stays bounded by what is read, not by what a header
//! claims.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ostree_store::Transaction;
use ostree_store::{Checksum, ObjectType, Repo, RepoMode};

thread_local! {
    static TXS: Vec<&'static Transaction<'static>> = {
        let dir: &'static std::path::Path =
            Box::leak(tempfile_dir().into_boxed_path());
        [RepoMode::Archive, RepoMode::BareUser]
            .into_iter()
            .map(|mode| {
                let repo: &'static Repo = Box::leak(Box::new(
                    Repo::init(&dir.join(mode.config_name()), mode).expect("repo"),
                ));
                let tx: &'static Transaction<'static> =
                    Box::leak(Box::new(repo.begin().expect("transaction")));
                tx
            })
            .collect()
    };
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("oxcore-fuzz-pull-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fuzz_target!(|data: &[u8]| {
    // The first 32 bytes name the object asked for; the rest is the body.
    let (name, body) = data.split_at(data.len().min(32));
    let mut want = [0u8; 32];
    want[..name.len()].copy_from_slice(name);
    let expected = Checksum::from_bytes(&want).expect("32 bytes");
    TXS.with(|txs| {
        for tx in txs {
            if tx.write_filez(&expected, &mut &body[..]).is_ok() {
                // Only content named `expected` is ever staged.
                assert!(tx.has_object(&expected, ObjectType::File));
            }
        }
    });
});
