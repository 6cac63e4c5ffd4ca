// LuxDB from Node.js: load luxdb.proto at run time, sign every call with a token (README,
// "Security"), then create an index, add four vectors and query two.
//
//   npm ci && LUXDB_SECRET_FILE=../../data/secret node example.mjs [HOST:PORT]
//
// Outside the repository (the file copied into a project that has @grpc/grpc-js and
// @grpc/proto-loader), LUXDB_PROTO names the service definition, proto/luxdb/v1/luxdb.proto:
//
//   LUXDB_PROTO=/path/to/luxdb.proto LUXDB_SECRET_FILE=/path/to/secret node example.mjs
//
// The server and the secret are found as every LuxDB tool finds them (README, "Connecting:
// address and secret"): HOST:PORT, else LUXDB_ADDRESS, else LUXDB_HOST / LUXDB_PORT, else
// 127.0.0.1:8484; LUXDB_SECRET or LUXDB_SECRET_FILE. LUXDB_SALT and KDF_ITERATIONS must match
// the server's. test.mjs imports connect() and runExample() and runs them against a real
// luxdb-server.
import { createHmac, pbkdf2Sync, randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { isIPv6 } from "node:net";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";

export const DEFAULT_HOST = "127.0.0.1";
export const DEFAULT_PORT = 8484;
// Where the service definition is in a checkout of the repository, relative to this file.
export const REPOSITORY_PROTO = fileURLToPath(
  new URL("../../proto/luxdb/v1/luxdb.proto", import.meta.url),
);
const MAX_SECRET_FILE_BYTES = 64 * 1024;

// A wrong setting: the script prints its message alone and exits 2.
export class SettingError extends Error {}

// The path of luxdb.proto: LUXDB_PROTO if set, else the repository's copy beside this file.
export function protoPath(env = process.env) {
  const given = env.LUXDB_PROTO;
  if (given) {
    if (!existsSync(given)) {
      throw new SettingError(
        `LUXDB_PROTO=${given} does not exist: set it to the path of luxdb.proto ` +
          `(proto/luxdb/v1/luxdb.proto in the LuxDB repository; without LUXDB_PROTO the ` +
          `example looks for ${REPOSITORY_PROTO})`,
      );
    }
    return given;
  }
  if (!existsSync(REPOSITORY_PROTO)) {
    throw new SettingError(
      `cannot find luxdb.proto: LUXDB_PROTO is not set and ${REPOSITORY_PROTO} (the ` +
        `repository's copy, relative to this file) does not exist; set LUXDB_PROTO to the ` +
        `path of proto/luxdb/v1/luxdb.proto`,
    );
  }
  return REPOSITORY_PROTO;
}

function loadService() {
  // Replies carry every field (defaults too); uint64 values arrive as decimal strings, since
  // a JS number cannot hold 2^64 - 1 (the id that pads short query rows).
  const loaderOptions = { keepCase: true, defaults: true, longs: String, enums: String };
  const definition = protoLoader.loadSync(protoPath(), loaderOptions);
  return grpc.loadPackageDefinition(definition).luxdb.v1.LuxDB;
}

let service;
try {
  service = loadService();
} catch (error) {
  if (!(error instanceof SettingError) || process.argv[1] !== fileURLToPath(import.meta.url)) {
    throw error;
  }
  console.error(`example.mjs: ${error.message}`);
  process.exit(2);
}
export const LuxDB = service;

function parsePort(text, source) {
  const port = /^[0-9]+$/.test(text) ? Number(text) : NaN;
  if (!(port >= 1 && port <= 65535)) {
    throw new SettingError(`${source}=${text} is not a port: give a number from 1 to 65535`);
  }
  return port;
}

// "host:port" (IPv6 as "[::1]:8484") -> { host, port }; `source` names it in errors.
export function parseAddress(text, source) {
  const colon = text.lastIndexOf(":");
  let host = colon < 0 ? "" : text.slice(0, colon);
  const port = colon < 0 ? "" : text.slice(colon + 1);
  const bracketed = host.startsWith("[") && host.endsWith("]");
  if (!port || port.includes("]") || (host.includes(":") && !bracketed)) {
    throw new SettingError(
      `${source}=${text} has no port: give "host:port" (IPv6 as "[::1]:${DEFAULT_PORT}")`,
    );
  }
  if (bracketed) host = host.slice(1, -1);
  if (!host || (host.includes(":") && !isIPv6(host))) {
    throw new SettingError(`${source}=${text} is not "host:port" (IPv6 as "[::1]:8484")`);
  }
  if (!/^[0-9]+$/.test(port) || !(Number(port) >= 1 && Number(port) <= 65535)) {
    throw new SettingError(`${source}=${text}: ${port} is not a port (1 to 65535)`);
  }
  return { host, port: Number(port) };
}

// The server's "host:port" as gRPC takes it: `address` (the command line's HOST:PORT) if
// given, else LUXDB_ADDRESS, else LUXDB_HOST / LUXDB_PORT, else 127.0.0.1:8484. A variable
// set to "" counts as unset; LUXDB_ADDRESS with LUXDB_HOST or LUXDB_PORT is an error.
export function serverAddress(address, env = process.env) {
  let server;
  if (address) {
    server = parseAddress(address, "HOST:PORT");
  } else if (env.LUXDB_ADDRESS) {
    const others = ["LUXDB_HOST", "LUXDB_PORT"].filter((name) => env[name]);
    if (others.length) {
      throw new SettingError(
        `LUXDB_ADDRESS=${env.LUXDB_ADDRESS} and ${others.join(" and ")} contradict: set ` +
          `LUXDB_ADDRESS or LUXDB_HOST/LUXDB_PORT`,
      );
    }
    server = parseAddress(env.LUXDB_ADDRESS, "LUXDB_ADDRESS");
  } else {
    let host = env.LUXDB_HOST || DEFAULT_HOST;
    if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
    if (host.includes(":") && !isIPv6(host)) {
      throw new SettingError(`LUXDB_HOST=${env.LUXDB_HOST} is not a host name or address`);
    }
    const port = env.LUXDB_PORT ? parsePort(env.LUXDB_PORT, "LUXDB_PORT") : DEFAULT_PORT;
    server = { host, port };
  }
  const host = server.host.includes(":") ? `[${server.host}]` : server.host;
  return `${host}:${server.port}`;
}

// The shared secret: LUXDB_SECRET, else the contents of LUXDB_SECRET_FILE without surrounding
// white space (as the server reads --secret-file). Both set, neither, or an unreadable or empty
// file is an error naming them.
export function serverSecret(env = process.env) {
  if (env.LUXDB_SECRET && env.LUXDB_SECRET_FILE) {
    throw new SettingError(
      `LUXDB_SECRET and LUXDB_SECRET_FILE=${env.LUXDB_SECRET_FILE} are both set: set one of them`,
    );
  }
  if (env.LUXDB_SECRET) return env.LUXDB_SECRET;
  const path = env.LUXDB_SECRET_FILE;
  if (!path) {
    throw new SettingError("no secret: set LUXDB_SECRET or LUXDB_SECRET_FILE to the server's");
  }
  let data;
  try {
    data = readFileSync(path);
  } catch (error) {
    throw new SettingError(`cannot read the secret file LUXDB_SECRET_FILE=${path}: ${error.code}`);
  }
  if (data.length > MAX_SECRET_FILE_BYTES) {
    throw new SettingError(
      `the secret file LUXDB_SECRET_FILE=${path} is larger than ${MAX_SECRET_FILE_BYTES} bytes`,
    );
  }
  const secret = data.toString("latin1").replace(/^[ \t\n\v\f\r]+|[ \t\n\v\f\r]+$/g, "");
  if (!secret) throw new SettingError(`the secret file LUXDB_SECRET_FILE=${path} is empty`);
  return Buffer.from(secret, "latin1");
}

// PBKDF2-HMAC-SHA256(secret, salt, iterations) -> 32-byte key: ~0.2 s, so once per process.
export function deriveKey(
  secret,
  salt = process.env.LUXDB_SALT ?? "wYfJIy4Nx1hPcxiljwg",
  iterations = Number(process.env.KDF_ITERATIONS ?? 262144),
) {
  return pbkdf2Sync(secret, salt, iterations, 32, "sha256");
}

// A single-use token for one method, e.g. "/luxdb.v1.LuxDB/QueryIndex":
// base64url(0x01 || int64 BE Unix ms || 16 random bytes || HMAC-SHA256(key, body || method)).
export function mintToken(key, method) {
  const body = Buffer.alloc(25);
  body[0] = 0x01;
  body.writeBigInt64BE(BigInt(Date.now()), 1);
  randomBytes(16).copy(body, 9);
  const tag = createHmac("sha256", key).update(body).update(method).digest();
  return Buffer.concat([body, tag]).toString("base64url"); // Node's base64url has no padding
}

// Adds "authorization: Bearer <token>" to each call, minted for that call's method.
function tokenInterceptor(key) {
  return (options, nextCall) =>
    new grpc.InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set("authorization", `Bearer ${mintToken(key, options.method_definition.path)}`);
        next(metadata, listener);
      },
    });
}

