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
// Prints "ok NAME: KIND/NAME (API)" per valid object, and for each problem
// "error NAME: KIND/NAME: PATH: MESSAGE" on stderr. Exit status 0 when everything is valid,
// 1 when anything is not, 2 on a usage or read error.

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

// ---- helpers ----

const isObject = (value) => value !== null && typeof value === "object" && !Array.isArray(value);

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

function checkStatefulSet(object, problems) {
  problems.fields(object, "object", "");
  problems.fields(object.metadata, "objectMeta", "metadata");
  const spec = object.spec || {};
  problems.fields(spec, "statefulSetSpec", "spec");
  if (spec.replicas !== 1) {
    problems.add("spec.replicas", `must be 1 (one server owns the data volume), got ${JSON.stringify(spec.replicas)}`);
  }
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
  const podSecurity = pod.securityContext || {};
  problems.fields(pod.securityContext, "podSecurityContext", "spec.template.spec.securityContext");
  problems.fields(podSecurity.seccompProfile, "seccompProfile",
    "spec.template.spec.securityContext.seccompProfile");
  if (podSecurity.runAsNonRoot !== true) {
    problems.add("spec.template.spec.securityContext.runAsNonRoot", "must be true");
  }
  for (const field of ["runAsUser", "runAsGroup", "fsGroup"]) {
    if (podSecurity[field] !== IMAGE_UID) {
      problems.add(`spec.template.spec.securityContext.${field}`,
        `must be ${IMAGE_UID} (the image's user), got ${JSON.stringify(podSecurity[field])}`);
    }
  }
  if (!["RuntimeDefault", "Localhost"].includes((podSecurity.seccompProfile || {}).type)) {
    problems.add("spec.template.spec.securityContext.seccompProfile.type", "must be RuntimeDefault");
  }
  if (pod.enableServiceLinks !== false) {
    problems.add("spec.template.spec.enableServiceLinks", "must be false: a Service named luxdb " +
      "would inject LUXDB_PORT=tcp://..., the server's --port variable");
  }

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

  const containers = pod.containers || [];
  const container = containers.find((c) => isObject(c) && c.name === CONTAINER);
  if (!container) {
    problems.add("spec.template.spec.containers", `no container named "${CONTAINER}"`);
    return { labels, serviceName: spec.serviceName };
  }
  const at = `spec.template.spec.containers[${CONTAINER}]`;
  problems.fields(container, "container", at);
  if (!container.image) problems.add(`${at}.image`, "missing");
  (container.ports || []).forEach((port, i) => problems.fields(port, "containerPort", `${at}.ports[${i}]`));
  if (!(container.ports || []).some((port) => port.containerPort === PORT)) {
    problems.add(`${at}.ports`, `no containerPort ${PORT}`);
  }

  const env = new Map();
  (container.env || []).forEach((variable, i) => {
    problems.fields(variable, "envVar", `${at}.env[${i}]`);
    if (isObject(variable.valueFrom)) {
      problems.fields(variable.valueFrom, "envVarSource", `${at}.env[${variable.name}].valueFrom`);
      problems.fields(variable.valueFrom.secretKeyRef, "secretKeySelector",
        `${at}.env[${variable.name}].valueFrom.secretKeyRef`);
    }
    env.set(variable.name, variable);
  });
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

  checkProbe(container.readinessProbe, "readinessProbe", container, env, problems);
  checkProbe(container.livenessProbe, "livenessProbe", container, env, problems);
  if (container.startupProbe != null) {
    checkProbe(container.startupProbe, "startupProbe", container, env, problems);
  }

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

  const mounts = container.volumeMounts || [];
  mounts.forEach((mount, i) => {
    problems.fields(mount, "volumeMount", `${at}.volumeMounts[${i}]`);
    if (!claims.has(mount.name) && !volumes.has(mount.name)) {
      problems.add(`${at}.volumeMounts[${i}].name`,
        `"${mount.name}" is neither a volume nor a volumeClaimTemplate`);
    }
  });
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
  return { labels, serviceName: spec.serviceName };
}

function checkService(object, problems) {
  problems.fields(object, "object", "");
  problems.fields(object.metadata, "objectMeta", "metadata");
  const spec = object.spec || {};
  problems.fields(spec, "serviceSpec", "spec");
  (spec.ports || []).forEach((port, i) => problems.fields(port, "servicePort", `spec.ports[${i}]`));
  const port = (spec.ports || []).find((p) => isObject(p) && p.port === PORT);
  if (!port) {
    problems.add("spec.ports", `no port ${PORT}`);
  } else if (![PORT, "grpc", undefined].includes(port.targetPort)) {
    problems.add(`spec.ports[${port.name}].targetPort`,
      `must be ${PORT} or the container port's name grpc, got ${JSON.stringify(port.targetPort)}`);
  }
  if (!["ClusterIP", undefined].includes(spec.type)) {
    problems.add("spec.type", `must be ClusterIP: expose LuxDB beyond the cluster deliberately, got ${spec.type}`);
  }
}

// Cross-object checks of one render.
function checkRender(objects, problemsOf) {
  const sets = objects.filter((o) => o.object.kind === "StatefulSet");
  const services = objects.filter((o) => o.object.kind === "Service");
  const overall = new Problems();
  if (sets.length !== 1) overall.add("", `expected one StatefulSet, found ${sets.length}`);
  if (!services.some((s) => (s.object.spec || {}).clusterIP !== "None")) {
    overall.add("", "expected a ClusterIP Service for clients");
  }
  for (const set of sets) {
    for (const service of services) {
      if (!labelsMatch((service.object.spec || {}).selector, set.info.labels)) {
        problemsOf(service).add("spec.selector", `must be non-empty and match the pod labels of ` +
          `StatefulSet ${set.object.metadata.name}, ${JSON.stringify(set.info.labels)}`);
      }
    }
    const governing = services.find((s) => s.object.metadata.name === set.info.serviceName);
    if (!governing) {
      problemsOf(set).add("spec.serviceName", `no Service "${set.info.serviceName}" in the render`);
    } else if ((governing.object.spec || {}).clusterIP !== "None") {
      problemsOf(set).add("spec.serviceName", `Service "${set.info.serviceName}" must be headless (clusterIP: None)`);
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
for (const arg of renders) {
  const at = arg.indexOf("=");
  if (!(await validateRender(arg.slice(0, at), arg.slice(at + 1)))) valid = false;
}
process.exit(valid ? 0 : 1);
