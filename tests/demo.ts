/**
 * The demo behind `deno task demo`: starts servers s1 and s2 of the
 * repository's init.yaml with nothing installed, deploys the example
 * procedures (TypeScript and Python) with `rpc init`, runs a walkthrough of
 * `rpc` commands (each command line, its output and its exit code), then
 * stops the servers.
 *
 * The walkthrough is a list of steps ({@linkcode steps}); each step is one
 * `rpc` command line with the exit code it should have. The demo exits 0 when
 * every step exits as expected, 1 otherwise, and 130 on Ctrl-C. The servers
 * are stopped in every case.
 *
 * Run from the repository root: `deno run --allow-all tests/demo.ts`
 *
 * @module
 */

import { join } from "node:path";
import {
  INIT_YAML,
  portInUse,
  ROOT,
  rpc,
  type ServerProcess,
  startServer,
  writeInitYaml,
} from "./helpers.ts";
import { parseCluster } from "../core/deploy/cluster.ts";

/** One command of the walkthrough. */
export interface Step {
  /** Printed as a heading when it differs from the previous step's. */
  section: string;
  /** What the step shows, in a few words. */
  title: string;
  /** Arguments after `rpc`. */
  args: string[];
  /** The exit code the command should have. */
  expect: number;
}

/** The admin secret the demo's servers are started with. */
const DEMO_TOKEN = "demo-admin-secret";

/** How to name each server on the command line: its init.yaml name, or host:port. */
export type ServerRefs = Record<"s1" | "s2", string>;

/**
 * The walkthrough. `at` names a server as the command line should; `config`
 * is the init.yaml the commands use.
 */
export function steps(at: ServerRefs, config = "init.yaml"): Step[] {
  const deploy = "Deploy with rpc init (the servers started empty)";
  const normal = "Calls that succeed";
  const failing = "Every exception kind (the exit code says which)";
  return [
    {
      section: deploy,
      title: "the plan: what each server would get (changes nothing)",
      args: ["init", config, "--dry-run"],
      expect: 0,
    },
    {
      section: deploy,
      title:
        "deploy: only what a server lacks is sent (RPC_ADMIN_TOKEN holds the servers' admin secret)",
      args: ["init", config],
      expect: 0,
    },
    {
      section: deploy,
      title: "deploy again: nothing changed, so no code is sent",
      args: ["init", config],
      expect: 0,
    },
    {
      section: deploy,
      title: "what s2 holds now: SHA-256 of every procedure, TypeScript and Python",
      args: ["hash", "--server", at.s2],
      expect: 0,
    },
    {
      section: normal,
      title: "stats(List[float]) -> (float, float): a Python procedure",
      args: ["call", "--as", "c2", at.s2, "service2", "stats", "1,2,3.5"],
      expect: 0,
    },
    {
      section: normal,
      title: "countdown(int) yields int: a streaming procedure, parts printed as they arrive",
      args: ["call", "--as", "c1", at.s1, "service1", "countdown", "3"],
      expect: 0,
    },
    {
      section: normal,
      title: "rpc1(int, str): repeat a string",
      args: ["call", "--as", "c1", at.s1, "service1", "rpc1", "3", "ab"],
      expect: 0,
    },
    {
      section: normal,
      title: "rpc2(List[int], List[str]): lists as comma-separated text",
      args: ["call", "--as", "c1", at.s1, "service1", "rpc2", "1,2,3", "a,b,c"],
      expect: 0,
    },
    {
      section: normal,
      title: "rpc2 with lists as JSON, and JSON output",
      args: ["call", "--as", "c2", "--json", at.s1, "service1", "rpc2", "[10, 20]", '["x", "y"]'],
      expect: 0,
    },
    {
      section: normal,
      title: "add, overload (int, int)",
      args: ["call", "--as", "c1", at.s1, "service1", "add", "2", "3"],
      expect: 0,
    },
    {
      section: normal,
      title: "add, overload (float, float)",
      args: ["call", "--as", "c1", at.s1, "service1", "add", "1.5", "2.25"],
      expect: 0,
    },
    {
      section: normal,
      title: "add, overload (List[int])",
      args: ["call", "--as", "c1", at.s1, "service1", "add", "1,2,3,4"],
      expect: 0,
    },
    {
      section: normal,
      title: "divmod: two return values, one per line",
      args: ["call", "--as", "c1", at.s1, "service1", "divmod", "17", "5"],
      expect: 0,
    },
    {
      section: normal,
      title: "rpc3 on s2 (service2 is provided by s2 only; c2 is a tenant)",
      args: ["call", "--as", "c2", at.s2, "service2", "rpc3", "1.5", "1,2,3"],
      expect: 0,
    },
    {
      section: failing,
      title: "Execution Exception: the procedure threw (no stack trace crosses the wire)",
      args: ["call", "--as", "c1", at.s1, "service1", "rpc1", "--", "-1", "ab"],
      expect: 10,
    },
    {
      section: failing,
      title: "Execution Exception from Python: the exception's type and message",
      args: ["call", "--as", "c2", at.s2, "service2", "stats", ""],
      expect: 10,
    },
    {
      section: failing,
      title: "Invalid Arguments: the server lists the valid signatures",
      args: ["call", "--as", "c1", "--types", "str,int", at.s1, "service1", "rpc1", "ab", "3"],
      expect: 11,
    },
    {
      section: failing,
      title: "Service Not Found: s1 does not provide service2",
      args: ["call", "--as", "c2", at.s1, "service2", "rpc3", "1.5", "1,2"],
      expect: 12,
    },
    {
      section: failing,
      title: "RPC Not Found",
      args: ["call", "--as", "c1", at.s1, "service1", "rpc9"],
      expect: 13,
    },
    {
      section: failing,
      title: "Client Not Registered: c1 is not a tenant of service2",
      args: ["call", "--as", "c1", at.s2, "service2", "rpc3", "1.5", "1,2"],
      expect: 14,
    },
    {
      section: failing,
      title: "Client Not Registered: c3 must come from 127.0.0.3, not 127.0.0.1 (logged)",
      args: ["call", "--as", "c3", at.s1, "service1", "rpc1", "1", "a"],
      expect: 14,
    },
  ];
}

