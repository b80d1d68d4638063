/**
 * README's command examples run as printed: the "Scripting with rpc" script
 * and the `rpc bench` examples, in bash, with `rpc` on PATH (the rpc under
 * test), in a directory whose init.yaml is the demo's with s1 and s2 on free
 * ports of 127.0.0.1, where two real servers serve it.
 *
 * Run: `deno test --allow-all tests/readme_test.ts`
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { childEnv, freePort, INIT_YAML, ROOT, startServers, writeInitYaml } from "./helpers.ts";
import { rpcOnPath } from "./terminal.ts";

/** The first ```sh block after `heading` in `file` (README.md by default). */
async function shBlockAfter(heading: string, file = "README.md"): Promise<string> {
  const readme = await Deno.readTextFile(join(ROOT, file));
  const start = readme.indexOf(`\n${heading}\n`);
  assert.ok(start >= 0, `${file} has ${heading}`);
  const block = /```sh\n([\s\S]*?)```/.exec(readme.slice(start));
  assert.ok(block, `a sh block after ${heading}`);
  return block[1];
}

Deno.test({
  name: "README's scripting example and rpc bench examples run as printed",
  sanitizeResources: false,
  async fn(t) {
    const ports = [freePort(), freePort()];
    await using config = await writeInitYaml({
      base: INIT_YAML,
      servers: {
        s1: { ip: "127.0.0.1", port: ports[0] },
        s2: { ip: "127.0.0.1", port: ports[1] },
      },
    });
    const servers = await startServers([
      { config: config.path, name: "s1", port: ports[0] },
      { config: config.path, name: "s2", port: ports[1] },
    ]);
    const path = await rpcOnPath();
    const bash = async (script: string) => {
      const output = await new Deno.Command("bash", {
        args: ["-c", script],
        cwd: config.dir,
        env: childEnv({ PATH: `${path.bin}:${Deno.env.get("PATH") ?? "/usr/bin:/bin"}` }),
        clearEnv: true,
        stdout: "piped",
        stderr: "piped",
        signal: AbortSignal.timeout(180_000),
      }).output();
      const decoder = new TextDecoder();
      return {
        code: output.code,
        text: `exit ${output.code}\n--- stdout\n${decoder.decode(output.stdout)}--- stderr\n${
          decoder.decode(output.stderr)
        }`,
      };
    };
    try {
      await t.step("Scripting with rpc", async () => {
        const result = await bash(await shBlockAfter("## Scripting with rpc"));
        assert.equal(result.code, 0, result.text);
      });

      await t.step("rpc bench", async () => {
        const block = await shBlockAfter("## `rpc bench`", "docs/commands.md");
        const lines = block.split("\n").filter((line) => line.startsWith("rpc bench"));
        assert.equal(lines.length, 4, block);
        for (const line of lines) {
          const result = await bash(line);
          assert.equal(result.code, 0, `${line}\n${result.text}`);
        }
        const report = JSON.parse(await Deno.readTextFile(join(config.dir, "report.json")));
        assert.equal(report.successRate, 1);
      });
    } finally {
      await path.remove();
      await Promise.all(servers.map((server) => server.stop()));
    }
  },
});
