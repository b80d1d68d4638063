/**
 * rpc side by side with its peers, on this machine, in one command:
 *
 * - rpc unary echo (`echo(str) -> str`), sandboxed and `trusted: true`, loaded by `rpc bench`;
 * - @grpc/grpc-js unary echo, Node server and Node client (bench/grpc/);
 * - the raw JSON line: Deno TCP, u32-length frames, `{id, method, params}` JSON per call;
 * - a raw length-prefixed Deno TCP echo with no codec: the floor;
 *
 * at 1, 16 and 64 calls in flight on one connection, with 32 B and 64 KiB
 * payloads, taking the median of `--runs` runs of `--seconds` each, with the
 * server's CPU time per call for rpc (its sandbox processes included). Every
 * server and every load generator is a process of its own; all traffic stays
 * on 127.0.0.1. Then the Python row: an rpc Python echo procedure (confined,
 * the default) against a raw Python echo over a pipe (`bench/python_pipe.ts`);
 * rpc with a connection per call; `rpc call` as a whole process; the HTTP
 * gateway and the cost of metrics; `rpc init` of 1,000 unchanged procedures
 * on two servers; and with `--soak` the memory of each rpc server
 * (sandboxed, trusted, Python) over 1,000,000 calls.
 *
 * Markdown tables go to stdout, progress to stderr; `--json FILE` also writes
 * every figure as JSON, and `--report FILE` prints the tables of such a file
 * again. Every run is bounded in time and count.
 *
 *     deno task bench:compare                   # 3 runs of 5 s per cell, and the extras
 *     deno task bench:compare --quick           # a smoke run: 1 run of 1 s per cell
 *     deno task bench:compare --quick --only matrix,python --json out.json
 *     deno task bench:compare --only soak --json soak.json
 *
 * @module
 */

import { parseArgs } from "node:util";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Inspector, inspectorUrl, liveHeapBytes } from "./inspector.ts";
import { SANDBOX_TRACE_GC_VARIABLE } from "../core/runners/sandbox_process.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const MAIN = join(ROOT, "main.ts");
const GRPC_DIR = join(ROOT, "bench", "grpc");
const DENO = Deno.execPath();

/** How long a server may take to print its listening line. */
const LISTEN_TIMEOUT_MS = 60_000;
/** Extra time a load generator gets beyond its run before it is killed. */
const GENERATOR_GRACE_MS = 60_000;
/** Soak steps (one sample each); calls in all by default: 10 x 100,000 = 1,000,000. */
const SOAK_STEPS = 10;
const SOAK_CALLS = 1_000_000;
/** Procedures deployed by the `rpc init` measurement. */
const INIT_PROCEDURES = 1_000;

/** The systems of the main table. */
const SYSTEMS = ["rpc-sandboxed", "rpc-trusted", "grpc", "raw-json", "floor"] as const;
type System = typeof SYSTEMS[number];

/** The rpc servers of the soak: the three ways a procedure runs. */
type SoakSystem = "rpc-sandboxed" | "rpc-trusted" | "rpc-python";

const LABELS: Record<System | "rpc-python" | "python-pipe", string> = {
  "rpc-sandboxed": "rpc, sandboxed",
  "rpc-trusted": "rpc, trusted",
  "rpc-python": "rpc, Python",
  "python-pipe": "raw Python echo over a pipe",
  "grpc": "@grpc/grpc-js",
  "raw-json": "raw JSON line",
  "floor": "raw echo (floor)",
};

/** What one load generator run measured. */
interface Measurement {
  count: number;
  errors: number;
  rps: number;
  p50: number;
  p99: number;
  /** rpc only: server CPU time (user + system, sandboxes included) per call, µs. */
  cpuUs?: number;
}

/** The median of several runs of one cell. */
interface Cell extends Measurement {
  system: System;
  payload: number;
  concurrency: number;
  runs: Measurement[];
}

/** The parts of a run, as `--only` names them. */
const SECTIONS = [
  "matrix",
  "python",
  "connection",
  "process",
  "http",
  "init",
  "soak",
] as const;
type Section = typeof SECTIONS[number];

/** Options, from the command line. */
interface Options {
  runs: number;
  seconds: number;
  quick: boolean;
  /** The parts measured. */
  sections: Section[];
  /** The rpc servers the soak measures. */
  soakSystems: SoakSystem[];
  /** Calls each soak makes, in 10 steps. */
  soakCalls: number;
  json?: string;
  /** Print the tables of a saved `--json` file instead of measuring. */
  report?: string;
  payloads: number[];
  concurrencies: number[];
}

