/**
 * `rpc server --listen unix:PATH` as a process: the client commands reach
 * it by `unix:PATH`, the socket file's mode decides who may connect (a
 * different user is refused by the kernel), a client whose init.yaml entry
 * requires an IP is refused, and a second server cannot take a live socket.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { INIT_YAML, rpc, startServer, waitFor, writeInitYaml } from "./helpers.ts";

async function config() {
  // cu has no IP: it may connect over a unix socket; c1 must come from 127.0.0.1.
  return await writeInitYaml({
    base: INIT_YAML,
    clients: { cu: {} },
    services: {
      service1: {
        providers: ["s1", "s2"],
        tenants: ["c1", "cu"],
        rpcs: ["rpc1", "rpc2", "add", "divmod", "echo", "sleep", "countdown"],
      },
    },
  });
}

Deno.test("rpc server --listen unix: serves call, list and ping; IP-bound clients and a second server are refused", async () => {
  await using cfg = await config();
  const socket = join(cfg.dir, "rpc.sock");
  await using server = await startServer({
    config: cfg.path,
    name: "s1",
    listen: `unix:${socket}`,
  });
  assert.equal(server.address, `unix:${socket}`);
  assert.equal((await Deno.stat(socket)).mode! & 0o777, 0o600);

  const call = await rpc([
    "call",
    "--config",
    cfg.path,
    "--as",
    "cu",
    server.address,
    "service1",
    "rpc1",
    "2",
    "ab",
  ]);
  assert.equal(call.code, 0, call.stderr);
  assert.equal(call.stdout.trim(), "abab");

  const list = await rpc(["list", "--config", cfg.path, "--as", "cu", server.address]);
  assert.equal(list.code, 0, list.stderr);
  assert.ok(list.stdout.includes("rpc1"), list.stdout);

  const ping = await rpc(["ping", server.address]);
  assert.equal(ping.code, 0, ping.stderr);
  assert.ok(ping.stdout.includes(`s1 (unix:${socket})`), ping.stdout);

  // c1's entry requires 127.0.0.1; a unix client has no IP to match it.
  const claimed = await rpc([
    "call",
    "--config",
    cfg.path,
    "--as",
    "c1",
    server.address,
    "service1",
    "rpc1",
    "1",
    "x",
  ]);
  assert(claimed.code !== 0, claimed.stdout);
  assert.ok(
    claimed.stderr.includes(`Client c1 may not connect from unix:${socket}`),
    claimed.stderr,
  );
  await waitFor(
    () => server.stderrText().includes(`may not connect from unix:${socket}`),
    "refusal logged",
  );

  const second = await rpc([
    "server",
    "--config",
    cfg.path,
    "--name",
    "s1",
    "--listen",
    `unix:${socket}`,
  ], {
    env: { RPC_STATE_DIR: join(cfg.dir, "state2") },
  });
  assert(second.code !== 0);
  assert.ok(
    second.stderr.includes(`Cannot listen on unix:${socket}: a server listens there`),
    second.stderr,
  );
  assert(server.running());

  await server.stop();
  // The socket file goes with the server, so the next one starts clean.
  assert.equal(await Deno.stat(socket).then(() => true, () => false), false);
});

Deno.test({
  name:
    "rpc server --listen unix: the socket file's mode keeps other users out (--socket-mode opens it)",
  ignore: Deno.uid() !== 0,
  fn: async () => {
    await using cfg = await config();
    await Deno.chmod(cfg.dir, 0o755); // the directory lets anyone reach the socket: its own mode decides
    const connectAsNobody = async (path: string) => {
      const output = await new Deno.Command("setpriv", {
        args: [
          "--reuid=65534",
          "--regid=65534",
          "--clear-groups",
          // The PATH of root may lead into a home that nobody cannot enter.
          "env",
          "PATH=/usr/local/bin:/usr/bin:/bin",
          "python3",
          "-c",
          "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ntry:\n s.connect(sys.argv[1]); print('connected')\nexcept OSError as e: print(e.strerror)",
          path,
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const decoder = new TextDecoder();
      return (decoder.decode(output.stdout) + decoder.decode(output.stderr)).trim();
    };
    const closed = join(cfg.dir, "closed.sock");
    {
      await using server = await startServer({
        config: cfg.path,
        name: "s1",
        listen: `unix:${closed}`,
      });
      assert.equal(await connectAsNobody(closed), "Permission denied");
      assert(server.running());
    }
    const open = join(cfg.dir, "open.sock");
    await using _server = await startServer({
      config: cfg.path,
      name: "s1",
      listen: `unix:${open}`,
      extraArgs: ["--socket-mode", "666"],
    });
    assert.equal((await Deno.stat(open)).mode! & 0o777, 0o666);
    assert.equal(await connectAsNobody(open), "connected");
  },
});

Deno.test("rpc server --listen refuses what a unix socket cannot do", async () => {
  const notUnix = await rpc(["server", "--listen", "127.0.0.1:8181"], { cwd: "/" });
  assert.equal(notUnix.code, 2, notUnix.stderr);
  assert.match(
    notUnix.stderr,
    /--listen: expected unix:\/path\/to\/rpc\.sock, got "127\.0\.0\.1:8181"/,
  );
  const withPort = await rpc(["server", "--listen", "unix:/tmp/x.sock", "--port", "0"], {
    cwd: "/",
  });
  assert.equal(withPort.code, 2, withPort.stderr);
  assert.ok(
    withPort.stderr.includes("--listen: a unix socket takes no --host or --port"),
    withPort.stderr,
  );
});
