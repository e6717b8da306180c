//! Parses `txn` input as etcdctl 3.4 does: three sections (compares, success requests, failure
//! requests), each ended by an empty line; compares like `mod("k") > "5"` scanned with Go's
//! `Sscanf("%q) %s %q")` rules; request lines split with etcdctl's `Argify` and parsed with the
//! same flags as the `get`/`put`/`del` commands. Pure: no network, input from any reader.

use std::ffi::OsString;
use std::io::{BufRead, Write};
use std::os::unix::ffi::OsStringExt;

use clap::Parser;
use store::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use store::proto::etcdserverpb::request_op::Request;
use store::proto::etcdserverpb::{Compare, RequestOp, TxnRequest};

use super::args::TxnRequestLine;
use super::failure::Failure;
use super::{golang, request};

pub const COMPARES_PROMPT: &str = "compares:";
pub const SUCCESS_PROMPT: &str = "success requests (get, put, del):";
pub const FAILURE_PROMPT: &str = "failure requests (get, put, del):";

/// Reads a whole transaction. With `interactive`, each section's prompt goes to `prompts`
/// before the section is read, as etcdctl's `-i` does.
pub fn read_txn(
    input: &mut dyn BufRead,
    interactive: bool,
    prompts: &mut dyn Write,
) -> Result<TxnRequest, Failure> {
    let mut prompt = |text: &str| {
        if interactive {
            // A prompt that cannot be shown does not change the transaction.
            let _ = writeln!(prompts, "{text}").and_then(|()| prompts.flush());
        }
    };
    prompt(COMPARES_PROMPT);
    let compare = read_section(input, parse_compare)?;
    prompt(SUCCESS_PROMPT);
    let success = read_section(input, parse_request)?;
    prompt(FAILURE_PROMPT);
    let failure = read_section(input, parse_request)?;
    Ok(TxnRequest { compare, success, failure })
}

/// Parses one section line by line up to its empty line, stopping at the first bad line as
/// etcdctl does. Input ending without that empty line is an error (`EOF`), as in etcdctl, so
/// a truncated transaction is never sent.
fn read_section<T>(
    input: &mut dyn BufRead,
    parse: fn(&[u8]) -> Result<T, Failure>,
) -> Result<Vec<T>, Failure> {
    let mut parsed = Vec::new();
    loop {
        let mut line = Vec::new();
        input
            .read_until(b'\n', &mut line)
            .map_err(|error| Failure::invalid_input(error.to_string()))?;
        if line.last() != Some(&b'\n') {
            return Err(Failure::invalid_input("EOF"));
        }
        let trimmed = line.trim_ascii();
        if trimmed.is_empty() {
            return Ok(parsed);
        }
        parsed.push(parse(trimmed)?);
    }
}

fn text(line: &[u8]) -> String {
    String::from_utf8_lossy(line).into_owned()
}

/// One compare line: `target("key") op "value"`.
pub fn parse_compare(line: &[u8]) -> Result<Compare, Failure> {
    let malformed =
        |detail: String| Failure::invalid_input(format!("malformed comparison: {detail}"));
    let Some(paren) = line.iter().position(|&byte| byte == b'(') else {
        return Err(malformed(text(line)));
    };
    let target = &line[..paren];
    let scanned = scan_compare(&line[paren + 1..]);
    let (Some(key), Some(op), Some(value)) = (&scanned.key, &scanned.op, &scanned.value) else {
        let key = golang::quote(scanned.key.as_deref().unwrap_or_default());
        let op = text(scanned.op.as_deref().unwrap_or_default());
        let value = golang::quote(scanned.value.as_deref().unwrap_or_default());
        return Err(malformed(format!("{}; got {}({key}) {op} {value}", text(line), text(target))));
    };
    let invalid = || Failure::invalid_input(format!("invalid txn compare request: {}", text(line)));
    let number = |base: u32| -> Result<i64, Failure> {
        let digits = std::str::from_utf8(value).map_err(|_| invalid())?;
        golang::parse_int(digits, base).map_err(|_| invalid())
    };
    let (target, target_union) = match target {
        b"ver" | b"version" => (CompareTarget::Version, TargetUnion::Version(number(10)?)),
        b"c" | b"create" => (CompareTarget::Create, TargetUnion::CreateRevision(number(10)?)),
        b"m" | b"mod" => (CompareTarget::Mod, TargetUnion::ModRevision(number(10)?)),
        b"val" | b"value" => (CompareTarget::Value, TargetUnion::Value(value.clone())),
        // Lease IDs are hexadecimal everywhere in etcdctl (etcdctl 3.4 itself panics here).
        b"lease" => (CompareTarget::Lease, TargetUnion::Lease(number(16)?)),
        _ => {
            let detail = format!("{} (unknown target {})", text(line), text(target));
            return Err(malformed(detail));
        }
    };
    let result = match op.as_slice() {
        b"=" | b"==" => CompareResult::Equal,
        b"!=" => CompareResult::NotEqual,
        b">" => CompareResult::Greater,
        b"<" => CompareResult::Less,
        _ => {
            let detail = format!("{} (unknown operator {})", text(line), text(op));
            return Err(malformed(detail));
        }
    };
    Ok(Compare {
        result: result as i32,
        target: target as i32,
        key: key.clone(),
        range_end: Vec::new(),
        target_union: Some(target_union),
    })
}

