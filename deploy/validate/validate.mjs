// Validates rendered Kubernetes manifests of LuxDB (the output of `kubectl kustomize`).
//
//   node validate.mjs NAME=FILE [NAME=FILE ...]
//
// Each FILE is one render (multi-document YAML) and NAME labels it in the output. Every
// object is validated twice:
//  1. against the Kubernetes API schema, with the kubernetes-models class of its apiVersion
//     and kind (types, required fields, enums, formats); a kind it has no class for is an
//     error;
//  2. by LuxDB's own checks of the fields that matter for running it (below), because the
//     schema accepts unknown, misspelt field names silently: `readOnlyRootFilesytem: true`
//     would pass it and leave the root filesystem writable. Where these checks look, every
//     key is also checked against the API's field names (allow-lists taken from the pinned
//     kubernetes-models, Kubernetes 1.32).
// A render holds one LuxDB StatefulSet (container "luxdb") and, in cluster mode (deploy/cluster:
// LUXDB_CLUSTER_ETCD set), an etcd StatefulSet (container "etcd"). There the checks follow the
// names from object to object, as Kubernetes' DNS and Kubernetes' $(VAR) expansion would: the
// nodes' etcd endpoints must be the members' client addresses, a node's advertised address its
// own name under its governing Service, etcd's --initial-cluster exactly its replicas; each
// PodDisruptionBudget must cover one StatefulSet's pods (etcd's keeping the quorum), and the
// pods of each StatefulSet must be kept apart by anti-affinity.
// Prints "ok NAME: KIND/NAME (API)" per valid object, and for each problem
// "error NAME: KIND/NAME: PATH: MESSAGE" on stderr. Exit status 0 when everything is valid,
// 1 when anything is not, 2 on a usage or read error or a failure of the validator itself.

import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";

// ---- field names of the API objects LuxDB's checks walk (kubernetes-models 4.5.1) ----

const FIELDS = {
  object: ["apiVersion", "kind", "metadata", "spec", "status"],
  objectMeta: ["annotations", "creationTimestamp", "deletionGracePeriodSeconds",
    "deletionTimestamp", "finalizers", "generateName", "generation", "labels", "managedFields",
    "name", "namespace", "ownerReferences", "resourceVersion", "selfLink", "uid"],
  labelSelector: ["matchExpressions", "matchLabels"],
  statefulSetSpec: ["minReadySeconds", "ordinals", "persistentVolumeClaimRetentionPolicy",
    "podManagementPolicy", "replicas", "revisionHistoryLimit", "selector", "serviceName",
    "template", "updateStrategy", "volumeClaimTemplates"],
  podTemplate: ["metadata", "spec"],
  podSpec: ["activeDeadlineSeconds", "affinity", "automountServiceAccountToken", "containers",
    "dnsConfig", "dnsPolicy", "enableServiceLinks", "ephemeralContainers", "hostAliases",
    "hostIPC", "hostNetwork", "hostPID", "hostUsers", "hostname", "imagePullSecrets",
    "initContainers", "nodeName", "nodeSelector", "os", "overhead", "preemptionPolicy",
    "priority", "priorityClassName", "readinessGates", "resourceClaims", "resources",
    "restartPolicy", "runtimeClassName", "schedulerName", "schedulingGates", "securityContext",
    "serviceAccount", "serviceAccountName", "setHostnameAsFQDN", "shareProcessNamespace",
    "subdomain", "terminationGracePeriodSeconds", "tolerations", "topologySpreadConstraints",
    "volumes"],
  podSecurityContext: ["appArmorProfile", "fsGroup", "fsGroupChangePolicy", "runAsGroup",
    "runAsNonRoot", "runAsUser", "seLinuxChangePolicy", "seLinuxOptions", "seccompProfile",
    "supplementalGroups", "supplementalGroupsPolicy", "sysctls", "windowsOptions"],
  seccompProfile: ["localhostProfile", "type"],
  container: ["args", "command", "env", "envFrom", "image", "imagePullPolicy", "lifecycle",
    "livenessProbe", "name", "ports", "readinessProbe", "resizePolicy", "resources",
    "restartPolicy", "securityContext", "startupProbe", "stdin", "stdinOnce",
    "terminationMessagePath", "terminationMessagePolicy", "tty", "volumeDevices",
    "volumeMounts", "workingDir"],
  containerPort: ["containerPort", "hostIP", "hostPort", "name", "protocol"],
  envVar: ["name", "value", "valueFrom"],
  envVarSource: ["configMapKeyRef", "fieldRef", "resourceFieldRef", "secretKeyRef"],
  secretKeySelector: ["key", "name", "optional"],
  resources: ["claims", "limits", "requests"],
  probe: ["exec", "failureThreshold", "grpc", "httpGet", "initialDelaySeconds", "periodSeconds",
    "successThreshold", "tcpSocket", "terminationGracePeriodSeconds", "timeoutSeconds"],
  grpcAction: ["port", "service"],
  execAction: ["command"],
  securityContext: ["allowPrivilegeEscalation", "appArmorProfile", "capabilities", "privileged",
    "procMount", "readOnlyRootFilesystem", "runAsGroup", "runAsNonRoot", "runAsUser",
    "seLinuxOptions", "seccompProfile", "windowsOptions"],
  capabilities: ["add", "drop"],
  volumeMount: ["mountPath", "mountPropagation", "name", "readOnly", "recursiveReadOnly",
    "subPath", "subPathExpr"],
  volume: ["awsElasticBlockStore", "azureDisk", "azureFile", "cephfs", "cinder", "configMap",
    "csi", "downwardAPI", "emptyDir", "ephemeral", "fc", "flexVolume", "flocker",
    "gcePersistentDisk", "gitRepo", "glusterfs", "hostPath", "image", "iscsi", "name", "nfs",
    "persistentVolumeClaim", "photonPersistentDisk", "portworxVolume", "projected", "quobyte",
    "rbd", "scaleIO", "secret", "storageos", "vsphereVolume"],
  secretVolume: ["defaultMode", "items", "optional", "secretName"],
  emptyDirVolume: ["medium", "sizeLimit"],
  claimSpec: ["accessModes", "dataSource", "dataSourceRef", "resources", "selector",
    "storageClassName", "volumeAttributesClassName", "volumeMode", "volumeName"],
  claimResources: ["limits", "requests"],
  serviceSpec: ["allocateLoadBalancerNodePorts", "clusterIP", "clusterIPs", "externalIPs",
    "externalName", "externalTrafficPolicy", "healthCheckNodePort", "internalTrafficPolicy",
    "ipFamilies", "ipFamilyPolicy", "loadBalancerClass", "loadBalancerIP",
    "loadBalancerSourceRanges", "ports", "publishNotReadyAddresses", "selector",
    "sessionAffinity", "sessionAffinityConfig", "trafficDistribution", "type"],
  servicePort: ["appProtocol", "name", "nodePort", "port", "protocol", "targetPort"],
  objectFieldSelector: ["apiVersion", "fieldPath"],
  affinity: ["nodeAffinity", "podAffinity", "podAntiAffinity"],
  podAntiAffinity: ["preferredDuringSchedulingIgnoredDuringExecution",
    "requiredDuringSchedulingIgnoredDuringExecution"],
  weightedPodAffinityTerm: ["podAffinityTerm", "weight"],
  podAffinityTerm: ["labelSelector", "matchLabelKeys", "mismatchLabelKeys", "namespaceSelector",
    "namespaces", "topologyKey"],
  budgetSpec: ["maxUnavailable", "minAvailable", "selector", "unhealthyPodEvictionPolicy"],
};

