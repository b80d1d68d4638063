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
import { errorFromException, type Message } from "../wire/message.ts";

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

/** One request waiting for its reply; see the module documentation. */
class Request implements Pending {
  /** Its shared deadline, while it has one. */
  cohort: Cohort | undefined;
  /** Its place in `cohort.members`. */
  index = 0;

  constructor(
    readonly requests: Requests,
    readonly serial: number,
    readonly fulfil: (value: unknown) => void,
    readonly fail: (error: RpcError) => void,
    /** Resolve with the return values of an `RPC-RES` (and fail on any other reply), not the reply. */
    readonly values: boolean,
    readonly signal: AbortSignal | undefined,
    readonly onPart: ((values: unknown[]) => void) | undefined,
    /** How the `Timeout` error begins ("No reply with the service list"); "No reply" if not given. */
    readonly late: string | undefined,
  ) {}

  resolve(message: Message): void {
    this.#settle();
    if (!this.values) this.fulfil(message);
    else if (message.type === "RPC-RES") this.fulfil(message.value["return-values"]);
    else this.fail(replyError(message));
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
   * Sends a message and waits for the reply with the same serial: resolves
   * with the reply, or with `values` with the return values of an
   * `RPC-RES` (any other reply rejects). With a signal or a time limit, the
   * request is given up when either fires and the server is sent
   * `RPC-CANCEL`.
   */
  send(
    type: Message["type"],
    value: Message["value"],
    values: boolean,
    signal: AbortSignal | undefined,
    timeoutMs: number | undefined,
    onPart: ((values: unknown[]) => void) | undefined,
    late: string | undefined,
  ): Promise<unknown> {
    const serial = this.#nextSerial++;
    if (this.#nextSerial > 0xffffffff) this.#nextSerial = 1;
    const { promise, resolve, reject } = Promise.withResolvers<unknown>();
    const request = new Request(this, serial, resolve, reject, values, signal, onPart, late);
    this.#pending.set(serial, request);
    try {
      this.#channel.send({ type, serial, value } as Message);
    } catch (error) {
      this.#pending.delete(serial);
      reject(RpcError.from(error));
      return promise;
    }
    if (signal) {
      if (signal.aborted) {
        request.handleEvent();
        return promise;
      }
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
    return promise;
  }

  /** Fails a request that is still waiting, and tells the server to cancel it. */
  giveUp(request: Request, error: RpcError): void {
    if (this.#pending.get(request.serial) !== request) return;
    this.#pending.delete(request.serial);
    this.#channel.send({ type: "RPC-CANCEL", serial: request.serial, value: {} });
    request.reject(error);
  }
}
