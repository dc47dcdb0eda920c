//! Loading guests: clear errors for anything that is not a whole
//! `controller` component, and the compile cache.

use std::path::Path;

use paddock::wasm::{CacheStatus, EngineOptions, LoadError, LoadOptions, Relation, WasmEngine};
use paddock_tests::{engine, guest};

fn load_bytes(bytes: &[u8]) -> LoadError {
    engine()
        .load_bytes(Path::new("guest.wasm"), bytes, LoadOptions::default())
        .expect_err("the bytes are not a usable guest")
}

#[test]
fn a_missing_file_is_named() {
    let error = engine()
        .load(Path::new("/nonexistent/guest.wasm"), LoadOptions::default())
        .expect_err("no such file");
    assert!(matches!(error, LoadError::Read { .. }));
    assert_eq!(
        error.to_string(),
        "cannot read the module /nonexistent/guest.wasm"
    );
}

#[test]
fn text_is_not_webassembly() {
    let error = load_bytes(b"#!/bin/sh\necho hello\n");
    assert!(matches!(error, LoadError::NotWasm { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .starts_with("guest.wasm is not a WebAssembly component")
    );
}

#[test]
fn a_core_module_is_told_to_become_a_component() {
    let module = wat::parse_str("(module (func (export \"reconcile\")))").expect("valid wat");
    let error = load_bytes(&module);
    assert!(matches!(error, LoadError::CoreModule { .. }), "{error:?}");
    assert!(error.to_string().contains("wasm32-wasip2"));
}

#[test]
fn missing_exports_are_named() {
    let component = wat::parse_str("(component)").expect("valid wat");
    let error = load_bytes(&component);
    let LoadError::MissingExports { missing, .. } = &error else {
        panic!("expected missing exports, got {error:?}");
    };
    assert_eq!(missing, &["describe", "reconcile", "map"]);
    assert!(
        error
            .to_string()
            .contains("does not export `describe`, `reconcile`, `map`")
    );
}

#[test]
fn an_import_outside_the_contract_and_wasi_is_refused() {
    let component = wat::parse_str(
        r#"(component
             (import "acme:network/sockets" (instance))
             (core module $m (func (export "f")))
             (core instance $i (instantiate $m))
             (func $f (canon lift (core func $i "f")))
             (export "describe" (func $f))
             (export "reconcile" (func $f))
             (export "map" (func $f)))"#,
    )
    .expect("valid wat");
    let error = load_bytes(&component);
    let LoadError::UnsupportedImport { import, .. } = &error else {
        panic!("expected an unsupported import, got {error:?}");
    };
    assert_eq!(import, "acme:network/sockets");
}

#[test]
fn exports_of_the_wrong_types_break_the_contract() {
    let component = wat::parse_str(
        r#"(component
             (core module $m (func (export "f")))
             (core instance $i (instantiate $m))
             (func $f (canon lift (core func $i "f")))
             (export "describe" (func $f))
             (export "reconcile" (func $f))
             (export "map" (func $f)))"#,
    )
    .expect("valid wat");
    let error = load_bytes(&component);
    assert!(matches!(error, LoadError::Contract { .. }), "{error:?}");
    assert!(error.to_string().contains("paddock:controller@0.1"));
}

/// A guest whose `reconcile-json` answers a string (the rest of the
/// contract correct) is refused at load, naming the export and its type:
/// the host neither falls back to `reconcile` nor misreads the answer.
#[test]
fn a_reconcile_json_of_the_wrong_type_is_refused_at_load() {
    let error = engine()
        .load(&guest("wrong-json"), LoadOptions::default())
        .expect_err("a wrong reconcile-json is refused");
    assert!(matches!(error, LoadError::Contract { .. }), "{error:?}");
    let message = format!("{:#}", anyhow::Error::new(error));
    assert!(
        message.contains(
            "the export `reconcile-json` is not `func(req: request) -> result<list<u8>, error>`"
        ),
        "{message}"
    );
}

