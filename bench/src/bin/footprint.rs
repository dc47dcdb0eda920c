//! Cache footprint: heap bytes per cached object in Paddock's informer
//! store against kube-runtime's `reflector::Store<DynamicObject>` holding
//! the same 10,000 Deployments (as kube-runtime keeps them by default, and
//! with `managedFields` dropped as its documentation suggests), next to
//! the objects' JSON size.
//!
//! Heap use is counted by an instrumented global allocator, so the API
//! server runs as a separate process (the `devcluster` binary); a store's
//! size is what dropping it gives back once it has listed everything.
//!
//! Run with `cargo xtask bench`; `PADDOCK_BENCH_OBJECTS` sets the number
//! of objects. Writes `target/bench/footprint.json`.

use std::alloc::System;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::Arc;

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DynamicObject, PostParams};
use kube::runtime::reflector::store::Writer;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use paddock::cluster::{Discovery, SharedInformer};
use paddock_bench::process::{self, binary, workspace};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes still allocated since `region` started.
fn live(region: &Region<'_, System>) -> i64 {
    let change = region.change();
    change.bytes_allocated as i64 - change.bytes_deallocated as i64
        + change.bytes_reallocated as i64
}

/// Lets background tasks finish what they were doing before a reading.
async fn settle() {
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let objects: usize = std::env::var("PADDOCK_BENCH_OBJECTS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(10_000);
    let root = workspace();
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    let mut server = Command::new(binary("devcluster")?)
        .arg("--kubeconfig-out")
        .arg(&kubeconfig)
        // Not the default, in the working directory.
        .arg("--cert-kubeconfig-out")
        .arg(dir.path().join("cert.kubeconfig"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the devcluster binary")?;
    let mut first_line = String::new();
    std::io::BufReader::new(server.stdout.take().context("its stdout")?)
        .read_line(&mut first_line)?;
    if !kubeconfig.is_file() {
        process::stop(&mut server);
        bail!("the devcluster did not write its kubeconfig: {first_line}");
    }
    let result = measure(&kubeconfig, objects, &root).await;
    process::stop(&mut server);
    result
}

async fn measure(
    kubeconfig: &std::path::Path,
    objects: usize,
    root: &std::path::Path,
) -> anyhow::Result<()> {
    let client = process::client(kubeconfig).await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    futures::stream::iter(0..objects)
        .map(|index| {
            let deployments = deployments.clone();
            async move {
                let name = format!("cached-{index:05}");
                let object: Deployment = serde_json::from_value(serde_json::json!({
                    "metadata": {"name": name, "labels": {"app": name, "team": "bench"},
                                 "annotations": {"paddock.dev/min-replicas": "2"}},
                    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                             "template": {"metadata": {"labels": {"app": name}},
                                          "spec": {"containers": [{"name": "app", "image": "registry.example.com/app:1.0.0",
                                                    "ports": [{"containerPort": 8080}]}]}}}
                }))?;
                deployments.create(&PostParams::default(), &object).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(64)
        .try_collect::<Vec<()>>()
        .await?;
    let resource = Discovery::new(client.clone())
        .resolve("apps/v1", "Deployment")
        .await?;

    // The JSON the API server serves for these objects.
    let mut served = 0;
    for index in 0..100 {
        let request = kube::core::Request::new("/apis/apps/v1/namespaces/default/deployments")
            .get(&format!("cached-{index:05}"), &Default::default())?;
        served += client.request_text(request).await?.len();
    }
    let served_per_object = served / 100;

    // Paddock's store.
    settle().await;
    let region = Region::new(GLOBAL);
    let informer = SharedInformer::start(client.clone(), Arc::clone(&resource), None);
    informer.wait_synced().await;
    settle().await;
    let paddock_bytes = live(&region);
    let stored = informer.store().len();
    if stored != objects {
        bail!("Paddock's store holds {stored} of {objects} objects");
    }
    let estimated = informer.store().heap_bytes() / stored;
    let stored_json: usize = informer
        .store()
        .list(None, None)
        .iter()
        .map(|object| object.json.len())
        .sum::<usize>()
        / stored;
    drop(informer);
    settle().await;
    // What the store held is what dropping it gives back; the rest of
    // the region (connection buffers and the like) stays.
    let paddock_bytes = paddock_bytes - live(&region);

    // kube-runtime's store, as it keeps objects by default and without
    // managedFields.
    let mut kube_bytes = Vec::new();
    for strip in [false, true] {
        let region = Region::new(GLOBAL);
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource.api_resource());
        let writer = Writer::<DynamicObject>::new(resource.api_resource());
        let reader = writer.as_reader();
        let stream = watcher(api, watcher::Config::default());
        let task = if strip {
            tokio::spawn(
                reflector(
                    writer,
                    stream
                        .modify(|object: &mut DynamicObject| object.metadata.managed_fields = None),
                )
                .for_each(|_| async {}),
            )
        } else {
            tokio::spawn(reflector(writer, stream).for_each(|_| async {}))
        };
        reader.wait_until_ready().await?;
        settle().await;
        let bytes = live(&region);
        if reader.len() != objects {
            bail!(
                "kube-runtime's store holds {} of {objects} objects",
                reader.len()
            );
        }
        task.abort();
        drop(reader);
        settle().await;
        kube_bytes.push(bytes - live(&region));
    }

    let per = |bytes: i64| bytes as f64 / objects as f64;
    println!("cache footprint: {objects} Deployments, heap bytes per cached object");
    println!("{:<44} {:>10}", "", "bytes");
    println!("{:<44} {:>10.0}", "paddock store", per(paddock_bytes));
    println!(
        "{:<44} {:>10.0}",
        "kube-runtime Store<DynamicObject>",
        per(kube_bytes[0])
    );
    println!(
        "{:<44} {:>10.0}",
        "kube-runtime, managedFields dropped",
        per(kube_bytes[1])
    );
    println!(
        "{:<44} {:>10}",
        "paddock store, its own estimate", estimated
    );
    println!(
        "{:<44} {:>10}",
        "JSON served by the API server", served_per_object
    );
    println!(
        "{:<44} {:>10}",
        "JSON kept by paddock (no managedFields)", stored_json
    );
    println!(
        "paddock / kube-runtime = {:.2}   paddock / served JSON = {:.2}",
        per(paddock_bytes) / per(kube_bytes[0]),
        per(paddock_bytes) / served_per_object as f64
    );
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join("footprint.json"),
        serde_json::to_string_pretty(&serde_json::json!({
            "benchmark": "footprint", "objects": objects,
            "paddockBytesPerObject": per(paddock_bytes),
            "paddockEstimatedBytesPerObject": estimated,
            "kubeRuntimeBytesPerObject": per(kube_bytes[0]),
            "kubeRuntimeStrippedBytesPerObject": per(kube_bytes[1]),
            "servedJsonBytesPerObject": served_per_object,
            "storedJsonBytesPerObject": stored_json,
        }))?,
    )?;
    Ok(())
}
