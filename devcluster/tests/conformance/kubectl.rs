//! The real kubectl against the dev cluster: the `dev --api-only` binary end to end, and
//! kubectl's table output for built-in kinds.

use std::process::Stdio;

use k8s_openapi::api::core::v1::Secret;
use kube::Resource;
use kube::api::{Api, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::support::Kubectl;
use crate::support::*;

const WIDGET: &str = "apiVersion: example.apikey.dev/v1
kind: Widget
metadata:
  name: w1
spec:
  size: 3
  color: green
";

/// The `kube-devcluster` binary as a separate process, stopped on drop.
struct DevProcess {
    _child: Child,
    _stdout: Lines<BufReader<ChildStdout>>,
    kubeconfig: String,
    _dir: tempfile::TempDir,
}

impl DevProcess {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dev.kubeconfig");
        let mut child = Command::new(env!("CARGO_BIN_EXE_kube-devcluster"))
            .args(["--rollout-seconds", "0.05", "--kubeconfig"])
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("the kube-devcluster binary starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(PATIENCE, lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(
            first.starts_with("dev cluster serving at https://127.0.0.1:"),
            "{first}"
        );
        let second = lines.next_line().await.unwrap().unwrap();
        assert_eq!(second, format!("kubeconfig: {}", path.display()));
        let kubeconfig = std::fs::read_to_string(&path).expect("kubeconfig written");
        DevProcess {
            _child: child,
            _stdout: lines,
            kubeconfig,
            _dir: dir,
        }
    }
}

async fn next_line(lines: &mut Lines<BufReader<ChildStdout>>) -> String {
    tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .expect("kubectl get -w printed in time")
        .unwrap()
        .expect("kubectl get -w still running")
}

