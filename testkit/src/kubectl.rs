//! Runs the real kubectl (/usr/bin/kubectl or $KUBECTL) against a dev cluster. A missing
//! kubectl fails the test: it is a required tool, never a reason to skip.

use std::path::PathBuf;
use std::process::Stdio;

use tempfile::TempDir;
use tokio::process::Command;

use crate::Output;

pub struct Kubectl {
    dir: TempDir,
    bin: PathBuf,
}

impl Kubectl {
    pub fn new(kubeconfig: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("kubeconfig"), kubeconfig).expect("write kubeconfig");
        let bin = std::env::var_os("KUBECTL")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/bin/kubectl"));
        assert!(
            bin.exists(),
            "kubectl not found at {} (set KUBECTL); the kubectl conformance tests need it",
            bin.display()
        );
        Kubectl { dir, bin }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--kubeconfig")
            .arg(self.dir.path().join("kubeconfig"))
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(args)
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        c
    }

    pub async fn run(&self, args: &[&str]) -> Output {
        self.run_with_env(args, &[]).await
    }

    pub async fn run_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = self.command(args);
        for (k, v) in env {
            c.env(k, v);
        }
        Output::of(c.output().await.expect("kubectl runs"))
    }

    /// Runs kubectl and fails the test unless it succeeds; returns stdout.
    pub async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(
            out.ok,
            "kubectl {args:?} failed:\n{}\n{}",
            out.stdout, out.stderr
        );
        out.stdout
    }

    /// Writes a manifest into the temp dir and returns its path.
    pub fn file(&self, name: &str, content: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, content).expect("write manifest");
        p.to_string_lossy().into_owned()
    }
}
