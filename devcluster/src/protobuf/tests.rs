//! Round trips of real-shaped objects, envelope and frame bytes, and table coverage.

use serde_json::{Value, json};

use super::*;

/// JSON → protobuf → JSON gives back the input.
#[track_caller]
fn round_trip(v: Value) {
    let Value::Object(obj) = &v else {
        panic!("not an object")
    };
    let bytes = encode(obj).unwrap();
    assert!(bytes.starts_with(b"k8s\0"));
    let back = decode(&bytes).unwrap();
    assert_eq!(Value::Object(back), v);
}

#[test]
fn deployment_round_trips() {
    round_trip(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "labels": {"app": "web"},
            "annotations": {"deployment.kubernetes.io/revision": "1"},
            "creationTimestamp": "2024-05-01T10:20:30Z",
            "generation": 3,
            "uid": "0b7e5a4c-1111-2222-3333-444455556666",
            "ownerReferences": [{"apiVersion": "v1", "kind": "Thing", "name": "t", "uid": "u", "controller": true, "blockOwnerDeletion": false}],
            "finalizers": ["a", "b"],
            "managedFields": [{"manager": "kubectl", "operation": "Update", "apiVersion": "apps/v1", "time": "2024-05-01T10:20:30Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}}]
        },
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", ""]}]},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
            "paused": false,
            "template": {
                "metadata": {"labels": {"app": "web"}, "creationTimestamp": null},
                "spec": {
                    "terminationGracePeriodSeconds": 30,
                    "containers": [{
                        "name": "nginx",
                        "image": "nginx:1.27",
                        "command": ["nginx", "-g", "daemon off;"],
                        "ports": [{"containerPort": 80, "protocol": "TCP", "name": "http"}],
                        "env": [{"name": "A", "value": "1"}, {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                        "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "100m"}},
                        "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"}, "initialDelaySeconds": 3, "periodSeconds": 10},
                        "readinessProbe": {"tcpSocket": {"port": "http"}, "failureThreshold": 3},
                        "securityContext": {"allowPrivilegeEscalation": false, "runAsUser": 1000, "capabilities": {"drop": ["ALL"]}}
                    }],
                    "volumes": [{"name": "cfg", "configMap": {"name": "cfg", "defaultMode": 420}}]
                }
            }
        },
        "status": {"replicas": 1, "conditions": [{"type": "Available", "status": "True", "lastTransitionTime": "2024-05-01T10:20:31Z", "lastUpdateTime": "2024-05-01T10:20:31Z"}]}
    }));
}

#[test]
fn service_secret_and_cronjob_round_trip() {
    round_trip(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": "10.0.0.1",
            "clusterIPs": ["10.0.0.1"],
            "ports": [{"name": "80-8080", "port": 80, "targetPort": 8080, "protocol": "TCP"}, {"port": 443, "targetPort": "https"}],
            "selector": {"app": "web"},
            "ipFamilies": ["IPv4"],
            "sessionAffinity": "None"
        },
        "status": {"loadBalancer": {}}
    }));
    round_trip(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "s"},
        "type": "Opaque",
        "data": {"a": "Yg==", "bin": "AAH/", "empty": ""},
        "immutable": true
    }));
    round_trip(json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "tick"},
        "spec": {
            "schedule": "*/5 * * * *",
            "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Forbid",
            "suspend": false,
            "jobTemplate": {"metadata": {"name": "tick"}, "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "busybox", "args": ["date"]}]}}}}
        },
        "status": {"lastScheduleTime": "2024-05-01T10:20:00Z"}
    }));
}

#[test]
fn crd_schema_round_trips() {
    let properties = json!({
                                "size": {"type": "integer", "format": "int32", "default": 3, "minimum": 1.0, "maximum": 10.5},
                                "mode": {"type": "string", "enum": ["fast", "slow", 7, null]},
                                "port": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
                                "tuple": {"type": "array", "items": [{"type": "string"}, {"type": "integer"}]},
                                "list": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
                                "extra": {"type": "object", "additionalProperties": {"type": "string"}},
                                "open": {"type": "object", "additionalProperties": true},
                                "deps": {"type": "object", "dependencies": {"a": ["b", "c"], "d": {"required": ["e"]}}},
                                "ref": {"$ref": "#/definitions/x", "example": {"a": [1, 2]}}
    });
    round_trip(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList", "shortNames": ["wd"]},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}},
                "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}],
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": false,
                    "properties": {
                        "spec": {
                            "type": "object",
                            "required": ["size"],
                            "x-kubernetes-validations": [{"rule": "self.size > 0", "message": "positive"}],
                            "properties": properties
                        }
                    }
                }}
            }],
            "conversion": {"strategy": "None"}
        },
        "status": {"acceptedNames": {"plural": "widgets", "kind": "Widget"}, "storedVersions": ["v1"]}
    }));
}

