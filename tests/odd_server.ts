/**
 * A server on loopback that completes the handshake and then answers each
 * request as a test says, or not at all: what the command line sees from a
 * broken, hostile or hung peer. It keeps the requests it got.
 *
 * @module
 */

import { listenTcp } from "../core/transport/tcp.ts";
import { MessageChannel } from "../core/wire/channel.ts";
import type { Message } from "../core/wire/message.ts";

/** A message as the odd server sends it: any value, the wrong ones included. */
export interface OddReply {
  type: Message["type"];
  serial: number;
  value: unknown;
}

/** What the odd server sends back for a request: a message, or nothing (it stays silent). */
export type OddAnswer = (request: Message) => OddReply | undefined;

/** A running odd server; dispose of it to stop it. */
export interface OddServer extends AsyncDisposable {
  port: number;
  /** Every request after HELLO, in the order it came. */
  requests: Message[];
}

/** The HELLO reply an odd server sends unless told otherwise. */
const GOOD_HELLO = { version: 1, server: "odd", software: "odd" };

/**
 * Starts an odd server on 127.0.0.1 and a free port; `answer` decides each
 * reply, and `hello` is the value its HELLO reply carries.
 */
export function oddServer(answer: OddAnswer, hello: unknown = GOOD_HELLO): OddServer {
  const listener = listenTcp({ hostname: "127.0.0.1", port: 0 });
  const requests: Message[] = [];
  const channels: MessageChannel[] = [];
  const serving = (async () => {
    for (;;) {
      const conn = await listener.accept();
      if (!conn) return;
      const channel = new MessageChannel(conn);
      channels.push(channel);
      channel.readAll({
        onMessage(message) {
          if (message.type === "HELLO") {
            channel.send({ type: "HELLO", serial: message.serial, value: hello } as Message);
            return;
          }
          requests.push(message);
          const reply = answer(message);
          // Sent as it is: wrong values are the point.
          if (reply) channel.send(reply as Message);
        },
        onMalformed() {},
      }).catch(() => {});
    }
  })();
  return {
    port: listener.address.port,
    requests,
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const channel of channels) channel.close();
      await serving;
    },
  };
}
