import assert from "node:assert/strict";
import { join } from "node:path";
import { sha256Hex } from "../hash.ts";
import { Logger, type LogRecord } from "../log.ts";
import { Registry } from "../server/registry.ts";
import { InlineTypeScriptRunner } from "../runners/typescript.ts";
import { RpcServer, type SessionInfo } from "../server/server.ts";
import { Installer } from "./installer.ts";
import { parseStateReport } from "./messages.ts";
import { blobName, type DesiredState } from "./plan.ts";
import { CodeStore } from "./store.ts";

const GREET = "export function greet(name: string) { return `hello ${name}`; }\n";
const SHOUT = "export function greet(name: string) { return `HELLO ${name}`; }\n";
const BROKEN = "export function greet(name: string) { return (; }\n";

/** A desired state of one service `svc` whose `greet(str) -> str` is `source`. */
function desired(source: string): { state: DesiredState; sources: Map<string, string> } {
  const procedure = {
    service: "svc",
    rpc: "greet",
    args: ["str"],
    returns: ["str"],
    language: "typescript" as const,
    hash: sha256Hex(source),
    extension: ".ts",
  };
  return {
    state: {
      services: [{ name: "svc" }],
      procedures: [procedure],
      clients: [{ name: "c1", ip: "127.0.0.1", secretHash: "c".repeat(64) }],
    },
    sources: new Map([[blobName(procedure), source]]),
  };
}

/** An installer over a fresh state directory, its server unstarted, the audit log kept. */
async function setup(dir?: string) {
  const stateDir = dir ?? await Deno.makeTempDir({ prefix: "rpc-installer-" });
  const audit: LogRecord[] = [];
  const logger = new Logger([]);
  const server = new RpcServer({ name: "s1", registry: Registry.empty(), logger });
  const installer = new Installer({
    store: new CodeStore(stateDir),
    server,
    runners: { typescript: new InlineTypeScriptRunner() },
    logger,
    adminTokenHash: sha256Hex("admin secret"),
    audit: new Logger([{
      write: (record) => void audit.push(record),
      flush: () => Promise.resolve(),
    }], { level: "debug" }),
  });
  await installer.boot();
  return {
    stateDir,
    server,
    installer,
    audit,
    async [Symbol.asyncDispose]() {
      await server.close();
      if (!dir) await Deno.remove(stateDir, { recursive: true });
    },
  };
}

function session(admin: boolean): SessionInfo {
  return {
    id: 1,
    remote: "127.0.0.1:40000",
    remoteIp: "127.0.0.1",
    client: undefined,
    connectedAt: new Date(),
    calls: 0,
    admin,
  };
}

Deno.test("Installer: an install stores the sources by SHA-256, commits and serves the new state", async () => {
  await using it = await setup();
  const want = desired(GREET);
  const report = await it.installer.install(want.state, want.sources, { generation: 0 });
  assert.deepEqual(report, {
    generation: 1,
    added: 1,
    changed: 0,
    removed: 0,
    unchanged: 0,
    received: 1,
    bytes: new TextEncoder().encode(GREET).length,
  });
  const blob = join(it.stateDir, "blobs", blobName(want.state.procedures[0]));
  assert.equal(await Deno.readTextFile(blob), GREET);
  const manifest = JSON.parse(await Deno.readTextFile(join(it.stateDir, "manifest.json")));
  assert.equal(manifest.generation, 1);
  assert.deepEqual(it.server.registry.describe(undefined).map((s) => s.name), ["svc"]);
  assert.equal(it.installer.manifest.clients[0].secretHash, "c".repeat(64));
  // The audit log names what was added, with its hash.
  assert.deepEqual(it.audit.at(-1)?.added, [{
    procedure: "svc.greet(str)",
    sha256: sha256Hex(GREET),
  }]);
});

