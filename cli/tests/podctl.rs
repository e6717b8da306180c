//! `podctl` against `skiff master`, side by side with the real kubectl (1.32): the same
//! commands must print the same thing (AGE cells masked), and objects either tool applies
//! must look applied to the other.

mod common;

use std::io::BufRead;
use std::process::Child;
use std::sync::mpsc;
use std::time::Duration;

use common::master::{Master, Run};

/// kubectl and podctl against a master, side by side.
trait Tools {
    fn kubectl(&self, args: &[&str]) -> Run;
    fn podctl(&self, args: &[&str]) -> Run;
    fn podctl_stdin(&self, args: &[&str], stdin: &str) -> Run;
    fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Run;
    fn ok(&self, args: &[&str]) -> String;
    fn same(&self, args: &[&str]) -> String;
}

impl Tools for Master {
    fn kubectl(&self, args: &[&str]) -> Run {
        self.run(self.command("kubectl", args), "")
    }

    fn podctl(&self, args: &[&str]) -> Run {
        self.run(self.command(env!("CARGO_BIN_EXE_podctl"), args), "")
    }

    fn podctl_stdin(&self, args: &[&str], stdin: &str) -> Run {
        self.run(self.command(env!("CARGO_BIN_EXE_podctl"), args), stdin)
    }

    fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Run {
        self.run(self.command("kubectl", args), stdin)
    }

    /// podctl that must succeed; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.podctl(args);
        assert!(ok, "podctl {args:?} failed:\n{stdout}\n{stderr}\n--- log ---\n{}", self.log());
        stdout
    }

    /// Runs the same command through both tools and asserts the same exit status, stdout
    /// and stderr (AGE cells masked). Ages may tick between the two runs, so a mismatch is
    /// retried a few times before it counts.
    fn same(&self, args: &[&str]) -> String {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let expected = self.kubectl(args);
            let actual = self.podctl(args);
            let expected = (expected.0, mask_ages(&expected.1), expected.2);
            let actual = (actual.0, mask_ages(&actual.1), actual.2);
            if expected == actual {
                return actual.1;
            }
            assert!(
                attempts < 3,
                "{args:?}\n--- kubectl ({}) ---\n{}{}\n--- podctl ({}) ---\n{}{}",
                expected.0,
                expected.1,
                expected.2,
                actual.0,
                actual.1,
                actual.2
            );
        }
    }
}

/// Replaces age cells (`0s`, `5m`, `2d3h`) with `?` of the same width, so alignment is still
/// compared.
fn mask_ages(text: &str) -> String {
    let ages = regex::Regex::new(r"\b(\d+[smhdy])+\b").expect("valid regex");
    ages.replace_all(text, |c: &regex::Captures| "?".repeat(c[0].len())).into_owned()
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
        ports: [{containerPort: 80}]
        env:
        - {name: A, value: '1'}
";

fn pod(name: &str, labels: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{{labels}}}}}\n\
         spec:\n  containers: [{{name: c, image: busybox}}]\n"
    )
}

