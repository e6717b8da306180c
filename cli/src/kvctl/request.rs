//! Turns `get`/`put`/`del` arguments into etcd requests exactly as etcdctl 3.4 and clientv3 do
//! (prefix ends, `--from-key`, the sort quirk), with etcdctl's argument errors. Pure: shared by
//! the top-level commands and the request lines of `txn`.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

use store::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use store::proto::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest};

use super::args::{DelArgs, GetArgs, PutArgs};
use super::failure::Failure;
use super::golang;

/// What etcd treats as "no end": with a key, every key from it; alone, the whole keyspace.
const FROM_KEY_END: &[u8] = b"\0";

fn bytes(arg: &OsString) -> Vec<u8> {
    arg.as_bytes().to_vec()
}

/// clientv3's `GetPrefixRangeEnd`: the smallest key greater than every key with the prefix.
pub fn prefix_range_end(prefix: &[u8]) -> Vec<u8> {
    match prefix.iter().rposition(|&byte| byte < 0xff) {
        Some(last) => {
            let mut end = prefix[..=last].to_vec();
            end[last] += 1;
            end
        }
        // All 0xff: no key is greater, so the range runs to the end of the keyspace.
        None => FROM_KEY_END.to_vec(),
    }
}

/// The key and range end for a key argument with `--prefix`/`--from-key`. An empty key means
/// the whole keyspace, which etcd spells key `\0` with range end `\0`.
fn key_range(mut key: Vec<u8>, prefix: bool, from_key: bool) -> (Vec<u8>, Vec<u8>) {
    if (prefix || from_key) && key.is_empty() {
        key = FROM_KEY_END.to_vec();
        return (key, FROM_KEY_END.to_vec());
    }
    if prefix {
        let end = prefix_range_end(&key);
        return (key, end);
    }
    if from_key {
        return (key, FROM_KEY_END.to_vec());
    }
    (key, Vec::new())
}

/// etcdctl's `getGetOp`.
pub fn range_request(args: &GetArgs) -> Result<RangeRequest, Failure> {
    let Some(key) = args.args.first() else {
        return Err(Failure::bad_args(
            "get command needs one argument as key and an optional argument as range_end",
        ));
    };
    check_prefix_and_from_key(args.prefix, args.from_key)?;
    if args.keys_only && args.count_only {
        return Err(Failure::bad_args(
            "`--keys-only` and `--count-only` cannot be set at the same time, choose one",
        ));
    }
    let serializable = match args.consistency.as_str() {
        "s" => true,
        "l" => false,
        other => {
            let message = format!("unknown consistency flag {}", golang::quote(other.as_bytes()));
            return Err(Failure::bad_feature(message));
        }
    };
    let (key, range_end) = match args.args.get(1) {
        Some(end) => {
            check_single_argument(args.prefix, args.from_key)?;
            (bytes(key), bytes(end))
        }
        None => key_range(bytes(key), args.prefix, args.from_key),
    };
    let (sort_order, sort_target) = sort(&args.order, &args.sort_by)?;
    Ok(RangeRequest {
        key,
        range_end,
        limit: args.limit,
        revision: args.rev.max(0),
        sort_order: sort_order as i32,
        sort_target: sort_target as i32,
        serializable,
        keys_only: args.keys_only,
        count_only: args.count_only,
        ..RangeRequest::default()
    })
}

fn sort(order: &str, target: &str) -> Result<(SortOrder, SortTarget), Failure> {
    let order = match order.to_uppercase().as_str() {
        "ASCEND" => SortOrder::Ascend,
        "DESCEND" => SortOrder::Descend,
        "" => SortOrder::None,
        _ => return Err(Failure::bad_feature(format!("bad sort order {order}"))),
    };
    let target = match target.to_uppercase().as_str() {
        "CREATE" => SortTarget::Create,
        "KEY" | "" => SortTarget::Key,
        "MODIFY" => SortTarget::Mod,
        "VALUE" => SortTarget::Value,
        "VERSION" => SortTarget::Version,
        _ => return Err(Failure::bad_feature(format!("bad sort target {target}"))),
    };
    // clientv3's WithSort: keys already come back in ascending key order, and asking for it
    // explicitly would make the server sort the whole range before applying the limit.
    if target == SortTarget::Key && order == SortOrder::Ascend {
        return Ok((SortOrder::None, target));
    }
    Ok((order, target))
}

fn check_prefix_and_from_key(prefix: bool, from_key: bool) -> Result<(), Failure> {
    if prefix && from_key {
        return Err(Failure::bad_args(
            "`--prefix` and `--from-key` cannot be set at the same time, choose one",
        ));
    }
    Ok(())
}