#[test]
fn event_lease_and_node_round_trip() {
    round_trip(json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "e1", "namespace": "default"},
        "eventTime": "2024-05-01T10:20:30.123456Z",
        "reportingController": "paddock", "reportingInstance": "paddock-1",
        "action": "Reconcile", "reason": "Synced", "type": "Normal",
        "regarding": {"kind": "Pod", "name": "p", "namespace": "default"},
        "series": {"count": 2, "lastObservedTime": "2024-05-01T10:21:00.000001Z"}
    }));
    round_trip(json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "leader", "namespace": "kube-system"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15, "acquireTime": "2024-05-01T10:20:30.000000Z", "renewTime": "2024-05-01T10:20:45.500000Z", "leaseTransitions": 2}
    }));
    round_trip(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1"}},
        "spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"], "taints": [{"key": "k", "effect": "NoSchedule"}]},
        "status": {
            "addresses": [{"type": "InternalIP", "address": "172.18.0.2"}, {"type": "Hostname", "address": "n1"}],
            "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "allocatable": {"cpu": "3800m"},
            "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": "2024-05-01T10:20:30Z", "lastTransitionTime": "2024-05-01T10:00:00Z", "reason": "KubeletReady"}],
            "nodeInfo": {"kubeletVersion": "v1.36.0", "architecture": "amd64", "containerRuntimeVersion": "containerd://2.0", "kernelVersion": "6", "machineID": "m", "operatingSystem": "linux", "osImage": "x", "systemUUID": "s"}
        }
    }));
}

#[test]
fn more_kinds_round_trip() {
    for v in [
        json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "p"}, "spec": {"minAvailable": "50%", "selector": {"matchLabels": {"a": "b"}}}}),
        json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "p", "namespace": "d"}, "deleteOptions": {"gracePeriodSeconds": 0, "dryRun": ["All"]}}),
        json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"kind": "Node", "name": "n1"}}),
        json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "web"}, "spec": {"replicas": 3}, "status": {"replicas": 2, "selector": "app=web"}}),
        json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"}, "minReplicas": 1, "maxReplicas": 5, "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]}}),
        json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q"}, "spec": {"hard": {"pods": "10", "requests.cpu": "2"}}}),
        json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "high"}, "value": 1000000, "globalDefault": false, "description": "d"}),
        json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": "c"}, "spec": {"request": "LS0tLS1CRUdJTg==", "signerName": "kubernetes.io/kube-apiserver-client", "usages": ["client auth"], "extra": {"scopes": ["a", "b"]}}}),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "i"}, "spec": {"rules": [{"host": "a.example", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}),
        json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": "v1.example.com"}, "spec": {"group": "example.com", "version": "v1", "groupPriorityMinimum": 1000, "versionPriority": 15, "caBundle": "AAEC"}}),
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration", "metadata": {"name": "w"}, "webhooks": [{"name": "w.example.com", "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "scope": "*"}], "sideEffects": "None", "admissionReviewVersions": ["v1"], "clientConfig": {"url": "https://x"}}]}),
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingAdmissionPolicy", "metadata": {"name": "m"}, "spec": {"matchConstraints": {"resourceRules": [{"operations": ["CREATE"], "apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["deployments"]}]}, "failurePolicy": "Fail", "reinvocationPolicy": "IfNeeded", "mutations": [{"patchType": "ApplyConfiguration", "applyConfiguration": {"expression": "Object{metadata: Object.metadata{labels: {\"a\": \"b\"}}}"}}, {"patchType": "JSONPatch", "jsonPatch": {"expression": "[]"}}]}}),
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingAdmissionPolicyBindingList", "metadata": {}, "items": [{"metadata": {"name": "b"}, "spec": {"policyName": "m", "paramRef": {"name": "p", "parameterNotFoundAction": "Deny"}}}]}),
        json!({"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": {"name": "r"}, "revision": 2, "data": {"spec": {"template": {"a": 1}}}}),
        json!({"apiVersion": "apps/v1", "kind": "DeploymentList", "metadata": {"resourceVersion": "12", "continue": "x"}, "items": [{"metadata": {"name": "a"}, "spec": {"replicas": 1}}]}),
        json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure", "message": "not found", "reason": "NotFound", "details": {"name": "x", "kind": "pods", "causes": [{"reason": "FieldValueInvalid", "field": "spec"}]}, "code": 404}),
        json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "metadata": {}, "spec": {"user": "u", "groups": ["g"], "extra": {"k": ["v1", "v2"]}, "resourceAttributes": {"verb": "get", "resource": "pods"}}, "status": {"allowed": true}}),
        json!({"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema", "metadata": {"name": "f"}, "spec": {"priorityLevelConfiguration": {"name": "p"}, "matchingPrecedence": 500, "distinguisherMethod": {"type": "ByUser"}, "rules": [{"subjects": [{"kind": "Group", "group": {"name": "system:authenticated"}}], "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"], "clusterScope": true, "namespaces": ["*"]}]}]}}),
    ] {
        round_trip(v);
    }
}

