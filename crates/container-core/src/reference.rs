//! Image references, parsed by `oci-spec`'s distribution grammar (the same grammar as
//! Docker's `distribution/reference`) rather than by hand.

use std::fmt;
use std::str::FromStr;

use oci_spec::distribution::Reference;

use crate::error::{Error, Result};

/// A parsed, normalised image reference: `registry/repository[:tag][@digest]`.
///
/// A bare name means `docker.io/library/<name>:latest`, as with the Docker CLI. A
/// reference always has a tag or a digest, so a pull never asks for "all tags".
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    inner: Reference,
}

impl ImageRef {
    /// Parses `s`; a malformed reference is [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput).
    pub fn parse(s: &str) -> Result<ImageRef> {
        // Credentials written into a reference (`user:pass@host/x`, a URL) are refused
        // without echoing them: the text goes into errors, spans and logs.
        let before_path = s.split('/').next().unwrap_or_default();
        let userinfo = before_path.split_once('@').is_some_and(|(_, after)| {
            !after.starts_with("sha256:") && !after.starts_with("sha512:")
        });
        if s.contains("://") || userinfo {
            return Err(Error::invalid_input(
                "an image reference must not carry credentials or a scheme (`user:pass@host/...`, \
                 `https://...`); pass credentials as RegistryAuth (the reference is not shown)",
            ));
        }
        if s.trim() != s || s.is_empty() {
            return Err(Error::invalid_input(format!(
                "image reference {s:?} is empty or has surrounding whitespace"
            ))
            .with_resource(s));
        }
        let inner = Reference::try_from(s).map_err(|e| {
            Error::invalid_input(format!("malformed image reference {s:?}"))
                .with_resource(s)
                .with_source(e)
        })?;
        // The grammar crate accepts upper case in the path; Docker's normaliser does not
        // ("repository name must be lowercase"), and neither do registries.
        if inner.repository().bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(Error::invalid_input(format!(
                "malformed image reference {s:?}: repository name must be lowercase"
            ))
            .with_resource(s));
        }
        Ok(ImageRef { inner })
    }

    /// Registry host (`docker.io`, `127.0.0.1:5000`).
    pub fn registry(&self) -> &str {
        self.inner.registry()
    }

    /// Repository path (`library/busybox`).
    pub fn repository(&self) -> &str {
        self.inner.repository()
    }

    /// The tag, if the reference has one (`latest` when none was written and no digest).
    pub fn tag(&self) -> Option<&str> {
        self.inner.tag()
    }

    /// The digest, if the reference has one.
    pub fn digest(&self) -> Option<&str> {
        self.inner.digest()
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry(), self.repository())
    }

    /// The name an engine stores the image under: `name@digest`, else `name:tag`.
    pub fn engine_name(&self) -> String {
        match self.digest() {
            Some(d) => format!("{}@{d}", self.name()),
            None => format!("{}:{}", self.name(), self.tag().unwrap_or("latest")),
        }
    }

    /// What to ask the engine for besides the name: the digest when there is one (it pins
    /// the content), else the tag.
    pub fn tag_or_digest(&self) -> &str {
        self.digest().or(self.tag()).unwrap_or("latest")
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl FromStr for ImageRef {
    type Err = Error;
    fn from_str(s: &str) -> Result<ImageRef> {
        ImageRef::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn engine_names_keep_tag_or_digest() {
        let r = ImageRef::parse("busybox").expect("ref");
        assert_eq!(r.engine_name(), "docker.io/library/busybox:latest");
        let d = format!("sha256:{}", "b".repeat(64));
        let r = ImageRef::parse(&format!("127.0.0.1:5000/x@{d}")).expect("ref");
        assert_eq!(r.engine_name(), format!("127.0.0.1:5000/x@{d}"));
    }

    #[test]
    fn bare_names_normalise_like_the_docker_cli() {
        let r = ImageRef::parse("busybox").expect("parse");
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(r.tag_or_digest(), "latest");
        let r = ImageRef::parse("127.0.0.1:5000/container-rs/busybox:1").expect("parse");
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "container-rs/busybox");
        assert_eq!(r.tag(), Some("1"));
        assert_eq!(r.name(), "127.0.0.1:5000/container-rs/busybox");
    }

    #[test]
    fn credentials_in_a_reference_are_refused_and_never_echoed() {
        for r in [
            "user:hunter2@registry.example/team/app:1",
            "https://user:hunter2@registry.example/team/app",
            "hunter2@registry.example/app",
        ] {
            let e = ImageRef::parse(r).expect_err(r);
            assert_eq!(e.kind(), crate::ErrorKind::InvalidInput, "{r}");
            assert!(!format!("{e} {e:?}").contains("hunter2"), "{e:?}");
        }
        // A digest's `@` is fine.
        let d = format!("busybox@sha256:{}", "a".repeat(64));
        assert!(ImageRef::parse(&d).is_ok());
        let d = format!("127.0.0.1:5000/x/busybox@sha256:{}", "a".repeat(64));
        assert!(ImageRef::parse(&d).is_ok());
    }

    #[test]
    fn digest_wins_over_tag() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = ImageRef::parse(&format!("localhost:5000/x/y:1@{d}")).expect("parse");
        assert_eq!(r.digest(), Some(d.as_str()));
        assert_eq!(r.tag_or_digest(), d);
        let r = ImageRef::parse(&format!("localhost:5000/x/y@{d}")).expect("parse");
        assert_eq!(r.tag(), None);
    }

    #[test]
    fn malformed_references_are_invalid_input() {
        for bad in [
            "",
            " busybox",
            "UPPER/case",
            "a:b:c",
            "busybox:",
            "busybox@sha256:abc",
            "-leading",
            "x//y",
            "busybox:tag with space",
            "registry:5000/x@md5:0123",
        ] {
            let e = ImageRef::parse(bad).expect_err(bad);
            assert_eq!(e.kind(), crate::ErrorKind::InvalidInput, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn valid_references_round_trip(
            host in "(127\\.0\\.0\\.1:5000|example\\.com|localhost:[1-9][0-9]{0,3})",
            path in "[a-z0-9]{1,8}(/[a-z0-9]{1,8}){0,2}",
            tag in "[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}",
        ) {
            let s = format!("{host}/{path}:{tag}");
            let r = ImageRef::parse(&s).expect("valid");
            prop_assert_eq!(r.to_string(), s.clone());
            prop_assert_eq!(ImageRef::parse(&r.to_string()).expect("again"), r);
        }

        #[test]
        fn arbitrary_strings_never_panic(s in "\\PC{0,80}") {
            let _ = ImageRef::parse(&s);
        }

        #[test]
        fn whitespace_is_always_rejected(s in "[a-z]{1,8}[ \t\n][a-z]{1,8}") {
            prop_assert!(ImageRef::parse(&s).is_err());
        }
    }
}
