/**
 * Streaming procedures end to end: partial results reach `rpc call` and the
 * library as they are produced; cancelling or disconnecting stops the
 * generator, in a sandbox, inline, and in Python.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { connect } from "../core/client/connect.ts";
import { RpcError } from "../core/errors.ts";
import {
  describeResult,
  RawConnection,
  rpc,
  rpcArgv,
  startServer,
  waitFor,
  writeInitYaml,
} from "./helpers.ts";

/** A TypeScript countdown that records, in `marks`, each value it yields and that it was stopped. */
function countdown(name: string, marks: string): string {
  return `
export async function* ${name}(n: number) {
  try {
    for (let i = n; i > 0; i--) {
      await Deno.writeTextFile(${JSON.stringify(marks)}, "yield " + i + "\\n", { append: true });
      yield i;
      await new Promise((resolve) => setTimeout(resolve, 150));
    }
    return "liftoff";
  } finally {
    await Deno.writeTextFile(${JSON.stringify(marks)}, "finally\\n", { append: true });
  }
}
`;
}

const PYTHON = `
import time

def pycount(n, marks):
    for i in range(n, 0, -1):
        with open(marks, "a") as f:
            f.write("yield %d\\n" % i)
        yield i
        time.sleep(0.15)
    return "py liftoff"
`;