// ---- LuxDB's expectations ----

const PORT = 8484;
const DEFAULT_METRICS_PORT = 9484;  // the server's --metrics-port default
const DATA_DIR = "/data";
const IMAGE_UID = 10001;  // the image's user `luxdb`
const DEFAULT_GRACE_SECONDS = 25;  // the server's --grace-seconds default
// terminationGracePeriodSeconds must leave this much after the grace period for the server to
// write its graph snapshots and flush storage.
const SNAPSHOT_MARGIN_SECONDS = 15;
const CONTAINER = "luxdb";
// etcd, for cluster mode (deploy/cluster): its container's name, its image's user, and its
// default ports.
const ETCD_CONTAINER = "etcd";
const ETCD_IMAGE_UID = 10002;
const ETCD_CLIENT_PORT = 2379;
const ETCD_PEER_PORT = 2380;
// What Kubernetes puts for $(VAR) when VAR comes from the downward API: the pod's own name and
// namespace. Neither can occur in a DNS name, so an address that holds one is recognised.
const POD_NAME = "<pod>";
const POD_NAMESPACE = "<namespace>";

// ---- helpers ----

const isObject = (value) => value !== null && typeof value === "object" && !Array.isArray(value);
const asList = (value) => (Array.isArray(value) ? value : []);  // the schema reports non-lists

function editDistance(a, b) {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let previous = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const saved = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1,
        previous + (a[i - 1].toLowerCase() === b[j - 1].toLowerCase() ? 0 : 1));
      previous = saved;
    }
  }
  return row[b.length];
}

// Problems found in one object: [path, message].
class Problems {
  constructor() { this.list = []; }
  add(path, message) { this.list.push([path, message]); }
  // Every key of `value` must be one of FIELDS[kind]; a near miss names the likely field.
  fields(value, kind, path) {
    if (value === undefined || value === null) return;
    if (!isObject(value)) {
      this.add(path, `must be an object, got ${JSON.stringify(value)}`);
      return;
    }
    const allowed = FIELDS[kind];
    for (const key of Object.keys(value)) {
      if (allowed.includes(key)) continue;
      const near = allowed.filter((name) => editDistance(key, name) <= 3)
        .sort((x, y) => editDistance(key, x) - editDistance(key, y));
      this.add(`${path}.${key}`, `unknown field "${key}"` +
        (near.length ? ` (did you mean "${near[0]}"?)` : ` (known: ${allowed.join(", ")})`));
    }
  }
}

function parseQuantity(text) {
  const match = /^([0-9.]+)(m|k|M|G|T|P|Ki|Mi|Gi|Ti|Pi)?$/.exec(String(text));
  if (!match) return NaN;
  const scale = { m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, Ki: 2 ** 10, Mi: 2 ** 20,
    Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50 };
  return Number(match[1]) * (match[2] ? scale[match[2]] : 1);
}

const labelsMatch = (selector, labels) => isObject(selector) && Object.keys(selector).length > 0
  && Object.entries(selector).every(([key, value]) => isObject(labels) && labels[key] === value);

// The value of `--flag V` or `--flag=V` in an argument list.
function flagValue(args, flag) {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === flag) return args[i + 1];
    if (typeof args[i] === "string" && args[i].startsWith(`${flag}=`)) {
      return args[i].slice(flag.length + 1);
    }
  }
  return undefined;
}

// Kubernetes' $(VAR) expansion (env values, command, args): a name in `vars` is replaced by
// its value, "$$" is an escaped "$", and any other reference is left as it is, after calling
// unknown(name).
function expand(text, vars, unknown) {
  return String(text).replace(/\$\$|\$\(([^)]*)\)/g, (match, name) => {
    if (match === "$$") return "$";
    if (vars.has(name)) return vars.get(name);
    unknown(name);
    return match;
  });
}

// Where HOST:PORT leads when HOST names a StatefulSet's pod through its governing Service:
// POD.SERVICE[.NAMESPACE[.svc[.DOMAIN]]]. Returns {pod, service, port}, or {error}. The
// namespace must be the pods' own: $(VAR) of metadata.namespace, or the manifests' namespace.
function podAddress(address, namespace) {
  const match = /^([^:/[\]]+):([0-9]+)$/.exec(address);
  if (!match) return { error: "not HOST:PORT" };
  const labels = match[1].split(".");
  if (labels.length < 2) return { error: "not a pod's name under a Service (POD.SERVICE...)" };
  if (labels.length >= 3 && labels[2] !== POD_NAMESPACE && labels[2] !== namespace) {
    return { error: `"${labels[2]}" may not be the pods' namespace: use $(VAR) of fieldRef ` +
      "metadata.namespace" };
  }
  if (labels.length >= 4 && labels[3] !== "svc") return { error: `"${labels[3]}" where "svc" belongs` };
  return { pod: labels[0], service: labels[1], port: Number(match[2]) };
}

// http://HOST:PORT (etcd's URLs) as HOST:PORT.
const urlAddress = (url) => (/^https?:\/\/([^/]+?)\/?$/.exec(String(url).trim()) || [])[1] || "";

// Kubernetes' label selector (matchLabels and matchExpressions): an empty one selects every
// pod, a missing one none.
function selects(selector, labels) {
  if (!isObject(selector)) return false;
  const has = (key) => isObject(labels) && Object.prototype.hasOwnProperty.call(labels, key);
  return Object.entries(selector.matchLabels || {})
    .every(([key, value]) => has(key) && labels[key] === value)
    && asList(selector.matchExpressions).every((e) => {
      const values = (e || {}).values || [];
      switch ((e || {}).operator) {
        case "In": return has(e.key) && values.includes(labels[e.key]);
        case "NotIn": return !has(e.key) || !values.includes(labels[e.key]);
        case "Exists": return has(e.key);
        case "DoesNotExist": return !has(e.key);
        default: return false;
      }
    });
}

