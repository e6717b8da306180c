//! Protobuf bodies built field by field (tag numbers from Kubernetes' `generated.proto`),
//! decoded and compared with the JSON kube-apiserver would read from them.

use serde_json::{json, Value};

use super::{decode, schema, ProtobufError};
use crate::resources::RESOURCES;

/// A protobuf message under construction.
#[derive(Default, Clone)]
struct Proto(Vec<u8>);

fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

impl Proto {
    fn key(mut self, tag: u32, wire_type: u8) -> Self {
        push_varint(&mut self.0, u64::from(tag) << 3 | u64::from(wire_type));
        self
    }

    fn int(self, tag: u32, value: i64) -> Self {
        let mut this = self.key(tag, 0);
        push_varint(&mut this.0, value as u64);
        this
    }

    fn bytes(self, tag: u32, value: &[u8]) -> Self {
        let mut this = self.key(tag, 2);
        push_varint(&mut this.0, value.len() as u64);
        this.0.extend_from_slice(value);
        this
    }

    fn text(self, tag: u32, value: &str) -> Self {
        self.bytes(tag, value.as_bytes())
    }

    fn message(self, tag: u32, value: Proto) -> Self {
        self.bytes(tag, &value.0)
    }

    /// A `map<string, string>` entry.
    fn entry(self, tag: u32, key: &str, value: &str) -> Self {
        self.message(tag, Proto::default().text(1, key).text(2, value))
    }

    fn entry_message(self, tag: u32, key: &str, value: Proto) -> Self {
        self.message(tag, Proto::default().text(1, key).message(2, value))
    }
}

/// The body kubectl sends: prefix, then `runtime.Unknown` {TypeMeta, raw}.
fn body(api_version: &str, kind: &str, object: Proto) -> Vec<u8> {
    let type_meta = Proto::default().text(1, api_version).text(2, kind);
    let unknown = Proto::default().message(1, type_meta).message(2, object);
    [&b"k8s\0"[..], &unknown.0].concat()
}

fn check(api_version: &str, kind: &str, object: Proto, expected: Value) {
    let decoded = decode(&body(api_version, kind, object)).expect("decodes");
    assert_eq!(decoded, expected, "\n{decoded:#}\n!=\n{expected:#}");
}

fn malformed(bytes: &[u8]) -> (String, String) {
    match decode(bytes) {
        Err(ProtobufError::Malformed { path, message }) => (path, message),
        other => panic!("expected a malformed-body error, got {other:?}"),
    }
}

/// `ObjectMeta` as Go writes it: every plain field present, empty ones included, and an empty
/// `creationTimestamp` (Go's zero time).
fn metadata(name: &str) -> Proto {
    Proto::default()
        .text(1, name)
        .text(2, "")
        .text(3, "")
        .text(5, "")
        .text(6, "")
        .int(7, 0)
        .message(8, Proto::default())
}

fn quantity(text: &str) -> Proto {
    Proto::default().text(1, text)
}

/// An `EmptyDirVolumeSource` with only `sizeLimit`.
fn quantity_field(text: &str) -> Proto {
    Proto::default().message(2, quantity(text))
}

#[test]
fn deployment_as_kubectl_create_sends_it() {
    // Zeros: `replicas` may be a pointer set to 0 (kept); `minReadySeconds`, `generation` and
    // `hostPort` are value fields whose zero means unset (left out), as are empty strings.
    let container = Proto::default()
        .text(1, "web")
        .text(2, "nginx:1.25")
        .text(5, "")
        .message(6, Proto::default().text(1, "").int(2, 0).int(3, 8080).text(4, "TCP"))
        .message(8, Proto::default().entry_message(1, "cpu", quantity("500m")));
    let template = Proto::default()
        .message(1, metadata("").entry(11, "app", "web"))
        .message(2, Proto::default().message(2, container));
    let spec = Proto::default()
        .int(1, 0)
        .message(2, Proto::default().entry(1, "app", "web"))
        .message(3, template)
        .message(4, Proto::default())
        .int(5, 0);
    let deployment = Proto::default()
        .message(1, metadata("web").entry(11, "app", "web").entry(11, "tier", "front"))
        .message(2, spec)
        .text(99, "a field from a newer Kubernetes");
    check(
        "apps/v1",
        "Deployment",
        deployment,
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{
                        "name": "web",
                        "image": "nginx:1.25",
                        "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                        "resources": {"limits": {"cpu": "500m"}},
                    }]},
                },
            },
        }),
    );
}

#[test]
fn secret_bytes_are_base64_and_required_strings_stay() {
    let secret = Proto::default()
        .message(1, metadata("token"))
        .message(2, Proto::default().text(1, "password").bytes(2, b"s3cr\xffet"))
        .message(2, Proto::default().text(1, "empty"))
        .text(3, "Opaque")
        .int(5, 0);
    check(
        "v1",
        "Secret",
        secret,
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "token"},
            "data": {"password": "czNjcv9ldA==", "empty": ""},
            "type": "Opaque",
            "immutable": false,
        }),
    );
    // Container.name is required: an empty one is kept for validation to report.
    let pod = Proto::default()
        .message(2, Proto::default().message(2, Proto::default().text(1, "").text(2, "busybox")));
    check(
        "v1",
        "Pod",
        pod,
        json!({"apiVersion": "v1", "kind": "Pod",
            "spec": {"containers": [{"name": "", "image": "busybox"}]}}),
    );
}

