//! Every OSTree object parser on arbitrary bytes: none may panic, and what
//! parses serializes to bytes that parse to the same object.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ostree_store::gvariant::{Type, Value};
use ostree_store::object::{Commit, DirMeta, DirTree, FileMeta, parse_vardict, split_framed_header};
use ostree_store::summary::Summary;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = Commit::parse(data) {
        assert_eq!(Commit::parse(&c.to_bytes()).unwrap(), c);
    }
    if let Ok(t) = DirTree::parse(data) {
        assert_eq!(DirTree::parse(&t.to_bytes()).unwrap(), t);
    }
    if let Ok(m) = DirMeta::parse(data) {
        let _ = m.to_bytes();
    }
    let _ = FileMeta::from_header(data);
    let _ = FileMeta::from_archive_header(data);
    let _ = split_framed_header(data);
    let _ = parse_vardict(data);
    let _ = Summary::parse(data);
    for ty in ["(a{sv}aya(say)sstayay)", "a(s(taya{sv}))", "(uuuusa(ayay))", "mv", "a{sv}"] {
        let ty = Type::parse(ty).unwrap();
        let _ = Value::parse(&ty, data);
    }
});
