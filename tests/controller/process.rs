//! The operator as users run it: the `dev` sandbox and its own process, seen through kubectl.

use crate::support::Kubectl;
use crate::support::*;

#[tokio::test]
async fn the_dev_sandbox_runs_the_quickstart_a_rotation_and_the_examples() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dev.kubeconfig");
    let bao_dir = venv().join("bin");
    require("bao", &bao_dir.join("bao"));
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_apikey-operator"))
        .args([
            "dev",
            "--vault",
            "--rollout-seconds",
            "0.05",
            "--kubeconfig",
        ])
        .arg(&path)
        .env(
            "PATH",
            format!("{}:{}", bao_dir.display(), std::env::var("PATH").unwrap()),
        )
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut said = Said(tokio::io::AsyncBufReadExt::lines(
        tokio::io::BufReader::new(child.stdout.take().unwrap()),
    ));
    said.line(|l| l.starts_with("OpenBao dev server at http://127.0.0.1:"))
        .await;
    said.line(|l| l.starts_with("applied examples/quickstart"))
        .await;
    said.line(|l| l.starts_with("apikey-operator running"))
        .await;
    let k = Kubectl::new(&std::fs::read_to_string(&path).unwrap());
    k.ok(&[
        "wait",
        "--for=condition=Ready",
        "clusterkeystore/vault",
        "--timeout=20s",
    ])
    .await;

    // The quickstart key rotates (by request here, not to wait a minute); the summary on
    // the terminal follows it to the revocation of the old key.
    said.line(|l| l.ends_with("default/quickstart  rotation 1: Ready"))
        .await;
    k.ok(&["annotate", "ak", "quickstart", "apikey.dev/rotate=smoke"])
        .await;
    let rotated = said
        .line(|l| l.contains("default/quickstart  rotated: key gen-"))
        .await;
    said.line(|l| l.ends_with("rotation 2: Overlapping")).await;
    k.ok(&[
        "annotate",
        "ak",
        "quickstart",
        "apikey.dev/revoke-previous=smoke",
    ])
    .await;
    let revoked = said
        .line(|l| l.contains("default/quickstart  revoked the previous key"))
        .await;
    let old = rotated.split(' ').rev().nth(2).unwrap();
    assert!(revoked.ends_with(old), "{rotated} / {revoked}");
    let env = k
        .ok(&[
            "get",
            "secret",
            "quickstart-api-key",
            "-o",
            "jsonpath={.data.\\.env}",
        ])
        .await;
    let env = String::from_utf8(
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, env.trim()).unwrap(),
    )
    .unwrap();
    assert!(
        env.starts_with("WIDGETJAR_API_KEY=qs_"),
        "the templated field: {env}"
    );

    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/basic");
    k.ok(&["apply", "-f", examples.to_str().unwrap()]).await;
    k.ok(&[
        "wait",
        "--for=condition=Ready",
        "apikey/billing",
        "--timeout=20s",
    ])
    .await;
    let key = billing_key(&k).await;
    assert!(key.starts_with("sk_live_"), "the example issuer's prefix");
    let rollout = k
        .ok(&["rollout", "status", "deployment/billing", "--timeout=20s"])
        .await;
    assert!(rollout.contains("successfully rolled out"), "{rollout}");

    // The sandbox's reference issuer mints the WidgetJar example's key over HTTP.
    let widgetjar = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/widgetjar");
    k.ok(&["apply", "-f", widgetjar.to_str().unwrap()]).await;
    k.ok(&[
        "wait",
        "--for=condition=Ready",
        "apikey/storefront",
        "--timeout=20s",
    ])
    .await;
    let key = k
        .ok(&[
            "get",
            "secret",
            "storefront-widgetjar",
            "-o",
            "jsonpath={.data.api-key}",
        ])
        .await;
    let key = String::from_utf8(
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, key.trim()).unwrap(),
    )
    .unwrap();
    assert!(key.starts_with("pk_"), "a publishable WidgetJar key");
    // Stopped as a user stops it, so it stops its OpenBao too.
    terminate(child).await;
}

/// What a process printed, line by line.
struct Said(tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>);

impl Said {
    /// The next line that `matches` (skipping the others); fails after PATIENCE.
    async fn line(&mut self, matches: impl Fn(&str) -> bool) -> String {
        let found = async {
            while let Some(line) = self.0.next_line().await.unwrap() {
                if matches(&line) {
                    return line;
                }
            }
            panic!("the process exited");
        };
        tokio::time::timeout(PATIENCE, found)
            .await
            .expect("the line is printed in time")
    }
}

