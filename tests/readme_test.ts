/**
 * The docs' command examples run as printed: README's "Scripting with rpc"
 * script, and docs/commands.md's `rpc bench` examples and client command
 * lines (checked against what their comments say they print), in bash, with
 * `rpc` on PATH (the rpc under test), in a directory whose init.yaml is the demo's with s1 and s2 on free
 * ports of 127.0.0.1, where two real servers serve it.
 *
 * Run: `deno test --allow-all tests/readme_test.ts`
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
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

/** A TypeScript example of the README and the lines its comments say it prints. */
interface Program {
  source: string;
  prints: string[];
}

/**
 * The ```ts blocks of README's "Client library" as programs: a block that
 * does not import goes on from the one before it (the streaming example uses
 * the first example's client). A comment after `console.log(…);` says what
 * it prints, up to a colon that starts an explanation; after a `for` loop, a
 * comma-separated list of the lines it prints.
 */
async function clientLibraryPrograms(): Promise<Program[]> {
  const readme = await Deno.readTextFile(join(ROOT, "README.md"));
  const start = readme.indexOf("\n## Client library\n");
  const section = readme.slice(start, readme.indexOf("\n## ", start + 1));
  const programs: Program[] = [];
  for (const [, block] of section.matchAll(/```ts\n([\s\S]*?)```/g)) {
    if (block.startsWith("import ") || programs.length === 0) {
      programs.push({ source: "", prints: [] });
    }
    const program = programs[programs.length - 1];
    program.source += block;
    for (const line of block.split("\n")) {
      const said = /console\.log\(.*\);\s*\/\/\s*(.*)$/.exec(line)?.[1];
      if (said === undefined) continue;
      const printed = said.replace(/: [^"\]]*$/, "");
      program.prints.push(...(line.startsWith("for ") ? printed.split(", ") : [printed]));
    }
  }
  return programs;
}

/** A command line of the docs and what its trailing comment says it prints, if it says. */
interface Example {
  line: string;
  lineNumber: number;
  expected?: RegExp;
}

/**
 * The client command lines of docs/commands.md's sh blocks that run against
 * the demo's two servers as printed: `rpc call`, `list`, `describe`, `hash`,
 * `ping` and a REPL script. Lines with a placeholder (`…`) or needing another
 * kind of server (the course form, a unix socket, `rpc up`) are left out. A trailing
 * `# prints: X` means exactly X; a trailing `# {…}` is the JSON printed, where
 * `...` stands for anything.
 */
async function clientExamples(): Promise<Example[]> {
  const text = await Deno.readTextFile(join(ROOT, "docs/commands.md"));
  const examples: Example[] = [];
  let inSh = false;
  for (const [index, raw] of text.split("\n").entries()) {
    if (raw.startsWith("```")) {
      inSh = raw === "```sh";
      continue;
    }
    if (!inSh || !/^(rpc (call|list|describe|hash|ping) |printf .*\| rpc repl )/.test(raw)) {
      continue;
    }
    if (/…|--wire course|unix:|--local/.test(raw)) continue;
    const comment = /\s#\s(.*)$/.exec(raw);
    const line = comment ? raw.slice(0, comment.index).trimEnd() : raw;
    const said = comment?.[1].trim();
    const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    let expected: RegExp | undefined;
    if (said?.startsWith("prints: ")) expected = new RegExp(`^${escape(said.slice(8))}$`);
    else if (said?.startsWith("{")) {
      expected = new RegExp(`^${escape(said).replaceAll(escape("..."), ".*")}$`);
    }
    examples.push({ line, lineNumber: index + 1, expected });
  }
  return examples;
}

Deno.test({
  name: "README's scripting example and the client examples of docs/commands.md run as printed",
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
    const bash = async (script: string, cwd = config.dir) => {
      const output = await new Deno.Command("bash", {
        args: ["-c", script],
        cwd,
        env: childEnv({ PATH: `${path.bin}:${Deno.env.get("PATH") ?? "/usr/bin:/bin"}` }),
        clearEnv: true,
        stdout: "piped",
        stderr: "piped",
        signal: AbortSignal.timeout(180_000),
      }).output();
      const decoder = new TextDecoder();
      return {
        code: output.code,
        stdout: decoder.decode(output.stdout),
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

      await t.step("README's Client library examples print what their comments say", async () => {
        const programs = await clientLibraryPrograms();
        assert.equal(programs.length, 3, "the client, in-memory and service examples");
        for (const [index, program] of programs.entries()) {
          const source = program.source
            .replaceAll(
              '"./core/mod.ts"',
              JSON.stringify(pathToFileURL(join(ROOT, "core/mod.ts")).href),
            )
            .replaceAll("127.0.0.1:8181", `127.0.0.1:${ports[0]}`);
          const file = join(config.dir, `example_${index}.ts`);
          await Deno.writeTextFile(file, source);
          const output = await new Deno.Command(Deno.execPath(), {
            args: ["run", "--allow-all", "--quiet", "--config", join(ROOT, "deno.json"), file],
            cwd: config.dir,
            stdout: "piped",
            stderr: "piped",
            signal: AbortSignal.timeout(120_000),
          }).output();
          const decoder = new TextDecoder();
          const where = `${source}\n--- stderr\n${decoder.decode(output.stderr)}`;
          assert.equal(output.code, 0, where);
          assert.deepEqual(
            decoder.decode(output.stdout).trimEnd().split("\n"),
            program.prints,
            where,
          );
        }
      });

      await t.step(
        "docs/commands.md: the client commands print what their comments say",
        async () => {
          const examples = await clientExamples();
          assert.ok(examples.length >= 15, `found ${examples.length} examples`);
          for (const example of examples) {
            // The docs use init.yaml's addresses; the servers here listen on free ports.
            const line = example.line
              .replaceAll("127.0.0.1:8181", `127.0.0.1:${ports[0]}`)
              .replaceAll("127.0.0.1:8282", `127.0.0.1:${ports[1]}`);
            const result = await bash(line, line.includes("services/") ? ROOT : config.dir);
            const where = `docs/commands.md:${example.lineNumber}: ${line}\n${result.text}`;
            assert.equal(result.code, 0, where);
            const printed = result.stdout.trim();
            assert.notEqual(printed, "", where);
            if (example.expected !== undefined) assert.match(printed, example.expected, where);
          }
        },
      );
    } finally {
      await path.remove();
      await Promise.all(servers.map((server) => server.stop()));
    }
  },
});