#[tokio::test]
async fn kubectl_manages_custom_resources_on_the_dev_binary() {
    let dev = DevProcess::start().await;
    let k = Kubectl::new(&dev.kubeconfig);
    let crd = k.file("crd.yaml", WIDGET_CRD);
    assert!(k.ok(&["apply", "-f", &crd]).await.contains(
        "customresourcedefinition.apiextensions.k8s.io/widgets.example.apikey.dev created"
    ));
    k.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.example.apikey.dev",
        "--timeout=20s",
    ])
    .await;
    let api_resources = k
        .ok(&["api-resources", "--api-group=example.apikey.dev"])
        .await;
    assert!(
        api_resources.contains("widgets") && api_resources.contains("wdg"),
        "{api_resources}"
    );

    let w = k.file("w1.yaml", WIDGET);
    assert!(
        k.ok(&["apply", "-f", &w])
            .await
            .contains("widget.example.apikey.dev/w1 created")
    );
    let table = k.ok(&["get", "widgets"]).await;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["NAME", "SIZE", "READY", "AGE"]
    );
    assert!(
        lines[1].starts_with("w1") && lines[1].contains(" 3 "),
        "{table}"
    );
    let wide = k.ok(&["get", "wdg", "-o", "wide"]).await;
    assert!(
        wide.contains("COLOR") && wide.contains("green"),
        "priority columns with -o wide: {wide}"
    );
    assert!(
        k.ok(&["get", "gadgets"]).await.contains("w1"),
        "categories resolve"
    );
    let yaml = k.ok(&["get", "widget", "w1", "-o", "yaml"]).await;
    let obj: serde_json::Value = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(obj["spec"]["size"], 3);
    assert_eq!(obj["metadata"]["generation"], 1);

    // describe shows events recorded for the object (core/v1 view of events.k8s.io/v1).
    let client = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::from_yaml(&dev.kubeconfig).unwrap(),
            &Default::default(),
        )
        .await
        .unwrap(),
    )
    .unwrap();
    let widget = Api::<Widget>::default_namespaced(client.clone())
        .get("w1")
        .await
        .unwrap();
    Recorder::new(
        client.clone(),
        Reporter {
            controller: "apikey.dev/test".into(),
            instance: None,
        },
    )
    .publish(
        &Event {
            type_: EventType::Normal,
            reason: "Minted".into(),
            note: Some("minted key wj_1".into()),
            action: "Mint".into(),
            secondary: None,
        },
        &widget.object_ref(&()),
    )
    .await
    .unwrap();
    let described = k.ok(&["describe", "widget", "w1"]).await;
    assert!(
        described.contains("Minted") && described.contains("minted key wj_1"),
        "{described}"
    );
    let events = k.ok(&["get", "events"]).await;
    let header: Vec<&str> = events
        .lines()
        .next()
        .unwrap()
        .split("  ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(header, ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]);
    assert!(
        events.contains("widget/w1") && events.contains("minted key wj_1"),
        "{events}"
    );

    // get -w streams changes.
    let mut watch = k
        .command(&["get", "widgets", "-w"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    assert!(next_line(&mut lines).await.starts_with("NAME"));
    assert!(next_line(&mut lines).await.starts_with("w1"));

    k.ok(&[
        "patch",
        "widget",
        "w1",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"size":5}}"#,
    ])
    .await;
    let line = next_line(&mut lines).await;
    assert!(line.starts_with("w1") && line.contains(" 5 "), "{line}");
    k.ok(&[
        "patch",
        "widget",
        "w1",
        "--type",
        "json",
        "-p",
        r#"[{"op":"replace","path":"/spec/size","value":6}]"#,
    ])
    .await;
    assert!(next_line(&mut lines).await.contains(" 6 "));
    let smp = k
        .run(&["patch", "widget", "w1", "-p", r#"{"spec":{"size":7}}"#])
        .await;
    assert!(
        !smp.ok
            && smp
                .stderr
                .contains("application/strategic-merge-patch+json is not supported"),
        "{}",
        smp.stderr
    );
    k.ok(&[
        "patch",
        "widget",
        "w1",
        "--subresource",
        "status",
        "--type",
        "merge",
        "-p",
        r#"{"status":{"conditions":[{"type":"Ready","status":"True"}]}}"#,
    ])
    .await;
    let line = next_line(&mut lines).await;
    assert!(
        line.contains("True"),
        "printer column from a status JSONPath filter: {line}"
    );

    let editor = k.file(
        "editor.sh",
        "#!/bin/sh\nsed -i 's/size: 6/size: 8/' \"$1\"\n",
    );
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let edited = k
        .run_with_env(&["edit", "widget", "w1"], &[("KUBE_EDITOR", &editor)])
        .await;
    assert!(
        edited.ok && edited.stdout.contains("edited"),
        "{} {}",
        edited.stdout,
        edited.stderr
    );
    assert!(next_line(&mut lines).await.contains(" 8 "));

    let bad = k.file("bad.yaml", "apiVersion: example.apikey.dev/v1\nkind: Widget\nmetadata: {name: bad}\nspec: {size: 0, color: pink}\n");
    let rejected = k.run(&["apply", "-f", &bad]).await;
    assert!(!rejected.ok);
    assert!(
        rejected.stderr.contains("The Widget \"bad\" is invalid"),
        "{}",
        rejected.stderr
    );
    assert!(
        rejected
            .stderr
            .contains("spec.color: Unsupported value: \"pink\""),
        "{}",
        rejected.stderr
    );
    let unknown = k.file("unknown.yaml", "apiVersion: example.apikey.dev/v1\nkind: Widget\nmetadata: {name: unk}\nspec: {size: 1, bogus: 1}\n");
    let strict = k.run(&["apply", "-f", &unknown]).await;
    assert!(
        !strict.ok && strict.stderr.contains("unknown field \"spec.bogus\""),
        "{}",
        strict.stderr
    );
    let warned = k.run(&["apply", "-f", &unknown, "--validate=warn"]).await;
    assert!(
        warned.ok
            && warned
                .stderr
                .contains("Warning: unknown field \"spec.bogus\""),
        "{}",
        warned.stderr
    );

    let deleted = k.ok(&["delete", "widget", "w1"]).await;
    assert!(
        deleted.contains("widget.example.apikey.dev \"w1\" deleted"),
        "{deleted}"
    );
    let _final_row = next_line(&mut lines).await;
    let after = k.run(&["get", "widget", "w1"]).await;
    assert!(
        !after.ok && after.stderr.contains("NotFound"),
        "{}",
        after.stderr
    );
    watch.kill().await.unwrap();
    drop(dev);
}

#[tokio::test]
async fn kubectl_tables_for_builtin_kinds_and_rollout_status() {
    let t = cluster().await;
    let k = Kubectl::new(&t.cluster.kubeconfig());
    let deployment = k.file(
        "deploy.yaml",
        "apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: app, image: example/web:1}]
",
    );
    k.ok(&["apply", "-f", &deployment]).await;
    let status = k
        .ok(&["rollout", "status", "deployment/web", "--timeout=20s"])
        .await;
    assert!(status.contains("successfully rolled out"), "{status}");
    let table = k.ok(&["get", "deployments"]).await;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    );
    assert_eq!(
        lines[1].split_whitespace().take(4).collect::<Vec<_>>(),
        ["web", "2/2", "2", "2"]
    );

    Api::<Secret>::default_namespaced(t.client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
            "metadata": {"name": "creds"}, "stringData": {"token": "x", "id": "y"}}))
            .unwrap(),
        )
        .await
        .unwrap();
    let secrets = k.ok(&["get", "secrets"]).await;
    let lines: Vec<&str> = secrets.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["NAME", "TYPE", "DATA", "AGE"]
    );
    assert_eq!(
        lines[1].split_whitespace().take(3).collect::<Vec<_>>(),
        ["creds", "Opaque", "2"]
    );

    let namespaces = k.ok(&["get", "ns"]).await;
    assert!(
        namespaces
            .lines()
            .any(|l| l.starts_with("default") && l.contains("Active")),
        "{namespaces}"
    );
    let ns = k.file(
        "ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: temp}\n",
    );
    k.ok(&["apply", "-f", &ns]).await;
    let deleted = k.ok(&["delete", "-f", &ns, "--timeout=20s"]).await;
    assert!(deleted.contains("namespace \"temp\" deleted"), "{deleted}");
    let gone = k.run(&["get", "ns", "temp"]).await;
    assert!(!gone.ok, "kubectl waited until the namespace was gone");
}

