import assert from "node:assert/strict";
import { ErrorKind, RpcError } from "../errors.ts";
import {
  CONNECTION_SERIAL,
  decodeMessage,
  encodeMessageText,
  errorFromException,
  exactArguments,
  exceptionMessage,
  hasDeferredArguments,
  MAX_BODY_DEPTH,
  type Message,
  PROTOCOL_VERSION,
  PROTOCOL_VERSIONS,
  type SerialError,
} from "./message.ts";

const encoder = new TextEncoder();

function body(value: unknown): Uint8Array {
  return encoder.encode(typeof value === "string" ? value : JSON.stringify(value));
}

/**
 * Asserts that decoding `input` throws `Malformed Frame`, with `serial` set
 * when given and absent otherwise; returns the error for further checks.
 */
function assertMalformed(
  input: Uint8Array,
  serial?: number,
  message?: RegExp,
  options?: Parameters<typeof decodeMessage>[1],
): SerialError {
  let caught: unknown;
  try {
    decodeMessage(input, options);
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof RpcError, `expected an RpcError, got ${String(caught)}`);
  assert.equal(caught.kind, ErrorKind.MalformedFrame);
  assert.match(caught.message, /^Cannot decode message: /);
  if (message) assert.match(caught.message, message);
  const error = caught as SerialError;
  if (serial === undefined) assert.equal(error.serial, undefined, "no serial expected");
  else assert.equal(error.serial, serial);
  return error;
}

function request(value: Record<string, unknown>, serial = 7): Uint8Array {
  return body({ type: "RPC-REQ", serial, value });
}

Deno.test("PROTOCOL_VERSION is the newest of PROTOCOL_VERSIONS", () => {
  assert.ok(PROTOCOL_VERSIONS.length > 0);
  assert.equal(PROTOCOL_VERSION, Math.max(...PROTOCOL_VERSIONS));
});

Deno.test("decodeMessage() accepts a valid RPC-REQ", () => {
  const message = decodeMessage(request({
    service: "service1",
    rpc: "rpc1",
    arguments: [3, "x"],
    "argument-types": ["int", "str"],
    "return-types": ["str"],
    client: "c1",
  }, 1));
  assert.deepEqual(message, {
    type: "RPC-REQ",
    serial: 1,
    value: {
      service: "service1",
      rpc: "rpc1",
      arguments: [3, "x"],
      "argument-types": ["int", "str"],
      "return-types": ["str"],
      client: "c1",
    },
  });
});

Deno.test("decodeMessage() gives an RPC-REQ without arguments an empty list", () => {
  const message = decodeMessage(request({ service: "s", rpc: "r" }, 0));
  assert.equal(message.type, "RPC-REQ");
  assert.deepEqual(message.value, { service: "s", rpc: "r", arguments: [] });
});

Deno.test("decodeMessage() keeps big integer arguments exact", () => {
  const message = decodeMessage(
    body(
      '{"type":"RPC-REQ","serial":2,"value":{"service":"s","rpc":"r",' +
        '"arguments":[12345678901234567890]}}',
    ),
  );
  assert.equal(message.type, "RPC-REQ");
  if (message.type === "RPC-REQ") {
    assert.deepEqual(message.value.arguments, [12345678901234567890n]);
  }
});

Deno.test("decodeMessage() accepts a valid HELLO", () => {
  const message = decodeMessage(body({
    type: "HELLO",
    serial: 0,
    value: { versions: [1], client: "c1", software: "rpc test" },
  }));
  assert.deepEqual(message, {
    type: "HELLO",
    serial: 0,
    value: { versions: [1], client: "c1", software: "rpc test" },
  });
});

Deno.test("decodeMessage() gives a LIST without a value an empty object", () => {
  assert.deepEqual(decodeMessage(body({ type: "LIST", serial: 3 })), {
    type: "LIST",
    serial: 3,
    value: {},
  });
});

Deno.test("decodeMessage() accepts RPC-RES, RPC-EX, RPC-CANCEL, ADMIN and LIST-RES", () => {
  const valid: Message[] = [
    { type: "RPC-RES", serial: 1, value: { "return-values": ["x"] } },
    {
      type: "RPC-EX",
      serial: 2,
      value: { "exception-type": "RPC Not Found", "exception-message": "no" },
    },
    { type: "RPC-CANCEL", serial: 3, value: {} },
    { type: "ADMIN", serial: 4, value: { op: "status" } },
    { type: "LIST-RES", serial: 5, value: { services: [] } },
    { type: "ADMIN-RES", serial: 6, value: { ok: true } },
  ];
  for (const message of valid) assert.deepEqual(decodeMessage(body(message)), message);
});