// ---- LuxDB's checks, one function per kind ----

function checkProbe(probe, name, container, env, problems) {
  const path = `spec.template.spec.containers[${CONTAINER}].${name}`;
  if (!isObject(probe)) {
    problems.add(path, "missing: the kubelet must probe the gRPC health service");
    return;
  }
  problems.fields(probe, "probe", path);
  const handlers = ["exec", "grpc", "httpGet", "tcpSocket"].filter((h) => probe[h] != null);
  if (handlers.length !== 1) {
    problems.add(path, `needs exactly one handler (grpc or exec), has ${handlers.join(", ") || "none"}`);
    return;
  }
  const tls = env.has("LUXDB_TLS_CERT");
  if (probe.grpc != null) {
    problems.fields(probe.grpc, "grpcAction", `${path}.grpc`);
    if (probe.grpc.port !== PORT) {
      problems.add(`${path}.grpc.port`, `must be ${PORT}, got ${JSON.stringify(probe.grpc.port)}`);
    }
    if (![undefined, "", "luxdb.v1.LuxDB"].includes(probe.grpc.service)) {
      problems.add(`${path}.grpc.service`, `unknown health service "${probe.grpc.service}"`);
    }
    if (tls) {
      problems.add(`${path}.grpc`, "the kubelet's gRPC probes speak plaintext, but LUXDB_TLS_CERT " +
        "makes the server speak TLS: probe with exec `luxdb health --tls-ca ...`");
    }
  } else if (probe.exec != null) {
    problems.fields(probe.exec, "execAction", `${path}.exec`);
    const command = Array.isArray(probe.exec.command) ? probe.exec.command : [];
    if (!["luxdb", "/usr/local/bin/luxdb"].includes(command[0]) || command[1] !== "health") {
      problems.add(`${path}.exec.command`,
        `must run \`luxdb health\`, got ${JSON.stringify(probe.exec.command)}`);
      return;
    }
    const port = flagValue(command, "--port");
    if (port !== undefined && port !== String(PORT)) {
      problems.add(`${path}.exec.command`, `--port must be ${PORT}, got ${port}`);
    }
    if (tls && flagValue(command, "--tls-ca") === undefined) {
      problems.add(`${path}.exec.command`, "the server speaks TLS (LUXDB_TLS_CERT): needs --tls-ca");
    }
    if (!tls && flagValue(command, "--tls-ca") !== undefined) {
      problems.add(`${path}.exec.command`, "--tls-ca, but the server speaks plaintext (no LUXDB_TLS_CERT)");
    }
    if (env.has("LUXDB_TLS_CLIENT_CA") && (flagValue(command, "--tls-cert") === undefined
        || flagValue(command, "--tls-key") === undefined)) {
      problems.add(`${path}.exec.command`, "the server requires client certificates " +
        "(LUXDB_TLS_CLIENT_CA): needs --tls-cert and --tls-key");
    }
    for (const flag of ["--tls-ca", "--tls-cert", "--tls-key"]) {
      const file = flagValue(command, flag);
      if (file !== undefined && !mountFor(container, file)) {
        problems.add(`${path}.exec.command`, `${flag} ${file} is on no volume mount`);
      }
    }
  } else {
    problems.add(path, `must be a grpc or exec (\`luxdb health\`) probe, not ${handlers[0]}`);
  }
}

// The pod must be annotated for Prometheus' pod discovery, and the annotations must lead to the
// server's metrics endpoint: its port (LUXDB_METRICS_PORT, default 9484, also a containerPort),
// its path, and an address reachable from outside the pod (LUXDB_METRICS_HOST; the server's
// default 127.0.0.1 is not).
function checkMetrics(template, container, env, problems) {
  const at = `spec.template.spec.containers[${CONTAINER}]`;
  const annotations = (template.metadata || {}).annotations || {};
  const path = (key) => `spec.template.metadata.annotations["${key}"]`;
  if (annotations["prometheus.io/scrape"] !== "true") {
    problems.add(path("prometheus.io/scrape"), `must be "true", so that Prometheus scrapes ` +
      `the server's metrics, got ${JSON.stringify(annotations["prometheus.io/scrape"])}`);
    return;
  }
  const portVariable = env.get("LUXDB_METRICS_PORT");
  let port = DEFAULT_METRICS_PORT;
  if (portVariable !== undefined) {
    if (!/^[0-9]+$/.test(String(portVariable.value))) {
      problems.add(`${at}.env[LUXDB_METRICS_PORT]`,
        `must be a port number, got ${JSON.stringify(portVariable.value)}`);
      return;
    }
    port = Number(portVariable.value);
  }
  if (port === 0 || port === PORT) {
    problems.add(`${at}.env[LUXDB_METRICS_PORT]`, port === 0
      ? "is 0, which turns metrics off, but the pod is annotated for scraping"
      : `must differ from the gRPC port ${PORT}`);
    return;
  }
  if (annotations["prometheus.io/port"] !== String(port)) {
    problems.add(path("prometheus.io/port"), `must be "${port}", the server's metrics port ` +
      `(LUXDB_METRICS_PORT), got ${JSON.stringify(annotations["prometheus.io/port"])}`);
  }
  if (![undefined, "/metrics"].includes(annotations["prometheus.io/path"])) {
    problems.add(path("prometheus.io/path"), `must be /metrics, the server's endpoint, got ` +
      `${JSON.stringify(annotations["prometheus.io/path"])}`);
  }
  if (!(container.ports || []).some((p) => isObject(p) && p.containerPort === port)) {
    problems.add(`${at}.ports`, `no containerPort ${port} for the metrics endpoint`);
  }
  const host = (env.get("LUXDB_METRICS_HOST") || {}).value;
  if (typeof host !== "string" || /^(127\.|localhost$)/.test(host) || host.includes(":")) {
    problems.add(`${at}.env[LUXDB_METRICS_HOST]`, "must be 0.0.0.0 (or another IPv4 address of " +
      "the pod): the server's default, 127.0.0.1, cannot be scraped from outside the pod, and " +
      `the metrics endpoint has no IPv6; got ${JSON.stringify(host)}`);
  }
}

function mountFor(container, file) {
  return (container.volumeMounts || []).find((mount) => isObject(mount)
    && typeof mount.mountPath === "string"
    && (file === mount.mountPath || file.startsWith(`${mount.mountPath.replace(/\/$/, "")}/`)));
}

