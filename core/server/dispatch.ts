/**
 * Dispatch: from the bytes of one connection to its stages. Reads the
 * session's messages in order and sends each where it belongs: `HELLO` and
 * `AUTH` to the identify stage ({@linkcode Identification}), `RPC-REQ` (once
 * the connection is identified) to the {@linkcode CallPipeline}, `RPC-CANCEL`
 * to the call in flight, `LIST` to the registry, `ADMIN` to the
 * {@linkcode AdminRoute}. A malformed frame, a serial already in flight or a
 * fault in handling one message is answered and the connection goes on;
 * only a frame that cannot be read past ends it.
 *
 * @module
 */

import { ErrorKind, RpcError } from "../errors.ts";
import type { Logger } from "../log.ts";
import {
  type AuthRequest,
  CONNECTION_SERIAL,
  exceptionMessage,
  type HelloRequest,
  type Message,
} from "../wire/message.ts";
import { clip } from "../wire/names.ts";
import type { AdminRoute } from "./admin_route.ts";
import type { Identification } from "./identify.ts";
import type { CallPipeline } from "./pipeline.ts";
import { describe, sendException, type Session } from "./session.ts";

/** Options of {@linkcode Dispatcher}. */
export interface DispatcherOptions {
  logger: Logger;
  identification: Identification;
  pipeline: CallPipeline;
  admin: AdminRoute;
}

/** Reads and dispatches the messages of sessions; see the module documentation. */
export class Dispatcher {
  #logger: Logger;
  #identification: Identification;
  #pipeline: CallPipeline;
  #admin: AdminRoute;

  constructor(options: DispatcherOptions) {
    this.#logger = options.logger;
    this.#identification = options.identification;
    this.#pipeline = options.pipeline;
    this.#admin = options.admin;
  }

  /**
   * The serial to answer a request with: its own, unless a call in flight
   * already has it (then the reply would be taken for that call's).
   */
  #replySerial(session: Session, serial: number | undefined): number {
    return serial === undefined || session.inflight.has(serial) ? CONNECTION_SERIAL : serial;
  }

  /**
   * Reads `session`'s messages and handles each until the peer closes,
   * then finishes the calls it waits for and ends the connection. A frame
   * that cannot be read past is answered under the connection's serial, and
   * ends it.
   */
  async read(session: Session): Promise<void> {
    const { channel } = session;
    try {
      await channel.readAll({
        onMessage: (message) => {
          session.lastMessageAt = channel.receivedAt;
          session.greeted = true;
          try {
            this.handle(session, message);
          } catch (error) {
            // A fault in handling one message: answer it, and keep the connection.
            const rpcError = RpcError.from(error);
            this.#logger.error(
              "internal",
              `${describe(session)} ${message.type}: ${clip(rpcError.message)}`,
              { remote: session.remote, client: session.client, error: clip(rpcError.message) },
            );
            sendException(channel, this.#replySerial(session, message.serial), rpcError);
          }
        },
        onMalformed: (error, serial) => {
          this.#logger.warn(
            "protocol",
            `${describe(session)} sent a malformed frame: ${clip(error.message)}`,
            {
              remote: session.remote,
              client: session.client,
            },
          );
          sendException(channel, this.#replySerial(session, serial), error);
        },
      });
      // The peer closed its side: finish the calls it is waiting for. If it
      // closed both sides, a write fails and closes the channel: stop waiting,
      // and the server aborts the calls in flight once this returns (stopping their generators).
      if (session.inflight.size > 0 && !channel.closed) {
        session.idle = Promise.withResolvers();
        await Promise.race([session.idle.promise, channel.whenClosed]);
      }
      await channel.end();
    } catch (error) {
      const rpcError = RpcError.from(error);
      if (rpcError.kind === ErrorKind.FrameTooLarge || rpcError.kind === ErrorKind.MalformedFrame) {
        this.#logger.warn("protocol", `${describe(session)}: ${rpcError.message}; closing`, {
          remote: session.remote,
          client: session.client,
        });
        channel.send(exceptionMessage(CONNECTION_SERIAL, rpcError));
        await channel.end();
      }
    }
  }

  /** Handles one message of `session`. */
  handle(session: Session, message: Message): void {
    if (session.refused) return;
    if (
      message.type !== "HELLO" && message.type !== "AUTH" &&
      !this.#identification.mayProceed(session, message)
    ) {
      return;
    }
    if (message.type !== "RPC-CANCEL" && session.inflight.has(message.serial)) {
      // Answered under the connection's serial: under its own, the client would take the
      // refusal for the reply to the call in flight.
      const error = new RpcError(
        ErrorKind.MalformedFrame,
        `Serial ${message.serial} is already in use by a call in flight on this connection`,
      );
      this.#logger.warn("protocol", `${describe(session)}: ${error.message}`, {
        remote: session.remote,
        client: session.client,
      });
      sendException(session.channel, CONNECTION_SERIAL, error);
      return;
    }
    switch (message.type) {
      case "HELLO":
        this.#identification.hello(session, message.serial, message.value as HelloRequest);
        return;
      case "AUTH":
        this.#identification.auth(session, message.serial, message.value as AuthRequest);
        return;
      case "RPC-REQ":
        if (
          !session.identified &&
          !this.#identification.identify(session, message.value.client, message.serial, false)
        ) {
          return;
        }
        // Set by onMessage from the read that brought this message: the call's arrival time.
        void this.#pipeline.call(session, message.serial, message.value, session.lastMessageAt);
        return;
      case "RPC-CANCEL":
        session.inflight.get(message.serial)?.abort(
          new RpcError(ErrorKind.Cancelled, "Call cancelled by the client"),
        );
        return;
      case "LIST":
        if (
          !session.identified &&
          !this.#identification.identify(session, undefined, message.serial, false)
        ) {
          return;
        }
        session.channel.send({
          type: "LIST-RES",
          serial: message.serial,
          value: { services: this.#pipeline.registry.describe(session.client) },
        });
        return;
      case "ADMIN":
        void this.#admin.handle(session, message.serial, message.value);
        return;
      default:
        session.channel.send(exceptionMessage(
          message.serial,
          new RpcError(
            ErrorKind.MalformedFrame,
            `A server does not accept ${message.type} messages`,
          ),
        ));
    }
  }
}
