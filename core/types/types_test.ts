import assert from "node:assert/strict";
import { ErrorKind, RpcError } from "../errors.ts";
import {
  argumentKey,
  checkValue,
  checkValues,
  describeValue,
  formatSignature,
  formatType,
  formatTypes,
  hasType,
  inferType,
  inspectJson,
  IntegerTooLong,
  MAX_TYPE_DEPTH,
  parseJson,
  parseSignature,
  parseType,
  type RpcType,
  SCALAR_TYPES,
  stringifyJson,
  TypeMismatch,
} from "./types.ts";

const INT: RpcType = { kind: "int" };
const FLOAT: RpcType = { kind: "float" };
const STR: RpcType = { kind: "str" };
const BOOL: RpcType = { kind: "bool" };
const list = (of: RpcType): RpcType => ({ kind: "list", of });

/** `List[List[...int...]]` nested `depth` times. */
function nested(depth: number, spelling = "List"): string {
  return `${spelling}[`.repeat(depth) + "int" + "]".repeat(depth);
}

// ---------------------------------------------------------------------------
// parseType

Deno.test("parseType() reads every scalar type", () => {
  assert.deepEqual(SCALAR_TYPES, ["int", "float", "str", "bool"]);
  for (const name of SCALAR_TYPES) assert.deepEqual(parseType(name), { kind: name });
});

Deno.test("parseType() reads List[T] for every scalar T", () => {
  assert.deepEqual(parseType("List[int]"), list(INT));
  assert.deepEqual(parseType("List[float]"), list(FLOAT));
  assert.deepEqual(parseType("List[str]"), list(STR));
  assert.deepEqual(parseType("List[bool]"), list(BOOL));
});

Deno.test("parseType() reads nested lists", () => {
  assert.deepEqual(parseType("List[List[int]]"), list(list(INT)));
  assert.deepEqual(parseType("List[List[List[str]]]"), list(list(list(STR))));
});

Deno.test("parseType() ignores whitespace around names and brackets", () => {
  assert.deepEqual(parseType("  int  "), INT);
  assert.deepEqual(parseType("\tList[int]\n"), list(INT));
  assert.deepEqual(parseType("List [ int ]"), list(INT));
  assert.deepEqual(parseType(" List[ List [ float ] ] "), list(list(FLOAT)));
});

Deno.test("parseType() accepts the lowercase list[...] alias and formats it as List[...]", () => {
  assert.deepEqual(parseType("list[int]"), list(INT));
  assert.equal(formatType(parseType("list[int]")), "List[int]");
  assert.equal(formatType(parseType(" list[ list[str] ] ")), "List[List[str]]");
  assert.equal(formatType(parseType("list[List[bool]]")), "List[List[bool]]");
});

Deno.test("parseType() rejects unknown and misspelt names with SyntaxError", () => {
  for (
    const bad of [
      "",
      "   ",
      "integer",
      "Int",
      "INT",
      "string",
      "double",
      "intx",
      "int int",
      "List",
      "LIST[int]",
      "Array[int]",
      "List[]",
      "List[integer]",
      "[int]",
      "int[]",
      "List(int)",
      "123",
      "__proto__",
      "constructor",
      "toString",
      "hasOwnProperty",
    ]
  ) {
    assert.throws(() => parseType(bad), SyntaxError, `should reject ${JSON.stringify(bad)}`);
  }
});

Deno.test("parseType() rejects unclosed and extra brackets with SyntaxError", () => {
  for (
    const bad of ["List[int", "List[List[int]", "List[int]]", "int]", "List[int]x", "List[[int]]"]
  ) {
    assert.throws(() => parseType(bad), SyntaxError, `should reject ${JSON.stringify(bad)}`);
  }
  assert.throws(() => parseType("List[int"), /missing "\]"/);
  assert.throws(() => parseType("List[int]]"), /unexpected "\]"/);
});

