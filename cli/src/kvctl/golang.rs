//! Go's formatting and parsing conventions that etcdctl's output and input follow: `%q`
//! quoting, `strconv.Unquote`, `strconv.ParseInt` errors, `time.Duration` strings and
//! go-humanize byte sizes. Reproduced here so `kvctl` prints what etcdctl prints.

use std::fmt::Write as _;
use std::time::Duration;

/// Go's `strconv.Quote` (what `%q` prints): printable runes stay, invalid UTF-8 bytes become
/// `\xNN`, other non-printables get Go's escapes.
pub fn quote(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            push_escaped_char(&mut out, c);
        }
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    out.push('"');
    out
}

fn push_escaped_char(out: &mut String, c: char) {
    match c {
        '"' => out.push_str("\\\""),
        '\\' => out.push_str("\\\\"),
        '\u{7}' => out.push_str("\\a"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{b}' => out.push_str("\\v"),
        c if is_print(c) => out.push(c),
        c if (c as u32) < 0x20 || c == '\u{7f}' => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c if (c as u32) < 0x10000 => {
            let _ = write!(out, "\\u{:04x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\U{:08x}", c as u32);
        }
    }
}

/// An approximation of Go's `unicode.IsPrint` (letters, marks, numbers, punctuation, symbols
/// and the ASCII space): Rust's std has no general-category table, so controls, non-ASCII
/// spaces, the common format characters and private-use code points count as non-printable.
fn is_print(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let code = c as u32;
    let format_or_private = matches!(code,
        0xad | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x180e | 0x200b..=0x200f
        | 0x202a..=0x202e | 0x2060..=0x2064 | 0x2066..=0x206f | 0xfeff | 0xfff9..=0xfffb
        | 0xe000..=0xf8ff | 0xf0000..=0x10ffff);
    !format_or_private
}

/// Go's `strconv.Unquote` for a double-quoted literal (quotes included). Returns raw bytes
/// because `\xNN` may produce invalid UTF-8, as Go strings allow.
pub fn unquote(literal: &[u8]) -> Result<Vec<u8>, String> {
    let invalid = || "invalid syntax".to_string();
    let inner = literal
        .strip_prefix(b"\"")
        .and_then(|rest| rest.strip_suffix(b"\""))
        .ok_or_else(invalid)?;
    let mut out = Vec::with_capacity(inner.len());
    let mut index = 0;
    while index < inner.len() {
        let byte = inner[index];
        match byte {
            b'"' | b'\n' => return Err(invalid()),
            b'\\' => index = unescape(inner, index + 1, &mut out).ok_or_else(invalid)?,
            _ => {
                out.push(byte);
                index += 1;
            }
        }
    }
    Ok(out)
}

/// Decodes the escape starting after a backslash at `start`; returns the index after it.
fn unescape(text: &[u8], start: usize, out: &mut Vec<u8>) -> Option<usize> {
    let kind = *text.get(start)?;
    let simple = match kind {
        b'a' => Some(7),
        b'b' => Some(8),
        b'f' => Some(12),
        b'n' => Some(b'\n'),
        b'r' => Some(b'\r'),
        b't' => Some(b'\t'),
        b'v' => Some(11),
        b'\\' => Some(b'\\'),
        b'"' => Some(b'"'),
        _ => None,
    };
    if let Some(byte) = simple {
        out.push(byte);
        return Some(start + 1);
    }
    let digits = |from: usize, count: usize, radix: u32| -> Option<u32> {
        let slice = text.get(from..from + count)?;
        u32::from_str_radix(std::str::from_utf8(slice).ok()?, radix).ok()
    };
    match kind {
        b'x' => out.push(u8::try_from(digits(start + 1, 2, 16)?).ok()?),
        b'0'..=b'7' => out.push(u8::try_from(digits(start, 3, 8)?).ok()?),
        b'u' | b'U' => {
            let width = if kind == b'u' { 4 } else { 8 };
            let c = char::from_u32(digits(start + 1, width, 16)?)?;
            out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
            return Some(start + 1 + width);
        }
        _ => return None,
    }
    // `\xNN` and `\NNN` both span three bytes after the backslash.
    Some(start + 3)
}

/// Go's `strconv.ParseInt(text, base, 64)` with its error strings.
pub fn parse_int(text: &str, base: u32) -> Result<i64, String> {
    let syntax = || format!("strconv.ParseInt: parsing {}: invalid syntax", quote(text.as_bytes()));
    let range =
        || format!("strconv.ParseInt: parsing {}: value out of range", quote(text.as_bytes()));
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() {
        return Err(syntax());
    }
    let mut magnitude: u64 = 0;
    for c in digits.chars() {
        let digit = c.to_digit(base).ok_or_else(syntax)?;
        // Go reports overflow at the first digit that overflows, before later bad digits.
        magnitude = magnitude
            .checked_mul(u64::from(base))
            .and_then(|m| m.checked_add(u64::from(digit)))
            .ok_or_else(range)?;
    }
    let limit = 1u64 << 63;
    match (negative, magnitude) {
        (false, m) if m >= limit => Err(range()),
        (true, m) if m > limit => Err(range()),
        (true, m) => Ok((m as i64).wrapping_neg()),
        (false, m) => Ok(m as i64),
    }
}

/// Go's `time.ParseDuration` for the units etcdctl's timeout flags take (`500ms`, `2s`, `1m30s`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("time: invalid duration {}", quote(text.as_bytes()));
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let body = text.strip_prefix('+').unwrap_or(text);
    if body.is_empty() || body.starts_with('-') {
        return Err(invalid());
    }
    let mut total_nanos = 0f64;
    let mut rest = body;
    while !rest.is_empty() {
        let number_len =
            rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(invalid)?;
        let number: f64 = rest[..number_len].parse().map_err(|_| invalid())?;
        rest = &rest[number_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit_nanos = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(invalid()),
        };
        total_nanos += number * unit_nanos;
        rest = &rest[unit_len..];
    }
    Ok(Duration::from_nanos(total_nanos.round() as u64))
}