// The pod's security context: non-root as the image's user `uid`, with the default seccomp
// profile.
function checkPodSecurity(pod, uid, problems) {
  const podSecurity = pod.securityContext || {};
  problems.fields(pod.securityContext, "podSecurityContext", "spec.template.spec.securityContext");
  problems.fields(podSecurity.seccompProfile, "seccompProfile",
    "spec.template.spec.securityContext.seccompProfile");
  if (podSecurity.runAsNonRoot !== true) {
    problems.add("spec.template.spec.securityContext.runAsNonRoot", "must be true");
  }
  for (const field of ["runAsUser", "runAsGroup", "fsGroup"]) {
    if (podSecurity[field] !== uid) {
      problems.add(`spec.template.spec.securityContext.${field}`,
        `must be ${uid} (the image's user), got ${JSON.stringify(podSecurity[field])}`);
    }
  }
  if (!["RuntimeDefault", "Localhost"].includes((podSecurity.seccompProfile || {}).type)) {
    problems.add("spec.template.spec.securityContext.seccompProfile.type", "must be RuntimeDefault");
  }
}

// The container's variables: `env` maps each name to its EnvVar, `vars` to its value as
// Kubernetes expands it (the tokens POD_NAME and POD_NAMESPACE for the pod's name and namespace,
// "<NAME>" for other values from elsewhere). A $(VAR) that names no variable listed before is a problem:
// Kubernetes would leave the text "$(VAR)" in the value.
function readEnv(container, at, problems) {
  const env = new Map();
  const vars = new Map();
  asList(container.env).forEach((variable, i) => {
    problems.fields(variable, "envVar", `${at}.env[${i}]`);
    if (!isObject(variable)) return;
    const source = variable.valueFrom;
    if (isObject(source)) {
      problems.fields(source, "envVarSource", `${at}.env[${variable.name}].valueFrom`);
      problems.fields(source.secretKeyRef, "secretKeySelector",
        `${at}.env[${variable.name}].valueFrom.secretKeyRef`);
      problems.fields(source.fieldRef, "objectFieldSelector", `${at}.env[${variable.name}].valueFrom.fieldRef`);
    }
    env.set(variable.name, variable);
    const field = ((source || {}).fieldRef || {}).fieldPath;
    let value = `<${variable.name}>`;
    if (variable.value !== undefined) {
      value = expand(variable.value, vars, (name) => problems.add(`${at}.env[${variable.name}]`,
        `$(${name}) is not a variable listed before it: Kubernetes would leave "$(${name})" in the value`));
    } else if (field === "metadata.name") {
      value = POD_NAME;
    } else if (field === "metadata.namespace") {
      value = POD_NAMESPACE;
    }
    vars.set(variable.name, value);
  });
  return { env, vars };
}

// The container's command and args with $(VAR) expanded from its variables.
function expandedArgs(container, vars, at, problems) {
  return [...asList(container.command), ...asList(container.args)].map((arg) => expand(arg, vars,
    (name) => problems.add(`${at}.args`, `$(${name}) is not a variable of the container: ` +
      `Kubernetes would leave "$(${name})" in the argument`)));
}

function checkContainerSecurity(container, at, problems) {
  const security = container.securityContext || {};
  problems.fields(container.securityContext, "securityContext", `${at}.securityContext`);
  problems.fields(security.capabilities, "capabilities", `${at}.securityContext.capabilities`);
  if (security.readOnlyRootFilesystem !== true) {
    problems.add(`${at}.securityContext.readOnlyRootFilesystem`, "must be true");
  }
  if (security.allowPrivilegeEscalation !== false) {
    problems.add(`${at}.securityContext.allowPrivilegeEscalation`, "must be false");
  }
  if (security.privileged === true) problems.add(`${at}.securityContext.privileged`, "must not be true");
  if (!((security.capabilities || {}).drop || []).includes("ALL")) {
    problems.add(`${at}.securityContext.capabilities.drop`, "must include ALL");
  }
  if (((security.capabilities || {}).add || []).length > 0) {
    problems.add(`${at}.securityContext.capabilities.add`, "the server needs no capabilities");
  }
}

function checkResources(container, at, problems) {
  const resources = container.resources || {};
  problems.fields(container.resources, "resources", `${at}.resources`);
  for (const kind of ["requests", "limits"]) {
    for (const resource of ["cpu", "memory"]) {
      const value = (resources[kind] || {})[resource];
      if (value === undefined) {
        problems.add(`${at}.resources.${kind}.${resource}`, "missing: size it (see the comment on resources)");
      } else if (!(parseQuantity(value) > 0)) {
        problems.add(`${at}.resources.${kind}.${resource}`, `not a quantity: ${JSON.stringify(value)}`);
      }
    }
  }
  for (const resource of ["cpu", "memory"]) {
    const request = parseQuantity((resources.requests || {})[resource]);
    const limit = parseQuantity((resources.limits || {})[resource]);
    if (request > limit) problems.add(`${at}.resources.requests.${resource}`, "above its limit");
  }
}

