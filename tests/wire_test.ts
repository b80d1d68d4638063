/**
 * The server's wire handling under attack, against real `rpc server`
 * processes over raw sockets: integers of any size read exactly, integers too
 * long to read cheaply refused before they stall anyone, names bounded, a
 * reserved serial for errors about the connection, deep nesting answered
 * instead of dropping the connection, and backpressure on clients that never
 * read their replies.
 *
 * Run: `deno test --allow-all tests/wire_test.ts`
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
  startServer,
  waitFor,
  withTimeout,
  writeInitYaml,
} from "./helpers.ts";

/** The reserved serial of errors about the connection (docs/protocol.md). */
const CONNECTION_SERIAL = -1;

/** An `RPC-REQ` as c1, one-shot style: the request names its client. */
function request(serial: number, rpc: string, args: unknown[]): Record<string, unknown> {
  return {
    type: "RPC-REQ",
    serial,
    value: { service: "service1", rpc, arguments: args, client: "c1" },
  };
}

/** Asserts that a raw reply is an `RPC-EX` of `kind` whose message matches. */
function assertException(reply: RawMessage | null, kind: string, message: RegExp): void {
  assert.equal(reply?.type, "RPC-EX", JSON.stringify(reply)?.slice(0, 500));
  assert.equal(reply?.value["exception-type"], kind, JSON.stringify(reply)?.slice(0, 500));
  assert.match(reply?.value["exception-message"], message);
}

/** Waits until the server's stderr matches `pattern`, and returns the matching line. */
async function logged(server: ServerProcess, pattern: RegExp, ms = 30_000): Promise<string> {
  return await waitFor(
    () => server.stderrText().split("\n").find((line) => pattern.test(line)),
    `${pattern} in the log of the server on port ${server.port}`,
    ms,
  );
}

async function withClient<T>(
  server: ServerProcess,
  use: (client: RpcClient) => Promise<T>,
  as = "c1",
): Promise<T> {
  const client = await connect(server.address, { client: as, connectTimeoutMs: 10_000 });
  try {
    return await use(client);
  } finally {
    client.close();
  }
}

/** A normal call on a new connection succeeds. */
async function stillServes(server: ServerProcess): Promise<void> {
  assert.ok(server.running(), "the server process is alive");
  await withClient(server, async (client) => {
    assert.deepEqual(await client.call("service1", "echo", ["still serving"]), ["still serving"]);
  });
}

/** The `value` of a reply body, with every integer read exactly from its digits. */
function exactValue(text: string): { serial: number; value: Record<string, unknown> } {
  return JSON.parse(
    text,
    (_key, value, context?: { source?: string }) =>
      typeof value === "number" && context?.source && /^-?\d+$/.test(context.source) &&
        !Number.isSafeInteger(value)
        ? BigInt(context.source)
        : value,
  );
}

/** A procedure that adds two ints of any size exactly (safe ones arrive as numbers). */
const PLUS = `export function plus(a: number | bigint, b: number | bigint): bigint {
  return BigInt(a) + BigInt(b);
}
`;

/** An `RPC-REQ` body calling exact.plus(a, b) as c1, with the integers written as digits. */
function plus(serial: number, a: bigint, b: bigint): Uint8Array {
  return frame(
    `{"type":"RPC-REQ","serial":${serial},"value":{"service":"exact","rpc":"plus",` +
      `"arguments":[${a},${b}],"client":"c1"}}`,
  );
}