#[tokio::test]
async fn the_operator_as_its_own_process_fills_the_printer_columns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dev.kubeconfig");
    let bin = env!("CARGO_BIN_EXE_apikey-operator");
    let mut api = tokio::process::Command::new(bin)
        .args(["dev", "--api-only", "--kubeconfig"])
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(api.stdout.take().unwrap()));
    tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .unwrap()
        .unwrap();
    let k = Kubectl::new(&std::fs::read_to_string(&path).unwrap());
    let crds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    k.ok(&["apply", "-f", crds.to_str().unwrap()]).await;
    let log = dir.path().join("operator.log");
    let (metrics, health) = (free_port(), free_port());
    let _operator = tokio::process::Command::new(bin)
        .args(["run", "--log-format", "json", "--kubeconfig"])
        .arg(&path)
        .args(["--metrics-addr", &format!("127.0.0.1:{metrics}")])
        .args(["--health-addr", &format!("127.0.0.1:{health}")])
        // Everything the operator and its client say, to look for key material in it.
        .env("APIKEY_OPERATOR_LOG_LEVEL", "debug")
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/basic");
    k.ok(&["apply", "-f", examples.to_str().unwrap()]).await;
    k.ok(&[
        "wait",
        "--for=condition=Ready",
        "apikey/billing",
        "--timeout=20s",
    ])
    .await;
    let table = k.ok(&["get", "ak"]).await;
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[0], "billing");
    assert_eq!(row[1], "True", "READY: {table}");
    assert!(row[3].starts_with("gen-"), "KEY: {table}");
    assert!(row[5].starts_with("20"), "NEXT is a timestamp: {table}");
    // -o wide says why, as cert-manager's does.
    let wide = k.ok(&["get", "ak", "-o", "wide"]).await;
    let header: Vec<&str> = wide.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header[header.len() - 3..],
        ["REASON", "ROTATION", "MESSAGE"],
        "{wide}"
    );
    assert!(wide.contains("KeyDistributed"), "{wide}");
    // Two more rotations: every key the ApiKey ever held is looked for in the log.
    let keys = billing_keys_over_three_rotations(&k).await;
    // The log tells what was done, one JSON object per line, each step's line naming the
    // ApiKey, rotation and step as fields; it never holds key material, even at debug level.
    let logged = std::fs::read_to_string(&log).unwrap();
    let entries: Vec<serde_json::Value> = logged
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(entries.len() > 50, "a debug log: {logged}");
    let promoted: Vec<_> = entries
        .iter()
        .filter(|l| l["level"] == "INFO" && l["span"]["step"] == "Promote")
        .collect();
    assert_eq!(promoted.len(), 3, "{logged}");
    for (n, line) in promoted.iter().enumerate() {
        assert_eq!(line["span"]["namespace"], "default");
        assert_eq!(line["span"]["apikey"], "billing");
        assert_eq!(line["span"]["rotation"], n as u64 + 1, "{line}");
    }
    for key in &keys {
        assert!(!logged.contains(key.as_str()), "no key material in the log");
    }

    // Prometheus sees the rotations, the key's age and readiness; the pod's probes pass.
    let get = |port: u16, path: &'static str| async move {
        let url = format!("http://127.0.0.1:{port}{path}");
        let (http, url) = apikey_operator::https::client(&url, None, PATIENCE).unwrap();
        let r = http.get(url).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    assert_eq!(get(health, "/healthz").await.0, 200);
    assert_eq!(get(health, "/readyz").await, (200, "ok".into()));
    let (status, scraped) = get(metrics, "/metrics").await;
    assert_eq!(status, 200);
    for expected in [
        r#"apikey_rotations_total{namespace="default",name="billing",result="success"} 3"#,
        r#"apikey_ready{namespace="default",name="billing"} 1"#,
        r#"apikey_issuer_requests_total{issuer="KeyIssuer/default/generated",code="ok"}"#,
        r#"apikey_store_requests_total{store="kubernetes",code="ok"}"#,
        "apikey_operator_leader 1",
        r#"apikey_key_age_seconds{namespace="default",name="billing"}"#,
        r#"apikey_next_rotation_timestamp_seconds{namespace="default",name="billing"}"#,
    ] {
        assert!(scraped.contains(expected), "{expected} in {scraped}");
    }
    drop(lines);
}

