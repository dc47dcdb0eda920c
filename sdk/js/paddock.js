// Write Paddock controllers in JavaScript.
//
// A controller is an ES module (`app.js`) exporting `describe()` and
// `reconcile(request)`, and `map(changed)` for mapped watches, over plain
// objects:
//
//     import { Action, Watch, annotation, objectRef, done } from "./paddock.js";
//
//     export function describe() {
//       return { name: "replica-floor", watches: [Watch.primary("apps/v1", "Deployment")] };
//     }
//
// `describe` may add `finalizes: true`: the host then holds each primary
// object with the finalizer `paddock.dev/<controller>`, so a deletion
// reaches `reconcile` while the object still exists (`isDeletion(request)`);
// once that reconcile succeeds the host removes the finalizer. The grant
// must allow `patch` on the primary resource. It may add `reads`, the
// resources it reads from the cache without watching them (`Read(...)`): a
// guest reads only kinds it watches or reads; anything else reads as absent.
// It may add `indexes` (`Index(...)`), which `cache.byIndex` looks
// objects up by, and `projections` (`Projection(...)`): the fields it reads
// of some kinds, which the host then hands it alone.
//
//     export function reconcile({ object, change, attempt }) {
//       const floor = annotation(object, "paddock.dev/min-replicas");
//       if (floor === undefined) return done();
//       return { actions: [Action.scale(objectRef(object), Number(floor))] };
//     }
//
// `reconcile` answers with `{ actions, requeueAfterMs }` (or just an array of
// actions); throw `Transient` or `Permanent` to fail it; any other exception
// traps, like a panic in Rust. Build with `paddock build`, which wraps the
// module with `exportController` for componentize-js.

import * as hostCache from "paddock:controller/cache@0.1.5";
import * as hostLog from "paddock:controller/log@0.1.5";

// ---- Errors ---------------------------------------------------------------

/** Worth retrying: the host retries with per-object exponential backoff. */
export class Transient extends Error {}

/** Not worth retrying until the object changes. */
export class Permanent extends Error {}

// ---- Watches --------------------------------------------------------------

function watch(apiVersion, kind, relation, options = {}) {
  return {
    apiVersion,
    kind,
    relation,
    namespace: options.namespace,
    labelSelector: options.labelSelector,
  };
}

/** Watches; `options` may set `namespace` and `labelSelector`. */
export const Watch = {
  /** The kind this controller reconciles. */
  primary: (apiVersion, kind, options) => watch(apiVersion, kind, "primary", options),
  /** A kind this controller creates and owns: changes reconcile the owner. */
  owned: (apiVersion, kind, options) => watch(apiVersion, kind, "owned", options),
  /** A kind whose changes `map` turns into primary objects to reconcile. */
  mapped: (apiVersion, kind, options) => watch(apiVersion, kind, "mapped", options),
};

/**
 * A resource read from the cache without reacting to its changes, for
 * `describe()`'s `reads`; `options` may set `namespace`. The host keeps it
 * cached for the controller; the grant must allow `get` or `list` on it.
 */
export const Read = (apiVersion, kind, options = {}) => ({
  apiVersion,
  kind,
  namespace: options.namespace,
});

/**
 * An index of the cache, for `describe()`'s `indexes` and `cache.byIndex`:
 * objects of one kind (one the controller watches or reads) by the values
 * JSONPath expressions in kubectl's syntax select in them (strings, numbers
 * and booleans, as text, and each element of a selected list of them), e.g.
 * `Index("by-configmap", "apps/v1", "Deployment",
 * [".spec.template.spec.volumes[*].configMap.name"])`. The host evaluates it
 * whenever it stores an object of the kind.
 */
export const Index = (name, apiVersion, kind, paths) => ({ name, apiVersion, kind, paths });

/**
 * The fields of one kind (one the controller watches or reads) it reads,
 * for `describe()`'s `projections`: JSONPath expressions of field names and
 * `[*]` in kubectl's syntax, e.g. `Projection("apps/v1", "Deployment",
 * [".spec.replicas", ".metadata.annotations['paddock.dev/min-replicas']"])`.
 * The host hands such objects (to `reconcile`, `map` and every cache read)
 * narrowed to them, always keeping `apiVersion`, `kind` and the metadata
 * that names an object (`name`, `namespace`, `uid`, `resourceVersion`,
 * `generation`, `ownerReferences`, `deletionTimestamp`): the guest parses
 * only what it uses. A field not listed reads as absent.
 */
