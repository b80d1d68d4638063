/**
 * The command line against a server that answers wrongly or not at all:
 * every wait is bounded by --timeout, and a reply that is not what it
 * should be is refused with `Malformed Frame` naming the field.
 */

import assert from "node:assert/strict";
import { describeResult, rpc } from "./helpers.ts";
import { oddServer } from "./odd_server.ts";

/** Runs rpc in an empty directory, so no init.yaml is read. */
async function rpcAlone(args: string[]) {
  const dir = await Deno.makeTempDir({ prefix: "rpc-odd-" });
  try {
    return await rpc(args, { cwd: dir, timeoutMs: 60_000 });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("rpc call and rpc bench to a server that never answers LIST end with Timeout at --timeout", async () => {
  // Handshakes, then keeps silent: the list of signatures never comes.
  await using silent = oddServer(() => undefined);
  const address = `127.0.0.1:${silent.port}`;
  const call = await rpcAlone(["call", "--timeout", "1s", address, "svc", "f", "3"]);
  assert.equal(call.code, 4, describeResult(call));
  assert.match(call.stderr, /^error: Timeout: /m);
  const bench = await rpcAlone(["bench", "--timeout", "1s", address, "svc", "f", "3", "-n", "1"]);
  assert.equal(bench.code, 4, describeResult(bench));
  assert.match(bench.stderr, /^error: Timeout: /m);
  // Both asked for the list, gave up on it at the limit, and sent no call on guessed types.
  assert.deepEqual(
    silent.requests.map((request) => request.type),
    ["LIST", "RPC-CANCEL", "LIST", "RPC-CANCEL"],
  );
});