Deno.test("Installer: a source whose text does not match its name is refused; nothing changes", async () => {
  await using it = await setup();
  const want = desired(GREET);
  const lying = new Map([[blobName(want.state.procedures[0]), SHOUT]]);
  await assert.rejects(it.installer.install(want.state, lying), {
    kind: "Invalid Arguments",
    message: `Source sent as ${blobName(want.state.procedures[0])} has SHA-256 ${sha256Hex(SHOUT)}`,
  });
  assert.equal(it.installer.manifest.generation, 0);
  assert.deepEqual(it.server.registry.describe(undefined), []);
});

Deno.test("Installer: a procedure whose source is neither held nor sent is refused", async () => {
  await using it = await setup();
  const want = desired(GREET);
  await assert.rejects(it.installer.install(want.state, new Map()), {
    kind: "Invalid Arguments",
    message: `No source for svc.greet(str): the server does not hold ${
      blobName(want.state.procedures[0])
    } and it was not sent`,
  });
  assert.equal(it.installer.manifest.generation, 0);
});

Deno.test("Installer: code that does not load fails the install and the old state keeps serving", async () => {
  await using it = await setup();
  const first = desired(GREET);
  await it.installer.install(first.state, first.sources);
  const broken = desired(BROKEN);
  await assert.rejects(it.installer.install(broken.state, broken.sources), (error: Error) => {
    assert.equal((error as { kind?: string }).kind, "Execution Exception");
    assert.match(error.message, /^Cannot load the new code: /);
    return true;
  });
  assert.equal(it.installer.manifest.generation, 1);
  assert.equal(it.installer.manifest.procedures[0].hash, sha256Hex(GREET));
  const manifest = JSON.parse(await Deno.readTextFile(join(it.stateDir, "manifest.json")));
  assert.equal(manifest.generation, 1);
});

Deno.test("Installer: an install planned against an old generation is a Conflict", async () => {
  await using it = await setup();
  const first = desired(GREET);
  await it.installer.install(first.state, first.sources, { generation: 0 });
  const second = desired(SHOUT);
  await assert.rejects(it.installer.install(second.state, second.sources, { generation: 0 }), {
    kind: "Conflict",
  });
  assert.equal(it.installer.manifest.procedures[0].hash, sha256Hex(GREET));
});

Deno.test("Installer: a new installer on the same state directory boots into what was committed", async () => {
  const dir = await Deno.makeTempDir({ prefix: "rpc-installer-" });
  try {
    {
      await using before = await setup(dir);
      const want = desired(GREET);
      await before.installer.install(want.state, want.sources);
    }
    await using after = await setup(dir);
    assert.equal(after.installer.manifest.generation, 1);
    assert.deepEqual(after.server.registry.describe(undefined).map((s) => s.name), ["svc"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Installer.handle(): state is public and hides secret hashes; install needs the admin token", async () => {
  await using it = await setup();
  const want = desired(GREET);
  const request = {
    op: "install",
    generation: 0,
    state: want.state,
    sources: Object.fromEntries(want.sources),
  };
  await assert.rejects(
    () => it.installer.handle(request, session(false)),
    { kind: "Unauthorized" },
  );
  assert.equal(it.installer.manifest.generation, 0);
  await it.installer.handle(request, session(true));
  const state = parseStateReport(await it.installer.handle({ op: "state" }, session(false)));
  assert.equal(state.generation, 1);
  assert.deepEqual(state.clients, [{ name: "c1", ip: "127.0.0.1", secret: true }]);
  assert.ok(!JSON.stringify(state).includes("c".repeat(64)));
});

Deno.test("Installer.handle(): a malformed install is refused before anything is stored", async () => {
  await using it = await setup();
  const want = desired(GREET);
  await assert.rejects(
    () =>
      it.installer.handle({
        op: "install",
        generation: 0,
        state: want.state,
        sources: { "../escape.ts": GREET },
      }, session(true)),
    {
      kind: "Invalid Arguments",
      message: 'Cannot install: sources must be named <sha256>.<extension>, got "../escape.ts"',
    },
  );
  assert.deepEqual([...Deno.readDirSync(it.stateDir)].map((entry) => entry.name), []);
});