// A StatefulSet of LuxDB (its container is named luxdb) or of etcd (named etcd): the checks of
// both, then those of its kind. Returns what the checks of the whole render need.
function checkStatefulSet(object, problems) {
  problems.fields(object, "object", "");
  problems.fields(object.metadata, "objectMeta", "metadata");
  const spec = object.spec || {};
  problems.fields(spec, "statefulSetSpec", "spec");
  if (!spec.serviceName) problems.add("spec.serviceName", "missing");
  problems.fields(spec.selector, "labelSelector", "spec.selector");
  const template = spec.template || {};
  problems.fields(template, "podTemplate", "spec.template");
  problems.fields(template.metadata, "objectMeta", "spec.template.metadata");
  const labels = (template.metadata || {}).labels;
  if (!labelsMatch((spec.selector || {}).matchLabels, labels)) {
    problems.add("spec.selector.matchLabels", "must be non-empty and match spec.template.metadata.labels");
  }
  const pod = template.spec || {};
  problems.fields(pod, "podSpec", "spec.template.spec");
  const info = { name: (object.metadata || {}).name, namespace: (object.metadata || {}).namespace,
    labels, serviceName: spec.serviceName, replicas: spec.replicas, pod, env: new Map(), vars: new Map() };

  const container = (pod.containers || []).find((c) => isObject(c)
    && [CONTAINER, ETCD_CONTAINER].includes(c.name));
  if (!container) {
    problems.add("spec.template.spec.containers",
      `no container named "${CONTAINER}" (a LuxDB server) or "${ETCD_CONTAINER}" (an etcd member)`);
    return info;
  }
  info.kind = container.name;
  checkPodSecurity(pod, info.kind === CONTAINER ? IMAGE_UID : ETCD_IMAGE_UID, problems);

  const claims = new Map();
  (spec.volumeClaimTemplates || []).forEach((claim, i) => {
    const path = `spec.volumeClaimTemplates[${i}]`;
    problems.fields(claim, "object", path);
    problems.fields(claim.metadata, "objectMeta", `${path}.metadata`);
    const claimSpec = claim.spec || {};
    problems.fields(claimSpec, "claimSpec", `${path}.spec`);
    problems.fields(claimSpec.resources, "claimResources", `${path}.spec.resources`);
    const name = (claim.metadata || {}).name;
    claims.set(name, claim);
    const modes = claimSpec.accessModes || [];
    if (!modes.includes("ReadWriteOnce") && !modes.includes("ReadWriteOncePod")) {
      problems.add(`${path}.spec.accessModes`, "must include ReadWriteOnce (or ReadWriteOncePod)");
    }
    if (!((claimSpec.resources || {}).requests || {}).storage) {
      problems.add(`${path}.spec.resources.requests.storage`, "missing");
    }
  });
  const volumes = new Map();
  (pod.volumes || []).forEach((volume, i) => {
    const path = `spec.template.spec.volumes[${i}]`;
    problems.fields(volume, "volume", path);
    if (volume.secret != null) problems.fields(volume.secret, "secretVolume", `${path}.secret`);
    if (volume.emptyDir != null) problems.fields(volume.emptyDir, "emptyDirVolume", `${path}.emptyDir`);
    if (claims.has(volume.name)) {
      problems.add(`${path}.name`, `"${volume.name}" is also a volumeClaimTemplate`);
    }
    volumes.set(volume.name, volume);
  });

  const at = `spec.template.spec.containers[${container.name}]`;
  problems.fields(container, "container", at);
  if (!container.image) problems.add(`${at}.image`, "missing");
  (container.ports || []).forEach((port, i) => problems.fields(port, "containerPort", `${at}.ports[${i}]`));
  const { env, vars } = readEnv(container, at, problems);
  Object.assign(info, { env, vars });
  checkResources(container, at, problems);
  checkContainerSecurity(container, at, problems);
  const mounts = container.volumeMounts || [];
  mounts.forEach((mount, i) => {
    problems.fields(mount, "volumeMount", `${at}.volumeMounts[${i}]`);
    if (!claims.has(mount.name) && !volumes.has(mount.name)) {
      problems.add(`${at}.volumeMounts[${i}].name`,
        `"${mount.name}" is neither a volume nor a volumeClaimTemplate`);
    }
  });
  if (info.kind === CONTAINER) {
    checkServer({ spec, template, pod, container, env, claims, volumes }, info, problems);
  } else {
    checkEtcdMember({ spec, container, vars, claims }, info, problems);
  }
  return info;
}

// The LuxDB server's container and pod. Sets info.clustered when it runs in cluster mode.
function checkServer({ spec, template, pod, container, env, claims, volumes }, info, problems) {
  const at = `spec.template.spec.containers[${CONTAINER}]`;
  info.clustered = Boolean((env.get("LUXDB_CLUSTER_ETCD") || {}).value);
  if (!info.clustered && spec.replicas !== 1) {
    problems.add("spec.replicas", `must be 1 (one server owns the data volume; several servers ` +
      `need cluster mode, deploy/cluster), got ${JSON.stringify(spec.replicas)}`);
  }
  if (info.clustered && env.has("LUXDB_TLS_CERT")) {
    problems.add(`${at}.env[LUXDB_CLUSTER_ETCD]`, "with LUXDB_TLS_CERT: the server refuses " +
      "--cluster-etcd with --tls-cert (cluster mode has no TLS between nodes yet), so a cluster " +
      "builds on deploy/base, not deploy/tls");
  }
  if (pod.enableServiceLinks !== false) {
    problems.add("spec.template.spec.enableServiceLinks", "must be false: a Service named luxdb " +
      "would inject LUXDB_PORT=tcp://..., the server's --port variable");
  }
  if (!(container.ports || []).some((port) => port.containerPort === PORT)) {
    problems.add(`${at}.ports`, `no containerPort ${PORT}`);
  }

  const secret = env.get("LUXDB_SECRET");
  const secretRef = ((secret || {}).valueFrom || {}).secretKeyRef;
  if (!secret) {
    problems.add(`${at}.env`, "no LUXDB_SECRET (from a Secret's key via valueFrom.secretKeyRef)");
  } else if (secret.value !== undefined || !isObject(secretRef) || !secretRef.name || !secretRef.key) {
    problems.add(`${at}.env[LUXDB_SECRET]`,
      "must come from valueFrom.secretKeyRef with name and key, never a literal value");
  }
  const args = [...(container.command || []), ...(container.args || [])];
  if (args.some((arg) => arg === "--secret" || String(arg).startsWith("--secret="))) {
    problems.add(`${at}.args`, "--secret on the command line: use LUXDB_SECRET from a Secret");
  }
  checkMetrics(template, container, env, problems);
  const dataDir = env.get("LUXDB_DATA_DIR");
  if (dataDir && dataDir.value !== DATA_DIR) {
    problems.add(`${at}.env[LUXDB_DATA_DIR]`, `must be ${DATA_DIR}, the mounted volume`);
  }
  let grace = DEFAULT_GRACE_SECONDS;
  const graceVariable = env.get("LUXDB_GRACE_SECONDS");
  if (!graceVariable || !/^[0-9]+$/.test(String(graceVariable.value))) {
    problems.add(`${at}.env[LUXDB_GRACE_SECONDS]`,
      "must be set to a number of seconds, to keep terminationGracePeriodSeconds above it");
  } else {
    grace = Number(graceVariable.value);
  }
  const termination = pod.terminationGracePeriodSeconds;
  if (!Number.isInteger(termination) || termination < grace + SNAPSHOT_MARGIN_SECONDS) {
    problems.add("spec.template.spec.terminationGracePeriodSeconds", `must be at least ` +
      `LUXDB_GRACE_SECONDS (${grace}) + ${SNAPSHOT_MARGIN_SECONDS} s to write graph snapshots, ` +
      `got ${JSON.stringify(termination)}`);
  }
  for (const name of ["LUXDB_TLS_CERT", "LUXDB_TLS_KEY", "LUXDB_TLS_CLIENT_CA"]) {
    const variable = env.get(name);
    if (!variable) continue;
    const mount = typeof variable.value === "string" ? mountFor(container, variable.value) : null;
    if (!mount) {
      problems.add(`${at}.env[${name}]`, `${JSON.stringify(variable.value)} is on no volume mount`);
    } else if (mount.readOnly !== true || !(volumes.get(mount.name) || {}).secret) {
      problems.add(`${at}.volumeMounts[${mount.name}]`, `holds ${name}: must be a Secret volume, readOnly`);
    }
  }

  checkProbe(container.readinessProbe, "readinessProbe", container, env, problems);
  checkProbe(container.livenessProbe, "livenessProbe", container, env, problems);
  if (container.startupProbe != null) {
    checkProbe(container.startupProbe, "startupProbe", container, env, problems);
  }

  const mounts = container.volumeMounts || [];
  const data = mounts.find((mount) => isObject(mount) && mount.mountPath === DATA_DIR);
  if (!data) {
    problems.add(`${at}.volumeMounts`, `none at ${DATA_DIR}, the data directory (found: ` +
      `${mounts.map((mount) => mount.mountPath).join(", ") || "none"})`);
  } else if (!claims.has(data.name)) {
    problems.add(`${at}.volumeMounts[${data.name}]`,
      `${DATA_DIR} must be a volumeClaimTemplate (persistent), "${data.name}" is not one`);
  } else if (data.readOnly === true || data.subPath) {
    problems.add(`${at}.volumeMounts[${data.name}]`, `${DATA_DIR} must be writable, without subPath`);
  }
}

