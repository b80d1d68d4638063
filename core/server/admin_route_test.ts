import assert from "node:assert/strict";
import { ErrorKind, RpcError } from "../errors.ts";
import { AdminRoute } from "./admin_route.ts";
import { health } from "./health.ts";
import { RefusalLog } from "./refusals.ts";
import { newStats, recordingLogger, sessionOverMemory } from "./test_support.ts";

function route() {
  const log = recordingLogger();
  const audit = recordingLogger();
  const stats = newStats();
  const route = new AdminRoute({
    health: () => health("s1", stats, new Set()),
    logger: log.logger,
    audit: audit.logger,
    refusals: new RefusalLog({ logger: log.logger, audit: audit.logger }),
  });
  return { route, log: log.records, audit: audit.records };
}

Deno.test("admin route: health is answered for anyone, even without an admin handler", async () => {
  const { route: r } = route();
  const { session, peer } = sessionOverMemory();
  await r.handle(session, 3, { op: "health" });
  const [reply] = await peer.next();
  assert.equal(reply.type, "ADMIN-RES");
  assert.equal((reply.value as { server: string }).server, "s1");
});

Deno.test("admin route: without a handler every other op is refused, logged and audited once per peer", async () => {
  const { route: r, log, audit } = route();
  const { session, peer } = sessionOverMemory();
  await r.handle(session, 1, { op: "stats" });
  await r.handle(session, 2, { op: "stats" });
  const replies = await peer.next(2);
  assert.deepEqual(
    replies.map((m) => [m.type, m.serial, m.value]),
    [1, 2].map((serial) => [
      "RPC-EX",
      serial,
      {
        "exception-type": "Unauthorized",
        "exception-message": "This server accepts no admin requests",
      },
    ]),
  );
  // The second refusal of the same peer and op is counted for the summary.
  assert.deepEqual(log.map((r) => r.msg), [
    "memory:test admin stats refused: This server accepts no admin requests",
  ]);
  assert.deepEqual(audit.map((r) => r.event), ["admin-refused"]);
});

Deno.test("admin route: the handler's value is the reply; its other errors are answered, not logged as refusals", async () => {
  const { route: r, log } = route();
  r.handler = (request, session) => {
    if (request.op === "boom") {
      return Promise.reject(new RpcError(ErrorKind.InvalidArguments, "Unknown admin op"));
    }
    return Promise.resolve({ op: request.op, by: session.remote });
  };
  const { session, peer } = sessionOverMemory();
  await r.handle(session, 1, { op: "clients" });
  await r.handle(session, 2, { op: "boom" });
  const [ok, failed] = await peer.next(2);
  assert.deepEqual(ok.value, { op: "clients", by: "memory:test" });
  assert.equal((failed.value as Record<string, string>)["exception-type"], "Invalid Arguments");
  assert.equal(log.length, 0);
});
