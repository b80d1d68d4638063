import assert from "node:assert/strict";
import { join } from "node:path";
import { BufferedSink, formatJsonLine, Logger } from "./log.ts";
import { LogFile } from "./log_file.ts";

async function withDir(use: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "rpc-log-file-" });
  try {
    await use(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function files(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) names.push(entry.name);
  return names.sort();
}

Deno.test("LogFile rotates by size, keeps N files of whole lines, and drops the oldest", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "server.jsonl");
    const file = await LogFile.open(path, { maxBytes: 1000, keep: 2 });
    const logger = new Logger([new BufferedSink(file, formatJsonLine)]);
    for (let i = 0; i < 400; i++) logger.info("call", `call number ${i}`, { i });
    await logger.flush();
    await file.close();
    assert.deepEqual(await files(dir), ["server.jsonl", "server.jsonl.1", "server.jsonl.2"]);
    const seen: number[] = [];
    for (const name of ["server.jsonl.2", "server.jsonl.1", "server.jsonl"]) {
      const text = await Deno.readTextFile(join(dir, name));
      assert.ok(text.length > 0 && new TextEncoder().encode(text).length <= 1000, name);
      assert.ok(text.endsWith("\n"), `${name} ends with a whole line`);
      for (const line of text.trimEnd().split("\n")) seen.push(JSON.parse(line).i);
    }
    // The newest records, in order, with none cut: the oldest went with the dropped files.
    assert.equal(seen.at(-1), 399);
    assert.deepEqual(seen, seen.map((_, k) => seen[0] + k));
  });
});

Deno.test("LogFile writes a line longer than the limit alone in a file", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "a.log");
    const file = await LogFile.open(path, { maxBytes: 10, keep: 1 });
    const write = async (text: string) => {
      const data = new TextEncoder().encode(text);
      let offset = 0;
      while (offset < data.length) offset += await file.write(data.subarray(offset));
    };
    await write("short\n");
    await write("a line far longer than ten bytes\nend\n");
    await file.close();
    assert.equal(await Deno.readTextFile(path), "end\n");
    assert.equal(await Deno.readTextFile(`${path}.1`), "a line far longer than ten bytes\n");
    assert.deepEqual(await files(dir), ["a.log", "a.log.1"]);
  });
});

Deno.test("LogFile.reopen() starts a new file after the old one was moved away", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "a.log");
    const file = await LogFile.open(path, { maxBytes: 0 });
    await file.write(new TextEncoder().encode("before\n"));
    await Deno.rename(path, `${path}.moved`);
    await file.write(new TextEncoder().encode("still the moved file\n"));
    await file.reopen();
    await file.write(new TextEncoder().encode("after\n"));
    await file.close();
    assert.equal(await Deno.readTextFile(`${path}.moved`), "before\nstill the moved file\n");
    assert.equal(await Deno.readTextFile(path), "after\n");
  });
});