// An etcd member's flags (or their ETCD_* variables): the data on its claim, and an initial
// cluster of exactly the StatefulSet's pods under its governing Service. Sets info.clientPort,
// the port LuxDB must dial.
function checkEtcdMember({ spec, container, vars, claims }, info, problems) {
  const at = `spec.template.spec.containers[${ETCD_CONTAINER}]`;
  const args = expandedArgs(container, vars, at, problems);
  const setting = (flag) => flagValue(args, `--${flag}`)
    ?? vars.get(`ETCD_${flag.toUpperCase().replace(/-/g, "_")}`);
  const port = (flag, fallback) => {
    const match = /:([0-9]+)\/?$/.exec(String(setting(flag) || "").split(",")[0]);
    return match ? Number(match[1]) : fallback;
  };
  info.clientPort = port("listen-client-urls", ETCD_CLIENT_PORT);
  const peerPort = port("listen-peer-urls", ETCD_PEER_PORT);

  const dataDir = setting("data-dir");
  const mount = dataDir !== undefined ? mountFor(container, dataDir) : undefined;
  if (!mount || !claims.has(mount.name) || mount.readOnly === true) {
    const where = dataDir ?? "unset (NAME.etcd in the working directory)";
    problems.add(`${at}.args`, `--data-dir ${where} must be on the writable mount of a ` +
      "volumeClaimTemplate: a member that restarts without its data comes back empty and " +
      "cannot rejoin its cluster");
  }

  // The members the StatefulSet runs, and those --initial-cluster bootstraps: the same.
  const members = Number.isInteger(spec.replicas)
    ? Array.from({ length: spec.replicas }, (_, i) => `${info.name}-${i}`) : [];
  const initial = String(setting("initial-cluster") || "").split(",").filter(Boolean)
    .map((entry) => entry.split("="));
  const named = initial.map(([name]) => name);
  if ([...named].sort().join() !== [...members].sort().join()) {
    problems.add(`${at}.args`, `--initial-cluster names ${named.join(", ") || "no member"}, but ` +
      `the StatefulSet's ${spec.replicas} replicas are ${members.join(", ")}: it must list ` +
      "exactly those (and a running cluster changes members with `etcdctl member add/remove`)");
  }
  for (const [name, url] of initial) {
    const where = podAddress(urlAddress(url), info.namespace);
    if (where.error || where.pod !== name || where.service !== info.serviceName
        || where.port !== peerPort) {
      problems.add(`${at}.args`, `--initial-cluster: ${name}=${url} must be ` +
        `http://${name}.${info.serviceName}.$(POD_NAMESPACE).svc.cluster.local:${peerPort}, the ` +
        `member's name through the StatefulSet's Service and its peer port` +
        (where.error ? ` (${where.error})` : ""));
    }
  }

  if (!isObject(container.readinessProbe)) {
    problems.add(`${at}.readinessProbe`, "missing: a rolling update and the PodDisruptionBudget " +
      "must count a member as up only once it is back in the quorum (etcd's /health)");
  } else {
    problems.fields(container.readinessProbe, "probe", `${at}.readinessProbe`);
    if (spec.podManagementPolicy !== "Parallel") {
      problems.add("spec.podManagementPolicy", "must be Parallel: a member is ready only once a " +
        "quorum has met, so with OrderedReady the second member would wait for the first forever, " +
        `got ${spec.podManagementPolicy ?? "OrderedReady (the default)"}`);
    }
  }
}

function checkService(object, problems) {
  problems.fields(object, "object", "");
  problems.fields(object.metadata, "objectMeta", "metadata");
  const spec = object.spec || {};
  problems.fields(spec, "serviceSpec", "spec");
  (spec.ports || []).forEach((port, i) => problems.fields(port, "servicePort", `spec.ports[${i}]`));
  if (!["ClusterIP", undefined].includes(spec.type)) {
    problems.add("spec.type", `must be ClusterIP: expose LuxDB beyond the cluster deliberately, got ${spec.type}`);
  }
}

// A Service in front of LuxDB's pods must lead to the gRPC port.
function checkServerPorts(service, problems) {
  const spec = service.spec || {};
  const port = (spec.ports || []).find((p) => isObject(p) && p.port === PORT);
  if (!port) {
    problems.add("spec.ports", `no port ${PORT}`);
  } else if (![PORT, "grpc", undefined].includes(port.targetPort)) {
    problems.add(`spec.ports[${port.name}].targetPort`,
      `must be ${PORT} or the container port's name grpc, got ${JSON.stringify(port.targetPort)}`);
  }
}

function checkBudget(object, problems) {
  problems.fields(object, "object", "");
  problems.fields(object.metadata, "objectMeta", "metadata");
  problems.fields(object.spec, "budgetSpec", "spec");
  problems.fields((object.spec || {}).selector, "labelSelector", "spec.selector");
}

// How many of `replicas` pods a PodDisruptionBudget lets voluntary disruptions take (Kubernetes
// rounds percentages up), or undefined when it sets neither bound.
function budgetAllows(spec, replicas) {
  const scaled = (value) => (typeof value === "string" && value.endsWith("%")
    ? Math.ceil((parseFloat(value) * replicas) / 100) : Number(value));
  if (spec.maxUnavailable != null) return scaled(spec.maxUnavailable);
  if (spec.minAvailable != null) return replicas - scaled(spec.minAvailable);
  return undefined;
}