Deno.test("decodeMessage() fills a missing exception-message with an empty string", () => {
  const message = decodeMessage(body({
    type: "RPC-EX",
    serial: 2,
    value: { "exception-type": "Timeout" },
  }));
  assert.deepEqual(message.value, { "exception-type": "Timeout", "exception-message": "" });
});

Deno.test("decodeMessage() accepts a body that spells U+FFFD itself, and refuses one that only decodes to it", () => {
  const message = decodeMessage(request({ service: "s", rpc: "r", arguments: ["a\uFFFDb"] }));
  assert.deepEqual((message.value as { arguments: unknown[] }).arguments, ["a\uFFFDb"]);
  const bad = body({
    type: "RPC-REQ",
    serial: 1,
    value: { service: "s", rpc: "r", arguments: ["ab"] },
  });
  const withBadByte = new Uint8Array([
    ...bad.subarray(0, bad.length - 4),
    0xff,
    ...bad.subarray(bad.length - 4),
  ]);
  assertMalformed(withBadByte, undefined, /not valid UTF-8/);
});

Deno.test("decodeMessage() rejects a body that is not UTF-8 with Malformed Frame", () => {
  assertMalformed(new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]), undefined, /not valid UTF-8/);
  assertMalformed(new Uint8Array([0xc3]), undefined, /not valid UTF-8/);
});

Deno.test("decodeMessage() rejects a body that is not JSON with Malformed Frame", () => {
  assertMalformed(body("not json"), undefined, /not JSON/);
  assertMalformed(body('{"type":"LIST","serial":1'), undefined, /not JSON/);
  assertMalformed(new Uint8Array(0), undefined, /not JSON/);
});

Deno.test("decodeMessage() rejects JSON that is not an object with Malformed Frame", () => {
  for (const text of ["null", "[]", '[{"type":"LIST","serial":1}]', "1", '"LIST"', "true"]) {
    assertMalformed(body(text), undefined, /not a JSON object/);
  }
});

Deno.test("decodeMessage() rejects a missing or bad serial, without a serial property", () => {
  for (const serial of [undefined, null, "1", -1, 1.5, 2 ** 53, [1], {}]) {
    assertMalformed(body({ type: "LIST", serial }), undefined, /serial/);
  }
  assertMalformed(
    body('{"type":"LIST","serial":12345678901234567890}'),
    undefined,
    /serial must be a non-negative integer/,
  );
});

Deno.test("decodeMessage() rejects an unknown message type and keeps its serial", () => {
  assertMalformed(body({ type: "RPC-FOO", serial: 9 }), 9, /unknown message type "RPC-FOO"/);
  assertMalformed(body({ type: "rpc-req", serial: 10 }), 10, /unknown message type/);
  assertMalformed(body({ serial: 11 }), 11, /unknown message type/);
  assertMalformed(body({ type: 1, serial: 12 }), 12, /unknown message type/);
});

Deno.test("decodeMessage() rejects RPC-REQ without a service and keeps its serial", () => {
  assertMalformed(request({ rpc: "r", arguments: [] }, 4), 4, /RPC-REQ needs a service name/);
  assertMalformed(request({ service: 1, rpc: "r" }, 4), 4, /service/);
});

Deno.test("decodeMessage() rejects RPC-REQ without an rpc name and keeps its serial", () => {
  assertMalformed(request({ service: "s" }, 5), 5, /RPC-REQ needs an rpc name/);
  assertMalformed(request({ service: "s", rpc: null }, 5), 5, /rpc name/);
});

Deno.test("decodeMessage() rejects RPC-REQ whose value is not an object", () => {
  assertMalformed(body({ type: "RPC-REQ", serial: 6 }), 6, /value must be an object/);
  assertMalformed(body({ type: "RPC-REQ", serial: 6, value: [] }), 6, /value must be an object/);
  assertMalformed(body({ type: "RPC-REQ", serial: 6, value: "x" }), 6);
});

Deno.test("decodeMessage() rejects RPC-REQ whose arguments are not a list", () => {
  for (const args of [null, "1,2", 1, { 0: 1 }]) {
    assertMalformed(
      request({ service: "s", rpc: "r", arguments: args }, 8),
      8,
      /arguments must be a list/,
    );
  }
});

Deno.test("decodeMessage() rejects RPC-REQ whose argument-types are not type-name strings", () => {
  for (const types of ["int", [1], ["int", null], [["int"]], {}]) {
    assertMalformed(
      request({ service: "s", rpc: "r", arguments: [1], "argument-types": types }, 12),
      12,
      /argument-types must be a list of type names/,
    );
  }
});