/// Go's `time.Duration.String()`: `1.563756ms`, `850µs`, `5.000635485s`, `1m0.5s`.
pub fn duration_string(duration: Duration) -> String {
    let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", with_fraction(nanos, 3));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", with_fraction(nanos, 6));
    }
    let seconds = nanos / 1_000_000_000;
    let fraction = with_fraction(nanos % 1_000_000_000 + (seconds % 60) * 1_000_000_000, 9);
    let minutes = seconds / 60;
    match (minutes / 60, minutes % 60) {
        (0, 0) => format!("{fraction}s"),
        (0, m) => format!("{m}m{fraction}s"),
        (h, m) => format!("{h}h{m}m{fraction}s"),
    }
}

/// `value / 10^precision` with Go's fraction formatting: trailing zeros and a bare point dropped.
fn with_fraction(value: u64, precision: u32) -> String {
    let scale = 10u64.pow(precision);
    let fraction = value % scale;
    if fraction == 0 {
        return (value / scale).to_string();
    }
    let digits = format!("{fraction:0width$}", width = precision as usize);
    format!("{}.{}", value / scale, digits.trim_end_matches('0'))
}

/// go-humanize's `Bytes` (SI units), which etcdctl uses for `DB SIZE`: `20 kB`, `1.5 MB`.
pub fn humanize_bytes(size: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if size < 10 {
        return format!("{size} B");
    }
    let exponent = ((size as f64).ln() / 1000f64.ln()).floor();
    let unit = UNITS[exponent as usize];
    let value = ((size as f64) / 1000f64.powf(exponent) * 10.0 + 0.5).floor() / 10.0;
    if value < 10.0 {
        format!("{value:.1} {unit}")
    } else {
        format!("{value:.0} {unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(actual: impl std::fmt::Debug, expected: &str) {
        assert_eq!(format!("{actual:?}"), expected);
    }

    #[test]
    fn quote_matches_go() {
        check(quote(b"foo"), r#""\"foo\"""#);
        check(quote(b"va\"l"), r#""\"va\\\"l\"""#);
        assert_eq!(quote(b"uni\xff\x01\xc3\xa9"), r#""uni\xff\x01é""#);
        assert_eq!(quote(b"a\tb\n\x7f"), r#""a\tb\n\x7f""#);
        assert_eq!(quote("\u{200b}\u{a0}".as_bytes()), r#""\u200b\u00a0""#);
        assert_eq!(quote(b""), r#""""#);
    }

    #[test]
    fn unquote_matches_go() {
        type Case = (&'static [u8], Result<&'static [u8], &'static str>);
        let cases: [Case; 7] = [
            (br#""k""#, Ok(b"k")),
            (br#""x\\ty""#, Ok(b"x\\ty")),
            (br#""\x41\101\u00e9""#, Ok("AAé".as_bytes())),
            (br#""\xff""#, Ok(b"\xff")),
            (br#""\q""#, Err("invalid syntax")),
            (br#""a"b""#, Err("invalid syntax")),
            (br#"'a'"#, Err("invalid syntax")),
        ];
        for (input, expected) in cases {
            let expected = expected.map(<[u8]>::to_vec).map_err(str::to_string);
            assert_eq!(unquote(input), expected, "{}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn parse_int_matches_go() {
        check(parse_int("12", 10), "Ok(12)");
        check(parse_int("-ff", 16), "Ok(-255)");
        check(parse_int("2040a20e583fd942", 16), "Ok(2324035590216997186)");
        check(parse_int("abc", 10), r#"Err("strconv.ParseInt: parsing \"abc\": invalid syntax")"#);
        check(
            parse_int("0x12", 16),
            r#"Err("strconv.ParseInt: parsing \"0x12\": invalid syntax")"#,
        );
        check(parse_int("", 16), r#"Err("strconv.ParseInt: parsing \"\": invalid syntax")"#);
        check(
            parse_int("9223372036854775808", 10),
            r#"Err("strconv.ParseInt: parsing \"9223372036854775808\": value out of range")"#,
        );
        check(parse_int("-9223372036854775808", 10), "Ok(-9223372036854775808)");
    }

    #[test]
    fn durations_match_go() {
        let cases = [
            (0, "0s"),
            (999, "999ns"),
            (1_500, "1.5µs"),
            (1_563_756, "1.563756ms"),
            (3_653_870, "3.65387ms"),
            (5_000_635_485, "5.000635485s"),
            (60_500_000_000, "1m0.5s"),
            (3_600_000_000_000, "1h0m0s"),
        ];
        for (nanos, expected) in cases {
            assert_eq!(duration_string(Duration::from_nanos(nanos)), expected);
        }
        check(parse_duration("2s"), "Ok(2s)");
        check(parse_duration("1m30s"), "Ok(90s)");
        check(parse_duration("1.5ms"), "Ok(1.5ms)");
        check(parse_duration("5"), r#"Err("time: invalid duration \"5\"")"#);
    }

    #[test]
    fn humanize_matches_go_humanize() {
        let cases = [
            (0, "0 B"),
            (9, "9 B"),
            (20480, "20 kB"),
            (24576, "25 kB"),
            (1000, "1.0 kB"),
            (1_500_000, "1.5 MB"),
            (999_999, "1000 kB"),
            (8 << 30, "8.6 GB"),
        ];
        for (size, expected) in cases {
            assert_eq!(humanize_bytes(size), expected);
        }
    }
}
