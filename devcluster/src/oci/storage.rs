//! The registry's content in memory: per repository, blobs and manifests by digest and tags;
//! and the upload sessions in progress.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use http::HeaderValue;
use parking_lot::{Mutex, RwLock};
use serde_json::Value;

use super::names::{Digest, Reference};
use super::refusal::Refusal;

/// The media type a manifest pushed without one gets.
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Everything the registry holds.
#[derive(Debug, Default)]
pub(crate) struct Storage {
    repositories: RwLock<HashMap<String, Repository>>,
    uploads: Mutex<HashMap<String, Upload>>,
}

/// One repository's content; it exists once something was stored in it.
#[derive(Debug, Default)]
struct Repository {
    blobs: HashMap<Digest, Bytes>,
    manifests: HashMap<Digest, Manifest>,
    tags: BTreeMap<String, Digest>,
}

/// A stored manifest: its bytes exactly as pushed and the media type it was pushed with.
#[derive(Debug, Clone)]
pub(crate) struct Manifest {
    /// The bytes as pushed.
    pub bytes: Bytes,
    /// The media type it was pushed with: the request's `Content-Type`, else the manifest's
    /// `mediaType`, else the OCI image manifest's.
    pub media_type: HeaderValue,
}

/// An upload session: the bytes received so far, for one repository.
#[derive(Debug)]
struct Upload {
    name: String,
    data: Vec<u8>,
}

impl Storage {
    /// The blob `digest` of repository `name`.
    pub(crate) fn blob(&self, name: &str, digest: &Digest) -> Result<Bytes, Refusal> {
        let repositories = self.repositories.read();
        let repository = repository(&repositories, name)?;
        repository
            .blobs
            .get(digest)
            .cloned()
            .ok_or_else(|| Refusal::BlobUnknown {
                digest: digest.clone(),
            })
    }

    /// Stores a blob whose digest the caller has checked.
    fn put_blob(&self, name: &str, digest: Digest, content: Bytes) {
        self.repositories
            .write()
            .entry(name.to_owned())
            .or_default()
            .blobs
            .insert(digest, content);
    }

    /// Stores `content` as a blob of `name` after checking it against `digest`.
    pub(crate) fn put_verified_blob(
        &self,
        name: &str,
        digest: &Digest,
        content: Bytes,
    ) -> Result<(), Refusal> {
        digest.verify(&content)?;
        self.put_blob(name, digest.clone(), content);
        Ok(())
    }

    /// Replaces the bytes of blob `digest` of `name` without checking them, as a registry
    /// that corrupts or swaps content would serve them (fault injection); false when there
    /// is no such blob.
    pub(crate) fn tamper_blob(&self, name: &str, digest: &Digest, content: Bytes) -> bool {
        let mut repositories = self.repositories.write();
        match repositories
            .get_mut(name)
            .and_then(|repository| repository.blobs.get_mut(digest))
        {
            Some(blob) => {
                *blob = content;
                true
            }
            None => false,
        }
    }

    /// Makes the blob `digest` of repository `from` a blob of `name` too; false when `from`
    /// does not hold it.
    pub(crate) fn mount_blob(&self, name: &str, from: &str, digest: &Digest) -> bool {
        let found = self
            .repositories
            .read()
            .get(from)
            .and_then(|repository| repository.blobs.get(digest).cloned());
        match found {
            Some(content) => {
                self.put_blob(name, digest.clone(), content);
                true
            }
            None => false,
        }
    }

    /// The manifest `reference` of repository `name`, with its digest.
    pub(crate) fn manifest(
        &self,
        name: &str,
        reference: &Reference,
    ) -> Result<(Digest, Manifest), Refusal> {
        let repositories = self.repositories.read();
        let repository = repository(&repositories, name)?;
        let unknown = || Refusal::ManifestUnknown {
            reference: reference.to_string(),
        };
        let digest = match reference {
            Reference::Tag(tag) => repository.tags.get(tag).ok_or_else(unknown)?,
            Reference::Digest(digest) => digest,
        };
        let manifest = repository.manifests.get(digest).ok_or_else(unknown)?;
        Ok((digest.clone(), manifest.clone()))
    }

