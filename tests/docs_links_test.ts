/**
 * The README and docs/ point where they say: every relative link names a file
 * of the repository, and every `#anchor` a heading of that file (as GitHub
 * makes anchors from headings). Moving a section between files breaks links
 * silently otherwise.
 *
 * Run: `deno test --allow-all tests/docs_links_test.ts`
 */

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { ROOT } from "./helpers.ts";

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes. */
function anchorOf(heading: string): string {
  return heading.trim().toLowerCase().replace(/[^\p{L}\p{N}_\- ]/gu, "").replaceAll(" ", "-");
}

/** The text of `markdown` outside fenced code blocks, line by line. */
function proseLines(markdown: string): string[] {
  const lines: string[] = [];
  let fenced = false;
  for (const line of markdown.split("\n")) {
    if (line.startsWith("```")) fenced = !fenced;
    else if (!fenced) lines.push(line);
  }
  return lines;
}

function anchorsOf(markdown: string): Set<string> {
  const anchors = new Set<string>();
  for (const line of proseLines(markdown)) {
    const heading = /^#{1,6} (.*)$/.exec(line);
    if (heading) anchors.add(anchorOf(heading[1]));
  }
  return anchors;
}

async function documents(): Promise<string[]> {
  const files = [join(ROOT, "README.md")];
  for await (const entry of Deno.readDir(join(ROOT, "docs"))) {
    if (entry.name.endsWith(".md")) files.push(join(ROOT, "docs", entry.name));
  }
  return files.sort();
}

Deno.test("README and docs/: every relative link and anchor resolves", async () => {
  const files = await documents();
  assert.ok(files.length >= 8, `found ${files.length} documents`);
  const anchors = new Map<string, Set<string>>();
  for (const file of files) anchors.set(file, anchorsOf(await Deno.readTextFile(file)));
  const broken: string[] = [];
  let checked = 0;
  for (const file of files) {
    const prose = proseLines(await Deno.readTextFile(file)).join("\n");
    for (const [, target] of prose.matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^[a-z]+:/.test(target)) continue; // http:, https:, mailto:
      checked++;
      const [path, anchor] = target.split("#", 2);
      const resolved = path === "" ? file : join(dirname(file), path);
      const where = `${relative(ROOT, file)}: (${target})`;
      if (!existsSync(resolved)) {
        broken.push(`${where}: no file ${relative(ROOT, resolved)}`);
      } else if (anchor !== undefined && resolved.endsWith(".md")) {
        const known = anchors.get(resolved) ?? anchorsOf(await Deno.readTextFile(resolved));
        if (!known.has(anchor)) broken.push(`${where}: no heading #${anchor}`);
      }
    }
  }
  assert.ok(checked > 50, `checked ${checked} links`);
  assert.deepEqual(broken, []);
});
