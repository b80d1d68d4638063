/**
 * The requests in flight on one client connection, each waiting for the
 * reply with its serial. This is the client's hot path, so a request costs
 * one object (its {@linkcode Request}, which is also its abort listener) and
 * the one promise it returns: no closures, and no clock reading or timer of
 * its own. Requests sent in the same tick with the same time limit share one
 * deadline ({@linkcode Cohort}), armed once the tick's calls have all been
 * sent, so a batch of 64 calls reads the clock once.
 *
 * A shared deadline is armed after the last request of its batch was sent,
 * so each request gets at least its whole time limit (a request is given up
 * late by at most the time it took to send the rest of its batch, never
 * early).
 *
 * @module
 */

import type { MessageChannel } from "../wire/channel.ts";
import { type Deadline, deadlines } from "../deadline.ts";
import { ErrorKind, RpcError } from "../errors.ts";
import { type CallRequest, errorFromException, type Message } from "../wire/message.ts";
import { stringifyJson } from "../types/types.ts";

/** What a client's reader needs of a request waiting for its reply (see `connect.ts`). */
export interface Pending {
  resolve(message: Message): void;
  reject(error: RpcError): void;
  /** Receives the partial results of a streaming call. */
  onPart?: (values: unknown[]) => void;
  /** Drops the call's deadline and abort listener; called before it resolves or rejects. */
  settle?: () => void;
}

/** The error a reply of the wrong type stands for. */
export function replyError(reply: Message): RpcError {
  if (reply.type === "RPC-EX") return errorFromException(reply.value);
  return new RpcError(ErrorKind.MalformedFrame, `Unexpected ${reply.type} reply`);
}

/**
 * A promise's resolving functions, taken by one shared executor: a request
 * makes its promise with `new Promise(capture)` and takes them at once
 * ({@linkcode taken}), which costs neither a closure nor the object
 * `Promise.withResolvers` returns.
 */
let resolved: ((value: never) => void) | undefined;
let rejected: ((error: RpcError) => void) | undefined;
function capture(resolve: (value: never) => void, reject: (error: unknown) => void): void {
  resolved = resolve;
  rejected = reject;
}

/**
 * A new request for the promise just made with `capture`. The functions are
 * not kept here after: they would keep the last request's promise, and the
 * reply it settled with, alive until the next request.
 */
function taken(
  requests: Requests,
  serial: number,
  settles: Settles,
  signal: AbortSignal | undefined,
  onPart: ((values: unknown[]) => void) | undefined,
  late: string | undefined,
): Request {
  const request = new Request(
    requests,
    serial,
    resolved!,
    rejected!,
    settles,
    signal,
    onPart,
    late,
  );
  resolved = rejected = undefined;
  return request;
}

/** The body of an `RPC-REQ` up to its serial, as {@linkcode encodeCall} continues it. */
const CALL_HEAD = new TextEncoder().encode('{"type":"RPC-REQ","serial":');

/** A call's request encoded once but for its serial: see {@linkcode encodeCall}. */
export interface EncodedCall {
  /** The body after the serial: the value and the closing brace, UTF-8. */
  readonly tail: Uint8Array;
}

/**
 * Encodes a call's request for sending again and again: everything but its
 * serial, which each sending writes in (`MessageChannel.sendAroundSerial`).
 *
 * @throws {RpcError} when the value cannot be encoded as JSON.
 */
export function encodeCall(value: CallRequest): EncodedCall {
  let json: string;
  try {
    json = stringifyJson(value);
  } catch (error) {
    throw RpcError.from(error);
  }
  return { tail: new TextEncoder().encode(`,"value":${json}}`) };
}

/**
 * What a request's promise settles with: the reply itself (`reply`), the
 * return values of an `RPC-RES` (`values`), or them as a local function
 * returns (`value`: nothing for none, the value for one, the list for
 * several). With `values` and `value`, any other reply rejects.
 */
export type Settles = "reply" | "values" | "value";

/** One request waiting for its reply; see the module documentation. */
class Request implements Pending {
  /** Its shared deadline, while it has one. */
  cohort: Cohort | undefined;
  /** Its place in `cohort.members`. */
  index = 0;

  constructor(
    readonly requests: Requests,
    readonly serial: number,
    readonly fulfil: (value: never) => void,
    readonly fail: (error: RpcError) => void,
    readonly settles: Settles,
    readonly signal: AbortSignal | undefined,
    readonly onPart: ((values: unknown[]) => void) | undefined,
    /** How the `Timeout` error begins ("No reply with the service list"); "No reply" if not given. */
    readonly late: string | undefined,
  ) {}

  resolve(message: Message): void {
    this.#settle();
    if (this.settles === "reply") this.fulfil(message as never);
    else if (message.type !== "RPC-RES") this.fail(replyError(message));
    else {
      const values = message.value["return-values"];
      this.fulfil(
        (this.settles === "values" || values.length > 1
          ? values
          : values.length === 1
          ? values[0]
          : undefined) as never,
      );
    }
  }

  reject(error: RpcError): void {
    this.#settle();
    this.fail(error);
  }

