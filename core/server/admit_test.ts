import assert from "node:assert/strict";
import type { CallRequest } from "../wire/message.ts";
import { CallAdmission } from "./admit.ts";
import { RateLimiter, resolveLimits, type ServerLimits } from "./limits.ts";
import { sessionOverMemory } from "./test_support.ts";

function admission(limits: Partial<ServerLimits>) {
  const resolved = resolveLimits(limits);
  return new CallAdmission(resolved, new RateLimiter(resolved));
}

const call = (...args: unknown[]): CallRequest => ({ service: "s", rpc: "r", arguments: args });

Deno.test("admit: more calls in flight on one connection than the limit are Rate Limited", () => {
  const admit = admission({ maxCallsPerConnection: 2 });
  const { session } = sessionOverMemory();
  for (let serial = 1; serial <= 3; serial++) {
    // A call is admitted before it is in flight; those admitted before it are.
    if (serial <= 2) admit.admit(session, call());
    else {
      assert.throws(() => admit.admit(session, call()), {
        kind: "Rate Limited",
        message: "Too many calls in flight on this connection (limit 2)",
      });
    }
    session.inflight.set(serial, new AbortController());
  }
});

Deno.test("admit: a client over its rate is refused by name, an anonymous one by its address", () => {
  const admit = admission({ clientRate: 1, clientBurst: 1 });
  const named = sessionOverMemory({ name: "one" }).session;
  named.client = "c1";
  admit.admit(named, call());
  assert.throws(() => admit.admit(named, call()), {
    kind: "Rate Limited",
    message: "Client c1 is over its rate limit of 1 calls/s (burst 1)",
  });
  const anonymous = sessionOverMemory({ name: "two" }).session;
  admit.admit(anonymous, call()); // its own bucket, not c1's
  assert.throws(() => admit.admit(anonymous, call()), {
    message: "Client memory:two is over its rate limit of 1 calls/s (burst 1)",
  });
});

Deno.test("admit: the server's rate limit covers every client together", () => {
  const admit = admission({ globalRate: 2, globalBurst: 2 });
  admit.admit(sessionOverMemory({ name: "a" }).session, call());
  admit.admit(sessionOverMemory({ name: "b" }).session, call());
  assert.throws(() => admit.admit(sessionOverMemory({ name: "c" }).session, call()), {
    kind: "Rate Limited",
    message: "Server is over its rate limit of 2 calls/s",
  });
});

Deno.test("admit: argument values over the size limits are Invalid Arguments with the measured size", () => {
  const admit = admission({ maxStringLength: 4, maxListLength: 2, maxDepth: 2 });
  const { session } = sessionOverMemory();
  admit.admit(session, call("abcd", [1, 2], [[1]]));
  assert.throws(() => admit.admit(session, call(1, "abcde")), {
    kind: "Invalid Arguments",
    message: "argument 2: string of 5 characters exceeds limit 4",
  });
  assert.throws(() => admit.admit(session, call([1, 2, 3])), {
    message: "argument 1: list of 3 items exceeds limit 2",
  });
  assert.throws(() => admit.admit(session, call([[[1]]])), {
    message: "argument 1: lists nested 3 deep exceed limit 2",
  });
});
