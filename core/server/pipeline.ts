/**
 * The call pipeline: how one `RPC-REQ` from an identified connection
 * becomes a reply. Each stage is its own module and a plain method call
 * here; the only waits are the ones a call must make (its turn under
 * backpressure, and the procedure itself):
 *
 * ```text
 * admit (admit.ts) → authorize (authorize.ts) → resolve (resolve.ts)
 *   → run (run.ts) → record (record.ts)
 * ```
 *
 * A procedure that runs in the server's own thread (trusted TypeScript) and
 * returns a plain value is answered in the same tick, with no cancel handle,
 * time limit or promise: nothing could cancel or time out a call that never
 * waits. One that returns a promise or a stream gets them then.
 *
 * Whatever a stage throws becomes the call's `RPC-EX` and is recorded with
 * its kind; nothing a call does ends its connection or the server.
 *
 * @module
 */

import { RpcError } from "../errors.ts";
import { formatTypes } from "../types/types.ts";
import type { CallRequest } from "../wire/message.ts";
import type { CallAdmission } from "./admit.ts";
import { authorize } from "./authorize.ts";
import type { CallRecorder } from "./record.ts";
import { type Overload, Pending, type Registry } from "./registry.ts";
import { resolve } from "./resolve.ts";
import { CallController, type CallRunner, NOT_ATTEMPTED } from "./run.ts";
import { sendException, type Session } from "./session.ts";

/**
 * The argument types of each overload as the log shows them (`int, str`),
 * formatted once per overload rather than once per call.
 */
const signatureTexts = new WeakMap<Overload, string>();

function signatureText(overload: Overload): string {
  let text = signatureTexts.get(overload);
  if (text === undefined) {
    text = formatTypes(overload.signature.args);
    signatureTexts.set(overload, text);
  }
  return text;
}

/**
 * Makes the cancel handle of call `serial` and puts it among `session`'s
 * calls in flight, where `RPC-CANCEL` and the connection's end find it.
 */
function inFlight(session: Session, serial: number): CallController {
  const controller = new CallController();
  // The dispatcher refuses a serial already in flight, so this entry is the call's own.
  session.inflight.set(serial, controller);
  return controller;
}

/** The stages {@linkcode CallPipeline} runs, and what it serves. */
export interface CallStages {
  registry: Registry;
  admission: CallAdmission;
  runner: CallRunner;
  recorder: CallRecorder;
}

/** Runs calls through the stages; see the module documentation. */
export class CallPipeline {
  /**
   * What calls resolve against. Replacing it leaves calls already resolved
   * running on the old registry's procedures.
   */
  registry: Registry;
  #admission: CallAdmission;
  #runner: CallRunner;
  #recorder: CallRecorder;

  constructor(stages: CallStages) {
    this.registry = stages.registry;
    this.#admission = stages.admission;
    this.#runner = stages.runner;
    this.#recorder = stages.recorder;
  }

  /**
   * Runs one call of `session` to its reply. The caller has checked that no
   * call in flight has `serial`. `started` is when the request arrived
   * (`performance.now()`); the dispatcher passes the time it read it, which
   * saves reading the clock again. Never rejects.
   */
  async call(
    session: Session,
    serial: number,
    request: CallRequest,
    started: number = performance.now(),
  ): Promise<void> {
    session.calls++;
    /**
     * The call's cancel handle, made once the call has to wait (for its turn, for its
     * procedure): a call answered at once can be neither cancelled nor timed out.
     */
    let controller: CallController | undefined;
    /** Whether the call holds a place among the connection's running calls. */
    let running = false;
    const registry = this.registry;
    // The argument types, once known: resolved, or (for a call that fails before that) declared
    // by the request.
    let signature: string | undefined;
    let outcome = "ok";
    // A refusal repeated by the same peer is counted rather than logged and audited each time.
    let recorded = true;
    try {
      this.#admission.admit(session, request);
      const resolved = resolve(registry, request, authorize(registry, session.client, request));
      signature = signatureText(resolved.overload);
      // Backpressure: while the client is not reading its replies, the call waits its turn.
      if (!session.replies.tryAcquire()) {
        controller = inFlight(session, serial);
        await session.replies.acquire(controller.signal);
      }
      running = true;
      // A procedure that runs in this thread and returns a plain value is answered at once.
      let result = this.#runner.attempt(resolved);
      if (result === NOT_ATTEMPTED || result instanceof Pending) {
        controller ??= inFlight(session, serial);
        const pending = result === NOT_ATTEMPTED ? undefined : result;
        try {
          result = await this.#runner.start(
            session,
            serial,
            request,
            resolved,
            controller,
            pending,
          );
        } finally {
          controller.disarm();
        }
      }
      // A reply too large to send throws here, so the call is answered and recorded as failed.
      this.#runner.reply(session, serial, resolved.overload.procedure.spec, result);
      this.#recorder.served(session, request, signature, started);
    } catch (error) {
      const rpcError = RpcError.from(error);
      outcome = rpcError.kind;
      signature ??= request["argument-types"]?.join(", ");
      sendException(session.channel, serial, rpcError);
      recorded = this.#recorder.failed(session, request, signature, rpcError);
    } finally {
      if (running) session.replies.release();
      if (controller !== undefined) {
        session.inflight.delete(serial);
        // The signal is aborted only when the call was cut short (time limit, RPC-CANCEL, the
        // connection closing): a finished procedure has settled, and runners drop their
        // listeners when it does, so aborting here would only build an event nobody hears.
        if (session.inflight.size === 0) session.idle?.resolve();
      }
      this.#recorder.ended(session, request, signature, outcome, started, recorded);
    }
  }
}
