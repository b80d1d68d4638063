import assert from "node:assert/strict";
import { join } from "node:path";
import { loadCluster } from "./cluster.ts";
import { desiredStateFor } from "./desired.ts";
import { sha256Hex } from "../hash.ts";
import { nameSources, sourcesByHash } from "./source_names.ts";

const STATS = "def stats(xs):\n    return (len(xs)\n";
const ECHO = "export function echo(x: string) { return x; }\n";

/** An init.yaml for s1 with `stats` from bad.py, and `echo` and `say` both from echo.ts. */
async function withCluster(run: (path: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "rpc-source-names-" });
  try {
    await Deno.writeTextFile(join(dir, "bad.py"), STATS);
    await Deno.writeTextFile(join(dir, "echo.ts"), ECHO);
    const path = join(dir, "init.yaml");
    await Deno.writeTextFile(
      path,
      [
        "network:",
        "  servers:",
        "    - s1: {ip: 127.0.0.1, port: 8181}",
        "  clients:",
        "    - c1: {ip: 127.0.0.1, port: 6000}",
        "service:",
        "  - svc: {providers: [s1], tenants: [c1], rpcs: [stats, echo, say]}",
        "rpc:",
        '  - stats: {args: ["List[int]"], returns: [int], src: bad.py}',
        "  - echo: {args: [str], returns: [str], src: echo.ts}",
        "  - say: {args: [str], returns: [str], src: echo.ts}",
        "",
      ].join("\n"),
    );
    await run(path);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("sourcesByHash(): each SHA-256 sent names every RPC whose src it is", async () => {
  await withCluster(async (path) => {
    const cluster = await loadCluster(path);
    const { state } = await desiredStateFor(cluster, "s1");
    const byHash = sourcesByHash(cluster, "s1", state);
    assert.deepEqual(
      byHash.get(sha256Hex(STATS))?.map(({ service, entry }) => `${service}.${entry.name}`),
      ["svc.stats"],
    );
    assert.deepEqual(
      byHash.get(sha256Hex(ECHO))?.map(({ entry }) => entry.name),
      ["echo", "say"],
    );
  });
});

Deno.test("nameSources(): a stored blob in a message reads as its src, with where it is declared", async () => {
  await withCluster(async (path) => {
    const cluster = await loadCluster(path);
    const { state } = await desiredStateFor(cluster, "s1");
    const byHash = sourcesByHash(cluster, "s1", state);
    const blob = `${sha256Hex(STATS)}.py`;
    const message =
      `Cannot load /var/lib/rpc/s1/blobs/${blob}: SyntaxError: '(' was never closed (${blob}, line 2)`;
    assert.equal(
      nameSources(message, byHash, path),
      `Cannot load bad.py: SyntaxError: '(' was never closed (bad.py, line 2) [bad.py is src of svc.stats at ${path}:9:55]`,
    );
    // A hash this deploy did not send is left as it is.
    const other = `Cannot load ${"0".repeat(64)}.ts`;
    assert.equal(nameSources(other, byHash, path), other);
  });
});

Deno.test("nameSources(): a source shared by two RPCs names both", async () => {
  await withCluster(async (path) => {
    const cluster = await loadCluster(path);
    const { state } = await desiredStateFor(cluster, "s1");
    const text = nameSources(
      `${sha256Hex(ECHO)}.ts failed`,
      sourcesByHash(cluster, "s1", state),
      path,
    );
    assert.match(
      text,
      /^echo\.ts failed \[echo\.ts is src of svc\.echo at .+:10:\d+, svc\.say at .+:11:\d+\]$/,
    );
  });
});
