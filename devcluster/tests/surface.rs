//! The whole built-in API, as a real kube-apiserver 1.36 serves it: discovery
//! lists what `../shared/KUBE-API-NOTES.md` records, every resource takes
//! writes, and the subresources that are not views of one field (binding,
//! eviction, approval, the kubelet connections) answer as a real server
//! without kubelets does.

mod common;

use std::collections::BTreeSet;

use anyhow::{Context, Result, ensure};
use devcluster::{DevCluster, Options};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use kube::core::Status;
use kube::{Client, Config, Discovery};
use serde_json::{Value, json};

use common::Kubectl;

/// `kubectl api-versions` of a real 1.36 server.
const API_VERSIONS: &[&str] = &[
    "admissionregistration.k8s.io/v1",
    "apiextensions.k8s.io/v1",
    "apiregistration.k8s.io/v1",
    "apps/v1",
    "authentication.k8s.io/v1",
    "authorization.k8s.io/v1",
    "autoscaling/v1",
    "autoscaling/v2",
    "batch/v1",
    "certificates.k8s.io/v1",
    "coordination.k8s.io/v1",
    "discovery.k8s.io/v1",
    "events.k8s.io/v1",
    "flowcontrol.apiserver.k8s.io/v1",
    "networking.k8s.io/v1",
    "node.k8s.io/v1",
    "policy/v1",
    "rbac.authorization.k8s.io/v1",
    "resource.k8s.io/v1",
    "scheduling.k8s.io/v1",
    "storage.k8s.io/v1",
    "v1",
];

/// `kubectl api-resources -o name` of a real 1.36 server.
const API_RESOURCES: &[&str] = &[
    "bindings",
    "componentstatuses",
    "configmaps",
    "endpoints",
    "events",
    "limitranges",
    "namespaces",
    "nodes",
    "persistentvolumeclaims",
    "persistentvolumes",
    "pods",
    "podtemplates",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "serviceaccounts",
    "services",
    "mutatingadmissionpolicies.admissionregistration.k8s.io",
    "mutatingadmissionpolicybindings.admissionregistration.k8s.io",
    "mutatingwebhookconfigurations.admissionregistration.k8s.io",
    "validatingadmissionpolicies.admissionregistration.k8s.io",
    "validatingadmissionpolicybindings.admissionregistration.k8s.io",
    "validatingwebhookconfigurations.admissionregistration.k8s.io",
    "customresourcedefinitions.apiextensions.k8s.io",
    "apiservices.apiregistration.k8s.io",
    "controllerrevisions.apps",
    "daemonsets.apps",
    "deployments.apps",
    "replicasets.apps",
    "statefulsets.apps",
    "selfsubjectreviews.authentication.k8s.io",
    "tokenreviews.authentication.k8s.io",
    "localsubjectaccessreviews.authorization.k8s.io",
    "selfsubjectaccessreviews.authorization.k8s.io",
    "selfsubjectrulesreviews.authorization.k8s.io",
    "subjectaccessreviews.authorization.k8s.io",
    "horizontalpodautoscalers.autoscaling",
    "cronjobs.batch",
    "jobs.batch",
    "certificatesigningrequests.certificates.k8s.io",
    "leases.coordination.k8s.io",
    "endpointslices.discovery.k8s.io",
    "events.events.k8s.io",
    "flowschemas.flowcontrol.apiserver.k8s.io",
    "prioritylevelconfigurations.flowcontrol.apiserver.k8s.io",
    "ingressclasses.networking.k8s.io",
    "ingresses.networking.k8s.io",
    "ipaddresses.networking.k8s.io",
    "networkpolicies.networking.k8s.io",
    "servicecidrs.networking.k8s.io",
    "runtimeclasses.node.k8s.io",
    "poddisruptionbudgets.policy",
    "clusterrolebindings.rbac.authorization.k8s.io",
    "clusterroles.rbac.authorization.k8s.io",
    "rolebindings.rbac.authorization.k8s.io",
    "roles.rbac.authorization.k8s.io",
    "deviceclasses.resource.k8s.io",
    "resourceclaims.resource.k8s.io",
    "resourceclaimtemplates.resource.k8s.io",
    "resourceslices.resource.k8s.io",
    "priorityclasses.scheduling.k8s.io",
    "csidrivers.storage.k8s.io",
    "csinodes.storage.k8s.io",
    "csistoragecapacities.storage.k8s.io",
    "storageclasses.storage.k8s.io",
    "volumeattachments.storage.k8s.io",
    "volumeattributesclasses.storage.k8s.io",
];

async fn cluster() -> Result<(DevCluster, Client)> {
    let dev = DevCluster::start(Options::new()).await?;
    let client = client_of(&dev).await?;
    Ok((dev, client))
}

/// A client of `dev` without kube's retry layer: an eviction's 429 is an
/// answer under test, which the layer would wait out.
async fn client_of(dev: &DevCluster) -> Result<Client> {
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&dev.kubeconfig_yaml())?;
    let mut config =
        Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
            .await?;
    config.default_retry = false;
    Ok(Client::try_from(config)?)
}