#[tokio::test]
async fn kubectl_apply_patch_and_edit_merge_builtin_lists_by_key() {
    let t = cluster().await;
    let k = Kubectl::new(&t.cluster.kubeconfig());
    let manifest = |image: &str, env: &str, sidecar: bool| {
        let sidecar = if sidecar {
            "\n      - {name: sidecar, image: example/side:1}"
        } else {
            ""
        };
        format!(
            "apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: app
        image: {image}
        env: [{env}]{sidecar}
"
        )
    };
    let v1 = k.file(
        "v1.yaml",
        &manifest("example/web:1", "{name: A, value: '1'}", true),
    );
    k.ok(&["apply", "-f", &v1]).await;
    let v2 = k.file(
        "v2.yaml",
        &manifest(
            "example/web:2",
            "{name: A, value: '2'}, {name: B, value: '3'}",
            false,
        ),
    );
    k.ok(&["apply", "-f", &v2]).await;
    let d: serde_json::Value =
        serde_json::from_str(&k.ok(&["get", "deploy", "web", "-o", "json"]).await).unwrap();
    let containers = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(
        containers.len(),
        1,
        "the sidecar dropped from the manifest is removed: {containers:?}"
    );
    assert_eq!(containers[0]["image"], "example/web:2");
    assert_eq!(
        containers[0]["env"],
        serde_json::json!([{"name": "A", "value": "2"}, {"name": "B", "value": "3"}])
    );
    assert!(
        !d.to_string().contains("$setElementOrder"),
        "directives are never stored"
    );

    k.ok(&[
        "patch",
        "deployment",
        "web",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"example/web:3"}]}}}}"#,
    ])
    .await;
    let d: serde_json::Value =
        serde_json::from_str(&k.ok(&["get", "deploy", "web", "-o", "json"]).await).unwrap();
    let app = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(app["image"], "example/web:3");
    assert_eq!(
        app["env"].as_array().unwrap().len(),
        2,
        "a strategic patch keeps the fields it does not name"
    );

    let editor = k.file(
        "editor.sh",
        "#!/bin/sh\nsed -i 's/replicas: 1/replicas: 3/' \"$1\"\n",
    );
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let edited = k
        .run_with_env(&["edit", "deployment", "web"], &[("KUBE_EDITOR", &editor)])
        .await;
    assert!(edited.ok, "{} {}", edited.stdout, edited.stderr);
    assert_eq!(
        k.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"])
            .await,
        "3"
    );
}

