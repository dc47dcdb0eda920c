//! Repository names, tags and digests as the OCI Distribution Specification writes them.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;
use sha2::{Digest as _, Sha256};

use super::refusal::Refusal;

/// The specification's grammar for repository names: lower-case components joined by `/`.
static NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$")
        .expect("the repository name grammar is a valid regex")
});

/// The specification's grammar for tags.
static TAG: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$").expect("the tag grammar is a valid regex")
});

/// The only digest algorithm the registry supports.
const SHA256: &str = "sha256";

/// Checks a repository name against the specification's grammar.
pub(crate) fn check_name(name: &str) -> Result<(), Refusal> {
    if NAME.is_match(name) {
        Ok(())
    } else {
        Err(Refusal::NameInvalid {
            name: name.to_owned(),
        })
    }
}

/// A sha256 content digest, `sha256:` and 64 lower-case hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Digest(String);

impl Digest {
    /// The digest of `content`.
    pub(crate) fn of(content: &[u8]) -> Self {
        Self(format!("{SHA256}:{:x}", Sha256::digest(content)))
    }

    /// Reads a digest; other algorithms are refused as unsupported.
    pub(crate) fn parse(text: &str) -> Result<Self, Refusal> {
        let invalid = |reason: &str| Refusal::DigestInvalid {
            digest: text.to_owned(),
            reason: format!("invalid digest {text:?}: {reason}"),
        };
        let (algorithm, encoded) = text
            .split_once(':')
            .ok_or_else(|| invalid("expected algorithm:hex"))?;
        let lower = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        if algorithm.is_empty() || encoded.is_empty() || !algorithm.bytes().all(lower) {
            return Err(invalid("expected algorithm:hex"));
        }
        if algorithm != SHA256 {
            return Err(Refusal::DigestUnsupported {
                algorithm: algorithm.to_owned(),
            });
        }
        let hex = encoded.len() == 64
            && encoded
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hex {
            return Err(invalid("a sha256 digest is 64 lower-case hex digits"));
        }
        Ok(Self(text.to_owned()))
    }

    /// Refuses `content` unless this is its digest.
    pub(crate) fn verify(&self, content: &[u8]) -> Result<(), Refusal> {
        let actual = Self::of(content);
        if actual == *self {
            Ok(())
        } else {
            Err(Refusal::DigestInvalid {
                digest: self.0.clone(),
                reason: format!("the content's digest is {actual}, not {self}"),
            })
        }
    }

    /// The digest as written, e.g. `sha256:9f86…`.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What follows `/manifests/`: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reference {
    /// A tag, e.g. `v1`.
    Tag(String),
    /// A manifest digest.
    Digest(Digest),
}

impl Reference {
    /// Reads a reference: a digest when it holds a `:`, else a tag.
    pub(crate) fn parse(text: &str) -> Result<Self, Refusal> {
        if text.contains(':') {
            return Digest::parse(text).map(Self::Digest);
        }
        if TAG.is_match(text) {
            Ok(Self::Tag(text.to_owned()))
        } else {
            Err(Refusal::ManifestInvalid {
                reason: format!("invalid tag {text:?}"),
            })
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tag(tag) => f.write_str(tag),
            Self::Digest(digest) => digest.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_grammar() {
        for good in ["floor", "team/controllers/floor", "a.b_c__d--e/f0"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Team/floor",
            "team//floor",
            "/floor",
            "floor/",
            "a..b",
            "-a",
        ] {
            assert!(
                matches!(check_name(bad), Err(Refusal::NameInvalid { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn digests_are_sha256_only() {
        let digest = Digest::of(b"hello");
        assert_eq!(
            digest.as_str(),
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(Digest::parse(digest.as_str()).unwrap(), digest);
        assert!(digest.verify(b"hello").is_ok());
        assert!(matches!(
            digest.verify(b"hello!"),
            Err(Refusal::DigestInvalid { .. })
        ));
        assert!(matches!(
            Digest::parse("sha512:abcd"),
            Err(Refusal::DigestUnsupported { .. })
        ));
        for bad in [
            "sha256:ABCD",
            "sha256:",
            "sha256",
            &digest.as_str().to_uppercase(),
        ] {
            assert!(
                matches!(Digest::parse(bad), Err(Refusal::DigestInvalid { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn references_are_tags_or_digests() {
        assert_eq!(Reference::parse("v1").unwrap(), Reference::Tag("v1".into()));
        let digest = Digest::of(b"m");
        assert_eq!(
            Reference::parse(digest.as_str()).unwrap(),
            Reference::Digest(digest)
        );
        assert!(matches!(
            Reference::parse(".hidden"),
            Err(Refusal::ManifestInvalid { .. })
        ));
    }
}