#[test]
fn service_ports_and_int_or_string() {
    let port = |name: &str, target: Proto| {
        Proto::default().text(1, name).text(2, "TCP").int(3, 80).message(4, target).int(5, 0)
    };
    let spec = Proto::default()
        .message(1, port("http", Proto::default().int(1, 0).int(2, 8080).text(3, "")))
        .message(1, port("named", Proto::default().int(1, 1).int(2, 0).text(3, "web")))
        .entry(2, "app", "web")
        .text(3, "10.0.0.7")
        .text(18, "10.0.0.7")
        .text(4, "ClusterIP")
        .text(5, "192.0.2.1")
        .int(12, 0);
    check(
        "v1",
        "Service",
        Proto::default().message(1, metadata("web")).message(2, spec),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {
                "ports": [
                    {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080},
                    {"name": "named", "protocol": "TCP", "port": 80, "targetPort": "web"},
                ],
                "selector": {"app": "web"},
                "clusterIP": "10.0.0.7",
                "clusterIPs": ["10.0.0.7"],
                "type": "ClusterIP",
                "externalIPs": ["192.0.2.1"],
            },
        }),
    );
}

#[test]
fn times_micro_times_and_embedded_json() {
    // 2026-01-02T03:04:05Z; nanoseconds are dropped from Time, kept to the microsecond in
    // MicroTime.
    let moment = || Proto::default().int(1, 1_767_323_045).int(2, 123_456_789);
    let lease = Proto::default()
        .message(1, Proto::default().text(1, "node-1").message(8, moment()))
        .message(
            2,
            Proto::default().text(1, "node-1").int(2, 40).message(3, moment()).message(4, moment()),
        );
    check(
        "coordination.k8s.io/v1",
        "Lease",
        lease,
        json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "node-1", "creationTimestamp": "2026-01-02T03:04:05Z"},
            "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40,
                "acquireTime": "2026-01-02T03:04:05.123456Z",
                "renewTime": "2026-01-02T03:04:05.123456Z"},
        }),
    );
    let managed = Proto::default()
        .text(1, "kubectl")
        .text(2, "Update")
        .text(6, "FieldsV1")
        .message(7, Proto::default().text(1, r#"{"f:data":{}}"#));
    let revision = Proto::default()
        .message(1, Proto::default().text(1, "web-1").message(17, managed))
        .message(2, Proto::default().text(1, r#"{"spec":{"replicas":2}}"#))
        .int(3, 1);
    check(
        "apps/v1",
        "ControllerRevision",
        revision,
        json!({
            "apiVersion": "apps/v1", "kind": "ControllerRevision",
            "metadata": {"name": "web-1", "managedFields": [{"manager": "kubectl",
                "operation": "Update", "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {}}}]},
            "data": {"spec": {"replicas": 2}},
            "revision": 1,
        }),
    );
}

#[test]
fn negative_numbers_packed_lists_and_merged_messages() {
    let mut packed = Vec::new();
    for group in [1000_u64, 2000] {
        super::tests::push_varint(&mut packed, group);
    }
    let security = Proto::default().int(2, 0).bytes(4, &packed).int(4, 3000);
    // Volume inlines VolumeSource, ConfigMapVolumeSource inlines LocalObjectReference.
    let config_map = Proto::default().message(1, Proto::default().text(1, "settings"));
    let volume = |name: &str, source: Proto| Proto::default().text(1, name).message(2, source);
    let spec = Proto::default()
        .int(4, -1)
        .message(14, security)
        .message(1, volume("config", Proto::default().message(19, config_map)))
        .message(1, volume("scratch", Proto::default().message(2, quantity_field("1Gi"))))
        .message(2, Proto::default().text(1, "a").text(2, "busybox"));
    // metadata in two pieces: protobuf merges them.
    let pod = Proto::default()
        .message(1, Proto::default().text(1, "p").entry(11, "a", "1"))
        .message(2, spec)
        .message(1, Proto::default().text(3, "dev").entry(11, "b", "2"));
    check(
        "v1",
        "Pod",
        pod,
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "dev", "labels": {"a": "1", "b": "2"}},
            "spec": {
                "terminationGracePeriodSeconds": -1,
                "securityContext": {"runAsUser": 0, "supplementalGroups": [1000, 2000, 3000]},
                "volumes": [
                    {"name": "config", "configMap": {"name": "settings"}},
                    {"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}},
                ],
                "containers": [{"name": "a", "image": "busybox"}],
            },
        }),
    );
}

#[test]
fn subresource_and_delete_bodies() {
    let token_request = Proto::default()
        .message(1, Proto::default().text(1, "builder"))
        .message(2, Proto::default().text(1, "https://kubernetes.default.svc").int(4, 600));
    check(
        "authentication.k8s.io/v1",
        "TokenRequest",
        token_request,
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "metadata": {"name": "builder"},
            "spec": {"audiences": ["https://kubernetes.default.svc"], "expirationSeconds": 600}}),
    );
    // DeleteOptions is registered in every group version.
    for api_version in ["v1", "apps/v1", "meta.k8s.io/v1"] {
        let options = Proto::default().int(1, 0).text(4, "Foreground");
        check(
            api_version,
            "DeleteOptions",
            options,
            json!({"apiVersion": api_version, "kind": "DeleteOptions",
                "gracePeriodSeconds": 0, "propagationPolicy": "Foreground"}),
        );
    }
}

#[test]
fn malformed_bodies_are_named() {
    assert_eq!(decode(b"{\"kind\": \"Pod\"}"), Err(ProtobufError::Prefix));
    let truncated = body("v1", "Pod", Proto::default().message(1, Proto::default().text(1, "p")));
    let (path, message) = malformed(&truncated[..truncated.len() - 1]);
    assert_eq!(path, "envelope");
    assert!(message.contains("runs past the end"), "{message}");

    let wrong_type = Proto::default().message(2, Proto::default().text(1, "three"));
    let (path, message) = malformed(&body("apps/v1", "Deployment", wrong_type));
    assert_eq!(path, "spec.replicas");
    assert!(message.contains("wire type length-delimited where varint"), "{message}");

    let bad_container = Proto::default().message(
        2,
        Proto::default()
            .message(2, Proto::default().text(1, "ok"))
            .message(2, Proto::default().bytes(1, b"\xff")),
    );
    let (path, message) = malformed(&body("v1", "Pod", bad_container));
    assert_eq!(path, "spec.containers[1].name");
    assert!(message.contains("UTF-8"), "{message}");

    let bad_time =
        Proto::default().message(1, Proto::default().message(8, Proto::default().int(1, i64::MAX)));
    let (path, message) = malformed(&body("v1", "ConfigMap", bad_time));
    assert_eq!(path, "metadata.creationTimestamp");
    assert!(message.contains("outside years"), "{message}");

    let bad_json = Proto::default().message(2, Proto::default().text(1, "{not json"));
    let (path, _) = malformed(&body("apps/v1", "ControllerRevision", bad_json));
    assert_eq!(path, "data");
}

#[test]
fn kinds_not_served_and_other_encodings_are_refused() {
    assert_eq!(
        decode(&body("batch/v1", "Job", Proto::default())),
        Err(ProtobufError::NotServed { api_version: "batch/v1".into(), kind: "Job".into() })
    );
    assert!(matches!(
        decode(&body("apps/v1", "Pod", Proto::default())),
        Err(ProtobufError::NotServed { .. })
    ));
    let type_meta = Proto::default().text(1, "v1").text(2, "Pod");
    let gzipped = Proto::default().message(1, type_meta).bytes(2, b"").text(3, "gzip");
    assert_eq!(
        decode(&[&b"k8s\0"[..], &gzipped.0].concat()),
        Err(ProtobufError::ContentEncoding("gzip".into()))
    );
}

#[test]
fn every_served_kind_has_a_schema() {
    for resource in RESOURCES {
        let api_version = resource.api_version();
        let found = schema::ROOTS
            .iter()
            .any(|root| root.kind == resource.kind && root.api_version == Some(&api_version));
        assert!(found, "no protobuf schema for {api_version} {}", resource.kind);
    }
    for (api_version, kind) in [
        ("v1", "Binding"),
        ("autoscaling/v1", "Scale"),
        ("authentication.k8s.io/v1", "TokenRequest"),
    ] {
        assert!(schema::ROOTS.iter().any(|r| r.kind == kind && r.api_version == Some(api_version)));
    }
}

#[test]
fn tables_are_sorted_by_tag_with_unique_json_names() {
    fn walk(message: &'static super::Message, seen: &mut Vec<&'static str>) {
        if seen.contains(&message.name) {
            return;
        }
        seen.push(message.name);
        let tags: Vec<u32> = message.fields.iter().map(|f| f.tag).collect();
        assert!(tags.windows(2).all(|w| w[0] < w[1]), "{} tags unsorted", message.name);
        let mut names = Vec::new();
        json_names(message, &mut names);
        for (i, name) in names.iter().enumerate() {
            assert!(!names[i + 1..].contains(name), "{}.{name} twice", message.name);
        }
        for field in message.fields {
            if let super::Kind::Msg(inner) = field.kind {
                walk(inner, seen);
            }
        }
    }
    /// The JSON names a message writes, its inline messages' included.
    fn json_names(message: &'static super::Message, names: &mut Vec<&'static str>) {
        for field in message.fields {
            match (&field.shape, &field.kind) {
                (super::Shape::Inline, super::Kind::Msg(inner)) => json_names(inner, names),
                _ => names.push(field.json),
            }
        }
    }
    let mut seen = Vec::new();
    for root in schema::ROOTS {
        walk(root.message, &mut seen);
    }
    assert!(seen.len() > 100, "only {} messages", seen.len());
}