#[tokio::test]
async fn kubectl_server_side_apply_reports_conflicts_and_forces() {
    let t = cluster().await;
    let k = Kubectl::new(&t.cluster.kubeconfig());
    let cm = |value: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: shared}}\ndata: {{mode: {value}}}\n"
        )
    };
    let mine = k.file("mine.yaml", &cm("fast"));
    let theirs = k.file("theirs.yaml", &cm("safe"));
    k.ok(&[
        "apply",
        "--server-side",
        "--field-manager=team-a",
        "-f",
        &mine,
    ])
    .await;
    let conflict = k
        .run(&[
            "apply",
            "--server-side",
            "--field-manager=team-b",
            "-f",
            &theirs,
        ])
        .await;
    assert!(!conflict.ok);
    assert!(
        conflict.stderr.contains("conflict with \"team-a\""),
        "{}",
        conflict.stderr
    );
    assert!(
        conflict.stderr.contains(".data.mode"),
        "{}",
        conflict.stderr
    );
    k.ok(&[
        "apply",
        "--server-side",
        "--field-manager=team-b",
        "--force-conflicts",
        "-f",
        &theirs,
    ])
    .await;
    assert_eq!(
        k.ok(&["get", "cm", "shared", "-o", "jsonpath={.data.mode}"])
            .await,
        "safe"
    );
    let managers = k
        .ok(&[
            "get",
            "cm",
            "shared",
            "--show-managed-fields",
            "-o",
            "jsonpath={.metadata.managedFields[*].manager}",
        ])
        .await;
    assert_eq!(managers, "team-b", "team-a lost its only field");
}

#[tokio::test]
async fn kubectl_typed_create_commands_send_protobuf_we_decode() {
    let t = cluster().await;
    let k = Kubectl::new(&t.cluster.kubeconfig());
    k.ok(&["create", "namespace", "team-a"]).await;
    k.ok(&[
        "create",
        "secret",
        "generic",
        "creds",
        "-n",
        "team-a",
        "--from-literal=api-key=s3cret",
        "--from-literal=id=wj_1",
        "--type=example.com/key",
    ])
    .await;
    k.ok(&[
        "create",
        "configmap",
        "settings",
        "-n",
        "team-a",
        "--from-literal=mode=fast",
    ])
    .await;
    k.ok(&["create", "serviceaccount", "vault-auth", "-n", "team-a"])
        .await;
    let secret: serde_json::Value = serde_json::from_str(
        &k.ok(&["get", "secret", "creds", "-n", "team-a", "-o", "json"])
            .await,
    )
    .unwrap();
    assert_eq!(secret["type"], "example.com/key");
    assert_eq!(secret["data"]["api-key"], "czNjcmV0", "base64 of s3cret");
    assert_eq!(secret["data"]["id"], "d2pfMQ==");
    assert_eq!(
        k.ok(&[
            "get",
            "cm",
            "settings",
            "-n",
            "team-a",
            "-o",
            "jsonpath={.data.mode}"
        ])
        .await,
        "fast"
    );
    let ns = k
        .ok(&[
            "get",
            "ns",
            "team-a",
            "-o",
            "jsonpath={.metadata.labels.kubernetes\\.io/metadata\\.name}",
        ])
        .await;
    assert_eq!(ns, "team-a");

    let jwt = k
        .ok(&[
            "create",
            "token",
            "vault-auth",
            "-n",
            "team-a",
            "--audience=vault",
            "--duration=15m",
        ])
        .await;
    let review = Api::<k8s_openapi::api::authentication::v1::TokenReview>::all(t.client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
            "spec": {"token": jwt.trim(), "audiences": ["vault"]}}))
            .unwrap(),
        )
        .await
        .unwrap();
    let status = review.status.unwrap();
    assert_eq!(status.authenticated, Some(true), "{:?}", status.error);
    assert_eq!(
        status.user.unwrap().username.as_deref(),
        Some("system:serviceaccount:team-a:vault-auth")
    );
}
