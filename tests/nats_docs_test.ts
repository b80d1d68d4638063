/**
 * docs/fleets.md's NATS walk-through stays true: against a real nats-server
 * on a free port (instead of 4222) and the three servers of
 * docs/fleet.example.yaml, every `rpc` line of the walk-through runs as
 * printed and prints what the document shows under it (times and round
 * trips aside); the second example, without init.yaml, runs as a whole.
 *
 * @module
 */

import assert from "node:assert/strict";
import { dirname, join, resolve } from "node:path";
import { describeResult, MAIN, ROOT, type ServerProcess, startServers } from "./helpers.ts";
import { startNats } from "./nats_helpers.ts";

const DOC = join(ROOT, "docs", "fleets.md");
const EXAMPLE = join(ROOT, "docs", "fleet.example.yaml");
const PRINTED_URL = "nats://127.0.0.1:4222";

/** The ```sh blocks of the "Over NATS" section. */
async function natsBlocks(): Promise<string[]> {
  const markdown = await Deno.readTextFile(DOC);
  const section = markdown.slice(markdown.indexOf("## Over NATS"));
  return [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((match) => match[1]);
}

/** Commands of a block, each with the `# ` lines printed under it. */
function commands(block: string): { command: string; expected: string[] }[] {
  const out: { command: string; expected: string[] }[] = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("# ")) out.at(-1)?.expected.push(line.slice(2));
    else if (line.startsWith("rpc ") && !line.startsWith("rpc server")) {
      out.push({ command: line, expected: [] });
    }
  }
  return out;
}

/** A printed line as a pattern: durations and round trips may differ, the rest may not. */
function pattern(line: string): RegExp {
  const escaped = line.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return new RegExp(`^${escaped.replace(/\d+(\\\.\d+)? ?(ms|s)\b/g, "[\\d.]+ ?(ms|s)")}$`);
}

Deno.test("docs/fleets.md: the NATS walk-through runs as printed", async () => {
  const [walk, noFile] = await natsBlocks();
  assert.ok(walk && noFile, "the Over NATS section has its two examples");
  const nats = await startNats();
  const dir = await Deno.makeTempDir({ prefix: "rpc-nats-docs-" });
  let servers: ServerProcess[] = [];
  try {
    // The example file, with the broker's real port and its sources made absolute.
    const config = join(dir, "fleet.example.yaml");
    const example = (await Deno.readTextFile(EXAMPLE))
      .replaceAll(PRINTED_URL, nats.url)
      .replace(/src: (\S+)/g, (_, src) => `src: ${resolve(dirname(EXAMPLE), src)}`);
    await Deno.writeTextFile(config, example);
    servers = await startServers(["vm1", "vm2", "vm3"].map((name) => ({
      name,
      config,
      port: null,
      ready: /serving through broker/,
    })));
    const rpcCommand = `'${Deno.execPath()}' run --allow-all '${MAIN}'`;
    const shell = async (script: string, env: Record<string, string> = {}) => {
      const run = await new Deno.Command("sh", {
        args: [
          "-c",
          script.replaceAll("docs/fleet.example.yaml", config)
            .replaceAll(PRINTED_URL, nats.url)
            .replace(/^rpc /gm, `${rpcCommand} `)
            .replace(/(?<=[;|&]\s*|=\S+ )rpc /g, `${rpcCommand} `),
        ],
        cwd: ROOT,
        env: { NO_COLOR: "1", ...env },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const decoder = new TextDecoder();
      return {
        code: run.code,
        stdout: decoder.decode(run.stdout),
        stderr: decoder.decode(run.stderr),
      };
    };
    const found = commands(walk);
    assert.ok(found.length >= 5, `only ${found.length} commands`);
    for (const { command, expected } of found) {
      const result = await shell(command);
      assert.equal(result.code, 0, `${command}\n${describeResult(result)}`);
      const lines = result.stdout.trimEnd().split("\n");
      assert.equal(lines.length, expected.length, `${command}\n${result.stdout}`);
      for (const [i, line] of expected.entries()) {
        assert.match(lines[i], pattern(line), command);
      }
    }
    const result = await shell(noFile);
    assert.equal(result.code, 0, describeResult(result));
    assert.match(result.stdout, /^vm1 .*\nvm2 .*\nvm3 .*\nhi\n$/);
  } finally {
    await Promise.all(servers.map((server) => server.stop()));
    await nats.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
