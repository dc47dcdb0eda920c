//! The string `format`s a custom resource's schema may name, checked as the apiextensions
//! server checks them (kube-openapi's format registry, with the Kubernetes name formats of
//! 1.34). A format the server does not know is not checked, as the server strips it.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::LazyLock;

use base64::Engine;
use regex::Regex;

/// Whether `value` has the format `format` (as a schema writes it: `date-time` and
/// `datetime` are one), or `None` for a format the server does not check.
pub(crate) fn check(format: &str, value: &str) -> Option<bool> {
    let normalized = format.replace('-', "");
    Some(match normalized.as_str() {
        "bsonobjectid" => value.len() == 24 && value.bytes().all(|b| b.is_ascii_hexdigit()),
        "uri" => is_request_uri(value),
        "email" => is_email(value),
        "hostname" => is_hostname(value),
        "ipv4" => parse_ip_sloppy(value).is_some() && value.contains('.'),
        "ipv6" => parse_ip_sloppy(value).is_some() && value.contains(':'),
        "cidr" => is_cidr(value),
        "mac" => is_mac(value),
        "uuid" => matches(&UUID, value),
        "uuid3" => matches(&UUID3, value),
        "uuid4" => matches(&UUID4, value),
        "uuid5" => matches(&UUID5, value),
        "isbn" => is_isbn10(value) || is_isbn13(value),
        "isbn10" => is_isbn10(value),
        "isbn13" => is_isbn13(value),
        "creditcard" => is_credit_card(value),
        "ssn" => matches(&SSN, value),
        "hexcolor" => matches(&HEX_COLOR, value),
        "rgbcolor" => matches(&RGB_COLOR, value),
        "byte" => base64::engine::general_purpose::STANDARD
            .decode(value)
            .is_ok(),
        "password" => true,
        "date" => is_date(value),
        "duration" => is_duration(value),
        "datetime" => is_date_time(value),
        "k8sshortname" => value.len() <= 63 && matches(&SHORT_NAME, value),
        "k8slongname" => value.len() <= 253 && matches(&LONG_NAME, value),
        _ => return None,
    })
}

fn matches(re: &LazyLock<Regex>, value: &str) -> bool {
    re.is_match(value)
}

fn regex(pattern: &str) -> Regex {
    Regex::new(pattern).expect("a format's pattern compiles")
}