/// What Go's `Sscanf(rest, "%q) %s %q", &key, &op, &value)` managed to fill before stopping.
#[derive(Debug, Default)]
struct ScannedCompare {
    key: Option<Vec<u8>>,
    op: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
}

fn scan_compare(rest: &[u8]) -> ScannedCompare {
    let mut scanned = ScannedCompare::default();
    let mut cursor = Cursor { text: rest, position: 0 };
    scanned.key = cursor.quoted();
    if scanned.key.is_none() || !cursor.literal(b')') || !cursor.spaces() {
        return scanned;
    }
    scanned.op = cursor.word();
    if scanned.op.is_none() || !cursor.spaces() {
        return scanned;
    }
    scanned.value = cursor.quoted();
    scanned
}

/// A position in a line being scanned with Go's `fmt` scanning rules.
struct Cursor<'a> {
    text: &'a [u8],
    position: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a [u8] {
        &self.text[self.position..]
    }

    /// A space in a Go scan format: at least one space, or the end of the input.
    fn spaces(&mut self) -> bool {
        let count = self.rest().iter().take_while(|byte| byte.is_ascii_whitespace()).count();
        self.position += count;
        count > 0 || self.rest().is_empty()
    }

    fn skip_spaces(&mut self) {
        self.spaces();
    }

    fn literal(&mut self, expected: u8) -> bool {
        let matched = self.rest().first() == Some(&expected);
        self.position += usize::from(matched);
        matched
    }

    /// `%s`: a run of non-space bytes after optional spaces.
    fn word(&mut self) -> Option<Vec<u8>> {
        self.skip_spaces();
        let length = self.rest().iter().take_while(|byte| !byte.is_ascii_whitespace()).count();
        let word = self.rest()[..length].to_vec();
        self.position += length;
        (!word.is_empty()).then_some(word)
    }

    /// `%q`: a Go double-quoted (escapes allowed) or back-quoted (raw) string.
    fn quoted(&mut self) -> Option<Vec<u8>> {
        self.skip_spaces();
        let rest = self.rest();
        let length = match rest.first()? {
            b'`' => rest[1..].iter().position(|&byte| byte == b'`')? + 2,
            b'"' => quoted_length(rest)?,
            _ => return None,
        };
        let literal = &rest[..length];
        self.position += length;
        if literal[0] == b'`' {
            return Some(literal[1..length - 1].to_vec());
        }
        golang::unquote(literal).ok()
    }
}

/// The length of the double-quoted literal at the start of `text`, quotes included: the byte
/// after a backslash never closes it.
fn quoted_length(text: &[u8]) -> Option<usize> {
    let mut index = 1;
    while index < text.len() {
        match text[index] {
            b'\\' => index += 2,
            b'"' => return Some(index + 1),
            _ => index += 1,
        }
    }
    None
}

/// etcdctl's `Argify`: splits a request line into words by its regular expression
/// `"(?:[^"\\]|\\.)*"|'[^']*'|[^'"\s]\S*[^'"\s]?`, unquoting quoted words; characters no
/// alternative matches (such as an unpaired quote) are skipped.
pub fn argify(line: &[u8]) -> Result<Vec<Vec<u8>>, Failure> {
    let mut words = Vec::new();
    let mut index = 0;
    while index < line.len() {
        let rest = &line[index..];
        match rest[0] {
            b'"' => match quoted_length(rest) {
                Some(length) => {
                    let word = golang::unquote(&rest[..length]).map_err(Failure::invalid_input)?;
                    words.push(word);
                    index += length;
                }
                None => index += 1,
            },
            b'\'' => match rest[1..].iter().position(|&byte| byte == b'\'') {
                // etcdctl 3.4 cuts single-quoted words short (it slices by the word count,
                // a bug fixed in 3.5); kvctl keeps the whole word, as 3.5 does.
                Some(length) => {
                    words.push(rest[1..=length].to_vec());
                    index += length + 2;
                }
                None => index += 1,
            },
            byte if is_regex_space(byte) => index += 1,
            _ => {
                let length = rest.iter().take_while(|&&byte| !is_regex_space(byte)).count();
                words.push(rest[..length].to_vec());
                index += length;
            }
        }
    }
    Ok(words)
}

