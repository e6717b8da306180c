//! The printers against output captured from etcdctl 3.4.23 talking to etcd 3.4.23.

use store::proto::etcdserverpb::{Member, ResponseOp};

use super::*;

const CLUSTER_ID: u64 = 324952591200643719;
const MEMBER_ID: u64 = 3319814642761637952;
const HEADER_JSON: &str =
    r#""header":{"cluster_id":324952591200643719,"member_id":3319814642761637952,"#;

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader { cluster_id: CLUSTER_ID, member_id: MEMBER_ID, revision, raft_term: 2 })
}

/// A sub-response header inside a txn: etcd fills in only the revision.
fn bare_header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader { revision, ..ResponseHeader::default() })
}

fn kv(key: &str, create: i64, modified: i64, version: i64, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        create_revision: create,
        mod_revision: modified,
        version,
        value: value.into(),
        lease: 0,
    }
}

fn printer(format: Format) -> Printer {
    Printer { format, hex: false }
}

/// Compares what a printer wrote to stdout (or its failure) with etcdctl's.
fn check(actual: Result<Output, Failure>, expected: &str) {
    let rendered = match actual {
        Ok(output) => {
            assert!(output.stderr.is_empty(), "unexpected stderr");
            String::from_utf8_lossy(&output.stdout).into_owned()
        }
        Err(failure) => format!("{:?}: {}", failure.status, failure.message),
    };
    assert_eq!(rendered, expected);
}

fn get_foo() -> RangeResponse {
    RangeResponse {
        header: header(6),
        kvs: vec![kv("foo", 2, 3, 2, "bar2")],
        more: false,
        count: 1,
    }
}

#[test]
fn get() {
    check(printer(Format::Simple).get(&get_foo(), false), "foo\nbar2\n");
    check(printer(Format::Simple).get(&get_foo(), true), "bar2\n");
    check(
        Printer { format: Format::Simple, hex: true }.get(&get_foo(), false),
        "\\x66\\x6f\\x6f\n\\x62\\x61\\x72\\x32\n",
    );
    check(
        printer(Format::Json).get(&get_foo(), false),
        &format!(
            "{{{HEADER_JSON}\"revision\":6,\"raft_term\":2}},\"kvs\":[{{\"key\":\"Zm9v\",\
             \"create_revision\":2,\"mod_revision\":3,\"version\":2,\"value\":\"YmFyMg==\"}}],\
             \"count\":1}}\n"
        ),
    );
    check(
        printer(Format::Fields).get(&get_foo(), false),
        "\"ClusterID\" : 324952591200643719\n\"MemberID\" : 3319814642761637952\n\
         \"Revision\" : 6\n\"RaftTerm\" : 2\n\"Key\" : \"foo\"\n\"CreateRevision\" : 2\n\
         \"ModRevision\" : 3\n\"Version\" : 2\n\"Value\" : \"bar2\"\n\"Lease\" : 0\n\
         \"More\" : false\n\"Count\" : 1\n",
    );
    check(
        printer(Format::Table).get(&get_foo(), false),
        "BadFeature: table not supported as output format",
    );
    let empty = RangeResponse { header: header(6), ..RangeResponse::default() };
    check(printer(Format::Simple).get(&empty, false), "");
    check(
        printer(Format::Json).get(&empty, false),
        &format!("{{{HEADER_JSON}\"revision\":6,\"raft_term\":2}}}}\n"),
    );
}