// Pods of a cluster must be spread by a podAntiAffinity term that selects their own labels.
function checkAntiAffinity(set, problems) {
  const path = "spec.template.spec.affinity";
  const affinity = set.info.pod.affinity;
  problems.fields(affinity, "affinity", path);
  const anti = (affinity || {}).podAntiAffinity || {};
  problems.fields((affinity || {}).podAntiAffinity, "podAntiAffinity", `${path}.podAntiAffinity`);
  const weighted = asList(anti.preferredDuringSchedulingIgnoredDuringExecution);
  weighted.forEach((term, i) => problems.fields(term, "weightedPodAffinityTerm",
    `${path}.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[${i}]`));
  const terms = [...asList(anti.requiredDuringSchedulingIgnoredDuringExecution),
    ...weighted.map((term) => (term || {}).podAffinityTerm)];
  terms.forEach((term, i) => problems.fields(term, "podAffinityTerm", `${path}.podAntiAffinity term ${i}`));
  if (!terms.some((term) => isObject(term) && term.topologyKey
      && selects(term.labelSelector, set.info.labels))) {
    problems.add(`${path}.podAntiAffinity`, "no term selects this StatefulSet's own pods " +
      `(${JSON.stringify(set.info.labels)}) by a topologyKey: its pods may all land on one ` +
      "machine and go down with it");
  }
}

// A cluster node's flags: every etcd member on its client port, its own name under the
// StatefulSet's governing Service, and a node id unique per pod.
function checkClusterNode(node, etcd, problems) {
  const at = `spec.template.spec.containers[${CONTAINER}].env`;
  const vars = node.info.vars;
  const written = (name) => (node.info.env.get(name) || {}).value;  // before expansion
  if (!etcd) {
    problems.add(`${at}[LUXDB_CLUSTER_ETCD]`, "names etcd endpoints, but the render has no etcd " +
      `StatefulSet (a container named "${ETCD_CONTAINER}")`);
  } else if (Number.isInteger(etcd.info.replicas)) {
    const members = Array.from({ length: etcd.info.replicas }, (_, i) => `${etcd.info.name}-${i}`);
    const listed = new Set();
    let wrong = false;
    const endpoints = vars.get("LUXDB_CLUSTER_ETCD").split(",");
    const texts = String(written("LUXDB_CLUSTER_ETCD")).split(",");
    endpoints.forEach((endpoint, i) => {
      const where = podAddress(endpoint.trim(), node.info.namespace);
      if (where.error || !members.includes(where.pod) || where.service !== etcd.info.serviceName
          || where.port !== etcd.info.clientPort) {
        const text = texts.length === endpoints.length ? texts[i] : endpoint;
        problems.add(`${at}[LUXDB_CLUSTER_ETCD]`, `"${text}" is not an etcd member's client ` +
          `address: MEMBER.${etcd.info.serviceName}.$(POD_NAMESPACE).svc.cluster.local:` +
          `${etcd.info.clientPort}, with MEMBER one of ${members.join(", ")}` +
          (where.error ? ` (${where.error})` : ""));
        wrong = true;
      } else {
        listed.add(where.pod);
      }
    });
    const missing = members.filter((member) => !listed.has(member));
    if (!wrong && missing.length > 0) {
      problems.add(`${at}[LUXDB_CLUSTER_ETCD]`, `lists no endpoint of ${missing.join(", ")}: ` +
        "a node would lose etcd with the members it lists, although the others keep the quorum");
    }
  }

  const advertise = vars.get("LUXDB_ADVERTISE");
  const where = advertise !== undefined ? podAddress(advertise, node.info.namespace)
    : { error: "unset: the server's default, the pod's bare host name, does not resolve in other pods" };
  if (where.error || where.pod !== POD_NAME || where.service !== node.info.serviceName
      || where.port !== PORT) {
    problems.add(`${at}[LUXDB_ADVERTISE]`, "must be this pod's name under the StatefulSet's " +
      `governing Service and the gRPC port, $(POD_NAME).${node.info.serviceName}.$(POD_NAMESPACE)` +
      `.svc.cluster.local:${PORT} (only that Service gives pods names the other nodes resolve), ` +
      `got ${JSON.stringify(written("LUXDB_ADVERTISE"))}` + (where.error ? ` (${where.error})` : ""));
  }
  const id = vars.get("LUXDB_NODE_ID");
  if (id !== undefined && id !== POD_NAME) {
    problems.add(`${at}[LUXDB_NODE_ID]`, "must be the pod's name (fieldRef metadata.name), unique " +
      `per node and kept across restarts like its volume, got ${JSON.stringify(written("LUXDB_NODE_ID"))}`);
  }
}

