/**
 * Message shapes and their codec. A frame body is one JSON object
 * `{"type": ..., "serial": ..., "value": ...}`; see docs/protocol.md.
 *
 * Decoding parses and checks at the edge, so handlers only see well-formed
 * messages. The codec does no I/O.
 *
 * @module
 */

import { ErrorKind, isErrorKind, RpcError } from "../errors.ts";
import { nameProblem, quote } from "./names.ts";
import {
  describeValue,
  inspectJson,
  IntegerTooLong,
  parseJsonExact,
  stringifyJson,
} from "../types/types.ts";

/** Protocol versions this build speaks, newest last. */
export const PROTOCOL_VERSIONS: readonly number[] = [1];

/** The version this build prefers. */
export const PROTOCOL_VERSION = PROTOCOL_VERSIONS[PROTOCOL_VERSIONS.length - 1];

/**
 * The serial of an `RPC-EX` about the connection rather than one request (a
 * frame too large or unreadable, a serial already in use, a refused
 * connection). No request can carry it, since request serials are
 * non-negative, so no such reply can be taken for the answer to a call.
 */
export const CONNECTION_SERIAL = -1;

/** The deepest nesting of arrays and objects a message body may have. */
export const MAX_BODY_DEPTH = 64;

/** The most protocol versions a `HELLO` may offer. */
export const MAX_OFFERED_VERSIONS = 16;

/** Client's opening message. */
export interface HelloRequest {
  /** Versions the client speaks. */
  versions: number[];
  /** The name the client claims, as in init.yaml's `network.clients`. */
  client?: string;
  /** Free text naming the client software, for logs. */
  software?: string;
  /** The client will prove the admin token with `AUTH` (it may then use a slot kept for admins). */
  admin?: boolean;
}

/** Server's answer to `HELLO`. */
export interface HelloReply {
  version: number;
  server: string;
  software: string;
  /** A fresh random nonce that an `AUTH` proof must sign. */
  nonce?: string;
  /** Set when the claimed client must prove its secret with `AUTH` before anything else. */
  "auth-required"?: boolean;
}

/** Client's `AUTH`: proofs of secrets over the server's nonce (see `core/wire/auth.ts`). */
export interface AuthRequest {
  /** The client's own fresh nonce. */
  nonce: string;
  /** HMAC proving the claimed client's secret. */
  proof?: string;
  /** HMAC proving the server's admin token. */
  "admin-proof"?: string;
}

/** Server's answer to `AUTH`: who the connection now is. */
export interface AuthReply {
  client: string | null;
  admin: boolean;
}

/** The course's `RPC-REQ` value. */
export interface CallRequest {
  service: string;
  rpc: string;
  arguments: unknown[];
  "argument-types"?: string[];
  "return-types"?: string[];
  /** The caller's name, for one-shot clients that skip `HELLO`. */
  client?: string;
}

/** `RPC-RES` value. */
export interface CallResult {
  "return-values": unknown[];
}

/** `RPC-PART` value: one partial result of a streaming call. */
export interface CallPart {
  values: unknown[];
}

/** `RPC-EX` value. */
export interface CallException {
  "exception-type": string;
  "exception-message": string;
}

/** One RPC overload as introspection shows it. */
export interface RpcDescription {
  name: string;
  args: string[];
  returns: string[];
  /** For a streaming RPC: the types of each partial result. */
  yields?: string[];
  doc?: string;
}

/** One service as introspection shows it. */
export interface ServiceDescription {
  name: string;
  rpcs: RpcDescription[];
}

/** `LIST-RES` value: the services a client may call. */
export interface ListResult {
  services: ServiceDescription[];
}

/** Every message, by type. */
export type Message =
  | { type: "HELLO"; serial: number; value: HelloRequest | HelloReply }
  | { type: "AUTH"; serial: number; value: AuthRequest | AuthReply }
  | { type: "RPC-REQ"; serial: number; value: CallRequest }
  | { type: "RPC-RES"; serial: number; value: CallResult }
  | { type: "RPC-PART"; serial: number; value: CallPart }
  | { type: "RPC-EX"; serial: number; value: CallException }
  | { type: "RPC-CANCEL"; serial: number; value: Record<string, never> }
  | { type: "LIST"; serial: number; value: Record<string, never> }
  | { type: "LIST-RES"; serial: number; value: ListResult }
  | { type: "ADMIN"; serial: number; value: AdminRequest }
  | { type: "ADMIN-RES"; serial: number; value: unknown };

/** A privileged operation; `op` names it and `token` proves the right to it. */
export interface AdminRequest {
  op: string;
  token?: string;
  [field: string]: unknown;
}

/** The type names of {@linkcode Message}. */
export type MessageType = Message["type"];