#[test]
fn get_binary_keys_and_leases() {
    let mut odd = kv("", 35, 35, 1, "z");
    odd.key = b"uni\xff\x01\xc3\xa9".to_vec();
    let response = RangeResponse { header: header(35), kvs: vec![odd], more: false, count: 1 };
    check(
        printer(Format::Json).get(&response, false),
        &format!(
            "{{{HEADER_JSON}\"revision\":35,\"raft_term\":2}},\"kvs\":[{{\"key\":\
             \"dW5p/wHDqQ==\",\"create_revision\":35,\"mod_revision\":35,\"version\":1,\
             \"value\":\"eg==\"}}],\"count\":1}}\n"
        ),
    );
    let fields = printer(Format::Fields).get(&response, false).expect("fields");
    let fields = String::from_utf8(fields.stdout).expect("utf-8");
    assert!(fields.contains("\"Key\" : \"uni\\xff\\x01é\"\n"), "{fields}");

    let mut leased = kv("lk", 31, 31, 1, "va\"l");
    leased.lease = 2324035590216997186;
    let response = RangeResponse { header: header(31), kvs: vec![leased], more: false, count: 1 };
    check(
        printer(Format::Json).get(&response, false),
        &format!(
            "{{{HEADER_JSON}\"revision\":31,\"raft_term\":2}},\"kvs\":[{{\"key\":\"bGs=\",\
             \"create_revision\":31,\"mod_revision\":31,\"version\":1,\"value\":\"dmEibA==\",\
             \"lease\":2324035590216997186}}],\"count\":1}}\n"
        ),
    );
}

#[test]
fn put() {
    let plain = PutResponse { header: header(4), prev_kv: None };
    check(printer(Format::Simple).put(&plain), "OK\n");
    check(
        printer(Format::Json).put(&plain),
        &format!("{{{HEADER_JSON}\"revision\":4,\"raft_term\":2}}}}\n"),
    );
    let with_prev = PutResponse { header: header(6), prev_kv: Some(kv("foo3", 5, 5, 1, "y")) };
    check(printer(Format::Simple).put(&with_prev), "OK\nfoo3\ny\n");
    check(
        printer(Format::Json).put(&with_prev),
        &format!(
            "{{{HEADER_JSON}\"revision\":6,\"raft_term\":2}},\"prev_kv\":{{\"key\":\"Zm9vMw==\",\
             \"create_revision\":5,\"mod_revision\":5,\"version\":1,\"value\":\"eQ==\"}}}}\n"
        ),
    );
    let fields_prev = PutResponse { header: header(16), prev_kv: Some(kv("foo4", 15, 15, 1, "v")) };
    check(
        printer(Format::Fields).put(&fields_prev),
        "\"ClusterID\" : 324952591200643719\n\"MemberID\" : 3319814642761637952\n\
         \"Revision\" : 16\n\"RaftTerm\" : 2\n\"PrevKey\" : \"foo4\"\n\
         \"PrevCreateRevision\" : 15\n\"PrevModRevision\" : 15\n\"PrevVersion\" : 1\n\
         \"PrevValue\" : \"v\"\n\"PrevLease\" : 0\n",
    );
    check(printer(Format::Table).put(&plain), "BadFeature: table not supported as output format");
}

#[test]
fn del() {
    let response = DeleteRangeResponse {
        header: header(14),
        deleted: 2,
        prev_kvs: vec![kv("a", 12, 12, 1, "1"), kv("b", 13, 13, 1, "2")],
    };
    check(printer(Format::Simple).del(&response), "2\na\n1\nb\n2\n");
    check(
        printer(Format::Json).del(&response),
        &format!(
            "{{{HEADER_JSON}\"revision\":14,\"raft_term\":2}},\"deleted\":2,\"prev_kvs\":[\
             {{\"key\":\"YQ==\",\"create_revision\":12,\"mod_revision\":12,\"version\":1,\
             \"value\":\"MQ==\"}},{{\"key\":\"Yg==\",\"create_revision\":13,\"mod_revision\":13,\
             \"version\":1,\"value\":\"Mg==\"}}]}}\n"
        ),
    );
    let none = DeleteRangeResponse { header: header(14), deleted: 0, prev_kvs: vec![] };
    check(printer(Format::Simple).del(&none), "0\n");
    check(
        printer(Format::Fields).del(&none),
        "\"ClusterID\" : 324952591200643719\n\"MemberID\" : 3319814642761637952\n\
         \"Revision\" : 14\n\"RaftTerm\" : 2\n\"Deleted\" : 0\n",
    );
}