  /** Leaves the shared deadline and drops the abort listener. */
  #settle(): void {
    const cohort = this.cohort;
    if (cohort) {
      this.cohort = undefined;
      cohort.leave(this);
    }
    this.signal?.removeEventListener("abort", this);
  }

  /** The request's signal was aborted. */
  handleEvent(): void {
    const reason = this.signal!.reason;
    this.requests.giveUp(
      this,
      reason instanceof RpcError ? reason : new RpcError(ErrorKind.Cancelled, "Call cancelled"),
    );
  }
}

/**
 * The requests with the same time limit sent in one tick: one deadline for
 * all of them, armed at the end of the tick, cancelled when the last of them
 * is answered.
 */
class Cohort {
  readonly members: (Request | undefined)[] = [];
  #live = 0;
  #deadline: Deadline | undefined;

  constructor(readonly requests: Requests, readonly timeoutMs: number) {}

  join(request: Request): void {
    request.cohort = this;
    request.index = this.members.length;
    this.members.push(request);
    this.#live++;
  }

  /** A member was answered (or given up): it no longer needs the deadline. */
  leave(request: Request): void {
    // The slot is cleared so a long call does not keep its batch's answered calls alive.
    this.members[request.index] = undefined;
    if (--this.#live === 0) this.#deadline?.cancel();
  }

  /** The batch is sent: starts the clock, unless every member has been answered already. */
  arm(): void {
    if (this.#live > 0) this.#deadline = deadlines.after(this.timeoutMs, () => this.#expire());
  }

  #expire(): void {
    for (const request of this.members) {
      if (!request) continue;
      this.requests.giveUp(
        request,
        new RpcError(
          ErrorKind.Timeout,
          `${request.late ?? "No reply"} within ${this.timeoutMs} ms`,
        ),
      );
    }
  }
}

/** The requests in flight on one connection. */
export class Requests {
  readonly #channel: MessageChannel;
  readonly #pending: Map<number, Pending>;
  #nextSerial = 1;
  /** The cohorts still taking members, by time limit; armed and emptied at the end of the tick. */
  #open = new Map<number, Cohort>();
  #armAll = (): void => {
    for (const cohort of this.#open.values()) cohort.arm();
    this.#open.clear();
  };

  constructor(channel: MessageChannel, pending: Map<number, Pending>) {
    this.#channel = channel;
    this.#pending = pending;
  }

  /**
   * Sends a message and waits for the reply with the same serial; the
   * promise settles as `settles` says. With a signal or a time limit, the
   * request is given up when either fires and the server is sent
   * `RPC-CANCEL`.
   */
  send(
    type: Message["type"],
    value: Message["value"],
    settles: Settles,
    signal: AbortSignal | undefined,
    timeoutMs: number | undefined,
    onPart: ((values: unknown[]) => void) | undefined,
    late: string | undefined,
  ): Promise<unknown> {
    const serial = this.#serial();
    const promise = new Promise<unknown>(capture);
    const request = taken(this, serial, settles, signal, onPart, late);
    this.#pending.set(serial, request);
    try {
      this.#channel.send({ type, serial, value } as Message);
    } catch (error) {
      this.#pending.delete(serial);
      request.fail(RpcError.from(error));
      return promise;
    }
    this.#watch(request, signal, timeoutMs);
    return promise;
  }

  /**
   * Sends a call encoded once ({@linkcode encodeCall}) with a serial of its
   * own, and resolves with its return values, as `send` does.
   */
  sendEncoded(
    encoded: EncodedCall,
    signal: AbortSignal | undefined,
    timeoutMs: number | undefined,
  ): Promise<unknown[]> {
    const serial = this.#serial();
    const promise = new Promise<unknown[]>(capture);
    const request = taken(this, serial, "values", signal, undefined, undefined);
    this.#pending.set(serial, request);
    try {
      this.#channel.sendAroundSerial(CALL_HEAD, serial, encoded.tail);
    } catch (error) {
      this.#pending.delete(serial);
      request.fail(RpcError.from(error));
      return promise;
    }
    this.#watch(request, signal, timeoutMs);
    return promise;
  }

  #serial(): number {
    const serial = this.#nextSerial++;
    if (this.#nextSerial > 0xffffffff) this.#nextSerial = 1;
    return serial;
  }

  /** Gives the request sent up when its signal fires or its time limit passes. */
  #watch(request: Request, signal: AbortSignal | undefined, timeoutMs: number | undefined): void {
    if (signal) {
      if (signal.aborted) return request.handleEvent();
      signal.addEventListener("abort", request, { once: true });
    }
    if (timeoutMs !== undefined) {
      let cohort = this.#open.get(timeoutMs);
      if (!cohort) {
        if (this.#open.size === 0) queueMicrotask(this.#armAll);
        cohort = new Cohort(this, timeoutMs);
        this.#open.set(timeoutMs, cohort);
      }
      cohort.join(request);
    }
  }

  /** Fails a request that is still waiting, and tells the server to cancel it. */
  giveUp(request: Request, error: RpcError): void {
    if (this.#pending.get(request.serial) !== request) return;
    this.#pending.delete(request.serial);
    this.#channel.send({ type: "RPC-CANCEL", serial: request.serial, value: {} });
    request.reject(error);
  }
}
