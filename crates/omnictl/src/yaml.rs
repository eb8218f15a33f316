//! A small YAML emitter for JSON values, in the style omnictl prints:
//! two-space indentation, sequences indented under their key, strings plain
//! unless YAML would read them as something else, key order preserved.

use serde_json::{Map, Value};

/// Renders a value as a YAML document (no leading `---`), ending in a newline.
pub fn to_string(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => write_map(&mut out, map, 0, false),
        Value::Array(items) if !items.is_empty() => write_seq(&mut out, items, 0, false),
        scalar => {
            write_inline(&mut out, scalar, 0);
            out.push('\n');
        }
    }
    out
}

fn indent(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

/// Writes `key: value` lines at `level`. With `continued`, the first line
/// goes right after text already on the line (a `- ` of a sequence).
fn write_map(out: &mut String, map: &Map<String, Value>, level: usize, continued: bool) {
    for (i, (key, value)) in map.iter().enumerate() {
        if i > 0 || !continued {
            indent(out, level);
        }
        write_scalar_str(out, key, level);
        out.push(':');
        write_value_after(out, value, level);
    }
}

fn write_seq(out: &mut String, items: &[Value], level: usize, continued: bool) {
    for (i, item) in items.iter().enumerate() {
        if i > 0 || !continued {
            indent(out, level);
        }
        out.push('-');
        match item {
            Value::Object(m) if !m.is_empty() => {
                out.push(' ');
                write_map(out, m, level + 2, true);
            }
            Value::Array(a) if !a.is_empty() => {
                out.push(' ');
                write_seq(out, a, level + 2, true);
            }
            scalar => {
                out.push(' ');
                write_inline(out, scalar, level + 2);
                out.push('\n');
            }
        }
    }
}

/// After `key:`: a nested block on the next lines, or ` scalar`.
fn write_value_after(out: &mut String, value: &Value, level: usize) {
    match value {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            write_map(out, m, level + 2, false);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            write_seq(out, a, level + 2, false);
        }
        scalar => {
            out.push(' ');
            write_inline(out, scalar, level + 2);
            out.push('\n');
        }
    }
}

/// Scalars and empty collections. `block_level` is the indentation for the
/// lines of a literal block string.
fn write_inline(out: &mut String, value: &Value, block_level: usize) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_scalar_str(out, s, block_level),
        Value::Array(_) => out.push_str("[]"),
        Value::Object(_) => out.push_str("{}"),
    }
}

fn write_scalar_str(out: &mut String, s: &str, block_level: usize) {
    if is_plain_safe(s) {
        out.push_str(s);
    } else if literal_block_ok(s) {
        write_literal_block(out, s, block_level);
    } else {
        write_double_quoted(out, s);
    }
}

/// Multi-line text as `|`, `|-` or `|+`, each line indented.
fn write_literal_block(out: &mut String, s: &str, level: usize) {
    let trailing = s.len() - s.trim_end_matches('\n').len();
    out.push_str(match trailing {
        0 => "|-",
        1 => "|",
        _ => "|+",
    });
    let body = s.strip_suffix('\n').unwrap_or(s);
    for line in body.split('\n') {
        out.push('\n');
        if !line.is_empty() {
            indent(out, level);
            out.push_str(line);
        }
    }
}

fn literal_block_ok(s: &str) -> bool {
    s.contains('\n')
        && !s.starts_with([' ', '\n'])
        && !s
            .chars()
            .any(|c| (c.is_control() && c != '\n') || c == '\u{feff}')
        && s.split('\n').all(|line| line.trim_end() == line)
}

