/**
 * Where a server's time goes under load: starts `rpc server` serving the
 * benchmark's echo procedure with the V8 inspector on loopback, warms it up,
 * then records a CPU profile of exactly `--seconds` of `rpc bench` load
 * (through the inspector's `Profiler` domain, so that start-up and warm-up
 * stay out of it) and prints the functions that took the most time, by self
 * time and by total time, with their cost per call. The raw `.cpuprofile`
 * is kept for Chrome DevTools or speedscope.
 *
 * The profile is of the server process. With `--kind sandboxed` (the
 * default) or `python` part of each call runs in sandbox processes or
 * interpreters, which the profile does not see; the CPU split between the
 * server and them is printed from /proc. `--sandbox-perf` (Linux, `perf`
 * installed) also records the sandbox processes with `perf` during the same
 * seconds and prints their top functions per thread (see `bench/perf.ts`).
 *
 *     deno task bench:profile                               # sandboxed echo, 1 s at C=64
 *     deno task bench:profile --kind trusted --concurrency 1
 *     deno task bench:profile --out /tmp/rpc.cpuprofile --top 40
 *     deno task bench:profile --sandbox-perf --payload 65536 -c 1
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import { type CpuProfile, functionTimes } from "./cpuprofile.ts";
import { type CpuMeasurement, descendants, measure, startEchoServer, withCpu } from "./compare.ts";
import { perfSummary, recordPerf } from "./perf.ts";
import { SANDBOX_PERF_VARIABLE } from "../core/runners/sandbox_process.ts";
import { Inspector, inspectorUrl } from "./inspector.ts";

const KINDS = ["sandboxed", "trusted", "python"] as const;
type Kind = typeof KINDS[number];

/** Options, from the command line. */
interface Options {
  kind: Kind;
  seconds: number;
  concurrency: number;
  payload: number;
  top: number;
  /** Where the raw profile goes. */
  out?: string;
  /** Sampling interval of the profiler, µs. */
  intervalUs: number;
  /** Also record the sandbox processes with `perf`. */
  sandboxPerf: boolean;
}

