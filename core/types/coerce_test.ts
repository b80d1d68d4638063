import assert from "node:assert/strict";
import { coerceArgument, textFits, textType } from "./coerce.ts";
import { formatType, type RpcType } from "./types.ts";

const INT: RpcType = { kind: "int" };
const FLOAT: RpcType = { kind: "float" };
const STR: RpcType = { kind: "str" };
const BOOL: RpcType = { kind: "bool" };
const list = (of: RpcType): RpcType => ({ kind: "list", of });

// ---------------------------------------------------------------------------
// coerceArgument

Deno.test("coerceArgument() reads int text with signs and surrounding spaces", () => {
  assert.equal(coerceArgument(INT, "42"), 42);
  assert.equal(coerceArgument(INT, "-5"), -5);
  assert.equal(coerceArgument(INT, "+3"), 3);
  assert.equal(coerceArgument(INT, " 7 "), 7);
  assert.equal(coerceArgument(INT, "0"), 0);
  assert.equal(coerceArgument(INT, "007"), 7);
});

Deno.test("coerceArgument() reads a huge int as an exact bigint", () => {
  assert.equal(coerceArgument(INT, "12345678901234567890"), 12345678901234567890n);
  assert.equal(coerceArgument(INT, "-12345678901234567890"), -12345678901234567890n);
  assert.equal(coerceArgument(INT, "9007199254740991"), 9007199254740991);
});

Deno.test("coerceArgument() refuses int text that is not a decimal integer", () => {
  for (
    const bad of ["1.5", "1e3", "", " ", "abc", "0x10", "1_000", "--1", "+", "true", "Infinity"]
  ) {
    assert.throws(() => coerceArgument(INT, bad), SyntaxError, `int should refuse ${bad}`);
  }
  assert.throws(() => coerceArgument(INT, "1.5"), /Cannot read "1.5" as int/);
});

Deno.test("coerceArgument() reads float text in every decimal form", () => {
  assert.equal(coerceArgument(FLOAT, "1.5"), 1.5);
  assert.equal(coerceArgument(FLOAT, "-5"), -5);
  assert.equal(coerceArgument(FLOAT, "+3"), 3);
  assert.equal(coerceArgument(FLOAT, "1e3"), 1000);
  assert.equal(coerceArgument(FLOAT, "2.5E-1"), 0.25);
  assert.equal(coerceArgument(FLOAT, ".5"), 0.5);
  assert.equal(coerceArgument(FLOAT, "5."), 5);
  assert.equal(coerceArgument(FLOAT, " 2 "), 2);
});

Deno.test("coerceArgument() refuses float text that is not a finite decimal", () => {
  for (const bad of ["", ".", "e3", "1e", "NaN", "Infinity", "-Infinity", "1e999", "0x10", "1,5"]) {
    assert.throws(() => coerceArgument(FLOAT, bad), SyntaxError, `float should refuse ${bad}`);
  }
});

Deno.test("coerceArgument() reads bool only as true or false", () => {
  assert.equal(coerceArgument(BOOL, "true"), true);
  assert.equal(coerceArgument(BOOL, "false"), false);
  assert.equal(coerceArgument(BOOL, " true "), true);
  for (const bad of ["1", "0", "yes", "True", "FALSE", ""]) {
    assert.throws(() => coerceArgument(BOOL, bad), SyntaxError, `bool should refuse ${bad}`);
  }
});

Deno.test("coerceArgument() takes str text exactly as given", () => {
  assert.equal(coerceArgument(STR, "hello"), "hello");
  assert.equal(coerceArgument(STR, "  spaced  "), "  spaced  ");
  assert.equal(coerceArgument(STR, ""), "");
  assert.equal(coerceArgument(STR, "42"), "42");
  assert.equal(coerceArgument(STR, "[1,2]"), "[1,2]");
});

Deno.test("coerceArgument() reads lists written as JSON arrays", () => {
  assert.deepEqual(coerceArgument(list(INT), "[1, 2, 3]"), [1, 2, 3]);
  assert.deepEqual(coerceArgument(list(STR), '["a", "b,c"]'), ["a", "b,c"]);
  assert.deepEqual(coerceArgument(list(FLOAT), "[1, 2.5]"), [1, 2.5]);
  assert.deepEqual(coerceArgument(list(BOOL), "[true,false]"), [true, false]);
  assert.deepEqual(coerceArgument(list(list(INT)), "[[1], [2, 3], []]"), [[1], [2, 3], []]);
  assert.deepEqual(coerceArgument(list(INT), " [12345678901234567890] "), [12345678901234567890n]);
});

