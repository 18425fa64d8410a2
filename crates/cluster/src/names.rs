//! Name and label validation, as the apiserver does it (k8s.io/apimachinery
//! `pkg/util/validation/validation.go`: `IsDNS1123Label`, `IsDNS1123Subdomain`,
//! `IsDNS1035Label`, `IsQualifiedName`, `IsValidLabelValue`, `IsValidPortName`), plus the lab's
//! own rule for client names (they become namespace and file names in real mode).
//!
//! Each check returns `Err(reason)`, a phrase that follows the quoted value in a message:
//! `"../evil" is not a valid name: must be a DNS-1123 subdomain (...)`.

/// `IsDNS1123Label`: at most 63 characters.
pub const DNS1123_LABEL_MAX: usize = 63;
/// `IsDNS1123Subdomain`: at most 253 characters.
pub const DNS1123_SUBDOMAIN_MAX: usize = 253;
/// `IsValidPortName`: at most 15 characters (IANA service name).
pub const PORT_NAME_MAX: usize = 15;
/// Real mode names a client's namespace `nplab-cl-<name>`; the host crate keeps namespace
/// names within 48 characters (`host::netns::MAX_NAME`) and would hash longer ones, so a
/// client name has at most 48 - 9 characters and stays readable in `ip netns`.
pub const CLIENT_NAME_MAX: usize = 48 - "nplab-cl-".len();

const LABEL_SHAPE: &str =
    "lower-case letters, digits and '-', starting and ending with a letter or digit";

