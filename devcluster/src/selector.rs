//! Label selectors (equality- and set-based) and field selectors, parsed and matched.

use serde_json::{Map, Value};

use crate::json::get_path;

/// A selector that could not be parsed, worded as the API server words it.
#[derive(Debug, thiserror::Error)]
pub enum SelectorError {
    /// A label selector requirement is malformed.
    #[error("unable to parse requirement: {0}")]
    Label(String),
    /// A field selector term is malformed.
    #[error("invalid selector: '{0}'; can't understand '{1}'")]
    Field(String, String),
    /// A field selector value is malformed.
    #[error("{0}")]
    Value(String),
    /// The field is not supported for this resource.
    #[error("field label not supported: {0}")]
    UnsupportedField(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Exists,
    NotExists,
    Equals(String),
    NotEquals(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Gt(i64),
    Lt(i64),
}

/// A parsed label selector (equality- and set-based, as the API server reads
/// `labelSelector`); empty matches everything. The host reads selectors with
/// this parser too, so both accept and refuse the same texts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<(String, Op)>,
}

fn valid_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Whether a label key is valid (optional DNS prefix, name part of at most 63 characters).
pub(crate) fn valid_key(key: &str) -> bool {
    match key.split_once('/') {
        Some((prefix, name)) => {
            !prefix.is_empty()
                && prefix.len() <= 253
                && prefix
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.'))
                && valid_name_part(name)
        }
        None => valid_name_part(key),
    }
}

/// Whether a label value is valid (empty, or at most 63 alphanumerics, `-`, `_`, `.`).
pub(crate) fn valid_value(v: &str) -> bool {
    v.is_empty() || valid_name_part(v)
}

fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn parse_set(rest: &str, req: &str) -> Result<Vec<String>, SelectorError> {
    let inner = rest
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| SelectorError::Label(format!("found '{req}', expected: '(' and ')'")))?;
    let values: Vec<String> = inner.split(',').map(|v| v.trim().to_owned()).collect();
    for v in &values {
        if !valid_value(v) {
            return Err(SelectorError::Label(format!(
                "invalid label value: \"{v}\""
            )));
        }
    }
    Ok(values)
}

fn parse_requirement(req: &str) -> Result<(String, Op), SelectorError> {
    let req = req.trim();
    if req.is_empty() {
        return Err(SelectorError::Label(
            "found '', expected: identifier".into(),
        ));
    }
    let check_key = |k: &str| -> Result<String, SelectorError> {
        let k = k.trim();
        if valid_key(k) {
            Ok(k.to_owned())
        } else {
            Err(SelectorError::Label(format!("invalid label key \"{k}\"")))
        }
    };
    let check_value = |v: &str| -> Result<String, SelectorError> {
        let v = v.trim();
        if valid_value(v) {
            Ok(v.to_owned())
        } else {
            Err(SelectorError::Label(format!(
                "invalid label value: \"{v}\""
            )))
        }
    };
    if let Some(key) = req.strip_prefix('!') {
        return Ok((check_key(key)?, Op::NotExists));
    }
    if let Some((key, rest)) = req.split_once(char::is_whitespace) {
        let rest = rest.trim_start();
        if let Some(set) = rest.strip_prefix("notin") {
            return Ok((check_key(key)?, Op::NotIn(parse_set(set, req)?)));
        }
        if let Some(set) = rest.strip_prefix("in") {
            return Ok((check_key(key)?, Op::In(parse_set(set, req)?)));
        }
    }
    if let Some((k, v)) = req.split_once("!=") {
        return Ok((check_key(k)?, Op::NotEquals(check_value(v)?)));
    }
    if let Some((k, v)) = req.split_once("==") {
        return Ok((check_key(k)?, Op::Equals(check_value(v)?)));
    }
    if let Some((k, v)) = req.split_once('=') {
        return Ok((check_key(k)?, Op::Equals(check_value(v)?)));
    }
    for (sym, gt) in [('>', true), ('<', false)] {
        if let Some((k, v)) = req.split_once(sym) {
            let n: i64 = v.trim().parse().map_err(|_| {
                SelectorError::Label(format!(
                    "for 'Gt', 'Lt' operators, the value must be an integer: {v}"
                ))
            })?;
            return Ok((check_key(k)?, if gt { Op::Gt(n) } else { Op::Lt(n) }));
        }
    }
    if req.contains(['(', ')', ' ']) {
        return Err(SelectorError::Label(format!(
            "found '{req}', expected: !, identifier, or 'end of string'"
        )));
    }
    Ok((check_key(req)?, Op::Exists))
}

