import assert from "node:assert/strict";
import type { RpcClient } from "../client/client.ts";
import { connectOver } from "../client/connect.ts";
import { sha256Hex } from "../hash.ts";
import { Logger } from "../log.ts";
import { Registry } from "../server/registry.ts";
import { InlineTypeScriptRunner } from "../runners/typescript.ts";
import { RpcServer } from "../server/server.ts";
import { MemoryListener, memoryPair } from "../transport/memory.ts";
import { MessageChannel } from "../wire/channel.ts";
import type { AdminRequest } from "../wire/message.ts";
import { deploy, fetchState } from "./client.ts";
import { Installer } from "./installer.ts";
import { blobName, type Desired } from "./plan.ts";
import { CodeStore } from "./store.ts";

function desired(sources: Record<string, string>): Desired {
  const state: Desired["state"] = { services: [{ name: "svc" }], procedures: [], clients: [] };
  const texts = new Map<string, string>();
  for (const [rpc, text] of Object.entries(sources)) {
    const procedure = {
      service: "svc",
      rpc,
      args: [],
      returns: ["str"],
      language: "typescript" as const,
      hash: sha256Hex(text),
      extension: ".ts",
    };
    state.procedures.push(procedure);
    texts.set(blobName(procedure), text);
  }
  return { state, sources: texts };
}

const returning = (name: string, text: string) =>
  `export function ${name}() { return ${JSON.stringify(text)}; }\n`;

/** A server with an installer over a temporary state directory, reached over an in-memory pair. */
async function deployServer() {
  const stateDir = await Deno.makeTempDir({ prefix: "rpc-deploy-client-" });
  const logger = new Logger([]);
  const server = new RpcServer({ name: "s1", registry: Registry.empty(), logger });
  const installer = new Installer({
    store: new CodeStore(stateDir),
    server,
    runners: { typescript: new InlineTypeScriptRunner() },
    logger,
    insecure: true,
  });
  await installer.boot();
  server.admin = installer.handle;
  const listener = new MemoryListener("s1");
  server.serve(listener);
  const client = await connectOver(listener.connect());
  return {
    client,
    installer,
    async [Symbol.asyncDispose]() {
      client.close();
      await server.close();
      await Deno.remove(stateDir, { recursive: true });
    },
  };
}

Deno.test("deploy(): sends what the server lacks, then nothing once it holds it", async () => {
  await using it = await deployServer();
  const first = desired({ a: returning("a", "1"), b: returning("b", "2") });
  const sent: number[] = [];
  const report = await deploy(it.client, first, { onInstall: (count) => sent.push(count) });
  assert.equal(report.current.generation, 0);
  assert.equal(report.plan.added.length, 2);
  assert.equal(report.install?.generation, 1);
  assert.equal(report.install?.received, 2);
  assert.deepEqual(sent, [2]);

  const again = await deploy(it.client, first, { onInstall: (count) => sent.push(count) });
  assert.equal(again.install, undefined);
  assert.equal(again.plan.unchanged.length, 2);
  assert.deepEqual(sent, [2]); // no second install

  // One changed source: only it travels.
  const second = desired({ a: returning("a", "1"), b: returning("b", "3") });
  const changed = await deploy(it.client, second);
  assert.equal(changed.install?.received, 1);
  assert.equal(changed.install?.changed, 1);
  assert.equal((await fetchState(it.client)).generation, 2);
});

Deno.test("deploy(): a dry run plans and installs nothing", async () => {
  await using it = await deployServer();
  const report = await deploy(it.client, desired({ a: returning("a", "1") }), { dryRun: true });
  assert.equal(report.plan.added.length, 1);
  assert.deepEqual(report.plan.missing.length, 1);
  assert.equal(report.install, undefined);
  assert.equal(it.installer.manifest.generation, 0);
});

/**
 * A peer that answers the handshake, and each `ADMIN` with `reply(request)`:
 * a server whose replies are not what rpc sends. Keeps the requests it got.
 */
async function scriptedServer(reply: (request: AdminRequest) => unknown) {
  const [clientEnd, serverEnd] = memoryPair("scripted");
  const channel = new MessageChannel(serverEnd);
  const requests: AdminRequest[] = [];
  const reading = channel.readAll({
    onMessage(message) {
      if (message.type === "HELLO") {
        channel.send({
          type: "HELLO",
          serial: message.serial,
          value: { version: 1, server: "odd", software: "test" },
        });
      } else if (message.type === "ADMIN") {
        requests.push(message.value);
        channel.send({ type: "ADMIN-RES", serial: message.serial, value: reply(message.value) });
      }
    },
    onMalformed() {},
  });
  const client: RpcClient = await connectOver(clientEnd);
  return {
    client,
    requests,
    async [Symbol.asyncDispose]() {
      client.close();
      channel.close();
      await reading.catch(() => {});
    },
  };
}

const EMPTY_STATE = {
  server: "odd",
  generation: 0,
  installedAt: new Date(0).toISOString(),
  services: [],
  procedures: [],
  clients: [],
  clientsDigest: sha256Hex("[]"),
};

Deno.test("deploy(): a state reply that is not a state report is refused and nothing is sent", async () => {
  await using peer = await scriptedServer(() => ({ ...EMPTY_STATE, procedures: "all of them" }));
  await assert.rejects(deploy(peer.client, desired({ a: returning("a", "1") })), {
    kind: "Malformed Frame",
    message: 'Cannot read the state reply: procedures must be a list, got "all of them"',
  });
  assert.deepEqual(peer.requests.map((request) => request.op), ["state"]);
});

Deno.test("deploy(): an install reply that is not an install report is refused", async () => {
  await using peer = await scriptedServer((request) =>
    request.op === "state" ? EMPTY_STATE : { generation: 1, added: "one" }
  );
  await assert.rejects(deploy(peer.client, desired({ a: returning("a", "1") })), {
    kind: "Malformed Frame",
    message: 'Cannot read the install reply: added must be a count, got "one"',
  });
  // The install carried the generation it was planned against and the one missing source.
  const install = peer.requests[1];
  assert.equal(install.op, "install");
  assert.equal(install.generation, 0);
  assert.deepEqual(Object.keys(install.sources as object).length, 1);
});