#[test]
fn describe_is_read_at_load() {
    let guest = engine()
        .load(&guest("label-policy"), LoadOptions::default())
        .expect("loads");
    assert_eq!(guest.name(), "label-policy");
    let info = guest.info();
    assert_eq!(info.primary().kind, "Deployment");
    assert_eq!(info.watches.len(), 2);
    assert_eq!(info.watches[1].kind, "Namespace");
    assert_eq!(info.watches[1].relation, Relation::Mapped);
    assert_eq!(guest.digest().len(), 64);
}

#[test]
fn the_operator_name_overrides_the_guest_name() {
    let guest = engine()
        .load(
            &guest("replica-floor"),
            LoadOptions::default().name("floor-prod"),
        )
        .expect("loads");
    assert_eq!(guest.name(), "floor-prod");
    assert_eq!(guest.info().name, "replica-floor");
}

/// The compiled artifacts in a compile cache folder.
fn artifacts_in(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .expect("list")
        .filter_map(Result::ok)
        .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "cwasm"))
        .count()
}

#[test]
fn a_second_load_is_served_from_the_compile_cache() {
    let dir = tempfile::tempdir().expect("temporary cache dir");
    let options = || EngineOptions::default().cache_dir(Some(dir.path().to_owned()));
    let module = guest("replica-floor");

    let first = WasmEngine::new(options()).expect("engine");
    let loaded = first.load(&module, LoadOptions::default()).expect("loads");
    assert_eq!(
        loaded.cache_status(),
        CacheStatus::Miss,
        "the first load compiles"
    );

    // A new engine, as after a restart: only the disk cache can help.
    let second = WasmEngine::new(options()).expect("engine");
    let reloaded = second.load(&module, LoadOptions::default()).expect("loads");
    assert_eq!(
        reloaded.cache_status(),
        CacheStatus::Hit,
        "the second load skips compilation"
    );
    assert_eq!(reloaded.digest(), loaded.digest());

    let artifacts = artifacts_in(dir.path());
    assert_eq!(artifacts, 1, "one artifact per module");
}

/// Fresh-per-call guests run on the engine's pooled wasmtime engine,
/// reused ones on the other: both compile alike and read the same
/// artifacts, so a component is compiled once for both.
#[test]
fn fresh_and_reused_guests_share_the_compile_cache() {
    use paddock::wasm::Instances;
    let dir = tempfile::tempdir().expect("temporary cache dir");
    let engine = WasmEngine::new(EngineOptions::default().cache_dir(Some(dir.path().to_owned())))
        .expect("engine");
    let module = guest("replica-floor");
    let reused = engine
        .load(&module, LoadOptions::default().instances(Instances::Reused))
        .expect("loads");
    assert_eq!(
        reused.cache_status(),
        CacheStatus::Miss,
        "the first load compiles"
    );
    let fresh = engine
        .load(
            &module,
            LoadOptions::default().instances(Instances::FreshPerCall),
        )
        .expect("loads");
    assert_eq!(
        fresh.cache_status(),
        CacheStatus::Hit,
        "the pooled engine reads the artifact the other one wrote"
    );
    let artifacts = artifacts_in(dir.path());
    assert_eq!(artifacts, 1, "one artifact for both engines");
}

#[test]
fn loads_of_one_component_at_the_same_time_compile_it_once() {
    let dir = tempfile::tempdir().expect("temporary cache dir");
    let module = guest("replica-floor");
    // Two engines, as two processes would have, sharing one cache folder.
    let engines: Vec<WasmEngine> = (0..2)
        .map(|_| {
            WasmEngine::new(EngineOptions::default().cache_dir(Some(dir.path().to_owned())))
                .expect("engine")
        })
        .collect();
    let mut statuses: Vec<CacheStatus> = std::thread::scope(|scope| {
        let loads: Vec<_> = engines
            .iter()
            .map(|engine| scope.spawn(|| engine.load(&module, LoadOptions::default())))
            .collect();
        loads
            .into_iter()
            .map(|load| {
                load.join()
                    .expect("no panic")
                    .expect("loads")
                    .cache_status()
            })
            .collect()
    });
    statuses.sort_by_key(|status| format!("{status:?}"));
    assert_eq!(
        statuses,
        [CacheStatus::Hit, CacheStatus::Miss],
        "one load compiles, the other waits for its artifact"
    );
}