impl LabelSelector {
    /// Parses the `labelSelector` query parameter.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        if s.trim().is_empty() {
            return Ok(Self::default());
        }
        let requirements = split_top_level(s)
            .into_iter()
            .map(parse_requirement)
            .collect::<Result<_, _>>()?;
        Ok(Self { requirements })
    }

    /// Whether the selector selects everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether a label set matches.
    pub(crate) fn matches(&self, labels: &[(String, String)]) -> bool {
        self.matches_with(|k: &str| {
            labels
                .iter()
                .find(|(lk, _)| lk == k)
                .map(|(_, v)| v.as_str())
        })
    }

    /// Whether the labels `get` reads by key match.
    pub fn matches_with<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.requirements.iter().all(|(key, op)| {
            let value = get(key);
            match op {
                Op::Exists => value.is_some(),
                Op::NotExists => value.is_none(),
                Op::Equals(v) => value == Some(v.as_str()),
                Op::NotEquals(v) => value != Some(v.as_str()),
                Op::In(vs) => value.is_some_and(|x| vs.iter().any(|v| v == x)),
                Op::NotIn(vs) => value.is_none_or(|x| vs.iter().all(|v| v != x)),
                Op::Gt(n) => value
                    .and_then(|x| x.parse::<i64>().ok())
                    .is_some_and(|x| x > *n),
                Op::Lt(n) => value
                    .and_then(|x| x.parse::<i64>().ok())
                    .is_some_and(|x| x < *n),
            }
        })
    }
}

/// A parsed field selector.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct FieldSelector {
    terms: Vec<(String, bool, String)>,
}

/// Fields a resource may be selected by, beyond `metadata.name` and `metadata.namespace`.
/// What a field the object leaves out reads as: the apiserver formats the Go
/// zero value of booleans and counts.
fn absent_as(field: &str) -> &'static str {
    match field {
        "spec.unschedulable" | "spec.hostNetwork" => "false",
        "status.replicas" | "status.successful" => "0",
        _ => "",
    }
}

fn extra_fields(storage: &str) -> &'static [&'static str] {
    match storage {
        "/pods" => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        "/secrets" => &["type"],
        "/namespaces" => &["status.phase"],
        "/events" => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        "apps/replicasets" | "/replicationcontrollers" => &["status.replicas"],
        "/nodes" => &["spec.unschedulable"],
        "/services" => &["spec.clusterIP", "spec.type"],
        "batch/jobs" => &["status.successful"],
        "certificates.k8s.io/certificatesigningrequests" => &["spec.signerName"],
        _ => &[],
    }
}

/// Splits a field selector on the commas a backslash does not escape.
fn split_terms(s: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let (mut start, mut escaped) = (0, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            ',' => {
                terms.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&s[start..]);
    terms
}

/// Splits a term at its leftmost operator (`!=`, `==` or `=`), as the API
/// server does: field, whether it is an equality, value.
fn split_term(term: &str) -> Option<(&str, bool, &str)> {
    term.char_indices().find_map(|(i, _)| {
        let rest = &term[i..];
        [("!=", false), ("==", true), ("=", true)]
            .into_iter()
            .find(|(op, _)| rest.starts_with(op))
            .map(|(op, equal)| (&term[..i], equal, &rest[op.len()..]))
    })
}

/// A field selector value with its escapes (`\\`, `\,`, `\=`) resolved;
/// an unescaped `,` or `=` or another escape is an error, as in the API
/// server.
fn unescape_value(value: &str) -> Result<String, SelectorError> {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(c @ ('\\' | ',' | '=')) => out.push(c),
                Some(other) => {
                    return Err(SelectorError::Value(format!(
                        "invalid escape sequence: \\{other}"
                    )));
                }
                None => return Err(SelectorError::Value("invalid escape sequence: \\".into())),
            },
            ',' | '=' => {
                return Err(SelectorError::Value(format!(
                    "invalid field selector: unescaped character '{c}'"
                )));
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// A field selector value with `\\`, `,` and `=` escaped.
fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl FieldSelector {
    /// Parses the `fieldSelector` query parameter for the resource stored under `storage`:
    /// terms split on unescaped commas, each split at its leftmost operator, values unescaped.
    pub(crate) fn parse(s: &str, storage: &str) -> Result<Self, SelectorError> {
        let mut terms = Vec::new();
        for term in split_terms(s) {
            if term.trim().is_empty() {
                continue;
            }
            let Some((field, equal, value)) = split_term(term) else {
                return Err(SelectorError::Field(s.to_owned(), term.to_owned()));
            };
            let field = field.trim();
            if field != "metadata.name"
                && field != "metadata.namespace"
                && !extra_fields(storage).contains(&field)
            {
                return Err(SelectorError::UnsupportedField(field.to_owned()));
            }
            terms.push((field.to_owned(), equal, unescape_value(value.trim())?));
        }
        Ok(Self { terms })
    }

    /// Whether the selector selects everything.
    pub(crate) fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Whether an object matches.
    pub(crate) fn matches(&self, obj: &Map<String, Value>) -> bool {
        self.terms.iter().all(|(field, equal, value)| {
            let path: Vec<&str> = field.split('.').collect();
            let actual = match path.split_first() {
                Some((first, rest)) => obj.get(*first).and_then(|v| {
                    if rest.is_empty() {
                        Some(v)
                    } else {
                        get_path(v, rest)
                    }
                }),
                None => None,
            };
            let actual = match actual {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => absent_as(field).to_owned(),
                Some(other) => other.to_string(),
            };
            (actual == *value) == *equal
        })
    }
}

/// The selector in its canonical text, which parses back to it.
impl std::fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (index, (key, op)) in self.requirements.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            match op {
                Op::Exists => write!(f, "{key}")?,
                Op::NotExists => write!(f, "!{key}")?,
                Op::Equals(v) => write!(f, "{key}={v}")?,
                Op::NotEquals(v) => write!(f, "{key}!={v}")?,
                Op::In(vs) => write!(f, "{key} in ({})", vs.join(","))?,
                Op::NotIn(vs) => write!(f, "{key} notin ({})", vs.join(","))?,
                Op::Gt(n) => write!(f, "{key}>{n}")?,
                Op::Lt(n) => write!(f, "{key}<{n}")?,
            }
        }
        Ok(())
    }
}

