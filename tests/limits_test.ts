/**
 * One test per server limit, each against a real `rpc server` process started
 * from the repository's init.yaml with that limit set low. Every step checks
 * three things: the refusal itself, that the refusal is in the server's log,
 * and that the server still serves a normal call afterwards.
 *
 * Six servers start together, each with the limits of the steps it serves:
 * - sizes: `--max-frame-bytes 4096 --max-string 100 --max-list 10 --max-depth 3
 *   --max-calls-per-connection 2 --frame-timeout 1s`
 * - total: `--max-connections 3`
 * - perIp: `--max-connections-per-ip 2`
 * - idle: `--idle-timeout 1s`, alone: it would close the connections other
 *   steps hold, and race the frame timeout for a slow sender
 * - rate: `--rate 5 --burst 5`
 * - global: `--global-rate 5 --global-burst 5`
 *
 * Run: `deno test --allow-all tests/limits_test.ts`
 */

import assert from "node:assert/strict";
import type { RpcClient } from "../core/client/client.ts";
import { connect } from "../core/client/connect.ts";
import { RpcError } from "../core/errors.ts";
import {
  delay,
  describeResult,
  frame,
  INIT_YAML,
  messageFrame,
  RawConnection,
  type RawMessage,
  rpc,
  type ServerProcess,
  startServers,
  waitFor,
  withTimeout,
} from "./helpers.ts";

const MAX_FRAME_BYTES = 4096;

/** An `RPC-REQ` as c1 (one-shot style: the request names its client). */
function request(serial: number, rpc: string, args: unknown[]): Record<string, unknown> {
  return {
    type: "RPC-REQ",
    serial,
    value: { service: "service1", rpc, arguments: args, client: "c1" },
  };
}

/** Waits until the server's stderr matches `pattern`, and returns the matching line. */
async function logged(server: ServerProcess, pattern: RegExp): Promise<string> {
  return await waitFor(
    () => server.stderrText().split("\n").find((line) => pattern.test(line)),
    `${pattern} in the log of the server on port ${server.port}`,
  );
}

/** Connects as `as` (default c1), runs `use`, and closes. */
async function withClient<T>(
  server: ServerProcess,
  use: (client: RpcClient) => Promise<T>,
  as = "c1",
): Promise<T> {
  const client = await connect(server.address, { client: as, connectTimeoutMs: 5_000 });
  try {
    return await use(client);
  } finally {
    client.close();
  }
}

/** A normal call on a new connection succeeds. */
async function stillServes(server: ServerProcess, as = "c1"): Promise<void> {
  assert.ok(server.running(), "the server process is alive");
  await withClient(server, async (client) => {
    assert.deepEqual(await client.call("service1", "echo", ["still serving"]), ["still serving"]);
  }, as);
}

/** The failure of `promise`, which must be an RpcError of `kind` whose message matches. */
async function refusal(promise: Promise<unknown>, kind: string, message: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof RpcError, `expected an RpcError, got ${error}`);
    assert.equal(error.kind, kind, error.message);
    assert.match(error.message, message);
    return true;
  });
}

/** Asserts that a raw reply is an `RPC-EX` of `kind` whose message matches. */
function assertException(reply: RawMessage | null, kind: string, message: RegExp): void {
  assert.equal(reply?.type, "RPC-EX", JSON.stringify(reply));
  assert.equal(reply?.value["exception-type"], kind, JSON.stringify(reply));
  assert.match(reply?.value["exception-message"], message);
}

/**
 * Reads what is left on a connection until the server closes it (a reset
 * counts as closed: the server may close with our bytes unread). Throws if it
 * stays open past `ms`.
 */
async function untilClosed(raw: RawConnection, ms = 5_000): Promise<RawMessage[]> {
  try {
    return await raw.rest(ms);
  } catch (error) {
    if (error instanceof Deno.errors.ConnectionReset) return [];
    throw error;
  }
}

/** Nests `1` in `depth` lists: `[[[1]]]` for 3. */
function nested(depth: number): unknown {
  let value: unknown = 1;
  for (let i = 0; i < depth; i++) value = [value];
  return value;
}