#[test]
fn a_corrupt_cache_entry_is_recompiled() {
    let dir = tempfile::tempdir().expect("temporary cache dir");
    let engine = WasmEngine::new(EngineOptions::default().cache_dir(Some(dir.path().to_owned())))
        .expect("engine");
    let module = guest("replica-floor");
    engine.load(&module, LoadOptions::default()).expect("loads");
    let entry = std::fs::read_dir(dir.path())
        .expect("list")
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|ext| ext == "cwasm"))
        .expect("an artifact");
    std::fs::write(&entry, b"garbage").expect("corrupt the entry");

    let reloaded = engine
        .load(&module, LoadOptions::default())
        .expect("still loads");
    assert_eq!(
        reloaded.cache_status(),
        CacheStatus::Miss,
        "recompiled and stored again"
    );
    let again = engine.load(&module, LoadOptions::default()).expect("loads");
    assert_eq!(again.cache_status(), CacheStatus::Hit);
}

#[test]
fn no_cache_means_every_load_compiles() {
    let engine = WasmEngine::new(EngineOptions::default().cache_dir(None)).expect("engine");
    let loaded = engine
        .load(&guest("replica-floor"), LoadOptions::default())
        .expect("loads");
    assert_eq!(loaded.cache_status(), CacheStatus::Uncached);
}

#[test]
fn guests_of_one_component_share_its_code_while_one_lives() {
    let engine = WasmEngine::new(EngineOptions::default().cache_dir(None)).expect("engine");
    let module = guest("replica-floor");
    let first = engine
        .load(&module, LoadOptions::default().name("a"))
        .expect("loads");
    assert_eq!(first.cache_status(), CacheStatus::Uncached, "compiled");
    let second = engine
        .load(&module, LoadOptions::default().name("b"))
        .expect("loads");
    assert_eq!(
        second.cache_status(),
        CacheStatus::Hit,
        "the second guest shares the first one's compiled code"
    );
    drop((first, second));
    let third = engine.load(&module, LoadOptions::default()).expect("loads");
    assert_eq!(
        third.cache_status(),
        CacheStatus::Uncached,
        "once no guest holds it, the code is released"
    );
}

#[test]
fn a_guest_built_against_0_1_0_loads_and_runs_unchanged_and_the_sdk_declares_the_rest() {
    let legacy = engine()
        .load(&guest("legacy"), LoadOptions::default())
        .expect("a 0.1.0 guest loads on a 0.1.3 host");
    assert_eq!(legacy.info().name, "legacy");
    assert!(
        !legacy.info().finalizes,
        "without the export it does not finalize"
    );
    assert!(
        legacy.info().reads.is_empty(),
        "without the export it reads only what it watches"
    );
    let object = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "old", "namespace": "default"},
        "data": {"value": "7"},
    });
    let outcome = legacy
        .reconcile(
            &object.to_string(),
            paddock::wasm::Change::Applied,
            0,
            std::sync::Arc::new(paddock::wasm::EmptyCache),
        )
        .expect("it reconciles");
    assert_eq!(outcome.actions.len(), 1, "{outcome:?}");

    let finalizing = engine()
        .load(&guest("finalizing"), LoadOptions::default())
        .expect("loads");
    assert!(finalizing.info().finalizes, "the Rust SDK declares it");

    let tenant = engine()
        .load(&guest("tenant"), LoadOptions::default())
        .expect("loads");
    assert_eq!(
        tenant.info().reads,
        [paddock::wasm::Read {
            api_version: "v1".into(),
            kind: "Secret".into(),
            namespace: None,
        }],
        "the Rust SDK declares what it reads"
    );
}

