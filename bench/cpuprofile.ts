/**
 * Summarizes a V8 `.cpuprofile` (from `deno run --cpu-prof`): the functions
 * that took the most time, by self time and by total time (self plus
 * callees), as a share of all samples.
 *
 *     deno run --allow-read bench/cpuprofile.ts PROFILE.cpuprofile [TOP]
 *
 * @module
 */

/** One node of the profile's call tree. */
interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

/** The parts of a `.cpuprofile` this reads. */
export interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** A function's share of the samples. */
export interface FunctionTime {
  name: string;
  selfMs: number;
  totalMs: number;
}

/** Self and total time per function (name, file and line), longest self time first. */
export function functionTimes(profile: CpuProfile): FunctionTime[] {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) {
    for (const child of node.children ?? []) parent.set(child, node.id);
  }
  const label = (node: ProfileNode) => {
    const { functionName, url, lineNumber } = node.callFrame;
    const file = url.replace(/^.*\/(?=[^/]+\/[^/]+$)/, "");
    return `${functionName || "(anonymous)"} ${file ? `${file}:${lineNumber + 1}` : ""}`.trim();
  };
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const ms = (profile.timeDeltas[i + 1] ?? 0) / 1000;
    let id: number | undefined = profile.samples[i];
    const seen = new Set<string>();
    const leaf = byId.get(id)!;
    self.set(label(leaf), (self.get(label(leaf)) ?? 0) + ms);
    while (id !== undefined) {
      const name = label(byId.get(id)!);
      if (!seen.has(name)) {
        seen.add(name);
        total.set(name, (total.get(name) ?? 0) + ms);
      }
      id = parent.get(id);
    }
  }
  return [...total.keys()]
    .map((name) => ({ name, selfMs: self.get(name) ?? 0, totalMs: total.get(name)! }))
    .sort((a, b) => b.selfMs - a.selfMs);
}

if (import.meta.main) {
  const [path, topText] = Deno.args;
  if (!path) {
    console.error("usage: cpuprofile.ts PROFILE.cpuprofile [TOP]");
    Deno.exit(2);
  }
  const top = Number(topText ?? 25);
  const times = functionTimes(JSON.parse(await Deno.readTextFile(path)));
  const all = times.reduce((sum, time) => sum + time.selfMs, 0);
  const pct = (ms: number) => `${((ms / all) * 100).toFixed(1).padStart(5)}%`;
  console.log(`${all.toFixed(0)} ms sampled\n\nself   total  function`);
  for (const time of times.slice(0, top)) {
    console.log(`${pct(time.selfMs)} ${pct(time.totalMs)}  ${time.name}`);
  }
  console.log("\nby total time:");
  for (const time of [...times].sort((a, b) => b.totalMs - a.totalMs).slice(0, top)) {
    console.log(`${pct(time.selfMs)} ${pct(time.totalMs)}  ${time.name}`);
  }
}
