//! Python's way of writing values (`str()`, `repr()`, truthiness), for the messages and log lines
//! ComfyUI builds with f-strings, so ours read the same.

use serde_json::Value;

/// `repr(float)`: shortest round-trip digits, `.0` on whole numbers, exponent form outside
/// `1e-4 <= |f| < 1e16`.
pub(crate) fn float(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.into();
    }
    let magnitude = f.abs();
    if magnitude != 0.0 && !(1e-4..1e16).contains(&magnitude) {
        // Rust writes `1e-5`; Python writes `1e-05` and `1e+16`.
        let text = format!("{f:e}");
        let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
        let (sign, digits) = match exponent.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exponent),
        };
        return format!("{mantissa}e{sign}{digits:0>2}");
    }
    if f.fract() == 0.0 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

/// `repr()` of a JSON value read by Python's `json` module.
pub(crate) fn repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => number(n),
        Value::String(s) => repr_str(s),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(repr).collect();
            format!("[{}]", inner.join(", "))
        }
        Value::Object(map) => {
            let inner: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", repr_str(k), repr(v)))
                .collect();
            format!("{{{}}}", inner.join(", "))
        }
    }
}

/// `str()`: strings as they are, everything else as `repr()`.
pub(crate) fn str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => repr(other),
    }
}

fn number(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        i.to_string()
    } else if let Some(u) = n.as_u64() {
        u.to_string()
    } else {
        float(n.as_f64().unwrap_or(f64::NAN))
    }
}

pub(crate) fn repr_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python truthiness of a JSON value.
pub(crate) fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn floats_read_like_python() {
        assert_eq!(float(0.0), "0.0");
        assert_eq!(float(10.0), "10.0");
        assert_eq!(float(0.25), "0.25");
        assert_eq!(float(1e-5), "1e-05");
        assert_eq!(float(1.5e16), "1.5e+16");
        assert_eq!(float(-2.5), "-2.5");
    }

    #[test]
    fn repr_of_a_list_and_dict() {
        let v = json!(["nearest-exact", "bilinear"]);
        assert_eq!(repr(&v), "['nearest-exact', 'bilinear']");
        let v = json!({"details": "", "extra_info": {}, "n": null, "ok": true});
        assert_eq!(
            repr(&v),
            "{'details': '', 'extra_info': {}, 'n': None, 'ok': True}"
        );
        assert_eq!(repr(&json!("it's")), "\"it's\"");
        assert_eq!(str(&json!("plain")), "plain");
    }

    #[test]
    fn truthiness() {
        assert!(!truthy(&json!(0)));
        assert!(truthy(&json!(1)));
        assert!(!truthy(&json!("")));
        assert!(truthy(&json!([0])));
        assert!(!truthy(&json!(null)));
    }
}