/// The example ApiKey's key now, then after each of two more rotations requested with
/// kubectl (each ending the previous overlap, a day in the example, by hand).
async fn billing_keys_over_three_rotations(k: &Kubectl) -> Vec<String> {
    let mut keys = vec![billing_key(k).await];
    for n in 2..=3 {
        k.ok(&[
            "annotate",
            "--overwrite",
            "ak",
            "billing",
            &format!("apikey.dev/rotate={n}"),
            &format!("apikey.dev/revoke-previous={n}"),
        ])
        .await;
        k.ok(&[
            "wait",
            &format!("--for=jsonpath={{.status.rotationCount}}={n}"),
            "apikey/billing",
            "--timeout=20s",
        ])
        .await;
        keys.push(billing_key(k).await);
    }
    keys
}

/// The key the example's consumer Secret holds, read as a user would (kubectl, base64).
async fn billing_key(k: &Kubectl) -> String {
    use base64::Engine;
    let data = k
        .ok(&[
            "get",
            "secret",
            "billing-api-key",
            "-o",
            "jsonpath={.data.api-key}",
        ])
        .await;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .unwrap();
    String::from_utf8(bytes).unwrap()
}

/// Every secret the operator handles with an external store and issuer — the keys, the
/// Vault token, the issuer's admin token — is looked for in its log at trace level
/// (everything the operator, kube, vaultrs, reqwest and hyper say).
#[tokio::test]
async fn no_secret_reaches_a_trace_level_log_with_vault_and_the_http_issuer() {
    let t = cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    t.cluster.write_kubeconfig(&path).unwrap();
    let k = Kubectl::new(&t.cluster.kubeconfig());
    let crds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    k.ok(&["apply", "-f", crds.to_str().unwrap()]).await;
    let bao = OpenBao::start().await;
    let vault_token = bao
        .token_for("apikeys", include_str!("../../examples/vault/policy.hcl"))
        .await;
    let admin = "admin-token-that-must-not-be-logged";
    let issuer = apikey_operator::reference_issuer::ReferenceIssuer::new(admin);
    let addr = issuer.spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let manifest = format!(
        "apiVersion: v1
kind: Secret
metadata: {{name: credentials}}
stringData: {{vault: {vault_token}, admin: {admin}}}
---
apiVersion: apikey.dev/v1alpha1
kind: KeyStore
metadata: {{name: vault}}
spec:
  vault: {{server: \"{}\", auth: {{token: {{secretRef: {{name: credentials, key: vault}}}}}}}}
---
apiVersion: apikey.dev/v1alpha1
kind: KeyIssuer
metadata: {{name: widgetjar}}
spec:
  http: {{url: \"http://{addr}\", credentialsSecretRef: {{name: credentials, key: admin}}}}
---
apiVersion: apikey.dev/v1alpha1
kind: ApiKey
metadata: {{name: billing}}
spec:
  issuerRef: {{name: widgetjar}}
  rotation: {{every: 1h}}
  storeRef: {{name: vault}}
  secret: {{name: billing-api-key}}
",
        bao.addr
    );
    let log = dir.path().join("operator.log");
    let _operator = tokio::process::Command::new(env!("CARGO_BIN_EXE_apikey-operator"))
        .args(["run", "--kubeconfig"])
        .arg(&path)
        .env("RUST_LOG", "trace")
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    k.ok(&["apply", "-f", &k.file("billing.yaml", &manifest)])
        .await;
    k.ok(&[
        "wait",
        "--for=condition=Ready",
        "apikey/billing",
        "--timeout=20s",
    ])
    .await;
    let mut secrets = vec![vault_token.clone(), admin.to_string()];
    secrets.extend(billing_keys_over_three_rotations(&k).await);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("vaultrs") || logged.contains("rustify"),
        "the Vault client's own trace is in the log"
    );
    // Text logs written to a file are plain: no colour escapes for a collector to index.
    assert!(!logged.contains('\u{1b}'), "no ANSI escapes in a log file");
    for secret in &secrets {
        assert!(!logged.contains(secret.as_str()), "a secret is in the log");
    }
    // Nor in events or status.
    let described = k.ok(&["describe", "apikey", "billing"]).await;
    let events = k.ok(&["get", "events", "-o", "yaml"]).await;
    for secret in &secrets {
        assert!(!described.contains(secret.as_str()) && !events.contains(secret.as_str()));
    }
}
