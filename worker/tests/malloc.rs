//! glibc's malloc as `malloc::keep_freed_memory` sets it, in a process of its
//! own (its settings are the process's): buffers freed together, as
//! librdkafka frees the message sets of a fetch, are used again without the
//! kernel handing out fresh pages. The test binary allocates with the C
//! library's malloc, as librdkafka does.
#![cfg(all(target_os = "linux", target_env = "gnu"))]

use std::hint::black_box;

/// The calling thread's minor page faults so far (`/proc/thread-self/stat`,
/// field 10).
fn minor_faults() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("stat");
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    after
        .split(' ')
        .nth(7)
        .and_then(|f| f.parse().ok())
        .expect("minflt")
}

/// Eight buffers of 256 KiB to 2 MiB held at once, written, then freed.
fn fetch_like_round() -> usize {
    let sizes = [
        256 << 10,
        1 << 20,
        2 << 20,
        512 << 10,
        1536 << 10,
        768 << 10,
        2 << 20,
        1 << 20,
    ];
    let held: Vec<Vec<u8>> = sizes.iter().map(|&n| vec![1u8; n]).collect();
    black_box(&held);
    sizes.iter().sum()
}

#[test]
fn buffers_freed_together_are_used_again_without_page_faults() {
    assert!(pixelpipe_worker::malloc::keep_freed_memory());
    std::thread::spawn(|| {
        fetch_like_round();
        let before = minor_faults();
        let bytes: usize = (0..50).map(|_| fetch_like_round()).sum();
        let faults = minor_faults() - before;
        let pages = bytes / 4096;
        assert!(
            faults * 100 < pages as u64,
            "{faults} page faults writing {pages} pages of reused buffers"
        );
    })
    .join()
    .expect("the thread");
}
