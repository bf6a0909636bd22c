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
}

impl OpenBao {
    pub async fn start() -> Self {
        let bin = std::env::var_os("BAO_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../.tools/venv/bin/bao"
                ))
            });
        assert!(
            bin.exists(),
            "OpenBao not found at {} — run scripts/install-tools",
            bin.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
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
        let ready = async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if line.contains("OpenBao server started!") {
                    return;
                }
            }
            panic!("OpenBao exited before it was ready");
        };
        tokio::time::timeout(PATIENCE, ready)
            .await
            .expect("OpenBao ready in time");
        // Keep draining its output so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        OpenBao {
            _child: child,
            bin,
            addr: format!("http://127.0.0.1:{port}"),
            root_token,
        }
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
