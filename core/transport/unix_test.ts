import assert from "node:assert/strict";
import { join } from "node:path";
import { ErrorKind, RpcError } from "../errors.ts";
import { connectUnix, listenUnix } from "./unix.ts";

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "rpc-unix-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("listenUnix: bytes both ways; the peer is the socket; mode 0600; the file goes on close", () =>
  withDir(async (dir) => {
    const path = join(dir, "rpc.sock");
    const listener = await listenUnix(path);
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
    const accepted = listener.accept();
    const client = await connectUnix(path);
    const server = (await accepted)!;
    assert.deepEqual(server.remote, { hostname: "unix", port: 0, path });
    await client.write(new TextEncoder().encode("ping"));
    const buffer = new Uint8Array(8);
    assert.equal(await server.read(buffer), 4);
    client.close();
    server.close();
    listener.close();
    assert.equal(await listener.accept(), null);
    assert.equal(await Deno.stat(path).then(() => true, () => false), false);
  }));

Deno.test("listenUnix: replaces a stale socket, refuses a live one and a file that is not a socket", () =>
  withDir(async (dir) => {
    const path = join(dir, "rpc.sock");
    // A process that binds and exits leaves the file behind, as a killed server would.
    const bound = await new Deno.Command("python3", {
      args: ["-c", "import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])", path],
    }).output();
    assert.ok(bound.success, new TextDecoder().decode(bound.stderr));
    const live = await listenUnix(join(dir, "live.sock"));
    try {
      assert.equal((await Deno.lstat(path)).isSocket, true);
      const replaced = await listenUnix(path, { mode: 0o660 });
      assert.equal((await Deno.stat(path)).mode! & 0o777, 0o660);
      replaced.close();
      await assert.rejects(
        listenUnix(join(dir, "live.sock")),
        /Cannot listen on unix:.*live\.sock: a server listens there/,
      );
      await Deno.writeTextFile(join(dir, "plain"), "data");
      await assert.rejects(listenUnix(join(dir, "plain")), /the file exists and is not a socket/);
      assert.equal(await Deno.readTextFile(join(dir, "plain")), "data");
    } finally {
      live.close();
    }
  }));

Deno.test("connectUnix: a missing socket is Unavailable", () =>
  withDir(async (dir) => {
    const error = await connectUnix(join(dir, "none.sock")).catch((error) => error);
    assert.ok(error instanceof RpcError);
    assert.equal(error.kind, ErrorKind.Unavailable);
    assert.match(error.message, /Cannot connect to unix:.*none\.sock: no such socket/);
  }));