// Returns { CreateIndex, ..., CompactIndex, close }: each RPC of the service (read from the
// .proto) as an async function of the request.
export function connect(address, secret, credentials = grpc.credentials.createInsecure()) {
  const client = new LuxDB(address, credentials, {
    interceptors: [tokenInterceptor(deriveKey(secret))],
    "grpc.max_send_message_length": 256 * 1024 * 1024, // the server's default cap
    "grpc.max_receive_message_length": 256 * 1024 * 1024,
  });
  const db = { close: () => client.close() };
  for (const method of Object.keys(LuxDB.service)) {
    db[method] = promisify(client[method]).bind(client);
  }
  return db;
}

// Vectors are flat, row-major: n vectors of dimension d are n*d numbers. So are results: n*k.
export async function runExample(db, name = "node-example") {
  if ((await db.IndexExists({ name })).exists) await db.DeleteIndex({ name });
  await db.CreateIndex({ name, space: "L2", dim: 3 });
  await db.InitIndex({ name, max_elements: 1000 });
  await db.AddItems({ name, vectors: [1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 0], ids: [10, 20, 30, 40] });
  const reply = await db.QueryIndex({ name, vectors: [0.9, 0.1, 0, 0, 0.2, 0.9], k: 2 });
  const { k } = reply;
  const rows = (flat) =>
    Array.from({ length: flat.length / k }, (_, i) => flat.slice(i * k, (i + 1) * k));
  return { ids: rows(reply.ids), distances: rows(reply.distances) };
}

