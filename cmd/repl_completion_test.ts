import assert from "node:assert/strict";
import type { ServiceDescription } from "../core/wire/message.ts";
import { completeLine, type CompletionContext, signatureHint } from "./repl_completion.ts";
import { DOT_COMMAND_NAMES } from "./repl_syntax.ts";

const services: ServiceDescription[] = [
  {
    name: "service1",
    rpcs: [
      { name: "rpc1", args: ["int", "str"], returns: ["str"], doc: "Repeat a string n times." },
      { name: "rpc2", args: ["List[int]", "List[str]"], returns: ["str"] },
      { name: "add", args: ["int", "int"], returns: ["int"] },
      { name: "add", args: ["float", "float"], returns: ["float"] },
    ],
  },
  { name: "service2", rpcs: [{ name: "rpc3", args: ["float"], returns: ["str"] }] },
];

const context: CompletionContext = { servers: ["s1", "s2"], clients: ["c1", "c2"], services };

const complete = (line: string, cursor = line.length) => completeLine(line, cursor, context);

Deno.test("completeLine() offers the dot-commands for a first word starting with a dot", () => {
  assert.deepEqual(complete(".").candidates, DOT_COMMAND_NAMES);
  assert.deepEqual(complete(".d").candidates, [".describe"]);
  assert.deepEqual(complete(".x").candidates, []);
});

Deno.test("completeLine() offers service names ending in a dot", () => {
  assert.deepEqual(complete("").candidates, ["service1.", "service2."]);
  assert.deepEqual(complete("service2").candidates, ["service2."]);
});

Deno.test("completeLine() offers the RPCs of a service once, however many overloads", () => {
  assert.deepEqual(complete("service1.").candidates, [
    "service1.rpc1",
    "service1.rpc2",
    "service1.add",
  ]);
  const partial = complete("service1.r");
  assert.deepEqual(partial.candidates, ["service1.rpc1", "service1.rpc2"]);
  assert.equal(partial.start, 0);
  assert.equal(partial.end, 10);
  assert.equal(partial.hint, undefined);
  assert.deepEqual(complete("nope.r").candidates, []);
});

Deno.test("completeLine() hints the signatures when one RPC remains", () => {
  const done = complete("service1.rpc1");
  assert.deepEqual(done.candidates, ["service1.rpc1"]);
  assert.deepEqual(done.hint, ["service1.rpc1(int, str) -> str  Repeat a string n times."]);
});

Deno.test("completeLine() hints every overload after a complete RPC and a space", () => {
  const after = complete("service1.add 1 ");
  assert.deepEqual(after.candidates, []);
  assert.deepEqual(after.hint, [
    "service1.add(int, int) -> int",
    "service1.add(float, float) -> float",
  ]);
  assert.equal(after.start, 15);
  assert.equal(complete("service1.nope ").hint, undefined);
});

Deno.test("completeLine() offers servers after .use, clients after .as", () => {
  assert.deepEqual(complete(".use ").candidates, ["s1", "s2"]);
  assert.deepEqual(complete(".use s2").candidates, ["s2"]);
  assert.equal(complete(".use s").start, 5);
  assert.deepEqual(complete(".as c").candidates, ["c1", "c2"]);
});

Deno.test("completeLine() offers services and RPCs after .describe, on/off after .timing", () => {
  assert.deepEqual(complete(".describe service2").candidates, ["service2", "service2.rpc3"]);
  assert.deepEqual(complete(".timing o").candidates, ["on", "off"]);
  assert.deepEqual(complete(".timing on ").candidates, []);
  assert.deepEqual(complete(".list ").candidates, []);
});

Deno.test("completeLine() looks only at the text before the cursor", () => {
  const middle = complete("service1.r 42", 10);
  assert.deepEqual(middle.candidates, ["service1.rpc1", "service1.rpc2"]);
  assert.equal(middle.end, 10);
});

Deno.test("signatureHint() is undefined for unknown names", () => {
  assert.equal(signatureHint(services, "service9.rpc1"), undefined);
  assert.equal(signatureHint(services, "service1"), undefined);
});
