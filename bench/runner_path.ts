/**
 * The cost of a runner alone, without server or network: loads the
 * benchmark's echo procedure with the sandbox runner (`sandboxed`), in the
 * process itself (`trusted`) or with the Python runner (`python`), keeps C
 * calls in flight through `procedure.invoke` for a bounded time, and prints
 * one JSON line: calls/s, p50, and per call the CPU time, minor page faults
 * and thread switches of this process and of the processes under it
 * (sandboxes, interpreters), from /proc. The counts move less with the
 * machine's load than the times do.
 *
 * It is what to measure while changing `core/runners/`: the figures move
 * only with the runner. `--root DIR` runs the runners of another checkout
 * (e.g. `git archive` of an older commit), for a before/after in one run.
 *
 *     deno run -A bench/runner_path.ts sandboxed|trusted|python C PAYLOAD SECONDS [--root DIR]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const { values, positionals } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: { root: { type: "string" } },
});
const [kind, concurrencyText, payloadText, secondsText] = positionals;
const concurrency = Number(concurrencyText);
const payload = Number(payloadText);
const seconds = Number(secondsText);
if (!["sandboxed", "trusted", "python"].includes(kind) || !concurrency || !payload || !seconds) {
  console.error("usage: runner_path.ts sandboxed|trusted|python C PAYLOAD SECONDS [--root DIR]");
  Deno.exit(2);
}
const root = resolve(values.root ?? join(dirname(fileURLToPath(import.meta.url)), ".."));
const from = (path: string) => import(pathToFileURL(join(root, path)).href);

const { parseSignature } = await from("core/types/types.ts");
const dir = await Deno.makeTempDir({ prefix: "rpc-runner-path-" });
const python = kind === "python";
const path = join(dir, python ? "echo.py" : "echo.ts");
await Deno.writeTextFile(
  path,
  python
    ? "def echo(text):\n    return text\n"
    : "export function echo(text: string): string {\n  return text;\n}\n",
);
const spec = {
  service: "bench",
  rpc: "echo",
  signature: parseSignature(["str"], ["str"]),
  language: python ? "python" : "typescript",
  path,
  hash: "0".repeat(64),
  ...(kind === "sandboxed" ? {} : { trusted: kind === "trusted" ? true : undefined }),
};
// deno-lint-ignore no-explicit-any
let runner: any;
if (kind === "sandboxed") {
  // Only the variable that makes sandboxes write perf maps (for `perf record` of them) passes.
  const perf = "RPC_BENCH_SANDBOX_PERF";
  runner = new (await from("core/runners/sandbox.ts")).SandboxRunner({
    env: (name: string) => name === perf ? Deno.env.get(perf) : undefined,
  });
} else if (kind === "trusted") {
  runner = new (await from("core/runners/typescript.ts")).InlineTypeScriptRunner();
} else {runner = new (await from("core/runners/python.ts")).PythonRunner({
    env: (name: string) => Deno.env.get(name),
  });}

/** What a process used so far: CPU µs, minor page faults, context switches of all its threads. */
interface Usage {
  cpuUs: number;
  faults: number;
  switches: number;
}

/** The usage of one process; zeros when it is gone. */
async function usage(pid: number): Promise<Usage> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    let switches = 0;
    for await (const task of Deno.readDir(`/proc/${pid}/task`)) {
      const status = await Deno.readTextFile(`/proc/${pid}/task/${task.name}/status`)
        .catch(() => "");
      for (const match of status.matchAll(/ctxt_switches:\s+(\d+)/g)) switches += Number(match[1]);
    }
    return {
      cpuUs: (Number(fields[11]) + Number(fields[12])) * 10_000,
      faults: Number(fields[7]),
      switches,
    };
  } catch {
    return { cpuUs: 0, faults: 0, switches: 0 };
  }
}

/** Usage of this process and every process under it, by pid. */
async function treeUsage(): Promise<Map<number, Usage>> {
  const out = new Map<number, Usage>();
  const visit = async (pid: number) => {
    out.set(pid, await usage(pid));
    for await (const task of Deno.readDir(`/proc/${pid}/task`)) {
      const text = await Deno.readTextFile(`/proc/${pid}/task/${task.name}/children`)
        .catch(() => "");
      for (const child of text.split(" ").filter(Boolean)) await visit(Number(child));
    }
  };
  await visit(Deno.pid);
  return out;
}

try {
  const procedure = await runner.load(spec);
  const text = "x".repeat(payload);
  // Warm up: every sandbox or interpreter of the pool started, the JIT warm.
  const warmUntil = performance.now() + 500;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (performance.now() < warmUntil) {
      await procedure.invoke([text], AbortSignal.timeout(60_000));
    }
  }));
  const before = await treeUsage();
  let latencies = new Float64Array(1 << 16);
  let count = 0;
  let errors = 0;
  const begin = performance.now();
  const deadline = begin + seconds * 1000;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    const signal = new AbortController().signal;
    while (performance.now() < deadline) {
      const t0 = performance.now();
      const result = await procedure.invoke([text], signal);
      if (result !== text && !(Array.isArray(result) && result[0] === text)) {
        errors++;
        continue;
      }
      if (count === latencies.length) {
        const bigger = new Float64Array(count * 2);
        bigger.set(latencies);
        latencies = bigger;
      }
      latencies[count++] = performance.now() - t0;
    }
  }));
  const elapsed = (performance.now() - begin) / 1000;
  const after = await treeUsage();
  const zero: Usage = { cpuUs: 0, faults: 0, switches: 0 };
  const self = { ...zero };
  const children = { ...zero };
  for (const [pid, now] of after) {
    const then = before.get(pid) ?? zero;
    const sum = pid === Deno.pid ? self : children;
    sum.cpuUs += now.cpuUs - then.cpuUs;
    sum.faults += now.faults - then.faults;
    sum.switches += now.switches - then.switches;
  }
  const perCall = (value: number) => +(value / count).toFixed(2);
  const sorted = latencies.slice(0, count).sort();
  console.log(JSON.stringify({
    kind,
    root,
    concurrency,
    payload,
    count,
    errors,
    rps: Math.round(count / elapsed),
    p50Us: Math.round(sorted[Math.floor(count / 2)] * 1000),
    cpuUsPerCall: {
      self: +(self.cpuUs / count).toFixed(1),
      children: +(children.cpuUs / count).toFixed(1),
    },
    // Counts, which the machine's load moves less than time: page faults and thread switches.
    faultsPerCall: { self: perCall(self.faults), children: perCall(children.faults) },
    switchesPerCall: { self: perCall(self.switches), children: perCall(children.switches) },
    load: Deno.loadavg().map((value) => value.toFixed(2)).join(" "),
  }));
} finally {
  await runner.close();
  await Deno.remove(dir, { recursive: true });
}
