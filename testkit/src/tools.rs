//! Where the external servers the tests start come from: `.tools/venv`, which
//! `scripts/install-tools` fills. A missing one fails the test, never skips it.

use std::path::{Path, PathBuf};

/// The workspace's `.tools/venv`, found from the package under test at run time: a path
/// fixed at build time would point into another checkout whose build this shared
/// `CARGO_TARGET_DIR` reused.
pub fn venv() -> PathBuf {
    let package = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    package
        .ancestors()
        .map(|dir| dir.join(".tools/venv"))
        .find(|venv| venv.exists())
        .unwrap_or_else(|| package.join("../.tools/venv"))
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