fn op(response: Response) -> ResponseOp {
    ResponseOp { response: Some(response) }
}

/// `get k1`, `put k9 v --prev-kv`, `del k3 --prev-kv` after a successful compare.
fn txn_success() -> TxnResponse {
    TxnResponse {
        header: header(26),
        succeeded: true,
        responses: vec![
            op(Response::ResponseRange(RangeResponse {
                header: bare_header(25),
                kvs: vec![kv("k1", 17, 17, 1, "v1")],
                more: false,
                count: 1,
            })),
            op(Response::ResponsePut(PutResponse { header: bare_header(26), prev_kv: None })),
            op(Response::ResponseDeleteRange(DeleteRangeResponse {
                header: bare_header(26),
                deleted: 1,
                prev_kvs: vec![kv("k3", 25, 25, 1, "again")],
            })),
        ],
    }
}

#[test]
fn txn() {
    check(printer(Format::Simple).txn(&txn_success()), "SUCCESS\n\nk1\nv1\n\nOK\n\n1\nk3\nagain\n");
    check(
        printer(Format::Json).txn(&txn_success()),
        &format!(
            "{{{HEADER_JSON}\"revision\":26,\"raft_term\":2}},\"succeeded\":true,\"responses\":[\
             {{\"Response\":{{\"ResponseRange\":{{\"header\":{{\"revision\":25}},\"kvs\":[{{\
             \"key\":\"azE=\",\"create_revision\":17,\"mod_revision\":17,\"version\":1,\
             \"value\":\"djE=\"}}],\"count\":1}}}}}},{{\"Response\":{{\"ResponsePut\":{{\
             \"header\":{{\"revision\":26}}}}}}}},{{\"Response\":{{\"ResponseDeleteRange\":{{\
             \"header\":{{\"revision\":26}},\"deleted\":1,\"prev_kvs\":[{{\"key\":\"azM=\",\
             \"create_revision\":25,\"mod_revision\":25,\"version\":1,\"value\":\"YWdhaW4=\"}}]\
             }}}}}}]}}\n"
        ),
    );
    let failed = TxnResponse {
        header: header(27),
        succeeded: false,
        responses: vec![
            op(Response::ResponsePut(PutResponse { header: bare_header(27), prev_kv: None })),
            op(Response::ResponseDeleteRange(DeleteRangeResponse {
                header: bare_header(27),
                deleted: 1,
                prev_kvs: vec![],
            })),
        ],
    };
    check(printer(Format::Simple).txn(&failed), "FAILURE\n\nOK\n\n1\n");
    check(
        printer(Format::Json).txn(&failed),
        &format!(
            "{{{HEADER_JSON}\"revision\":27,\"raft_term\":2}},\"responses\":[{{\"Response\":{{\
             \"ResponsePut\":{{\"header\":{{\"revision\":27}}}}}}}},{{\"Response\":{{\
             \"ResponseDeleteRange\":{{\"header\":{{\"revision\":27}},\"deleted\":1}}}}}}]}}\n"
        ),
    );
    check(
        printer(Format::Fields).txn(&failed),
        "\"ClusterID\" : 324952591200643719\n\"MemberID\" : 3319814642761637952\n\
         \"Revision\" : 27\n\"RaftTerm\" : 2\n\"Succeeded\" : false\n\
         \"ClusterID\" : 0\n\"MemberID\" : 0\n\"Revision\" : 27\n\"RaftTerm\" : 0\n\
         \"ClusterID\" : 0\n\"MemberID\" : 0\n\"Revision\" : 27\n\"RaftTerm\" : 0\n\
         \"Deleted\" : 1\n",
    );
    check(printer(Format::Table).txn(&failed), "BadFeature: table not supported as output format");
}

