//! A real OpenBao dev server on a free loopback port, from the workspace's
//! `.tools/venv/bin/bao` (installed by scripts/install-tools) or $BAO_BIN. Missing means failing, not skipping.

use std::path::PathBuf;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::{Output, PATIENCE};

pub struct OpenBao {
    _child: Child,
    bin: PathBuf,
    pub addr: String,
    root_token: String,
    unseal_key: String,
}

impl OpenBao {
    pub async fn start() -> Self {
        let bin = std::env::var_os("BAO_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| crate::tools::venv().join("bin/bao"));
        crate::tools::require("OpenBao", &bin);
        let port = crate::tools::free_port();
        let root_token = uuid::Uuid::new_v4().to_string();
        let mut child = Command::new(&bin)
            .args(["server", "-dev", "-dev-no-store-token"])
            .arg(format!("-dev-root-token-id={root_token}"))
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("bao starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // The dev server prints its unseal key after it says it started.
        let ready = async {
            let mut started = false;
            while let Some(line) = lines.next_line().await.unwrap() {
                started |= line.contains("OpenBao server started!");
                if let Some(key) = line.trim().strip_prefix("Unseal Key: ") {
                    assert!(started, "the unseal key comes after the start");
                    return key.to_string();
                }
            }
            panic!("OpenBao exited before it was ready");
        };
        let unseal_key = tokio::time::timeout(PATIENCE, ready)
            .await
            .expect("OpenBao ready in time");
        // Keep draining its output so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        OpenBao {
            _child: child,
            bin,
            addr: format!("http://127.0.0.1:{port}"),
            root_token,
            unseal_key,
        }
    }

    /// Seals the server: every request is refused with 503 until `unseal`.
    pub async fn seal(&self) {
        self.ok(&["operator", "seal"]).await;
    }

    pub async fn unseal(&self) {
        self.ok(&["operator", "unseal", &self.unseal_key]).await;
    }

    /// A token limited to `policy` (a policy document in HCL), for the operator.
    pub async fn token_for(&self, name: &str, policy: &str) -> String {
        let file = std::env::temp_dir().join(format!("bao-policy-{}.hcl", uuid::Uuid::new_v4()));
        std::fs::write(&file, policy).unwrap();
        self.ok(&["policy", "write", name, file.to_str().unwrap()])
            .await;
        let _ = std::fs::remove_file(&file);
        self.ok(&[
            "token",
            "create",
            "-field=token",
            &format!("-policy={name}"),
        ])
        .await
        .trim()
        .to_string()
    }

    /// A KV v2 entry's latest version (`data` and `metadata`), read with the bao CLI.
    pub async fn kv_get(&self, mount: &str, path: &str) -> Option<serde_json::Value> {
        self.json(&[
            "kv",
            "get",
            "-format=json",
            &format!("-mount={mount}"),
            path,
        ])
        .await
        .map(|v| v["data"].clone())
    }

    /// One version of a KV v2 entry.
    pub async fn kv_get_version(
        &self,
        mount: &str,
        path: &str,
        version: u64,
    ) -> Option<serde_json::Value> {
        self.json(&[
            "kv",
            "get",
            "-format=json",
            &format!("-mount={mount}"),
            &format!("-version={version}"),
            path,
        ])
        .await
        .map(|v| v["data"].clone())
    }

    /// A KV v2 entry's metadata (versions, custom_metadata).
    pub async fn kv_metadata(&self, mount: &str, path: &str) -> Option<serde_json::Value> {
        self.json(&[
            "kv",
            "metadata",
            "get",
            "-format=json",
            &format!("-mount={mount}"),
            path,
        ])
        .await
        .map(|v| v["data"].clone())
    }

    /// The CLI's JSON output, or `None` when it found nothing.
    async fn json(&self, args: &[&str]) -> Option<serde_json::Value> {
        let out = self.cli(args).await;
        if !out.ok {
            assert!(
                out.stderr.contains("No value found") || out.stdout.contains("No value found"),
                "bao {args:?} failed:\n{}\n{}",
                out.stdout,
                out.stderr
            );
            return None;
        }
        Some(serde_json::from_str(&out.stdout).expect("bao prints JSON"))
    }

    /// Runs the bao CLI against this server as root.
    pub async fn cli(&self, args: &[&str]) -> Output {
        let out = Command::new(&self.bin)
            .args(args)
            .env("BAO_ADDR", &self.addr)
            .env("BAO_TOKEN", &self.root_token)
            .stdin(Stdio::null())
            .output()
            .await
            .expect("bao CLI runs");
        Output::of(out)
    }

    pub async fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args).await;
        assert!(
            out.ok,
            "bao {args:?} failed:\n{}\n{}",
            out.stdout, out.stderr
        );
        out.stdout
    }
}