// Items with attributes, and a query restricted by a filter on them: tenant 1, not archived.
// An attribute holds one value, or a list of strings or of ints: { key, values: [{ i | s }] }
// (also d for a double, b for a bool).
export async function runFilterExample(db, name = "node-filter-example") {
  if ((await db.IndexExists({ name })).exists) await db.DeleteIndex({ name });
  await db.CreateIndex({ name, space: "L2", dim: 2 });
  await db.InitIndex({ name, max_elements: 100 });
  const item = (tenant, ...tags) => ({
    attributes: [
      { key: "tenant", values: [{ i: tenant }] },
      ...(tags.length ? [{ key: "tags", values: tags.map((s) => ({ s })) }] : []),
    ],
  });
  await db.AddItems({
    name,
    vectors: [0, 0, 1, 0, 2, 0, 3, 0],
    ids: [1, 2, 3, 4],
    attributes: [item(1), item(2), item(1, "archived"), item(1, "new", "red")],
  });
  const filter = {
    must: [{ key: "tenant", equals: { i: 1 } }],
    must_not: [{ key: "tags", equals: { s: "archived" } }],
  };
  const reply = await db.QueryIndex({ name, vectors: [0, 0], k: 3, filter });
  return reply.ids; // [ '1', '4', '18446744073709551615' ]: two items match; padded to k
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  let address;
  let secret;
  try {
    if (process.argv.length > 3) throw new SettingError("usage: node example.mjs [HOST:PORT]");
    address = serverAddress(process.argv[2]);
    secret = serverSecret();
  } catch (error) {
    if (!(error instanceof SettingError)) throw error;
    console.error(`example.mjs: ${error.message}`);
    process.exit(2);
  }
  const db = connect(address, secret);
  const { ids, distances } = await runExample(db);
  console.log("nearest ids:", ids); // [ [ '10', '40' ], [ '30', '20' ] ]
  console.log("squared L2 distances:", distances.map((row) => row.map((d) => +d.toFixed(4))));
  console.log("filtered ids:", await runFilterExample(db));
  db.close();
}