export const Projection = (apiVersion, kind, paths) => ({ apiVersion, kind, paths });

// ---- Objects --------------------------------------------------------------

/** A reference to a namespaced object. */
export function namespaced(apiVersion, kind, namespace, name) {
  return { apiVersion, kind, namespace, name };
}

/** A reference to a cluster-scoped object. */
export function cluster(apiVersion, kind, name) {
  return { apiVersion, kind, namespace: undefined, name };
}

// The readers below are written for an interpreter without a JIT (the
// engine componentize-js builds on), where every function call and every
// generic lookup costs as much as a dozen property reads: the metadata
// readers read their fixed paths directly. A fixed key read directly is
// safe: none is a property of `Object.prototype`, and a value of the wrong
// type reads as absent. Keys the guest chooses (`pointer`, `label`,
// `annotation`) go through `hasOwn`, so that `constructor` is not found.

const hasOwn = Object.hasOwn;

/** The value of `object[key]` if `object` is a JSON object that has it, or undefined. */
function field(object, key) {
  if (object === null || typeof object !== "object" || Array.isArray(object)) return undefined;
  if (!hasOwn(object, key)) return undefined;
  const value = object[key];
  return value === null ? undefined : value;
}

// The tokens of each JSON pointer a guest has used, decoded.
const pointerTokens = new Map();

function tokensOf(path) {
  let tokens = pointerTokens.get(path);
  if (tokens === undefined) {
    // The first token is the empty string before the leading "/".
    tokens = path.split("/").slice(1).map((token) =>
      token.includes("~") ? token.replaceAll("~1", "/").replaceAll("~0", "~") : token
    );
    if (pointerTokens.size < 1024) pointerTokens.set(path, tokens);
  }
  return tokens;
}

/** The value at a JSON pointer such as `/spec/replicas`, or undefined. */
export function pointer(object, path) {
  if (path === "") return object;
  const tokens = tokensOf(path);
  let current = object;
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i];
    if (current === null || typeof current !== "object") return undefined;
    if (Array.isArray(current)) {
      if (!/^[0-9]+$/.test(token)) return undefined;
      current = current[Number(token)];
    } else {
      if (!hasOwn(current, token)) return undefined;
      current = current[token];
    }
    if (current === null || current === undefined) return undefined;
  }
  return current;
}

/** The string at a JSON pointer, or undefined. */
export function strAt(object, path) {
  const value = pointer(object, path);
  return typeof value === "string" ? value : undefined;
}

/** The integer at a JSON pointer, or undefined. */
export function intAt(object, path) {
  const value = pointer(object, path);
  return Number.isInteger(value) ? value : undefined;
}

/** `apiVersion`, or `""`. */
export function apiVersion(object) {
  const value = object?.apiVersion;
  return typeof value === "string" ? value : "";
}
/** `kind`, or `""`. */
export function kind(object) {
  const value = object?.kind;
  return typeof value === "string" ? value : "";
}
/** `metadata.name`, or `""`. */
export function name(object) {
  const value = object?.metadata?.name;
  return typeof value === "string" ? value : "";
}
/** `metadata.namespace`; undefined for cluster-scoped objects. */
export function namespace(object) {
  const value = object?.metadata?.namespace;
  return typeof value === "string" ? value : undefined;
}
/** `metadata.uid`, or `""`. */
export function uid(object) {
  const value = object?.metadata?.uid;
  return typeof value === "string" ? value : "";
}
/** `metadata.resourceVersion`, if set. */
export function resourceVersion(object) {
  const value = object?.metadata?.resourceVersion;
  return typeof value === "string" ? value : undefined;
}
/** `metadata.generation`, if the kind has one. */
export function generation(object) {
  const value = object?.metadata?.generation;
  return Number.isInteger(value) ? value : undefined;
}
/** Whether `metadata.deletionTimestamp` is set. */
export function isBeingDeleted(object) {
  const metadata = object?.metadata;
  return metadata !== null && typeof metadata === "object" && !Array.isArray(metadata) &&
    metadata.deletionTimestamp !== undefined && metadata.deletionTimestamp !== null;
}