#[test]
fn envelope_bytes_are_the_apiservers() {
    let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"k": "v"}});
    let bytes = encode(obj.as_object().unwrap()).unwrap();
    let type_meta = [&[0x0a, 2][..], b"v1", &[0x12, 9], b"ConfigMap"].concat();
    let raw = [
        &[0x0a, 4, 0x0a, 2][..],
        b"cm",
        &[0x12, 6, 0x0a, 1],
        b"k",
        &[0x12, 1],
        b"v",
    ]
    .concat();
    let expected = [
        b"k8s\0".as_slice(),
        &[0x0a, type_meta.len() as u8],
        &type_meta,
        &[0x12, raw.len() as u8],
        &raw,
        &[0x1a, 0, 0x22, 0],
    ]
    .concat();
    assert_eq!(bytes, expected);
}

#[test]
fn go_empty_strings_and_zero_times_read_as_json_does() {
    // A pod template's metadata as Go writes it: every string, even empty, and a zero time as
    // an empty message.
    let meta = [&[0x0a, 0][..], &[0x12, 0], &[0x42, 0]].concat();
    let mut template = vec![0x0a, meta.len() as u8];
    template.extend(&meta);
    let spec = [&[0x1a, template.len() as u8][..], &template].concat();
    let raw = [&[0x12, spec.len() as u8][..], &spec].concat();
    let type_meta = [&[0x0a, 7][..], b"apps/v1", &[0x12, 10], b"Deployment"].concat();
    let body = [
        b"k8s\0".as_slice(),
        &[0x0a, type_meta.len() as u8],
        &type_meta,
        &[0x12, raw.len() as u8],
        &raw,
    ]
    .concat();
    assert_eq!(
        Value::Object(decode(&body).unwrap()),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"template": {"metadata": {"creationTimestamp": null}}}})
    );
}

#[test]
fn unknown_fields_are_skipped_and_malformed_bodies_fail() {
    let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}});
    let mut bytes = encode(obj.as_object().unwrap()).unwrap();
    // Field 99 (varint) inside the ConfigMap message: grow the raw field's length by 3.
    let raw_at = bytes.iter().position(|b| *b == 0x12).unwrap();
    let raw_at = raw_at + 1 + bytes[raw_at + 1] as usize + 1;
    assert_eq!(bytes[raw_at], 0x12, "raw field");
    bytes[raw_at + 1] += 3;
    let end = raw_at + 2 + bytes[raw_at + 1] as usize - 3;
    bytes.splice(end..end, [0x98, 0x06, 0x01]);
    assert_eq!(Value::Object(decode(&bytes).unwrap()), obj);

    assert!(matches!(decode(b"{}"), Err(ProtoError::NotProtobuf)));
    let err = decode_request(b"k8s\0", "ConfigMap").unwrap_err();
    assert_eq!(
        (err.code, err.message.as_str()),
        (
            400,
            "the object provided is unrecognized (must be of type ConfigMap): empty body (6b387300)"
        )
    );
    // Metadata announces 4 bytes and holds 3.
    let type_meta = [&[0x0a, 2][..], b"v1", &[0x12, 9], b"ConfigMap"].concat();
    let raw = [&[0x0a, 4, 0x0a, 2][..], b"c"].concat();
    let truncated = [
        b"k8s\0".as_slice(),
        &[0x0a, type_meta.len() as u8],
        &type_meta,
        &[0x12, raw.len() as u8],
        &raw,
    ]
    .concat();
    assert!(matches!(decode(&truncated), Err(ProtoError::UnexpectedEof)));
    let err = decode_request(&truncated, "ConfigMap").unwrap_err();
    assert_eq!(err.code, 400);
    assert_eq!(
        err.message,
        "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: unexpected EOF"
    );
    let err = decode_request(b"{\"kind\":1}", "ConfigMap").unwrap_err();
    assert_eq!(
        err.message,
        "the object provided is unrecognized (must be of type ConfigMap): provided data does not appear to be a protobuf message, expected prefix [107 56 115 0] (7b226b696e64223a317d)"
    );
}

