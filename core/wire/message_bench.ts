/**
 * The codec: decoding a typical `RPC-REQ` and a 64 KiB one (UTF-8, one JSON
 * parse, the envelope and request checks), and encoding replies to JSON text.
 *
 *     deno bench core/wire/message_bench.ts
 *
 * @module
 */

import { decodeMessage, encodeMessageText, type Message } from "./message.ts";

const encoder = new TextEncoder();

function requestBody(text: string): Uint8Array {
  return encoder.encode(JSON.stringify({
    type: "RPC-REQ",
    serial: 12345,
    value: {
      service: "service1",
      rpc: "rpc1",
      arguments: [3, text],
      "argument-types": ["int", "str"],
    },
  }));
}

const small = requestBody("x".repeat(32));
const large = requestBody("x".repeat(64 * 1024));
const reply = (text: string): Message => ({
  type: "RPC-RES",
  serial: 12345,
  value: { "return-values": [text] },
});
const smallReply = reply("x".repeat(32));
const largeReply = reply("x".repeat(64 * 1024));
const ints = decodeMessage(encoder.encode(JSON.stringify({
  type: "RPC-REQ",
  serial: 1,
  value: { service: "s", rpc: "sum", arguments: [Array.from({ length: 1000 }, (_, i) => i * 7)] },
})));

Deno.bench("decodeMessage: RPC-REQ, 32 B argument", { group: "decode", baseline: true }, () => {
  decodeMessage(small);
});
Deno.bench("decodeMessage: RPC-REQ, 64 KiB argument", { group: "decode" }, () => {
  decodeMessage(large);
});
const intsBody = encoder.encode(JSON.stringify(ints));
Deno.bench("decodeMessage: RPC-REQ, 1,000 ints", { group: "decode" }, () => {
  decodeMessage(intsBody);
});
const bigIntBody = encoder.encode(
  '{"type":"RPC-REQ","serial":1,"value":{"service":"s","rpc":"same","arguments":[123456789012345678901]}}',
);
Deno.bench("decodeMessage: RPC-REQ, an int beyond 2^53 (exact path)", { group: "decode" }, () => {
  decodeMessage(bigIntBody);
});

Deno.bench("encodeMessageText: RPC-RES, 32 B", { group: "encode", baseline: true }, () => {
  encodeMessageText(smallReply);
});
Deno.bench("encodeMessageText: RPC-RES, 64 KiB", { group: "encode" }, () => {
  encodeMessageText(largeReply);
});
const out = new Uint8Array(256 * 1024);
Deno.bench("encodeMessageText + encodeInto: RPC-RES, 64 KiB", { group: "encode" }, () => {
  encoder.encodeInto(encodeMessageText(largeReply), out);
});