Deno.test("parseType() error messages quote the name they could not read", () => {
  assert.throws(() => parseType("integer"), (error: unknown) => {
    assert.ok(error instanceof SyntaxError);
    assert.match(error.message, /Cannot parse type "integer"/);
    assert.match(error.message, /int, float, str, bool or List\[\.\.\.\]/);
    return true;
  });
});

Deno.test("parseType() accepts nesting up to the depth limit and rejects one more", () => {
  assert.equal(MAX_TYPE_DEPTH, 8);
  let expected: RpcType = INT;
  for (let i = 0; i < MAX_TYPE_DEPTH; i++) expected = list(expected);
  assert.deepEqual(parseType(nested(MAX_TYPE_DEPTH)), expected);
  assert.throws(() => parseType(nested(MAX_TYPE_DEPTH + 1)), (error: unknown) => {
    assert.ok(error instanceof SyntaxError);
    assert.match(error.message, /nesting 9 exceeds limit 8/);
    return true;
  });
});

Deno.test("parseType() refuses absurd nesting quickly instead of recursing", () => {
  const start = performance.now();
  assert.throws(() => parseType(nested(100_000, "list")), SyntaxError);
  assert.ok(performance.now() - start < 1000);
});

// ---------------------------------------------------------------------------
// Formatting

Deno.test("formatType() and formatTypes() write the canonical spelling", () => {
  assert.equal(formatType(INT), "int");
  assert.equal(formatType(list(list(STR))), "List[List[str]]");
  assert.equal(formatTypes([INT, STR, list(FLOAT)]), "int, str, List[float]");
  assert.equal(formatTypes([]), "");
});

Deno.test("formatSignature() writes one return value bare", () => {
  const signature = parseSignature(["int", "str"], ["str"]);
  assert.equal(formatSignature("rpc1", signature), "rpc1(int, str) -> str");
});

Deno.test("formatSignature() parenthesizes several return values and writes none as ()", () => {
  assert.equal(
    formatSignature("divmod", parseSignature(["int", "int"], ["int", "int"])),
    "divmod(int, int) -> (int, int)",
  );
  assert.equal(formatSignature("ping", parseSignature([], [])), "ping() -> ()");
  assert.equal(
    formatSignature("rpc2", parseSignature(["list[int]", "List[str]"], ["str"])),
    "rpc2(List[int], List[str]) -> str",
  );
});

Deno.test("parseSignature() throws SyntaxError for a bad type name", () => {
  assert.throws(() => parseSignature(["int", "nope"], []), SyntaxError);
  assert.throws(() => parseSignature([], ["List[int"]), SyntaxError);
});

Deno.test("argumentKey() is the same for every spelling of the same types", () => {
  assert.equal(argumentKey([parseType("list[int]"), STR]), argumentKey([list(INT), STR]));
  assert.notEqual(argumentKey([INT, INT]), argumentKey([FLOAT, FLOAT]));
  assert.notEqual(argumentKey([list(INT)]), argumentKey([INT]));
  assert.equal(argumentKey([]), "");
});

Deno.test("describeValue() names a value's shape for messages", () => {
  assert.equal(describeValue(null), "null");
  assert.equal(describeValue([1]), "a list");
  assert.equal(describeValue("x"), 'the string "x"');
  assert.equal(describeValue(3), "the integer 3");
  assert.equal(describeValue(1.5), "the number 1.5");
  assert.equal(describeValue(12345678901234567890n), "the integer 12345678901234567890");
  assert.equal(describeValue(true), "the boolean true");
  assert.equal(describeValue({}), "an object");
  assert.equal(describeValue(undefined), "undefined");
  assert.match(describeValue("a".repeat(100)), /^the string "a{40}…"$/);
});

// ---------------------------------------------------------------------------
// checkValue