/// The default engine's fresh-per-call instances take their memory from
/// its pool, and run the guests of every language call after call (each
/// fresh call reuses a slot the last one gave back); reused instances, and
/// fresh ones of a guest whose memory cap is larger than the pool's slots,
/// stay out of it.
#[test]
fn fresh_instances_come_from_the_pool_and_run_every_language() {
    use paddock::wasm::{Change, EmptyCache, Instances, Limits, Pooling};
    let engine = WasmEngine::new(
        EngineOptions::default().cache_dir(Some(paddock_tests::shared_cache_dir())),
    )
    .expect("an engine with a pool starts");
    let object = paddock::harness::read_object(
        &paddock_tests::workspace_root()
            .join("guest-examples/replica-floor/fixtures/below-floor/object.yaml"),
    )
    .expect("the fixture reads")
    .to_string();
    let pooled = || {
        engine
            .pooled_bytes_resident()
            .expect("the default engine has a pool")
    };
    let too_large = u64::try_from(Pooling::default().max_memory_bytes).expect("fits") + (64 << 10);
    for component in ["replica-floor", "replica-floor-py", "replica-floor-js"] {
        let calls = |options: LoadOptions| {
            let loaded = engine
                .load(&guest(component), options)
                .unwrap_or_else(|error| {
                    panic!("{component} loads: {:#}", anyhow::Error::new(error))
                });
            for call in 0..3 {
                let outcome = loaded
                    .reconcile(&object, Change::Applied, 0, std::sync::Arc::new(EmptyCache))
                    .unwrap_or_else(|error| panic!("{component} call {call}: {error:#}"));
                assert_eq!(outcome.actions.len(), 2, "{component} scales and records");
            }
        };
        let before = pooled();
        calls(LoadOptions::default().instances(Instances::Reused));
        calls(
            LoadOptions::default()
                .instances(Instances::FreshPerCall)
                .limits(Limits::default().memory_bytes(too_large)),
        );
        assert_eq!(
            pooled(),
            before,
            "{component}: neither reused instances nor a memory cap above the pool's slots \
             use the pool"
        );
        calls(LoadOptions::default().instances(Instances::FreshPerCall));
        assert!(
            pooled() > before,
            "{component}: fresh instances came from the pool and left pages resident in it \
             ({} bytes before, {} after)",
            before,
            pooled()
        );
    }
    let unpooled = WasmEngine::new(
        EngineOptions::default()
            .cache_dir(Some(paddock_tests::shared_cache_dir()))
            .pooling(None),
    )
    .expect("an engine without a pool starts");
    assert_eq!(unpooled.pooled_bytes_resident(), None);
}

/// Where the kernel says which pages an instance wrote, a pooled slot
/// resets them in place and keeps them, however scattered: the hostile
/// guest's `scatter` writes 512 separate runs of pages, many more than one
/// scan reports, and all 512 stay resident for the next instance.
#[test]
fn a_scattered_heap_stays_resident_in_the_pool() {
    use paddock::wasm::{Change, EmptyCache, Instances, Pooling};
    // 512 pages of at least 4 KiB (each write touches another page where
    // pages are up to 16 KiB, and larger pages only add up to more).
    const SCATTERED_BYTES: usize = 512 * 4096;
    if Pooling::default().keep_resident < SCATTERED_BYTES {
        eprintln!("skipped: this kernel has no PAGEMAP_SCAN, so the pool keeps no scattered pages");
        return;
    }
    let engine = WasmEngine::new(
        EngineOptions::default().cache_dir(Some(paddock_tests::shared_cache_dir())),
    )
    .expect("an engine with a pool starts");
    let hostile = engine
        .load(
            &guest("hostile"),
            LoadOptions::default().instances(Instances::FreshPerCall),
        )
        .expect("the hostile guest loads");
    let object = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "scatter",
            "namespace": "default",
            "annotations": {"paddock.dev/test-mode": "scatter"},
        },
    })
    .to_string();
    for call in 0..2 {
        hostile
            .reconcile(&object, Change::Applied, 0, std::sync::Arc::new(EmptyCache))
            .unwrap_or_else(|error| panic!("call {call}: {error:#}"));
        let resident = engine
            .pooled_bytes_resident()
            .expect("the engine has a pool");
        assert!(
            resident >= SCATTERED_BYTES,
            "call {call}: the pool keeps {resident} bytes resident, fewer than the \
             {SCATTERED_BYTES} the guest wrote in 512 separate pages"
        );
    }
}