// Cross-object checks of one render.
function checkRender(objects, problemsOf) {
  const overall = new Problems();
  const sets = objects.filter((o) => o.object.kind === "StatefulSet" && o.info.kind);
  const servers = sets.filter((s) => s.info.kind === CONTAINER);
  const etcds = sets.filter((s) => s.info.kind === ETCD_CONTAINER);
  const services = objects.filter((o) => o.object.kind === "Service");
  const budgets = objects.filter((o) => o.object.kind === "PodDisruptionBudget");
  if (servers.length !== 1) overall.add("", `expected one LuxDB StatefulSet, found ${servers.length}`);
  if (etcds.length > 1) overall.add("", `expected at most one etcd StatefulSet, found ${etcds.length}`);
  const clustered = servers.some((s) => s.info.clustered);
  const podsOf = (list) => list
    .map((s) => `${s.object.metadata.name} ${JSON.stringify(s.info.labels)}`).join(", ");

  // Each Service leads to the pods of one StatefulSet.
  for (const service of services) {
    const fronted = sets.filter((s) => labelsMatch((service.object.spec || {}).selector, s.info.labels));
    if (fronted.length !== 1) {
      problemsOf(service).add("spec.selector", fronted.length === 0
        ? `must be non-empty and match the pod labels of a StatefulSet: ${podsOf(sets)}`
        : `selects the pods of several StatefulSets: ${podsOf(fronted)}`);
    } else if (fronted[0].info.kind === CONTAINER) {
      checkServerPorts(service.object, problemsOf(service));
    }
    service.info.fronts = fronted.length === 1 ? fronted[0] : undefined;
  }
  if (!services.some((s) => s.info.fronts && s.info.fronts.info.kind === CONTAINER
      && (s.object.spec || {}).clusterIP !== "None")) {
    overall.add("", "expected a ClusterIP Service for clients");
  }

  for (const set of sets) {
    const governing = services.find((s) => s.object.metadata.name === set.info.serviceName);
    if (!governing) {
      problemsOf(set).add("spec.serviceName", `no Service "${set.info.serviceName}" in the render`);
    } else if ((governing.object.spec || {}).clusterIP !== "None") {
      problemsOf(set).add("spec.serviceName", `Service "${set.info.serviceName}" must be headless (clusterIP: None)`);
    } else if ((clustered || set.info.kind === ETCD_CONTAINER)
        && (governing.object.spec || {}).publishNotReadyAddresses !== true) {
      problemsOf(governing).add("spec.publishNotReadyAddresses", "must be true: it names the pods " +
        `of StatefulSet ${set.info.name}, which must find each other before they are ready ` +
        (set.info.kind === ETCD_CONTAINER ? "(a member is ready only once a quorum has met)"
          : "(a node loading its indexes still takes the others' calls)"));
    }
    if (clustered) checkAntiAffinity(set, problemsOf(set));
  }
  if (clustered && servers.length === 1) checkClusterNode(servers[0], etcds[0], problemsOf(servers[0]));

  // Each PodDisruptionBudget covers the pods of one StatefulSet; in a cluster, each StatefulSet
  // has one, and etcd's keeps the quorum.
  for (const budget of budgets) {
    const covered = sets.filter((s) => selects((budget.object.spec || {}).selector, s.info.labels));
    if (covered.length !== 1) {
      problemsOf(budget).add("spec.selector", covered.length === 0
        ? `selects no pod of the render's StatefulSets (${podsOf(sets)}): it protects nothing`
        : `selects the pods of several StatefulSets (${podsOf(covered)}): give each its own`);
    }
    budget.info.covers = covered.length === 1 ? covered[0] : undefined;
  }
  for (const set of sets) {
    const own = budgets.filter((b) => b.info.covers === set);
    if (own.length > 1) {
      problemsOf(set).add("", `${own.length} PodDisruptionBudgets select its pods: Kubernetes ` +
        "refuses to evict a pod that several select");
    } else if (own.length === 0 && clustered) {
      problemsOf(set).add("", "no PodDisruptionBudget selects its pods: a node drain may evict " +
        "them all at once");
    }
    const replicas = set.info.replicas;
    if (set.info.kind === ETCD_CONTAINER && own.length === 1 && Number.isInteger(replicas)) {
      const quorum = Math.floor(replicas / 2) + 1;
      const down = budgetAllows(own[0].object.spec || {}, replicas);
      if (!(down <= replicas - quorum)) {
        problemsOf(own[0]).add("spec", `lets voluntary disruptions take ${down ?? "any number"} of ` +
          `the ${replicas} etcd members, but ${quorum} must stay up for the quorum: ` +
          `maxUnavailable ${replicas - quorum} (or minAvailable ${quorum})`);
      }
    }
  }
  return overall;
}

// ---- schema validation ----

async function modelClass(apiVersion, kind) {
  if (typeof apiVersion !== "string" || typeof kind !== "string"
      || !/^([a-z0-9.-]+\/)?v[0-9]+((alpha|beta)[0-9]+)?$/.test(apiVersion)
      || !/^[A-Z][A-Za-z0-9]*$/.test(kind)) {
    return null;
  }
  let module;
  try {
    module = await import(`kubernetes-models/${apiVersion}`);
  } catch {
    return null;
  }
  const model = module[kind];
  return typeof model === "function" && model.kind === kind && model.apiVersion === apiVersion
    ? model : null;
}

function schemaProblems(error, problems) {
  const errors = Array.isArray(error.errors) ? error.errors : [];
  if (errors.length === 0) {
    problems.add("", String(error.message || error));
    return;
  }
  for (const e of errors) {
    const path = (e.instancePath || "").split("/").slice(1)
      .map((part) => (/^[0-9]+$/.test(part) ? `[${part}]` : `.${part}`)).join("").replace(/^\./, "");
    let message = e.message || e.keyword;
    if (e.keyword === "required") message = `missing required field "${e.params.missingProperty}"`;
    if (e.keyword === "enum") message += `: ${JSON.stringify(e.params.allowedValues)}`;
    problems.add(path, message);
  }
}

// ---- main ----

async function validateRender(name, file) {
  let text;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    console.error(`validate: cannot read ${file}: ${error.message}`);
    process.exit(2);
  }
  const documents = parseAllDocuments(text);
  const entries = [];
  let failed = false;
  const report = (label, problems) => {
    for (const [path, message] of problems.list) {
      console.error(`error ${name}: ${label}: ${path ? `${path}: ` : ""}${message}`);
      failed = true;
    }
  };
  for (const [i, document] of documents.entries()) {
    if (document.errors.length > 0) {
      console.error(`error ${name}: document ${i + 1}: YAML: ${document.errors[0].message}`);
      failed = true;
      continue;
    }
    const object = document.toJS();
    if (object === null || object === undefined) continue;  // an empty document
    const label = `${object.kind}/${(object.metadata || {}).name}`;
    const entry = { object, label, problems: new Problems(), info: {} };
    entries.push(entry);
    const model = await modelClass(object.apiVersion, object.kind);
    if (!model) {
      entry.problems.add("", `unknown kind ${JSON.stringify(object.kind)} of apiVersion ` +
        `${JSON.stringify(object.apiVersion)}: no Kubernetes schema for it`);
      continue;
    }
    try {
      new model(object).validate();
    } catch (error) {
      schemaProblems(error, entry.problems);
    }
    if (object.kind === "StatefulSet") entry.info = checkStatefulSet(object, entry.problems);
    else if (object.kind === "Service") checkService(object, entry.problems);
    else if (object.kind === "PodDisruptionBudget") checkBudget(object, entry.problems);
    else if (object.kind === "Secret") {
      entry.problems.add("", "a Secret in the manifests: secrets are created in the cluster " +
        "(kubectl create secret), never committed");
    }
  }
  if (entries.length === 0) {
    console.error(`error ${name}: no objects rendered`);
    return false;
  }
  report("render", checkRender(entries, (entry) => entry.problems));
  for (const entry of entries) {
    if (entry.problems.list.length === 0) {
      console.log(`ok ${name}: ${entry.label} (${entry.object.apiVersion})`);
    } else {
      report(entry.label, entry.problems);
    }
  }
  return !failed;
}

const renders = process.argv.slice(2);
if (renders.length === 0 || renders.some((arg) => !arg.includes("="))) {
  console.error("usage: node validate.mjs NAME=FILE [NAME=FILE ...]");
  process.exit(2);
}
let valid = true;
try {
  for (const arg of renders) {
    const at = arg.indexOf("=");
    if (!(await validateRender(arg.slice(0, at), arg.slice(at + 1)))) valid = false;
  }
} catch (error) {
  // A bug of the checks, not a verdict on the manifests: never exit 1 ("invalid") for it.
  console.error(`validate: internal error: ${error.stack || error}`);
  process.exit(2);
}
process.exit(valid ? 0 : 1);