Deno.test("checkValue() accepts values of the declared type and returns them unchanged", () => {
  assert.equal(checkValue(INT, 5), 5);
  assert.equal(checkValue(INT, -5), -5);
  assert.equal(checkValue(INT, 0), 0);
  assert.equal(checkValue(FLOAT, 1.5), 1.5);
  assert.equal(checkValue(FLOAT, 2), 2, "an integer is a float");
  assert.equal(checkValue(STR, ""), "");
  assert.equal(checkValue(BOOL, false), false);
  const values = [1, 2, 3];
  assert.equal(checkValue(list(INT), values), values, "same reference when nothing changes");
  assert.deepEqual(checkValue(list(INT), []), []);
});

Deno.test("checkValue() int rejects 1.5, strings, booleans, null and lists", () => {
  for (const bad of [1.5, -0.1, "1", "", true, false, null, undefined, [1], {}, NaN, Infinity]) {
    assert.throws(() => checkValue(INT, bad), TypeMismatch, `int should reject ${String(bad)}`);
  }
});

Deno.test("checkValue() float rejects NaN, Infinity, strings and booleans", () => {
  for (const bad of [NaN, Infinity, -Infinity, "1.5", "1", true, null, [1.5], {}]) {
    assert.throws(() => checkValue(FLOAT, bad), TypeMismatch, `float should reject ${String(bad)}`);
  }
});

Deno.test("checkValue() str rejects numbers, booleans, null and lists", () => {
  for (const bad of [1, 1.5, 0, true, null, undefined, ["a"], {}, 1n]) {
    assert.throws(() => checkValue(STR, bad), TypeMismatch, `str should reject ${String(bad)}`);
  }
});

Deno.test("checkValue() bool rejects 0, 1 and the strings true/false", () => {
  for (const bad of [0, 1, "true", "false", null, [], {}]) {
    assert.throws(() => checkValue(BOOL, bad), TypeMismatch, `bool should reject ${String(bad)}`);
  }
});

Deno.test("checkValue() List rejects non-lists", () => {
  for (const bad of ["[1]", 1, null, {}, { length: 0 }]) {
    assert.throws(() => checkValue(list(INT), bad), TypeMismatch);
  }
});

Deno.test("checkValue() on List[int] names the index of the first bad element", () => {
  assert.throws(() => checkValue(list(INT), [1, 2, 3.5, "x"]), (error: unknown) => {
    assert.ok(error instanceof TypeMismatch);
    assert.ok(error instanceof TypeError);
    assert.equal(error.path, " at [2]");
    assert.equal(error.message, "expected int at [2], got the number 3.5");
    assert.deepEqual(error.expected, INT);
    assert.equal(error.actual, 3.5);
    return true;
  });
});

Deno.test("checkValue() on nested lists names the full path of a bad element", () => {
  assert.throws(() => checkValue(list(list(STR)), [["a"], ["b", 7]]), (error: unknown) => {
    assert.ok(error instanceof TypeMismatch);
    assert.equal(error.message, "expected str at [1][1], got the integer 7");
    return true;
  });
});

Deno.test("checkValue() keeps ints beyond 2^53 as bigint and never rounds them", () => {
  const big = 12345678901234567890n;
  assert.equal(checkValue(INT, big), big);
  assert.equal(checkValue(INT, -big), -big);
  assert.equal(checkValue(INT, 2n ** 53n), 2n ** 53n);
  // A bigint that fits a safe integer becomes a number.
  assert.equal(checkValue(INT, 42n), 42);
  assert.equal(checkValue(INT, BigInt(Number.MAX_SAFE_INTEGER)), Number.MAX_SAFE_INTEGER);
  // An unsafe integral number becomes a bigint of the same value.
  assert.equal(checkValue(INT, 2 ** 60), 2n ** 60n);
});

Deno.test("checkValue() copies a list only when an element changes form", () => {
  const values = [1, 12345678901234567890n, 3n];
  const checked = checkValue(list(INT), values) as unknown[];
  assert.notEqual(checked, values);
  assert.deepEqual(checked, [1, 12345678901234567890n, 3]);
  assert.deepEqual(values, [1, 12345678901234567890n, 3n], "the input is not modified");
});