/// The Status of a failed call.
fn status<T: std::fmt::Debug>(result: kube::Result<T>) -> Box<Status> {
    match result {
        Err(kube::Error::Api(status)) => status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn lines(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect()
}

fn strings(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_lists_the_resources_and_versions_of_a_real_server() -> Result<()> {
    assert_eq!(API_RESOURCES.len(), 67);
    assert_eq!(API_VERSIONS.len(), 22);
    let dev = DevCluster::start(Options::new()).await?;
    let dir = tempfile::tempdir()?;
    let k = Kubectl::new(dir.path(), "kubeconfig", &dev.kubeconfig_yaml())?;
    let versions = lines(&k.run(&["api-versions"]).await?);
    assert_eq!(versions, strings(API_VERSIONS));
    let resources = lines(&k.run(&["api-resources", "-o", "name"]).await?);
    assert_eq!(resources, strings(API_RESOURCES));

    // The wide listing carries short names, scope and verbs as a real server's does.
    let wide = k.run(&["api-resources", "-o", "wide"]).await?;
    let row = |name: &str| {
        wide.lines()
            .find(|line| line.split_whitespace().next() == Some(name))
            .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    assert!(
        row("horizontalpodautoscalers").starts_with(
            "horizontalpodautoscalers hpa autoscaling/v2 true HorizontalPodAutoscaler"
        ),
        "{}",
        row("horizontalpodautoscalers")
    );
    assert!(
        row("componentstatuses").contains("cs v1 false ComponentStatus get,list"),
        "{}",
        row("componentstatuses")
    );
    assert!(
        row("bindings").contains("v1 true Binding create"),
        "{}",
        row("bindings")
    );
    assert!(
        row("cronjobs").contains("cj batch/v1 true CronJob") && row("cronjobs").ends_with("all"),
        "{}",
        row("cronjobs")
    );
    let all = k.run(&["get", "all", "-A", "-o", "name"]).await?;
    assert!(all.contains("service/kubernetes"), "{all}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_discovery_includes_the_aggregator_and_an_api_service_per_group_version() -> Result<()>
{
    let (_dev, client) = cluster().await?;
    let discovery = Discovery::new(client.clone()).run().await?;
    let groups: BTreeSet<String> = discovery.groups().map(|g| g.name().to_owned()).collect();
    for group in [
        "apiregistration.k8s.io",
        "resource.k8s.io",
        "flowcontrol.apiserver.k8s.io",
    ] {
        assert!(groups.contains(group), "{group} missing from {groups:?}");
    }
    let autoscaling = discovery
        .groups()
        .find(|g| g.name() == "autoscaling")
        .context("autoscaling served")?;
    assert_eq!(autoscaling.preferred_version_or_latest(), "v2");
    assert_eq!(autoscaling.versions().collect::<Vec<_>>(), ["v2", "v1"]);

    let services: Api<APIService> = Api::all(client);
    let apps = services.get("v1.apps").await?;
    let spec = apps.spec.context("spec")?;
    assert_eq!(spec.group.as_deref(), Some("apps"));
    assert_eq!(spec.group_priority_minimum, 17800);
    assert_eq!(spec.version_priority, 15);
    let conditions = apps.status.and_then(|s| s.conditions).unwrap_or_default();
    assert!(
        conditions.iter().any(|c| c.type_ == "Available"
            && c.status == "True"
            && c.reason.as_deref() == Some("Local")),
        "{conditions:?}"
    );
    let names: BTreeSet<String> = services
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|s| s.metadata.name)
        .collect();
    assert!(
        names.contains("v1.") && names.contains("v2.autoscaling"),
        "{names:?}"
    );
    assert!(!names.contains("v1.apiregistration.k8s.io"), "{names:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crd_group_gets_an_api_service_until_its_last_crd_is_gone() -> Result<()> {
    let (_dev, client) = cluster().await?;
    let crds: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            "customresourcedefinitions",
        ),
    );
    let crd: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}],
        },
    }))?;
    crds.create(&PostParams::default(), &crd).await?;
    let services: Api<APIService> = Api::all(client);
    let service = services.get("v1.example.com").await?;
    let spec = service.spec.context("spec")?;
    assert_eq!(
        (spec.group_priority_minimum, spec.version_priority),
        (1000, 100)
    );
    assert_eq!(
        service
            .metadata
            .labels
            .unwrap_or_default()
            .get("kube-aggregator.kubernetes.io/automanaged")
            .map(String::as_str),
        Some("true")
    );
    crds.delete("gadgets.example.com", &Default::default())
        .await?;
    let gone = kube::runtime::wait::await_condition(
        services,
        "v1.example.com",
        |service: Option<&APIService>| service.is_none(),
    );
    tokio::time::timeout(std::time::Duration::from_secs(10), gone)
        .await
        .context("v1.example.com outlived its CRD by 10 s")??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_are_created_cordoned_and_listed_by_field_selector() -> Result<()> {
    let (_dev, client) = cluster().await?;
    let nodes: Api<Node> = Api::all(client);
    for name in ["n1", "n2"] {
        let node: Node = serde_json::from_value(json!({"metadata": {"name": name}}))?;
        nodes.create(&PostParams::default(), &node).await?;
    }
    nodes.cordon("n1").await?;
    let names = |list: Vec<Node>| -> Vec<String> {
        list.into_iter().filter_map(|n| n.metadata.name).collect()
    };
    let cordoned = nodes
        .list(&ListParams::default().fields("spec.unschedulable=true"))
        .await?;
    assert_eq!(names(cordoned.items), ["n1"]);
    let schedulable = nodes
        .list(&ListParams::default().fields("spec.unschedulable=false"))
        .await?;
    assert_eq!(names(schedulable.items), ["n2"]);
    nodes.uncordon("n1").await?;
    let schedulable = nodes
        .list(&ListParams::default().fields("spec.unschedulable!=true"))
        .await?;
    assert_eq!(names(schedulable.items), ["n1", "n2"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_signing_request_is_approved_through_its_approval_subresource() -> Result<()>
{
    let (_dev, client) = cluster().await?;
    let csrs: Api<CertificateSigningRequest> = Api::all(client);
    let key = rcgen::KeyPair::generate()?;
    let request = rcgen::CertificateParams::new(Vec::<String>::new())?
        .serialize_request(&key)?
        .pem()?;
    let csr: CertificateSigningRequest = serde_json::from_value(json!({
        "metadata": {"name": "alice"},
        "spec": {
            "request": base64_encode(request.as_bytes()),
            "signerName": "kubernetes.io/kube-apiserver-client",
            "usages": ["client auth"],
        },
    }))?;
    csrs.create(&PostParams::default(), &csr).await?;
    let approval = json!({"status": {"conditions": [{
        "type": "Approved", "status": "True", "reason": "Test", "message": "approved by the test",
    }]}, "spec": {"signerName": "example.com/other"}});
    let approved = csrs
        .patch_approval("alice", &PatchParams::default(), &Patch::Merge(&approval))
        .await?;
    let conditions = approved
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default();
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == "Approved" && c.status == "True"),
        "{conditions:?}"
    );
    assert_eq!(
        approved.spec.signer_name, "kubernetes.io/kube-apiserver-client",
        "the approval subresource writes conditions only"
    );
    let listed = csrs
        .list(&ListParams::default().fields("spec.signerName=kubernetes.io/kube-apiserver-client"))
        .await?;
    assert_eq!(listed.items.len(), 1);
    Ok(())
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn pod(name: &str) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]},
    }))?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_are_bound_evicted_and_refuse_kubelet_connections_without_a_node() -> Result<()> {
    let (_dev, client) = cluster().await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("web")?).await?;

    // Without a node: no log yet, and no exec.
    let log = pods.logs("web", &Default::default()).await?;
    assert_eq!(log, "");
    let exec = client
        .request_text(
            http::Request::post("/api/v1/namespaces/default/pods/web/exec?command=ls&stdout=true")
                .body(Vec::new())?,
        )
        .await;
    let refused = status(exec);
    assert_eq!(refused.code, 400);
    assert_eq!(refused.message, "pod web does not have a host assigned");
    let wrong = status(
        pods.logs(
            "web",
            &kube::api::LogParams {
                container: Some("nope".into()),
                ..Default::default()
            },
        )
        .await,
    );
    assert_eq!(wrong.message, "container nope is not valid for pod web");

    // Binding assigns the node once.
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "web"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"}});
    let bind = |body: Value| {
        http::Request::post("/api/v1/namespaces/default/pods/web/binding")
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&body).unwrap_or_default())
    };
    let answer: Value = serde_json::from_str(&client.request_text(bind(binding.clone())?).await?)?;
    assert_eq!(answer["status"], "Success");
    let bound = pods.get("web").await?;
    assert_eq!(
        bound.spec.as_ref().and_then(|s| s.node_name.as_deref()),
        Some("n1")
    );
    let scheduled = bound.status.and_then(|s| s.conditions).unwrap_or_default();
    assert!(
        scheduled
            .iter()
            .any(|c| c.type_ == "PodScheduled" && c.status == "True"),
        "{scheduled:?}"
    );
    let again = status(client.request_text(bind(binding)?).await);
    assert_eq!(again.code, 409);
    assert!(
        again.message.contains("is already assigned to node \"n1\""),
        "{}",
        again.message
    );

    // A budget that allows no disruption refuses an eviction of a running pod.
    pods.patch_status(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running"}})),
    )
    .await?;
    let budgets: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "default",
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("policy", "v1", "PodDisruptionBudget"),
            "poddisruptionbudgets",
        ),
    );
    let budget: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "keep"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}},
    }))?;
    budgets.create(&PostParams::default(), &budget).await?;
    let evict = status(pods.evict("web", &Default::default()).await);
    assert_eq!(evict.code, 429);
    assert!(
        evict
            .message
            .starts_with("Cannot evict pod as it would violate the pod's disruption budget."),
        "{}",
        evict.message
    );
    budgets.delete("keep", &Default::default()).await?;
    pods.evict("web", &Default::default()).await?;
    ensure!(
        pods.get_opt("web")
            .await?
            .is_none_or(|p| p.metadata.deletion_timestamp.is_some()),
        "an evicted pod is deleted"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autoscalers_read_the_same_in_v1_and_v2() -> Result<()> {
    let (_dev, client) = cluster().await?;
    let resource = |version: &str| {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("autoscaling", version, "HorizontalPodAutoscaler"),
            "horizontalpodautoscalers",
        )
    };
    let v1: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &resource("v1"));
    let v2: Api<DynamicObject> = Api::namespaced_with(client, "default", &resource("v2"));
    let written: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 1, "maxReplicas": 4, "targetCPUUtilizationPercentage": 60},
    }))?;
    v1.create(&PostParams::default(), &written).await?;
    let as_v2 = v2.get("web").await?;
    assert_eq!(
        as_v2.data["spec"]["metrics"],
        json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}])
    );
    assert!(
        as_v2.data["spec"]
            .get("targetCPUUtilizationPercentage")
            .is_none()
    );
    let as_v1 = v1.get("web").await?;
    assert_eq!(as_v1.data["spec"]["targetCPUUtilizationPercentage"], 60);
    assert!(as_v1.data["spec"].get("metrics").is_none());
    assert_eq!(
        as_v1.types.map(|t| t.api_version),
        Some("autoscaling/v1".to_owned())
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generation_moves_as_each_kind_decides() -> Result<()> {
    let (_dev, client) = cluster().await?;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let job: Job = serde_json::from_value(json!({
        "metadata": {"name": "once"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}},
    }))?;
    let created = jobs.create(&PostParams::default(), &job).await?;
    assert_eq!(created.metadata.generation, Some(1));
    let labelled = jobs
        .patch(
            "once",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await?;
    assert_eq!(labelled.metadata.generation, Some(1), "labels are not spec");
    let suspended = jobs
        .patch(
            "once",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": true}})),
        )
        .await?;
    assert_eq!(suspended.metadata.generation, Some(2));

    let slices: Api<EndpointSlice> = Api::namespaced(client, "default");
    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": "web-1"}, "addressType": "IPv4", "endpoints": [],
    }))?;
    slices.create(&PostParams::default(), &slice).await?;
    let relabelled = slices
        .patch(
            "web-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"kubernetes.io/service-name": "web"}}})),
        )
        .await?;
    assert_eq!(
        relabelled.metadata.generation,
        Some(2),
        "an EndpointSlice's labels count for its generation"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn component_statuses_report_the_embedded_controllers() -> Result<()> {
    let (_dev, client) = cluster().await?;
    let text = client
        .request_text(http::Request::get("/api/v1/componentstatuses").body(Vec::new())?)
        .await?;
    let list: Value = serde_json::from_str(&text)?;
    assert_eq!(list["kind"], "ComponentStatusList");
    let names: Vec<&str> = list["items"]
        .as_array()
        .context("items")?
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["controller-manager", "scheduler", "etcd-0"]);
    let refused = status(
        client
            .request_text(
                http::Request::delete("/api/v1/componentstatuses/scheduler").body(Vec::new())?,
            )
            .await,
    );
    assert_eq!(refused.code, 405);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_objects_are_refused_with_a_real_servers_words() -> Result<()> {
    let dev = DevCluster::start(Options::new()).await?;
    let dir = tempfile::tempdir()?;
    let k = Kubectl::new(dir.path(), "kubeconfig", &dev.kubeconfig_yaml())?;
    std::fs::write(
        dir.path().join("empty.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: e}\nspec: {}\n",
    )?;
    let refused = k.refused(&["create", "-f", "empty.yaml"]).await?;
    for line in [
        "The Deployment \"e\" is invalid:",
        "* spec.selector: Required value",
        "* spec.template.metadata.labels: Invalid value: null: `selector` does not match template `labels`",
        "* spec.template.spec.containers: Required value",
    ] {
        assert!(refused.contains(line), "{line:?} missing from {refused}");
    }

    std::fs::write(
        dir.path().join("kindless.yaml"),
        "apiVersion: v1\nmetadata: {name: c, namespace: default}\ndata: {a: b}\n",
    )?;
    let client = client_of(&dev).await?;
    let kindless = client
        .request_text(
            http::Request::patch("/api/v1/namespaces/default/configmaps/c?fieldManager=test")
                .header("content-type", "application/apply-patch+yaml")
                .body(std::fs::read(dir.path().join("kindless.yaml"))?)?,
        )
        .await;
    let refused = status(kindless);
    assert_eq!(refused.code, 400);
    assert_eq!(
        refused.message,
        "failed to create typed patch object (default/c; /v1, Kind=): no corresponding type for /v1, Kind="
    );

    std::fs::write(
        dir.path().join("schemaless.yaml"),
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: things.example.com}\n\
         spec:\n  group: example.com\n  scope: Namespaced\n  names: {plural: things, singular: thing, kind: Thing}\n\
         \x20 versions: [{name: v1, served: true, storage: true}]\n",
    )?;
    let refused = k.refused(&["create", "-f", "schemaless.yaml"]).await?;
    assert!(
        refused.contains("spec.versions[0].schema.openAPIV3Schema: Required value"),
        "{refused}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_creates_every_kind_its_generators_make() -> Result<()> {
    let dev = DevCluster::start(Options::new()).await?;
    let dir = tempfile::tempdir()?;
    let k = Kubectl::new(dir.path(), "kubeconfig", &dev.kubeconfig_yaml())?;
    // kubectl sends each of these bodies as protobuf.
    let creates: &[&[&str]] = &[
        &["create", "deployment", "web", "--image=nginx"],
        &["create", "service", "clusterip", "web", "--tcp=80:8080"],
        &["create", "job", "once", "--image=busybox"],
        &[
            "create",
            "cronjob",
            "tick",
            "--image=busybox",
            "--schedule=*/5 * * * *",
        ],
        &[
            "create",
            "role",
            "reader",
            "--verb=get,list",
            "--resource=pods",
        ],
        &[
            "create",
            "rolebinding",
            "readers",
            "--role=reader",
            "--user=alice",
        ],
        &[
            "create",
            "clusterrole",
            "nodes",
            "--verb=get",
            "--resource=nodes",
        ],
        &[
            "create",
            "clusterrolebinding",
            "nodes",
            "--clusterrole=nodes",
            "--group=ops",
        ],
        &[
            "create",
            "ingress",
            "web",
            "--rule=shop.example.com/=web:80",
        ],
        &["create", "quota", "small", "--hard=pods=10"],
        &["create", "priorityclass", "high", "--value=1000"],
        &[
            "create",
            "pdb",
            "web",
            "--selector=app=web",
            "--min-available=1",
        ],
        &["create", "serviceaccount", "robot"],
        &[
            "autoscale",
            "deployment",
            "web",
            "--max=3",
            "--cpu-percent=50",
        ],
    ];
    for args in creates {
        let out = k.run(args).await?;
        assert!(
            out.contains("created") || out.contains("autoscaled"),
            "kubectl {args:?}: {out}"
        );
    }
    let names = lines(
        &k.run(&[
            "get",
            "deployments,services,jobs,cronjobs,roles,rolebindings,ingresses,resourcequotas,poddisruptionbudgets,horizontalpodautoscalers",
            "-o",
            "name",
        ])
        .await?,
    );
    for name in [
        "deployment.apps/web",
        "service/web",
        "job.batch/once",
        "cronjob.batch/tick",
        "role.rbac.authorization.k8s.io/reader",
        "rolebinding.rbac.authorization.k8s.io/readers",
        "ingress.networking.k8s.io/web",
        "resourcequota/small",
        "poddisruptionbudget.policy/web",
        "horizontalpodautoscaler.autoscaling/web",
    ] {
        assert!(names.contains(name), "{name} missing from {names:?}");
    }
    // kubectl sends `strategy: {}`; the server defaults it field by field.
    let deployment = k.json(&["get", "deployment", "web"]).await?;
    assert_eq!(
        deployment["spec"]["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
    );
    let job = k.json(&["get", "job", "once"]).await?;
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["image"],
        "busybox"
    );
    let ingress = k.json(&["get", "ingress", "web"]).await?;
    assert_eq!(ingress["spec"]["rules"][0]["host"], "shop.example.com");
    let quota = k.json(&["get", "quota", "small"]).await?;
    assert_eq!(quota["spec"]["hard"]["pods"], "10");
    let priority = k.json(&["get", "priorityclass", "high"]).await?;
    assert_eq!(priority["value"], 1000);

    // The tables kubectl prints come from the server.
    let jobs = k.run(&["get", "jobs"]).await?;
    assert!(
        jobs.lines()
            .next()
            .is_some_and(|header| header.split_whitespace().collect::<Vec<_>>()
                == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]),
        "{jobs}"
    );
    let roles = k.run(&["get", "roles"]).await?;
    assert!(roles.starts_with("NAME"), "{roles}");
    assert!(
        roles
            .lines()
            .next()
            .is_some_and(|h| h.contains("CREATED AT")),
        "{roles}"
    );

    let token = k.run(&["create", "token", "robot"]).await?;
    assert_eq!(token.trim().split('.').count(), 3, "a JWT: {token}");
    let (ok, out, err) = k.try_run(&["get", "nodes"]).await?;
    assert!(ok, "{err}");
    assert!(
        out.is_empty() && err.contains("No resources found"),
        "{out} {err}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminating_namespace_says_which_content_and_finalizers_remain() -> Result<()> {
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
    let (_dev, client) = cluster().await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "held"}}))?,
        )
        .await?;
    let maps: Api<ConfigMap> = Api::namespaced(client, "held");
    maps.create(
        &PostParams::default(),
        &serde_json::from_value(
            json!({"metadata": {"name": "kept", "finalizers": ["example.com/keep"]}}),
        )?,
    )
    .await?;
    namespaces.delete("held", &Default::default()).await?;
    let reported = kube::runtime::wait::await_condition(
        namespaces.clone(),
        "held",
        |ns: Option<&Namespace>| {
            ns.and_then(|ns| ns.status.as_ref())
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c.type_ == "NamespaceFinalizersRemaining" && c.status == "True")
                })
        },
    );
    let held = tokio::time::timeout(std::time::Duration::from_secs(10), reported)
        .await
        .context("the namespace reports its remaining finalizers within 10 s")??
        .context("the namespace is still there")?;
    let conditions = held.status.and_then(|s| s.conditions).unwrap_or_default();
    let message = |kind: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == kind)
            .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
    };
    assert_eq!(
        message("NamespaceFinalizersRemaining"),
        Some((
            "True".to_owned(),
            Some("SomeFinalizersRemain".to_owned()),
            Some(
                "Some content in the namespace has finalizers remaining: example.com/keep in 1 resource instances"
                    .to_owned()
            )
        ))
    );
    assert_eq!(
        message("NamespaceContentRemaining").map(|m| m.2),
        Some(Some(
            "Some resources are remaining: configmaps. has 1 resource instances".to_owned()
        ))
    );
    assert_eq!(
        message("NamespaceDeletionDiscoveryFailure").map(|m| m.0),
        Some("False".to_owned())
    );
    maps.patch(
        "kept",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await?;
    let gone =
        kube::runtime::wait::await_condition(namespaces, "held", |ns: Option<&Namespace>| {
            ns.is_none()
        });
    tokio::time::timeout(std::time::Duration::from_secs(10), gone)
        .await
        .context("the namespace goes within 10 s of its last finalizer")??;
    Ok(())
}

