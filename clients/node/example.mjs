// LuxDB from Node.js: load proto/ at run time, sign every call with a token (README,
// "Security"), then create an index, add four vectors and query two.
//
//   npm ci && LUXDB_SECRET=$(cat ../../data/secret) node example.mjs
//
// LUXDB_ADDRESS (default 127.0.0.1:8484), LUXDB_SALT and KDF_ITERATIONS match the server's.
// test.mjs imports connect() and runExample() and runs them against a real luxdb-server.
import { createHmac, pbkdf2Sync, randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";

const PROTO = fileURLToPath(new URL("../../proto/luxdb/v1/luxdb.proto", import.meta.url));
// Replies carry every field (defaults too); uint64 values arrive as decimal strings, since a
// JS number cannot hold 2^64 - 1 (the id that pads short query rows).
const loaderOptions = { keepCase: true, defaults: true, longs: String, enums: String };
const definition = protoLoader.loadSync(PROTO, loaderOptions);
export const { LuxDB } = grpc.loadPackageDefinition(definition).luxdb.v1;

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
  if (!process.env.LUXDB_SECRET) {
    console.error("example.mjs: set LUXDB_SECRET to the server's secret");
    process.exit(2);
  }
  const db = connect(process.env.LUXDB_ADDRESS ?? "127.0.0.1:8484", process.env.LUXDB_SECRET);
  const { ids, distances } = await runExample(db);
  console.log("nearest ids:", ids); // [ [ '10', '40' ], [ '30', '20' ] ]
  console.log("squared L2 distances:", distances.map((row) => row.map((d) => +d.toFixed(4))));
  console.log("filtered ids:", await runFilterExample(db));
  db.close();
}
