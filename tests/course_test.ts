/**
 * The course's one-shot JSON form against real `rpc server` processes, on
 * the same port as the framed protocol: the reply's shape, string arguments,
 * the five course exceptions, identity by address, tenants, limits, the
 * slow-sender cut-off, malformed input, logging and audit. Then
 * `rpc call --wire course` against a course-style server written in Python
 * with raw sockets, and the errors of `rpc server` when it cannot listen.
 *
 * The raw clients here write bytes with node:net, which can bind a source
 * address, so a request can come from c1's address (127.0.0.1) or c2's
 * (127.0.0.2).
 *
 * Run: `deno test --allow-all tests/course_test.ts`
 */

import assert from "node:assert/strict";
import net from "node:net";
import { join } from "node:path";
import {
  describeResult,
  ROOT,
  rpc,
  type ServerProcess,
  startServers,
  waitFor,
  withTimeout,
  writeInitYaml,
} from "./helpers.ts";

const FIXTURES = join(ROOT, "tests", "fixtures", "course");

/** The procedures of the course's example, served by one server. */
const COURSE_RPCS = [
  { name: "rpc1", args: ["int", "str"], returns: ["str"], src: join(FIXTURES, "rpc1.py") },
  {
    name: "rpc2",
    args: ["List[int]", "List[str]"],
    returns: ["str"],
    src: join(FIXTURES, "rpc2.py"),
  },
  {
    name: "rpc3",
    args: ["float", "List[float]"],
    returns: ["str"],
    src: join(FIXTURES, "rpc3.py"),
  },
];

/** What one course-form exchange gave: the bytes before the server closed, parsed when JSON. */
interface Exchange {
  text: string;
  // deno-lint-ignore no-explicit-any
  reply: any;
  /** Whether the server closed the connection (rather than the exchange timing out). */
  closed: boolean;
}

/**
 * Connects (from `from`, when given), writes `bytes`, and reads until the
 * server closes, or `timeoutMs` passes (then `closed` is false).
 */
function exchange(
  port: number,
  bytes: string | Uint8Array,
  options: { from?: string; timeoutMs?: number; end?: boolean; pieces?: number } = {},
): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({
      host: "127.0.0.1",
      port,
      ...(options.from ? { localAddress: options.from } : {}),
    });
    const chunks: Uint8Array[] = [];
    let done = false;
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      const text = new TextDecoder().decode(
        chunks.reduce((all, chunk) => new Uint8Array([...all, ...chunk]), new Uint8Array()),
      );
      let reply: unknown;
      try {
        reply = JSON.parse(text);
      } catch {
        reply = undefined;
      }
      resolve({ text, reply, closed });
    };
    const timer = setTimeout(() => finish(false), options.timeoutMs ?? 15_000);
    socket.on("connect", async () => {
      const data = typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes;
      const pieces = options.pieces ?? 1;
      const size = Math.ceil(data.length / pieces);
      for (let start = 0; start < data.length; start += size) {
        // Apart in time, so that the server reads them apart.
        if (start > 0) await new Promise((resolve) => setTimeout(resolve, 50));
        socket.write(data.subarray(start, start + size));
      }
      if (options.end) socket.end();
    });
    socket.on("data", (chunk: Uint8Array) => chunks.push(chunk));
    socket.on("end", () => finish(true));
    socket.on("close", () => finish(true));
    socket.on("error", (error: Error & { code?: string }) => {
      // A reset after the reply still ends the exchange; anything before connecting fails it.
      if (error.code === "ECONNRESET") finish(true);
      else if (!done) {
        done = true;
        clearTimeout(timer);
        reject(error);
      }
    });
  });
}

/** A course-form request for `rpc` of `service` with `args` (and optional types). */
function request(
  service: string,
  rpc: string,
  args: unknown[],
  types?: { args?: string[]; returns?: string[] },
  key: "type" | "header" = "type",
): string {
  return JSON.stringify({
    [key]: "RPC-REQ",
    value: {
      service,
      rpc,
      arguments: args,
      ...(types?.args ? { "argument-types": types.args } : {}),
      ...(types?.returns ? { "return-types": types.returns } : {}),
    },
  });
}

