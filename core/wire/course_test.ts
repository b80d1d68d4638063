import assert from "node:assert/strict";
import {
  COURSE_SERIAL,
  decodeCourseReply,
  decodeCourseRequest,
  decodeStringArgument,
  encodeCourseReply,
  encodeCourseRequest,
  JsonValueScanner,
  LARGEST_FRAME_LIMIT,
  readPythonList,
} from "./course.ts";
import { RpcError } from "../errors.ts";
import { resolveLimits } from "../server/limits.ts";
import { parseType } from "../types/types.ts";

const encoder = new TextEncoder();

/** Feeds `text` to a scanner in chunks of `size` bytes; returns where the value ended overall. */
function scan(text: string, size: number): number {
  const bytes = encoder.encode(text);
  const scanner = new JsonValueScanner();
  for (let start = 0; start < bytes.length; start += size) {
    const end = scanner.push(bytes.subarray(start, start + size));
    if (end >= 0) return start + end;
  }
  return -1;
}

Deno.test("JsonValueScanner finds the end of a value in any chunking", () => {
  const value = '{"a": "} ] \\" {", "b": [1, {"c": []}], "d": "é"}';
  const length = encoder.encode(value).length;
  for (const size of [1, 2, 3, 7, 1000]) {
    assert.equal(scan(`${value}\n{"next": 1}`, size), length, `chunks of ${size}`);
  }
  assert.equal(scan('{"open": [1, 2', 4), -1, "an unfinished value is not complete");
  assert.equal(scan('{"s": "\\\\"}', 1), 11, "an escaped backslash ends before the quote");
});

Deno.test("decodeCourseRequest gives the server the same RPC-REQ a framed client sends", () => {
  const { key, message, error } = decodeCourseRequest(encoder.encode(JSON.stringify({
    header: "RPC-REQ",
    value: {
      service: "service1",
      rpc: "rpc2",
      arguments: ["[1, 2]", "['a', 'b']"],
      "argument-types": ["List[int]", "List[str]"],
      "return-types": ["str"],
    },
  })));
  assert.equal(error, undefined);
  assert.equal(key, "header");
  assert.deepEqual(message, {
    type: "RPC-REQ",
    serial: COURSE_SERIAL,
    value: {
      service: "service1",
      rpc: "rpc2",
      arguments: [[1, 2], ["a", "b"]],
      "argument-types": ["List[int]", "List[str]"],
      "return-types": ["str"],
    },
  });
});

Deno.test("decodeCourseRequest keeps integers beyond 2^53 exact", () => {
  const { message } = decodeCourseRequest(encoder.encode(
    '{"type": "RPC-REQ", "value": {"service": "s", "rpc": "r", "arguments": [123456789012345678901, "9007199254740993"], "argument-types": ["int", "int"]}}',
  ));
  assert.deepEqual(message?.value, {
    service: "s",
    rpc: "r",
    arguments: [123456789012345678901n, 9007199254740993n],
    "argument-types": ["int", "int"],
  });
});

Deno.test("decodeCourseRequest explains what is wrong with a message", () => {
  const cases: [string | Uint8Array, RegExp, string][] = [
    ["{nope}", /not JSON/, "type"],
    [new Uint8Array([0x7b, 0x22, 0xc3, 0x22, 0x7d]), /not valid UTF-8/, "type"],
    ["[1]", /not a JSON object/, "type"],
    ['{"value": {}}', /no message type: give "type" \(or "header"\)/, "type"],
    [
      '{"type": "RPC-REQ", "header": "LIST"}',
      /"type" "RPC-REQ" and "header" "LIST" disagree/,
      "type",
    ],
    ['{"header": "RPC-RES", "value": {}}', /carries one RPC-REQ, not "RPC-RES"/, "header"],
    ['{"type": "RPC-REQ"}', /RPC-REQ value must be an object/, "type"],
    ['{"type": "RPC-REQ", "value": {"service": "s"}}', /RPC-REQ needs an rpc name/, "type"],
    [
      '{"type": "RPC-REQ", "value": {"service": "s", "rpc": "r", "arguments": 3}}',
      /arguments must be a list/,
      "type",
    ],
  ];
  for (const [text, pattern, key] of cases) {
    const bytes = typeof text === "string" ? encoder.encode(text) : text;
    const result = decodeCourseRequest(bytes);
    assert.equal(result.message, undefined, String(text));
    assert.ok(result.error instanceof RpcError);
    assert.equal(result.error.kind, "Malformed Frame");
    assert.match(result.error.message, pattern);
    assert.equal(result.key, key, `the reply names its type as the request did: ${text}`);
  }
});

Deno.test("decodeStringArgument reads strings by their declared type, and leaves the rest", () => {
  const type = (text: string) => parseType(text);
  assert.equal(decodeStringArgument(type("int"), "42"), 42);
  assert.equal(decodeStringArgument(type("int"), "123456789012345678901"), 123456789012345678901n);
  assert.equal(decodeStringArgument(type("float"), "2.5"), 2.5);
  assert.equal(decodeStringArgument(type("bool"), "True"), true);
  assert.equal(decodeStringArgument(type("bool"), "false"), false);
  assert.equal(decodeStringArgument(type("str"), "42"), "42");
  assert.deepEqual(decodeStringArgument(type("List[int]"), "[1, 2]"), [1, 2]);
  assert.deepEqual(decodeStringArgument(type("List[int]"), "1,2"), [1, 2]);
  assert.deepEqual(decodeStringArgument(type("List[int]"), ""), []);
  assert.deepEqual(decodeStringArgument(type("List[int]"), ["1", 2]), [1, 2]);
  assert.deepEqual(decodeStringArgument(type("List[str]"), `['it\\'s', "b"]`), ["it's", "b"]);
  assert.deepEqual(decodeStringArgument(type("List[List[float]]"), "[[1.5], []]"), [[1.5], []]);
  // What cannot be read stays as it came: the server refuses it naming the valid signatures.
  assert.equal(decodeStringArgument(type("int"), "x"), "x");
  assert.equal(decodeStringArgument(type("List[int]"), "[1, oops"), "[1, oops");
  assert.deepEqual(decodeStringArgument(type("List[int]"), "a,b"), ["a", "b"]);
  assert.equal(decodeStringArgument(type("int"), 7), 7);
});

