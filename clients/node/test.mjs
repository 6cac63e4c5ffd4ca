// Runs the Node example against the real luxdb-server binary (path in LUXDB_SERVER_BIN) on a
// free loopback port: `node --test test.mjs`, or CTest's node_tests through run-tests.sh.
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { copyFileSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join, resolve as resolvePath } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import grpc from "@grpc/grpc-js";
import {
  LuxDB,
  REPOSITORY_PROTO,
  connect,
  deriveKey,
  mintToken,
  protoPath,
  runExample,
  runFilterExample,
  serverAddress,
  serverSecret,
} from "./example.mjs";

const SECRET = "luxdb-node-test-secret";
// The default 2^18 PBKDF2 iterations cost ~0.2 s per derivation; both sides use 1000 here.
const KDF_ITERATIONS = "1000";
const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 30_000;
const UNAUTHENTICATED = grpc.status.UNAUTHENTICATED; // 16
process.env.KDF_ITERATIONS = KDF_ITERATIONS;
delete process.env.LUXDB_SALT;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
// The environment the example script runs in: this one without the LuxDB settings it reads.
const SETTINGS = ["ADDRESS", "HOST", "PORT", "SECRET", "SECRET_FILE", "PROTO"].map(
  (name) => `LUXDB_${name}`,
);
const baseEnv = Object.fromEntries(
  Object.entries(process.env).filter(([name]) => !SETTINGS.includes(name)),
);
const EXAMPLE = fileURLToPath(new URL("./example.mjs", import.meta.url));

// Runs the example script `script` with `env` added to baseEnv; resolves to
// { code, stdout, stderr } whatever its exit code.
function runScript(script, env, args = []) {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [script, ...args],
      { env: { ...baseEnv, ...env }, timeout: 60_000 },
      (error, stdout, stderr) => resolve({ code: error ? error.code : 0, stdout, stderr }),
    );
  });
}

function assertExampleOutput({ code, stdout, stderr }) {
  assert.equal(code, 0, stderr);
  assert.match(stdout, /nearest ids: \[ \[ '10', '40' \], \[ '30', '20' \] \]/);
  assert.match(stdout, /squared L2 distances: \[ \[ 0\.02, 0\.82 \], \[ 0\.05, 1\.45 \] \]/);
  assert.match(stdout, /filtered ids: \[ '1', '4', '18446744073709551615' \]/);
}