Deno.test("limits: each refused, logged, and the server still serving", async (t) => {
  const servers = await startServers([
    {
      name: "s1",
      extraArgs: [
        "--max-frame-bytes",
        String(MAX_FRAME_BYTES),
        "--max-string",
        "100",
        "--max-list",
        "10",
        "--max-depth",
        "3",
        "--max-calls-per-connection",
        "2",
        "--frame-timeout",
        "1s",
      ],
    },
    // No slots kept for admins: a connection over the limit is refused at once, before it speaks.
    { name: "s1", extraArgs: ["--max-connections", "3", "--admin-reserve", "0"] },
    { name: "s1", extraArgs: ["--max-connections-per-ip", "2", "--admin-reserve", "0"] },
    { name: "s1", extraArgs: ["--idle-timeout", "1s"] },
    { name: "s1", extraArgs: ["--rate", "5", "--burst", "5"] },
    { name: "s1", extraArgs: ["--global-rate", "5", "--global-burst", "5"] },
  ]);
  const [sizes, total, perIp, idle, rate, global] = servers;
  try {
    await t.step("frame size: Frame Too Large, then the connection is closed", async () => {
      await using raw = await RawConnection.open(sizes.port);
      // A frame of exactly the limit is served (fields the server does not know are ignored).
      const atLimit = { ...request(1, "echo", ["at the limit"]), pad: "" };
      atLimit.pad = "p".repeat(MAX_FRAME_BYTES - JSON.stringify(atLimit).length);
      const body = JSON.stringify(atLimit);
      assert.equal(new TextEncoder().encode(body).length, MAX_FRAME_BYTES);
      await raw.write(frame(body));
      assert.deepEqual(await raw.next(), {
        type: "RPC-RES",
        serial: 1,
        value: { "return-values": ["at the limit"] },
      });
      // One byte more: only the length prefix goes out, since the server must refuse before
      // reading any body (and a body it never reads could reset the connection first).
      const over = frame("x".repeat(MAX_FRAME_BYTES + 1));
      await raw.write(over.subarray(0, 4));
      const reply = await raw.next();
      assertException(reply, "Frame Too Large", /length 4097 exceeds limit 4096/);
      assert.equal(reply?.serial, -1, "the reserved serial of errors about the connection");
      assert.deepEqual(await untilClosed(raw), [], "the connection is closed");
      await logged(sizes, /WARN .*Cannot accept frame: length 4097 exceeds limit 4096; closing/);
      await stillServes(sizes);
    });

    await t.step("a refusal that quotes more than a frame holds is cut short", async () => {
      // The reply would quote the type name, and be over the limit though the request is
      // not: it goes out cut short (this once ended the server), and the connection lives.
      // (Names cannot do this any more: they are at most 128 characters.)
      await using raw = await RawConnection.open(sizes.port);
      const type = "t".repeat(MAX_FRAME_BYTES - 200);
      const call = messageFrame({
        type: "RPC-REQ",
        serial: 1,
        value: { service: "service1", rpc: "echo", "argument-types": [type], client: "c1" },
      });
      assert.ok(call.length - 4 <= MAX_FRAME_BYTES);
      await raw.write(call);
      const reply = await raw.next();
      assertException(reply, "Invalid Arguments", /cut short: too large for a frame/);
      assert.equal(reply?.serial, 1);
      await raw.send(request(2, "echo", ["next"]));
      assert.deepEqual(await raw.next(), {
        type: "RPC-RES",
        serial: 2,
        value: { "return-values": ["next"] },
      });
      await logged(sizes, /Invalid Arguments: Bad argument-types: Cannot parse type "tttt/);
      await stillServes(sizes);
    });

    await t.step("string length: Invalid Arguments past --max-string", async () => {
      await withClient(sizes, async (client) => {
        const at = "s".repeat(100);
        assert.deepEqual(await client.call("service1", "echo", [at]), [at]);
        await refusal(
          client.call("service1", "echo", ["s".repeat(101)]),
          "Invalid Arguments",
          /argument 1: string of 101 characters exceeds limit 100/,
        );
        // Strings inside lists are measured too.
        await refusal(
          client.call("service1", "rpc2", [[1], ["s".repeat(101)]]),
          "Invalid Arguments",
          /argument 2: string of 101 characters exceeds limit 100/,
        );
        assert.deepEqual(await client.call("service1", "echo", ["same connection"]), [
          "same connection",
        ]);
      });
      await logged(
        sizes,
        /c1@127\.0\.0\.1:\d+ service1\.echo Invalid Arguments: argument 1: string of 101 characters exceeds limit 100/,
      );
      await stillServes(sizes);
    });

    await t.step("list length: Invalid Arguments past --max-list", async () => {
      const count = (n: number) => Array.from({ length: n }, (_, i) => i + 1);
      await withClient(sizes, async (client) => {
        assert.deepEqual(await client.call("service1", "add", [count(10)]), [55]);
        await refusal(
          client.call("service1", "add", [count(11)]),
          "Invalid Arguments",
          /argument 1: list of 11 items exceeds limit 10/,
        );
      });
      await logged(
        sizes,
        /service1\.add Invalid Arguments: argument 1: list of 11 items exceeds limit 10/,
      );
      await stillServes(sizes);
    });

    await t.step("nesting depth: Invalid Arguments past --max-depth", async () => {
      await using raw = await RawConnection.open(sizes.port);
      // Four lists deep, and far deeper (the check stops at the first level over the limit).
      await raw.send(request(1, "add", [nested(4)]));
      assertException(await raw.next(), "Invalid Arguments", /lists nested 4 deep exceed limit 3/);
      await raw.send(request(2, "add", [nested(60)]));
      assertException(await raw.next(), "Invalid Arguments", /lists nested 4 deep exceed limit 3/);
      // Deeper than any message may nest: refused by the protocol before any argument check.
      await raw.send(request(5, "add", [nested(500)]));
      assertException(await raw.next(), "Malformed Frame", /body nests 503 levels deep/);
      // Three deep is within the limit: refused only because add takes List[int].
      await raw.send(request(3, "add", [nested(3)]));
      const typed = await raw.next();
      assertException(typed, "Invalid Arguments", /Valid signatures/);
      assert.doesNotMatch(typed?.value["exception-message"], /nested/);
      await raw.send(request(4, "add", [[1, 2]]));
      assert.deepEqual(await raw.next(), {
        type: "RPC-RES",
        serial: 4,
        value: { "return-values": [3] },
      });
      await logged(sizes, /service1\.add Invalid Arguments: argument 1: lists nested 4 deep/);
      await stillServes(sizes);
    });

    await t.step("calls in flight per connection: the third is Rate Limited", async () => {
      await using raw = await RawConnection.open(sizes.port);
      // Five one-second sleeps in one write: two run, three are refused at once.
      await raw.write(
        new Uint8Array([1, 2, 3, 4, 5].flatMap((serial) => [
          ...messageFrame(request(serial, "sleep", [1])),
        ])),
      );
      await raw.closeWrite();
      const replies = await raw.rest(10_000);
      assert.equal(replies.length, 5, JSON.stringify(replies));
      const served = replies.filter((reply) => reply.type === "RPC-RES");
      const refused = replies.filter((reply) => reply.type === "RPC-EX");
      assert.deepEqual(served.map((reply) => reply.serial).sort(), [1, 2]);
      assert.deepEqual(served.map((reply) => reply.value["return-values"]), [
        ["slept 1s"],
        ["slept 1s"],
      ]);
      assert.deepEqual(refused.map((reply) => reply.serial).sort(), [3, 4, 5]);
      for (const reply of refused) {
        assertException(
          reply,
          "Rate Limited",
          /Too many calls in flight on this connection \(limit 2\)/,
        );
      }
      await logged(
        sizes,
        /service1\.sleep Rate Limited: Too many calls in flight on this connection \(limit 2\)/,
      );

      // Calls that share one serial count as what they are: one call in flight, the others
      // refused (one table entry for all of them once let every one run, past the limit).
      await using same = await RawConnection.open(sizes.port);
      await same.write(
        new Uint8Array([0, 1, 2, 3].flatMap(() => [...messageFrame(request(7, "sleep", [0.5]))])),
      );
      await same.closeWrite();
      const shared = await same.rest(10_000);
      assert.equal(shared.length, 4, JSON.stringify(shared));
      assert.deepEqual(shared.filter((reply) => reply.type === "RPC-RES"), [
        { type: "RPC-RES", serial: 7, value: { "return-values": ["slept 0.5s"] } },
      ]);
      for (const reply of shared.filter((reply) => reply.type === "RPC-EX")) {
        assertException(
          reply,
          "Malformed Frame",
          /Serial 7 is already in use by a call in flight on this connection/,
        );
        // Under serial 7 the refusal would pass for the answer to the call in flight.
        assert.equal(reply.serial, -1, "the reserved serial of errors about the connection");
      }
      await logged(sizes, /WARN .*: Serial 7 is already in use by a call in flight/);
      await stillServes(sizes);
    });

    await t.step("slow sender: a frame trickled byte by byte is cut off", async () => {
      const client = await connect(sizes.address, { client: "c1", connectTimeoutMs: 5_000 });
      let steady = true;
      let served = 0;
      const caller = (async () => {
        while (steady) {
          const [value] = await client.call("service1", "echo", [`m${served}`], {
            timeoutMs: 5_000,
          });
          assert.equal(value, `m${served}`);
          served++;
          await delay(20);
        }
      })();
      try {
        await using raw = await RawConnection.open(sizes.port);
        const whole = messageFrame(request(1, "echo", ["never finished"]));
        await raw.write(whole.subarray(0, 4));
        let open = true;
        let sent = 0;
        const trickle = (async () => {
          // One byte every 300 ms, never the whole frame; stop when the server has closed.
          for (let i = 4; open && i < whole.length - 1; i++) {
            await delay(300);
            if (!open) break;
            try {
              await raw.write(whole.subarray(i, i + 1));
              sent++;
            } catch {
              break;
            }
          }
        })();
        const rest = await untilClosed(raw, 8_000).finally(() => open = false);
        await trickle;
        assert.deepEqual(rest, [], "closed without a reply");
        assert.ok(sent >= 2, `the trickle went on for a while (${sent} bytes)`);
        await logged(
          sizes,
          /closing, a frame took longer than 1000 ms to arrive \(slow sender\)/,
        );
      } finally {
        steady = false;
        await withTimeout(caller, 10_000, "the steady caller").finally(() => client.close());
      }
      assert.ok(served > 0, "another client's calls went on meanwhile");
      await stillServes(sizes);
    });

    await t.step("max connections (total): the fourth is refused Unavailable", async () => {
      await limitConnections(total, 3, /the server has 3 connections \(limit 3\)/);
    });

    await t.step("max connections per IP: the third from 127.0.0.1 is refused", async () => {
      await limitConnections(perIp, 2, /127\.0\.0\.1 has 2 connections \(limit 2\)/);
    });

    await t.step("idle timeout: an idle connection is closed, a busy one is not", async () => {
      await using quiet = await RawConnection.open(idle.port);
      await using busy = await RawConnection.open(idle.port);
      // A call that outlasts the idle timeout: the connection is not idle while it runs.
      await busy.send(request(1, "sleep", [1.5]));
      const [quietRest, busyReply] = await Promise.all([
        untilClosed(quiet, 6_000),
        busy.next(6_000),
      ]);
      assert.deepEqual(quietRest, [], "the idle connection is closed without a reply");
      assert.deepEqual(busyReply, {
        type: "RPC-RES",
        serial: 1,
        value: { "return-values": ["slept 1.5s"] },
      });
      await logged(idle, /127\.0\.0\.1:\d+: closing, idle for 1000 ms/);
      await stillServes(idle);
    });

    await t.step(
      "rate per client: Rate Limited past the burst, exit 19 from rpc call",
      async () => {
        const clientLimit = /Client c1 is over its rate limit of 5 calls\/s \(burst 5\)/;
        await withClient(rate, async (client) => {
          const results = await Promise.allSettled(
            Array.from({ length: 30 }, (_, i) => client.call("service1", "echo", [`r${i}`])),
          );
          const served = results.filter((result) => result.status === "fulfilled").length;
          const failed = results.flatMap((result) =>
            result.status === "rejected" ? [result.reason] : []
          );
          assert.ok(served >= 5, `the burst of 5 is served (served ${served})`);
          assert.ok(failed.length > 0, "some of 30 quick calls are refused");
          for (const error of failed) {
            assert.ok(error instanceof RpcError);
            assert.equal(error.kind, "Rate Limited");
            assert.match(error.message, clientLimit);
          }
          // Another client has its own bucket.
          await withClient(rate, async (other) => {
            assert.deepEqual(await other.call("service1", "echo", ["c2 is fine"]), ["c2 is fine"]);
          }, "c2");
        });
        await logged(rate, /c1@127\.0\.0\.1:\d+ service1\.echo Rate Limited: Client c1 is over/);

        // Through `rpc call`: keep c1's bucket empty from another connection meanwhile. A token
        // comes back every 200 ms and is taken within about a millisecond, so a try may slip
        // through now and then: try up to three times.
        const hammer = await connect(rate.address, { client: "c1", connectTimeoutMs: 5_000 });
        let hammering = true;
        const loops = Array.from({ length: 8 }, async () => {
          while (hammering) {
            await hammer.call("service1", "echo", ["h"]).catch(() => {});
            await delay(5);
          }
        });
        let result;
        try {
          for (let attempt = 0; attempt < 3; attempt++) {
            result = await rpc([
              "call",
              "--config",
              INIT_YAML,
              "--as",
              "c1",
              rate.address,
              "service1",
              "echo",
              "x",
            ]);
            if (result.code !== 0) break;
          }
        } finally {
          hammering = false;
          await Promise.all(loops);
          hammer.close();
        }
        assert.equal(result!.code, 19, describeResult(result!));
        assert.match(result!.stderr, /^error: Rate Limited: Client c1 is over its rate limit/m);
        // The bucket fills again: c1 is served.
        await waitFor(
          () =>
            withClient(rate, (client) => client.call("service1", "echo", ["again"])).then(
              () => true,
              () => false,
            ),
          "c1 to be served again",
        );
        await stillServes(rate, "c2");
      },
    );

    await t.step("global rate: two clients share one bucket", async () => {
      const serverLimit = /Server is over its rate limit of 5 calls\/s/;
      const burst = (client: RpcClient, name: string) =>
        Promise.allSettled(
          Array.from({ length: 30 }, (_, i) => client.call("service1", "echo", [`${name}${i}`])),
        );
      await withClient(global, async (c1) => {
        await withClient(global, async (c2) => {
          // 60 calls at once against 5 a second over both: each client is refused some, with
          // the server's limit, though neither has a limit of its own.
          const [first, second] = await Promise.all([burst(c1, "a"), burst(c2, "b")]);
          const served = [...first, ...second].filter((result) => result.status === "fulfilled");
          assert.ok(served.length >= 5, `the burst of 5 is served (served ${served.length})`);
          for (const results of [first, second]) {
            const refused = results.flatMap((result) =>
              result.status === "rejected" ? [result.reason] : []
            );
            assert.ok(refused.length > 0, "each client is refused some calls");
            for (const error of refused) {
              assert.ok(error instanceof RpcError);
              assert.equal(error.kind, "Rate Limited");
              assert.match(error.message, serverLimit);
            }
          }
        }, "c2");
      });
      await logged(global, /c2@127\.0\.0\.1:\d+ service1\.echo Rate Limited: Server is over/);
      await waitFor(
        () => stillServes(global).then(() => true, () => false),
        "a normal call once the bucket refills",
      );
    });
  } finally {
    await Promise.all(servers.map((server) => server.stop()));
  }
});

/**
 * Holds `limit` connections open, checks that one more is refused with
 * `Unavailable` and logged, then that a connection is served again once one
 * of them closes.
 */
async function limitConnections(
  server: ServerProcess,
  limit: number,
  reason: RegExp,
): Promise<void> {
  const held: RawConnection[] = [];
  try {
    for (let i = 0; i < limit; i++) {
      const raw = await RawConnection.open(server.port);
      held.push(raw);
      // A reply proves the server has counted this connection.
      await raw.send({ type: "ADMIN", serial: 1, value: { op: "health" } });
      const health = await raw.next();
      assert.equal(health?.type, "ADMIN-RES", JSON.stringify(health));
      assert.equal(health?.value.connections, i + 1);
    }
    // One more, raw: an RPC-EX with the reserved serial -1, then end of stream.
    {
      await using extra = await RawConnection.open(server.port);
      const replies = await untilClosed(extra);
      assert.equal(replies.length, 1, JSON.stringify(replies));
      assertException(replies[0], "Unavailable", reason);
      assert.equal(replies[0].serial, -1);
    }
    // One more, through the client library: connect fails with the server's reason.
    await refusal(
      connect(server.address, { client: "c1", connectTimeoutMs: 5_000 }),
      "Unavailable",
      reason,
    );
    await logged(
      server,
      new RegExp(`WARN .*connection from 127\\.0\\.0\\.1:\\d+ refused: ${reason.source}`),
    );
    // The held connections still work.
    await held[0].send(request(2, "echo", ["held"]));
    assert.deepEqual(await held[0].next(), {
      type: "RPC-RES",
      serial: 2,
      value: { "return-values": ["held"] },
    });
    held.pop()!.close();
    // Once the server has seen the close, a new connection is served.
    const health = await waitFor(
      () =>
        withClient(server, async (client) => {
          assert.deepEqual(await client.call("service1", "echo", ["served"]), ["served"]);
          return await client.admin({ op: "health" }) as Record<string, number>;
        }).catch(() => undefined),
      "a normal call once a connection has closed",
    );
    assert.ok(health.connectionsRefused >= 2, JSON.stringify(health));
  } finally {
    for (const raw of held) raw.close();
  }
}