Deno.test("wire: integers, names, serials and nesting against a real server", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "rpc-wire-" });
  const audit = `${dir}/audit.jsonl`;
  await using config = await writeInitYaml({
    base: INIT_YAML,
    services: { exact: { providers: ["s1"], rpcs: ["plus"] } },
    rpcs: [{ name: "plus", args: ["int", "int"], returns: ["int"], src: "plus.ts" }],
    files: { "plus.ts": PLUS },
  });
  const server = await startServer({
    name: "s1",
    config: config.path,
    extraArgs: ["--audit-log", audit],
  });
  try {
    await t.step("an int of 310 digits is read exactly, alone or not", async () => {
      // 10^309 does not fit a double: read as a number it is Infinity.
      const big = 10n ** 309n;
      await using raw = await RawConnection.open(server.port);
      await raw.write(plus(1, big, 1n));
      assert.deepEqual(exactValue((await raw.nextText())!).value, {
        "return-values": [big + 1n],
      });
      // Next to a smaller unsafe integer, as before.
      await raw.write(plus(2, big, 9007199254740993n));
      assert.deepEqual(exactValue((await raw.nextText())!).value, {
        "return-values": [big + 9007199254740993n],
      });
      // At the digit limit (4300, Python's own), still exact.
      const longest = 10n ** 4299n;
      await raw.write(plus(3, longest, -1n));
      assert.deepEqual(exactValue((await raw.nextText())!).value, {
        "return-values": [longest - 1n],
      });
    });

    await t.step("rpc call passes an int of 400 digits both ways", async () => {
      const big = 10n ** 400n;
      const result = await rpc([
        "call",
        "--as",
        "c1",
        server.address,
        "exact",
        "plus",
        String(big),
        "--",
        "-1",
      ]);
      assert.equal(result.code, 0, describeResult(result));
      assert.equal(result.stdout.trim(), String(big - 1n));
    });

    await t.step("integers too long are refused after the target is checked", async () => {
      // Just under the 8 MiB frame limit: one integer of about 8 million digits.
      const digits = 8_000_000;
      const hugeCall = (serial: number, service: string, client?: string) =>
        frame(
          `{"type":"RPC-REQ","serial":${serial},"value":{"service":"${service}","rpc":"add",` +
            `"arguments":[${"7".repeat(digits)},1]${client ? `,"client":"${client}"` : ""}}}`,
        );
      // A client calls while the flood goes on: every one of its calls succeeds.
      const caller = await connect(server.address, { client: "c1", connectTimeoutMs: 10_000 });
      let flooding = true;
      let served = 0;
      const calling = (async () => {
        while (flooding) {
          const [echoed] = await caller.call("service1", "echo", [`call ${served}`], {
            timeoutMs: 60_000,
          });
          assert.equal(echoed, `call ${served}`);
          served++;
        }
      })();
      try {
        // No login, a service that does not exist: refused by name, before the digits are read.
        await using anonymous = await RawConnection.open(server.port);
        for (let serial = 1; serial <= 5; serial++) {
          await anonymous.write(hugeCall(serial, "nosuch"));
        }
        for (let serial = 1; serial <= 5; serial++) {
          const reply = await anonymous.next(60_000);
          assert.equal(reply?.serial, serial);
          assertException(
            reply,
            "Service Not Found",
            /^This server does not provide service nosuch$/,
          );
        }
        // Anonymous, to a service with tenants: refused as no tenant, again before reading.
        await anonymous.write(hugeCall(6, "service1"));
        assertException(await anonymous.next(60_000), "Client Not Registered", /anonymous/);
        // A tenant: the integer itself is refused, with its size and the limit.
        await using tenant = await RawConnection.open(server.port);
        await tenant.write(hugeCall(7, "service1", "c1"));
        const refused = await tenant.next(60_000);
        assert.equal(refused?.serial, 7);
        assertException(
          refused,
          "Invalid Arguments",
          new RegExp(`^Cannot read arguments: integer of ${digits} digits exceeds limit 4300$`),
        );
        // The same integer in any other message: Malformed Frame under the message's serial.
        await tenant.write(
          frame(`{"type":"ADMIN","serial":8,"value":{"op":"health","n":${"7".repeat(5000)}}}`),
        );
        const admin = await tenant.next(60_000);
        assert.equal(admin?.serial, 8);
        assertException(admin, "Malformed Frame", /integer of 5000 digits exceeds limit 4300/);
        // The connection goes on.
        await tenant.send(request(9, "echo", ["after"]));
        assert.deepEqual((await tenant.next(60_000))?.value, { "return-values": ["after"] });
      } finally {
        flooding = false;
        await calling.finally(() => caller.close());
      }
      assert.ok(served > 0, "the other client's calls were served during the flood");
      await logged(server, /add Invalid Arguments: Cannot read arguments: integer of 8000000/);
      await stillServes(server);
    });

    await t.step("names are bounded and checked, and what is logged is cut", async () => {
      const before = server.stderrText().length;
      const auditBefore = (await Deno.stat(audit)).size;
      const long = "n".repeat(1024 * 1024);
      await using raw = await RawConnection.open(server.port);
      await raw.send({
        type: "RPC-REQ",
        serial: 1,
        value: { service: long, rpc: "echo", arguments: ["x"], client: "c1" },
      });
      assertException(
        await raw.next(),
        "Malformed Frame",
        /^Cannot decode message: RPC-REQ service name of 1048576 characters exceeds limit 128$/,
      );
      await raw.send({
        type: "RPC-REQ",
        serial: 2,
        value: { service: "service1", rpc: long, arguments: ["x"], client: "c1" },
      });
      assertException(await raw.next(), "Malformed Frame", /RPC-REQ rpc name of 1048576/);
      await raw.send({
        type: "RPC-REQ",
        serial: 3,
        value: { service: "service1", rpc: "echo", arguments: ["x"], client: long },
      });
      assertException(await raw.next(), "Malformed Frame", /RPC-REQ client name of 1048576/);
      await raw.send({ type: "ADMIN", serial: 4, value: { op: long } });
      assertException(await raw.next(), "Malformed Frame", /ADMIN op name of 1048576/);
      // A name that would forge a log line: refused, and quoted with its line break escaped.
      const forged = "c1\n2026-01-01T00:00:00.000Z INFO  forged line";
      await raw.send({ type: "HELLO", serial: 5, value: { versions: [1], client: forged } });
      const hello = await raw.next();
      assert.equal(hello?.serial, 5);
      assertException(
        hello,
        "Malformed Frame",
        /HELLO client name "c1\\n2026-01-01T00:00:00\.000Z INFO {2}forged…" may hold only letters, digits and _ \. - @ :/,
      );
      // The connection still serves a good name.
      await raw.send(request(6, "echo", ["fine"]));
      assert.deepEqual((await raw.next())?.value, { "return-values": ["fine"] });
      await logged(server, /sent a malformed frame: .*HELLO client name "c1\\n/);
      const added = server.stderrText().slice(before);
      assert.ok(added.length < 20_000, `the log grew by ${added.length} characters`);
      assert.ok(
        !added.split("\n").some((line) =>
          line.includes("forged line") && !line.includes("malformed")
        ),
      );
      // Nothing of these reached the audit log as a call.
      const auditAdded = (await Deno.stat(audit)).size - auditBefore;
      assert.ok(auditAdded < 20_000, `the audit log grew by ${auditAdded} bytes`);
    });

    await t.step("what a refusal quotes from a request is cut in the log", async () => {
      const before = server.stderrText().length;
      await using raw = await RawConnection.open(server.port);
      // Type names are not names: one of a megabyte is refused, and quoted back, but the log
      // keeps only the start of it.
      const type = `List[${" ".repeat(1024 * 1024)}int]`;
      await raw.send({
        type: "RPC-REQ",
        serial: 1,
        value: {
          service: "service1",
          rpc: "echo",
          arguments: ["x"],
          "argument-types": [type],
          client: "c1",
        },
      });
      const reply = await raw.next();
      assert.equal(reply?.serial, 1);
      assert.equal(reply?.value["exception-type"], "Invalid Arguments");
      await logged(server, /service1\.echo\(List\[ +… \(\d+ characters\)\) Invalid Arguments/);
      const added = server.stderrText().slice(before);
      assert.ok(added.length < 20_000, `the log grew by ${added.length} characters`);
    });

    await t.step("errors about the connection carry the reserved serial", async () => {
      await using raw = await RawConnection.open(server.port);
      await raw.send({ type: "HELLO", serial: 0, value: { versions: [1], client: "c1" } });
      assert.equal((await raw.next())?.type, "HELLO");
      // Call 0 is in flight for a second.
      await raw.send({
        type: "RPC-REQ",
        serial: 0,
        value: { service: "service1", rpc: "sleep", arguments: [1.0] },
      });
      // A frame that is not JSON cannot name its request: the reply must not look like call 0's.
      await raw.write(frame("{not json"));
      const unreadable = await raw.next();
      assert.equal(unreadable?.serial, CONNECTION_SERIAL);
      assertException(unreadable, "Malformed Frame", /body is not JSON/);
      // A second call under serial 0: refused, and not under serial 0 either.
      await raw.send({
        type: "RPC-REQ",
        serial: 0,
        value: { service: "service1", rpc: "echo", arguments: ["imposter"] },
      });
      const duplicate = await raw.next();
      assert.equal(duplicate?.serial, CONNECTION_SERIAL);
      assertException(
        duplicate,
        "Malformed Frame",
        /^Serial 0 is already in use by a call in flight on this connection$/,
      );
      // A malformed request whose serial is free is answered under that serial.
      await raw.send({ type: "RPC-REQ", serial: 7, value: { service: "service1" } });
      const own = await raw.next();
      assert.equal(own?.serial, 7);
      assertException(own, "Malformed Frame", /RPC-REQ needs an rpc name/);
      // Call 0's own reply is still to come, and is the only one with serial 0.
      const slept = await raw.next(30_000);
      assert.equal(slept?.serial, 0);
      assert.equal(slept?.type, "RPC-RES", JSON.stringify(slept));
      await logged(server, /Serial 0 is already in use by a call in flight/);
    });

    await t.step("the client library fails its calls with a connection-level error", async () => {
      // A call too large for the server's frames: the server answers Frame Too Large under the
      // reserved serial and closes; the call fails with that, not with a bare lost connection.
      await withClient(server, async (client) => {
        await assert.rejects(
          client.call("service1", "echo", ["x".repeat(9 * 1024 * 1024)]),
          (error: unknown) => {
            assert.ok(error instanceof RpcError, String(error));
            assert.equal(error.kind, "Frame Too Large", error.message);
            assert.match(error.message, /exceeds limit 8388608/);
            return true;
          },
        );
      });
      await stillServes(server);
    });

    await t.step("a deeply nested HELLO is answered Malformed Frame and logged", async () => {
      await using raw = await RawConnection.open(server.port);
      const depth = 100_000;
      await raw.write(frame(
        `{"type":"HELLO","serial":0,"value":{"versions":${"[".repeat(depth)}1${
          "]".repeat(depth)
        },"client":"c1"}}`,
      ));
      const reply = await raw.next();
      assert.equal(reply?.serial, 0);
      assertException(
        reply,
        "Malformed Frame",
        new RegExp(
          `^Cannot decode message: body nests ${depth + 2} levels deep, over the limit of 64$`,
        ),
      );
      await logged(server, new RegExp(`sent a malformed frame: .*body nests ${depth + 2} levels`));
      // Shallow, but not a list of versions: refused the same way.
      await raw.send({ type: "HELLO", serial: 1, value: { versions: [[[1]]], client: "c1" } });
      assertException(await raw.next(), "Malformed Frame", /HELLO versions must be a list/);
      // The connection is still open and serves a proper handshake and call.
      await raw.send({ type: "HELLO", serial: 2, value: { versions: [1], client: "c1" } });
      assert.equal((await raw.next())?.type, "HELLO");
      await raw.send(request(3, "echo", ["after"]));
      assert.deepEqual((await raw.next())?.value, { "return-values": ["after"] });
    });
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

// ---------------------------------------------------------------------------
// Backpressure

/** Resident memory of a process, in bytes, from /proc/PID/status. */
async function residentBytes(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  assert.ok(match, "VmRSS in /proc/PID/status");
  return Number(match[1]) * 1024;
}

/**
 * Reads frames from a raw connection without keeping them: counts each
 * `RPC-RES` by serial and its body length. Only the head of each body is
 * decoded, so hundreds of megabytes pass through in constant memory.
 */
async function drainReplies(
  conn: Deno.TcpConn,
  expected: number,
  timeoutMs: number,
): Promise<Map<number, number>> {
  const seen = new Map<number, number>();
  const buffer = new Uint8Array(1024 * 1024);
  const header = new Uint8Array(4);
  let headerFill = 0;
  let bodyLeft = -1;
  let bodyLength = 0;
  let head = "";
  const decoder = new TextDecoder();
  const deadline = Date.now() + timeoutMs;
  while (seen.size < expected) {
    const count = await withTimeout(conn.read(buffer), deadline - Date.now(), "replies");
    if (count === null) break;
    let offset = 0;
    while (offset < count) {
      if (bodyLeft < 0) {
        header[headerFill++] = buffer[offset++];
        if (headerFill === 4) {
          bodyLength = new DataView(header.buffer).getUint32(0);
          bodyLeft = bodyLength;
          headerFill = 0;
          head = "";
        }
        continue;
      }
      const take = Math.min(bodyLeft, count - offset);
      if (head.length < 64) {
        head += decoder.decode(buffer.subarray(offset, offset + Math.min(take, 64)));
      }
      offset += take;
      bodyLeft -= take;
      if (bodyLeft === 0) {
        const match = /^\{"type":"RPC-RES","serial":(\d+),/.exec(head);
        assert.ok(match, `an RPC-RES, got ${head}`);
        const serial = Number(match[1]);
        assert.ok(!seen.has(serial), `serial ${serial} answered twice`);
        seen.set(serial, bodyLength);
        bodyLeft = -1;
      }
    }
  }
  return seen;
}

/** `count` calls of rpc1 that each return `bytes` characters, one frame after the other. */
function pipelined(count: number, bytes: number): Uint8Array {
  const frames = Array.from(
    { length: count },
    (_, i) => messageFrame(request(i + 1, "rpc1", [bytes, "x"])),
  );
  const out = new Uint8Array(frames.reduce((sum, item) => sum + item.length, 0));
  let offset = 0;
  for (const item of frames) {
    out.set(item, offset);
    offset += item.length;
  }
  return out;
}

Deno.test("wire: clients that never read their replies do not grow the server", async (t) => {
  const server = await startServer({ name: "s1" });
  const readers: RawConnection[] = [];
  try {
    const pid = server.process.pid;
    // Warm up: the sandbox that runs rpc1 is started, and has run it.
    await withClient(server, async (client) => {
      for (let i = 0; i < 3; i++) {
        assert.deepEqual(await client.call("service1", "rpc1", [1000, "w"]), ["w".repeat(1000)]);
      }
    });
    const baseline = await residentBytes(pid);
    // Two connections each send 1,000 calls that return 100 kB (in one write), and read nothing.
    const CONNECTIONS = 2;
    const CALLS = 1_000;
    const REPLY = 100_000;
    const requests = pipelined(CALLS, REPLY);
    for (let i = 0; i < CONNECTIONS; i++) {
      const raw = await RawConnection.open(server.port);
      readers.push(raw);
      await raw.write(requests);
    }
    // Wait until the server has done all it will with them: its counts stay put for 3 s.
    const health = () =>
      withClient(server, (client) => client.admin({ op: "health" })) as Promise<
        { callsServed: number; callsFailed: number; callsInFlight: number }
      >;
    let last = "";
    let steady = 0;
    await waitFor(
      async () => {
        const { callsServed, callsFailed, callsInFlight } = await health();
        const now = `${callsServed} ${callsFailed} ${callsInFlight}`;
        steady = now === last ? steady + 1 : 0;
        last = now;
        if (steady < 6) await delay(500);
        return steady >= 6;
      },
      "the server to stop serving the calls nobody reads",
      180_000,
    );
    const held = await residentBytes(pid);
    const grown = held - baseline;
    const { callsServed, callsInFlight } = await health();
    console.log(
      `  rss ${(baseline / 2 ** 20).toFixed(0)} MiB -> ${(held / 2 ** 20).toFixed(0)} MiB ` +
        `(+${(grown / 2 ** 20).toFixed(0)} MiB); served ${callsServed}, in flight ${callsInFlight}`,
    );

    await t.step("memory stays bounded while the replies wait", () => {
      // Unbounded, all 2,000 replies are held, with the buffers they are encoded in: the server
      // grew by over 700 MiB (measured before backpressure). Bounded, each connection holds its
      // 16 MiB of unsent replies and their buffers, and the sandboxes' heaps grow once: about
      // 150-190 MiB measured.
      assert.ok(
        grown < 350 * 2 ** 20,
        `the server grew by ${(grown / 2 ** 20).toFixed(0)} MiB for clients that read nothing`,
      );
      assert.ok(callsInFlight > 0, "calls wait while their clients read nothing");
    });

    await t.step("other clients' calls keep succeeding", async () => {
      await withClient(server, async (client) => {
        for (let i = 0; i < 20; i++) {
          assert.deepEqual(await client.call("service1", "echo", [`ok ${i}`]), [`ok ${i}`]);
        }
        // A large reply to a client that reads is served at once, too.
        const [big] = await client.call("service1", "rpc1", [1_000_000, "y"]) as string[];
        assert.equal(big.length, 1_000_000);
      });
    });

    await t.step("once the clients read, every reply arrives: nothing is lost", async () => {
      const answered = await Promise.all(
        readers.map((raw) => drainReplies(raw.conn, CALLS, 120_000)),
      );
      for (const seen of answered) {
        assert.equal(seen.size, CALLS);
        for (let serial = 1; serial <= CALLS; serial++) {
          assert.ok(seen.get(serial)! > REPLY, `serial ${serial} answered in full`);
        }
      }
    });
  } finally {
    for (const raw of readers) raw.close();
    await server.stop();
  }
});

Deno.test("wire: a connection whose client reads nothing for the idle timeout is closed", async () => {
  const server = await startServer({ name: "s1", extraArgs: ["--idle-timeout", "2s"] });
  try {
    await using raw = await RawConnection.open(server.port);
    await raw.write(pipelined(40, 1_000_000));
    await logged(
      server,
      /closing, its client read none of \d+ bytes of replies for 2000 ms/,
      60_000,
    );
    await stillServes(server);
  } finally {
    await server.stop();
  }
});

Deno.test("wire: --max-unsent-total holds clients with a backlog, and only them", async () => {
  // No bound per connection: only the total can hold the client that reads nothing.
  const server = await startServer({
    name: "s1",
    extraArgs: ["--max-unsent-bytes", "0", "--max-unsent-total", String(4 * 2 ** 20)],
  });
  try {
    await using raw = await RawConnection.open(server.port);
    await raw.write(pipelined(300, 100_000));
    const health = () =>
      withClient(server, (client) => client.admin({ op: "health" })) as Promise<
        { callsServed: number; callsInFlight: number }
      >;
    let last = "";
    let steady = 0;
    const settled = await waitFor(
      async () => {
        const now = await health();
        const key = `${now.callsServed} ${now.callsInFlight}`;
        steady = key === last ? steady + 1 : 0;
        last = key;
        if (steady < 6) await delay(500);
        return steady >= 6 && now;
      },
      "the server to stop serving the calls nobody reads",
      120_000,
    );
    // 30 MB of replies would be served without the bound; 4 MiB (plus what the kernel's socket
    // buffers take) is about 40 to 100 of them.
    assert.ok(settled.callsServed < 200, `served ${settled.callsServed} of 300`);
    assert.ok(settled.callsInFlight > 0, "the rest wait");
    await withClient(server, async (client) => {
      for (let i = 0; i < 5; i++) {
        const [text] = await client.call("service1", "rpc1", [100_000, "z"]) as string[];
        assert.equal(text.length, 100_000, "a client that reads is served, big replies too");
      }
    });
    const answered = await drainReplies(raw.conn, 300, 120_000);
    assert.equal(answered.size, 300, "every reply arrives once the client reads");
  } finally {
    await server.stop();
  }
});