#[test]
fn podctl_get_prints_what_kubectl_prints() {
    let master = Master::start("127.0.82.1", &[]);
    let manifests = format!("{DEPLOYMENT}---\n{}---\n{}", pod("p1", "app: db"), pod("p2", ""));
    let (ok, _, stderr) = master.kubectl_stdin(&["apply", "-f", "-"], &manifests);
    assert!(ok, "{stderr}");
    // Let the controllers and the scheduler settle first (the Deployment's two pods exist and
    // every pod is marked unschedulable: there are no nodes), so both clients see one state.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let path = "jsonpath={range .items[*]}\
            {.status.conditions[?(@.type==\"PodScheduled\")].status}\n{end}";
        let (_, out, _) = master.kubectl(&["get", "pods", "-o", path]);
        if out.lines().filter(|l| *l == "False").count() == 4 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "pods never settled: {out}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    for args in [
        &["get", "pods"][..],
        &["get", "pods", "-o", "wide"],
        &["get", "pods", "-A"],
        &["get", "pods", "-A", "-o", "wide"],
        &["get", "pods", "-o", "name"],
        &["get", "pods", "-l", "app=db"],
        &["get", "pods", "-l", "app=nothing"],
        &["get", "pods", "--field-selector", "metadata.name=p2"],
        &["get", "pods", "--show-labels"],
        &["get", "pod", "p1", "p2"],
        &["get", "pod/p1", "deploy/web"],
        &["get", "po,deploy"],
        &["get", "all"],
        &["get", "deploy", "-o", "wide"],
        &["get", "deployment.apps", "web"],
        &["get", "deployments.v1.apps", "-n", "kube-system"],
        &["get", "ns"],
        &["get", "nodes"],
        &["get", "clusterroles"],
        &["get", "pod", "p1", "nope"],
        &["get", "foo"],
        &["get", "pod", "p1", "-o", "json"],
        &["get", "pods", "-o", "json"],
        &["api-resources"],
        &["api-resources", "--namespaced=false"],
        &["config", "view"],
        &["config", "get-contexts"],
        &["config", "current-context"],
        &["explain", "pods"],
        &["explain", "deploy.spec"],
        &["explain", "pods.spec.containers.image"],
        &["explain", "pods.spec.nope"],
    ] {
        master.same(args);
    }
    // The AGE column really is there and masked, and podctl prints Tables, not NAME/AGE.
    let pods = master.same(&["get", "pods", "-o", "wide"]);
    let header: Vec<&str> = pods.lines().next().unwrap_or("").split_whitespace().collect();
    assert_eq!(header[..6], ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP"], "{pods}");

    // YAML differs from kubectl's in quoting only: both parse to the same objects.
    for args in [&["get", "deploy", "web", "-o", "yaml"][..], &["get", "pods", "-o", "yaml"]] {
        let parse = |text: &str| -> serde_json::Value {
            serde_yaml::from_str(text).unwrap_or_else(|e| panic!("{e}:\n{text}"))
        };
        assert_eq!(parse(&master.kubectl(args).1), parse(&master.ok(args)), "{args:?}");
    }
}

const STRATEGIC_PATCH: &str =
    r#"{"spec":{"template":{"spec":{"containers":[{"name":"nginx","image":"nginx:1.27"}]}}}}"#;
const MERGE_PATCH: &str = r#"{"metadata":{"annotations":{"a":"b"}}}"#;
const JSON_PATCH: &str = r#"[{"op":"replace","path":"/spec/replicas","value":4}]"#;

/// The same sequence of changes through each tool, on objects named after the tool, must
/// print the same transcript.
fn transcript(master: &Master, tool: &str, name: &str) -> String {
    let run = |args: &[&str], stdin: &str| -> String {
        let args: Vec<String> = args.iter().map(|a| a.replace("NAME", name)).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let stdin = stdin.replace("name: web", &format!("name: {name}"));
        let (ok, stdout, stderr) = match tool {
            "kubectl" => master.kubectl_stdin(&args, &stdin),
            _ => master.podctl_stdin(&args, &stdin),
        };
        // kubectl's warnings name kubectl; podctl's name podctl.
        let stderr = stderr.replace("podctl", "kubectl");
        format!("$ {args:?} -> {ok}\n{stdout}{stderr}").replace(name, "NAME")
    };
    let changed =
        DEPLOYMENT.replace("nginx:1.25", "nginx:1.26").replace("value: '1'", "value: '2'");
    let pod = pod("web", "app: db");
    [
        run(&["apply", "-f", "-"], DEPLOYMENT),
        run(&["apply", "-f", "-"], DEPLOYMENT),
        run(&["apply", "-f", "-"], &changed),
        run(&["create", "-f", "-"], &pod),
        run(&["create", "-f", "-"], &pod),
        run(&["apply", "-f", "-"], &pod),
        run(&["label", "pod", "NAME", "tier=backend"], ""),
        run(&["label", "pod", "NAME", "tier=frontend"], ""),
        run(&["label", "pod", "NAME", "tier=frontend", "--overwrite"], ""),
        run(&["label", "pod/NAME", "tier-"], ""),
        run(&["label", "pod", "NAME", "tier-"], ""),
        run(&["annotate", "pod", "NAME", "note=hello"], ""),
        run(&["annotate", "pod", "NAME", "note=again"], ""),
        run(&["scale", "deploy", "NAME", "--replicas=3"], ""),
        run(&["scale", "deploy", "missing", "--replicas=3"], ""),
        run(&["patch", "deploy", "NAME", "-p", STRATEGIC_PATCH], ""),
        run(&["patch", "deploy", "NAME", "--type", "merge", "-p", MERGE_PATCH], ""),
        run(&["patch", "deploy", "NAME", "--type", "json", "-p", JSON_PATCH], ""),
        run(&["patch", "deploy", "missing", "-p", "{}"], ""),
        run(&["delete", "pod", "NAME"], ""),
        run(&["delete", "pod", "NAME"], ""),
        run(&["delete", "pod", "NAME", "--ignore-not-found"], ""),
    ]
    .concat()
}

#[test]
fn podctl_changes_objects_as_kubectl_does() {
    let master = Master::start("127.0.82.2", &[]);
    let expected = transcript(&master, "kubectl", "kweb");
    let actual = transcript(&master, "podctl", "pweb");
    assert_eq!(actual, expected);
    assert!(actual.contains("deployment.apps/NAME created\n"), "{actual}");
    assert!(actual.contains("deployment.apps/NAME unchanged\n"), "{actual}");
    assert!(actual.contains("deployment.apps/NAME configured\n"), "{actual}");
    assert!(actual.contains("deployment.apps/NAME scaled\n"), "{actual}");
    assert!(actual.contains("pod \"NAME\" deleted\n"), "{actual}");

    // Both deployments ended in the same state: the strategic merges kept the env.
    let spec = |name: &str| -> serde_json::Value {
        let json = master.ok(&["get", "deploy", name, "-o", "json"]);
        let mut object: serde_json::Value = serde_json::from_str(&json).expect("JSON");
        let applied = "kubectl.kubernetes.io/last-applied-configuration";
        let annotation = object["metadata"]["annotations"][applied].take();
        let annotation = annotation.as_str().unwrap_or("").replace(name, "NAME");
        serde_json::json!([object["spec"].take(), annotation, object["metadata"]["generation"]])
    };
    let podctl_state = spec("pweb");
    assert_eq!(podctl_state, spec("kweb"));
    let container = &podctl_state[0]["template"]["spec"]["containers"][0];
    assert_eq!(
        (&container["image"], &container["env"][0]["value"]),
        (&"nginx:1.27".into(), &"2".into())
    );

    // An object applied by one tool is unchanged to the other.
    let (ok, stdout, _) = master.kubectl_stdin(
        &["apply", "-f", "-"],
        &DEPLOYMENT.replace("name: web", "name: pweb").replace("nginx:1.25", "nginx:1.26"),
    );
    assert!(ok);
    assert_eq!(stdout, "deployment.apps/pweb configured\n", "the podctl patch changed the image");
    let (ok, stdout, _) = master.podctl_stdin(
        &["apply", "-f", "-"],
        &DEPLOYMENT.replace("name: web", "name: pweb").replace("nginx:1.25", "nginx:1.26"),
    );
    assert!(ok);
    assert_eq!(stdout, "deployment.apps/pweb unchanged\n");

    // describe: the same as kubectl for a pod and a deployment, kubectl's sections.
    master.podctl_stdin(&["create", "-f", "-"], &pod("d1", "app: db, tier: x"));
    let described = master.same(&["describe", "pod", "d1"]);
    for line in ["Name:         d1\n", "Labels:       app=db\n              tier=x\n", "Events:"] {
        assert!(described.contains(line), "{line:?} in\n{described}");
    }
    let described = master.same(&["describe", "deploy", "kweb"]);
    assert!(described.contains("Pod Template:\n  Labels:  app=web\n"), "{described}");
    let described = master.ok(&["describe", "clusterrole", "view"]);
    assert!(described.starts_with("Name:         view\n"), "{described}");
    assert!(described.contains("Rules:\n") && described.contains("Events:"), "{described}");

    // edit: an editor that changes nothing cancels; one that changes the image replaces it.
    let mut edit = master.command(env!("CARGO_BIN_EXE_podctl"), &["edit", "pod", "d1"]);
    edit.env("EDITOR", "true");
    let (ok, stdout, stderr) = master.run(edit, "");
    assert!(ok && stdout.is_empty(), "{stdout}{stderr}");
    assert_eq!(stderr, "Edit cancelled, no changes made.\n");
    let mut edit = master.command(env!("CARGO_BIN_EXE_podctl"), &["edit", "pod/d1"]);
    edit.env("EDITOR", "sed -i s/busybox/alpine/");
    let (ok, stdout, stderr) = master.run(edit, "");
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "pod/d1 edited\n");
    let json = master.ok(&["get", "pod", "d1", "-o", "json"]);
    let object: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(object["spec"]["containers"][0]["image"], "alpine");
}

/// Starts a watching CLI; its stdout lines arrive on the channel.
fn watch(master: &Master, program: &str) -> (Child, mpsc::Receiver<String>) {
    let mut child = master.command(program, &["get", "pods", "-w"]).spawn().expect("watch");
    let stdout = child.stdout.take().expect("stdout");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    (child, receiver)
}

fn next_lines(receiver: &mpsc::Receiver<String>, count: usize) -> Vec<String> {
    (0..count)
        .map(|_| receiver.recv_timeout(Duration::from_secs(20)).expect("a watched line"))
        .collect()
}

#[test]
fn podctl_watch_prints_changes_as_kubectl_does() {
    let master = Master::start("127.0.82.3", &[]);
    master.podctl_stdin(&["create", "-f", "-"], &pod("p1", ""));
    // The scheduler marks p1 unschedulable (there are no nodes): let that happen before the
    // watches start, or one of them may see it as a change and the other in its first list.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let path = "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].status}";
        if master.kubectl(&["get", "pod", "p1", "-o", path]).1.trim() == "False" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "p1 never marked unschedulable");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (mut kubectl, kubectl_lines) = watch(&master, "kubectl");
    let (mut podctl, podctl_lines) = watch(&master, env!("CARGO_BIN_EXE_podctl"));
    let initial = (next_lines(&kubectl_lines, 2), next_lines(&podctl_lines, 2));
    assert_eq!(initial.1[1].split_whitespace().next(), Some("p1"));
    // A longer name widens the remembered columns; a label change is a MODIFIED row.
    master.podctl_stdin(&["create", "-f", "-"], &pod("a-much-longer-pod-name", ""));
    let added = (next_lines(&kubectl_lines, 1), next_lines(&podctl_lines, 1));
    master.ok(&["label", "pod", "p1", "seen=yes"]);
    let modified = (next_lines(&kubectl_lines, 1), next_lines(&podctl_lines, 1));
    for (expected, actual) in [initial, added, modified] {
        let mask = |lines: Vec<String>| mask_ages(&lines.join("\n"));
        assert_eq!(mask(actual), mask(expected));
    }
    let _ = kubectl.kill();
    let _ = podctl.kill();
    let _ = kubectl.wait();
    let _ = podctl.wait();

    // use-context writes the kubeconfig kubectl reads.
    master.ok(&["config", "current-context"]);
    let (ok, _, stderr) =
        master.kubectl(&["config", "set-context", "other", "--cluster=skiff", "--namespace=x"]);
    assert!(ok, "{stderr}");
    assert_eq!(master.ok(&["config", "use-context", "other"]), "Switched to context \"other\".\n");
    assert_eq!(master.kubectl(&["config", "current-context"]).1, "other\n");
    master.same(&["config", "get-contexts"]);
    let (ok, _, stderr) = master.podctl(&["config", "use-context", "missing"]);
    assert!(!ok);
    assert_eq!(stderr, "error: no context exists with the name: \"missing\"\n");
}
