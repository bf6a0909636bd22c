//! The workspace's shared harness, and the invariant checker of the rotation protocol.

pub mod invariants;

pub use apikey_testkit::*;

/// Stops a process as a user stops it (SIGTERM, as Ctrl-C) and checks it exits cleanly.
/// Dropping it would kill it outright, and a sandbox killed so leaves its OpenBao running.
pub async fn terminate(mut child: tokio::process::Child) {
    let pid = child.id().expect("the process runs").to_string();
    let signalled = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(signalled.success());
    let exited = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("the process stops on SIGTERM")
        .unwrap();
    assert!(exited.success(), "the process exits cleanly: {exited}");
}