fn check_single_argument(prefix: bool, from_key: bool) -> Result<(), Failure> {
    if prefix || from_key {
        return Err(Failure::bad_args(
            "too many arguments, only accept one argument when `--prefix` or `--from-key` is set",
        ));
    }
    Ok(())
}

/// etcdctl's `getPutOp`. `stdin` supplies the value when only the key is given; `None` means
/// there is no standard input to read (a `put` line inside `txn`, whose input etcdctl has
/// already buffered).
pub fn put_request(
    args: &PutArgs,
    stdin: Option<&mut dyn std::io::Read>,
) -> Result<PutRequest, Failure> {
    const NEEDS_VALUE: &str = "put command needs 1 argument and input from stdin or 2 arguments";
    let Some(key) = args.args.first() else {
        return Err(Failure::bad_args(NEEDS_VALUE));
    };
    if args.ignore_value && args.args.len() > 1 {
        return Err(Failure::bad_args(
            "put command needs only 1 argument when 'ignore-value' is set",
        ));
    }
    let mut value = Vec::new();
    if !args.ignore_value {
        match (args.args.get(1), stdin) {
            (Some(arg), _) => value = bytes(arg),
            (None, Some(stdin)) => {
                let read = stdin.read_to_end(&mut value);
                if read.is_err() || value.is_empty() {
                    return Err(Failure::bad_args(NEEDS_VALUE));
                }
            }
            (None, None) => return Err(Failure::bad_args(NEEDS_VALUE)),
        }
    }
    let lease = golang::parse_int(&args.lease, 16).map_err(|error| {
        Failure::bad_args(format!("bad lease ID ({error}), expecting ID in Hex"))
    })?;
    Ok(PutRequest {
        key: bytes(key),
        value,
        lease,
        prev_kv: args.prev_kv,
        ignore_value: args.ignore_value,
        ignore_lease: args.ignore_lease,
    })
}