function parseOptions(args: string[]): Options {
  const { values } = parseArgs({
    args,
    options: {
      kind: { type: "string", default: "sandboxed" },
      seconds: { type: "string", default: "1" },
      concurrency: { type: "string", short: "c", default: "64" },
      payload: { type: "string", default: "32" },
      top: { type: "string", default: "25" },
      out: { type: "string" },
      interval: { type: "string", default: "100" },
      "sandbox-perf": { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(
      "usage: deno task bench:profile [--kind sandboxed|trusted|python] [--seconds S] [-c C] [--payload BYTES] [--top N] [--interval µs] [--out FILE.cpuprofile] [--sandbox-perf]",
    );
    Deno.exit(0);
  }
  const kind = values.kind as Kind;
  if (!KINDS.includes(kind)) throw new Error(`--kind: one of ${KINDS.join(", ")}; got ${kind}`);
  const seconds = Number(values.seconds);
  if (!(seconds > 0 && seconds <= 30)) throw new Error(`--seconds: more than 0, at most 30`);
  const concurrency = Number(values.concurrency);
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new Error("-c: a positive integer");
  return {
    kind,
    seconds,
    concurrency,
    payload: Number(values.payload),
    top: Number(values.top),
    intervalUs: Number(values.interval),
    sandboxPerf: values["sandbox-perf"],
    ...(values.out ? { out: values.out } : {}),
  };
}

/** A port free on 127.0.0.1 now. */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

async function main(): Promise<void> {
  const options = parseOptions(Deno.args);
  const dir = await Deno.makeTempDir({ prefix: "rpc-bench-profile-" });
  const inspectPort = freePort();
  const server = await startEchoServer(options.kind, join(dir, options.kind), options.kind, {
    denoFlags: [`--inspect=127.0.0.1:${inspectPort}`],
    ...(options.sandboxPerf ? { env: { [SANDBOX_PERF_VARIABLE]: "1" } } : {}),
  });
  const system = `rpc-${options.kind}` as const;
  try {
    const url = await inspectorUrl(server.log);
    console.error(`warming up: ${options.kind} echo, C=${options.concurrency}, 1 s`);
    await measure(system, server.port, options.concurrency, options.payload, 1);
    const inspector = await Inspector.connect(url);
    let result: CpuMeasurement;
    let profile: CpuProfile;
    try {
      await inspector.send("Profiler.enable");
      await inspector.send("Profiler.setSamplingInterval", { interval: options.intervalUs });
      await inspector.send("Profiler.start");
      console.error(`profiling ${options.seconds} s of load`);
      const serverOnly = { before: 0, after: 0 };
      const perfFile = `${options.out ?? join(Deno.cwd(), `rpc-${options.kind}.cpuprofile`)}.perf`;
      const children = options.sandboxPerf ? await descendants(server.pid) : [];
      const perf = children.length > 0 ? recordPerf(children, perfFile) : undefined;
      serverOnly.before = await processCpuMicros(server.pid);
      result = await withCpu(
        server.pid,
        () => measure(system, server.port, options.concurrency, options.payload, options.seconds),
      );
      serverOnly.after = await processCpuMicros(server.pid);
      await perf?.stop();
      ({ profile } = await inspector.send<{ profile: CpuProfile }>("Profiler.stop"));
      const serverUs = (serverOnly.after - serverOnly.before) / Math.max(1, result.count);
      printSummary(options, result, serverUs, profile);
      if (perf) {
        await perfSummary(perfFile, options.top, result.cpuUs - serverUs);
        // The perf maps V8 wrote for the sandboxes (perf report needs them only for the summary).
        for (const pid of children) await Deno.remove(`/tmp/perf-${pid}.map`).catch(() => {});
      }
    } finally {
      inspector.close();
    }
    const out = options.out ?? join(Deno.cwd(), `rpc-${options.kind}.cpuprofile`);
    await Deno.writeTextFile(out, JSON.stringify(profile));
    console.log(`\nThe raw profile: ${out} (open it in Chrome DevTools or speedscope)`);
    if (options.sandboxPerf) console.log(`The sandboxes' perf data: ${out}.perf (perf report -i)`);
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** CPU time (user + system) of one process, µs. */
async function processCpuMicros(pid: number): Promise<number> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
}

function printSummary(
  options: Options,
  result: CpuMeasurement,
  serverUs: number,
  profile: CpuProfile,
): void {
  const load = Deno.loadavg().map((value) => value.toFixed(2)).join(" ");
  console.log(
    `${options.kind} echo, ${options.payload} B, C=${options.concurrency}, ${options.seconds} s: ${
      result.count.toLocaleString("en-US")
    } calls, ${result.rps.toFixed(0)} calls/s, p50 ${(result.p50 * 1000).toFixed(0)} µs; ` +
      `CPU per call ${result.cpuUs.toFixed(1)} µs (server ${serverUs.toFixed(1)} µs${
        options.kind === "trusted"
          ? ""
          : `, its ${options.kind === "python" ? "interpreters" : "sandboxes"} ${
            (result.cpuUs - serverUs).toFixed(1)
          } µs`
      }); load average ${load}`,
  );
  const times = functionTimes(profile);
  const all = times.reduce((sum, time) => sum + time.selfMs, 0);
  const busy = times.filter((time) => !time.name.startsWith("(idle)"))
    .reduce((sum, time) => sum + time.selfMs, 0);
  const pct = (ms: number) => `${((ms / all) * 100).toFixed(1).padStart(5)}%`;
  const perCall = (ms: number) =>
    `${((ms * 1000) / Math.max(1, result.count)).toFixed(2).padStart(6)}`;
  console.log(
    `\nThe server's profile: ${all.toFixed(0)} ms sampled, ${busy.toFixed(0)} ms not idle. ` +
      "Per call: µs of that function per call served.\n",
  );
  const rows = (list: typeof times) => {
    console.log(" self  total  self µs/call  function");
    for (const time of list.slice(0, options.top)) {
      console.log(
        `${pct(time.selfMs)} ${pct(time.totalMs)}  ${perCall(time.selfMs)}        ${time.name}`,
      );
    }
  };
  console.log("By self time:");
  rows(times);
  console.log("\nBy total time (self and callees):");
  rows([...times].sort((a, b) => b.totalMs - a.totalMs));
}

if (import.meta.main) await main();