Deno.test("decodeMessage() rejects RPC-REQ whose return-types are not type-name strings", () => {
  assertMalformed(
    request({ service: "s", rpc: "r", "return-types": "str" }, 13),
    13,
    /return-types must be a list of type names/,
  );
  assertMalformed(request({ service: "s", rpc: "r", "return-types": [true] }, 13), 13);
});

Deno.test("decodeMessage() rejects RPC-REQ whose client is not a string", () => {
  assertMalformed(request({ service: "s", rpc: "r", client: 1 }, 14), 14, /client/);
});

Deno.test("decodeMessage() rejects RPC-RES without return-values and keeps its serial", () => {
  assertMalformed(body({ type: "RPC-RES", serial: 15, value: {} }), 15, /return-values/);
  assertMalformed(
    body({ type: "RPC-RES", serial: 15, value: { "return-values": 1 } }),
    15,
    /return-values/,
  );
});

Deno.test("decodeMessage() rejects RPC-EX without an exception-type and keeps its serial", () => {
  assertMalformed(body({ type: "RPC-EX", serial: 16, value: {} }), 16, /exception-type/);
});

Deno.test("decodeMessage() rejects ADMIN without an op and keeps its serial", () => {
  assertMalformed(body({ type: "ADMIN", serial: 17, value: {} }), 17, /op/);
});

Deno.test("decodeMessage() rejects a non-object value for other types and keeps its serial", () => {
  assertMalformed(body({ type: "HELLO", serial: 18, value: [1] }), 18, /HELLO value must be/);
  assertMalformed(body({ type: "LIST", serial: 18, value: 1 }), 18);
  assertMalformed(body({ type: "LIST", serial: 18, value: null }), 18);
});

Deno.test("encodeMessageText() and decodeMessage() round-trip a result with a bigint", () => {
  const message: Message = {
    type: "RPC-RES",
    serial: 21,
    value: { "return-values": [12345678901234567890n, "x"] },
  };
  const text = encodeMessageText(message);
  assert.equal(
    text,
    '{"type":"RPC-RES","serial":21,"value":{"return-values":[12345678901234567890,"x"]}}',
  );
  assert.deepEqual(decodeMessage(body(text)), message);
});

Deno.test("exceptionMessage() and errorFromException() carry the kind across the wire", () => {
  const error = new RpcError(ErrorKind.ServiceNotFound, "No service9");
  const message = exceptionMessage(4, error);
  assert.deepEqual(message, {
    type: "RPC-EX",
    serial: 4,
    value: { "exception-type": "Service Not Found", "exception-message": "No service9" },
  });
  const decoded = decodeMessage(body(encodeMessageText(message)));
  assert.equal(decoded.type, "RPC-EX");
  if (decoded.type !== "RPC-EX") return;
  const back = errorFromException(decoded.value);
  assert.equal(back.kind, ErrorKind.ServiceNotFound);
  assert.equal(back.message, "No service9");
});

Deno.test("errorFromException() maps an unknown exception-type to Internal Error", () => {
  const error = errorFromException({ "exception-type": "Weird", "exception-message": "m" });
  assert.equal(error.kind, ErrorKind.Internal);
  assert.equal(error.message, "m");
});

// ---------------------------------------------------------------------------
// Integers of any size, digit limit, deferred arguments

/** An RPC-REQ body whose arguments are written as given (digits stay as they are). */
function rawRequest(args: string, serial = 3): Uint8Array {
  return body(
    `{"type":"RPC-REQ","serial":${serial},"value":{"service":"s","rpc":"r","arguments":[${args}]}}`,
  );
}

Deno.test("decodeMessage() reads an int of 309 digits or more exactly, alone", () => {
  // 10^308 is the largest power of ten a double holds; 10^309 parses as Infinity.
  for (const exponent of [308, 309, 400, 4299]) {
    const big = 10n ** BigInt(exponent);
    const message = decodeMessage(rawRequest(`${big},-${big}`));
    assert.deepEqual((message.value as { arguments: unknown[] }).arguments, [big, -big]);
  }
});

Deno.test("decodeMessage() refuses an int over maxIntegerDigits, keeping the serial", () => {
  const digits = "9".repeat(101);
  assertMalformed(
    rawRequest(digits, 12),
    12,
    /^Cannot decode message: integer of 101 digits exceeds limit 100$/,
    { maxIntegerDigits: 100 },
  );
  // The sign is not a digit; at the limit, it is read.
  const message = decodeMessage(rawRequest(`-${"9".repeat(100)}`), { maxIntegerDigits: 100 });
  assert.deepEqual((message.value as { arguments: unknown[] }).arguments, [-(10n ** 100n - 1n)]);
  // Without a limit (the client's default), any size.
  const huge = 10n ** 5000n;
  assert.deepEqual(
    (decodeMessage(rawRequest(String(huge))).value as { arguments: unknown[] }).arguments,
    [huge],
  );
});

