//! kubectl 1.32's `create <kind>` generators against `skiff master`. They send Kubernetes
//! protobuf bodies; each object must come out as it does when the same object is sent as JSON
//! (`--dry-run=client -o json` piped to `kubectl create -f -`), with the content asked for.
//! Also: `create token` gives a working service account token, and malformed protobuf is a 400.
//!
//! Addresses: 127.0.85.1-127.0.85.9 belong to this file.

mod common;

use std::process::Command;

use base64::Engine as _;
use common::master::Master;
use serde_json::{json, Value};

fn ok(master: &Master, args: &[&str]) -> String {
    ok_stdin(master, args, "")
}

fn ok_stdin(master: &Master, args: &[&str], stdin: &str) -> String {
    let (ok, stdout, stderr) = master.run(master.command("kubectl", args), stdin);
    assert!(
        ok,
        "kubectl {args:?} failed:\n{stdout}\n{stderr}\n--- master log ---\n{}",
        master.log()
    );
    stdout
}

fn get(master: &Master, kind: &str, name: &str, namespace: Option<&str>) -> Value {
    let mut args = vec!["get", kind, name, "-o", "json"];
    if let Some(namespace) = namespace {
        args.extend(["-n", namespace]);
    }
    serde_json::from_str(&ok(master, &args)).expect("kubectl prints JSON")
}

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// What the server and controllers decide for themselves (identity, times, status, a
/// deployment's revision, a service's address), and the JSON twin's name wherever the
/// server copied it (a namespace's name label), are not compared.
fn comparable(mut object: Value, name: &str, twin: &str) -> Value {
    let metadata = object["metadata"].as_object_mut().expect("metadata");
    for field in ["name", "uid", "resourceVersion", "creationTimestamp", "managedFields"] {
        metadata.remove(field);
    }
    if let Some(Value::Object(annotations)) = metadata.get_mut("annotations") {
        annotations.remove("deployment.kubernetes.io/revision");
        if annotations.is_empty() {
            metadata.remove("annotations");
        }
    }
    if let Some(Value::Object(spec)) = object.get_mut("spec") {
        spec.remove("clusterIP");
        spec.remove("clusterIPs");
    }
    object.as_object_mut().expect("an object").remove("status");
    let text = serde_json::to_string(&object).expect("JSON").replace(twin, name);
    serde_json::from_str(&text).expect("JSON")
}

/// Runs a generator (a protobuf body), sends the object it would create as JSON under the
/// name `<name>-json`, and checks that the server stored the same object both ways. Returns
/// the object created from protobuf.
fn create_both_ways(
    master: &Master,
    generator: &[&str],
    name: &str,
    namespace: Option<&str>,
) -> Value {
    let namespace_args: Vec<&str> = namespace.map(|n| vec!["-n", n]).unwrap_or_default();
    let dry_run = [generator, &namespace_args, &["--dry-run=client", "-o", "json"]].concat();
    let mut twin: Value = serde_json::from_str(&ok(master, &dry_run)).expect("kubectl JSON");
    let twin_name = format!("{name}-json");
    twin["metadata"]["name"] = json!(twin_name);
    let created = ok(master, &[generator, &namespace_args].concat());
    assert!(created.contains("created"), "{created}");
    let create_twin = [&["create", "-f", "-"][..], &namespace_args].concat();
    ok_stdin(master, &create_twin, &twin.to_string());

    let resource = resource_of(generator);
    let from_protobuf = get(master, resource, name, namespace);
    let from_json = get(master, resource, &twin_name, namespace);
    assert_eq!(
        comparable(from_protobuf.clone(), name, &twin_name),
        comparable(from_json, name, &twin_name),
        "{generator:?}: the protobuf and JSON bodies made different objects"
    );
    from_protobuf
}

/// The resource `kubectl get` takes for a generator (`create secret generic` → `secret`).
fn resource_of<'a>(generator: &[&'a str]) -> &'a str {
    match generator[1] {
        "quota" => "resourcequota",
        other => other,
    }
}

