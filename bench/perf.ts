/**
 * Linux `perf` for processes the V8 inspector does not reach: a sandbox
 * process and its worker. `bench/profile.ts --sandbox-perf` starts the server
 * with `RPC_BENCH_SANDBOX_PERF=1` (see `core/runners/sandbox_process.ts`), so
 * that each sandbox writes V8's perf map and JavaScript functions have names,
 * then records the sandboxes with {@linkcode recordPerf} while the load runs
 * and prints {@linkcode perfSummary}: the top symbols by self time, per
 * thread name (the relay isolate runs on the process's main thread, the
 * procedures' worker on a thread of its own).
 *
 * @module
 */

/** A running `perf record`; {@linkcode PerfRecording.stop} waits for its data. */
export interface PerfRecording {
  stop(): Promise<void>;
}

/** Starts `perf record` of the processes `pids` (every thread), sampling at `hz`. */
export function recordPerf(pids: number[], out: string, hz = 2999): PerfRecording {
  const child = new Deno.Command("perf", {
    args: ["record", "-q", "-g", "-F", String(hz), "-p", pids.join(","), "-o", out],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  return {
    async stop() {
      try {
        child.kill("SIGINT");
      } catch {
        // Ended already.
      }
      const { success, stderr } = await child.output();
      if (!success) {
        const text = new TextDecoder().decode(stderr).trim();
        if (text) console.error(`perf record: ${text.slice(-2000)}`);
      }
    },
  };
}

/** One line of the summary: a symbol's samples on one thread. */
interface Row {
  thread: string;
  symbol: string;
  samples: number;
}

/** The text `perf report` prints for `file` with `args`. */
async function report(file: string, args: string[]): Promise<string> {
  const output = await new Deno.Command("perf", {
    args: ["report", "-i", file, "--stdio", "--sort", "comm,sym", ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).output();
  return new TextDecoder().decode(output.stdout);
}

/**
 * Reads `perf report` of `file` and prints, per thread name, the share of
 * samples and µs of CPU per call of its top `top` symbols (`cpuUs` is the CPU
 * of all recorded processes per call, from /proc, shared out by samples),
 * then the JavaScript functions by total time (themselves and what they
 * call), which is where the native code (unnamed: the `deno` binary has no
 * symbols) is charged to the script that ran it.
 */
export async function perfSummary(file: string, top: number, cpuUs: number): Promise<void> {
  const text = await report(file, [
    "--no-children",
    "-F",
    "sample,comm,sym",
    "--percent-limit",
    "0",
  ]);
  const rows: Row[] = [];
  for (const line of text.split("\n")) {
    const match = /^\s*(\d+)\s+(\S.*?)\s{2,}\[[^\]]*\]\s+(.*)$/.exec(line);
    if (match) rows.push({ samples: Number(match[1]), thread: match[2], symbol: match[3].trim() });
  }
  const total = rows.reduce((sum, row) => sum + row.samples, 0);
  if (total === 0) {
    console.log("perf recorded no samples of the sandboxes");
    return;
  }
  const usPerSample = cpuUs / total;
  const byThread = new Map<string, Row[]>();
  for (const row of rows) {
    const list = byThread.get(row.thread) ?? [];
    list.push(row);
    byThread.set(row.thread, list);
  }
  const threads = [...byThread.entries()]
    .map(([thread, list]) => ({ thread, list, samples: list.reduce((s, r) => s + r.samples, 0) }))
    .sort((a, b) => b.samples - a.samples);
  console.log(
    `\nThe sandboxes under perf: ${total} samples, ${cpuUs.toFixed(1)} µs CPU per call in all. ` +
      "Per call: µs of CPU per call served.",
  );
  for (const { thread, list, samples } of threads) {
    console.log(
      `\nthread ${thread}: ${(100 * samples / total).toFixed(1)}% of samples, ${
        (samples * usPerSample).toFixed(1)
      } µs/call`,
    );
    console.log("  share  µs/call  symbol");
    for (const row of list.sort((a, b) => b.samples - a.samples).slice(0, top)) {
      console.log(
        `${(100 * row.samples / total).toFixed(1).padStart(6)}% ${
          (row.samples * usPerSample).toFixed(2).padStart(7)
        }  ${row.symbol.slice(0, 110)}`,
      );
    }
  }
  await printInclusive(file, top, cpuUs);
}

/** The JavaScript functions of each thread by total time, summed over the sandboxes. */
async function printInclusive(file: string, top: number, cpuUs: number): Promise<void> {
  const text = await report(file, ["--children", "-g", "none", "--percent-limit", "0.5"]);
  const totals = new Map<string, Map<string, number>>();
  for (const line of text.split("\n")) {
    const match = /^\s*([\d.]+)%\s+[\d.]+%\s+(\S.*?)\s{2,}\[[^\]]*\]\s+(JS:.*)$/.exec(line);
    if (!match) continue;
    // One sandbox's blob: URL differs from another's; the function is the same.
    const symbol = match[3].trim().replace(/blob:null\/[\w-]+/, "blob:(host)");
    const thread = totals.get(match[2]) ?? new Map<string, number>();
    thread.set(symbol, (thread.get(symbol) ?? 0) + Number(match[1]));
    totals.set(match[2], thread);
  }
  for (const [thread, symbols] of totals) {
    console.log(`\nthread ${thread}, JavaScript by total time (itself and what it calls):`);
    console.log("  share  µs/call  function");
    const sorted = [...symbols.entries()].sort((a, b) => b[1] - a[1]).slice(0, top);
    for (const [symbol, percent] of sorted) {
      console.log(
        `${percent.toFixed(1).padStart(6)}% ${(percent / 100 * cpuUs).toFixed(2).padStart(7)}  ${
          symbol.slice(0, 110)
        }`,
      );
    }
  }
}