    /// Stores a manifest under its digest and, for a tag, points the tag at it (pushing a tag
    /// again moves it; the manifest it named stays, by digest). Every blob it
    /// names (`config`, `layers`) and every manifest it names (an index's `manifests`) must be
    /// in the repository already; a digest reference must be the body's digest.
    pub(crate) fn put_manifest(
        &self,
        name: &str,
        reference: &Reference,
        bytes: Bytes,
        content_type: Option<&str>,
    ) -> Result<Digest, Refusal> {
        let digest = Digest::of(&bytes);
        if let Reference::Digest(expected) = reference {
            expected.verify(&bytes)?;
        }
        let document: Value =
            serde_json::from_slice(&bytes).map_err(|e| Refusal::ManifestInvalid {
                reason: format!("not JSON: {e}"),
            })?;
        let media_type = content_type
            .or_else(|| document["mediaType"].as_str())
            .unwrap_or(OCI_MANIFEST);
        let media_type =
            HeaderValue::from_str(media_type).map_err(|_| Refusal::ManifestInvalid {
                reason: format!("media type {media_type:?} cannot be a Content-Type"),
            })?;
        let (blobs, manifests) = references(&document)?;

        let mut repositories = self.repositories.write();
        let held = repositories.get(name);
        let missing = blobs
            .iter()
            .find(|d| !held.is_some_and(|r| r.blobs.contains_key(*d)))
            .or_else(|| {
                manifests
                    .iter()
                    .find(|d| !held.is_some_and(|r| r.manifests.contains_key(*d)))
            });
        if let Some(missing) = missing {
            return Err(Refusal::ManifestBlobUnknown {
                digest: missing.clone(),
            });
        }
        let repository = repositories.entry(name.to_owned()).or_default();
        repository
            .manifests
            .insert(digest.clone(), Manifest { bytes, media_type });
        if let Reference::Tag(tag) = reference {
            repository.tags.insert(tag.clone(), digest.clone());
        }
        Ok(digest)
    }

    /// The tags of repository `name` in lexical order, those after `last` when given, at most
    /// `n` of them when given.
    pub(crate) fn tags(
        &self,
        name: &str,
        last: Option<&str>,
        n: Option<usize>,
    ) -> Result<Vec<String>, Refusal> {
        let repositories = self.repositories.read();
        let repository = repository(&repositories, name)?;
        let after = |tag: &&String| last.is_none_or(|last| tag.as_str() > last);
        Ok(repository
            .tags
            .keys()
            .filter(after)
            .take(n.unwrap_or(usize::MAX))
            .cloned()
            .collect())
    }

    /// Opens an upload session for repository `name` and returns its id.
    pub(crate) fn start_upload(&self, name: &str) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        self.uploads.lock().insert(
            id.clone(),
            Upload {
                name: name.to_owned(),
                data: Vec::new(),
            },
        );
        id
    }

    /// How many bytes the upload `id` of repository `name` holds.
    pub(crate) fn upload_len(&self, name: &str, id: &str) -> Result<u64, Refusal> {
        let uploads = self.uploads.lock();
        Ok(upload(&uploads, name, id)?.data.len() as u64)
    }

    /// Appends a chunk to an upload; `start`, when the client said where the chunk goes, must
    /// be where the upload stands. Returns how many bytes the upload holds then.
    pub(crate) fn append_upload(
        &self,
        name: &str,
        id: &str,
        start: Option<u64>,
        chunk: &[u8],
        max_size: Option<u64>,
    ) -> Result<u64, Refusal> {
        let mut uploads = self.uploads.lock();
        let upload = upload_mut(&mut uploads, name, id)?;
        let held = upload.data.len() as u64;
        if let Some(start) = start.filter(|start| *start != held) {
            return Err(Refusal::ChunkOutOfOrder { start, held });
        }
        let total = held + chunk.len() as u64;
        if let Some(limit) = max_size.filter(|limit| total > *limit) {
            return Err(Refusal::TooLarge { limit });
        }
        upload.data.extend_from_slice(chunk);
        Ok(total)
    }

    /// Closes an upload: its bytes must have the `digest` the client gives; they become a
    /// blob of the repository. The session ends either way.
    pub(crate) fn finish_upload(
        &self,
        name: &str,
        id: &str,
        digest: &Digest,
    ) -> Result<(), Refusal> {
        let upload = self.cancel_upload(name, id)?;
        self.put_verified_blob(name, digest, Bytes::from(upload))
    }

    /// Ends an upload session and returns the bytes it held.
    pub(crate) fn cancel_upload(&self, name: &str, id: &str) -> Result<Vec<u8>, Refusal> {
        let mut uploads = self.uploads.lock();
        upload(&uploads, name, id)?;
        let upload = uploads.remove(id).expect("the upload was just found");
        Ok(upload.data)
    }
}

