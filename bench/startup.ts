/**
 * How long `rpc` takes as a whole process, start to exit, against `deno run`
 * of an empty file on the same machine in the same minutes:
 *
 * - `rpc --version` (target: at most 2× the empty file);
 * - `rpc call` of a trusted echo on a running server, by `host:port` from a
 *   directory without init.yaml (target: at most 3×), and by name with
 *   `--config`, which also reads init.yaml;
 * - one Tab of shell completion at four places (target: at most 150 ms each).
 *
 * Each case runs `--runs` times (default 20), the cases taking turns so that
 * a busy minute weighs on all of them alike; the median is reported. The
 * machine's load average is printed before and after. `--main FILE` measures
 * another checkout's `main.ts`, `--bin FILE` a compiled binary instead of
 * `deno run main.ts`; `--before FILE` adds every rpc case again for another
 * checkout's `main.ts` (e.g. the commit before a change), measured in the same
 * turns, so that both see the same minutes of a shared machine.
 *
 *     deno task bench:startup
 *     deno task bench:startup --runs 5 --json startup.json
 *     deno task bench:startup --before /tmp/rpc-before/main.ts
 *     deno task bench:startup --bin dist/rpc
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import { freePort, MAIN, startServer } from "../tests/helpers.ts";

const DENO = Deno.execPath();

/** One measured command line. */
interface Case {
  label: string;
  /** The command and its arguments. */
  command: [string, ...string[]];
  /** The target: at most `factor` × the empty file, or at most `ms`. */
  target?: { factor: number } | { ms: number };
  cwd: string;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

async function loadAverage(): Promise<string> {
  try {
    return (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ");
  } catch {
    return "unknown";
  }
}

/** Runs a command once; fails unless it exits 0. Returns the wall time in ms. */
async function timeOnce(entry: Case): Promise<number> {
  const [command, ...args] = entry.command;
  const started = performance.now();
  const output = await new Deno.Command(command, {
    args,
    cwd: entry.cwd,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000),
  }).output();
  const ms = performance.now() - started;
  if (!output.success) {
    throw new Error(
      `${entry.label} failed (exit ${output.code}):\n${new TextDecoder().decode(output.stderr)}`,
    );
  }
  return ms;
}

const ECHO = `/** Returns its argument. */
export function echo(text: string): string {
  return text;
}
`;

function echoInitYaml(port: number): string {
  return `network:
  servers:
    - bench: { ip: 127.0.0.1, port: ${port} }
  clients:
    - c1: { ip: 127.0.0.1 }
service:
  - bench:
      providers: [bench]
      tenants: [c1]
      rpcs: [echo]
rpc:
  - echo:
      args: [str]
      returns: [str]
      src: echo.ts
      trusted: true
`;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      runs: { type: "string", default: "20" },
      main: { type: "string", default: MAIN },
      bin: { type: "string" },
      before: { type: "string" },
      json: { type: "string" },
    },
  });
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs: not a count: ${values.runs}`);
  const rpcWith = (main: string) => (...args: string[]): [string, ...string[]] =>
    values.bin && main === values.main
      ? [values.bin, ...args]
      : [DENO, "run", "--allow-all", main, ...args];

  const dir = await Deno.makeTempDir({ prefix: "rpc-startup-" });
  const home = join(dir, "cluster");
  const empty = join(dir, "empty");
  await Deno.mkdir(home);
  await Deno.mkdir(empty);
  await Deno.writeTextFile(join(empty, "empty.ts"), "");
  await Deno.writeTextFile(join(home, "echo.ts"), ECHO);
  const config = join(home, "init.yaml");
  const port = freePort();
  await Deno.writeTextFile(config, echoInitYaml(port));
  const server = await startServer({ config, name: "bench", cwd: home, port });
  try {
    const address = `127.0.0.1:${server.port}`;
    const rpcCases = (rpc: ReturnType<typeof rpcWith>, suffix: string): Case[] => [
      {
        label: `rpc --version${suffix}`,
        command: rpc("--version"),
        target: { factor: 2 },
        cwd: empty,
      },
      {
        label: `rpc call HOST:PORT, trusted echo${suffix}`,
        command: rpc("call", "--as", "c1", address, "bench", "echo", "hello"),
        target: { factor: 3 },
        cwd: empty,
      },
      {
        label: `rpc call --config init.yaml SERVER, trusted echo${suffix}`,
        command: rpc("call", "--config", config, "--as", "c1", "bench", "bench", "echo", "hello"),
        cwd: empty,
      },
      {
        label: `Tab: rpc <Tab> (subcommands)${suffix}`,
        command: rpc("completions", "bash", ""),
        target: { ms: 150 },
        cwd: home,
      },
      {
        label: `Tab: rpc call --as <Tab> (clients of init.yaml)${suffix}`,
        command: rpc("completions", "bash", "call", "--as", ""),
        target: { ms: 150 },
        cwd: home,
      },
      {
        label: `Tab: rpc call --as c1 bench <Tab> (asks the server)${suffix}`,
        command: rpc("completions", "bash", "call", "--as", "c1", "bench", ""),
        target: { ms: 150 },
        cwd: home,
      },
      {
        label: `Tab: rpc server --name <Tab>${suffix}`,
        command: rpc("completions", "bash", "server", "--name", ""),
        target: { ms: 150 },
        cwd: home,
      },
    ];
    const cases: Case[] = [
      {
        label: "deno run -A of an empty file",
        command: [DENO, "run", "--allow-all", join(empty, "empty.ts")],
        cwd: empty,
      },
      ...rpcCases(rpcWith(values.main!), ""),
      ...(values.before ? rpcCases(rpcWith(values.before), " (before)") : []),
    ];
    const before = await loadAverage();
    console.error(`load average before: ${before}; ${runs} runs of ${cases.length} cases`);
    // One warm-up run each, so that Deno's code cache is filled for all alike.
    for (const entry of cases) await timeOnce(entry);
    const times: number[][] = cases.map(() => []);
    for (let run = 0; run < runs; run++) {
      for (const [i, entry] of cases.entries()) times[i].push(await timeOnce(entry));
    }
    const after = await loadAverage();
    const emptyMs = median(times[0]);
    const rows = cases.map((entry, i) => {
      const ms = median(times[i]);
      const target = entry.target;
      const met = target === undefined
        ? undefined
        : "factor" in target
        ? ms <= target.factor * emptyMs
        : ms <= target.ms;
      return {
        label: entry.label,
        ms,
        ratio: ms / emptyMs,
        target: target === undefined
          ? ""
          : "factor" in target
          ? `≤ ${target.factor}× empty`
          : `≤ ${target.ms} ms`,
        met,
        runs: times[i],
      };
    });
    console.log(`Load average ${before} before, ${after} after; median of ${runs} runs.\n`);
    console.log("| command | ms | × empty | target | met |");
    console.log("| ------- | -- | ------- | ------ | --- |");
    for (const row of rows) {
      console.log(
        `| ${row.label} | ${row.ms.toFixed(0)} | ${row.ratio.toFixed(2)} | ${row.target} | ${
          row.met === undefined ? "" : row.met ? "yes" : "no"
        } |`,
      );
    }
    if (values.json) {
      await Deno.writeTextFile(
        values.json,
        JSON.stringify({ loadBefore: before, loadAfter: after, runs, rows }, null, 2) + "\n",
      );
    }
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) await main();
