/**
 * The conformance suite: the same checks over every transport
 * ({@linkcode TRANSPORTS}: in-memory, TCP, TLS, unix, NATS) with every
 * runner ({@linkcode RUNNERS}: TypeScript inline, TypeScript sandboxed,
 * Python), fifteen pairs. A new transport or runner is one line in its table.
 *
 * Each pair serves the procedures of `fixtures/` from an in-process
 * {@linkcode RpcServer} through `serve(listener)` on real sockets (or in
 * memory, or through a real nats-server) and checks, through the client library: the five course
 * exception kinds by their wire names, overload choice, exact big ints,
 * lists, streaming, cancelling, deadlines, and concurrency: 64 callers,
 * each on its own connection, making N calls each, with 0 lost and 0 wrong
 * replies. The process-level behaviour (`rpc server`, the CLI) is covered
 * by the other tests in `tests/`.
 *
 * N is 1,000 on the in-memory and TCP transports and 100 on TLS, unix and
 * NATS, so that the fifteen pairs fit a CI machine of 2 cores; the environment sets
 * other counts: `RPC_CONFORMANCE_CALLS` (default 1000) for the full pairs,
 * `RPC_CONFORMANCE_CALLS_REDUCED` (default 100) for the others; set both to
 * 1000 for the full count everywhere.
 */

import assert from "node:assert/strict";
import type { RpcClient } from "../../core/client/client.ts";
import { RpcError } from "../../core/errors.ts";
import { Registry } from "../../core/server/registry.ts";
import { RpcServer } from "../../core/server/server.ts";
import { RUNNERS, servicesFor } from "./runners.ts";
import { TRANSPORTS } from "./transports.ts";

const CALLERS = 64;
const FULL_CALLS = Number(Deno.env.get("RPC_CONFORMANCE_CALLS") ?? 1000);
const REDUCED_CALLS = Number(Deno.env.get("RPC_CONFORMANCE_CALLS_REDUCED") ?? 100);

/** The error a call fails with; fails the test when it succeeds. */
async function failure(call: Promise<unknown>): Promise<RpcError> {
  try {
    const value = await call;
    assert.fail(`Expected the call to fail, it returned ${JSON.stringify(value)}`);
  } catch (error) {
    assert.ok(error instanceof RpcError, `Expected an RpcError, got ${error}`);
    return error;
  }
}

/** The checks of one pair, each against a client of the served transport. */
const CHECKS: [string, (client: RpcClient, calls: number) => Promise<void>][] = [
  ["the five course exception kinds, by wire name", async (client) => {
    const execution = await failure(client.call("conf", "fail", ["boom"]));
    assert.equal(execution.kind, "Execution Exception");
    assert.match(execution.message, /boom/);
    assert.equal(
      (await failure(client.call("conf", "echo", [42]))).kind,
      "Invalid Arguments",
    );
    assert.equal(
      (await failure(client.call("nosuch", "echo", ["x"]))).kind,
      "Service Not Found",
    );
    assert.equal((await failure(client.call("conf", "nosuch", ["x"]))).kind, "RPC Not Found");
    assert.equal(
      (await failure(client.call("private", "echo", ["x"]))).kind,
      "Client Not Registered",
    );
  }],
  ["overloads are chosen by argument types", async (client) => {
    assert.deepEqual(await client.call("conf", "add", [2, 3]), [5]);
    assert.deepEqual(await client.call("conf", "add", [1.5, 2.25]), [3.75]);
    assert.deepEqual(await client.call("conf", "add", [[1, 2, 3, 4]]), [10]);
    assert.equal((await failure(client.call("conf", "add", ["a", "b"]))).kind, "Invalid Arguments");
  }],
  ["big ints stay exact", async (client) => {
    const big = 2n ** 70n;
    assert.deepEqual(await client.call("conf", "add", [big, 1]), [big + 1n]);
    const negative = -(10n ** 40n);
    assert.deepEqual(await client.call("conf", "add", [negative, negative]), [2n * negative]);
    assert.deepEqual(
      await client.call("conf", "add", [[2n ** 60n, 2n ** 60n, 1]]),
      [2n ** 61n + 1n],
    );
  }],
  ["lists", async (client) => {
    assert.deepEqual(await client.call("conf", "pair", [[1, 2, 3], ["a", "b", "c"]]), [[
      "1:a",
      "2:b",
      "3:c",
    ]]);
    assert.deepEqual(await client.call("conf", "pair", [[], []]), [[]]);
    assert.deepEqual(await client.call("conf", "add", [[]]), [0]);
  }],
  ["streaming: each yield, then the result", async (client) => {
    const stream = client.stream("conf", "countdown", [5]);
    const parts: unknown[] = [];
    for await (const [n] of stream) parts.push(n);
    assert.deepEqual(parts, [5, 4, 3, 2, 1]);
    assert.deepEqual(await stream.result, ["liftoff"]);
  }],
  ["cancel: the call ends Cancelled and the connection goes on", async (client) => {
    const controller = new AbortController();
    const call = client.call("conf", "sleep", [60], { signal: controller.signal });
    // Known to be running on the server once a later call on the same connection is answered.
    assert.deepEqual(await client.call("conf", "echo", ["in flight"]), ["in flight"]);
    controller.abort();
    assert.equal((await failure(call)).kind, "Cancelled");
    assert.deepEqual(await client.call("conf", "echo", ["after"]), ["after"]);
  }],
  ["deadlines: a call past its time limit ends Timeout", async (client) => {
    const error = await failure(client.call("conf", "sleep", [60], { timeoutMs: 300 }));
    assert.equal(error.kind, "Timeout");
    assert.deepEqual(await client.call("conf", "echo", ["after"]), ["after"]);
  }],
];

for (const runner of RUNNERS) {
  Deno.test({
    name: `conformance: ${runner.name} runner over every transport`,
    // The sandbox and Python runners keep processes and timers that close() ends.
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async (t) => {
      const created = runner.create();
      try {
        const registry = await Registry.load(await servicesFor(runner), {
          [runner.language]: created,
        });
        for (const transport of TRANSPORTS) {
          await t.step(`${transport.name} × ${runner.name}`, async (t) => {
            const served = await transport.listen();
            const server = new RpcServer({
              registry,
              callTimeoutMs: 60_000,
              limits: { maxConnectionsPerIp: 0, maxCallsPerConnection: 0 },
            });
            server.serve(served.listener);
            const client = await served.connect();
            try {
              for (const [name, check] of CHECKS) {
                await t.step(name, () => check(client, 0));
              }
              const calls = transport.fullConcurrency ? FULL_CALLS : REDUCED_CALLS;
              await t.step(
                `${CALLERS} callers × ${calls} calls: none lost, none wrong`,
                async () => {
                  const clients = await Promise.all(
                    Array.from({ length: CALLERS }, () => served.connect()),
                  );
                  let lost = 0;
                  let wrong = 0;
                  try {
                    await Promise.all(clients.map(async (caller, c) => {
                      for (let i = 0; i < calls; i++) {
                        const text = `${c}.${i}`;
                        try {
                          const [reply] = await caller.call("conf", "echo", [text]);
                          if (reply !== text) wrong++;
                        } catch {
                          lost++;
                        }
                      }
                    }));
                  } finally {
                    for (const caller of clients) caller.close();
                  }
                  assert.deepEqual({ lost, wrong }, { lost: 0, wrong: 0 });
                  assert.equal(server.stats.callsServed >= CALLERS * calls, true);
                },
              );
            } finally {
              client.close();
              await server.close();
              await served.cleanup();
            }
          });
        }
      } finally {
        await created.close();
      }
    },
  });
}