/** One label's value, or undefined. */
export function label(object, key) {
  const value = field(object?.metadata?.labels, key);
  return typeof value === "string" ? value : undefined;
}
/** One annotation's value, or undefined. */
export function annotation(object, key) {
  const value = field(object?.metadata?.annotations, key);
  return typeof value === "string" ? value : undefined;
}

function stringMap(object, key) {
  const map = field(object?.metadata, key);
  if (map === undefined) return {};
  return Object.fromEntries(Object.entries(map).filter(([, v]) => typeof v === "string"));
}

/** All labels with string values. */
export const labels = (object) => stringMap(object, "labels");
/** All annotations with string values. */
export const annotations = (object) => stringMap(object, "annotations");

/**
 * Whether a reconcile is about a deletion: the object is gone (`change` is
 * `"deleted"`) or is being deleted (`deletionTimestamp` set, as a finalizing
 * controller sees it). Clean up, and answer.
 */
export const isDeletion = (request) =>
  request.change === "deleted" || isBeingDeleted(request.object);

/** Whether `metadata.finalizers` holds `finalizer`. */
export function hasFinalizer(object, finalizer) {
  const finalizers = pointer(object, "/metadata/finalizers");
  return Array.isArray(finalizers) && finalizers.includes(finalizer);
}

/** The reference to this object. */
export function objectRef(object) {
  const metadata = object?.metadata;
  const apiVersion = object?.apiVersion;
  const kind = object?.kind;
  const namespace = metadata?.namespace;
  const name = metadata?.name;
  return {
    apiVersion: typeof apiVersion === "string" ? apiVersion : "",
    kind: typeof kind === "string" ? kind : "",
    namespace: typeof namespace === "string" ? namespace : undefined,
    name: typeof name === "string" ? name : "",
  };
}

/** An owner reference naming `object` as the controller of another one. */
export function controllerReference(object) {
  return {
    apiVersion: apiVersion(object),
    kind: kind(object),
    name: name(object),
    uid: uid(object),
    controller: true,
    blockOwnerDeletion: true,
  };
}

/** The controller owner of `object` as a reference, if it has one. */
export function controllerOwner(object) {
  const owners = pointer(object, "/metadata/ownerReferences");
  if (!Array.isArray(owners)) return undefined;
  const owner = owners.find((o) => o !== null && typeof o === "object" && o.controller === true);
  if (owner === undefined) return undefined;
  const { apiVersion: ownerApiVersion, kind: ownerKind, name: ownerName } = owner;
  if (![ownerApiVersion, ownerKind, ownerName].every((f) => typeof f === "string")) {
    return undefined;
  }
  return { apiVersion: ownerApiVersion, kind: ownerKind, namespace: namespace(object), name: ownerName };
}

// ---- Actions --------------------------------------------------------------

function ownedBy(owner, child) {
  const copy = structuredClone(child);
  if (copy !== null && typeof copy === "object" && !Array.isArray(copy)) {
    copy.metadata ??= {};
    const metadata = copy.metadata;
    if (metadata !== null && typeof metadata === "object" && !Array.isArray(metadata)) {
      const ownerNamespace = namespace(owner);
      if (ownerNamespace !== undefined && metadata.namespace === undefined) {
        metadata.namespace = ownerNamespace;
      }
      metadata.ownerReferences = [controllerReference(owner)];
    }
  }
  return copy;
}

const patch = (target, patchKind, body) => ({ action: "patch", target, patchKind, body, force: false });

