/**
 * The runners the conformance suite runs procedures with, one line each in
 * {@linkcode RUNNERS}: TypeScript inline in the server (`trusted: true`),
 * TypeScript in a sandbox process, and Python (confined with bubblewrap, as
 * `rpc server` runs it).
 */

import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { sha256Hex } from "../../core/hash.ts";
import type { Language, ProcedureSpec, Runner, ServiceSpec } from "../../core/server/registry.ts";
import { PythonRunner } from "../../core/runners/python.ts";
import { SandboxRunner } from "../../core/runners/sandbox.ts";
import { InlineTypeScriptRunner } from "../../core/runners/typescript.ts";
import { parseSignature } from "../../core/types/types.ts";

/** One runner of the suite. */
export interface RunnerCase {
  name: string;
  language: Language;
  trusted: boolean;
  source: string;
  create(): Runner;
}

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), "fixtures");

/** Every runner; a new one is one line here. */
export const RUNNERS: readonly RunnerCase[] = [
  {
    name: "inline",
    language: "typescript",
    trusted: true,
    source: "procedures.ts",
    create: () => new InlineTypeScriptRunner(),
  },
  {
    name: "sandbox",
    language: "typescript",
    trusted: false,
    source: "procedures.ts",
    create: () => new SandboxRunner({ size: 2, env: (name) => Deno.env.get(name) }),
  },
  {
    name: "python",
    language: "python",
    trusted: false,
    source: "procedures.py",
    create: () => new PythonRunner({ size: 2, env: (name) => Deno.env.get(name) }),
  },
];

/** The procedures every pair serves: name, args, returns, yields. */
const SIGNATURES: [string, string[], string[], string[]?][] = [
  ["echo", ["str"], ["str"]],
  ["add", ["int", "int"], ["int"]],
  ["add", ["float", "float"], ["float"]],
  ["add", ["List[int]"], ["int"]],
  ["pair", ["List[int]", "List[str]"], ["List[str]"]],
  ["fail", ["str"], ["str"]],
  ["countdown", ["int"], ["str"], ["int"]],
  ["sleep", ["float"], ["str"]],
];

/**
 * The services of one runner: `conf` (anyone may call it) with every
 * procedure, and `private` (only the client `owner` may) with `echo`.
 */
export async function servicesFor(runner: RunnerCase): Promise<ServiceSpec[]> {
  const path = join(FIXTURES, runner.source);
  const hash = sha256Hex(await Deno.readTextFile(path));
  const spec = (service: string, [rpc, args, returns, yields]: typeof SIGNATURES[number]) =>
    ({
      service,
      rpc,
      signature: parseSignature(args, returns, yields),
      language: runner.language,
      path,
      hash,
      trusted: runner.trusted,
    }) satisfies ProcedureSpec;
  return [
    { name: "conf", procedures: SIGNATURES.map((signature) => spec("conf", signature)) },
    { name: "private", tenants: ["owner"], procedures: [spec("private", SIGNATURES[0])] },
  ];
}
