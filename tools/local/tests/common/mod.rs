//! Helpers shared by the end-to-end tests.

use std::path::PathBuf;

/// target/debug, where `cargo build --workspace` put the binaries.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary");
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("target dir")
        .to_path_buf()
}
