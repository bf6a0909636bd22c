//! Every command in the README's `sh` blocks runs, in order, against the sandbox it
//! describes (`apikey-operator dev --vault`), with kubectl, the plugin, helm and bao on
//! PATH as the README says. A command the harness performs by other means is listed in
//! `DONE_BY_THE_HARNESS` with how; any other command that fails fails the test.

use std::path::Path;

use crate::support::*;

/// README commands this test does not run as written, and what stands in for each.
const DONE_BY_THE_HARNESS: [(&str, &str); 4] = [
    (
        "cargo run -- dev --vault",
        "the test starts the same binary with the same arguments",
    ),
    ("./scripts/test", "CI runs it (.ci/run); it runs this test"),
    (
        "cargo install --path . --bin kubectl-apikey",
        "the test puts the same binary, built by cargo test, on PATH",
    ),
    (
        "export KUBECONFIG=$PWD/dev.kubeconfig",
        "the test sets KUBECONFIG to the sandbox's kubeconfig",
    ),
];

/// The lines of the README's ```sh blocks, comments dropped.
fn readme_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let mut commands = vec![];
    let mut in_sh = false;
    for line in readme.lines() {
        match line.trim() {
            "```sh" => in_sh = true,
            "```" => in_sh = false,
            l if in_sh && !l.is_empty() && !l.starts_with('#') => commands.push(l.to_string()),
            _ => {}
        }
    }
    commands
}

#[tokio::test]
async fn every_readme_command_runs() {
    let commands = readme_commands();
    assert!(commands.len() > 15, "{commands:#?}");
    for (command, _) in DONE_BY_THE_HARNESS {
        assert!(
            commands.iter().any(|c| c == command),
            "{command:?} is no longer in the README: drop it from DONE_BY_THE_HARNESS"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("dev.kubeconfig");
    let bin =
        |name: &str| -> std::path::PathBuf { Path::new(name).parent().unwrap().to_path_buf() };
    let path = std::env::join_paths(
        [
            bin(env!("CARGO_BIN_EXE_kubectl-apikey")),
            repo().join(".tools/bin"),
            venv().join("bin"),
        ]
        .into_iter()
        .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    require("helm", &repo().join(".tools/bin/helm"));
    let mut sandbox = tokio::process::Command::new(env!("CARGO_BIN_EXE_apikey-operator"))
        .args(["dev", "--vault", "--rollout-seconds", "0.2", "--kubeconfig"])
        .arg(&kubeconfig)
        .env("PATH", &path)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(
        sandbox.stdout.take().unwrap(),
    ));
    let running = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with("apikey-operator running") {
                return;
            }
        }
        panic!("the sandbox exited");
    };
    tokio::time::timeout(PATIENCE, running)
        .await
        .expect("the sandbox starts");
    // Keep reading what the sandbox prints, so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let k = Kubectl::new(&std::fs::read_to_string(&kubeconfig).unwrap());
    k.ok(&[
        "wait",
        "--for=condition=Ready",
        "ak/quickstart",
        "--timeout=20s",
    ])
    .await;

    for command in &commands {
        if DONE_BY_THE_HARNESS.iter().any(|(c, _)| c == command) {
            continue;
        }
        let run = tokio::process::Command::new("bash")
            .args(["-euo", "pipefail", "-c", command])
            .current_dir(repo())
            .env("PATH", &path)
            .env("KUBECONFIG", &kubeconfig)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(std::time::Duration::from_secs(90), run)
            .await
            .unwrap_or_else(|_| panic!("{command} did not finish"))
            .unwrap();
        assert!(
            out.status.success(),
            "README command failed: {command}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Stopped as a user stops it, so it stops its OpenBao too.
    terminate(sandbox).await;
}

fn repo() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}