Deno.test("checkValue() float accepts a bigint as a number", () => {
  assert.equal(checkValue(FLOAT, 3n), 3);
  assert.equal(typeof checkValue(FLOAT, 12345678901234567890n), "number");
});

Deno.test("hasType() agrees with checkValue() on acceptance", () => {
  const types = [INT, FLOAT, STR, BOOL, list(INT), list(FLOAT), list(list(STR))];
  const values = [
    0,
    1,
    -3,
    1.5,
    NaN,
    Infinity,
    2n ** 70n,
    "",
    "1",
    true,
    false,
    null,
    [],
    [1],
    [
      1.5,
    ],
    [["a"]],
    [[1]],
    {},
  ];
  for (const type of types) {
    for (const value of values) {
      let accepted = true;
      try {
        checkValue(type, value);
      } catch {
        accepted = false;
      }
      assert.equal(
        hasType(type, value),
        accepted,
        `${formatType(type)} on ${describeValue(value)}`,
      );
    }
  }
});

Deno.test("checkValues() checks arity and names the failing argument by position", () => {
  assert.deepEqual(checkValues([INT, STR], [1, "a"], "argument"), [1, "a"]);
  assert.throws(() => checkValues([INT, STR], [1], "argument"), (error: unknown) => {
    assert.ok(error instanceof RpcError);
    assert.equal(error.kind, ErrorKind.InvalidArguments);
    assert.equal(error.message, "Expected 2 arguments, got 1");
    return true;
  });
  assert.throws(() => checkValues([INT], [], "argument"), /Expected 1 argument, got 0/);
  assert.throws(
    () => checkValues([INT, list(INT)], [1, [1, "x"]], "argument"),
    (error: unknown) => {
      assert.ok(error instanceof RpcError);
      assert.equal(error.kind, ErrorKind.InvalidArguments);
      assert.equal(error.message, 'argument 2: expected int at [1], got the string "x"');
      return true;
    },
  );
});

Deno.test("checkValues() returns canonical values without modifying its input", () => {
  const values = [5n, "s"];
  const checked = checkValues([INT, STR], values, "argument");
  assert.deepEqual(checked, [5, "s"]);
  assert.deepEqual(values, [5n, "s"]);
  const unchanged = [1, 2];
  assert.equal(checkValues([INT, INT], unchanged, "argument"), unchanged);
});

// ---------------------------------------------------------------------------
// JSON

Deno.test("parseJson() reads ints beyond 2^53 as exact bigints", () => {
  assert.equal(parseJson("12345678901234567890"), 12345678901234567890n);
  assert.equal(parseJson("-12345678901234567890"), -12345678901234567890n);
  assert.equal(parseJson("9007199254740993"), 9007199254740993n);
  assert.deepEqual(parseJson('{"a":[1,12345678901234567890]}'), {
    a: [1, 12345678901234567890n],
  });
});

Deno.test("parseJson() reads ints too long for a double exactly, alone in the text", () => {
  const big = 10n ** 309n; // JSON.parse reads it as Infinity
  assert.equal(parseJson(String(big)), big);
  assert.deepEqual(parseJson(`{"a":[${big},-${big}]}`), { a: [big, -big] });
  // Floats too large stay Infinity, for the type check to refuse.
  assert.equal(parseJson("1e400"), Infinity);
});

Deno.test("parseJson() refuses an int of more digits than its limit, before converting it", () => {
  assert.throws(
    () => parseJson(`[${"7".repeat(4301)}]`, 4300),
    (error: unknown) =>
      error instanceof IntegerTooLong && error.digits === 4301 && error.limit === 4300 &&
      error.message === "integer of 4301 digits exceeds limit 4300",
  );
  assert.equal(parseJson(`-${"7".repeat(4300)}`, 4300), -BigInt("7".repeat(4300)));
  // Safe integers are never counted.
  assert.deepEqual(parseJson("[123]", 2), [123]);
});

