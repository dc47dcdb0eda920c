//! The in-memory OCI registry against the `oci-client` crate Paddock pulls with, over plain
//! HTTP, and against raw HTTP requests for the answers the specification fixes.

use std::net::SocketAddr;

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use devcluster::{DevCluster, OciOptions, OciRegistry, Options};
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageData, ImageLayer};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OciImageManifest;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// The config media type of a WebAssembly component artifact.
const WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
/// The layer media type of a WebAssembly component.
const WASM_LAYER: &str = "application/wasm";
/// The media type `oci-client` pushes image manifests with.
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// An `oci-client` speaking plain HTTP.
fn client() -> Client {
    // reqwest sets up rustls even for http://, and oci-client's no-provider feature leaves the
    // crypto provider to the program; this workspace uses ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..ClientConfig::default()
    })
}

/// About 1 MiB of bytes standing in for a component, different for each `seed`.
fn component(seed: u8) -> Vec<u8> {
    (0..1_048_583u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8 ^ seed)
        .collect()
}

/// The digest of `bytes`; the tests compare components by digest, which fails legibly.
fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

fn reference(registry: &OciRegistry, path: &str) -> Reference {
    format!("{}/{path}", registry.host())
        .parse()
        .expect("a valid image reference")
}

/// Pushes `wasm` as a WebAssembly component artifact; returns the manifest URL.
async fn push(
    client: &Client,
    reference: &Reference,
    wasm: &[u8],
    auth: &RegistryAuth,
) -> Result<String> {
    let layers = vec![ImageLayer::new(wasm.to_vec(), WASM_LAYER.to_owned(), None)];
    let config = Config {
        data: Bytes::from_static(b"{}"),
        media_type: WASM_CONFIG.to_owned(),
        annotations: None,
    };
    let manifest = OciImageManifest::build(&layers, &config, None);
    let pushed = client
        .push(reference, &layers, config, auth, Some(manifest))
        .await
        .with_context(|| format!("pushing {reference}"))?;
    Ok(pushed.manifest_url)
}

/// Pulls a component artifact; returns the image and its one layer's bytes.
async fn pull(
    client: &Client,
    reference: &Reference,
    auth: &RegistryAuth,
) -> Result<(ImageData, Bytes)> {
    let image = client.pull(reference, auth, vec![WASM_LAYER]).await?;
    ensure!(
        image.layers.len() == 1,
        "one layer expected, got {}",
        image.layers.len()
    );
    let layer = image.layers[0].data.clone();
    Ok((image, layer))
}

/// An HTTP answer read whole.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
    }

    /// The first OCI error code of the body.
    fn error_code(&self) -> String {
        let body: Value = serde_json::from_slice(&self.body).unwrap_or_default();
        body["errors"][0]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// Sends one request over a fresh HTTP/1.1 connection.
async fn send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<Answer> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, addr.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = sender
        .send_request(request.body(Full::new(body.into()))?)
        .await?;
    let (parts, body) = response.into_parts();
    Ok(Answer {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await?.to_bytes(),
    })
}

async fn get(addr: SocketAddr, path: &str) -> Result<Answer> {
    send(addr, Method::GET, path, &[], Bytes::new()).await
}