/** Builders for the actions a reconcile answers with (plain objects). */
export const Action = {
  /** Create `object`. */
  create: (object) => ({ action: "create", object }),
  /** Replace `object` (keep `metadata.resourceVersion` for optimistic concurrency). */
  update: (object) => ({ action: "update", object }),
  /** Replace the status of `object` through `/status`. */
  updateStatus: (object) => ({ action: "update-status", object }),
  /** Server-side apply `object`, taking over fields other managers own (`force`). */
  apply: (object) => ({
    action: "patch", target: objectRef(object), patchKind: "apply", body: object, force: true,
  }),
  /** Server-side apply `child` owned by `owner` (owner reference and namespace set for you). */
  applyOwned: (owner, child) => Action.apply(ownedBy(owner, child)),
  /** Create `child` owned by `owner` (see `applyOwned`). */
  createOwned: (owner, child) => Action.create(ownedBy(owner, child)),
  /** A JSON merge patch of `target`. */
  mergePatch: (target, body) => patch(target, "merge", body),
  /** A JSON patch (a list of operations) of `target`. */
  jsonPatch: (target, operations) => patch(target, "json", operations),
  /** A strategic merge patch of `target` (built-in kinds only). */
  strategicPatch: (target, body) => patch(target, "strategic", body),
  /** Delete `target`. */
  delete: (target) => ({ action: "delete", target }),
  /** Set the replicas of `target` through its `/scale` subresource. */
  scale: (target, replicas) => ({ action: "scale", target, replicas }),
  /** Record a Normal event about `regarding`. */
  event: (regarding, reason, message) =>
    ({ action: "event", regarding, warning: false, reason, message }),
  /** Record a Warning event about `regarding`. */
  warning: (regarding, reason, message) =>
    ({ action: "event", regarding, warning: true, reason, message }),
};

/** Nothing to do. */
export function done() {
  return { actions: [], requeueAfterMs: undefined };
}

/** Actions, and a requeue after `requeueAfterMs` milliseconds if given. */
export function outcome(actions, requeueAfterMs) {
  return { actions, requeueAfterMs };
}

// ---- Cache, log, time -----------------------------------------------------

/** Read-only access to the host's informer caches, scoped by the grant. */
export const cache = {
  /** The cached object `target` names, or undefined. */
  get(target) {
    const json = hostCache.get(refToWit(target));
    return json === undefined ? undefined : JSON.parse(json);
  },
  /** Cached objects of one kind, sorted by namespace and name. */
  list(apiVersion, kind, namespace, labelSelector) {
    return hostCache.list(apiVersion, kind, namespace, labelSelector).map((json) => JSON.parse(json));
  },
  /**
   * Cached objects whose values for the index `index` (declared in
   * `describe()`'s `indexes`) include `value`, sorted by namespace and name;
   * `namespace` undefined for all the guest may see. The rights of `list` on
   * the index's kind apply; an undeclared index finds nothing.
   */
  byIndex(index, value, namespace) {
    return hostCache.byIndex(index, String(value), namespace).map((json) => JSON.parse(json));
  },
};

/**
 * Logging into the host's log, tagged with the guest and the object: one
 * line per call, at the level the method names (`log.info("scaled to 3")`).
 */
export const log = {
  trace: (message) => hostLog.log("trace", String(message)),
  debug: (message) => hostLog.log("debug", String(message)),
  info: (message) => hostLog.log("info", String(message)),
  warn: (message) => hostLog.log("warn", String(message)),
  error: (message) => hostLog.log("error", String(message)),
};

/** The current time as an RFC 3339 timestamp with second precision. */
export function now() {
  return new Date().toISOString().replace(/\.\d+Z$/, "Z");
}

// ---- The export to the component -------------------------------------------

function refToWit(ref) {
  return {
    apiVersion: ref.apiVersion,
    kind: ref.kind,
    namespace: ref.namespace ?? undefined,
    name: ref.name,
  };
}

// An action in the JSON form of `reconcile-json` (the world
// `controller-json`): one document the bindings copy at once, where the
// records of `reconcile` cost a loop over every character of every string.
function actionToJson(action) {
  switch (action.action) {
    case "create":
    case "update":
    case "update-status":
      return { [action.action]: action.object };
    case "patch":
      return {
        patch: {
          target: refToWit(action.target),
          kind: action.patchKind,
          body: action.body,
          force: Boolean(action.force),
        },
      };
    case "delete":
      return { delete: refToWit(action.target) };
    case "scale":
      // As the bindings convert a `u32`.
      return { scale: { target: refToWit(action.target), replicas: action.replicas >>> 0 } };
    case "event":
      return {
        "record-event": {
          regarding: refToWit(action.regarding),
          warning: Boolean(action.warning),
          reason: action.reason,
          message: action.message,
        },
      };
    default:
      throw new TypeError(`unknown action ${JSON.stringify(action.action)}`);
  }
}

