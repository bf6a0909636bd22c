//! Where the external servers the tests start come from: `.tools/venv`, which
//! `scripts/install-tools` fills. A missing one fails the test, never skips it.

use std::path::{Path, PathBuf};

pub fn venv() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.tools/venv"))
}

pub fn require(what: &str, bin: &Path) {
    assert!(
        bin.exists(),
        "{what} not found at {} — run scripts/install-tools",
        bin.display()
    );
}

/// A loopback port free now, for a server the test starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