const encoder = new TextEncoder();

/** Writes to stdout at once, so the walkthrough appears as it runs. */
function say(text = ""): void {
  Deno.stdout.writeSync(encoder.encode(`${text}\n`));
}

/** Quotes an argument for display the way a POSIX shell would need it. */
export function shellQuote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`;
}

function indent(text: string): string {
  return text.trimEnd().split("\n").map((line) => `    ${line}`).join("\n");
}

/**
 * Starts one server on the port init.yaml gives it; if that port is busy,
 * on a free port instead. Returns the server and how to name it in commands.
 */
async function startDemoServer(
  name: "s1" | "s2",
  port: number,
  extraArgs: string[],
): Promise<{ server: ServerProcess; ref: string }> {
  if (portInUse(port)) {
    say(`note: port ${port} is busy; starting ${name} on a free port instead`);
  } else {
    try {
      return { server: await startServer({ name, config: null, port, extraArgs }), ref: name };
    } catch (error) {
      // Taken meanwhile, most likely; if not, the second attempt fails the same way.
      say(`note: ${name} could not listen on port ${port}; trying a free port`);
      say(indent((error as Error).message));
    }
  }
  const server = await startServer({ name, config: null, port: 0, extraArgs });
  return { server, ref: server.address };
}

/** Runs the demo; returns the exit code. */
async function main(): Promise<number> {
  const interrupted = new AbortController();
  const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
  const onSignal = () => interrupted.abort();
  for (const signal of signals) Deno.addSignalListener(signal, onSignal);
  const servers: ServerProcess[] = [];
  const scratch = await Deno.makeTempDir({ prefix: "rpc-demo-" });
  let failures = 0;
  try {
    const cluster = parseCluster(await Deno.readTextFile(INIT_YAML), INIT_YAML);
    const refs = {} as ServerRefs;
    const tokenFile = join(scratch, "admin-token");
    await Deno.writeTextFile(tokenFile, DEMO_TOKEN);
    say("# rpc demo: two servers, deployed from init.yaml with `rpc init`, driven by `rpc call`");
    say(`# (commands run in ${ROOT}, so rpc reads ./init.yaml)`);
    say();
    const ports: Record<string, { ip: string; port: number }> = {};
    for (const name of ["s1", "s2"] as const) {
      const entry = cluster.servers.get(name);
      if (!entry) throw new Error(`init.yaml has no server ${name}`);
      const { server, ref } = await startDemoServer(name, entry.port, [
        "--admin-token-file",
        tokenFile,
      ]);
      servers.push(server);
      refs[name] = ref;
      ports[name] = { ip: entry.host, port: server.port };
      say(
        `started rpc server ${name} on ${server.address} (pid ${server.process.pid}), nothing installed`,
      );
      if (interrupted.signal.aborted) return 130;
    }
    // When a port was busy, the commands need an init.yaml with the ports in use.
    let config = "init.yaml";
    if (servers.some((server, i) => server.port !== cluster.servers.get(["s1", "s2"][i])!.port)) {
      const moved = await writeInitYaml({ base: INIT_YAML, servers: ports });
      config = moved.path;
      say(`note: using ${config}, a copy of init.yaml with the ports in use`);
    }
    let section = "";
    let number = 0;
    for (const step of steps(refs, config)) {
      if (interrupted.signal.aborted) return 130;
      if (step.section !== section) {
        section = step.section;
        say();
        say(`## ${section}`);
      }
      number++;
      say();
      say(`${number}. ${step.title}`);
      say(`  $ rpc ${step.args.map(shellQuote).join(" ")}`);
      let result;
      try {
        result = await rpc(step.args, {
          signal: interrupted.signal,
          env: {
            RPC_ADMIN_TOKEN: DEMO_TOKEN,
            ...(config === "init.yaml" ? {} : { RPC_CONFIG: config }),
          },
        });
      } catch (error) {
        if (interrupted.signal.aborted) return 130;
        throw error;
      }
      if (result.stdout.trim()) say(indent(result.stdout));
      if (result.stderr.trim()) say(indent(result.stderr));
      const ok = result.code === step.expect;
      if (!ok) failures++;
      say(`  [exit ${result.code}]${ok ? "" : `  UNEXPECTED: expected exit ${step.expect}`}`);
    }
  } finally {
    if (servers.length > 0) {
      say();
      say("## Stopping the servers (SIGTERM)");
      const statuses = await Promise.all(servers.map((server) => server.stop()));
      servers.forEach((server, i) => {
        say();
        say(`server log (stderr) of pid ${server.process.pid}, exit ${statuses[i].code}:`);
        say(indent(server.stderrText()));
      });
    }
    for (const signal of signals) Deno.removeSignalListener(signal, onSignal);
    await Deno.remove(scratch, { recursive: true }).catch(() => {});
  }
  say();
  if (failures > 0) {
    say(`demo: ${failures} step(s) did not exit as expected`);
    return 1;
  }
  say("demo: every step exited as expected");
  return 0;
}

if (import.meta.main) {
  let code: number;
  try {
    code = await main();
  } catch (error) {
    console.error(`demo failed: ${(error as Error).stack ?? error}`);
    code = 1;
  }
  if (code === 130) say("demo: interrupted; servers stopped");
  Deno.exit(code);
}