static UUID: LazyLock<Regex> = LazyLock::new(|| {
    regex(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$")
});
static UUID3: LazyLock<Regex> = LazyLock::new(|| {
    regex(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?3[0-9a-f]{3}-?[0-9a-f]{4}-?[0-9a-f]{12}$")
});
static UUID4: LazyLock<Regex> = LazyLock::new(|| {
    regex(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?4[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$")
});
static UUID5: LazyLock<Regex> = LazyLock::new(|| {
    regex(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?5[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$")
});
static HOSTNAME: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"^([a-zA-Z0-9\p{S}\p{L}]((-?[a-zA-Z0-9\p{S}\p{L}]{0,62})?)|([a-zA-Z0-9\p{S}\p{L}](([a-zA-Z0-9-\p{S}\p{L}]{0,61}[a-zA-Z0-9\p{S}\p{L}])?)(\.)){1,}([a-zA-Z\p{L}]){2,63})$",
    )
});
static SSN: LazyLock<Regex> = LazyLock::new(|| regex(r"^\d{3}[- ]?\d{2}[- ]?\d{4}$"));
static HEX_COLOR: LazyLock<Regex> = LazyLock::new(|| regex(r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$"));
static RGB_COLOR: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"^rgb\(\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*,\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*,\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*\)$",
    )
});
static CREDIT_CARD: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"^(?:4[0-9]{12}(?:[0-9]{3})?|5[1-5][0-9]{14}|(222[1-9]|22[3-9][0-9]|2[3-6][0-9]{2}|27[01][0-9]|2720)[0-9]{12}|6(?:011|5[0-9][0-9])[0-9]{12}|3[47][0-9]{13}|3(?:0[0-5]|[68][0-9])[0-9]{11}|(?:2131|1800|35\d{3})\d{11}|6[27][0-9]{14})$",
    )
});
static SHORT_NAME: LazyLock<Regex> = LazyLock::new(|| regex(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"));
static LONG_NAME: LazyLock<Regex> =
    LazyLock::new(|| regex(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"));
static TIME_OF_DAY: LazyLock<Regex> = LazyLock::new(|| {
    regex(r"^([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?(z|([+-][0-9]{2}:[0-9]{2}))$")
});
static DURATION_PART: LazyLock<Regex> = LazyLock::new(|| regex(r"((\d+)\s*([A-Za-zµ]+))"));

/// A hostname as RFC 1034 writes it (letters of any script allowed), at most 255 bytes.
fn is_hostname(value: &str) -> bool {
    value.len() <= 255 && HOSTNAME.is_match(value)
}

/// An address as Kubernetes parses IPs: leading zeros in IPv4 octets are accepted.
fn parse_ip_sloppy(value: &str) -> Option<IpAddr> {
    if let Ok(ip) = value.parse::<IpAddr>() {
        return Some(ip);
    }
    let octets: Vec<&str> = value.split('.').collect();
    if octets.len() == 4
        && octets
            .iter()
            .all(|o| !o.is_empty() && o.len() <= 3 && o.bytes().all(|b| b.is_ascii_digit()))
    {
        let parsed: Vec<u8> = octets.iter().filter_map(|o| o.parse().ok()).collect();
        if let [a, b, c, d] = parsed[..] {
            return Some(IpAddr::V4(Ipv4Addr::new(a, b, c, d)));
        }
    }
    None
}

fn is_cidr(value: &str) -> bool {
    let Some((address, prefix)) = value.split_once('/') else {
        return false;
    };
    let Ok(bits) = prefix.parse::<u8>() else {
        return false;
    };
    match parse_ip_sloppy(address) {
        Some(IpAddr::V4(_)) => bits <= 32 && !address.contains(':'),
        Some(IpAddr::V6(_)) => bits <= 128,
        None => false,
    }
}

/// A MAC address as Go's `net.ParseMAC` reads it: 6, 8 or 20 octets, separated by `:` or
/// `-` (two hex digits each), or by `.` (four hex digits each).
fn is_mac(value: &str) -> bool {
    let hex =
        |part: &str, len: usize| part.len() == len && part.bytes().all(|b| b.is_ascii_hexdigit());
    let octets = |count: usize| matches!(count, 6 | 8 | 20);
    if value.contains('.') {
        let parts: Vec<&str> = value.split('.').collect();
        return octets(parts.len() * 2) && parts.iter().all(|p| hex(p, 4));
    }
    for separator in [':', '-'] {
        if value.contains(separator) {
            let parts: Vec<&str> = value.split(separator).collect();
            return octets(parts.len()) && parts.iter().all(|p| hex(p, 2));
        }
    }
    false
}

/// What Go's `url.ParseRequestURI` accepts: an absolute URI (a scheme) or an absolute path,
/// without spaces or control characters.
fn is_request_uri(value: &str) -> bool {
    if value.is_empty() || value.chars().any(|c| c.is_control() || c == ' ') {
        return false;
    }
    if value.starts_with('/') {
        return true;
    }
    let Some((scheme, _)) = value.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// An address as Go's `mail.ParseAddress` reads one: `local@domain`, optionally as
/// `Name <local@domain>`.
fn is_email(value: &str) -> bool {
    let address = match (value.rfind('<'), value.strip_suffix('>')) {
        (Some(open), Some(inner)) => &inner[open + 1..],
        _ => value.trim(),
    };
    let Some((local, domain)) = address.rsplit_once('@') else {
        return false;
    };
    let atom = |part: &str| {
        !part.is_empty()
            && part.split('.').all(|word| {
                !word.is_empty()
                    && word.chars().all(|c| {
                        c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
                    })
            })
    };
    atom(local) && (atom(domain) || (domain.starts_with('[') && domain.ends_with(']')))
}

fn is_isbn10(value: &str) -> bool {
    let digits: Vec<char> = value.chars().filter(|c| *c != ' ' && *c != '-').collect();
    if digits.len() != 10 {
        return false;
    }
    let mut sum = 0;
    for (i, c) in digits.iter().enumerate() {
        let v = match (i, c) {
            (9, 'X') => 10,
            (_, c) if c.is_ascii_digit() => c.to_digit(10).unwrap_or_default(),
            _ => return false,
        };
        sum += v * (10 - i as u32);
    }
    sum % 11 == 0
}

fn is_isbn13(value: &str) -> bool {
    let digits: Vec<u32> = value
        .chars()
        .filter(|c| *c != ' ' && *c != '-')
        .map(|c| c.to_digit(10))
        .collect::<Option<_>>()
        .unwrap_or_default();
    if digits.len() != 13 {
        return false;
    }
    let sum: u32 = digits[..12]
        .iter()
        .enumerate()
        .map(|(i, d)| if i % 2 == 0 { *d } else { d * 3 })
        .sum();
    (10 - sum % 10) % 10 == digits[12]
}

/// A card number by its issuer's pattern and the Luhn check, non-digits ignored.
fn is_credit_card(value: &str) -> bool {
    let digits: String = value.chars().filter(char::is_ascii_digit).collect();
    if !CREDIT_CARD.is_match(&digits) {
        return false;
    }
    let mut sum = 0;
    for (i, c) in digits.chars().rev().enumerate() {
        let mut d = c.to_digit(10).unwrap_or_default();
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum % 10 == 0
}

/// A full date, `2006-01-02`, that exists.
fn is_date(value: &str) -> bool {
    value.len() == 10 && value.parse::<jiff::civil::Date>().is_ok() && value.as_bytes()[4] == b'-'
}

/// A date-time as kube-openapi checks it: a date, `t`, a time of day and a zone.
fn is_date_time(value: &str) -> bool {
    if value.len() < 4 {
        return false;
    }
    let lower = value.to_lowercase();
    let parts: Vec<&str> = lower.split('t').collect();
    if parts.len() < 2 || !is_date(parts[0]) {
        return false;
    }
    TIME_OF_DAY
        .captures(parts[1])
        .is_some_and(|m| &m[1] <= "23" && &m[2] <= "59" && &m[3] <= "59")
}

/// A Go duration (`1h30m`), or the Scala form kube-openapi also reads: at least one number
/// with a unit it knows (`22 ns`, `3 days`, `1 week`).
fn is_duration(value: &str) -> bool {
    const UNITS: [&[&str]; 8] = [
        &["ns", "nano"],
        &["us", "µs", "micro"],
        &["ms", "milli"],
        &["s", "sec"],
        &["m", "min"],
        &["h", "hr", "hour"],
        &["d", "day"],
        &["w", "wk", "week"],
    ];
    is_go_duration(value)
        || DURATION_PART.captures_iter(value).any(|part| {
            let unit = part[3].trim().to_lowercase();
            part[2].parse::<i64>().is_ok()
                && UNITS.iter().any(|variants| {
                    variants.iter().enumerate().any(|(i, variant)| {
                        unit == *variant || (i + 1 == variants.len() && unit.starts_with(variant))
                    })
                })
        })
}

/// Go's `time.ParseDuration`: an optional sign, then numbers with units (`ns`, `us`, `µs`,
/// `ms`, `s`, `m`, `h`); `0` alone.
fn is_go_duration(value: &str) -> bool {
    let rest = value.strip_prefix(['-', '+']).unwrap_or(value);
    if rest == "0" {
        return true;
    }
    if rest.is_empty() {
        return false;
    }
    let mut s = rest;
    while !s.is_empty() {
        let number_end = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let number = &s[..number_end];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return false;
        }
        s = &s[number_end..];
        let unit_end = s
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(s.len());
        if !matches!(
            &s[..unit_end],
            "ns" | "us" | "µs" | "μs" | "ms" | "s" | "m" | "h"
        ) {
            return false;
        }
        s = &s[unit_end..];
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_accept_and_refuse_as_the_server_does() {
        let cases: &[(&str, &str, bool)] = &[
            ("uuid", "0f9d3a3c-1b2a-4c5d-8e9f-0a1b2c3d4e5f", true),
            ("uuid", "not-a-uuid", false),
            ("uuid4", "0f9d3a3c-1b2a-3c5d-8e9f-0a1b2c3d4e5f", false),
            ("ipv4", "10.0.0.1", true),
            ("ipv4", "::1", false),
            ("ipv6", "fe80::1", true),
            ("ipv6", "10.0.0.1", false),
            ("cidr", "10.0.0.0/8", true),
            ("cidr", "10.0.0.0/33", false),
            ("mac", "00:1a:2b:3c:4d:5e", true),
            ("mac", "00:1a:2b", false),
            ("hostname", "example.com", true),
            ("hostname", "-bad-", false),
            ("email", "someone@example.com", true),
            ("email", "someone", false),
            ("uri", "https://example.com/x", true),
            ("uri", "relative/path", false),
            ("date", "2026-02-28", true),
            ("date", "2026-02-30", false),
            ("date-time", "2026-02-28T10:20:30Z", true),
            ("datetime", "2026-02-28 10:20:30", false),
            ("duration", "1h30m", true),
            ("duration", "3 days", true),
            ("duration", "soon", false),
            ("byte", "aGVsbG8=", true),
            ("byte", "not base64!", false),
            ("bsonobjectid", "507f1f77bcf86cd799439011", true),
            ("hexcolor", "#ff0000", true),
            ("rgbcolor", "rgb(255, 0, 0)", true),
            ("isbn13", "978-0321751041", true),
            ("isbn10", "0321751043", true),
            ("ssn", "123-45-6789", true),
            ("creditcard", "4111 1111 1111 1111", true),
            ("creditcard", "4111 1111 1111 1112", false),
            ("k8s-short-name", "web-1", true),
            ("k8s-short-name", "Web", false),
            ("k8s-long-name", "a.b-c.d", true),
            ("password", "anything", true),
        ];
        for (format, value, valid) in cases {
            assert_eq!(check(format, value), Some(*valid), "{format} {value:?}");
        }
        assert_eq!(check("int32", "x"), None, "not a string format");
        assert_eq!(check("made-up", "x"), None, "an unknown format is stripped");
    }
}