Deno.test("inspectJson() finds inexact numbers and the nesting depth without recursion", () => {
  assert.deepEqual(inspectJson(1), { inexact: false, depth: 0 });
  assert.deepEqual(inspectJson([1, [2, { a: [3] }]]), { inexact: false, depth: 4 });
  assert.deepEqual(inspectJson({ a: 2 ** 60 }), { inexact: true, depth: 1 });
  assert.deepEqual(inspectJson([Infinity]), { inexact: true, depth: 1 });
  assert.deepEqual(inspectJson([1.5, 1e300]), { inexact: true, depth: 1 });
  assert.deepEqual(inspectJson([0.5]), { inexact: false, depth: 1 });
  const deep = JSON.parse("[".repeat(500_000) + "]".repeat(500_000));
  assert.deepEqual(inspectJson(deep), { inexact: false, depth: 500_000 });
});

Deno.test("describeValue() cuts a long integer", () => {
  assert.equal(
    describeValue(10n ** 100n),
    `the integer 1${"0".repeat(39)}… (101 digits)`,
  );
});

Deno.test("parseJson() keeps safe integers, floats and digit strings as they are", () => {
  assert.equal(parseJson("9007199254740991"), 9007199254740991);
  assert.equal(parseJson("1.5"), 1.5);
  assert.equal(parseJson("1e300"), 1e300);
  assert.equal(parseJson("12345678901234567890.5"), 12345678901234567890.5);
  assert.equal(parseJson('"12345678901234567890"'), "12345678901234567890");
  assert.deepEqual(parseJson('{"a":1}'), { a: 1 });
});

Deno.test("parseJson() throws SyntaxError on text that is not JSON", () => {
  assert.throws(() => parseJson("{"), SyntaxError);
  assert.throws(() => parseJson("[12345678901234567890"), SyntaxError);
});

Deno.test("stringifyJson() writes bigints as exact JSON integers", () => {
  assert.equal(stringifyJson(12345678901234567890n), "12345678901234567890");
  assert.equal(
    stringifyJson({ v: [1, -12345678901234567890n] }),
    '{"v":[1,-12345678901234567890]}',
  );
  assert.equal(stringifyJson({ a: "b" }), '{"a":"b"}');
});

Deno.test("parseJson() and stringifyJson() round-trip 12345678901234567890 exactly", () => {
  const text = '{"return-values":[12345678901234567890,1,"x"]}';
  const value = parseJson(text);
  assert.deepEqual(value, { "return-values": [12345678901234567890n, 1, "x"] });
  assert.equal(stringifyJson(value), text);
  const checked = checkValue(
    list(INT),
    (value as { "return-values": unknown[] })[
      "return-values"
    ].slice(0, 2),
  );
  assert.deepEqual(checked, [12345678901234567890n, 1]);
});

// ---------------------------------------------------------------------------
// inferType

Deno.test("inferType() guesses scalar types from values", () => {
  assert.deepEqual(inferType(1), INT);
  assert.deepEqual(inferType(-1), INT);
  assert.deepEqual(inferType(12345678901234567890n), INT);
  assert.deepEqual(inferType(1.5), FLOAT);
  assert.deepEqual(inferType("1"), STR);
  assert.deepEqual(inferType(true), BOOL);
});

Deno.test("inferType() guesses list types, widening int to float", () => {
  assert.deepEqual(inferType([1, 2]), list(INT));
  assert.deepEqual(inferType([1, 2.5]), list(FLOAT));
  assert.deepEqual(inferType([2.5, 1]), list(FLOAT));
  assert.deepEqual(inferType(["a"]), list(STR));
  assert.deepEqual(inferType([[1], [2]]), list(list(INT)));
});

Deno.test("inferType() gives up on values with no type", () => {
  assert.equal(inferType(null), undefined);
  assert.equal(inferType(undefined), undefined);
  assert.equal(inferType({}), undefined);
  assert.equal(inferType([]), undefined, "the empty list has no element type");
  assert.equal(inferType([1, null]), undefined);
  assert.equal(inferType([{}]), undefined);
});