describe("the example's settings (no server)", () => {
  it("finds the server as every LuxDB tool does", () => {
    assert.equal(serverAddress(undefined, {}), "127.0.0.1:8484");
    assert.equal(serverAddress(undefined, { LUXDB_ADDRESS: "db:9000" }), "db:9000");
    assert.equal(serverAddress(undefined, { LUXDB_ADDRESS: "[::1]:9000" }), "[::1]:9000");
    assert.equal(serverAddress(undefined, { LUXDB_HOST: "db" }), "db:8484");
    assert.equal(serverAddress(undefined, { LUXDB_PORT: "9001" }), "127.0.0.1:9001");
    assert.equal(serverAddress(undefined, { LUXDB_HOST: "::1", LUXDB_PORT: "7" }), "[::1]:7");
    assert.equal(serverAddress(undefined, { LUXDB_ADDRESS: "", LUXDB_HOST: "db" }), "db:8484");
    assert.equal(serverAddress("h:1", { LUXDB_ADDRESS: "db:9000", LUXDB_HOST: "x" }), "h:1");
  });

  it("refuses a bad or contradictory address, naming it", () => {
    const refused = (env, pattern, address) =>
      assert.throws(() => serverAddress(address, env), { message: pattern });
    refused({ LUXDB_ADDRESS: "db:1", LUXDB_PORT: "2" }, /LUXDB_ADDRESS=db:1 and LUXDB_PORT/);
    refused({ LUXDB_ADDRESS: "db:1", LUXDB_HOST: "h" }, /LUXDB_ADDRESS=db:1 and LUXDB_HOST/);
    refused({ LUXDB_ADDRESS: "db" }, /LUXDB_ADDRESS=db has no port/);
    refused({ LUXDB_ADDRESS: "::1" }, /LUXDB_ADDRESS=::1 has no port/);
    refused({ LUXDB_PORT: "0" }, /LUXDB_PORT=0 is not a port/);
    refused({ LUXDB_PORT: "65536" }, /LUXDB_PORT=65536 is not a port/);
    refused({ LUXDB_ADDRESS: "db:http" }, /LUXDB_ADDRESS=db:http: http is not a port/);
    refused({}, /HOST:PORT=db has no port/, "db");
  });

  it("reads the secret from LUXDB_SECRET or LUXDB_SECRET_FILE, not both", () => {
    const dir = mkdtempSync(join(tmpdir(), "luxdb-node-secret-"));
    try {
      const file = join(dir, "secret");
      writeFileSync(file, "  s3cret\n");
      assert.equal(serverSecret({ LUXDB_SECRET: "x" }), "x");
      assert.equal(serverSecret({ LUXDB_SECRET_FILE: file }).toString(), "s3cret");
      assert.throws(() => serverSecret({ LUXDB_SECRET: "x", LUXDB_SECRET_FILE: file }), {
        message: /LUXDB_SECRET and LUXDB_SECRET_FILE=.* are both set/,
      });
      assert.throws(() => serverSecret({}), { message: /no secret/ });
      const missing = join(dir, "missing");
      assert.throws(() => serverSecret({ LUXDB_SECRET_FILE: missing }), {
        message: new RegExp(`cannot read the secret file LUXDB_SECRET_FILE=${missing}: ENOENT`),
      });
      writeFileSync(file, "\n");
      assert.throws(() => serverSecret({ LUXDB_SECRET_FILE: file }), { message: /is empty/ });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("takes luxdb.proto from LUXDB_PROTO, else from the repository beside it", () => {
    assert.equal(protoPath({}), REPOSITORY_PROTO);
    assert.equal(protoPath({ LUXDB_PROTO: REPOSITORY_PROTO }), REPOSITORY_PROTO);
    assert.throws(() => protoPath({ LUXDB_PROTO: "/nonexistent/luxdb.proto" }), {
      message: /LUXDB_PROTO=\/nonexistent\/luxdb.proto does not exist/,
    });
  });
});

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer().once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

function canConnect(port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

// grpc.health.v1.Health/Check for service "" without a token; the request is empty and a
// SERVING reply is the two bytes 08 01, so no health stubs are needed.
function healthCheck(address) {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      "/grpc.health.v1.Health/Check",
      (request) => request,
      (bytes) => bytes,
      Buffer.alloc(0),
      { deadline: Date.now() + 2000 },
      (error, reply) => {
        client.close();
        resolve(!error && reply.equals(Buffer.from([0x08, 0x01])));
      },
    );
  });
}

// luxdb-server on a fresh data directory; start() returns once it is listening and SERVING.
class LuxServer {
  constructor(binary) {
    this.binary = binary;
    this.dir = mkdtempSync(join(tmpdir(), "luxdb-node-test-"));
    this.log = "";
  }

  async start() {
    this.port = await freePort();
    this.address = `127.0.0.1:${this.port}`;
    const args = ["--host", "127.0.0.1", "--port", String(this.port), "--loglevel", "info"];
    this.process = spawn(this.binary, [...args, "--secret", SECRET, join(this.dir, "data")], {
      env: { ...process.env, KDF_ITERATIONS },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.process.stdout.on("data", (chunk) => (this.log += chunk));
    this.process.stderr.on("data", (chunk) => (this.log += chunk));
    this.exited = new Promise((resolve) =>
      this.process.once("exit", (code, signal) => resolve({ code, signal })),
    );
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (Date.now() < deadline) {
      const code = this.process.exitCode;
      if (code !== null) this.fail(`exited with ${code} while starting`);
      if ((await canConnect(this.port)) && (await healthCheck(this.address))) return;
      await sleep(50);
    }
    this.fail(`not SERVING on ${this.address} within ${START_TIMEOUT_MS} ms`);
  }

  // SIGTERM; resolves to the exit code (null if it had to be killed after STOP_TIMEOUT_MS).
  async stop() {
    this.process.kill("SIGTERM");
    let timer;
    const timeout = new Promise((resolve) => (timer = setTimeout(resolve, STOP_TIMEOUT_MS, null)));
    const exit = await Promise.race([this.exited, timeout]);
    clearTimeout(timer);
    if (exit === null) {
      this.process.kill("SIGKILL");
      await this.exited;
      return null;
    }
    return exit.code;
  }

  fail(message) {
    throw new Error(`luxdb-server ${message}\n--- its output ---\n${this.log}`);
  }

  cleanUp() {
    if (this.process && this.process.exitCode === null && this.process.signalCode === null) {
      this.process.kill("SIGKILL");
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

// Calls a LuxDB method with the metadata given, bypassing the example's token interceptor.
function rawCall(address, method, request, metadata) {
  const client = new LuxDB(address, grpc.credentials.createInsecure());
  return promisify(client[method])
    .call(client, request, metadata)
    .finally(() => client.close());
}

function bearer(token) {
  const metadata = new grpc.Metadata();
  metadata.set("authorization", `Bearer ${token}`);
  return metadata;
}

describe("Node example against luxdb-server", () => {
  const binary = process.env.LUXDB_SERVER_BIN;
  let server;
  let db;

  before(async () => {
    assert.ok(binary, "set LUXDB_SERVER_BIN to the built luxdb-server (ctest -R node_tests does)");
    server = new LuxServer(binary);
    await server.start();
    db = connect(server.address, SECRET);
  });

  after(() => {
    db?.close();
    server?.cleanUp();
  });

  it("mints 76-character unpadded base64url tokens: version 1, current time in ms", () => {
    const token = mintToken(deriveKey(SECRET), "/luxdb.v1.LuxDB/ListIndexes");
    assert.match(token, /^[A-Za-z0-9_-]{76}$/);
    const bytes = Buffer.from(token, "base64url");
    assert.equal(bytes.length, 57);
    assert.equal(bytes[0], 1);
    const age = Date.now() - Number(bytes.readBigInt64BE(1));
    assert.ok(age >= 0 && age < 5000, `timestamp is ${age} ms old`);
  });

  it("runs create/init/add/query and gets the nearest ids, nearest first", async () => {
    const { ids, distances } = await runExample(db);
    assert.deepEqual(ids, [["10", "40"], ["30", "20"]]);
    // Squared L2: [.9,.1,0] is .02 from id 10 and .82 from id 40; [0,.2,.9] is .05 from 30.
    const expected = [[0.02, 0.82], [0.05, 1.45]];
    distances.flat().forEach((d, i) => assert.ok(Math.abs(d - expected.flat()[i]) < 1e-5, `${d}`));
    const { info } = await db.DescribeIndex({ name: "node-example" });
    assert.equal(info.element_count, "4");
    assert.equal(info.space, "L2");
  });

  it("filters a query by attributes; GetElements returns them", async () => {
    assert.deepEqual(await runFilterExample(db), ["1", "4", "18446744073709551615"]);
    const name = "node-filter-example";
    const reply = await db.GetElements({ name, ids: [4, 2], with_attributes: true });
    assert.deepEqual(
      reply.attributes.map(({ attributes }) =>
        attributes.map(({ key, values }) => [key, values.map((v) => Object.values(v)[0])]),
      ),
      [
        [
          ["tags", ["new", "red"]],
          ["tenant", ["1"]],
        ],
        [["tenant", ["2"]]],
      ],
    );
    await assert.rejects(
      db.QueryIndex({ name, vectors: [0, 0], k: 1, filter: { must: [{ key: "tenant" }] } }),
      (error) => {
        assert.equal(error.code, grpc.status.INVALID_ARGUMENT, error.message);
        assert.match(error.details, /filter\.must\[0\] \('tenant'\)/);
        return true;
      },
    );
    await db.DeleteIndex({ name });
  });

  it("compacts an index: CompactIndex drops the tombstones DescribeIndex counts", async () => {
    const name = "node-compact";
    await db.CreateIndex({ name, space: "L2", dim: 2 });
    await db.InitIndex({ name, max_elements: 100 });
    await db.AddItems({ name, vectors: [1, 0, 0, 1, 1, 1], ids: [1, 2, 3] });
    await db.DeleteItems({ name, ids: [2] });
    let { info } = await db.DescribeIndex({ name });
    assert.equal(info.tombstones, "1");
    assert.ok(BigInt(info.memory_bytes) > 0n, info.memory_bytes);
    assert.equal(info.compacting, false);
    const reply = await db.CompactIndex({ name });
    assert.equal(reply.tombstones_removed, "1");
    assert.equal(reply.live, "2");
    ({ info } = await db.DescribeIndex({ name }));
    assert.equal(info.tombstones, "0");
    assert.equal(info.element_count, "2");
    await db.DeleteIndex({ name });
  });

  it("runs as a script (LUXDB_ADDRESS, LUXDB_SECRET); a rerun recreates the index", async () => {
    assertExampleOutput(
      await runScript(EXAMPLE, { LUXDB_ADDRESS: server.address, LUXDB_SECRET: SECRET }),
    );
    assertExampleOutput(await runScript(EXAMPLE, { LUXDB_SECRET: SECRET }, [server.address]));
  });

  it("runs outside the repository (LUXDB_PROTO, LUXDB_HOST/PORT, LUXDB_SECRET_FILE)", async () => {
    // A project of its own: the example and its two packages (linked, as npm would install
    // them), but no proto/ two directories up.
    const project = mkdtempSync(join(tmpdir(), "luxdb-node-project-"));
    try {
      const script = join(project, "example.mjs");
      copyFileSync(EXAMPLE, script);
      const modules = fileURLToPath(new URL("./node_modules", import.meta.url));
      symlinkSync(modules, join(project, "node_modules"));
      const secretFile = join(project, "secret");
      writeFileSync(secretFile, `${SECRET}\n`);
      const settings = {
        LUXDB_HOST: "127.0.0.1",
        LUXDB_PORT: String(server.port),
        LUXDB_SECRET_FILE: secretFile,
      };
      assertExampleOutput(await runScript(script, { ...settings, LUXDB_PROTO: REPOSITORY_PROTO }));

      // Without LUXDB_PROTO the copy cannot find the definition: a one-line error naming
      // both places, no stack trace.
      const lost = await runScript(script, settings);
      assert.equal(lost.code, 2, lost.stderr);
      assert.match(lost.stderr, /^example.mjs: cannot find luxdb.proto: LUXDB_PROTO is not set/);
      const relative = resolvePath(project, "../../proto/luxdb/v1/luxdb.proto");
      assert.ok(lost.stderr.includes(relative), lost.stderr);
      assert.equal(lost.stderr.trim().split("\n").length, 1, lost.stderr);
      const wrong = await runScript(script, { ...settings, LUXDB_PROTO: join(project, "x.proto") });
      assert.equal(wrong.code, 2, wrong.stderr);
      assert.match(wrong.stderr, /LUXDB_PROTO=.*x\.proto does not exist/);

      // Contradictory settings stop it before it connects, naming both variables.
      const both = await runScript(script, {
        ...settings,
        LUXDB_PROTO: REPOSITORY_PROTO,
        LUXDB_ADDRESS: server.address,
      });
      assert.equal(both.code, 2, both.stderr);
      assert.match(both.stderr, /LUXDB_ADDRESS=.* and LUXDB_HOST and LUXDB_PORT contradict/);
    } finally {
      rmSync(project, { recursive: true, force: true });
    }
  });

  it("is refused with UNAUTHENTICATED under a wrong secret, and nothing is created", async () => {
    const intruder = connect(server.address, "not-the-secret");
    try {
      const call = intruder.CreateIndex({ name: "intruder", space: "L2", dim: 2 });
      await assert.rejects(call, (error) => {
        assert.equal(error.code, UNAUTHENTICATED, error.message);
        return true;
      });
    } finally {
      intruder.close();
    }
    assert.equal((await db.IndexExists({ name: "intruder" })).exists, false);
  });

  it("binds each token to its method: a ListIndexes token cannot create an index", async () => {
    const token = mintToken(deriveKey(SECRET), "/luxdb.v1.LuxDB/ListIndexes");
    const request = { name: "rebound", space: "L2", dim: 2 };
    await assert.rejects(rawCall(server.address, "CreateIndex", request, bearer(token)), {
      code: UNAUTHENTICATED,
    });
    assert.equal((await db.IndexExists({ name: "rebound" })).exists, false);
    // The same kind of token on its own method works, once.
    const reply = await rawCall(server.address, "ListIndexes", {}, bearer(token));
    const names = reply.indexes.map((index) => index.name).sort();
    assert.deepEqual(names, ["node-example", "node-filter-example"]); // the script run's
    await assert.rejects(rawCall(server.address, "ListIndexes", {}, bearer(token)), {
      code: UNAUTHENTICATED,
    });
  });

  it("exits 0 on SIGTERM", async () => {
    db.close();
    db = undefined;
    assert.equal(await server.stop(), 0, `luxdb-server output:\n${server.log}`);
  });
});