fn members() -> MemberListResponse {
    MemberListResponse {
        header: Some(ResponseHeader { revision: 0, ..header(0).unwrap_or_default() }),
        members: vec![Member {
            id: MEMBER_ID,
            name: "ref".into(),
            peer_ur_ls: vec!["http://127.0.0.1:23800".into()],
            client_ur_ls: vec!["http://127.0.0.1:23790".into()],
            is_learner: false,
        }],
    }
}

#[test]
fn member_list() {
    check(
        printer(Format::Simple).member_list(&members()),
        "2e1259d415f2a040, started, ref, http://127.0.0.1:23800, http://127.0.0.1:23790, false\n",
    );
    check(
        printer(Format::Json).member_list(&members()),
        &format!(
            "{{{HEADER_JSON}\"raft_term\":2}},\"members\":[{{\"ID\":3319814642761637952,\
             \"name\":\"ref\",\"peerURLs\":[\"http://127.0.0.1:23800\"],\
             \"clientURLs\":[\"http://127.0.0.1:23790\"]}}]}}\n"
        ),
    );
    check(
        printer(Format::Table).member_list(&members()),
        &[
            "+------------------+---------+------+------------------------+------------------",
            "------+------------+\n",
            "|        ID        | STATUS  | NAME |       PEER ADDRS       |      CLIENT ADDRS",
            "      | IS LEARNER |\n",
            "+------------------+---------+------+------------------------+------------------",
            "------+------------+\n",
            "| 2e1259d415f2a040 | started |  ref | http://127.0.0.1:23800 | http://127.0.0.1:",
            "23790 |      false |\n",
            "+------------------+---------+------+------------------------+------------------",
            "------+------------+\n",
        ]
        .concat(),
    );
    check(
        printer(Format::Fields).member_list(&members()),
        "\"ClusterID\" : 324952591200643719\n\"MemberID\" : 3319814642761637952\n\
         \"Revision\" : 0\n\"RaftTerm\" : 2\n\"ID\" : 3319814642761637952\n\
         \"Name\" : \"ref\"\n\"PeerURL\" : \"http://127.0.0.1:23800\"\n\
         \"ClientURL\" : \"http://127.0.0.1:23790\"\n\"IsLearner\" : false\n\n",
    );
    let mut unstarted = members();
    unstarted.members[0].name.clear();
    unstarted.members[0].client_ur_ls.clear();
    unstarted.members[0].is_learner = true;
    check(
        printer(Format::Simple).member_list(&unstarted),
        "2e1259d415f2a040, unstarted, , http://127.0.0.1:23800, , true\n",
    );
}

fn statuses() -> Vec<EndpointStatus> {
    let response = StatusResponse {
        header: header(21),
        version: "3.4.23".into(),
        db_size: 20480,
        leader: MEMBER_ID,
        raft_index: 30,
        raft_term: 2,
        raft_applied_index: 30,
        db_size_in_use: 20480,
        // Fields etcdctl 3.4 does not know are never printed.
        storage_version: "3.6.0".into(),
        db_size_quota: 2 << 30,
        ..StatusResponse::default()
    };
    vec![EndpointStatus { endpoint: "127.0.0.1:23790".into(), response }]
}