#[test]
fn kinds_without_a_message_are_refused_as_the_apiserver_does() {
    let widget = json!({"apiVersion": "example.com/v1", "kind": "Widget"});
    assert!(matches!(
        encode(widget.as_object().unwrap()),
        Err(ProtoError::UnknownKind { .. })
    ));
    let type_meta = [&[0x0a, 14][..], b"example.com/v1", &[0x12, 6], b"Widget"].concat();
    let body = [
        b"k8s\0".as_slice(),
        &[0x0a, type_meta.len() as u8],
        &type_meta,
    ]
    .concat();
    let err = refuse_for_custom_resource(&body, "Widget");
    assert_eq!(
        (err.code, err.message.as_str()),
        (
            400,
            "Widget in version \"v1\" cannot be handled as a Widget: Object 'Kind' is missing in 'object has no kind field '"
        )
    );
    let err = decode_request(&body, "ConfigMap").unwrap_err();
    assert_eq!(err.code, 400);
    assert_eq!(
        err.message,
        "Widget in version \"v1\" cannot be handled as a ConfigMap: no kind \"Widget\" is registered for version \"example.com/v1\" in scheme \"pkg/api/legacyscheme/scheme.go:30\""
    );
}

#[test]
fn empty_raw_extensions_read_and_write_as_null() {
    // Go's JSON for a RawExtension with nothing in it.
    round_trip(
        json!({"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": {"name": "r"}, "data": null, "revision": 1}),
    );
}

#[test]
fn delete_options_arrive_under_any_group_version() {
    let opts = json!({"apiVersion": "apps/v1", "kind": "DeleteOptions", "propagationPolicy": "Foreground", "gracePeriodSeconds": 5});
    round_trip(opts);
}

#[test]
fn watch_frames_are_length_prefixed_watch_events() {
    let event = br#"{"type":"ADDED","object":{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"cm"}}}"#;
    let frame = watch_frame(event).unwrap();
    let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
    assert_eq!(len, frame.len() - 4);
    let mut r = Reader::new(&frame[4..]);
    let Some((1, Wire::Bytes(ty))) = r.field().unwrap() else {
        panic!("no type")
    };
    assert_eq!(ty, b"ADDED");
    let Some((2, Wire::Bytes(raw_extension))) = r.field().unwrap() else {
        panic!("no object")
    };
    let Some((1, Wire::Bytes(object))) = Reader::new(raw_extension).field().unwrap() else {
        panic!("no raw")
    };
    assert_eq!(
        Value::Object(decode(object).unwrap()),
        json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "cm"}})
    );
}

#[test]
fn accept_headers_choose_the_encoding() {
    let pb = "application/vnd.kubernetes.protobuf, */*";
    assert_eq!(negotiate(pb, true).unwrap(), Encoding::Protobuf);
    assert_eq!(negotiate(pb, false).unwrap(), Encoding::Json);
    assert_eq!(negotiate("", true).unwrap(), Encoding::Json);
    assert_eq!(
        negotiate(
            "application/json, application/vnd.kubernetes.protobuf",
            true
        )
        .unwrap(),
        Encoding::Json
    );
    assert_eq!(
        negotiate(
            "application/json;q=0.5, application/vnd.kubernetes.protobuf",
            true
        )
        .unwrap(),
        Encoding::Protobuf
    );
    let err = negotiate("application/vnd.kubernetes.protobuf", false).unwrap_err();
    assert_eq!(
        (err.code, err.message.as_str()),
        (
            406,
            "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf"
        )
    );
    assert_eq!(negotiate("text/html", true).unwrap_err().code, 406);
    // Only a transformation: served as JSON by the Table and metadata views.
    assert_eq!(
        negotiate("application/json;as=Table;g=meta.k8s.io;v=v1", true).unwrap(),
        Encoding::Json
    );
}

