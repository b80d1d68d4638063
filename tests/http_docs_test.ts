/**
 * docs/http.md stays true: every curl example runs as printed against the
 * demo cluster's s1 started with `--http` (only the port differs: the test
 * binds a free one instead of 8080), and prints what the document shows
 * after it; its status table is the gateway's.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { HTTP_STATUS } from "../core/http/status.ts";
import { ROOT, startServer, waitFor, withTimeout } from "./helpers.ts";

const DOC = join(ROOT, "docs", "http.md");

/** Each ```sh block and the ```text block that follows it, if any. */
function examples(markdown: string): { command: string; output?: string }[] {
  const blocks = [...markdown.matchAll(/```(\w+)\n([\s\S]*?)```/g)].map((m) => ({
    lang: m[1],
    text: m[2],
    end: m.index! + m[0].length,
    start: m.index!,
  }));
  const out = [];
  for (const [i, block] of blocks.entries()) {
    if (block.lang !== "sh" || block.text.startsWith("rpc server")) continue;
    const next = blocks[i + 1];
    const adjacent = next && next.lang === "text" &&
      markdown.slice(block.end, next.start).trim() === "";
    out.push({ command: block.text, ...(adjacent ? { output: next.text } : {}) });
  }
  return out;
}

Deno.test("docs/http.md: its curl examples print what it says", async () => {
  const markdown = await Deno.readTextFile(DOC);
  const found = examples(markdown);
  assert.ok(found.length >= 8, `only ${found.length} examples`);
  const server = await startServer({ name: "s1", extraArgs: ["--http", "127.0.0.1:0"] });
  try {
    const match = await waitFor(
      () => /HTTP gateway listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(server.stderrText()),
      "the gateway",
      20_000,
    );
    for (const { command, output } of found) {
      const run = await withTimeout(
        new Deno.Command("sh", {
          args: ["-c", command.replaceAll("127.0.0.1:8080", `127.0.0.1:${match[1]}`)],
          stdout: "piped",
          stderr: "piped",
        }).output(),
        30_000,
        command,
      );
      const stdout = new TextDecoder().decode(run.stdout);
      assert.equal(run.code, 0, `${command}\n${new TextDecoder().decode(run.stderr)}`);
      if (output !== undefined) assert.equal(stdout.trimEnd(), output.trimEnd(), command);
    }
  } finally {
    await server.stop();
  }
});

Deno.test("docs/http.md: its status table is the gateway's", async () => {
  const markdown = await Deno.readTextFile(DOC);
  const section = markdown.slice(markdown.indexOf("### Statuses"));
  const rows = [...section.matchAll(/^\| `([^`]+)` +\| (\d{3}) +\|/gm)].map((
    m,
  ) => [m[1], Number(m[2])]);
  assert.deepEqual(Object.fromEntries(rows), HTTP_STATUS);
});
