import assert from "node:assert/strict";
import { ErrorKind, RpcError } from "../errors.ts";
import { InlineTypeScriptRunner } from "../runners/typescript.ts";
import type { CallRequest } from "../wire/message.ts";
import { RUNNERS, servicesFor } from "../../tests/conformance/runners.ts";
import { Registry } from "./registry.ts";
import { CallController, CallRunner } from "./run.ts";
import { sessionOverMemory } from "./test_support.ts";

const registry = await Registry.load(await servicesFor(RUNNERS[0]), {
  typescript: new InlineTypeScriptRunner(),
});

const request = (rpc: string, args: unknown[]): CallRequest => ({
  service: "conf",
  rpc,
  arguments: args,
});

Deno.test("CallController: an armed time limit aborts the call with Timeout; a disarmed one does not", async () => {
  // The shared deadline timer does not keep a process alive; a pending procedure would.
  const procedure = new Promise<never>(() => {});
  const alive = setTimeout(() => {}, 60_000);
  const late = new CallController();
  late.arm(10, "slow");
  await assert.rejects(late.race(procedure), {
    kind: "Timeout",
    message: "slow did not finish within 10 ms",
  });
  clearTimeout(alive);
  assert.equal(late.signal.aborted, true);

  const quick = new CallController();
  quick.arm(10, "quick");
  assert.equal(await quick.race(Promise.resolve("done")), "done");
  quick.disarm();
  await new Promise((resolve) => setTimeout(resolve, 30));
  assert.equal(quick.signal.aborted, false);
});

Deno.test("CallRunner: a streaming procedure's parts go out as RPC-PART, then reply sends RPC-RES", async () => {
  const runner = new CallRunner(60_000);
  const { session, peer } = sessionOverMemory();
  const call = request("countdown", [3]);
  const resolved = registry.resolve(undefined, call);
  const controller = new CallController();
  const result = await runner.start(session, 4, call, resolved, controller);
  controller.disarm();
  runner.reply(session, 4, resolved.overload.procedure.spec, result);
  const messages = await peer.next(4);
  assert.deepEqual(messages.map((m) => [m.type, m.serial, m.value]), [
    ["RPC-PART", 4, { values: [3] }],
    ["RPC-PART", 4, { values: [2] }],
    ["RPC-PART", 4, { values: [1] }],
    ["RPC-RES", 4, { "return-values": ["liftoff"] }],
  ]);
});

Deno.test("CallRunner: aborting the controller ends a running call at once with the reason", async () => {
  const runner = new CallRunner(60_000);
  const { session } = sessionOverMemory();
  const call = request("sleep", [30]);
  const controller = new CallController();
  const running = runner.start(session, 1, call, registry.resolve(undefined, call), controller);
  controller.abort(new RpcError(ErrorKind.Cancelled, "Call cancelled by the client"));
  await assert.rejects(running, { kind: "Cancelled", message: "Call cancelled by the client" });
  controller.disarm();
});

Deno.test("CallRunner: without a limit of its own, a procedure gets the server's call timeout", async () => {
  const runner = new CallRunner(20);
  const { session } = sessionOverMemory();
  const call = request("sleep", [30]);
  const controller = new CallController();
  await assert.rejects(
    runner.start(session, 1, call, registry.resolve(undefined, call), controller),
    { kind: "Timeout", message: "sleep did not finish within 20 ms" },
  );
});

Deno.test("CallRunner: a result that is not the declared return type is an Execution Exception", () => {
  const runner = new CallRunner(60_000);
  const { session } = sessionOverMemory();
  const spec = registry.resolve(undefined, request("echo", ["x"])).overload.procedure.spec;
  assert.throws(() => runner.reply(session, 1, spec, 42), { kind: "Execution Exception" });
});

Deno.test("CallRunner: a procedure that settles on abort is not raced; any other is", async () => {
  const runner = new CallRunner(60_000);
  const { session } = sessionOverMemory();
  const call = request("sleep", [30]);
  const resolved = registry.resolve(undefined, call);
  const aborted = (settlesOnAbort: boolean) => ({
    ...resolved,
    overload: {
      ...resolved.overload,
      procedure: {
        spec: resolved.overload.procedure.spec,
        // Rejects with an error of its own when aborted, a moment later.
        invoke: (_args: unknown[], signal: AbortSignal) =>
          new Promise<unknown>((_, reject) =>
            signal.addEventListener(
              "abort",
              () => setTimeout(() => reject(new Error("the runner's own")), 5),
              { once: true },
            )
          ),
        settlesOnAbort,
      },
    },
  });
  for (const settles of [true, false]) {
    const controller = new CallController();
    const running = runner.start(session, 1, call, aborted(settles), controller);
    controller.abort(new RpcError(ErrorKind.Cancelled, "Call cancelled by the client"));
    await assert.rejects(
      running,
      settles ? { message: "the runner's own" } : { kind: "Cancelled" },
      `settlesOnAbort: ${settles}`,
    );
    controller.disarm();
  }
  // The raced procedure's own rejection, still to come, is handled by the race.
  await new Promise((resolve) => setTimeout(resolve, 10));
});