#[test]
fn every_served_kind_has_a_message() {
    let registry = crate::registry::Registry::builtin();
    let mut missing = Vec::new();
    for res in registry.all() {
        for version in &res.versions {
            let api_version = res.api_version(version);
            let list = res
                .verbs
                .contains(&"list")
                .then(|| format!("{}List", res.kind));
            for kind in std::iter::once(res.kind.clone()).chain(list) {
                if message_of(&api_version, &kind).is_none() {
                    missing.push(format!("{api_version} {kind}"));
                }
            }
        }
    }
    assert!(missing.is_empty(), "kinds without a message: {missing:?}");
}

#[test]
fn every_kind_in_the_table_encodes_an_empty_object() {
    let all: Vec<_> = kinds().collect();
    assert!(all.len() > 150, "{} kinds", all.len());
    assert!(all.windows(2).all(|w| w[0] < w[1]), "KINDS is sorted");
    for (api_version, kind) in all {
        let obj = json!({"apiVersion": api_version, "kind": kind});
        let bytes = encode(obj.as_object().unwrap()).unwrap();
        let back = decode(&bytes).unwrap();
        assert_eq!(Value::Object(back), obj, "{api_version} {kind}");
    }
}

#[test]
fn deep_nesting_is_refused_not_a_stack_overflow() {
    let crd = message_of("apiextensions.k8s.io/v1", "CustomResourceDefinition").unwrap();
    let props = find_message(crd, "JsonSchemaProps").unwrap();
    let not = props.fields.iter().find(|f| f.json == "not").unwrap();
    // A schema nested in its own `not`, far deeper than any JSON body may be.
    let mut schema: Vec<u8> = Vec::new();
    for _ in 0..1_000 {
        let mut w = wire::Writer::default();
        w.bytes_field(not.number, &schema);
        schema = w.into_bytes();
    }
    let err = convert::to_json(props, &schema, 0).unwrap_err();
    assert_eq!(err.to_string(), "proto: messages nested deeper than 128");
    // 100 levels are fine.
    let mut shallow: Vec<u8> = Vec::new();
    for _ in 0..100 {
        let mut w = wire::Writer::default();
        w.bytes_field(not.number, &shallow);
        shallow = w.into_bytes();
    }
    assert!(convert::to_json(props, &shallow, 0).is_ok());
}

/// A message reachable from `from` by name, searched breadth first.
fn find_message(from: &'static table::Message, name: &str) -> Option<&'static table::Message> {
    let mut queue = std::collections::VecDeque::from([from]);
    let mut seen = std::collections::HashSet::new();
    while let Some(m) = queue.pop_front() {
        if m.name == name {
            return Some(m);
        }
        if !seen.insert(m.name) {
            continue;
        }
        for f in m.fields {
            if let table::Type::Message(inner) = f.ty {
                queue.push_back(inner);
            }
        }
    }
    None
}

#[test]
fn times_keep_what_go_keeps() {
    let crd = message_of("coordination.k8s.io/v1", "Lease").unwrap();
    let micro = find_message(crd, "MicroTime").unwrap();
    let time = find_message(crd, "Time");
    // 1714558830 s and 123456789 ns: Go keeps the microseconds of a MicroTime.
    let mut w = wire::Writer::default();
    w.varint_field(1, 1_714_558_830);
    w.varint_field(2, 123_456_789);
    let raw = w.into_bytes();
    assert_eq!(
        convert::to_json(micro, &raw, 0).unwrap(),
        json!("2024-05-01T10:20:30.123456Z")
    );
    let event = message_of("v1", "Event").unwrap();
    let time = time.or_else(|| find_message(event, "Time")).unwrap();
    assert_eq!(
        convert::to_json(time, &raw, 0).unwrap(),
        json!("2024-05-01T10:20:30Z")
    );
    // Year 10000 has no RFC 3339 form.
    let mut w = wire::Writer::default();
    w.varint_field(1, 253_402_300_800);
    assert_eq!(
        convert::to_json(time, &w.into_bytes(), 0)
            .unwrap_err()
            .to_string(),
        "Time.MarshalJSON: year outside of range [0,9999]"
    );
}