Deno.test("streaming: parts arrive as produced, and cancelling stops the generator", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "rpc-stream-" });
  const marks = (name: string) => join(dir, `${name}.marks`);
  // The Python generator runs confined (as nobody when the server is root) and may
  // write only the marks file it is granted: it must exist, writable by anyone.
  await Deno.chmod(dir, 0o755);
  await Deno.writeTextFile(marks("python"), "");
  await Deno.chmod(marks("python"), 0o666);
  const server = await startServer({ name: "s1", config: null, extraArgs: ["--insecure"] });
  try {
    await using config = await writeInitYaml({
      servers: { s1: { ip: "127.0.0.1", port: server.port } },
      services: {
        svc: {
          providers: ["s1"],
          rpcs: ["countdown", "inline", "pycount", "badyield", "noyields"],
        },
      },
      rpcs: [
        { name: "countdown", args: ["int"], returns: ["str"], src: "countdown.ts" },
        { name: "inline", args: ["int"], returns: ["str"], src: "inline.ts" },
        { name: "pycount", args: ["int", "str"], returns: ["str"], src: "pycount.py" },
        { name: "badyield", args: ["int"], returns: ["str"], src: "badyield.ts" },
        { name: "noyields", args: ["int"], returns: ["str"], src: "noyields.ts" },
      ],
      files: {
        "countdown.ts": countdown("countdown", marks("countdown")),
        "inline.ts": countdown("inline", marks("inline")),
        "pycount.py": PYTHON,
        "badyield.ts":
          `export async function* badyield(n: number) { yield "not an int"; return "x"; }\n`,
        "noyields.ts": `export async function* noyields(n: number) { yield n; return "x"; }\n`,
      },
    });
    // Declare yields, grant the TypeScript generators the file they record to, trust one.
    let text = await Deno.readTextFile(config.path);
    for (const name of ["countdown", "inline", "pycount"]) {
      text = text.replace(new RegExp(`(- ${name}:\\n)`), `$1      yields: [int]\n`);
    }
    for (const name of ["countdown", "inline"]) {
      text = text.replace(
        new RegExp(`(src: \\S+/${name}\\.ts)`),
        `$1\n      permissions:\n        write: [${marks(name)}]`,
      );
    }
    text = text.replace(
      /(src: \S+\/pycount\.py)/,
      `$1\n      permissions:\n        write: [${marks("python")}]`,
    );
    text = text.replace(/(src: \S+\/inline\.ts)/, "$1\n      trusted: true");
    text = text.replace(/(- badyield:\n)/, "$1      yields: [int]\n");
    await Deno.writeTextFile(config.path, text);
    const deployed = await rpc(["init", config.path]);
    assert.equal(deployed.code, 0, describeResult(deployed));

    await t.step("rpc call prints each part as it arrives, then the final value", async () => {
      const [command, ...argv] = rpcArgv([
        "call",
        "--config",
        config.path,
        "s1",
        "svc",
        "countdown",
        "4",
      ]);
      const child = new Deno.Command(command, {
        args: argv,
        stdout: "piped",
        stderr: "piped",
        env: { NO_COLOR: "1" },
      }).spawn();
      const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let seen = "";
      while (!seen.includes("\n")) {
        const { value, done } = await reader.read();
        if (done) break;
        seen += value;
      }
      assert.equal(seen.split("\n")[0], "4");
      // The first part is out while the generator is still producing the rest.
      const early = await Deno.readTextFile(marks("countdown"));
      assert.ok(!early.includes("finally"), `generator already finished:\n${early}`);
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        seen += value;
      }
      const status = await child.status;
      await child.stderr.cancel();
      assert.equal(status.code, 0);
      assert.equal(seen, "4\n3\n2\n1\nliftoff\n");
    });

    for (const rpcName of ["countdown", "inline"]) {
      await t.step(`leaving a ${rpcName} stream early stops its generator`, async () => {
        await Deno.writeTextFile(marks(rpcName), "");
        const client = await connect(server.address);
        try {
          const stream = client.stream("svc", rpcName, [50]);
          const got: unknown[] = [];
          for await (const [value] of stream) {
            got.push(value);
            if (got.length === 2) break;
          }
          assert.deepEqual(got, [50, 49]);
          const error = await stream.result.catch((error) => error);
          assert.ok(error instanceof RpcError && error.kind === "Cancelled");
          const recorded = await waitFor(async () => {
            const text = await Deno.readTextFile(marks(rpcName));
            return text.includes("finally") ? text : undefined;
          }, "the generator's finally");
          assert.ok(!recorded.includes("yield 40"), `the generator went on:\n${recorded}`);
          // The server serves the next stream in full.
          const next = client.stream("svc", rpcName, [2]);
          const parts = [];
          for await (const part of next) parts.push(part);
          assert.deepEqual(parts, [[2], [1]]);
          assert.deepEqual(await next.result, ["liftoff"]);
        } finally {
          client.close();
        }
      });
    }

    await t.step("a caller that disconnects mid-stream stops the generator", async () => {
      await Deno.writeTextFile(marks("countdown"), "");
      const raw = await RawConnection.open(server.port);
      await raw.send({
        type: "RPC-REQ",
        serial: 1,
        value: { service: "svc", rpc: "countdown", arguments: [50] },
      });
      const first = await raw.next();
      assert.equal(first?.type, "RPC-PART");
      assert.deepEqual(first?.value.values, [50]);
      raw.close();
      const recorded = await waitFor(async () => {
        const text = await Deno.readTextFile(marks("countdown"));
        return text.includes("finally") ? text : undefined;
      }, "the generator's finally after the disconnect");
      assert.ok(!recorded.includes("yield 40"), recorded);
    });

    await t.step("a Python generator streams; cancelling it ends only that call", async () => {
      const pyMarks = marks("python");
      const client = await connect(server.address);
      try {
        const stream = client.stream("svc", "pycount", [3, pyMarks]);
        const parts = [];
        for await (const part of stream) parts.push(part);
        assert.deepEqual(parts, [[3], [2], [1]]);
        assert.deepEqual(await stream.result, ["py liftoff"]);
        await Deno.writeTextFile(pyMarks, "");
        const long = client.stream("svc", "pycount", [50, pyMarks]);
        for await (const _ of long) break;
        await long.result.catch(() => {});
        await new Promise((resolve) => setTimeout(resolve, 600));
        const recorded = await Deno.readTextFile(pyMarks);
        assert.ok(!recorded.includes("yield 45"), `the Python generator went on:\n${recorded}`);
        assert.deepEqual(await client.call("svc", "pycount", [1, pyMarks]), ["py liftoff"]);
      } finally {
        client.close();
      }
    });

    await t.step(
      "a part that does not match yields, or a stream without yields, is an Execution Exception",
      async () => {
        const client = await connect(server.address);
        try {
          const bad = await client.call("svc", "badyield", [1]).catch((error) => error);
          assert.equal(bad.kind, "Execution Exception");
          assert.match(bad.message, /yielded a value that does not match its signature/);
          const none = await client.call("svc", "noyields", [1]).catch((error) => error);
          assert.equal(none.kind, "Execution Exception");
          assert.match(none.message, /declares no yields/);
        } finally {
          client.close();
        }
      },
    );
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
