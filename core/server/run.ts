/**
 * The run stage of the call pipeline: runs the resolved overload under its
 * time limit, streams a streaming procedure's partial results as `RPC-PART`
 * as they come (checked like return values), and answers with `RPC-RES`.
 * A call ends early when its {@linkcode CallController} is aborted: by its
 * time limit (`Timeout`), by `RPC-CANCEL`, or by its connection closing
 * (`Cancelled`); the procedure's runner sees the abort through its signal.
 * A procedure that runs in the server's thread is first called at once
 * ({@linkcode CallRunner.attempt}); its time limit starts only if it did not
 * finish there, since nothing can interrupt code running in this thread.
 *
 * @module
 */

import { type Deadline, deadlines } from "../deadline.ts";
import { ErrorKind, RpcError } from "../errors.ts";
import type { CallRequest } from "../wire/message.ts";
import {
  partValues,
  type Pending,
  type ProcedureSpec,
  type ResolvedCall,
  returnValues,
} from "./registry.ts";
import type { Session } from "./session.ts";

/**
 * The controller of one call: aborting it (time limit, `RPC-CANCEL`, the
 * connection closing) aborts the signal the procedure's runner holds and
 * rejects the call's {@linkcode CallController.race} at once, without an
 * event listener per call.
 */
export class CallController extends AbortController {
  #reject: ((reason: unknown) => void) | undefined;
  #deadline: Deadline | undefined;

  override abort(reason?: unknown): void {
    if (this.signal.aborted) return;
    super.abort(reason);
    this.#reject?.(this.signal.reason);
  }

  /** Settles like `promise`, or rejects with the abort reason once aborted. */
  race<T>(promise: Promise<T>): Promise<T> {
    if (this.signal.aborted) return Promise.reject(this.signal.reason);
    return new Promise<T>((resolve, reject) => {
      this.#reject = reject;
      promise.then(resolve, reject);
    });
  }

  /**
   * Aborts with `Timeout` once `ms` have passed, unless {@linkcode disarm}ed
   * first. One shared timer serves every call's limit: a timer per call
   * costs more than most calls.
   */
  arm(ms: number, rpc: string): void {
    this.#deadline = deadlines.after(
      ms,
      () => this.abort(new RpcError(ErrorKind.Timeout, `${rpc} did not finish within ${ms} ms`)),
    );
  }

  /** Cancels the time limit of a call that settled. */
  disarm(): void {
    this.#deadline?.cancel();
  }
}

/** What {@linkcode CallRunner.attempt} returns for a procedure that cannot run at once. */
export const NOT_ATTEMPTED: unique symbol = Symbol("not attempted");

/** Runs calls; see the module documentation. */
export class CallRunner {
  #callTimeoutMs: number;

  /** `callTimeoutMs` limits a call whose procedure sets no limit of its own. */
  constructor(callTimeoutMs: number) {
    this.#callTimeoutMs = callTimeoutMs;
  }

  /**
   * Runs `call` at once when its procedure can run in this thread
   * ({@linkcode Procedure.attempt}): returns its result, or a `Pending` for
   * {@linkcode start}. Returns {@linkcode NOT_ATTEMPTED} for a procedure that
   * cannot, which `start` runs from the beginning. Throws the procedure's error.
   */
  attempt(call: ResolvedCall): unknown {
    const procedure = call.overload.procedure;
    return procedure.attempt === undefined ? NOT_ATTEMPTED : procedure.attempt(call.args);
  }

  /**
   * Starts `call` under its time limit (or goes on with the `pending` result
   * of its {@linkcode attempt}); the caller must
   * {@linkcode CallController.disarm} `controller` once the promise settles.
   * Settles with the procedure's result, or rejects with its error or the
   * abort reason.
   */
  start(
    session: Session,
    serial: number,
    request: CallRequest,
    call: ResolvedCall,
    controller: CallController,
    pending?: Pending,
  ): Promise<unknown> {
    const spec = call.overload.procedure.spec;
    controller.arm(spec.timeoutMs ?? this.#callTimeoutMs, request.rpc);
    // A streaming procedure's partial results go out as they come, checked like return values.
    const onPart = spec.signature.yields
      ? (value: unknown) =>
        session.channel.send({
          type: "RPC-PART",
          serial,
          value: { values: partValues(spec, value) },
        })
      : undefined;
    const procedure = call.overload.procedure;
    if (pending === undefined && procedure.settlesOnAbort) {
      return procedure.invoke(call.args, controller.signal, onPart);
    }
    return controller.race(
      pending
        ? pending.settle(controller.signal, onPart)
        : procedure.invoke(call.args, controller.signal, onPart),
    );
  }

  /**
   * Answers a call that returned `result` with `RPC-RES`.
   *
   * @throws {RpcError} `Execution Exception` when `result` does not match
   * the declared return types; the channel's error when the reply is too
   * large for a frame.
   */
  reply(session: Session, serial: number, spec: ProcedureSpec, result: unknown): void {
    const values = returnValues(spec, result);
    session.channel.send({ type: "RPC-RES", serial, value: { "return-values": values } });
  }
}