#[tokio::test]
async fn a_pushed_component_pulls_back_by_tag_and_by_digest() -> Result<()> {
    let registry = OciRegistry::start(OciOptions::new()).await?;
    let client = client();
    let auth = RegistryAuth::Anonymous;
    let tagged = reference(&registry, "team/floor:v1");
    let wasm = component(1);

    let manifest_url = push(&client, &tagged, &wasm, &auth).await?;
    let (image, layer) = pull(&client, &tagged, &auth).await?;
    assert_eq!(
        sha256(&layer),
        sha256(&wasm),
        "the pulled layer is the pushed component"
    );
    assert_eq!(image.layers[0].media_type, WASM_LAYER);
    assert_eq!(image.config.media_type, WASM_CONFIG);
    assert_eq!(&image.config.data[..], b"{}");
    assert_eq!(registry.manifest_pulls(), 1);
    assert_eq!(registry.blob_pulls(), 2, "the config and the layer");

    // The manifest answers byte for byte, with the type it was pushed with and its digest.
    let manifest = get(registry.addr(), "/v2/team/floor/manifests/v1").await?;
    assert_eq!(manifest.status, StatusCode::OK);
    let digest = sha256(&manifest.body);
    assert_eq!(image.digest.as_deref(), Some(digest.as_str()));
    assert_eq!(manifest.header("docker-content-digest"), digest);
    assert_eq!(manifest.header("content-type"), OCI_MANIFEST);
    assert_eq!(
        manifest.header("content-length"),
        manifest.body.len().to_string()
    );
    assert!(
        manifest_url.ends_with(&format!("/v2/team/floor/manifests/{digest}")),
        "{manifest_url}"
    );
    let head = send(
        registry.addr(),
        Method::HEAD,
        "/v2/team/floor/manifests/v1",
        &[],
        Bytes::new(),
    )
    .await?;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.body.is_empty());
    assert_eq!(
        head.header("content-length"),
        manifest.body.len().to_string()
    );
    assert_eq!(head.header("docker-content-digest"), digest);
    assert_eq!(registry.manifest_pulls(), 2, "HEADs are not pulls");

    let pinned = reference(&registry, &format!("team/floor@{digest}"));
    let (again, layer) = pull(&client, &pinned, &auth).await?;
    assert_eq!(sha256(&layer), sha256(&wasm));
    assert_eq!(again.digest.as_deref(), Some(digest.as_str()));

    let layer_digest = sha256(&wasm);
    let blob = get(
        registry.addr(),
        &format!("/v2/team/floor/blobs/{layer_digest}"),
    )
    .await?;
    assert_eq!(blob.status, StatusCode::OK);
    assert_eq!(sha256(&blob.body), sha256(&wasm));
    assert_eq!(blob.header("docker-content-digest"), layer_digest);
    assert_eq!(blob.header("content-type"), "application/octet-stream");
    registry.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn pushing_a_tag_again_moves_it() -> Result<()> {
    let registry = OciRegistry::start(OciOptions::new()).await?;
    let client = client();
    let auth = RegistryAuth::Anonymous;
    let tagged = reference(&registry, "team/controllers/floor:v1");
    let (first, second) = (component(1), component(2));

    push(&client, &tagged, &first, &auth).await?;
    let (old, _) = pull(&client, &tagged, &auth).await?;
    push(&client, &tagged, &second, &auth).await?;
    let (new, layer) = pull(&client, &tagged, &auth).await?;
    assert_eq!(
        sha256(&layer),
        sha256(&second),
        "the tag names the second push"
    );
    assert_ne!(old.digest, new.digest);

    let old_digest = old.digest.context("pulls report the digest")?;
    let pinned = reference(&registry, &format!("team/controllers/floor@{old_digest}"));
    let (_, layer) = pull(&client, &pinned, &auth).await?;
    assert_eq!(
        sha256(&layer),
        sha256(&first),
        "the first manifest still pulls by digest"
    );

    let tags = client.list_tags(&tagged, &auth, None, None).await?;
    assert_eq!(tags.name, "team/controllers/floor");
    assert_eq!(tags.tags, ["v1"]);
    registry.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn with_basic_auth_only_the_right_credentials_pull() -> Result<()> {
    let registry = OciRegistry::start(OciOptions::new().basic_auth("dev", "s3cret")).await?;
    let tagged = reference(&registry, "team/floor:v1");
    let right = RegistryAuth::Basic("dev".into(), "s3cret".into());
    let wasm = component(3);
    push(&client(), &tagged, &wasm, &right).await?;

    // oci-client keeps the first credentials it is given per registry: a new client each time.
    let anonymous = pull(&client(), &tagged, &RegistryAuth::Anonymous).await;
    assert!(
        matches!(
            anonymous
                .as_ref()
                .map_err(|e| e.downcast_ref::<OciDistributionError>()),
            Err(Some(OciDistributionError::UnauthorizedError { .. }))
        ),
        "an anonymous pull is refused: {:?}",
        anonymous.err()
    );
    let wrong = RegistryAuth::Basic("dev".into(), "guess".into());
    let wrong = pull(&client(), &tagged, &wrong).await;
    assert!(
        matches!(
            wrong
                .as_ref()
                .map_err(|e| e.downcast_ref::<OciDistributionError>()),
            Err(Some(OciDistributionError::UnauthorizedError { .. }))
        ),
        "a wrong password is refused: {:?}",
        wrong.err()
    );
    assert!(
        push(&client(), &tagged, &component(4), &RegistryAuth::Anonymous)
            .await
            .is_err()
    );
    let (_, layer) = pull(&client(), &tagged, &right).await?;
    assert_eq!(
        sha256(&layer),
        sha256(&wasm),
        "the anonymous push did not move the tag"
    );

    let challenge = get(registry.addr(), "/v2/").await?;
    assert_eq!(challenge.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge.header("www-authenticate"),
        r#"Basic realm="paddock-dev""#
    );
    assert_eq!(challenge.error_code(), "UNAUTHORIZED");
    let blob = get(
        registry.addr(),
        &format!("/v2/team/floor/blobs/{}", sha256(&wasm)),
    )
    .await?;
    assert_eq!(
        blob.status,
        StatusCode::UNAUTHORIZED,
        "every endpoint needs credentials"
    );
    // "dev:s3cret" in base64.
    let admitted = send(
        registry.addr(),
        Method::GET,
        "/v2/",
        &[("authorization", "Basic ZGV2OnMzY3JldA==")],
        Bytes::new(),
    )
    .await?;
    assert_eq!(admitted.status, StatusCode::OK);
    assert_eq!(&admitted.body[..], b"{}");
    registry.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn missing_tags_and_repositories_are_404() -> Result<()> {
    let registry = OciRegistry::start(OciOptions::new()).await?;
    let client = client();
    let auth = RegistryAuth::Anonymous;
    push(
        &client,
        &reference(&registry, "team/floor:v1"),
        &component(5),
        &auth,
    )
    .await?;

    for (path, code) in [
        ("team/floor:v9", OciErrorCode::ManifestUnknown),
        ("team/nothing:v1", OciErrorCode::NameUnknown),
    ] {
        let missing = pull(&client, &reference(&registry, path), &auth).await;
        let error = missing.err().with_context(|| format!("{path} pulled"))?;
        match error.downcast_ref::<OciDistributionError>() {
            Some(OciDistributionError::RegistryError { envelope, .. }) => {
                assert_eq!(envelope.errors[0].code, code, "{path}");
            }
            other => panic!("{path}: a registry error expected, got {other:?}"),
        }
    }

    let tag = get(registry.addr(), "/v2/team/floor/manifests/v9").await?;
    assert_eq!(tag.status, StatusCode::NOT_FOUND);
    assert_eq!(tag.error_code(), "MANIFEST_UNKNOWN");
    assert_eq!(tag.header("content-type"), "application/json");
    let repository = get(registry.addr(), "/v2/team/nothing/manifests/v1").await?;
    assert_eq!(repository.status, StatusCode::NOT_FOUND);
    assert_eq!(repository.error_code(), "NAME_UNKNOWN");
    let blob = get(
        registry.addr(),
        &format!("/v2/team/floor/blobs/{}", sha256(b"none")),
    )
    .await?;
    assert_eq!(blob.status, StatusCode::NOT_FOUND);
    assert_eq!(blob.error_code(), "BLOB_UNKNOWN");
    let tags = get(registry.addr(), "/v2/team/nothing/tags/list").await?;
    assert_eq!(tags.error_code(), "NAME_UNKNOWN");
    assert_eq!(registry.manifest_pulls(), 0, "refusals are not pulls");
    registry.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn an_upload_closed_with_the_wrong_digest_is_refused() -> Result<()> {
    let registry = OciRegistry::start(OciOptions::new()).await?;
    let addr = registry.addr();
    let started = send(
        addr,
        Method::POST,
        "/v2/team/floor/blobs/uploads/",
        &[],
        Bytes::new(),
    )
    .await?;
    assert_eq!(started.status, StatusCode::ACCEPTED);
    let location = started.header("location").to_owned();
    assert!(
        location.starts_with("/v2/team/floor/blobs/uploads/"),
        "{location}"
    );
    assert_eq!(started.header("range"), "0-0");

    let chunk = send(
        addr,
        Method::PATCH,
        &location,
        &[("content-range", "0-4")],
        "hello",
    )
    .await?;
    assert_eq!(chunk.status, StatusCode::ACCEPTED);
    assert_eq!(chunk.header("range"), "0-4");
    let out_of_order = send(
        addr,
        Method::PATCH,
        &location,
        &[("content-range", "0-4")],
        "hello",
    )
    .await?;
    assert_eq!(out_of_order.status, StatusCode::RANGE_NOT_SATISFIABLE);

    let wrong = sha256(b"goodbye");
    let closed = send(
        addr,
        Method::PUT,
        &format!("{location}?digest={wrong}"),
        &[],
        Bytes::new(),
    )
    .await?;
    assert_eq!(closed.status, StatusCode::BAD_REQUEST);
    assert_eq!(closed.error_code(), "DIGEST_INVALID");
    let stored = get(addr, &format!("/v2/team/floor/blobs/{wrong}")).await?;
    assert_eq!(stored.status, StatusCode::NOT_FOUND, "nothing was stored");

    // The same bytes with their own digest, in one POST, are stored.
    let right = sha256(b"hello");
    let monolithic = send(
        addr,
        Method::POST,
        &format!("/v2/team/floor/blobs/uploads/?digest={right}"),
        &[],
        "hello",
    )
    .await?;
    assert_eq!(monolithic.status, StatusCode::CREATED);
    assert_eq!(
        monolithic.header("location"),
        format!("/v2/team/floor/blobs/{right}")
    );
    assert_eq!(monolithic.header("docker-content-digest"), right);
    let wrong_monolithic = send(
        addr,
        Method::POST,
        &format!("/v2/team/floor/blobs/uploads/?digest={wrong}"),
        &[],
        "hello",
    )
    .await?;
    assert_eq!(wrong_monolithic.error_code(), "DIGEST_INVALID");
    let sha512 = send(
        addr,
        Method::POST,
        "/v2/team/floor/blobs/uploads/?digest=sha512:abcd",
        &[],
        "hello",
    )
    .await?;
    assert_eq!(sha512.status, StatusCode::BAD_REQUEST);
    assert_eq!(sha512.error_code(), "UNSUPPORTED");
    registry.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn manifests_need_their_blobs_and_blobs_their_size() -> Result<()> {
    let registry = OciRegistry::start(OciOptions::new().max_blob_size(8)).await?;
    let addr = registry.addr();
    let layer = sha256(b"absent");
    let manifest = format!(
        r#"{{"schemaVersion":2,"layers":[{{"mediaType":"application/wasm","digest":"{layer}","size":6}}]}}"#
    );
    let refused = send(
        addr,
        Method::PUT,
        "/v2/team/floor/manifests/v1",
        &[("content-type", OCI_MANIFEST)],
        manifest,
    )
    .await?;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(refused.error_code(), "MANIFEST_BLOB_UNKNOWN");

    let big = sha256(b"nine bytes");
    let too_large = send(
        addr,
        Method::POST,
        &format!("/v2/team/floor/blobs/uploads/?digest={big}"),
        &[],
        "nine bytes",
    )
    .await?;
    assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(too_large.error_code(), "SIZE_INVALID");
    registry.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_devcluster_can_run_a_registry_beside_it() -> Result<()> {
    let plain = DevCluster::start(Options::new()).await?;
    assert!(plain.oci_registry().is_none(), "off by default");
    plain.shutdown().await;

    let cluster = DevCluster::start(Options::new().oci_registry(true)).await?;
    let registry = cluster.oci_registry().context("the registry asked for")?;
    assert_ne!(registry.addr(), cluster.addr());
    let client = client();
    let auth = RegistryAuth::Anonymous;
    let tagged = reference(registry, "paddock/replica-floor:dev");
    let wasm = component(6);
    push(&client, &tagged, &wasm, &auth).await?;
    let (_, layer) = pull(&client, &tagged, &auth).await?;
    assert_eq!(sha256(&layer), sha256(&wasm));
    assert_eq!(registry.manifest_pulls(), 1);

    let addr = registry.addr();
    cluster.shutdown().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the registry stops with the cluster"
    );
    Ok(())
}