function parseOptions(args: string[]): Options {
  const { values } = parseArgs({
    args,
    options: {
      runs: { type: "string" },
      seconds: { type: "string" },
      quick: { type: "boolean", default: false },
      soak: { type: "boolean", default: false },
      "no-extras": { type: "boolean", default: false },
      json: { type: "string" },
      report: { type: "string" },
      "http-only": { type: "boolean", default: false },
      only: { type: "string" },
      "soak-systems": { type: "string", default: "trusted,sandboxed,python" },
      "soak-calls": { type: "string", default: String(SOAK_CALLS) },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(
      "usage: deno task bench:compare [--runs N] [--seconds S] [--quick] [--soak] [--no-extras] [--http-only] [--only SECTIONS] [--soak-systems trusted,sandboxed,python] [--soak-calls N] [--json FILE]\n" +
        "       deno task bench:compare --report FILE   (print the tables of a saved --json FILE again)\n" +
        `SECTIONS: a comma-separated list of ${SECTIONS.join(", ")}; default: all but soak ` +
        "(--soak adds it, --no-extras is matrix,python, --http-only is http)",
    );
    Deno.exit(0);
  }
  const quick = values.quick;
  const runs = Number(values.runs ?? (quick ? 1 : 3));
  const seconds = Number(values.seconds ?? (quick ? 1 : 5));
  if (!Number.isInteger(runs) || runs < 1 || runs > 15) throw new Error("--runs: 1 to 15");
  if (!(seconds > 0 && seconds <= 60)) throw new Error("--seconds: more than 0, at most 60");
  let sections: Section[] = SECTIONS.filter((section) => section !== "soak");
  if (values["no-extras"]) sections = ["matrix", "python"];
  if (values["http-only"]) sections = ["http"];
  if (values.only) {
    const named = values.only.split(",").map((name) => name.trim()).filter(Boolean);
    const unknown = named.filter((name) => !(SECTIONS as readonly string[]).includes(name));
    if (unknown.length > 0) {
      throw new Error(
        `--only: unknown section ${unknown.join(", ")}; known: ${SECTIONS.join(", ")}`,
      );
    }
    sections = named as Section[];
  }
  if (values.soak && !sections.includes("soak")) sections.push("soak");
  const soakSystems = values["soak-systems"].split(",").map((name) => `rpc-${name.trim()}`);
  for (const system of soakSystems) {
    if (!["rpc-trusted", "rpc-sandboxed", "rpc-python"].includes(system)) {
      throw new Error(`--soak-systems: trusted, sandboxed or python; got ${system.slice(4)}`);
    }
  }
  return {
    runs,
    seconds,
    quick,
    sections,
    soakSystems: soakSystems as SoakSystem[],
    soakCalls: Number(values["soak-calls"]),
    ...(values.json ? { json: values.json } : {}),
    ...(values.report ? { report: values.report } : {}),
    payloads: [32, 64 * 1024],
    concurrencies: [1, 16, 64],
  };
}

function progress(text: string): void {
  Deno.stderr.writeSync(new TextEncoder().encode(`${text}\n`));
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

// ---------------------------------------------------------------------------
// Processes

/** A server process whose stderr goes to a file. */
export interface Server {
  name: string;
  pid: number;
  port: number;
  log: string;
  stop(): Promise<void>;
}

/**
 * Starts `command args...` with stderr in `log` (and stdout in `out`, else
 * nowhere) and waits for its `listening on HOST:PORT` line.
 */
export async function startServer(
  name: string,
  command: string,
  args: string[],
  log: string,
  env: Record<string, string> = {},
  out = "/dev/null",
): Promise<Server> {
  await Deno.writeTextFile(log, "");
  // sh only redirects the output to the files, then becomes the server (exec): the pid is the server's.
  const child = new Deno.Command("sh", {
    args: ["-c", 'exec "$@" 2>>"$SERVER_LOG" >>"$SERVER_OUT"', "sh", command, ...args],
    env: { ...env, SERVER_LOG: log, SERVER_OUT: out, NO_COLOR: "1" },
    cwd: ROOT,
    stdin: "null",
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  let exited = false;
  const status = child.status.then((result) => {
    exited = true;
    return result;
  });
  const stop = async () => {
    if (!exited) {
      try {
        child.kill("SIGTERM");
      } catch {
        // Gone meanwhile.
      }
      const timer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch {
          // Gone meanwhile.
        }
      }, 5_000);
      await status;
      clearTimeout(timer);
    }
  };
  const deadline = Date.now() + LISTEN_TIMEOUT_MS;
  for (;;) {
    const text = await Deno.readTextFile(log);
    // Not the V8 inspector's "Debugger listening on ws://…" line.
    const match = /^(?!Debugger).*listening on (\S+):(\d+)/m.exec(text);
    if (match) return { name, pid: child.pid, port: Number(match[2]), log, stop };
    if (exited || Date.now() > deadline) {
      await stop();
      throw new Error(`${name} did not start; its log:\n${text.slice(-4000)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Runs a command to its end, bounded by `timeoutMs`; returns stdout, throws on failure. */
export async function runCommand(
  command: string,
  args: string[],
  timeoutMs: number,
  env: Record<string, string> = {},
): Promise<{ stdout: string; ms: number }> {
  const signal = AbortSignal.timeout(timeoutMs);
  const started = performance.now();
  const output = await new Deno.Command(command, {
    args,
    cwd: ROOT,
    env: { ...env, NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal,
  }).output();
  const ms = performance.now() - started;
  const decoder = new TextDecoder();
  if (!output.success) {
    throw new Error(
      `${command} ${args.slice(0, 6).join(" ")}... failed (exit ${output.code}${
        signal.aborted ? ", killed after its time limit" : ""
      }):\n${decoder.decode(output.stderr).slice(-4000)}`,
    );
  }
  return { stdout: decoder.decode(output.stdout), ms };
}

/** A port free on 127.0.0.1 now. */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** The processes under `pid` (children, their children, …), from /proc. */
export async function descendants(pid: number): Promise<number[]> {
  const out: number[] = [];
  const visit = async (parent: number) => {
    const tasks: string[] = [];
    try {
      for await (const entry of Deno.readDir(`/proc/${parent}/task`)) tasks.push(entry.name);
    } catch {
      return; // Gone meanwhile.
    }
    for (const task of tasks) {
      let text = "";
      try {
        text = await Deno.readTextFile(`/proc/${parent}/task/${task}/children`);
      } catch {
        continue;
      }
      for (const child of text.split(" ").filter(Boolean).map(Number)) {
        out.push(child);
        await visit(child);
      }
    }
  };
  await visit(pid);
  return out;
}

/** Resident memory of a process in KiB, from /proc/PID/status; 0 when it is gone. */
async function rssKiB(pid: number): Promise<number> {
  let status: string;
  try {
    status = await Deno.readTextFile(`/proc/${pid}/status`);
  } catch {
    return 0;
  }
  const match = /^VmRSS:\s+(\d+) kB/m.exec(status);
  return match ? Number(match[1]) : 0;
}

/** Resident memory of a process and every process under it (sandboxes, interpreters), KiB. */
async function treeRssKiB(pid: number): Promise<{ total: number; server: number }> {
  const server = await rssKiB(pid);
  let total = server;
  for (const child of await descendants(pid)) total += await rssKiB(child);
  return { total, server };
}

// ---------------------------------------------------------------------------
// The systems

/** How the echo procedure of an rpc server runs. */
type EchoKind = "sandboxed" | "trusted" | "python";

const ECHO_SOURCE = `/** Returns its argument: the unary echo of the benchmark. */
export function echo(text: string): string {
  return text;
}
`;

const ECHO_PYTHON_SOURCE = `def echo(text):
    """Returns its argument: the unary echo of the benchmark."""
    return text
`;

/** An init.yaml serving \`bench.echo(str) -> str\` from one server. */
function echoInitYaml(port: number, kind: EchoKind): string {
  return `network:
  servers:
    - bench: { ip: 127.0.0.1, port: ${port} }
service:
  - bench:
      providers: [bench]
      rpcs: [echo]
rpc:
  - echo:
      args: [str]
      returns: [str]
      src: ${kind === "python" ? "echo.py" : "echo.ts"}${
    kind === "trusted" ? "\n      trusted: true" : ""
  }
`;
}

/** How to start an echo server. */
export interface EchoServerOptions {
  /** Arguments after `rpc server …`. */
  extraArgs?: string[];
  /** Flags of `deno run` itself, e.g. `--cpu-prof`. */
  denoFlags?: string[];
  /** Environment variables of the server, beyond the inherited ones. */
  env?: Record<string, string>;
  /** Where the server's stdout (and its sandboxes') goes; default nowhere. */
  out?: string;
}

/** Starts `rpc server` in `home` serving the echo procedure: sandboxed, trusted or in Python. */
export async function startEchoServer(
  label: string,
  home: string,
  kind: EchoKind,
  options: EchoServerOptions = {},
): Promise<Server> {
  await Deno.mkdir(home, { recursive: true });
  await Deno.writeTextFile(join(home, "echo.ts"), ECHO_SOURCE);
  await Deno.writeTextFile(join(home, "echo.py"), ECHO_PYTHON_SOURCE);
  await Deno.writeTextFile(join(home, "init.yaml"), echoInitYaml(freePort(), kind));
  return await startServer(
    label,
    DENO,
    [
      "run",
      "--allow-all",
      ...(options.denoFlags ?? []),
      MAIN,
      "server",
      "--config",
      join(home, "init.yaml"),
      "--name",
      "bench",
      "--state-dir",
      join(home, "state"),
      "--port",
      "0",
      ...(options.extraArgs ?? []),
    ],
    join(home, "server.log"),
    options.env,
    options.out,
  );
}

/** Starts every server of the main table. */
async function startSystems(dir: string): Promise<Record<System, Server>> {
  const started: Server[] = [];
  try {
    const rpcServer = (system: System, kind: EchoKind) =>
      startEchoServer(system, join(dir, system), kind);
    const servers = {} as Record<System, Server>;
    for (const system of SYSTEMS) {
      progress(`starting ${LABELS[system]} server`);
      let server: Server;
      if (system === "rpc-sandboxed" || system === "rpc-trusted") {
        server = await rpcServer(system, system === "rpc-trusted" ? "trusted" : "sandboxed");
      } else if (system === "grpc") {
        server = await startServer(
          system,
          "node",
          [join(GRPC_DIR, "server.js")],
          join(dir, "grpc.log"),
        );
      } else {
        server = await startServer(
          system,
          DENO,
          [
            "run",
            "--allow-net",
            join(ROOT, "bench", "raw_server.ts"),
            system === "floor" ? "echo" : "json",
          ],
          join(dir, `${system}.log`),
        );
      }
      started.push(server);
      servers[system] = server;
    }
    return servers;
  } catch (error) {
    await Promise.all(started.map((server) => server.stop()));
    throw error;
  }
}

/** Runs one load generator against one system; returns what it measured. */
export async function measure(
  system: System | "rpc-python" | "python-pipe",
  port: number,
  concurrency: number,
  payload: number,
  seconds: number,
): Promise<Measurement> {
  const timeoutMs = seconds * 1000 + GENERATOR_GRACE_MS;
  if (system === "rpc-sandboxed" || system === "rpc-trusted" || system === "rpc-python") {
    const { stdout } = await runCommand(DENO, [
      "run",
      "--allow-all",
      MAIN,
      "bench",
      `127.0.0.1:${port}`,
      "bench",
      "echo",
      "x".repeat(payload),
      "--types",
      "str",
      "-c",
      String(concurrency),
      "--duration",
      `${seconds}s`,
      "--json",
    ], timeoutMs);
    const report = JSON.parse(stdout);
    const errors = Object.values(report.errors as Record<string, number>).reduce(
      (a, b) => a + b,
      0,
    );
    return {
      count: report.ok,
      errors,
      rps: (report.ok * 1000) / report.totalMs,
      p50: report.latencyMs.p50,
      p99: report.latencyMs.p99,
    };
  }
  const [command, args] = system === "grpc"
    ? ["node", [join(GRPC_DIR, "client.js"), String(port)]]
    : system === "python-pipe"
    ? [DENO, ["run", "--allow-run", join(ROOT, "bench", "python_pipe.ts")]]
    : [DENO, [
      "run",
      "--allow-net",
      join(ROOT, "bench", "raw_client.ts"),
      system === "floor" ? "echo" : "json",
      String(port),
    ]];
  const { stdout } = await runCommand(
    command,
    [...args, String(concurrency), String(payload), String(seconds)],
    timeoutMs,
  );
  const report = JSON.parse(stdout.trim().split("\n").pop()!);
  return {
    count: report.count,
    errors: report.errors,
    rps: report.rps,
    p50: report.latencyMs.p50,
    p99: report.latencyMs.p99,
  };
}

/** A measurement with the server's CPU time per request, which the machine's load moves less. */
export interface CpuMeasurement extends Measurement {
  /** Server CPU time (user + system) per request, µs. */
  cpuUs: number;
}

/** One concurrency of the HTTP row: rpc's gateway and the raw `Deno.serve` echo. */
interface HttpCell {
  concurrency: number;
  gateway: CpuMeasurement;
  raw: CpuMeasurement;
}

/** CPU time (user + system) a process has used, in µs, from /proc/PID/stat; 0 when gone. */
async function cpuMicros(pid: number): Promise<number> {
  let stat: string;
  try {
    stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  } catch {
    return 0;
  }
  // Fields after the command name (which may hold spaces) start at state, field 3.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime: fields 14 and 15
  return ticks * 10_000; // USER_HZ is 100 on Linux
}

/** CPU time of a process and of every process under it now (its sandboxes, interpreters), µs. */
async function treeCpuMicros(pid: number): Promise<Map<number, number>> {
  const out = new Map<number, number>([[pid, await cpuMicros(pid)]]);
  for (const child of await descendants(pid)) out.set(child, await cpuMicros(child));
  return out;
}

/**
 * Runs `run` and adds the server's CPU time per request, its sandboxes' and
 * interpreters' included (a process that started meanwhile counts from 0).
 */
export async function withCpu(
  pid: number,
  run: () => Promise<Measurement>,
): Promise<CpuMeasurement> {
  const before = await treeCpuMicros(pid);
  const result = await run();
  const after = await treeCpuMicros(pid);
  let used = 0;
  for (const [process, micros] of after) used += micros - (before.get(process) ?? 0);
  return { ...result, cpuUs: result.count > 0 ? used / result.count : 0 };
}

/** Runs bench/http_client.ts against `url`. */
async function measureHttpOnce(
  url: string,
  concurrency: number,
  seconds: number,
): Promise<Measurement> {
  const { stdout } = await runCommand(DENO, [
    "run",
    "--allow-net",
    join(ROOT, "bench", "http_client.ts"),
    url,
    String(concurrency),
    "32",
    String(seconds),
  ], seconds * 1000 + GENERATOR_GRACE_MS);
  const report = JSON.parse(stdout.trim().split("\n").pop()!);
  return {
    count: report.count,
    errors: report.errors,
    rps: report.rps,
    p50: report.latencyMs.p50,
    p99: report.latencyMs.p99,
  };
}

/** The median run of each. */
function medianRun<T extends Measurement>(runs: T[]): T {
  const sorted = [...runs].sort((a, b) => a.rps - b.rps);
  return sorted[Math.floor(sorted.length / 2)];
}

/**
 * The HTTP row: \`POST /v1/bench/echo\` on rpc's gateway (trusted echo, every
 * call logged, as on TCP) against a raw \`Deno.serve\` JSON echo, 32 B, C
 * keep-alive connections each with one request at a time; runs alternate.
 */
async function measureHttp(dir: string, options: Options): Promise<HttpCell[]> {
  progress("starting rpc with --http, and the raw Deno.serve echo");
  const rpc = await startEchoServer("rpc-http", join(dir, "rpc-http"), "trusted", {
    extraArgs: ["--http", "127.0.0.1:0"],
  });
  const raw = await startServer(
    "http-echo",
    DENO,
    ["run", "--allow-net", join(ROOT, "bench", "http_echo.ts"), "0"],
    join(dir, "http-echo.log"),
  );
  try {
    const log = await Deno.readTextFile(rpc.log);
    const gatewayPort = Number(/HTTP gateway listening on http:\/\/[^\s:]+:(\d+)/.exec(log)?.[1]);
    if (!gatewayPort) throw new Error(`rpc did not start its gateway; its log:\n${log}`);
    const urls = {
      gateway: `http://127.0.0.1:${gatewayPort}/v1/bench/echo`,
      raw: `http://127.0.0.1:${raw.port}/v1/bench/echo`,
    };
    for (const url of Object.values(urls)) await measureHttpOnce(url, 16, 1); // warm up
    const pids = { gateway: rpc.pid, raw: raw.pid };
    const cells: HttpCell[] = [];
    for (const concurrency of options.concurrencies) {
      const runs = { gateway: [] as CpuMeasurement[], raw: [] as CpuMeasurement[] };
      for (let run = 0; run < options.runs; run++) {
        for (const system of ["gateway", "raw"] as const) {
          const result = await withCpu(
            pids[system],
            () => measureHttpOnce(urls[system], concurrency, options.seconds),
          );
          runs[system].push(result);
          progress(
            `HTTP C=${concurrency} ${system.padEnd(8)} ${
              formatRate(result.rps).padStart(7)
            } req/s  p50 ${formatMs(result.p50)}  server CPU ${result.cpuUs.toFixed(0)} µs/request`,
          );
        }
      }
      cells.push({ concurrency, gateway: medianRun(runs.gateway), raw: medianRun(runs.raw) });
    }
    return cells;
  } finally {
    await Promise.all([rpc.stop(), raw.stop()]);
  }
}

/** One concurrency of the metrics cost: the TCP path with and without metrics. */
interface MetricsCostCell {
  concurrency: number;
  without: CpuMeasurement;
  with: CpuMeasurement;
}

/**
 * What metrics cost the TCP path: \`rpc bench\` (32 B, trusted echo) against a
 * server without \`--http\` and one with it (so every call and connection is
 * counted), runs alternating.
 */
async function measureMetricsCost(dir: string, options: Options): Promise<MetricsCostCell[]> {
  progress("starting rpc without and with --http (metrics)");
  const without = await startEchoServer("rpc-plain", join(dir, "rpc-plain"), "trusted");
  const withMetrics = await startEchoServer("rpc-metrics", join(dir, "rpc-metrics"), "trusted", {
    extraArgs: ["--http", "127.0.0.1:0"],
  });
  try {
    for (const server of [without, withMetrics]) {
      await measure("rpc-trusted", server.port, 16, 32, 1); // warm up
    }
    const cells: MetricsCostCell[] = [];
    for (const concurrency of [1, 64]) {
      const runs = { without: [] as CpuMeasurement[], with: [] as CpuMeasurement[] };
      for (let run = 0; run < Math.max(3, options.runs); run++) {
        for (const [key, server] of [["without", without], ["with", withMetrics]] as const) {
          const result = await withCpu(
            server.pid,
            () => measure("rpc-trusted", server.port, concurrency, 32, options.seconds),
          );
          runs[key].push(result);
          progress(
            `TCP C=${concurrency} metrics ${key.padEnd(7)} ${
              formatRate(result.rps).padStart(7)
            } calls/s  p50 ${formatMs(result.p50)}  server CPU ${result.cpuUs.toFixed(1)} µs/call`,
          );
        }
      }
      cells.push({ concurrency, without: medianRun(runs.without), with: medianRun(runs.with) });
    }
    return cells;
  } finally {
    await Promise.all([without.stop(), withMetrics.stop()]);
  }
}

/** The main table: every system, concurrency and payload, median of `runs`. */
async function measureMatrix(
  servers: Record<System, Server>,
  options: Options,
): Promise<Cell[]> {
  const runs = new Map<string, Measurement[]>();
  const key = (system: System, payload: number, concurrency: number) =>
    `${system}/${payload}/${concurrency}`;
  // Warm every server up once, so no system's first run pays for its JIT.
  for (const system of SYSTEMS) {
    for (const payload of options.payloads) {
      await measure(system, servers[system].port, 16, payload, Math.min(1, options.seconds));
    }
  }
  // Runs are interleaved (run 1 of everything, then run 2, ...) so that a
  // disturbance of the machine spreads over all systems instead of one.
  for (let run = 1; run <= options.runs; run++) {
    for (const payload of options.payloads) {
      for (const concurrency of options.concurrencies) {
        for (const system of SYSTEMS) {
          const server = servers[system];
          const once = () => measure(system, server.port, concurrency, payload, options.seconds);
          const result: Measurement = system.startsWith("rpc-")
            ? await withCpu(server.pid, once)
            : await once();
          progress(
            `run ${run}/${options.runs}  ${formatBytes(payload).padStart(6)}  C=${
              String(concurrency).padEnd(2)
            }  ${LABELS[system].padEnd(17)} ${formatRate(result.rps).padStart(7)} calls/s  p50 ${
              formatMs(result.p50)
            }${
              result.cpuUs === undefined ? "" : `  server CPU ${result.cpuUs.toFixed(1)} µs/call`
            }${result.errors ? `  ${result.errors} errors` : ""}`,
          );
          const list = runs.get(key(system, payload, concurrency)) ?? [];
          list.push(result);
          runs.set(key(system, payload, concurrency), list);
        }
      }
    }
  }
  const cells: Cell[] = [];
  for (const payload of options.payloads) {
    for (const concurrency of options.concurrencies) {
      for (const system of SYSTEMS) {
        const list = runs.get(key(system, payload, concurrency))!;
        cells.push({
          system,
          payload,
          concurrency,
          count: median(list.map((m) => m.count)),
          errors: list.reduce((sum, m) => sum + m.errors, 0),
          rps: median(list.map((m) => m.rps)),
          p50: median(list.map((m) => m.p50)),
          p99: median(list.map((m) => m.p99)),
          ...(list[0].cpuUs === undefined ? {} : { cpuUs: median(list.map((m) => m.cpuUs!)) }),
          runs: list,
        });
      }
    }
  }
  return cells;
}

// ---------------------------------------------------------------------------
// The extras

/** One concurrency of the Python row: rpc's Python echo and a raw Python echo over a pipe. */
interface PythonCell {
  concurrency: number;
  rpc: CpuMeasurement;
  pipe: Measurement;
}

/**
 * The Python row: \`bench.echo\` as a Python procedure (confined with
 * bubblewrap, the default), loaded by \`rpc bench\` on one connection, against
 * \`bench/python_pipe.ts\` (one python3 echo loop, C calls pipelined on its
 * stdin); 32 B, runs alternating.
 */
async function measurePython(dir: string, options: Options): Promise<PythonCell[]> {
  progress("starting rpc with a Python echo procedure");
  const server = await startEchoServer("rpc-python", join(dir, "rpc-python"), "python");
  try {
    await measure("rpc-python", server.port, 16, 32, Math.min(1, options.seconds)); // warm up
    await measure("python-pipe", 0, 16, 32, Math.min(1, options.seconds));
    const cells: PythonCell[] = [];
    for (const concurrency of options.concurrencies) {
      const rpcRuns: CpuMeasurement[] = [];
      const pipeRuns: Measurement[] = [];
      for (let run = 0; run < options.runs; run++) {
        const rpc = await withCpu(
          server.pid,
          () => measure("rpc-python", server.port, concurrency, 32, options.seconds),
        );
        rpcRuns.push(rpc);
        const pipe = await measure("python-pipe", 0, concurrency, 32, options.seconds);
        pipeRuns.push(pipe);
        progress(
          `Python C=${concurrency}  rpc ${formatRate(rpc.rps)} calls/s  p50 ${
            formatMs(rpc.p50)
          }  CPU ${rpc.cpuUs.toFixed(1)} µs/call${
            rpc.errors ? `  ${rpc.errors} errors` : ""
          }  |  raw pipe ${formatRate(pipe.rps)} calls/s  p50 ${formatMs(pipe.p50)}`,
        );
      }
      cells.push({ concurrency, rpc: medianRun(rpcRuns), pipe: medianRun(pipeRuns) });
    }
    return cells;
  } finally {
    await server.stop();
  }
}

/** rpc with a new connection (and handshake) per call. */
async function measureConnectionPerCall(
  servers: Record<System, Server>,
  options: Options,
): Promise<{ system: System; concurrency: number; rps: number; p50: number }[]> {
  const out = [];
  for (const system of ["rpc-sandboxed", "rpc-trusted"] as const) {
    for (const concurrency of [1, 16]) {
      const results = [];
      for (let run = 0; run < options.runs; run++) {
        const { stdout } = await runCommand(DENO, [
          "run",
          "--allow-all",
          MAIN,
          "bench",
          `127.0.0.1:${servers[system].port}`,
          "bench",
          "echo",
          "x".repeat(32),
          "--types",
          "str",
          "-c",
          String(concurrency),
          "--duration",
          `${options.seconds}s`,
          "--connection-per-call",
          "--json",
        ], options.seconds * 1000 + GENERATOR_GRACE_MS);
        const report = JSON.parse(stdout);
        results.push({ rps: (report.ok * 1000) / report.totalMs, p50: report.latencyMs.p50 });
      }
      const row = {
        system,
        concurrency,
        rps: median(results.map((r) => r.rps)),
        p50: median(results.map((r) => r.p50)),
      };
      progress(
        `connection per call  C=${concurrency}  ${LABELS[system]}  ${formatRate(row.rps)} calls/s`,
      );
      out.push(row);
    }
  }
  return out;
}

/** `rpc call` from start to exit, and an empty `deno run` for reference. */
async function measureCallProcess(
  servers: Record<System, Server>,
  dir: string,
  times: number,
): Promise<{ what: string; ms: number; runs: number[] }[]> {
  const empty = join(dir, "empty.ts");
  await Deno.writeTextFile(empty, "");
  const rows = [];
  const cases: [string, string[]][] = [
    ["deno run -A of an empty file (process start alone)", ["run", "--allow-all", empty]],
    ...(["rpc-trusted", "rpc-sandboxed"] as const).map((system): [string, string[]] => [
      `rpc call, ${LABELS[system].replace("rpc, ", "")} echo (start to exit)`,
      [
        "run",
        "--allow-all",
        MAIN,
        "call",
        `127.0.0.1:${servers[system].port}`,
        "bench",
        "echo",
        "hello",
        "--types",
        "str",
      ],
    ]),
  ];
  for (const [what, args] of cases) {
    const runs = [];
    for (let i = 0; i < times; i++) runs.push((await runCommand(DENO, args, 60_000)).ms);
    rows.push({ what, ms: median(runs), runs });
    progress(`${what}: median ${median(runs).toFixed(0)} ms`);
  }
  return rows;
}

/** `rpc init` of 1,000 procedures on two servers: the first time, and again unchanged. */
async function measureInit(dir: string, runs: number) {
  const home = join(dir, "init");
  await Deno.mkdir(join(home, "src"), { recursive: true });
  const token = "bench-admin-token";
  await Deno.writeTextFile(join(home, "token"), token);
  const names = Array.from({ length: INIT_PROCEDURES }, (_, i) => `p${String(i).padStart(4, "0")}`);
  for (const [i, name] of names.entries()) {
    await Deno.writeTextFile(
      join(home, "src", `${name}.ts`),
      `export function ${name}(n: number): number {\n  return n + ${i};\n}\n`,
    );
  }
  const ports = [freePort(), freePort()];
  const yaml = [
    "network:",
    "  servers:",
    `    - i1: { ip: 127.0.0.1, port: ${ports[0]} }`,
    `    - i2: { ip: 127.0.0.1, port: ${ports[1]} }`,
    "service:",
    "  - many:",
    "      providers: [i1, i2]",
    `      rpcs: [${names.join(", ")}]`,
    "rpc:",
    ...names.map((name) => `  - ${name}: { args: [int], returns: [int], src: src/${name}.ts }`),
    "",
  ].join("\n");
  await Deno.writeTextFile(join(home, "init.yaml"), yaml);
  const servers: Server[] = [];
  try {
    for (const [i, name] of ["i1", "i2"].entries()) {
      servers.push(
        await startServer(`init server ${name}`, DENO, [
          "run",
          "--allow-all",
          MAIN,
          "server",
          "--name",
          name,
          "--port",
          String(ports[i]),
          "--state-dir",
          join(home, `state-${name}`),
          "--admin-token-file",
          join(home, "token"),
        ], join(home, `${name}.log`)),
      );
    }
    const init = () =>
      runCommand(DENO, ["run", "--allow-all", MAIN, "init", join(home, "init.yaml")], 600_000, {
        RPC_ADMIN_TOKEN: token,
      });
    const first = await init();
    progress(`rpc init, first: ${first.ms.toFixed(0)} ms`);
    const again = [];
    let output = "";
    for (let i = 0; i < runs; i++) {
      const result = await init();
      again.push(result.ms);
      output = result.stdout.trim();
      if (!/no code sent/.test(output)) {
        throw new Error(`rpc init of an unchanged file sent code:\n${output}`);
      }
    }
    progress(`rpc init, unchanged: median ${median(again).toFixed(0)} ms`);
    return {
      procedures: INIT_PROCEDURES,
      servers: 2,
      firstMs: first.ms,
      againMs: median(again),
      againRuns: again,
      output,
    };
  } finally {
    await Promise.all(servers.map((server) => server.stop()));
  }
}

/**
 * A server's resident memory, its sandboxes' or interpreters' included, in 10
 * steps over `totalCalls` calls (1,000,000 by default) at C=64.
 */
async function measureSoak(system: SoakSystem, dir: string, totalCalls: number) {
  const callsPerStep = Math.max(1, Math.round(totalCalls / SOAK_STEPS));
  const kind: EchoKind = system === "rpc-trusted"
    ? "trusted"
    : system === "rpc-python"
    ? "python"
    : "sandboxed";
  const home = join(dir, `soak-${system}`);
  // Sandboxes have no inspector: their collections are read from V8's trace on their stdout.
  const gcLog = kind === "sandboxed" ? join(home, "sandbox-gc.log") : undefined;
  const server = await startEchoServer(`soak ${system}`, home, kind, {
    denoFlags: [`--inspect=127.0.0.1:${freePort()}`],
    ...(gcLog ? { env: { [SANDBOX_TRACE_GC_VARIABLE]: "1" }, out: gcLog } : {}),
  });
  const inspector = await Inspector.connect(await inspectorUrl(server.log));
  try {
    /**
     * rssKiB: the server and its sandboxes or interpreters; serverKiB: the
     * server alone; heapKiB: the server's JavaScript heap in use after a full
     * collection, which only a leak makes grow.
     */
    const sample = async (calls: number) => {
      const heapKiB = Math.round(await liveHeapBytes(inspector) / 1024);
      const { total, server: serverKiB } = await treeRssKiB(server.pid);
      const sandboxes = gcLog ? sandboxHeaps(await Deno.readTextFile(gcLog)) : undefined;
      return { calls, rssKiB: total, serverKiB, heapKiB, sandboxes };
    };
    const samples = [await sample(0)];
    let calls = 0;
    for (let step = 1; step <= SOAK_STEPS; step++) {
      const { stdout } = await runCommand(DENO, [
        "run",
        "--allow-all",
        MAIN,
        "bench",
        `127.0.0.1:${server.port}`,
        "bench",
        "echo",
        "x".repeat(32),
        "--types",
        "str",
        "-c",
        "64",
        "-n",
        String(callsPerStep),
        "--duration",
        "10m",
        "--json",
      ], 11 * 60_000);
      const report = JSON.parse(stdout);
      calls += report.ok;
      samples.push(await sample(calls));
      const last = samples.at(-1)!;
      progress(
        `soak ${LABELS[system]}: ${calls} calls, RSS ${
          (last.rssKiB / 1024).toFixed(1)
        } MiB (server alone ${(last.serverKiB / 1024).toFixed(1)} MiB, its live heap ${
          (last.heapKiB / 1024).toFixed(1)
        } MiB${
          last.sandboxes
            ? `; sandboxes' heaps ${
              (last.sandboxes.committedKiB / 1024).toFixed(1)
            } MiB, live after their last full collection ${
              last.sandboxes.liveKiB === undefined
                ? "(none yet)"
                : `${(last.sandboxes.liveKiB / 1024).toFixed(1)} MiB`
            }`
            : ""
        })`,
      );
    }
    // Least squares over the samples after the first step (start-up and JIT warm-up).
    const steady = samples.slice(2);
    const slope = slopePer100k(steady);
    const heapSlope = slopePer100k(steady.map((s) => ({ calls: s.calls, rssKiB: s.heapKiB })));
    return { system, samples, slopeKiBPer100k: slope, heapSlopeKiBPer100k: heapSlope };
  } finally {
    inspector.close();
    await server.stop();
  }
}

/**
 * The sandboxes' JavaScript heaps from V8's `--trace-gc` lines, one isolate
 * (a sandbox's main thread or its worker) per `[pid:address]` prefix:
 * committedKiB, the heap each holds after its latest collection, summed;
 * liveKiB, what each held after its latest full (mark-compact) collection,
 * summed, or undefined while some isolate has had none.
 */
export function sandboxHeaps(trace: string): { committedKiB: number; liveKiB?: number } {
  const line =
    /^\[(\d+:0x[0-9a-f]+)\]\s+[\d.]+ ms: (.+?) [\d.]+ \([\d.]+\) -> ([\d.]+) \(([\d.]+)\) MB/gm;
  const committed = new Map<string, number>();
  const live = new Map<string, number>();
  for (const [, isolate, kind, after, held] of trace.matchAll(line)) {
    committed.set(isolate, Number(held) * 1024);
    if (/Mark-Compact/.test(kind)) live.set(isolate, Number(after) * 1024);
  }
  const sum = (values: Iterable<number>) => [...values].reduce((a, b) => a + b, 0);
  return {
    committedKiB: Math.round(sum(committed.values())),
    ...(live.size === committed.size && live.size > 0
      ? { liveKiB: Math.round(sum(live.values())) }
      : {}),
  };
}

function slopePer100k(samples: { calls: number; rssKiB: number }[]): number {
  const n = samples.length;
  const meanX = samples.reduce((sum, s) => sum + s.calls, 0) / n;
  const meanY = samples.reduce((sum, s) => sum + s.rssKiB, 0) / n;
  let num = 0;
  let den = 0;
  for (const s of samples) {
    num += (s.calls - meanX) * (s.rssKiB - meanY);
    den += (s.calls - meanX) ** 2;
  }
  return den === 0 ? 0 : (num / den) * 100_000;
}

// ---------------------------------------------------------------------------
// Formatting

function formatRate(rps: number): string {
  return rps >= 10_000 ? `${(rps / 1000).toFixed(1)}k` : rps.toFixed(0);
}

function formatMs(ms: number): string {
  return ms < 1 ? `${(ms * 1000).toFixed(0)} µs` : `${ms.toFixed(2)} ms`;
}

function formatBytes(bytes: number): string {
  return bytes >= 1024 ? `${bytes / 1024} KiB` : `${bytes} B`;
}

function ratio(value: number): string {
  // Two decimals always: 14.99 must not print as a target's 15.0.
  return `${value.toFixed(2)}×`;
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const line = (cells: string[]) =>
    `| ${cells.map((cell, i) => cell.padEnd(widths[i])).join(" | ")} |`;
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}

function find(cells: Cell[], system: System, payload: number, concurrency: number): Cell {
  return cells.find((c) =>
    c.system === system && c.payload === payload && c.concurrency === concurrency
  )!;
}

/** The verdict of each target of the issue, from the measured figures. */
function targets(cells: Cell[], extras: Results["extras"]) {
  const out: { target: string; measured: string; met: boolean | undefined }[] = [];
  // With --http-only there is no main table.
  for (const system of cells.length > 0 ? ["rpc-trusted", "rpc-sandboxed"] as const : []) {
    const label = LABELS[system];
    // Issue 14's targets: the default (sandboxed) path may cost more than the trusted one.
    const sandboxed = system === "rpc-sandboxed";
    const jsonShare = sandboxed ? 0.6 : 0.8;
    const floorTimes = sandboxed ? 3 : 1.5;
    const rpc64 = find(cells, system, 32, 64);
    const json64 = find(cells, "raw-json", 32, 64);
    const grpc64 = find(cells, "grpc", 32, 64);
    out.push({
      target: `${label}: 32 B calls/s at C=64 ≥ ${jsonShare}× raw JSON line`,
      measured: `${formatRate(rpc64.rps)} / ${formatRate(json64.rps)} = ${
        ratio(rpc64.rps / json64.rps)
      }`,
      met: rpc64.rps >= jsonShare * json64.rps,
    });
    out.push({
      target: `${label}: 32 B calls/s at C=64 ≥ 15× @grpc/grpc-js`,
      measured: `${formatRate(rpc64.rps)} / ${formatRate(grpc64.rps)} = ${
        ratio(rpc64.rps / grpc64.rps)
      }`,
      met: rpc64.rps >= 15 * grpc64.rps,
    });
    const rpc1 = find(cells, system, 32, 1);
    const floor1 = find(cells, "floor", 32, 1);
    out.push({
      target: `${label}: p50 at C=1 ≤ ${floorTimes}× raw echo floor (32 B)`,
      measured: `${formatMs(rpc1.p50)} / ${formatMs(floor1.p50)} = ${ratio(rpc1.p50 / floor1.p50)}`,
      met: rpc1.p50 <= floorTimes * floor1.p50,
    });
    if (!sandboxed && rpc64.cpuUs !== undefined) {
      out.push({
        target: `${label}: server CPU per call at C=64 (32 B, default log level) ≤ 3 µs`,
        measured: `${rpc64.cpuUs.toFixed(1)} µs`,
        met: rpc64.cpuUs <= 3,
      });
    }
    for (const concurrency of [1, 16, 64]) {
      const big = find(cells, system, 64 * 1024, concurrency);
      const bigJson = find(cells, "raw-json", 64 * 1024, concurrency);
      if (!big || !bigJson) continue;
      out.push({
        target: `${label}: 64 KiB calls/s at C=${concurrency} ≥ 0.8× raw JSON line`,
        measured: `${formatRate(big.rps)} / ${formatRate(bigJson.rps)} = ${
          ratio(big.rps / bigJson.rps)
        }`,
        met: big.rps >= 0.8 * bigJson.rps,
      });
    }
  }
  for (const cell of extras.python ?? []) {
    if (cell.concurrency !== 64) continue;
    out.push({
      target: `${LABELS["rpc-python"]}: 32 B calls/s at C=64 ≥ 0.5× raw Python echo over a pipe`,
      measured: `${formatRate(cell.rpc.rps)} / ${formatRate(cell.pipe.rps)} = ${
        ratio(cell.rpc.rps / cell.pipe.rps)
      }`,
      met: cell.rpc.rps >= 0.5 * cell.pipe.rps,
    });
  }
  for (const soak of extras.soak ?? []) {
    const steady = soak.samples.slice(2);
    const total = soak.samples.at(-1)!.calls;
    const span = total - steady[0].calls;
    const growth = (soak.slopeKiBPer100k * span / 100_000) / steady[0].rssKiB;
    out.push({
      target: `${LABELS[soak.system]}: memory flat over ${total.toLocaleString("en-US")} calls`,
      measured: `${soak.slopeKiBPer100k.toFixed(0)} KiB per 100k calls after the first step (${
        (growth * 100).toFixed(1)
      }% over ${span.toLocaleString("en-US")})${
        soak.heapSlopeKiBPer100k === undefined
          ? ""
          : `; server's live heap ${soak.heapSlopeKiBPer100k.toFixed(1)} KiB per 100k`
      }`,
      // Flat means no growth trend: RSS that falls (a collection returning memory) is no leak.
      met: growth < 0.05,
    });
  }
  for (const cell of extras.http ?? []) {
    out.push({
      target:
        `rpc HTTP gateway: 32 B requests/s at C=${cell.concurrency} ≥ 0.6× raw Deno.serve echo`,
      measured: `${formatRate(cell.gateway.rps)} / ${formatRate(cell.raw.rps)} = ${
        ratio(cell.gateway.rps / cell.raw.rps)
      }`,
      met: cell.gateway.rps >= 0.6 * cell.raw.rps,
    });
  }
  for (const cell of extras.metricsCost ?? []) {
    out.push({
      target: `metrics cost the TCP path ≤ 5% (32 B calls/s at C=${cell.concurrency})`,
      measured: `${formatRate(cell.with.rps)} with / ${formatRate(cell.without.rps)} without = ${
        ratio(cell.with.rps / cell.without.rps)
      }`,
      met: cell.with.rps >= 0.95 * cell.without.rps,
    });
  }
  if (extras.init) {
    out.push({
      target: "re-init of 1,000 unchanged procedures on two servers < 1 s",
      measured: `${extras.init.againMs.toFixed(0)} ms`,
      met: extras.init.againMs < 1000,
    });
  }
  return out;
}

interface Results {
  date: string;
  machine: { cores: number; os: string; deno: string; node: string; cpu: string };
  /** /proc/loadavg before and after: how busy the machine was besides this run. */
  load: { before: string; after: string };
  options: Options;
  cells: Cell[];
  extras: {
    python?: PythonCell[];
    connectionPerCall?: Awaited<ReturnType<typeof measureConnectionPerCall>>;
    callProcess?: Awaited<ReturnType<typeof measureCallProcess>>;
    init?: Awaited<ReturnType<typeof measureInit>>;
    soak?: Awaited<ReturnType<typeof measureSoak>>[];
    http?: HttpCell[];
    metricsCost?: MetricsCostCell[];
  };
  targets?: ReturnType<typeof targets>;
}

function report(results: Results): string {
  const { cells, options } = results;
  const out: string[] = [];
  out.push(
    `Measured ${results.date} on ${results.machine.cores} cores (${results.machine.cpu}), ${results.machine.os}, Deno ${results.machine.deno}, Node ${results.machine.node}; median of ${options.runs} run(s) of ${options.seconds} s per cell, one connection, loopback. Load average before: ${results.load.before}; after: ${results.load.after}.`,
    "",
  );
  for (const payload of cells.length > 0 ? options.payloads : []) {
    const rows = [];
    for (const concurrency of options.concurrencies) {
      for (const system of SYSTEMS) {
        const cell = find(cells, system, payload, concurrency);
        rows.push([
          String(concurrency),
          LABELS[system],
          formatRate(cell.rps),
          formatMs(cell.p50),
          formatMs(cell.p99),
          cell.cpuUs === undefined ? "" : `${cell.cpuUs.toFixed(1)} µs`,
          cell.errors ? String(cell.errors) : "",
        ]);
      }
    }
    out.push(
      `**${formatBytes(payload)} payload**`,
      "",
      table(["C", "system", "calls/s", "p50", "p99", "server CPU/call", "errors"], rows),
      "",
    );
  }
  const ratioRows = [];
  for (const payload of cells.length > 0 ? options.payloads : []) {
    for (const concurrency of options.concurrencies) {
      for (const system of ["rpc-trusted", "rpc-sandboxed"] as const) {
        const rpc = find(cells, system, payload, concurrency);
        ratioRows.push([
          formatBytes(payload),
          String(concurrency),
          LABELS[system],
          ratio(rpc.rps / find(cells, "raw-json", payload, concurrency).rps),
          ratio(rpc.rps / find(cells, "grpc", payload, concurrency).rps),
          ratio(rpc.p50 / find(cells, "floor", payload, concurrency).p50),
        ]);
      }
    }
  }
  if (ratioRows.length > 0) {
    out.push(
      "**Ratios**",
      "",
      table(
        ["payload", "C", "rpc", "calls/s vs raw JSON", "calls/s vs grpc-js", "p50 vs floor"],
        ratioRows,
      ),
      "",
    );
  }
  const { extras } = results;
  if (extras.python) {
    out.push(
      "**Python** (32 B; rpc: a confined Python echo procedure, one connection; raw: one python3 JSON-lines echo loop, C calls pipelined on its stdin)",
      "",
      table(
        ["C", "rpc calls/s", "p50", "CPU/call", "raw pipe calls/s", "p50", "rpc vs raw"],
        extras.python.map((cell) => [
          String(cell.concurrency),
          formatRate(cell.rpc.rps),
          formatMs(cell.rpc.p50),
          `${cell.rpc.cpuUs.toFixed(1)} µs`,
          formatRate(cell.pipe.rps),
          formatMs(cell.pipe.p50),
          ratio(cell.rpc.rps / cell.pipe.rps),
        ]),
      ),
      "",
    );
  }
  if (extras.http) {
    out.push(
      "**HTTP/JSON** (32 B; C keep-alive connections, one request in flight on each)",
      "",
      table(
        ["C", "system", "requests/s", "p50", "p99", "server CPU/request", "gateway vs raw"],
        extras.http.flatMap((cell) => [
          [
            String(cell.concurrency),
            "rpc HTTP gateway",
            formatRate(cell.gateway.rps),
            formatMs(cell.gateway.p50),
            formatMs(cell.gateway.p99),
            `${cell.gateway.cpuUs.toFixed(0)} µs`,
            ratio(cell.gateway.rps / cell.raw.rps),
          ],
          [
            String(cell.concurrency),
            "raw Deno.serve echo",
            formatRate(cell.raw.rps),
            formatMs(cell.raw.p50),
            formatMs(cell.raw.p99),
            `${cell.raw.cpuUs.toFixed(0)} µs`,
            "",
          ],
        ]),
      ),
      "",
    );
  }
  if (extras.metricsCost) {
    out.push(
      "**The TCP path with and without metrics** (32 B, rpc trusted; with: `--http` on)",
      "",
      table(
        [
          "C",
          "calls/s without",
          "calls/s with",
          "with / without",
          "server CPU/call without",
          "with",
        ],
        extras.metricsCost.map((cell) => [
          String(cell.concurrency),
          formatRate(cell.without.rps),
          formatRate(cell.with.rps),
          ratio(cell.with.rps / cell.without.rps),
          `${cell.without.cpuUs.toFixed(1)} µs`,
          `${cell.with.cpuUs.toFixed(1)} µs`,
        ]),
      ),
      "",
    );
  }
  if (extras.connectionPerCall) {
    out.push(
      "**rpc with a new connection per call** (32 B)",
      "",
      table(
        ["C", "rpc", "calls/s", "p50"],
        extras.connectionPerCall.map((row) => [
          String(row.concurrency),
          LABELS[row.system],
          formatRate(row.rps),
          formatMs(row.p50),
        ]),
      ),
      "",
    );
  }
  if (extras.callProcess) {
    out.push(
      `**A whole process**, start to exit (median of ${extras.callProcess[0].runs.length})`,
      "",
      table(
        ["command", "ms"],
        extras.callProcess.map((row) => [row.what, row.ms.toFixed(0)]),
      ),
      "",
    );
  }
  if (extras.init) {
    out.push(
      `**rpc init of ${extras.init.procedures} procedures on ${extras.init.servers} servers** (whole process)`,
      "",
      table(["run", "ms"], [
        ["first (sends all code)", extras.init.firstMs.toFixed(0)],
        [
          `again, unchanged (median of ${extras.init.againRuns.length})`,
          extras.init.againMs.toFixed(0),
        ],
      ]),
      "",
      `Re-init output: ${extras.init.output.split("\n").join("; ")}`,
      "",
    );
  }
  for (const soak of extras.soak ?? []) {
    out.push(
      `**Server memory over ${soak.samples.at(-1)!.calls.toLocaleString("en-US")} calls, ${
        LABELS[soak.system]
      }** (RSS from /proc/PID/status of the server and every process under it; C=64, 32 B, a new \`rpc bench\` process per step)`,
      "",
      table(
        [
          "calls",
          "RSS MiB",
          "server's live heap MiB",
          ...(soak.samples.some((s) => s.sandboxes)
            ? ["sandboxes' heaps MiB", "their live heap after a full GC MiB"]
            : []),
        ],
        soak.samples.map((s) => [
          s.calls.toLocaleString("en-US"),
          (s.rssKiB / 1024).toFixed(1),
          s.heapKiB === undefined ? "" : (s.heapKiB / 1024).toFixed(1),
          ...(s.sandboxes
            ? [
              (s.sandboxes.committedKiB / 1024).toFixed(1),
              s.sandboxes.liveKiB === undefined ? "—" : (s.sandboxes.liveKiB / 1024).toFixed(1),
            ]
            : []),
        ]),
      ),
      "",
      `Slope after the first step: RSS ${soak.slopeKiBPer100k.toFixed(0)} KiB per 100k calls${
        soak.heapSlopeKiBPer100k === undefined
          ? ""
          : `; the server's live heap after a full collection ${
            soak.heapSlopeKiBPer100k.toFixed(1)
          } KiB per 100k calls`
      }.`,
      "",
    );
  }
  if (results.targets) {
    out.push(
      "**Targets**",
      "",
      table(
        ["target", "measured", "met"],
        results.targets.map((t) => [t.target, t.measured, t.met ? "yes" : "no"]),
      ),
      "",
    );
  }
  return out.join("\n");
}

// ---------------------------------------------------------------------------

async function ensureGrpcInstalled(): Promise<void> {
  try {
    await Deno.stat(join(GRPC_DIR, "node_modules", "@grpc", "grpc-js"));
    return;
  } catch {
    progress("installing @grpc/grpc-js: npm ci --prefix bench/grpc");
  }
  await runCommand("npm", ["ci", "--prefix", GRPC_DIR, "--no-audit", "--no-fund"], 300_000);
}

/** The 1, 5 and 15 minute load averages, e.g. `0.52 0.61 0.70`. */
async function loadAverage(): Promise<string> {
  try {
    return (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ");
  } catch {
    return "unknown";
  }
}

async function machine(): Promise<Results["machine"]> {
  let cpu = "unknown CPU";
  try {
    const info = await Deno.readTextFile("/proc/cpuinfo");
    cpu = /^model name\s*:\s*(.+)$/m.exec(info)?.[1]?.trim() ?? cpu;
  } catch {
    // Not Linux.
  }
  const node = (await runCommand("node", ["--version"], 10_000)).stdout.trim();
  return {
    cores: navigator.hardwareConcurrency,
    os: `${Deno.build.os} ${Deno.osRelease()}`,
    deno: Deno.version.deno,
    node,
    cpu,
  };
}

async function main(): Promise<void> {
  const options = parseOptions(Deno.args);
  if (options.report) {
    const saved: Results = JSON.parse(await Deno.readTextFile(options.report));
    saved.targets = targets(saved.cells, saved.extras);
    console.log(report(saved));
    return;
  }
  const has = (section: Section) => options.sections.includes(section);
  const dir = await Deno.makeTempDir({ prefix: "rpc-bench-compare-" });
  const results: Results = {
    date: new Date().toISOString().slice(0, 10),
    machine: await machine(),
    load: { before: await loadAverage(), after: "" },
    options,
    cells: [],
    extras: {},
  };
  let servers: Record<System, Server> | undefined;
  const stopAll = async () => {
    if (servers) await Promise.all(Object.values(servers).map((server) => server.stop()));
    servers = undefined;
  };
  const onSignal = () => {
    stopAll().finally(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", onSignal);
  try {
    if (has("matrix") || has("connection") || has("process")) {
      await ensureGrpcInstalled();
      servers = await startSystems(dir);
      if (has("matrix")) results.cells = await measureMatrix(servers, options);
      if (has("connection")) {
        results.extras.connectionPerCall = await measureConnectionPerCall(servers, options);
      }
      if (has("process")) {
        results.extras.callProcess = await measureCallProcess(servers, dir, options.quick ? 3 : 10);
      }
      await stopAll();
    }
    if (has("python")) results.extras.python = await measurePython(dir, options);
    if (has("http")) {
      results.extras.http = await measureHttp(dir, options);
      results.extras.metricsCost = await measureMetricsCost(dir, options);
    }
    if (has("init")) results.extras.init = await measureInit(dir, options.quick ? 1 : 3);
    if (has("soak")) {
      results.extras.soak = [];
      for (const system of options.soakSystems) {
        results.extras.soak.push(await measureSoak(system, dir, options.soakCalls));
      }
    }
    results.targets = targets(results.cells, results.extras);
    results.load.after = await loadAverage();
    console.log(report(results));
    if (options.json) {
      await Deno.writeTextFile(options.json, JSON.stringify(results, null, 2) + "\n");
      progress(`wrote ${options.json}`);
    }
  } finally {
    await stopAll();
    Deno.removeSignalListener("SIGINT", onSignal);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) await main();
