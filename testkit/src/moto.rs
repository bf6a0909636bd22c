//! A real moto server (AWS Secrets Manager, IAM, STS) on a free loopback port, from the
//! workspace's `.tools/venv` (installed by scripts/install-tools). Tests read what the
//! operator wrote with boto3, AWS's own SDK, never through our code. Missing means
//! failing, not skipping.

use std::path::PathBuf;
use std::process::Stdio;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::PATIENCE;

pub struct Moto {
    _child: Child,
    venv: PathBuf,
    /// Where moto records every request it is sent (its recorder, on from the start).
    recording: tempfile::TempDir,
    /// `http://127.0.0.1:<port>`, for `endpointUrl`.
    pub endpoint: String,
}

/// The region the tests use.
pub const REGION: &str = "eu-west-1";

impl Moto {
    pub async fn start() -> Self {
        let venv = crate::tools::venv();
        let bin = venv.join("bin/moto_server");
        crate::tools::require("moto", &bin);
        let port = crate::tools::free_port();
        let recording = tempfile::tempdir().expect("a directory for moto's recording");
        let mut child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_ENABLE_RECORDING", "true")
            .env("MOTO_RECORDER_FILEPATH", recording.path().join("requests"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("moto_server starts");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let ready = async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if line.contains("Running on") {
                    return;
                }
            }
            panic!("moto exited before it was ready");
        };
        tokio::time::timeout(PATIENCE, ready)
            .await
            .expect("moto ready in time");
        // Keep draining its log (one line per request) so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Moto {
            _child: child,
            venv,
            recording,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Runs a Python snippet with `sm` (a boto3 Secrets Manager client on this server;
    /// `kw` makes clients of other services) and returns the JSON it prints with `out(...)`.
    pub async fn boto(&self, snippet: &str) -> Value {
        let script = format!(
            "import boto3, json, sys\n\
             kw = dict(endpoint_url='{}', region_name='{REGION}',\n\
                 aws_access_key_id='test', aws_secret_access_key='test')\n\
             sm = boto3.client('secretsmanager', **kw)\n\
             def out(v): print(json.dumps(v, default=str))\n\
             {snippet}\n",
            self.endpoint
        );
        let output = Command::new(self.venv.join("bin/python"))
            .args(["-c", &script])
            .stdin(Stdio::null())
            .output()
            .await
            .expect("python runs");
        assert!(
            output.status.success(),
            "boto3 snippet failed:\n{snippet}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        serde_json::from_str(stdout.trim()).unwrap_or(Value::Null)
    }

    /// DescribeSecret, or `None` when there is no such secret.
    pub async fn describe(&self, name: &str) -> Option<Value> {
        let v = self
            .boto(&format!(
                "try:\n    out(sm.describe_secret(SecretId='{name}'))\n\
                 except sm.exceptions.ResourceNotFoundException:\n    out(None)"
            ))
            .await;
        (!v.is_null()).then_some(v)
    }

    /// The value of the version carrying `stage`, parsed as JSON, or `None`.
    pub async fn value(&self, name: &str, stage: &str) -> Option<Value> {
        let v = self
            .boto(&format!(
                "try:\n    out(json.loads(sm.get_secret_value(SecretId='{name}', VersionStage='{stage}')['SecretString']))\n\
                 except sm.exceptions.ResourceNotFoundException:\n    out(None)"
            ))
            .await;
        (!v.is_null()).then_some(v)
    }

    /// The Secrets Manager requests moto was sent so far, in order: each one's operation
    /// (`PutSecretValue`…) and its JSON body. Moto has no watch: this is how a test sees
    /// states that last only between two requests.
    pub fn requests(&self) -> Vec<(String, Value)> {
        use base64::Engine;
        let recorded =
            std::fs::read_to_string(self.recording.path().join("requests")).unwrap_or_default();
        recorded
            .lines()
            .filter_map(|line| {
                let entry: Value = serde_json::from_str(line).expect("moto records JSON lines");
                let target = entry["headers"].as_object()?.iter().find_map(|(k, v)| {
                    k.eq_ignore_ascii_case("x-amz-target").then(|| v.as_str())?
                })?;
                let operation = target.strip_prefix("secretsmanager.")?.to_string();
                let body = entry["body"].as_str().unwrap_or_default();
                let body = if entry["body_encoded"] == true {
                    base64::engine::general_purpose::STANDARD
                        .decode(body)
                        .expect("moto records bodies in base64")
                } else {
                    body.as_bytes().to_vec()
                };
                Some((
                    operation,
                    serde_json::from_slice(&body).unwrap_or(Value::Null),
                ))
            })
            .collect()
    }
}