fn write_double_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() || c == '\u{feff}' => {
                let code = c as u32;
                if code <= 0xff {
                    out.push_str(&format!("\\x{code:02x}"));
                } else {
                    out.push_str(&format!("\\u{code:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Whether `s` reads back as the same string when written plain.
fn is_plain_safe(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if s.trim() != s || s.chars().any(|c| c.is_control() || c == '\u{feff}') {
        return false;
    }
    if "[]{},#&*!|>'\"%@`".contains(first) {
        return false;
    }
    if matches!(first, '-' | '?' | ':') && s[1..].chars().next().is_none_or(|c| c == ' ') {
        return false;
    }
    if s.starts_with("---") || s.starts_with("...") {
        return false;
    }
    if s.contains(": ") || s.contains(" #") || s.ends_with(':') {
        return false;
    }
    !looks_like_non_string(s)
}

/// Null, booleans (YAML 1.1 included), numbers, timestamps.
fn looks_like_non_string(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    if matches!(
        lower.as_str(),
        "~" | "null"
            | "true"
            | "false"
            | "yes"
            | "no"
            | "on"
            | "off"
            | "y"
            | "n"
            | ".inf"
            | "-.inf"
            | "+.inf"
            | ".nan"
    ) {
        return true;
    }
    let unsigned = lower.trim_start_matches(['-', '+']);
    let starts_numeric = unsigned.starts_with(|c: char| c.is_ascii_digit() || c == '.');
    if !starts_numeric {
        return false;
    }
    let no_underscores = unsigned.replace('_', "");
    if no_underscores.parse::<f64>().is_ok() {
        return true;
    }
    for prefix in ["0x", "0o", "0b"] {
        if let Some(rest) = no_underscores.strip_prefix(prefix) {
            if !rest.is_empty() && rest.chars().all(|c| c.is_ascii_hexdigit()) {
                return true;
            }
        }
    }
    // YAML 1.1 sexagesimal numbers (`1:30`) and dates (`2023-12-10...`).
    let sexagesimal = no_underscores.contains(':')
        && no_underscores
            .split(':')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit() || c == '.'));
    let date = no_underscores.len() >= 8
        && no_underscores.as_bytes()[..4]
            .iter()
            .all(u8::is_ascii_digit)
        && no_underscores.as_bytes()[4] == b'-';
    sexagesimal || date
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_maps_and_indented_sequences() {
        let v = json!({
            "metadata": {"namespace": "default", "id": "talos-default", "finalizers": ["A", "B"]},
            "spec": {"installimage": "", "kubernetesversion": "1.28.2", "features": {"enableworkloadproxy": false},
                     "backupconfiguration": null, "list": [{"a": 1, "b": {"c": 2}}, [1, 2]], "empty": [], "obj": {}}
        });
        let expected = "\
metadata:
  namespace: default
  id: talos-default
  finalizers:
    - A
    - B
spec:
  installimage: \"\"
  kubernetesversion: 1.28.2
  features:
    enableworkloadproxy: false
  backupconfiguration: null
  list:
    - a: 1
      b:
        c: 2
    - - 1
      - 2
  empty: []
  obj: {}
";
        assert_eq!(to_string(&v), expected);
    }

    #[test]
    fn quoting() {
        for plain in [
            "s3",
            "http://127.0.0.1:9000",
            "v1.28.2",
            "1.5.5",
            "<cluster-name>",
            "us-east-1",
            "a-b",
            "-x",
            "omni.sidero.dev/cluster",
            "not initialized",
        ] {
            assert!(is_plain_safe(plain), "{plain}");
        }
        for quoted in [
            "",
            "true",
            "No",
            "null",
            "~",
            "1",
            "-1",
            "1.5",
            "1e3",
            "0x1f",
            "1_000",
            "12:30",
            "2023-12-10",
            "a: b",
            "a #b",
            "x:",
            "- x",
            "-",
            "*a",
            "'q'",
            " pad",
            "---",
            "tab\there",
            ".inf",
        ] {
            assert!(!is_plain_safe(quoted), "{quoted:?}");
        }
        assert_eq!(
            to_string(&json!({"a": "1", "b": "\"hi\" \\", "c": "\u{1}", "d": "say \"hi\""})),
            "a: \"1\"\nb: \"\\\"hi\\\" \\\\\"\nc: \"\\x01\"\nd: say \"hi\"\n"
        );
    }

    #[test]
    fn multi_line_strings_are_literal_blocks() {
        let v = json!({"pem": "-----BEGIN X-----\nabc\n\ndef\n-----END X-----\n", "msg": "one\ntwo", "items": ["x\ny\n\n"]});
        let expected = "pem: |\n  -----BEGIN X-----\n  abc\n\n  def\n  -----END X-----\nmsg: |-\n  one\n  two\nitems:\n  - |+\n    x\n    y\n\n";
        assert_eq!(to_string(&v), expected);
        // Leading spaces need an indentation indicator: quote instead.
        assert_eq!(to_string(&json!({"a": " x\ny"})), "a: \" x\\ny\"\n");
    }
}