#[test]
fn generators_create_what_their_json_would() {
    let master = Master::start("127.0.85.1", &[]);
    let namespace = create_both_ways(&master, &["create", "namespace", "gen"], "gen", None);
    assert_eq!(namespace["metadata"]["name"], "gen");
    assert_eq!(namespace["status"]["phase"], "Active");
    let gen = Some("gen");

    let deployment = create_both_ways(
        &master,
        &["create", "deployment", "web", "--image=nginx:1.25", "--replicas=3", "--port=8080"],
        "web",
        gen,
    );
    assert_eq!(deployment["metadata"]["labels"], json!({"app": "web"}));
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert_eq!(deployment["spec"]["selector"], json!({"matchLabels": {"app": "web"}}));
    let template = &deployment["spec"]["template"];
    assert_eq!(template["metadata"]["labels"], json!({"app": "web"}));
    let container = &template["spec"]["containers"][0];
    assert_eq!((&container["name"], &container["image"]), (&json!("nginx"), &json!("nginx:1.25")));
    assert_eq!(container["ports"], json!([{"containerPort": 8080, "protocol": "TCP"}]));
    // A zero the client set is a value, not an unset field.
    let idle = create_both_ways(
        &master,
        &["create", "deployment", "idle", "--image=busybox", "--replicas=0"],
        "idle",
        gen,
    );
    assert_eq!(idle["spec"]["replicas"], 0);

    let service = create_both_ways(
        &master,
        &["create", "service", "clusterip", "web", "--tcp=80:8080", "--tcp=443:https"],
        "web",
        gen,
    );
    assert_eq!(service["spec"]["type"], "ClusterIP");
    assert_eq!(service["spec"]["selector"], json!({"app": "web"}));
    assert_eq!(
        service["spec"]["ports"],
        json!([
            {"name": "80-8080", "port": 80, "protocol": "TCP", "targetPort": 8080},
            {"name": "443-https", "port": 443, "protocol": "TCP", "targetPort": "https"},
        ])
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let blob_path = dir.path().join("blob");
    let blob = b"\xff\x00\x01 not UTF-8";
    std::fs::write(&blob_path, blob).expect("write blob");
    let from_file = format!("--from-file=blob={}", blob_path.display());
    let config_map = create_both_ways(
        &master,
        &[
            "create",
            "configmap",
            "settings",
            "--from-literal=a=1",
            "--from-literal=b=two",
            &from_file,
        ],
        "settings",
        gen,
    );
    assert_eq!(config_map["data"], json!({"a": "1", "b": "two"}));
    assert_eq!(config_map["binaryData"], json!({"blob": base64(blob)}));

    let secret = create_both_ways(
        &master,
        &["create", "secret", "generic", "login", "--from-literal=password=s3cr3t"],
        "login",
        gen,
    );
    assert_eq!(secret["data"], json!({"password": base64(b"s3cr3t")}));
    let printed =
        ok(&master, &["get", "secret", "login", "-n", "gen", "-o", "jsonpath={.data.password}"]);
    let decoded = base64::engine::general_purpose::STANDARD.decode(printed.trim()).expect("base64");
    assert_eq!(decoded, b"s3cr3t");
    let registry = create_both_ways(
        &master,
        &[
            "create",
            "secret",
            "docker-registry",
            "pull",
            "--docker-server=registry.example",
            "--docker-username=robot",
            "--docker-password=hunter2",
        ],
        "pull",
        gen,
    );
    assert_eq!(registry["type"], "kubernetes.io/dockerconfigjson");
    let config = registry["data"][".dockerconfigjson"].as_str().expect("config");
    let config: Value =
        serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(config).unwrap())
            .expect("docker config JSON");
    assert_eq!(config["auths"]["registry.example"]["username"], "robot");

    let account =
        create_both_ways(&master, &["create", "serviceaccount", "builder"], "builder", gen);
    assert_eq!(account["metadata"]["namespace"], "gen");

    let role = create_both_ways(
        &master,
        &["create", "role", "reader", "--verb=get,list", "--resource=pods,deployments.apps"],
        "reader",
        gen,
    );
    assert_eq!(
        role["rules"],
        json!([
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list"]},
        ])
    );
    let binding = create_both_ways(
        &master,
        &["create", "rolebinding", "read-pods", "--role=reader", "--serviceaccount=gen:builder"],
        "read-pods",
        gen,
    );
    assert_eq!(
        binding["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"})
    );
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "builder", "namespace": "gen"}])
    );

    let cluster_role = create_both_ways(
        &master,
        &["create", "clusterrole", "health", "--verb=get", "--non-resource-url=/healthz"],
        "health",
        None,
    );
    assert_eq!(cluster_role["rules"], json!([{"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]));
    let cluster_binding = create_both_ways(
        &master,
        &[
            "create",
            "clusterrolebinding",
            "health",
            "--clusterrole=health",
            "--user=alice",
            "--group=devs",
        ],
        "health",
        None,
    );
    assert_eq!(
        cluster_binding["subjects"],
        json!([
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"},
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "devs"},
        ])
    );
    assert_eq!(cluster_binding["roleRef"]["kind"], "ClusterRole");

    let quota = create_both_ways(
        &master,
        &["create", "quota", "small", "--hard=pods=10,requests.cpu=2,requests.memory=1Gi"],
        "small",
        gen,
    );
    assert_eq!(
        quota["spec"]["hard"],
        json!({"pods": "10", "requests.cpu": "2", "requests.memory": "1Gi"})
    );
}

/// The claims of a service account token (a JWT).
fn jwt_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT has a payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).expect("base64");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

#[test]
fn created_token_acts_as_its_service_account() {
    let master = Master::start("127.0.85.2", &[]);
    ok(&master, &["create", "namespace", "build"]);
    ok(&master, &["create", "serviceaccount", "builder", "-n", "build"]);
    ok(
        &master,
        &["create", "role", "pod-reader", "--verb=get,list", "--resource=pods", "-n", "build"],
    );
    ok(
        &master,
        &[
            "create",
            "rolebinding",
            "builder-reads-pods",
            "--role=pod-reader",
            "--serviceaccount=build:builder",
            "-n",
            "build",
        ],
    );
    // The TokenRequest's spec travels as protobuf: audiences and duration reach the token.
    let elsewhere = ok(
        &master,
        &[
            "create",
            "token",
            "builder",
            "-n",
            "build",
            "--audience=https://ci.example",
            "--duration=10m",
        ],
    );
    let claims = jwt_claims(elsewhere.trim());
    assert_eq!(claims["sub"], "system:serviceaccount:build:builder");
    assert_eq!(claims["aud"], json!(["https://ci.example"]));
    let lifetime = claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat");
    assert_eq!(lifetime, 600);

    let token = ok(&master, &["create", "token", "builder", "-n", "build"]);
    ok(&master, &["config", "set-credentials", "builder", &format!("--token={}", token.trim())]);
    ok(&master, &["config", "set-context", "builder", "--cluster=skiff", "--user=builder"]);
    // The Role and RoleBinding made from protobuf grant what they say, once the
    // authorizer's cache has them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let list = master.command("kubectl", &["--context=builder", "get", "pods", "-n", "build"]);
        let (listed, _, stderr) = master.run(list, "");
        if listed {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the binding never took effect: {stderr}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let secrets =
        master.command("kubectl", &["--context=builder", "get", "secrets", "-n", "build"]);
    let (listed, _, stderr) = master.run(secrets, "");
    assert!(!listed);
    assert!(
        stderr.contains(
            "User \"system:serviceaccount:build:builder\" cannot list resource \"secrets\""
        ),
        "{stderr}"
    );
}

/// A length-delimited protobuf field.
fn proto_field(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag << 3 | 2];
    let mut len = value.len();
    while len >= 0x80 {
        out.push((len as u8) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(value);
    out
}

/// `k8s\0` and a `runtime.Unknown` carrying `raw` as `api_version`/`kind`.
fn protobuf_body(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let type_meta = [proto_field(1, api_version.as_bytes()), proto_field(2, kind.as_bytes())];
    [b"k8s\0".to_vec(), proto_field(1, &type_meta.concat()), proto_field(2, raw)].concat()
}

/// POSTs a protobuf body with curl; returns the HTTP status and the JSON answer.
fn post_protobuf(master: &Master, ip: &str, token: &str, body: &[u8]) -> (u16, Value) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("body");
    std::fs::write(&file, body).expect("write body");
    let ca = master.kubeconfig.parent().expect("data dir").join("pki/ca.crt");
    let output = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(&ca)
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args(["-H", "Content-Type: application/vnd.kubernetes.protobuf"])
        .args(["-H", "Accept: application/vnd.kubernetes.protobuf, application/json"])
        .arg("--data-binary")
        .arg(format!("@{}", file.display()))
        .args(["-w", "\n%{http_code}"])
        .arg(format!("https://{ip}:6443/api/v1/namespaces/default/configmaps"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (answer, code) = text.rsplit_once('\n').expect("curl prints the status last");
    let answer = serde_json::from_str(answer).unwrap_or_else(|_| json!({"raw": answer}));
    (code.parse().expect("an HTTP status"), answer)
}

#[test]
fn malformed_protobuf_bodies_are_bad_requests() {
    let ip = "127.0.85.3";
    let master = Master::start(ip, &[]);
    ok(&master, &["create", "serviceaccount", "uploader"]);
    ok(
        &master,
        &[
            "create",
            "clusterrolebinding",
            "uploader-admin",
            "--clusterrole=cluster-admin",
            "--serviceaccount=default:uploader",
        ],
    );
    let token = ok(&master, &["create", "token", "uploader"]).trim().to_string();

    // A ConfigMap encoded by hand: metadata {name}, data {greeting: hello}.
    let metadata = proto_field(1, &proto_field(1, b"by-hand"));
    let entry = [proto_field(1, b"greeting"), proto_field(2, b"hello")].concat();
    let config_map = [metadata, proto_field(2, &entry)].concat();
    let body = protobuf_body("v1", "ConfigMap", &config_map);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (code, answer) = post_protobuf(&master, ip, &token, &body);
        if code == 201 {
            assert_eq!(answer["data"], json!({"greeting": "hello"}), "{answer}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never created: {code} {answer}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let stored = get(&master, "configmap", "by-hand", Some("default"));
    assert_eq!(stored["data"], json!({"greeting": "hello"}));

    let refused = |body: &[u8], expected: &str| {
        let (code, status) = post_protobuf(&master, ip, &token, body);
        assert_eq!(
            (code, &status["kind"], &status["reason"]),
            (400, &json!("Status"), &json!("BadRequest"))
        );
        let message = status["message"].as_str().expect("a message");
        assert!(message.contains(expected), "{message:?} does not say {expected:?}");
    };
    refused(&body[..body.len() - 3], "the protobuf request body is malformed at envelope");
    let bad_name = [proto_field(1, &proto_field(1, b"\xff\xfe")), proto_field(2, &[])].concat();
    refused(
        &protobuf_body("v1", "ConfigMap", &bad_name),
        "at metadata.name: a string is not valid UTF-8",
    );
    refused(
        &protobuf_body("batch/v1", "Job", &[]),
        "no kind \"Job\" is registered for version \"batch/v1\"",
    );
    refused(br#"{"kind": "ConfigMap"}"#, "does not start with the Kubernetes prefix");
}