/// The repository `name`, or `NAME_UNKNOWN` when nothing was stored in it.
fn repository<'a>(
    repositories: &'a HashMap<String, Repository>,
    name: &str,
) -> Result<&'a Repository, Refusal> {
    repositories.get(name).ok_or_else(|| Refusal::NameUnknown {
        name: name.to_owned(),
    })
}

/// The upload `id`, which must belong to repository `name`.
fn upload<'a>(
    uploads: &'a HashMap<String, Upload>,
    name: &str,
    id: &str,
) -> Result<&'a Upload, Refusal> {
    uploads
        .get(id)
        .filter(|upload| upload.name == name)
        .ok_or_else(|| Refusal::UploadUnknown { id: id.to_owned() })
}

/// The upload `id`, which must belong to repository `name`, to append to.
fn upload_mut<'a>(
    uploads: &'a mut HashMap<String, Upload>,
    name: &str,
    id: &str,
) -> Result<&'a mut Upload, Refusal> {
    uploads
        .get_mut(id)
        .filter(|upload| upload.name == name)
        .ok_or_else(|| Refusal::UploadUnknown { id: id.to_owned() })
}

/// The digests a manifest names: blobs (`config`, `layers`) and manifests (an index's
/// `manifests`).
fn references(document: &Value) -> Result<(Vec<Digest>, Vec<Digest>), Refusal> {
    let digests = |descriptors: &[&Value]| -> Result<Vec<Digest>, Refusal> {
        descriptors
            .iter()
            .filter_map(|descriptor| descriptor["digest"].as_str())
            .map(Digest::parse)
            .collect()
    };
    let list = |field: &str| -> Vec<&Value> {
        document[field]
            .as_array()
            .map(|items| items.iter().collect())
            .unwrap_or_default()
    };
    let mut blobs = list("layers");
    blobs.push(&document["config"]);
    Ok((digests(&blobs)?, digests(&list("manifests"))?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest_naming(blobs: &[&Digest]) -> Bytes {
        let layers: Vec<Value> = blobs
            .iter()
            .map(|d| serde_json::json!({ "mediaType": "application/wasm", "digest": d.as_str(), "size": 1 }))
            .collect();
        Bytes::from(
            serde_json::to_vec(&serde_json::json!({ "schemaVersion": 2, "layers": layers }))
                .unwrap(),
        )
    }

    #[test]
    fn a_manifest_needs_its_blobs_first() {
        let storage = Storage::default();
        let layer = Digest::of(b"layer");
        let tag = Reference::Tag("v1".into());
        let body = manifest_naming(&[&layer]);
        assert!(matches!(
            storage.put_manifest("floor", &tag, body.clone(), None),
            Err(Refusal::ManifestBlobUnknown { digest }) if digest == layer
        ));
        storage
            .put_verified_blob("floor", &layer, Bytes::from_static(b"layer"))
            .unwrap();
        // A blob in another repository does not count, and a refused push stores nothing.
        assert!(
            storage
                .put_manifest("other", &tag, body.clone(), None)
                .is_err()
        );
        assert!(matches!(
            storage.tags("other", None, None),
            Err(Refusal::NameUnknown { .. })
        ));
        let digest = storage
            .put_manifest("floor", &tag, body.clone(), None)
            .unwrap();
        let (found, manifest) = storage.manifest("floor", &tag).unwrap();
        assert_eq!(found, digest);
        assert_eq!(manifest.bytes, body);
        assert_eq!(manifest.media_type, OCI_MANIFEST);
    }

    #[test]
    fn pushing_a_tag_again_moves_it() {
        let storage = Storage::default();
        let tag = Reference::Tag("v1".into());
        let first = storage
            .put_manifest("floor", &tag, manifest_naming(&[]), Some("a"))
            .unwrap();
        let second_body = Bytes::from_static(b"{\"schemaVersion\":2,\"layers\":[]}");
        let second = storage
            .put_manifest("floor", &tag, second_body, Some("b"))
            .unwrap();
        assert_ne!(first, second);
        assert_eq!(storage.manifest("floor", &tag).unwrap().0, second);
        let old = storage
            .manifest("floor", &Reference::Digest(first.clone()))
            .unwrap();
        assert_eq!(old.1.media_type, "a");
        assert_eq!(storage.tags("floor", None, None).unwrap(), ["v1"]);
    }

    #[test]
    fn a_digest_reference_must_be_the_body_digest() {
        let storage = Storage::default();
        let wrong = Reference::Digest(Digest::of(b"something else"));
        assert!(matches!(
            storage.put_manifest("floor", &wrong, manifest_naming(&[]), None),
            Err(Refusal::DigestInvalid { .. })
        ));
    }

    #[test]
    fn unknown_repositories_and_manifests_differ() {
        let storage = Storage::default();
        let tag = Reference::Tag("v1".into());
        assert!(matches!(
            storage.manifest("floor", &tag),
            Err(Refusal::NameUnknown { .. })
        ));
        storage
            .put_manifest("floor", &tag, manifest_naming(&[]), None)
            .unwrap();
        assert!(matches!(
            storage.manifest("floor", &Reference::Tag("v2".into())),
            Err(Refusal::ManifestUnknown { .. })
        ));
    }

    #[test]
    fn chunks_go_in_order_and_the_digest_is_checked() {
        let storage = Storage::default();
        let id = storage.start_upload("floor");
        assert_eq!(
            storage
                .append_upload("floor", &id, Some(0), b"abc", None)
                .unwrap(),
            3
        );
        assert!(matches!(
            storage.append_upload("floor", &id, Some(0), b"def", None),
            Err(Refusal::ChunkOutOfOrder { start: 0, held: 3 })
        ));
        assert!(matches!(
            storage.append_upload("other", &id, None, b"def", None),
            Err(Refusal::UploadUnknown { .. })
        ));
        assert!(matches!(
            storage.append_upload("floor", &id, None, b"def", Some(5)),
            Err(Refusal::TooLarge { limit: 5 })
        ));
        assert_eq!(
            storage
                .append_upload("floor", &id, None, b"def", None)
                .unwrap(),
            6
        );
        let digest = Digest::of(b"abcdef");
        storage.finish_upload("floor", &id, &digest).unwrap();
        assert_eq!(storage.blob("floor", &digest).unwrap(), &b"abcdef"[..]);
        assert!(matches!(
            storage.upload_len("floor", &id),
            Err(Refusal::UploadUnknown { .. })
        ));

        let id = storage.start_upload("floor");
        storage
            .append_upload("floor", &id, None, b"abc", None)
            .unwrap();
        assert!(matches!(
            storage.finish_upload("floor", &id, &digest),
            Err(Refusal::DigestInvalid { .. })
        ));
    }

    #[test]
    fn a_mount_copies_a_blob_between_repositories() {
        let storage = Storage::default();
        let digest = Digest::of(b"x");
        assert!(!storage.mount_blob("b", "a", &digest));
        storage
            .put_verified_blob("a", &digest, Bytes::from_static(b"x"))
            .unwrap();
        assert!(storage.mount_blob("b", "a", &digest));
        assert_eq!(storage.blob("b", &digest).unwrap(), &b"x"[..]);
    }

    #[test]
    fn tags_page_by_last_and_n() {
        let storage = Storage::default();
        for tag in ["b", "a", "c"] {
            let tag = Reference::Tag(tag.into());
            storage
                .put_manifest("floor", &tag, manifest_naming(&[]), None)
                .unwrap();
        }
        assert_eq!(storage.tags("floor", None, None).unwrap(), ["a", "b", "c"]);
        assert_eq!(storage.tags("floor", Some("a"), Some(1)).unwrap(), ["b"]);
    }
}