const SIZED_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: boxes.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: boxes, singular: box, kind: Box}
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
            x-kubernetes-validations:
            - rule: "self.size <= 10 || self.mode == 'big'"
              message: size above 10 needs mode big
            properties:
              mode: {type: string, enum: [small, big], default: small}
              size: {type: integer, default: 3, maximum: 50}
              name:
                type: string
                maxLength: 5
                x-kubernetes-validations:
                - rule: "self == oldSelf"
                  message: name is immutable
              tags: {type: array, maxItems: 2, items: {type: string, pattern: "^[a-z]+$"}}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_resources_are_defaulted_and_validated_as_a_real_server_does() -> Result<()> {
    let dev = DevCluster::start(Options::new()).await?;
    let dir = tempfile::tempdir()?;
    let k = Kubectl::new(dir.path(), "kubeconfig", &dev.kubeconfig_yaml())?;
    std::fs::write(dir.path().join("crd.yaml"), SIZED_CRD)?;
    k.run(&["apply", "-f", "crd.yaml"]).await?;
    k.run(&[
        "wait",
        "--for=condition=Established",
        "crd/boxes.example.com",
    ])
    .await?;
    let object = |name: &str, spec: &str| {
        format!("apiVersion: example.com/v1\nkind: Box\nmetadata: {{name: {name}}}\nspec: {spec}\n")
    };
    std::fs::write(dir.path().join("empty.yaml"), object("empty", "{}"))?;
    k.run(&["create", "-f", "empty.yaml"]).await?;
    let stored = k.json(&["get", "box", "empty"]).await?;
    assert_eq!(stored["spec"], json!({"mode": "small", "size": 3}));

    std::fs::write(
        dir.path().join("bad.yaml"),
        object(
            "bad",
            "{mode: zz, name: toolong, size: 60, tags: [a, b, C]}",
        ),
    )?;
    let refused = k.refused(&["create", "-f", "bad.yaml"]).await?;
    for line in [
        "* spec.mode: Unsupported value: \"zz\": supported values: \"small\", \"big\"",
        "* spec.name: Too long: may not be more than 5 bytes",
        "* spec.size: Invalid value: 60: spec.size in body should be less than or equal to 50",
        "* spec.tags: Too many: 3: must have at most 2 items",
        "* spec.tags[2]: Invalid value: \"C\": spec.tags[2] in body should match '^[a-z]+$'",
        "* <nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
    ] {
        assert!(refused.contains(line), "{line:?} missing from {refused}");
    }

    std::fs::write(dir.path().join("big.yaml"), object("big", "{size: 20}"))?;
    let refused = k.refused(&["create", "-f", "big.yaml"]).await?;
    assert!(
        refused.contains("* spec: Invalid value: size above 10 needs mode big")
            || refused.contains("spec: Invalid value: size above 10 needs mode big"),
        "{refused}"
    );
    std::fs::write(
        dir.path().join("bigger.yaml"),
        object("bigger", "{size: 20, mode: big}"),
    )?;
    k.run(&["create", "-f", "bigger.yaml"]).await?;

    // A transition rule (reading `oldSelf`) runs on updates where the field had a value: a
    // name may be set once, then never changed; other fields still change.
    let patch = |spec: &'static str| ["patch", "box", "empty", "--type=merge", "-p", spec];
    k.run(&patch(r#"{"spec":{"name":"abc"}}"#)).await?;
    k.run(&patch(r#"{"spec":{"size":4}}"#)).await?;
    let refused = k.refused(&patch(r#"{"spec":{"name":"xyz"}}"#)).await?;
    assert!(
        refused.contains("spec.name: Invalid value: name is immutable"),
        "{refused}"
    );
    assert_eq!(
        k.json(&["get", "box", "empty"]).await?["spec"]["name"],
        "abc"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crd_whose_rule_does_not_compile_is_refused() -> Result<()> {
    let dev = DevCluster::start(Options::new()).await?;
    let dir = tempfile::tempdir()?;
    let k = Kubectl::new(dir.path(), "kubeconfig", &dev.kubeconfig_yaml())?;
    std::fs::write(
        dir.path().join("crd.yaml"),
        SIZED_CRD.replace("self.size <= 10 ||", "self.size <= ||"),
    )?;
    let refused = k.refused(&["apply", "-f", "crd.yaml"]).await?;
    assert!(
        refused.contains(
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule: Invalid value"
        ) && refused.contains("compilation failed"),
        "{refused}"
    );
    Ok(())
}

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: d, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: d}}
  template:
    metadata: {labels: {app: d}}
    spec:
      containers:
      - name: c
        image: nginx
        ports: [{containerPort: 80}, {containerPort: 80, protocol: UDP}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_after_create_shares_identical_values() -> Result<()> {
    let dev = DevCluster::start(Options::new()).await?;
    let dir = tempfile::tempdir()?;
    let k = Kubectl::new(dir.path(), "kubeconfig", &dev.kubeconfig_yaml())?;
    std::fs::write(dir.path().join("d.yaml"), DEPLOYMENT)?;
    k.run(&["create", "-f", "d.yaml"]).await?;
    let out = k.run(&["apply", "--server-side", "-f", "d.yaml"]).await?;
    assert!(out.contains("serverside-applied"), "{out}");
    // Owned as a real server records it: ports keyed by port and protocol (TCP filled in),
    // the selector (an atomic map) whole.
    let applied = k
        .json(&["get", "deployment", "d", "--show-managed-fields"])
        .await?;
    let entry = managed_fields_of(&applied, "kubectl")?;
    let fields = &entry["f:spec"];
    assert_eq!(fields["f:selector"], json!({}), "{entry}");
    let ports = &fields["f:template"]["f:spec"]["f:containers"][r#"k:{"name":"c"}"#]["f:ports"];
    for key in [
        r#"k:{"containerPort":80,"protocol":"TCP"}"#,
        r#"k:{"containerPort":80,"protocol":"UDP"}"#,
    ] {
        assert!(ports.get(key).is_some(), "{key} in {ports}");
    }

    // A value another manager owns still conflicts when the apply changes it.
    std::fs::write(
        dir.path().join("d2.yaml"),
        DEPLOYMENT.replace("image: nginx", "image: httpd"),
    )?;
    let refused = k
        .refused(&[
            "apply",
            "--server-side",
            "--field-manager=other",
            "-f",
            "d2.yaml",
        ])
        .await?;
    assert!(
        refused.contains("conflict") && refused.contains(".image"),
        "{refused}"
    );
    Ok(())
}

/// The `fieldsV1` of `manager`'s entry in an object's `managedFields`.
fn managed_fields_of(obj: &Value, manager: &str) -> Result<Value> {
    obj["metadata"]["managedFields"]
        .as_array()
        .and_then(|entries| entries.iter().find(|e| e["manager"] == manager))
        .map(|e| e["fieldsV1"].clone())
        .with_context(|| format!("no managedFields entry of {manager} in {obj}"))
}

/// What a real 1.36 server records for `kubectl create deployment web --image=nginx`: the
/// maps and items the write created carry a `"."` entry (`labels`, the container,
/// `rollingUpdate`), the structs every Deployment has do not (`spec`, `strategy`,
/// `template`), the defaulted fields are the creator's, and `status` is nobody's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_records_what_it_added_as_a_real_server_does() -> Result<()> {
    let dev = DevCluster::start(Options::new()).await?;
    let dir = tempfile::tempdir()?;
    let k = Kubectl::new(dir.path(), "kubeconfig", &dev.kubeconfig_yaml())?;
    k.run(&["create", "deployment", "web", "--image=nginx"])
        .await?;
    let created = k
        .json(&["get", "deployment", "web", "--show-managed-fields"])
        .await?;
    let entries = created["metadata"]["managedFields"]
        .as_array()
        .context("managedFields")?;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["manager"], "kubectl-create");
    assert_eq!(entries[0]["operation"], "Update");
    let labels = json!({".": {}, "f:app": {}});
    let expected = json!({
        "f:metadata": {"f:labels": labels},
        "f:spec": {
            "f:progressDeadlineSeconds": {},
            "f:replicas": {},
            "f:revisionHistoryLimit": {},
            "f:selector": {},
            "f:strategy": {
                "f:rollingUpdate": {".": {}, "f:maxSurge": {}, "f:maxUnavailable": {}},
                "f:type": {},
            },
            "f:template": {
                "f:metadata": {"f:labels": labels},
                "f:spec": {
                    "f:containers": {r#"k:{"name":"nginx"}"#: {
                        ".": {},
                        "f:image": {},
                        "f:imagePullPolicy": {},
                        "f:name": {},
                        "f:resources": {},
                        "f:terminationMessagePath": {},
                        "f:terminationMessagePolicy": {},
                    }},
                    "f:dnsPolicy": {},
                    "f:restartPolicy": {},
                    "f:schedulerName": {},
                    "f:securityContext": {},
                    "f:terminationGracePeriodSeconds": {},
                },
            },
        },
    });
    assert_eq!(entries[0]["fieldsV1"], expected);

    // Labels added later: the map existed, so only the new label is the labeller's, and
    // the annotations map it creates carries its `"."`.
    k.run(&["label", "deployment", "web", "tier=front"]).await?;
    k.run(&["annotate", "deployment", "web", "note=x"]).await?;
    let changed = k
        .json(&["get", "deployment", "web", "--show-managed-fields"])
        .await?;
    let entry = |manager: &str| managed_fields_of(&changed, manager);
    assert_eq!(
        entry("kubectl-label")?,
        json!({"f:metadata": {"f:labels": {"f:tier": {}}}})
    );
    assert_eq!(
        entry("kubectl-annotate")?,
        json!({"f:metadata": {"f:annotations": {".": {}, "f:note": {}}}})
    );
    assert_eq!(entry("kubectl-create")?, expected);

    // Removing the annotations map takes it, and its `"."`, from its manager.
    k.run(&["annotate", "deployment", "web", "note-"]).await?;
    let removed = k
        .json(&["get", "deployment", "web", "--show-managed-fields"])
        .await?;
    let managers: Vec<&str> = removed["metadata"]["managedFields"]
        .as_array()
        .context("managedFields")?
        .iter()
        .filter_map(|e| e["manager"].as_str())
        .collect();
    assert!(!managers.contains(&"kubectl-annotate"), "{removed}");

    // An apply through the main resource cannot set status, nor own it.
    std::fs::write(
        dir.path().join("status.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\nstatus:\n  replicas: 7\n",
    )?;
    k.run(&[
        "apply",
        "--server-side",
        "--field-manager=scaler",
        "--force-conflicts",
        "-f",
        "status.yaml",
    ])
    .await?;
    let applied = k
        .json(&["get", "deployment", "web", "--show-managed-fields"])
        .await?;
    assert_eq!(
        managed_fields_of(&applied, "scaler")?,
        json!({"f:spec": {"f:replicas": {}}})
    );
    assert_ne!(applied["status"]["replicas"], 7, "{applied}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_documents_hold_the_kinds_schemas_in_v3_and_v2() -> Result<()> {
    let (_dev, client) = cluster().await?;
    let get = |path: &str| http::Request::get(path).body(Vec::new());

    let root: Value = serde_json::from_str(&client.request_text(get("/openapi/v3")?).await?)?;
    let url = root["paths"]["apis/apps/v1"]["serverRelativeURL"]
        .as_str()
        .context("apps/v1 in the index")?;
    let apps: Value = serde_json::from_str(&client.request_text(get(url)?).await?)?;
    assert_eq!(
        apps["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"]["x-kubernetes-group-version-kind"],
        json!([{"group": "apps", "version": "v1", "kind": "Deployment"}])
    );

    // With the extensions a real server publishes.
    let ports =
        &apps["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(ports["x-kubernetes-list-type"], "map", "{ports}");
    assert_eq!(
        ports["x-kubernetes-list-map-keys"],
        json!(["name"]),
        "{ports}"
    );
    assert_eq!(
        apps["components"]["schemas"]["io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"]["x-kubernetes-map-type"],
        "atomic"
    );

    let swagger: Value = serde_json::from_str(&client.request_text(get("/openapi/v2")?).await?)?;
    assert_eq!(swagger["swagger"], "2.0");
    assert_eq!(
        swagger["definitions"]["io.k8s.api.core.v1.Container"]["properties"]["ports"]["x-kubernetes-list-map-keys"],
        json!(["containerPort", "protocol"])
    );
    assert_eq!(
        swagger["definitions"]["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"]["allOf"],
        json!([{"$ref": "#/definitions/io.k8s.api.apps.v1.DeploymentStrategy"}])
    );
    // Only JSON is served: a client asking for swagger's protobuf form alone is refused.
    let protobuf = http::Request::get("/openapi/v2")
        .header(
            "Accept",
            "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
        )
        .body(Vec::new())?;
    assert_eq!(status(client.request_text(protobuf).await).code, 406);
    Ok(())
}