/// etcdctl's `getDelOp`.
pub fn delete_request(args: &DelArgs) -> Result<DeleteRangeRequest, Failure> {
    if args.args.is_empty() || args.args.len() > 2 {
        return Err(Failure::bad_args(
            "del command needs one argument as key and an optional argument as range_end",
        ));
    }
    check_prefix_and_from_key(args.prefix, args.from_key)?;
    let key = bytes(&args.args[0]);
    let (key, range_end) = match args.args.get(1) {
        Some(end) => {
            check_single_argument(args.prefix, args.from_key)?;
            (key, bytes(end))
        }
        None => key_range(key, args.prefix, args.from_key),
    };
    Ok(DeleteRangeRequest { key, range_end, prev_kv: args.prev_kv })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    /// Renders a request's interesting fields compactly, or the failure.
    fn check<T: std::fmt::Debug>(actual: Result<T, Failure>, expected: &str) {
        let rendered = match actual {
            Ok(value) => format!("{value:?}"),
            Err(failure) => format!("{:?}: {}", failure.status, failure.message),
        };
        assert_eq!(rendered, expected);
    }

    /// Arguments, flag settings, and the rendered request or failure.
    type GetCase = (&'static [&'static str], fn(&mut GetArgs), &'static str);

    /// Renders a range request as `key..end limit rev order/target flags`, or the failure.
    fn get(args: &[&str], tweak: impl FnOnce(&mut GetArgs)) -> String {
        let mut get = GetArgs { consistency: "l".into(), args: os(args), ..GetArgs::default() };
        tweak(&mut get);
        let request = range_request(&get).map(|r| {
            let flags: String = [(r.serializable, 's'), (r.keys_only, 'k'), (r.count_only, 'c')]
                .iter()
                .filter_map(|&(set, flag)| set.then_some(flag))
                .collect();
            let key = String::from_utf8_lossy(&r.key);
            let end = String::from_utf8_lossy(&r.range_end);
            let (limit, rev) = (r.limit, r.revision);
            format!("{key:?}..{end:?} {limit} {rev} {}/{} {flags}", r.sort_order, r.sort_target)
        });
        request.unwrap_or_else(|failure| format!("{:?}: {}", failure.status, failure.message))
    }

    #[test]
    fn prefix_end() {
        assert_eq!(prefix_range_end(b"foo"), b"fop");
        assert_eq!(prefix_range_end(b"a\xff"), b"b");
        assert_eq!(prefix_range_end(b"\xff\xff"), b"\0");
    }

    #[test]
    fn get_requests() {
        let cases: [GetCase; 8] = [
            (&["foo"], |_| {}, r#""foo".."" 0 0 0/0 "#),
            (&["foo"], |g| g.prefix = true, r#""foo".."fop" 0 0 0/0 "#),
            (&[""], |g| g.prefix = true, r#""\0".."\0" 0 0 0/0 "#),
            (&["a"], |g| g.from_key = true, r#""a".."\0" 0 0 0/0 "#),
            (&["a"], |g| g.order = "ascend".into(), r#""a".."" 0 0 0/0 "#),
            (&["a"], |g| g.sort_by = "value".into(), r#""a".."" 0 0 0/4 "#),
            (&["a"], |g| g.count_only = true, r#""a".."" 0 0 0/0 c"#),
            (
                &["a", "c", "ignored"],
                |g| {
                    (g.sort_by, g.order) = ("modify".into(), "DESCEND".into());
                    (g.limit, g.rev, g.consistency) = (2, 7, "s".into());
                    g.keys_only = true;
                },
                r#""a".."c" 2 7 2/3 sk"#,
            ),
        ];
        for (args, tweak, expected) in cases {
            assert_eq!(get(args, tweak), expected);
        }
    }

    #[test]
    fn get_argument_errors() {
        let cases: [GetCase; 7] = [
            (
                &[],
                |_| {},
                "BadArgs: get command needs one argument as key and an optional \
              argument as range_end",
            ),
            (
                &["a"],
                |g| (g.prefix, g.from_key) = (true, true),
                "BadArgs: `--prefix` and \
              `--from-key` cannot be set at the same time, choose one",
            ),
            (
                &["a", "b"],
                |g| g.prefix = true,
                "BadArgs: too many arguments, only accept one \
              argument when `--prefix` or `--from-key` is set",
            ),
            (&["a"], |g| g.consistency = "x".into(), r#"BadFeature: unknown consistency flag "x""#),
            (&["a"], |g| g.order = "up".into(), "BadFeature: bad sort order up"),
            (&["a"], |g| g.sort_by = "foo".into(), "BadFeature: bad sort target foo"),
            (
                &["a"],
                |g| (g.keys_only, g.count_only) = (true, true),
                "BadArgs: `--keys-only` \
              and `--count-only` cannot be set at the same time, choose one",
            ),
        ];
        for (args, tweak, expected) in cases {
            assert_eq!(get(args, tweak), expected);
        }
    }

    #[test]
    fn put_requests() {
        let put = |args: &[&str], tweak: fn(&mut PutArgs), stdin: &[u8]| {
            let mut put = PutArgs { lease: "0".into(), args: os(args), ..PutArgs::default() };
            tweak(&mut put);
            let mut stdin = stdin;
            put_request(&put, Some(&mut stdin)).map(|r| {
                let value = String::from_utf8_lossy(&r.value).into_owned();
                (String::from_utf8_lossy(&r.key).into_owned(), value, r.lease, r.prev_kv)
            })
        };
        check(put(&["k", "v"], |_| {}, b""), r#"("k", "v", 0, false)"#);
        check(put(&["k"], |_| {}, b"line\n"), r#"("k", "line\n", 0, false)"#);
        check(put(&["k", "v"], |p| p.lease = "ff".into(), b""), r#"("k", "v", 255, false)"#);
        check(put(&["k"], |p| p.ignore_value = true, b""), r#"("k", "", 0, false)"#);
        let needs = "BadArgs: put command needs 1 argument and input from stdin or 2 arguments";
        check(put(&["k"], |_| {}, b""), needs);
        check(put(&[], |_| {}, b"v"), needs);
        check(
            put(&["k", "v"], |p| p.ignore_value = true, b""),
            "BadArgs: put command needs only 1 argument when 'ignore-value' is set",
        );
        check(
            put(&["k", "v"], |p| p.lease = "zz".into(), b""),
            "BadArgs: bad lease ID (strconv.ParseInt: parsing \"zz\": invalid syntax), \
             expecting ID in Hex",
        );
    }

    #[test]
    fn delete_requests() {
        let del = |args: &[&str], prefix: bool, from_key: bool| {
            let args = DelArgs { prefix, from_key, prev_kv: true, args: os(args) };
            delete_request(&args)
                .map(|r| (String::from_utf8_lossy(&r.key).into_owned(), r.range_end, r.prev_kv))
        };
        check(del(&["a"], false, false), r#"("a", [], true)"#);
        check(del(&["a", "c"], false, false), r#"("a", [99], true)"#);
        check(del(&["ab"], true, false), r#"("ab", [97, 99], true)"#);
        check(del(&[""], false, true), r#"("\0", [0], true)"#);
        let usage = "BadArgs: del command needs one argument as key and an optional argument \
                     as range_end";
        check(del(&[], false, false), usage);
        check(del(&["a", "b", "c"], false, false), usage);
    }
}