const TYPES: ReadonlySet<string> = new Set<MessageType>([
  "HELLO",
  "AUTH",
  "RPC-REQ",
  "RPC-RES",
  "RPC-PART",
  "RPC-EX",
  "RPC-CANCEL",
  "LIST",
  "LIST-RES",
  "ADMIN",
  "ADMIN-RES",
]);

/** Replaces bad UTF-8 with U+FFFD: an order of magnitude faster than the strict decoder. */
const laxDecoder = new TextDecoder();
const strictDecoder = new TextDecoder("utf-8", { fatal: true });

/**
 * Decodes UTF-8, refusing invalid input. The fast lax decoder does the work;
 * only text that then holds U+FFFD (bad input, or a body that spells U+FFFD
 * itself) is decoded again strictly, which throws for bad input.
 */
function decodeUtf8(body: Uint8Array): string {
  const text = laxDecoder.decode(body);
  if (text.includes("\uFFFD")) strictDecoder.decode(body);
  return text;
}

function malformed(reason: string): RpcError {
  return new RpcError(ErrorKind.MalformedFrame, `Cannot decode message: ${reason}`);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isStringList(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((item) => typeof item === "string");
}

/** Options of {@linkcode decodeMessage}. */
export interface DecodeOptions {
  /**
   * The most digits an integer beyond 2^53 may have; 0 (the default) for no
   * limit. Converting an integer exactly costs time that grows faster than
   * its length, so a server that reads untrusted input sets one.
   */
  maxIntegerDigits?: number;
  /**
   * Leave the integers beyond 2^53 in an `RPC-REQ`'s arguments as parsed
   * (rounded) until {@linkcode exactArguments} reads them exactly, so a
   * server can refuse the call (unknown service, caller not a tenant) before
   * paying for that. Everything else in the message is exact.
   */
  deferArguments?: boolean;
}

/** Requests whose arguments still need an exact reading: their body text and digit limit. */
const deferred = new WeakMap<CallRequest, { text: string; maxIntegerDigits: number }>();

/**
 * Decodes a frame body into a message whose envelope is checked; the value of
 * an `RPC-REQ` is checked too. Integers of any size are read exactly (see
 * {@linkcode DecodeOptions} for the limit a server sets, and for deferring
 * the arguments).
 *
 * @throws {RpcError} `Malformed Frame`. When the envelope was readable, the
 * error's `serial` property says which request it belongs to.
 */
export function decodeMessage(body: Uint8Array, options: DecodeOptions = {}): Message {
  let text: string;
  try {
    text = decodeUtf8(body);
  } catch {
    throw malformed("body is not valid UTF-8");
  }
  let parsed: unknown;
  try {
    // Integers beyond 2^53 come out rounded here; see the exact reading below.
    parsed = JSON.parse(text);
  } catch (error) {
    throw malformed(`body is not JSON (${(error as Error).message})`);
  }
  if (!isRecord(parsed)) throw malformed("body is not a JSON object");
  const { type, serial } = parsed;
  if (
    typeof serial !== "number" || !Number.isSafeInteger(serial) ||
    (serial < 0 && !(serial === CONNECTION_SERIAL && type === "RPC-EX"))
  ) {
    throw malformed("serial must be a non-negative integer");
  }
  if (typeof type !== "string" || !TYPES.has(type)) {
    const shown = typeof type === "string" ? quote(type) : describeValue(type);
    throw withSerial(malformed(`unknown message type ${shown}`), serial);
  }
  const shape = inspectJson(parsed);
  if (shape.depth > MAX_BODY_DEPTH) {
    throw withSerial(
      malformed(`body nests ${shape.depth} levels deep, over the limit of ${MAX_BODY_DEPTH}`),
      serial,
    );
  }
  const maxIntegerDigits = options.maxIntegerDigits ?? 0;
  if (shape.inexact) {
    if (type === "RPC-REQ" && options.deferArguments) {
      checkCallRequest(parsed.value, serial);
      deferred.set(parsed.value, { text, maxIntegerDigits });
      return parsed as unknown as Message;
    }
    try {
      parsed = parseJsonExact(text, maxIntegerDigits) as Record<string, unknown>;
    } catch (error) {
      if (error instanceof IntegerTooLong) {
        throw withSerial(malformed(error.message), serial);
      }
      throw withSerial(malformed(`body is not JSON (${(error as Error).message})`), serial);
    }
  }
  checkValue(parsed as Record<string, unknown>, type as MessageType, serial);
  return parsed as unknown as Message;
}

/** Checks the value of a message whose envelope is good. */
function checkValue(parsed: Record<string, unknown>, type: MessageType, serial: number): void {
  const value = parsed.value;
  if (type === "RPC-RES") {
    if (!isRecord(value) || !Array.isArray(value["return-values"])) {
      throw withSerial(malformed("RPC-RES value needs a return-values list"), serial);
    }
  } else if (type === "RPC-PART") {
    if (!isRecord(value) || !Array.isArray(value.values)) {
      throw withSerial(malformed("RPC-PART value needs a values list"), serial);
    }
  } else if (type === "RPC-EX") {
    if (!isRecord(value) || typeof value["exception-type"] !== "string") {
      throw withSerial(malformed("RPC-EX value needs an exception-type"), serial);
    }
    if (typeof value["exception-message"] !== "string") value["exception-message"] = "";
  } else if (type === "RPC-REQ") {
    checkCallRequest(value, serial);
  } else if (type === "ADMIN") {
    if (!isRecord(value) || typeof value.op !== "string") {
      throw withSerial(malformed("ADMIN value needs an op"), serial);
    }
    checkName(value.op, "ADMIN op", serial);
  } else if (value === undefined) {
    parsed.value = {};
  } else if (!isRecord(value)) {
    throw withSerial(malformed(`${type} value must be an object`), serial);
  } else if (type === "HELLO") {
    checkHello(value, serial);
  }
}

/**
 * The arguments of a request decoded with `deferArguments`, read exactly
 * now if they were left rounded (and stored in the request, so this is done
 * once).
 *
 * @throws {RpcError} `Invalid Arguments` for an integer over the digit limit.
 */
export function exactArguments(request: CallRequest): unknown[] {
  const pending = deferred.get(request);
  if (!pending) return request.arguments;
  deferred.delete(request);
  let exact: { value: CallRequest };
  try {
    exact = parseJsonExact(pending.text, pending.maxIntegerDigits) as { value: CallRequest };
  } catch (error) {
    if (error instanceof IntegerTooLong) {
      throw new RpcError(ErrorKind.InvalidArguments, `Cannot read arguments: ${error.message}`);
    }
    throw error;
  }
  request.arguments = exact.value.arguments;
  return request.arguments;
}

/** Whether {@linkcode exactArguments} still has work to do for `request`. */
export function hasDeferredArguments(request: CallRequest): boolean {
  return deferred.has(request);
}

function checkName(name: string, what: string, serial: number): void {
  const problem = nameProblem(name);
  if (problem) throw withSerial(malformed(`${what} ${problem}`), serial);
}

function checkHello(value: Record<string, unknown>, serial: number): void {
  const { versions, client } = value;
  if (
    versions !== undefined &&
    !(Array.isArray(versions) && versions.length <= MAX_OFFERED_VERSIONS &&
      versions.every((version) => Number.isSafeInteger(version)))
  ) {
    throw withSerial(
      malformed(`HELLO versions must be a list of at most ${MAX_OFFERED_VERSIONS} integers`),
      serial,
    );
  }
  if (client !== undefined) {
    if (typeof client !== "string") {
      throw withSerial(malformed("HELLO client must be a string"), serial);
    }
    checkName(client, "HELLO client", serial);
  }
}

function checkCallRequest(value: unknown, serial: number): asserts value is CallRequest {
  const fail = (reason: string) => withSerial(malformed(`RPC-REQ ${reason}`), serial);
  if (!isRecord(value)) throw fail("value must be an object");
  if (typeof value.service !== "string") throw fail("needs a service name");
  checkName(value.service, "RPC-REQ service", serial);
  if (typeof value.rpc !== "string") throw fail("needs an rpc name");
  checkName(value.rpc, "RPC-REQ rpc", serial);
  if (value.arguments === undefined) value.arguments = [];
  if (!Array.isArray(value.arguments)) throw fail("arguments must be a list");
  const argTypes = value["argument-types"];
  if (argTypes !== undefined && !isStringList(argTypes)) {
    throw fail("argument-types must be a list of type names");
  }
  const returnTypes = value["return-types"];
  if (returnTypes !== undefined && !isStringList(returnTypes)) {
    throw fail("return-types must be a list of type names");
  }
  if (value.client !== undefined) {
    if (typeof value.client !== "string") throw fail("client must be a string");
    checkName(value.client, "RPC-REQ client", serial);
  }
}

/** An error that belongs to a request with a known serial. */
export interface SerialError extends RpcError {
  serial?: number;
}

function withSerial(error: RpcError, serial: number): RpcError {
  (error as SerialError).serial = serial;
  return error;
}

/** Serializes a message body to JSON text (integers stay exact). */
export function encodeMessageText(message: Message): string {
  return stringifyJson(message);
}

/** Builds the `RPC-EX` message for an error. */
export function exceptionMessage(serial: number, error: RpcError): Message {
  return {
    type: "RPC-EX",
    serial,
    value: { "exception-type": error.kind, "exception-message": error.message },
  };
}

/** Turns a received `RPC-EX` value back into an {@linkcode RpcError}. */
export function errorFromException(value: CallException): RpcError {
  const kind = value["exception-type"];
  return new RpcError(
    isErrorKind(kind) ? kind : ErrorKind.Internal,
    value["exception-message"] ?? "",
  );
}