/// The selector in its canonical text (values escaped), which parses back to it.
impl std::fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (index, (field, equal, value)) in self.terms.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            let op = if *equal { "=" } else { "!=" };
            write!(f, "{field}{op}{}", escape_value(value))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn l(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn equality_and_set_based_label_selectors() {
        let s = LabelSelector::parse("app=web,tier in (a, b),!legacy,env!=prod").unwrap();
        assert!(s.matches(&l(&[("app", "web"), ("tier", "a")])));
        assert!(!s.matches(&l(&[("app", "web"), ("tier", "c")])));
        assert!(!s.matches(&l(&[("app", "web"), ("tier", "a"), ("legacy", "")])));
        assert!(!s.matches(&l(&[("app", "web"), ("tier", "b"), ("env", "prod")])));
        let s = LabelSelector::parse("app notin (x),team").unwrap();
        assert!(s.matches(&l(&[("team", "t")])));
        assert!(!s.matches(&l(&[("team", "t"), ("app", "x")])));
    }

    #[test]
    fn bad_label_selectors_are_rejected() {
        for bad in ["app in (a", "a=b,", "===", "app=(x)", "a b c", "!"] {
            assert!(
                LabelSelector::parse(bad).is_err(),
                "{bad} should be rejected"
            );
        }
    }

    #[test]
    fn field_selectors_match_and_reject_unknown_fields() {
        let s = FieldSelector::parse("metadata.name=a,status.phase!=Failed", "/pods").unwrap();
        let pod = json!({"metadata": {"name": "a"}, "status": {"phase": "Running"}});
        assert!(s.matches(pod.as_object().unwrap()));
        assert!(FieldSelector::parse("spec.foo=a", "/configmaps").is_err());
        assert!(FieldSelector::parse("metadata.name", "/configmaps").is_err());
    }

    #[test]
    fn field_selectors_split_at_the_leftmost_operator_and_unescape_values() {
        let cm = |name: &str| {
            json!({"metadata": {"name": name}})
                .as_object()
                .cloned()
                .unwrap()
        };
        // The API server splits at the leftmost operator: here `==`, so the
        // value is `a!\=b`, that is `a!=b`. (This was split at `!=` and refused
        // as the field `metadata.name==a`.)
        let s = FieldSelector::parse(r"metadata.name==a!\=b", "/configmaps").unwrap();
        assert!(s.matches(&cm("a!=b")));
        assert_eq!(s.to_string(), r"metadata.name=a!\=b");
        // Escaped commas stay in the value; an empty term is skipped.
        let s = FieldSelector::parse(r"metadata.name=a\,b\\c,", "/configmaps").unwrap();
        assert!(s.matches(&cm(r"a,b\c")));
        assert_eq!(s.to_string(), r"metadata.name=a\,b\\c");
        for bad in [
            r"metadata.name=a=b",
            r"metadata.name=a\",
            r"metadata.name=a\x",
        ] {
            assert!(FieldSelector::parse(bad, "/configmaps").is_err(), "{bad}");
        }
    }

    #[test]
    fn selectors_render_to_text_that_parses_back() {
        let text = "a=b,!c,d!=,e in (f,),g notin (h),i>-3,j<4,k";
        let s = LabelSelector::parse(text).unwrap();
        assert_eq!(s.to_string(), "a=b,!c,d!=,e in (f,),g notin (h),i>-3,j<4,k");
        assert_eq!(LabelSelector::parse(&s.to_string()).unwrap(), s);
    }
}
