//! Drives the devcluster with the real `kubectl`, which must be on PATH.

mod common;

use std::path::Path;
use std::process::Stdio;

use anyhow::{Context, Result};
use devcluster::{DevCluster, Options};
use tokio::io::{AsyncBufReadExt, BufReader};

use common::{Kubectl, WAIT};

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
    subresources:
      status: {}
      scale: {specReplicasPath: .spec.replicas, statusReplicasPath: .status.replicas}
"#;

const WIDGET: &str = r#"
apiVersion: example.com/v1
kind: Widget
metadata: {name: w1}
spec: {replicas: 1, color: blue}
"#;

const APPLIED: &str = r#"
apiVersion: example.com/v1
kind: Widget
metadata: {name: w1}
spec: {replicas: 5}
"#;

fn write(dir: &Path, name: &str, text: &str) -> Result<()> {
    std::fs::write(dir.join(name), text).with_context(|| format!("writing {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_gets_scales_patches_watches_and_deletes() -> Result<()> {
    let dev = DevCluster::start(Options::new()).await?;
    let dir = tempfile::tempdir()?;
    write(dir.path(), "crd.yaml", CRD)?;
    write(dir.path(), "widget.yaml", WIDGET)?;
    write(dir.path(), "applied.yaml", APPLIED)?;
    let k = Kubectl::new(dir.path(), "kubeconfig", &dev.kubeconfig_yaml())?;

    let namespaces = k.run(&["get", "namespaces", "-o", "name"]).await?;
    assert!(namespaces.contains("namespace/kube-system"), "{namespaces}");

    // kubectl's imperative generators send protobuf bodies for these built-in types.
    assert!(
        k.run(&["create", "namespace", "imperative"])
            .await?
            .contains("created")
    );
    let out = k
        .run(&[
            "-n",
            "imperative",
            "create",
            "configmap",
            "c1",
            "--from-literal=a=b",
        ])
        .await?;
    assert!(out.contains("configmap/c1 created"), "{out}");
    assert_eq!(
        k.json(&["-n", "imperative", "get", "configmap", "c1"])
            .await?["data"]["a"],
        "b"
    );

    assert!(
        k.run(&["apply", "-f", "crd.yaml"])
            .await?
            .contains("created")
    );
    assert!(
        k.run(&["apply", "-f", "widget.yaml"])
            .await?
            .contains("widget.example.com/w1 created")
    );
    let w = k.json(&["get", "widget", "w1"]).await?;
    assert_eq!(w["spec"]["color"], "blue");
    assert_eq!(w["metadata"]["generation"], 1);
    assert_eq!(
        k.json(&["get", "wd"]).await?["items"]
            .as_array()
            .map(Vec::len),
        Some(1),
        "short name works"
    );

    // Watch in the background; the next change must show up as an event.
    let mut watch = k
        .command(&[
            "get",
            "widgets",
            "--watch",
            "-o",
            "jsonpath={.metadata.name}:{.spec.replicas}{\"\\n\"}",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut lines = BufReader::new(watch.stdout.take().context("watch stdout")?).lines();
    let first = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .context("no initial watch line")??;
    assert_eq!(first.as_deref(), Some("w1:1"));

    assert!(
        k.run(&["scale", "widget", "w1", "--replicas=3"])
            .await?
            .contains("scaled")
    );
    let w = k.json(&["get", "widget", "w1"]).await?;
    assert_eq!(w["spec"]["replicas"], 3);
    assert_eq!(w["metadata"]["generation"], 2);

    let event = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .context("no watch event after the scale")??;
    assert_eq!(
        event.as_deref(),
        Some("w1:3"),
        "the scale arrives as a watch event"
    );
    watch.kill().await?;

    assert!(
        k.run(&[
            "patch",
            "widget",
            "w1",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"color":"red"}}"#
        ])
        .await?
        .contains("patched")
    );
    assert_eq!(
        k.json(&["get", "widget", "w1"]).await?["spec"]["color"],
        "red"
    );

    // Server-side apply: replicas now belong to the scale, so applying them conflicts until forced.
    let (ok, _, stderr) = k
        .try_run(&["apply", "--server-side", "-f", "applied.yaml"])
        .await?;
    assert!(!ok, "conflicting apply must fail");
    assert!(stderr.contains("Apply failed with 1 conflict"), "{stderr}");
    assert!(stderr.contains(".spec.replicas"), "{stderr}");
    let out = k
        .run(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            "applied.yaml",
        ])
        .await?;
    assert!(out.contains("serverside-applied"), "{out}");
    let w = k
        .json(&["get", "widget", "w1", "--show-managed-fields"])
        .await?;
    assert_eq!(w["spec"]["replicas"], 5);
    let managers: Vec<&str> = w["metadata"]["managedFields"]
        .as_array()
        .map(|m| m.iter().filter_map(|e| e["manager"].as_str()).collect())
        .unwrap_or_default();
    assert!(managers.contains(&"kubectl"), "{managers:?}");

    assert!(
        k.run(&["delete", "widget", "w1"])
            .await?
            .contains("deleted")
    );
    let (ok, _, stderr) = k.try_run(&["get", "widget", "w1"]).await?;
    assert!(!ok && stderr.contains("NotFound"), "{stderr}");
    assert!(
        k.run(&["delete", "-f", "crd.yaml"])
            .await?
            .contains("deleted")
    );
    Ok(())
}

const DESCRIBED_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            description: What the widget should look like.
            properties:
              color:
                type: string
                description: The paint the widget is finished in.
              replicas: {type: integer}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_explains_built_in_and_custom_kinds() -> Result<()> {
    let dev = DevCluster::start(Options::new()).await?;
    let dir = tempfile::tempdir()?;
    write(dir.path(), "crd.yaml", DESCRIBED_CRD)?;
    let k = Kubectl::new(dir.path(), "kubeconfig", &dev.kubeconfig_yaml())?;

    // The upstream descriptions of the field, of its type and of the type's fields.
    let out = k.run(&["explain", "deployment.spec.strategy"]).await?;
    for expected in [
        "GROUP:      apps",
        "KIND:       Deployment",
        "FIELD: strategy <DeploymentStrategy>",
        "The deployment strategy to use to replace existing pods with new ones.",
        "DeploymentStrategy describes how to replace existing pods with new ones.",
        "rollingUpdate\t<RollingUpdateDeployment>",
        "type\t<string>",
        "Type of deployment. Can be \"Recreate\" or \"RollingUpdate\".",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }

    // Through an array of objects to a scalar.
    let out = k.run(&["explain", "pods.spec.containers.image"]).await?;
    assert!(out.contains("FIELD: image <string>"), "{out}");
    assert!(out.contains("Container image name."), "{out}");

    // A kind of a group that is not in the core group.
    let out = k.run(&["explain", "ingress"]).await?;
    assert!(out.contains("GROUP:      networking.k8s.io"), "{out}");
    assert!(out.contains("KIND:       Ingress"), "{out}");
    assert!(
        out.contains("spec\t<IngressSpec>") && out.contains("metadata\t<ObjectMeta>\n"),
        "{out}"
    );

    // A custom kind, with the metadata a real server adds to its schema.
    assert!(
        k.run(&["apply", "-f", "crd.yaml"])
            .await?
            .contains("created")
    );
    let out = k.run(&["explain", "widget.spec"]).await?;
    assert!(out.contains("GROUP:      example.com"), "{out}");
    assert!(out.contains("FIELD: spec <Object>"), "{out}");
    assert!(out.contains("What the widget should look like."), "{out}");
    assert!(out.contains("color\t<string>"), "{out}");
    assert!(
        out.contains("The paint the widget is finished in."),
        "{out}"
    );
    let out = k.run(&["explain", "widget.metadata.name"]).await?;
    assert!(out.contains("FIELD: name <string>"), "{out}");

    let (ok, _, stderr) = k.try_run(&["explain", "widget.spec.size"]).await?;
    assert!(
        !ok && stderr.contains("field \"size\" does not exist"),
        "{stderr}"
    );
    Ok(())
}
