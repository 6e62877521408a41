//! The sysroot lock between threads of one process: POSIX record locks do
//! not exclude threads, so the in-process table must.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use sysroot::Sysroot;

#[test]
fn threads_of_one_process_take_the_lock_in_turn_and_may_reenter() {
    let tmp = tempfile::tempdir().unwrap();
    let sr = Sysroot::init_fs(tmp.path()).unwrap();
    let first = sr.lock().unwrap();
    // The holder may take it again (a command locks, then the library does).
    let again = sr.lock().unwrap();
    drop(again);
    let released = AtomicBool::new(false);
    std::thread::scope(|s| {
        let (waiting_tx, waiting_rx) = mpsc::channel();
        let other = s.spawn(|| {
            let sr2 = Sysroot::open(tmp.path()).unwrap();
            let _l = sr2.lock_with(move || waiting_tx.send(()).unwrap()).unwrap();
            // Only after the first holder let go.
            assert!(released.load(Ordering::SeqCst));
        });
        // The other thread reports that it waits...
        waiting_rx.recv().unwrap();
        // ...and cannot have the lock yet.
        released.store(true, Ordering::SeqCst);
        drop(first);
        other.join().unwrap();
    });
    // Released by every holder: taken at once.
    let mut waited = false;
    let _l = sr.lock_with(|| waited = true).unwrap();
    assert!(!waited);
}