Deno.test("coerceArgument() reads lists written as comma-separated items", () => {
  assert.deepEqual(coerceArgument(list(INT), "1,2,3"), [1, 2, 3]);
  assert.deepEqual(coerceArgument(list(INT), "1, -2, +3"), [1, -2, 3]);
  assert.deepEqual(coerceArgument(list(FLOAT), "1.5,2,1e3"), [1.5, 2, 1000]);
  assert.deepEqual(coerceArgument(list(STR), "a,b"), ["a", "b"]);
  assert.deepEqual(coerceArgument(list(BOOL), "true,false"), [true, false]);
  assert.deepEqual(coerceArgument(list(INT), "7"), [7]);
});

Deno.test("coerceArgument() reads an empty string or [] as the empty list", () => {
  assert.deepEqual(coerceArgument(list(INT), ""), []);
  assert.deepEqual(coerceArgument(list(INT), "  "), []);
  assert.deepEqual(coerceArgument(list(INT), "[]"), []);
  assert.deepEqual(coerceArgument(list(STR), ""), []);
  assert.deepEqual(coerceArgument(list(list(INT)), "[]"), []);
});

Deno.test("coerceArgument() refuses bad list text with SyntaxError", () => {
  const cases: [RpcType, string][] = [
    [list(INT), "[1, 2"],
    [list(INT), "[1, 2.5]"],
    [list(INT), '["1"]'],
    [list(INT), "1,,2"],
    [list(INT), "1,x"],
    [list(INT), "1,2,"],
    [list(BOOL), "true,1"],
    [list(list(INT)), "1,2"],
    [list(list(INT)), "[1, 2]"],
    [list(STR), "[1]"],
  ];
  for (const [type, text] of cases) {
    assert.throws(
      () => coerceArgument(type, text),
      SyntaxError,
      `${formatType(type)} should refuse ${JSON.stringify(text)}`,
    );
  }
  assert.throws(() => coerceArgument(list(INT), "[1, 2"), /not a valid JSON array/);
  assert.throws(() => coerceArgument(list(INT), "[1, 2.5]"), /expected int at \[1\]/);
  assert.throws(() => coerceArgument(list(list(INT)), "1,2"), /nested lists must be JSON/);
});

// ---------------------------------------------------------------------------
// textFits and textType

Deno.test("textFits() agrees with coerceArgument()", () => {
  assert.equal(textFits(INT, "7"), true);
  assert.equal(textFits(INT, "7.5"), false);
  assert.equal(textFits(STR, "anything"), true);
  assert.equal(textFits(list(INT), "1,x"), false);
  assert.equal(textFits(list(STR), "1,x"), true);
});

Deno.test("textType() names the scalar a text is most exactly", () => {
  const cases: [string, RpcType][] = [
    ["7", INT],
    [" -7 ", INT],
    ["12345678901234567890", INT],
    ["7.5", FLOAT],
    ["1e3", FLOAT],
    ["true", BOOL],
    ["false", BOOL],
    ["True", STR],
    ["hello", STR],
    ["1e999", STR],
  ];
  for (const [text, type] of cases) {
    assert.deepEqual(textType(text), type, JSON.stringify(text));
  }
});

Deno.test("textType() names lists by what all their items are", () => {
  const cases: [string, RpcType][] = [
    ["1,2", list(INT)],
    ["1,2.5", list(FLOAT)],
    ["true,false", list(BOOL)],
    ["1,x", list(STR)],
    ["a,b", list(STR)],
    ["true,1", list(STR)],
    ["[1, 2]", list(INT)],
    ["[1, 2.5]", list(FLOAT)],
    ['["a"]', list(STR)],
    ["[[1], [2]]", list(list(INT))],
    ["[1, 2", STR],
    ["[not json", STR],
  ];
  for (const [text, type] of cases) {
    assert.deepEqual(textType(text), type, JSON.stringify(text));
  }
});

Deno.test("textType() has no type for the empty list, and str for a quoted text", () => {
  assert.equal(textType(""), undefined);
  assert.equal(textType(" "), undefined);
  assert.equal(textType("[]"), undefined);
  assert.deepEqual(textType("3", { quoted: true }), STR);
  assert.deepEqual(textType("", { quoted: true }), STR);
});

Deno.test("textType() of a text is a type the text fits", () => {
  for (const text of ["7", "7.5", "true", "hello", "1,2", "1,2.5", "a,b", "[1, 2]", '["a"]']) {
    const type = textType(text)!;
    assert.ok(textFits(type, text), `${JSON.stringify(text)} fits ${formatType(type)}`);
  }
});
