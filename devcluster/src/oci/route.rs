//! Which endpoint a path under `/v2/` names; repository names may hold slashes, so the
//! endpoint is read from the end of the path.

use super::names::check_name;
use super::refusal::Refusal;

/// An endpoint of the registry, with the repository it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// `/v2/<name>/manifests/<reference>`.
    Manifest {
        /// The repository.
        name: String,
        /// The tag or digest, as written.
        reference: String,
    },
    /// `/v2/<name>/blobs/<digest>`.
    Blob {
        /// The repository.
        name: String,
        /// The digest, as written.
        digest: String,
    },
    /// `/v2/<name>/blobs/uploads/`: starts an upload.
    UploadStart {
        /// The repository.
        name: String,
    },
    /// `/v2/<name>/blobs/uploads/<id>`: an upload session.
    Upload {
        /// The repository.
        name: String,
        /// The session id.
        id: String,
    },
    /// `/v2/<name>/tags/list`.
    Tags {
        /// The repository.
        name: String,
    },
}

impl Route {
    /// Reads the part of the path after `/v2/`; the repository name must follow the
    /// specification's grammar.
    pub(crate) fn parse(rest: &str) -> Result<Self, Refusal> {
        let route = Self::split(rest).ok_or(Refusal::UnknownEndpoint)?;
        check_name(route.name())?;
        Ok(route)
    }

    /// The repository the endpoint is about.
    pub(crate) fn name(&self) -> &str {
        match self {
            Self::Manifest { name, .. }
            | Self::Blob { name, .. }
            | Self::UploadStart { name }
            | Self::Upload { name, .. }
            | Self::Tags { name } => name,
        }
    }

    fn split(rest: &str) -> Option<Self> {
        if let Some(name) = rest.strip_suffix("/tags/list") {
            return Some(Self::Tags { name: name.into() });
        }
        let (prefix, last) = rest.rsplit_once('/')?;
        if let Some(name) = prefix.strip_suffix("/manifests") {
            return Some(Self::Manifest {
                name: name.into(),
                reference: last.into(),
            });
        }
        if let Some(name) = prefix.strip_suffix("/blobs/uploads") {
            return Some(if last.is_empty() {
                Self::UploadStart { name: name.into() }
            } else {
                Self::Upload {
                    name: name.into(),
                    id: last.into(),
                }
            });
        }
        let name = prefix.strip_suffix("/blobs")?;
        Some(if last == "uploads" {
            Self::UploadStart { name: name.into() }
        } else {
            Self::Blob {
                name: name.into(),
                digest: last.into(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(rest: &str) -> Route {
        Route::parse(rest).unwrap_or_else(|e| panic!("{rest}: {e}"))
    }

    #[test]
    fn names_with_slashes_route_by_their_ending() {
        assert_eq!(
            route("team/controllers/floor/manifests/v1"),
            Route::Manifest {
                name: "team/controllers/floor".into(),
                reference: "v1".into()
            }
        );
        assert_eq!(
            route("team/floor/blobs/sha256:ab"),
            Route::Blob {
                name: "team/floor".into(),
                digest: "sha256:ab".into()
            }
        );
        assert_eq!(
            route("team/floor/blobs/uploads/"),
            Route::UploadStart {
                name: "team/floor".into()
            }
        );
        assert_eq!(
            route("team/floor/blobs/uploads/0a1b"),
            Route::Upload {
                name: "team/floor".into(),
                id: "0a1b".into()
            }
        );
        assert_eq!(
            route("team/floor/tags/list"),
            Route::Tags {
                name: "team/floor".into()
            }
        );
    }

    #[test]
    fn names_may_hold_the_endpoint_words() {
        assert_eq!(
            route("manifests/blobs/manifests/v1"),
            Route::Manifest {
                name: "manifests/blobs".into(),
                reference: "v1".into()
            }
        );
        assert_eq!(
            route("blobs/uploads/blobs/uploads/"),
            Route::UploadStart {
                name: "blobs/uploads".into()
            }
        );
    }

    #[test]
    fn other_paths_are_refused() {
        assert!(matches!(
            Route::parse("floor/referrers/sha256:ab"),
            Err(Refusal::UnknownEndpoint)
        ));
        assert!(matches!(
            Route::parse("floor"),
            Err(Refusal::UnknownEndpoint)
        ));
        assert!(matches!(
            Route::parse("Floor/manifests/v1"),
            Err(Refusal::NameInvalid { .. })
        ));
        assert!(matches!(
            Route::parse("/manifests/v1"),
            Err(Refusal::NameInvalid { .. })
        ));
    }
}