// The same action as the record `reconcile` answers (the world
// `controller`): the JSON form's case and value, with the object or the
// patch document as JSON text.
function actionToWit(action) {
  const [[tag, val]] = Object.entries(actionToJson(action));
  switch (tag) {
    case "create":
    case "update":
    case "update-status":
      return { tag, val: JSON.stringify(val) };
    case "patch":
      return { tag, val: { ...val, body: JSON.stringify(val.body) } };
    default:
      return { tag, val };
  }
}

const UTF8 = new TextEncoder();
// The most common answer, encoded once (the bindings copy it, never change it).
const NOTHING_TO_DO = UTF8.encode('{"actions":[]}');

/**
 * Calls the controller's `reconcile` with the request's object parsed, and
 * gives its answer as `{ actions, requeueAfterMs }`, the delay a whole
 * number of milliseconds or undefined.
 */
function answer(reconcile, request) {
  let object;
  try {
    object = JSON.parse(request.object);
  } catch (error) {
    throw { tag: "permanent", val: `the host sent an object that does not parse: ${error}` };
  }
  let answered;
  try {
    answered = reconcile({ object, change: request.change, attempt: request.attempt });
  } catch (error) {
    if (error instanceof Transient) throw { tag: "transient", val: error.message };
    if (error instanceof Permanent) throw { tag: "permanent", val: error.message };
    throw error;
  }
  const result = Array.isArray(answered) ? { actions: answered } : (answered ?? done());
  const requeue = result.requeueAfterMs;
  let requeueAfterMs;
  if (requeue !== undefined && requeue !== null) {
    requeueAfterMs = Math.max(0, Math.round(requeue));
    if (!Number.isFinite(requeueAfterMs)) {
      throw new RangeError(`requeueAfterMs is ${requeue}, not a number of milliseconds`);
    }
  }
  return { actions: result.actions ?? [], requeueAfterMs };
}

/**
 * Wraps a controller module (its `describe`, `reconcile` and optional `map`)
 * into the component's exports. `paddock build` does this for you.
 */
export function exportController(controller) {
  const reconcile = controller.reconcile;
  return {
    describe() {
      const info = controller.describe();
      return {
        name: info.name,
        watches: info.watches.map((w) => ({
          apiVersion: w.apiVersion,
          kind: w.kind,
          relation: w.relation,
          namespace: w.namespace ?? undefined,
          labelSelector: w.labelSelector ?? undefined,
        })),
      };
    },
    finalizes() {
      return Boolean(controller.describe().finalizes);
    },
    reads() {
      return (controller.describe().reads ?? []).map((r) => ({
        apiVersion: r.apiVersion,
        kind: r.kind,
        namespace: r.namespace ?? undefined,
      }));
    },
    indexes() {
      return (controller.describe().indexes ?? []).map((i) => ({
        name: i.name,
        apiVersion: i.apiVersion,
        kind: i.kind,
        paths: [...i.paths],
      }));
    },
    projections() {
      return (controller.describe().projections ?? []).map((p) => ({
        apiVersion: p.apiVersion,
        kind: p.kind,
        paths: [...p.paths],
      }));
    },
    reconcile(request) {
      const { actions, requeueAfterMs } = answer(reconcile, request);
      return {
        actions: actions.map(actionToWit),
        requeueAfterMs: requeueAfterMs === undefined ? undefined : BigInt(requeueAfterMs),
      };
    },
    reconcileJson(request) {
      const { actions, requeueAfterMs } = answer(reconcile, request);
      if (actions.length === 0 && requeueAfterMs === undefined) return NOTHING_TO_DO;
      return UTF8.encode(JSON.stringify({ actions: actions.map(actionToJson), requeueAfterMs }));
    },
    map(changed) {
      if (typeof controller.map !== "function") return [];
      let object;
      try {
        object = JSON.parse(changed);
      } catch {
        return [];
      }
      return controller.map(object).map(refToWit);
    },
  };
}