/** Asserts an exchange was answered RPC-EX of `kind` (message matching) and closed. */
function assertException(result: Exchange, kind: string, message: RegExp, key = "type"): void {
  assert.ok(result.closed, `the server closed the connection; got ${result.text}`);
  assert.equal(result.reply?.[key], "RPC-EX", result.text);
  assert.equal(result.reply.value["exception-type"], kind, result.text);
  assert.match(result.reply.value["exception-message"], message);
}

/** Waits until the server's stderr has a line matching `pattern`. */
async function logged(server: ServerProcess, pattern: RegExp): Promise<string> {
  return await waitFor(
    () => server.stderrText().split("\n").find((line) => pattern.test(line)),
    `${pattern} in the log of the server on port ${server.port}`,
    15_000,
  );
}

Deno.test("course form: served on the framed port by the server's own rules", async (t) => {
  await using config = await writeInitYaml({
    servers: { s1: { ip: "127.0.0.1", port: 8181 } }, // started with --port 0
    clients: { c1: { ip: "127.0.0.1" }, c2: { ip: "127.0.0.2" } },
    services: {
      service1: { providers: ["s1"], tenants: ["c1", "c2"], rpcs: ["rpc1", "rpc2"] },
      service2: { providers: ["s1"], tenants: ["c2"], rpcs: ["rpc3"] },
    },
    rpcs: COURSE_RPCS,
  });
  const audit = join(config.dir, "audit.jsonl");
  const [server, rated] = await startServers([
    {
      config: config.path,
      name: "s1",
      extraArgs: [
        "--max-frame-bytes",
        "4096",
        "--max-string",
        "100",
        "--frame-timeout",
        "1s",
        "--max-int-digits",
        "30",
        "--audit-log",
        audit,
      ],
    },
    { config: config.path, name: "s1", extraArgs: ["--rate", "1", "--burst", "1"] },
  ]);
  try {
    await t.step(
      "a request is answered in the course form, then the connection closes",
      async () => {
        const result = await exchange(
          server.port,
          request("service1", "rpc1", [3, "ab"], { args: ["int", "str"], returns: ["str"] }),
        );
        assert.ok(result.closed, "closed after the reply");
        assert.deepEqual(result.reply, { type: "RPC-RES", value: { "return values": ["ababab"] } });
        // Identified by its address, as a framed client that names nobody would be.
        await logged(server, /INFO {2}c1@127\.0\.0\.1:\d+ service1\.rpc1\(int, str\) ok/);
      },
    );

    await t.step("header for type, and arguments sent as strings", async () => {
      const rpc1 = await exchange(
        server.port,
        request("service1", "rpc1", ["3", "ab"], { args: ["int", "str"] }, "header"),
      );
      assert.deepEqual(rpc1.reply, { header: "RPC-RES", value: { "return values": ["ababab"] } });
      // A request that arrives in several reads is put together.
      const split = await exchange(
        server.port,
        request("service1", "rpc1", [4, "ab"], { args: ["int", "str"] }),
        { pieces: 3 },
      );
      assert.deepEqual(split.reply, { type: "RPC-RES", value: { "return values": ["abababab"] } });
      // What Python's str() makes of lists, and a comma-separated list.
      const rpc2 = await exchange(
        server.port,
        request("service1", "rpc2", ["[1, 2]", "['x', \"y's z\"]"], {
          args: ["List[int]", "List[str]"],
          returns: ["str"],
        }),
      );
      assert.deepEqual(rpc2.reply?.value, { "return values": ["1=x, 2=y's z"] });
      const rpc3 = await exchange(
        server.port,
        request("service2", "rpc3", ["2.5", "1.5,2.5"], { args: ["float", "List[float]"] }),
        { from: "127.0.0.2" },
      );
      assert.deepEqual(rpc3.reply?.value, { "return values": ["5.00"] });
      await logged(server, /c2@127\.0\.0\.2:\d+ service2\.rpc3\(float, List\[float\]\) ok/);
    });

    await t.step("the five course exceptions, by their exact names", async () => {
      assertException(
        await exchange(
          server.port,
          request("service2", "rpc3", [2, []], { args: ["float", "List[float]"] }),
          { from: "127.0.0.2" },
        ),
        "Execution Exception",
        /rpc3 needs at least one value to average/,
      );
      assertException(
        await exchange(
          server.port,
          request("service1", "rpc1", ["x", "ab"], {
            args: ["int", "str"],
          }),
        ),
        "Invalid Arguments",
        /expected int, got the string "x"\. Valid signatures: rpc1\(int, str\) -> str/,
      );
      assertException(
        await exchange(
          server.port,
          request("service1", "rpc1", [1, "a"], {
            args: ["int", "str"],
            returns: ["int"],
          }),
        ),
        "Invalid Arguments",
        /rpc1\(int, str\) -> str/,
      );
      assertException(
        await exchange(server.port, request("service9", "rpc1", [1, "a"])),
        "Service Not Found",
        /service9/,
      );
      assertException(
        await exchange(server.port, request("service1", "rpc9", [1, "a"])),
        "RPC Not Found",
        /rpc9/,
      );
      // c1 (by its address) is not a tenant of service2.
      assertException(
        await exchange(server.port, request("service2", "rpc3", [1, [1]])),
        "Client Not Registered",
        /Client c1 is not registered for service service2 and may not use it/,
      );
      await logged(server, /WARN {2}c1@127\.0\.0\.1:\d+ service2\.rpc3 Client Not Registered/);
      // The same calls are in the audit log, with their outcome.
      const lines = await waitFor(
        async () => {
          const text = await Deno.readTextFile(audit).catch(() => "");
          const records = text.trim().split("\n").filter(Boolean).map((line) => JSON.parse(line));
          return records.some((record) => record.outcome === "Client Not Registered") && records;
        },
        "the refused call in the audit log",
        15_000,
      );
      assert.ok(
        lines.some((record) =>
          record.client === "c2" && record.rpc === "rpc3" &&
          record.outcome === "Execution Exception"
        ),
        "the failed call is audited with its client",
      );
    });

    await t.step("limits: string length, message size and rate, as for frames", async () => {
      assertException(
        await exchange(
          server.port,
          request("service1", "rpc1", [1, "s".repeat(101)], { args: ["int", "str"] }),
        ),
        "Invalid Arguments",
        /101.*limit 100|limit 100.*101/,
      );
      // Integers are bounded in digits, in JSON and in strings decoded as int alike.
      const digits = "9".repeat(40);
      assertException(
        await exchange(
          server.port,
          `{"type": "RPC-REQ", "value": {"service": "service1", "rpc": "rpc1", "arguments": [${digits}, "a"]}}`,
        ),
        "Malformed Frame",
        /integer of 40 digits exceeds limit 30/,
      );
      assertException(
        await exchange(
          server.port,
          request("service1", "rpc1", [digits, "a"], { args: ["int", "str"] }),
        ),
        "Invalid Arguments",
        /expected int, got the string/,
      );
      const big = request("service1", "rpc1", [1, "b".repeat(5000)]);
      assertException(
        await exchange(server.port, big),
        "Frame Too Large",
        /more than 4096 bytes/,
      );
      await logged(server, /more than 4096 bytes \(the frame limit\); closing/);
      const first = await exchange(rated.port, request("service1", "rpc1", [1, "a"]));
      assert.deepEqual(first.reply?.value, { "return values": ["a"] });
      assertException(
        await exchange(rated.port, request("service1", "rpc1", [1, "a"])),
        "Rate Limited",
        /.+/,
      );
    });

    await t.step("a request that never completes is cut off as a slow sender", async () => {
      const result = await exchange(
        server.port,
        '{"type": "RPC-REQ", "value": {"service": "service1", "rpc": "rp',
        { timeoutMs: 20_000 },
      );
      assert.ok(result.closed, "the server closed the connection before the test gave up");
      assert.equal(result.text, "", "nothing was answered");
      await logged(server, /closing, a frame took longer than 1000 ms to arrive \(slow sender\)/);
    });

    await t.step("malformed messages get RPC-EX; the server goes on serving", async () => {
      assertException(
        await exchange(server.port, "{not json at all}"),
        "Malformed Frame",
        /Cannot decode course message: not JSON/,
      );
      assertException(
        await exchange(server.port, '{"type": "LIST", "value": {}}'),
        "Malformed Frame",
        /the course form carries one RPC-REQ, not "LIST"/,
      );
      assertException(
        await exchange(server.port, '{"value": {"service": "service1"}}'),
        "Malformed Frame",
        /no message type/,
      );
      assertException(
        await exchange(server.port, '{"header": "RPC-REQ", "value": {"rpc": "rpc1"}}'),
        "Malformed Frame",
        /RPC-REQ needs a service name/,
        "header",
      );
      assertException(
        await exchange(server.port, new Uint8Array([0x7b, 0x22, 0xff, 0x22, 0x7d])),
        "Malformed Frame",
        /not valid UTF-8/,
      );
      await logged(server, /sent a malformed frame: Cannot decode course message: not JSON/);
      // A client that closes its side inside the value is answered, and the connection closed.
      assertException(
        await exchange(server.port, '{"type": "RPC-REQ", "value": {', { end: true }),
        "Malformed Frame",
        /stream ended after 30 bytes, inside a JSON value/,
      );
      // Both forms on the one port, as before.
      const framed = await rpc([
        "call",
        "--config",
        config.path,
        "--as",
        "c1",
        server.address,
        "service1",
        "rpc1",
        "2",
        "ok",
      ]);
      assert.equal(framed.code, 0, describeResult(framed));
      assert.equal(framed.stdout, "okok\n");
      const course = await exchange(server.port, request("service1", "rpc1", [2, "ok"]));
      assert.deepEqual(course.reply?.value, { "return values": ["okok"] });
      assert.ok(server.running());
    });
  } finally {
    await Promise.all([server.stop(), rated.stop()]);
  }
});