Deno.test("decodeMessage() with deferArguments leaves big ints until exactArguments()", () => {
  const big = 10n ** 400n;
  const message = decodeMessage(rawRequest(`${big},1`), {
    deferArguments: true,
    maxIntegerDigits: 500,
  });
  assert.equal(message.type, "RPC-REQ");
  const request = message.value as Parameters<typeof exactArguments>[0];
  assert.ok(hasDeferredArguments(request));
  assert.deepEqual(request.arguments, [Infinity, 1], "rounded until read exactly");
  assert.deepEqual(exactArguments(request), [big, 1]);
  assert.deepEqual(request.arguments, [big, 1]);
  assert.ok(!hasDeferredArguments(request));
  // A request without big ints has nothing deferred.
  const small = decodeMessage(rawRequest("1,2"), { deferArguments: true }).value;
  assert.ok(!hasDeferredArguments(small as Parameters<typeof exactArguments>[0]));
});

Deno.test("exactArguments() refuses an int over the limit as Invalid Arguments", () => {
  const message = decodeMessage(rawRequest("1".repeat(50)), {
    deferArguments: true,
    maxIntegerDigits: 20,
  });
  assert.throws(
    () => exactArguments(message.value as Parameters<typeof exactArguments>[0]),
    (error: unknown) =>
      error instanceof RpcError && error.kind === ErrorKind.InvalidArguments &&
      error.message === "Cannot read arguments: integer of 50 digits exceeds limit 20",
  );
});

Deno.test("decodeMessage() checks names: length and characters", () => {
  assertMalformed(
    request({ service: "s".repeat(129), rpc: "r" }, 2),
    2,
    /RPC-REQ service name of 129 characters exceeds limit 128/,
  );
  assertMalformed(request({ service: "s", rpc: "a b" }, 2), 2, /RPC-REQ rpc name "a b" may hold/);
  assertMalformed(request({ service: "s", rpc: "r", client: "" }, 2), 2, /client name is empty/);
  assertMalformed(
    body({ type: "HELLO", serial: 0, value: { versions: [1], client: "c\n1" } }),
    0,
    /HELLO client name "c\\n1" may hold only/,
  );
  assertMalformed(
    body({ type: "HELLO", serial: 0, value: { versions: [1], client: 5 } }),
    0,
    /HELLO client must be a string/,
  );
  assertMalformed(body({ type: "ADMIN", serial: 1, value: { op: "x y" } }), 1, /ADMIN op name/);
  decodeMessage(request({ service: "service-1.v2", rpc: "rpc_1", client: "c1@host" }));
});

Deno.test("decodeMessage() refuses HELLO versions that are not a short list of integers", () => {
  for (const versions of [[[1]], ["1"], 1, Array.from({ length: 17 }, (_, i) => i)]) {
    assertMalformed(
      body({ type: "HELLO", serial: 0, value: { versions } }),
      0,
      /HELLO versions must be a list of at most 16 integers/,
    );
  }
  decodeMessage(body({ type: "HELLO", serial: 0, value: { versions: [] } }));
});

Deno.test("decodeMessage() refuses a body nested deeper than MAX_BODY_DEPTH", () => {
  const nested = (depth: number) => "[".repeat(depth) + "]".repeat(depth);
  // The envelope and value are two levels; the arguments list a third.
  const atLimit = body(
    `{"type":"RPC-REQ","serial":1,"value":{"service":"s","rpc":"r","arguments":${
      nested(MAX_BODY_DEPTH - 2)
    }}}`,
  );
  decodeMessage(atLimit);
  assertMalformed(
    body(`{"type":"HELLO","serial":4,"value":{"versions":${nested(200_000)}}}`),
    4,
    /^Cannot decode message: body nests 200002 levels deep, over the limit of 64$/,
  );
});

Deno.test("decodeMessage() takes CONNECTION_SERIAL on RPC-EX only", () => {
  const message = decodeMessage(body({
    type: "RPC-EX",
    serial: CONNECTION_SERIAL,
    value: { "exception-type": "Frame Too Large", "exception-message": "m" },
  }));
  assert.equal(message.serial, CONNECTION_SERIAL);
  assertMalformed(
    body({ type: "RPC-RES", serial: CONNECTION_SERIAL, value: {} }),
    undefined,
    /serial/,
  );
  assertMalformed(
    body({ type: "RPC-REQ", serial: CONNECTION_SERIAL, value: {} }),
    undefined,
    /serial/,
  );
});