#[test]
fn endpoint_status() {
    check(
        printer(Format::Simple).endpoint_status(&statuses()),
        "127.0.0.1:23790, 2e1259d415f2a040, 3.4.23, 20 kB, true, false, 2, 30, 30, \n",
    );
    check(
        printer(Format::Json).endpoint_status(&statuses()),
        &format!(
            "[{{\"Endpoint\":\"127.0.0.1:23790\",\"Status\":{{{HEADER_JSON}\"revision\":21,\
             \"raft_term\":2}},\"version\":\"3.4.23\",\"dbSize\":20480,\
             \"leader\":3319814642761637952,\"raftIndex\":30,\"raftTerm\":2,\
             \"raftAppliedIndex\":30,\"dbSizeInUse\":20480}}}}]\n"
        ),
    );
    check(
        printer(Format::Table).endpoint_status(&statuses()),
        &[
            "+-----------------+------------------+---------+---------+-----------+----------",
            "--+-----------+------------+--------------------+--------+\n",
            "|    ENDPOINT     |        ID        | VERSION | DB SIZE | IS LEADER | IS LEARNE",
            "R | RAFT TERM | RAFT INDEX | RAFT APPLIED INDEX | ERRORS |\n",
            "+-----------------+------------------+---------+---------+-----------+----------",
            "--+-----------+------------+--------------------+--------+\n",
            "| 127.0.0.1:23790 | 2e1259d415f2a040 |  3.4.23 |   20 kB |      true |      fals",
            "e |         2 |         30 |                 30 |        |\n",
            "+-----------------+------------------+---------+---------+-----------+----------",
            "--+-----------+------------+--------------------+--------+\n",
        ]
        .concat(),
    );
    check(
        printer(Format::Fields).endpoint_status(&statuses()),
        "\"ClusterID\" : 324952591200643719\n\"MemberID\" : 3319814642761637952\n\
         \"Revision\" : 21\n\"RaftTerm\" : 2\n\"Version\" : \"3.4.23\"\n\"DBSize\" : 20480\n\
         \"Leader\" : 3319814642761637952\n\"IsLearner\" : false\n\"RaftIndex\" : 30\n\
         \"RaftTerm\" : 2\n\"RaftAppliedIndex\" : 30\n\"Errors\" : []\n\
         \"Endpoint\" : \"127.0.0.1:23790\"\n\n",
    );
    check(
        printer(Format::Protobuf).endpoint_status(&statuses()),
        "BadFeature: protobuf not supported as output format",
    );
}

fn healths() -> Vec<EndpointHealth> {
    vec![
        EndpointHealth {
            endpoint: "127.0.0.1:23790".into(),
            healthy: true,
            took: "2.972839ms".into(),
            error: String::new(),
        },
        EndpointHealth {
            endpoint: "127.0.0.1:23999".into(),
            healthy: false,
            took: "5.000635485s".into(),
            error: "context deadline exceeded".into(),
        },
    ]
}

#[test]
fn endpoint_health() {
    let simple = printer(Format::Simple).endpoint_health(&healths()).expect("simple");
    assert!(simple.stdout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&simple.stderr),
        "127.0.0.1:23790 is healthy: successfully committed proposal: took = 2.972839ms\n\
         127.0.0.1:23999 is unhealthy: failed to commit proposal: context deadline exceeded\n"
    );
    check(
        printer(Format::Json).endpoint_health(&healths()),
        "[{\"endpoint\":\"127.0.0.1:23790\",\"health\":true,\"took\":\"2.972839ms\"},\
         {\"endpoint\":\"127.0.0.1:23999\",\"health\":false,\"took\":\"5.000635485s\",\
         \"error\":\"context deadline exceeded\"}]\n",
    );
    check(
        printer(Format::Fields).endpoint_health(&healths()[..1]),
        "\"Endpoint\" : \"127.0.0.1:23790\"\n\"Health\" : true\n\"Took\" : 2.972839ms\n\
         \"Error\" : \n\n",
    );
    check(
        printer(Format::Protobuf).endpoint_health(&healths()),
        "BadFeature: protobuf not supported as output format",
    );
}

#[test]
fn json_strings_escape_as_go_does() {
    assert_eq!(
        json::string("a\"b\\c\n\u{1}<>&\u{2028}é"),
        r#""a\"b\\c\n\u0001\u003c\u003e\u0026\u2028é""#
    );
}

#[test]
fn formats() {
    assert_eq!(Format::parse("json"), Ok(Format::Json));
    let failure = Format::parse("bogus").expect_err("bogus format");
    assert_eq!(failure.message, "unsupported output format");
}