fn alnum_lower(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn too_long(s: &str, max: usize) -> Result<(), String> {
    if s.len() > max {
        Err(format!("must be no more than {max} characters"))
    } else {
        Ok(())
    }
}

/// Shape of one RFC 1123 label, without the length rule.
fn label_shape(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && alnum_lower(b[0])
        && alnum_lower(b[b.len() - 1])
        && b.iter().all(|&c| alnum_lower(c) || c == b'-')
}

/// At most `max` characters and `ok`, else `Err(shape)`.
fn shaped(s: &str, max: usize, ok: impl Fn(&str) -> bool, shape: &str) -> Result<(), String> {
    too_long(s, max)?;
    if ok(s) {
        Ok(())
    } else {
        Err(format!("must be {shape}"))
    }
}

/// `IsDNS1123Label`: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters (namespaces).
pub fn dns1123_label(s: &str) -> Result<(), String> {
    shaped(
        s,
        DNS1123_LABEL_MAX,
        label_shape,
        &format!("a DNS-1123 label ({LABEL_SHAPE})"),
    )
}

/// `IsDNS1123Subdomain`: dot-separated DNS-1123 labels, at most 253 characters
/// (Deployment and node names). No `/`, no `..`, no leading or trailing dot.
pub fn dns1123_subdomain(s: &str) -> Result<(), String> {
    let ok = |s: &str| s.split('.').all(label_shape);
    let shape = format!("a DNS-1123 subdomain ({LABEL_SHAPE}, or several such joined by '.')");
    shaped(s, DNS1123_SUBDOMAIN_MAX, ok, &shape)
}

/// `IsDNS1035Label`: `[a-z]([-a-z0-9]*[a-z0-9])?`, at most 63 characters (Service names).
pub fn dns1035_label(s: &str) -> Result<(), String> {
    let ok = |s: &str| label_shape(s) && s.as_bytes()[0].is_ascii_lowercase();
    let shape = "a DNS-1035 label (lower-case letters, digits and '-', starting with a letter and ending with a letter or digit)";
    shaped(s, DNS1123_LABEL_MAX, ok, shape)
}

/// The name part of a qualified name / a non-empty label value:
/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`.
fn qualified_shape(s: &str) -> bool {
    let b = s.as_bytes();
    let end = |c: u8| c.is_ascii_alphanumeric();
    !b.is_empty()
        && end(b[0])
        && end(b[b.len() - 1])
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

const QUALIFIED_SHAPE: &str =
    "letters, digits, '-', '_' and '.', starting and ending with a letter or digit";

/// `IsQualifiedName` (label keys): `[prefix/]name`, prefix a DNS-1123 subdomain, name at most
/// 63 characters.
pub fn label_key(s: &str) -> Result<(), String> {
    let name = match s.split_once('/') {
        Some((prefix, name)) => {
            if prefix.is_empty() {
                return Err("prefix part must be non-empty".to_string());
            }
            dns1123_subdomain(prefix).map_err(|e| format!("prefix part {e}"))?;
            name
        }
        None => s,
    };
    if name.is_empty() {
        return Err("name part must be non-empty".to_string());
    }
    let shape = format!("a qualified name ([prefix/]name; name: {QUALIFIED_SHAPE})");
    shaped(name, DNS1123_LABEL_MAX, qualified_shape, &shape).map_err(|e| {
        if e.starts_with("must be no more") {
            format!("name part {e}")
        } else {
            e
        }
    })
}

/// `IsValidLabelValue`: empty, or at most 63 characters of the qualified-name shape.
pub fn label_value(s: &str) -> Result<(), String> {
    let ok = |s: &str| s.is_empty() || qualified_shape(s);
    let shape = format!("a valid label value (empty, or {QUALIFIED_SHAPE})");
    shaped(s, DNS1123_LABEL_MAX, ok, &shape)
}

/// `IsValidPortName` (IANA_SVC_NAME): 1-15 of `[-a-z0-9]`, at least one letter, no `--`,
/// no leading or trailing `-`.
pub fn port_name(s: &str) -> Result<(), String> {
    let ok =
        |s: &str| label_shape(s) && !s.contains("--") && s.bytes().any(|c| c.is_ascii_lowercase());
    let shape = "an IANA_SVC_NAME (at most 15 lower-case letters, digits and '-', at least one letter, no '--', starting and ending with a letter or digit)";
    shaped(s, PORT_NAME_MAX, ok, shape)
}

/// The lab's rule for client names: a DNS-1123 label (no `/`, `.`, NUL, so never a path) of
/// at most [`CLIENT_NAME_MAX`] characters, so `nplab-cl-<name>` is a namespace name real mode
/// can create unchanged.
pub fn client_name(s: &str) -> Result<(), String> {
    dns1123_label(s)?;
    if s.len() > CLIENT_NAME_MAX {
        return Err(format!(
            "must be no more than {CLIENT_NAME_MAX} characters (real mode names its network namespace nplab-cl-<name>, at most 48 characters)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    type Rule = fn(&str) -> Result<(), String>;

    /// (rule, accepted, refused), space-separated (`~` = empty string); many from
    /// apimachinery's validation_test.go.
    const CASES: &[(&str, Rule, &str, &str)] = &[
        (
            "dns1123_label",
            dns1123_label,
            "a abc a-1 a--1--2--b 0 01 1-0",
            "~ A - a- -a a.b a_b a/b ../evil a\0",
        ),
        (
            "dns1123_subdomain",
            dns1123_subdomain,
            "a.b a.b.c 1.2.3 a-1.b-2 web",
            "~ . .. ../evil a..b .a a. a/b A.b a_b",
        ),
        (
            "dns1035_label",
            dns1035_label,
            "a ab a-1 a--1",
            "0 1-a a.b A a- ~",
        ),
        (
            "label_key",
            label_key,
            "app k8s.io/app kubernetes.io/hostname A_b.c-d a/b",
            "~ /a a/ a/b/c -a Bad_/x",
        ),
        ("label_value", label_value, "~ nginx v1.2_x-Y", "-a a/b"),
        (
            "port_name",
            port_name,
            "http https-alt h2c a1",
            "~ 80 a--b -http HTTP http_ abcdefghijklmnop",
        ),
        ("client_name", client_name, "browser", "a.b ../x"),
    ];

    fn words(s: &str) -> impl Iterator<Item = &str> {
        s.split(' ').map(|w| if w == "~" { "" } else { w })
    }

    #[test]
    fn apimachinery_rules() {
        for (name, rule, good, bad) in CASES {
            for g in words(good) {
                assert_eq!(rule(g), Ok(()), "{name}({g:?})");
            }
            for b in words(bad) {
                assert!(rule(b).is_err(), "{name}({b:?}) accepted");
            }
        }
        let long = |n| "a".repeat(n);
        assert!(dns1123_label(&long(63)).is_ok() && dns1123_label(&long(64)).is_err());
        assert!(dns1123_subdomain(&long(253)).is_ok() && dns1123_subdomain(&long(254)).is_err());
        assert!(label_key(&long(64)).is_err() && label_value(&long(64)).is_err());
        assert!(label_key("a b").is_err() && label_value("a b").is_err());
        assert!(client_name(&long(39)).is_ok());
        let e = client_name(&long(40)).unwrap_err();
        assert!(e.contains("nplab-cl-"), "{e}");
    }
}