/// RE2's `\s`: `[\t\n\f\r ]`.
fn is_regex_space(byte: u8) -> bool {
    matches!(byte, b'\t' | b'\n' | b'\x0c' | b'\r' | b' ')
}

/// One request line: `get ...`, `put ...` or `del ...`.
pub fn parse_request(line: &[u8]) -> Result<RequestOp, Failure> {
    let words = argify(line)?;
    if words.len() < 2 {
        return Err(Failure::invalid_input(format!("invalid txn compare request: {}", text(line))));
    }
    let words = words.into_iter().map(OsString::from_vec);
    let parsed = TxnRequestLine::try_parse_from(words)
        .map_err(|_| Failure::invalid_input(format!("invalid txn request: {}", text(line))))?;
    let request = match parsed {
        TxnRequestLine::Get(args) => Request::RequestRange(request::range_request(&args)?),
        TxnRequestLine::Put(args) => Request::RequestPut(request::put_request(&args, None)?),
        TxnRequestLine::Del(args) => Request::RequestDeleteRange(request::delete_request(&args)?),
    };
    Ok(RequestOp { request: Some(request) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Renders a compare as `TARGET key RESULT value`, or the failure.
    fn check_compare(line: &str, expected: &str) {
        let rendered = match parse_compare(line.as_bytes()) {
            Ok(compare) => {
                let target = CompareTarget::try_from(compare.target).map(|t| t.as_str_name());
                let result = CompareResult::try_from(compare.result).map(|r| r.as_str_name());
                let value = match compare.target_union {
                    Some(TargetUnion::Value(value)) => golang::quote(&value),
                    Some(TargetUnion::Version(n) | TargetUnion::CreateRevision(n))
                    | Some(TargetUnion::ModRevision(n) | TargetUnion::Lease(n)) => n.to_string(),
                    None => "-".into(),
                };
                let key = golang::quote(&compare.key);
                format!("{} {key} {} {value}", target.unwrap_or("?"), result.unwrap_or("?"))
            }
            Err(failure) => format!("{:?}: {}", failure.status, failure.message),
        };
        assert_eq!(rendered, expected, "input: {line}");
    }

    #[test]
    fn compares() {
        let cases = [
            (r#"mod("k1") > "0""#, r#"MOD "k1" GREATER 0"#),
            (r#"value("k2") = "5""#, r#"VALUE "k2" EQUAL "5""#),
            (r#"ver("k") == "-1""#, r#"VERSION "k" EQUAL -1"#),
            (r#"c("k") != "3""#, r#"CREATE "k" NOT_EQUAL 3"#),
            (r#"m("k") < "10""#, r#"MOD "k" LESS 10"#),
            (r#"val(`k`) = `v w`"#, r#"VALUE "k" EQUAL "v w""#),
            (r#"version( "k\x41")   =   "2" trailing"#, r#"VERSION "kA" EQUAL 2"#),
            (r#"lease("k") = "2040a20e583fd942""#, r#"LEASE "k" EQUAL 2324035590216997186"#),
            (r#"value("k") = "\xff\"""#, r#"VALUE "k" EQUAL "\xff\"""#),
        ];
        for (line, expected) in cases {
            check_compare(line, expected);
        }
    }

    #[test]
    fn compare_errors_match_etcdctl() {
        let cases = [
            ("nothing", "InvalidInput: malformed comparison: nothing"),
            (
                r#"mod(k1) > "0""#,
                r#"InvalidInput: malformed comparison: mod(k1) > "0"; got mod("")  """#,
            ),
            (
                r#"mod("k")>"0""#,
                r#"InvalidInput: malformed comparison: mod("k")>"0"; got mod("k")  """#,
            ),
            (
                r#"mod("k") >"0""#,
                r#"InvalidInput: malformed comparison: mod("k") >"0"; got mod("k") >"0" """#,
            ),
            (
                r#"foo("k") = "1""#,
                r#"InvalidInput: malformed comparison: foo("k") = "1" (unknown target foo)"#,
            ),
            (r#"mod("k") > "x""#, r#"InvalidInput: invalid txn compare request: mod("k") > "x""#),
            (
                r#"mod("k") >> "1""#,
                r#"InvalidInput: malformed comparison: mod("k") >> "1" (unknown operator >>)"#,
            ),
        ];
        for (line, expected) in cases {
            check_compare(line, expected);
        }
    }

    fn check_argify(line: &str, expected: &[&str]) {
        let words = argify(line.as_bytes()).expect("argify");
        let words: Vec<String> = words.iter().map(|w| text(w)).collect();
        assert_eq!(words, expected, "input: {line}");
    }

    #[test]
    fn argify_splits_like_etcdctl() {
        check_argify("put k v", &["put", "k", "v"]);
        check_argify(r#"put k "a b" "#, &["put", "k", "a b"]);
        check_argify(r#"put k2 "x\\ty""#, &["put", "k2", r"x\ty"]);
        check_argify("put k 'a b'", &["put", "k", "a b"]);
        check_argify("put k3 'it''s'", &["put", "k3", "it", "s"]);
        check_argify("put k3 a'b", &["put", "k3", "a'b"]);
        check_argify(r#"put k3 "unterminated"#, &["put", "k3", "unterminated"]);
        check_argify(r#"put k3 ab"c d""#, &["put", "k3", r#"ab"c"#, r#"d""#]);
        check_argify(r#"get "k"x"#, &["get", "k", "x"]);
        check_argify("  get\tk  --prefix ", &["get", "k", "--prefix"]);
    }

    /// Renders a request op in etcdctl's own txn syntax, or the failure.
    fn check_request(line: &str, expected: &str) {
        let rendered = match parse_request(line.as_bytes()).map(|op| op.request) {
            Ok(Some(Request::RequestRange(r))) => format!(
                "range {}..{} limit={} keys_only={}",
                golang::quote(&r.key),
                golang::quote(&r.range_end),
                r.limit,
                r.keys_only
            ),
            Ok(Some(Request::RequestPut(p))) => format!(
                "put {} {} lease={} prev_kv={}",
                golang::quote(&p.key),
                golang::quote(&p.value),
                p.lease,
                p.prev_kv
            ),
            Ok(Some(Request::RequestDeleteRange(d))) => format!(
                "del {}..{} prev_kv={}",
                golang::quote(&d.key),
                golang::quote(&d.range_end),
                d.prev_kv
            ),
            Ok(other) => format!("unexpected {other:?}"),
            Err(failure) => format!("{:?}: {}", failure.status, failure.message),
        };
        assert_eq!(rendered, expected, "input: {line}");
    }

    #[test]
    fn request_lines() {
        let cases = [
            ("put k3 v3", r#"put "k3" "v3" lease=0 prev_kv=false"#),
            ("put k v --lease=ff --prev-kv", r#"put "k" "v" lease=255 prev_kv=true"#),
            ("get k1", r#"range "k1".."" limit=0 keys_only=false"#),
            ("get k --prefix --keys-only --limit 3", r#"range "k".."l" limit=3 keys_only=true"#),
            ("del k2 --prev-kv", r#"del "k2".."" prev_kv=true"#),
            ("del a c", r#"del "a".."c" prev_kv=false"#),
            ("put", "InvalidInput: invalid txn compare request: put"),
            ("bogus k", "InvalidInput: invalid txn request: bogus k"),
            ("get k --bad", "InvalidInput: invalid txn request: get k --bad"),
            ("get k -w json", "InvalidInput: invalid txn request: get k -w json"),
            ("put k", "BadArgs: put command needs 1 argument and input from stdin or 2 arguments"),
            (
                "get k --prefix --from-key",
                "BadArgs: `--prefix` and `--from-key` cannot be set at the same time, choose one",
            ),
            ("get k --sort-by=x", "BadFeature: bad sort target x"),
        ];
        for (line, expected) in cases {
            check_request(line, expected);
        }
    }

    fn check_txn(input: &str, interactive: bool, expected: &str) {
        let mut prompts = Vec::new();
        let rendered = match read_txn(&mut input.as_bytes(), interactive, &mut prompts) {
            Ok(txn) => format!(
                "{}compares={} success={} failure={}",
                text(&prompts),
                txn.compare.len(),
                txn.success.len(),
                txn.failure.len()
            ),
            Err(failure) => format!("{}{:?}: {}", text(&prompts), failure.status, failure.message),
        };
        assert_eq!(rendered, expected, "input: {input:?}");
    }

    #[test]
    fn sections() {
        let full =
            "mod(\"k1\") > \"0\"\nvalue(\"k2\") = \"5\"\n\nput k3 v3\nget k1\n\nput k4 f\n\n";
        check_txn(full, false, "compares=2 success=2 failure=1");
        check_txn(
            full,
            true,
            "compares:\nsuccess requests (get, put, del):\nfailure requests (get, put, del):\n\
             compares=2 success=2 failure=1",
        );
        check_txn("\n\n\n", false, "compares=0 success=0 failure=0");
        check_txn("mod(\"k\") = \"0\"\n\n   \n  \n", false, "compares=1 success=0 failure=0");
        check_txn("", false, "InvalidInput: EOF");
        check_txn("mod(\"k\") > \"0\"\n\nput a b", false, "InvalidInput: EOF");
        check_txn(
            "\n\n",
            true,
            "compares:\nsuccess requests (get, put, del):\n\
             failure requests (get, put, del):\nInvalidInput: EOF",
        );
    }
}
