import assert from "node:assert/strict";
import {
  DOT_COMMAND_NAMES,
  helpLines,
  parseLine,
  ReplSyntaxError,
  splitCallTarget,
  tokenize,
} from "./repl_syntax.ts";

const texts = (line: string) => tokenize(line).map((token) => token.text);

Deno.test("tokenize() splits words at any white space", () => {
  assert.deepEqual(texts("  a\tb   c  "), ["a", "b", "c"]);
  assert.deepEqual(tokenize("ab cd").map(({ start, end }) => [start, end]), [[0, 2], [3, 5]]);
});

Deno.test("tokenize() reads double-quoted JSON strings with spaces and escapes", () => {
  const [token] = tokenize(String.raw`"hello world \"x\" \u00e9\n"`);
  assert.equal(token.text, 'hello world "x" é\n');
  assert.equal(token.quoted, true);
});

Deno.test("tokenize() reads single-quoted strings literally", () => {
  const [token] = tokenize(String.raw`'a \n "b"'`);
  assert.equal(token.text, String.raw`a \n "b"`);
  assert.equal(token.quoted, true);
});

Deno.test("tokenize() keeps an empty quoted string", () => {
  assert.deepEqual(texts(`s.r "" ''`), ["s.r", "", ""]);
});

Deno.test("tokenize() reads JSON lists with spaces as one token", () => {
  assert.deepEqual(texts(`s.r [1, 2, 3] ["a b", "c]"] [[1], [2, 3]]`), [
    "s.r",
    "[1, 2, 3]",
    `["a b", "c]"]`,
    "[[1], [2, 3]]",
  ]);
  assert.equal(tokenize("[1, 2]")[0].quoted, false);
});

Deno.test("tokenize() leaves comma-separated lists and negative numbers as words", () => {
  assert.deepEqual(texts("s.r 1,2,3 -5 -1.5e3"), ["s.r", "1,2,3", "-5", "-1.5e3"]);
});

Deno.test("tokenize() reports unterminated strings and lists with their column", () => {
  assert.throws(() => tokenize(`s.r "abc`), (error: unknown) => {
    assert.ok(error instanceof ReplSyntaxError);
    assert.equal(error.column, 5);
    assert.match(error.message, /Unterminated string at column 5/);
    return true;
  });
  assert.throws(() => tokenize("s.r 'x"), /Unterminated string at column 5/);
  assert.throws(() => tokenize("s.r [1, [2]"), /Unclosed \[ at column 5/);
});

Deno.test("tokenize() wants a space after a closing quote or bracket", () => {
  assert.throws(() => tokenize(`"a"b`), /Expected a space after the closing quote at column 4/);
  assert.throws(() => tokenize(`[1]x`), /Expected a space after \] at column 4/);
});

Deno.test("tokenize() reports a bad escape in a string", () => {
  assert.throws(() => tokenize(String.raw`"\q"`), /bad escape at column 1/);
});

Deno.test("parseLine() reads a call with its arguments", () => {
  const line = parseLine(`service1.rpc1 42 "hello"`);
  assert.equal(line.kind, "call");
  if (line.kind !== "call") return;
  assert.equal(line.service, "service1");
  assert.equal(line.rpc, "rpc1");
  assert.deepEqual(line.args.map((arg) => [arg.text, arg.quoted]), [["42", false], [
    "hello",
    true,
  ]]);
});

Deno.test("parseLine() reads a call without arguments", () => {
  assert.deepEqual(parseLine("svc.ping"), { kind: "call", service: "svc", rpc: "ping", args: [] });
});

Deno.test("parseLine() splits the call target at its last dot", () => {
  const line = parseLine("a.b.c 1");
  assert.ok(line.kind === "call" && line.service === "a.b" && line.rpc === "c");
});

Deno.test("parseLine() reads empty lines and # comments as nothing", () => {
  assert.deepEqual(parseLine(""), { kind: "empty" });
  assert.deepEqual(parseLine("   "), { kind: "empty" });
  assert.deepEqual(parseLine("  # service1.rpc1 1 a"), { kind: "empty" });
});

Deno.test("parseLine() reads every command with its words", () => {
  for (const name of DOT_COMMAND_NAMES) {
    assert.deepEqual(parseLine(`${name} x "y z"`), { kind: "command", name, args: ["x", "y z"] });
  }
});

Deno.test("parseLine() refuses an unknown command, naming the known ones", () => {
  assert.throws(() => parseLine(".quit"), /Unknown command \.quit \(commands: \.help .*\.exit\)/);
});

Deno.test("parseLine() refuses a first word that is not service.rpc", () => {
  assert.throws(() => parseLine("rpc1 1"), /Expected service\.rpc or a \.command, got "rpc1"/);
  assert.throws(() => parseLine("service1. 1"), /Expected service\.rpc/);
  assert.throws(() => parseLine(".rpc1"), /Unknown command/);
  assert.throws(() => parseLine(`"s.r" 1`), /Expected service\.rpc/);
});

Deno.test("splitCallTarget() needs text on both sides of the dot", () => {
  assert.deepEqual(splitCallTarget("s.r"), { service: "s", rpc: "r" });
  assert.equal(splitCallTarget("s."), undefined);
  assert.equal(splitCallTarget(".r"), undefined);
  assert.equal(splitCallTarget("sr"), undefined);
});

Deno.test("helpLines() documents the syntax and every command", () => {
  const help = helpLines().join("\n");
  assert.match(help, /service1\.rpc1 42 "hello world"/);
  for (const name of DOT_COMMAND_NAMES) assert.ok(help.includes(name), name);
});