Deno.test("--max-frame-bytes stops below 0x7B000000, so a frame never begins with {", async () => {
  const stateDir = await Deno.makeTempDir({ prefix: "rpc-course-check-" });
  try {
    const check = (bytes: number) =>
      rpc([
        "server",
        "--check",
        "--insecure",
        "--state-dir",
        stateDir,
        "--max-frame-bytes",
        String(bytes),
      ]);
    const over = await check(0x7b000000);
    assert.equal(over.code, 2, describeResult(over));
    assert.match(
      over.stderr,
      /--max-frame-bytes: Cannot use frame limit 2063597568: the largest is 2063597567 .*begin with "\{"/,
    );
    const largest = await check(0x7affffff);
    assert.equal(largest.code, 0, describeResult(largest));
  } finally {
    await Deno.remove(stateDir, { recursive: true });
  }
});

Deno.test("rpc server names the address or port it cannot bind, and the flag", async () => {
  // 192.0.2.1 is TEST-NET-1: never an address of this machine. Binding it sends nothing.
  await using config = await writeInitYaml({
    servers: { s1: { ip: "192.0.2.1", port: 8181 } },
    clients: {},
    services: { service1: { providers: ["s1"], rpcs: [] } },
  });
  const stateDir = await Deno.makeTempDir({ prefix: "rpc-course-bind-" });
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (taken.addr as Deno.NetAddr).port;
  try {
    const env = { RPC_STATE_DIR: stateDir };
    const fromFile = await rpc(["server", "--config", config.path, "--name", "s1"], { env });
    assert.equal(fromFile.code, 3, describeResult(fromFile));
    assert.match(
      fromFile.stderr,
      /error: Unavailable: Cannot listen on 192\.0\.2\.1:8181: 192\.0\.2\.1 is not an address of this machine \(set by server s1's ip in .*init\.yaml\); bind another with --host/,
    );
    const fromFlag = await rpc(["server", "--host", "192.0.2.1", "--port", "0"], { env });
    assert.equal(fromFlag.code, 3, describeResult(fromFlag));
    assert.match(
      fromFlag.stderr,
      /192\.0\.2\.1 is not an address of this machine \(set by --host\)/,
    );
    const inUse = await rpc(["server", "--port", String(port)], { env });
    assert.equal(inUse.code, 3, describeResult(inUse));
    assert.match(
      inUse.stderr,
      new RegExp(
        `Cannot listen on 127\\.0\\.0\\.1:${port}: port ${port} is in use \\(set by --port\\); choose another with --port`,
      ),
    );
  } finally {
    taken.close();
    await Deno.remove(stateDir, { recursive: true });
  }
});

/** A course-style Python server (raw sockets), on a free port. */
async function startCourseServer(): Promise<{ port: number; stop(): Promise<void> }> {
  const child = new Deno.Command("python3", {
    args: [join(FIXTURES, "course_server.py")],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch {
      // Already gone.
    }
    await reader.cancel().catch(() => {});
    await child.status;
  };
  try {
    let text = "";
    while (!text.includes("\n")) {
      const { value, done } = await withTimeout(reader.read(), 15_000, "the course server's port");
      if (done) throw new Error("The course server exited before printing its port");
      text += value;
    }
    return { port: Number(text.trim()), stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

Deno.test("rpc call --wire course calls a server that speaks only the course form", async () => {
  const course = await startCourseServer();
  // Declares the signatures, so rpc call knows the types; the server is given as host:port.
  await using config = await writeInitYaml({
    servers: { s1: { ip: "127.0.0.1", port: course.port } },
    clients: {},
    services: {
      service1: { providers: ["s1"], rpcs: ["rpc1", "rpc2"] },
      service2: { providers: ["s1"], rpcs: ["rpc3"] },
    },
    rpcs: COURSE_RPCS,
  });
  const address = `127.0.0.1:${course.port}`;
  const emptyDir = await Deno.makeTempDir({ prefix: "rpc-course-cwd-" });
  const call = (...args: string[]) => rpc(["call", "--wire", "course", ...args]);
  try {
    const typed = await call("--types", "int,str", address, "service1", "rpc1", "3", "ab");
    assert.equal(typed.code, 0, describeResult(typed));
    assert.equal(typed.stdout, "ababab\n");
    const fromFile = await call(
      "--config",
      config.path,
      "--json",
      "s1",
      "service1",
      "rpc2",
      "1,2",
      '["a","b c"]',
    );
    assert.equal(fromFile.code, 0, describeResult(fromFile));
    assert.deepEqual(JSON.parse(fromFile.stdout), { "return-values": ["1=a, 2=b c"] });
    const failed = await call("--config", config.path, "s1", "service2", "rpc3", "2", "");
    assert.equal(failed.code, 10, describeResult(failed));
    assert.match(failed.stderr, /error: Execution Exception: rpc3 needs at least one value/);
    const unknown = await call("--types", "int", address, "service1", "rpc9", "1");
    assert.equal(unknown.code, 13, describeResult(unknown));
    assert.match(unknown.stderr, /error: RPC Not Found/);
    const unreadable = await call("--config", config.path, "s1", "service1", "rpc1", "x", "y");
    assert.equal(unreadable.code, 11, describeResult(unreadable));
    assert.match(
      unreadable.stderr,
      /error: Invalid Arguments: argument 1: Cannot read "x" as int\. Valid signatures: rpc1\(int, str\) -> str/,
    );
    // From a directory with no init.yaml to take the types from.
    const untyped = await rpc(
      ["call", "--wire", "course", address, "service1", "rpc1", "3", "ab"],
      {
        cwd: emptyDir,
      },
    );
    assert.equal(untyped.code, 2, describeResult(untyped));
    assert.match(untyped.stderr, /--wire course needs the argument types of service1\.rpc1/);
  } finally {
    await course.stop();
    await Deno.remove(emptyDir, { recursive: true });
  }
  const gone = await call("--types", "int,str", address, "service1", "rpc1", "3", "ab");
  assert.equal(gone.code, 3, describeResult(gone));
  assert.match(gone.stderr, /error: Unavailable: Cannot connect to 127\.0\.0\.1:\d+/);
});