Deno.test("readPythonList reads what str() writes of a list, and nothing else", () => {
  assert.deepEqual(readPythonList("['a', 'b c']"), ["a", "b c"]);
  assert.deepEqual(readPythonList("[1, -2.5, 1e-05, True, False]"), [1, -2.5, 1e-5, true, false]);
  assert.deepEqual(readPythonList("[['x'], []]"), [["x"], []]);
  assert.deepEqual(readPythonList("['\\x41\\u00e9\\n']"), ["Aé\n"]);
  assert.deepEqual(readPythonList("[1, 2,]"), [1, 2]);
  for (const bad of ["", "[", "['a'", "[a]", "['a'] x", "[1 2]", "[None]", "[inf]"]) {
    assert.equal(readPythonList(bad), undefined, bad);
  }
});

Deno.test("course replies: encoded with the request's key, decoded from either key", () => {
  assert.equal(
    encodeCourseReply({ type: "RPC-RES", serial: 1, value: { "return-values": ["x", 1n] } }),
    '{"type":"RPC-RES","value":{"return values":["x",1]}}',
  );
  const exception = encodeCourseReply(
    {
      type: "RPC-EX",
      serial: 1,
      value: { "exception-type": "RPC Not Found", "exception-message": "no rpc9" },
    },
    "header",
  );
  assert.equal(
    exception,
    '{"header":"RPC-EX","value":{"exception-type":"RPC Not Found","exception-message":"no rpc9"}}',
  );
  assert.deepEqual(
    decodeCourseReply(encoder.encode('{"header": "RPC-RES", "value": {"return values": [2]}}')),
    [2],
  );
  assert.deepEqual(
    decodeCourseReply(encoder.encode('{"type": "RPC-RES", "value": {"return-values": []}}')),
    [],
  );
  assert.throws(() => decodeCourseReply(encoder.encode(exception)), {
    name: "RpcError",
    kind: "RPC Not Found",
    message: "no rpc9",
  });
  assert.throws(
    () =>
      decodeCourseReply(encoder.encode(
        '{"type": "RPC-EX", "value": {"exception-type": "Disk Full", "exception-message": ""}}',
      )),
    { kind: "Internal Error", message: "Disk Full: the server gave no message" },
  );
  assert.throws(() => decodeCourseReply(encoder.encode('{"type": "RPC-RES", "value": {}}')), {
    kind: "Malformed Frame",
  });
  assert.equal(
    encodeCourseRequest({ service: "s", rpc: "r", arguments: [1] }),
    '{"type":"RPC-REQ","value":{"service":"s","rpc":"r","arguments":[1]}}',
  );
});

Deno.test("the frame limit stays below 0x7B000000; 0 means that largest limit", () => {
  assert.equal(LARGEST_FRAME_LIMIT >>> 24, 0x7a);
  assert.equal((LARGEST_FRAME_LIMIT + 1) >>> 24, 0x7b);
  assert.equal(resolveLimits({ maxFrameBytes: 0 }).maxFrameBytes, LARGEST_FRAME_LIMIT);
  assert.equal(resolveLimits({ maxFrameBytes: 1024 }).maxFrameBytes, 1024);
  assert.throws(() => resolveLimits({ maxFrameBytes: LARGEST_FRAME_LIMIT + 1 }), {
    name: "RangeError",
    message: /Cannot use frame limit 2063597568: the largest is 2063597567/,
  });
});

Deno.test("decodeCourseRequest bounds integer digits and nesting as frames are bounded", () => {
  const digits = "1".repeat(50);
  const bounded = { maxIntegerDigits: 20 };
  const inJson = decodeCourseRequest(
    encoder.encode(
      `{"type": "RPC-REQ", "value": {"service": "s", "rpc": "r", "arguments": [${digits}]}}`,
    ),
    bounded,
  );
  assert.match(inJson.error?.message ?? "", /integer of 50 digits exceeds limit 20/);
  const inString = decodeCourseRequest(
    encoder.encode(JSON.stringify({
      type: "RPC-REQ",
      value: {
        service: "s",
        rpc: "r",
        arguments: [digits, `[${digits}]`, `['${digits}']`],
        "argument-types": ["int", "List[int]", "List[int]"],
      },
    })),
    bounded,
  );
  assert.deepEqual(
    (inString.message?.value as { arguments: unknown[] }).arguments,
    [digits, `[${digits}]`, [digits]],
    "left as strings",
  );
  const deep = "[".repeat(100) + "]".repeat(100);
  const nested = decodeCourseRequest(
    encoder.encode(
      `{"type": "RPC-REQ", "value": {"service": "s", "rpc": "r", "arguments": [${deep}]}}`,
    ),
  );
  assert.match(nested.error?.message ?? "", /nests \d+ levels deep, over the limit of 64/);
  assert.equal(readPythonList(deep), undefined);
  assert.equal(decodeStringArgument(parseType("List[int]"), deep), deep);
});

Deno.test("readPythonList reads a list of 200,000 items in one pass, copying no text per item", () => {
  // A quadratic reader would take minutes here; the suite's time limit catches that.
  const items = 200_000;
  const list = readPythonList(`[${"1, ".repeat(items)}]`);
  assert.equal(list?.length, items);
});
