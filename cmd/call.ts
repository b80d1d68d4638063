/**
 * `rpc call`: one call from the command line, for scripts and smoke tests.
 *
 * @module
 */

import { object, or } from "@optique/core/constructs";
import { message, metavar, optionName } from "@optique/core/message";
import { multiple, withDefault } from "@optique/core/modifiers";
import { argument, command, constant, option } from "@optique/core/primitives";
import { choice, string } from "@optique/core/valueparser";
import type { RpcClient } from "../core/client/client.ts";
import { connect, connectOver } from "../core/client/connect.ts";
import type { ServiceClient } from "../core/client/failover.ts";
import {
  balanceOption,
  checkFanOutFlags,
  type FanOutFlags,
  fanOutOptions,
} from "./fanout_flags.ts";
import type { BalancePolicy } from "../core/client/balance.ts";
import { declaredTypes, typedArguments, typesOption } from "./arguments.ts";
import {
  asOption,
  configOption,
  examples,
  formatPart,
  formatResults,
  jsonFlag,
  oneLine,
  print,
  printError,
  resolveServer,
  rpcArgument,
  securityOptions,
  serverArgument,
  serviceArgument,
  serviceOption,
  timeoutOption,
  UsageError,
} from "./common.ts";
import { type ClientSettings, clientSettings, connectOptions, localSource } from "./settings.ts";
import { type BrokerSettings, sharedBroker } from "./broker.ts";

/** `RPC` and `ARG...`, the end of both forms of `rpc call`. */
const rpcAndArguments = {
  rpc: rpcArgument,
  args: multiple(argument(string({ metavar: "ARG" }), {
    description: message`Arguments, converted to the RPC's declared types.`,
  })),
};

/** The options of `rpc call`, in both of its forms. */
const callOptions = {
  command: constant("call" as const),
  ...securityOptions,
  config: configOption,
  as: asOption,
  json: jsonFlag,
  types: typesOption,
  timeout: timeoutOption,
  wire: withDefault(
    option("--wire", choice(["rpc", "course"] as const, { metavar: "FORM" }), {
      description:
        message`${"course"}: send the course's one-shot JSON request instead of rpc's framed protocol, for servers that speak only that form (argument types from --types or init.yaml).`,
    }),
    "rpc" as const,
  ),
};

/**
 * The parser of `rpc call`: `SERVER SERVICE RPC ARG...`, or `--service
 * SERVICE RPC ARG...`. Each form has all the options (rather than one
 * object of options merged with a choice of forms), so that completing an
 * option's value offers only its values.
 */
export const callCommand = command(
  "call",
  or(
    object({
      ...callOptions,
      server: serverArgument,
      service: serviceArgument,
      ...rpcAndArguments,
    }),
    object({
      ...callOptions,
      ...fanOutOptions,
      balance: balanceOption,
      service: serviceOption(
        message`Call whichever provider of SERVICE init.yaml lists is up, in the file's order, instead of one SERVER; fail over to the next when one is down. A call whose connection is lost after it was sent is retried only if the RPC is marked idempotent.`,
      ),
      ...rpcAndArguments,
    }),
    {
      errors: {
        // Without this, an empty command line would only hear "No matching option or argument".
        noMatch: message`Expected a ${metavar("SERVER")} (or ${optionName("--service")} ${
          metavar("SERVICE")
        }), but too few arguments`,
      },
    },
  ),
  {
    brief: message`Call one procedure and print its return values.`,
    description:
      message`Arguments are converted to the RPC's declared types: ${"int"} and ${"float"} are decimal numbers, ${"bool"} is true or false, ${"str"} is taken as is, lists are JSON (${"[1,2]"}) or comma-separated (${"1,2"}). A negative number (${"-1"}, ${"-2.5"}) is an argument; put ${"--"} before any other argument that starts with a dash. Exit status: 0 on success, 3 when the server cannot be reached, 4 on timeout, 10-18 by exception kind (see README); with ${"--all"}, 7 when some servers failed.`,
    footer: examples(
      "rpc call --config init.yaml --as c1 s1 service1 rpc1 42 hello",
      'rpc call 127.0.0.1:8181 service1 rpc2 1,2,3 \'["a","b"]\' --json',
      "rpc call --types float,List[float] s2 service2 rpc3 -1.5 2,3",
      "rpc call --as c1 --service service1 rpc1 3 ab",
      "rpc call --wire course --types int,str 127.0.0.1:9000 service1 rpc1 3 ab",
      "rpc call --as c1 --all --service service1 rpc1 3 ab --json",
    ),
  },
);

/** Options of {@linkcode runCall}, as parsed. */
export interface CallCommandOptions extends Partial<FanOutFlags> {
  config?: string;
  as?: string;
  json: boolean;
  types?: string;
  timeout?: string;
  /** The wire form: rpc's framed protocol, or the course's one-shot JSON request. */
  wire?: "rpc" | "course";
  /** `--balance`, with `--service`. */
  balance?: BalancePolicy;
  /** The server to call; absent with `--service`, which calls any provider of `service`. */
  server?: string;
  service: string;
  rpc: string;
  args: readonly string[];
}

/** Prints one partial result of a streaming call as it arrives. */
function printPart(part: unknown[], json: boolean): void {
  for (const line of formatPart(part, json)) print(line);
}

/** How long `rpc call --service` waits for one provider to accept the connection. */
const PROVIDER_CONNECT_TIMEOUT_MS = 5_000;

/**
 * `rpc call --service`: the call goes to whichever provider of the service
 * is up, failing over as {@linkcode ServiceClient} describes.
 */
async function runServiceCall(
  options: CallCommandOptions,
  settings: ClientSettings,
): Promise<number> {
  if (settings.broker && options.balance === undefined) {
    return await runBrokerServiceCall(options, settings, settings.broker);
  }
  if (!settings.cluster) {
    throw new UsageError(
      "--service needs init.yaml to find the providers: pass --config FILE or set RPC_CONFIG",
    );
  }
  // Only --service needs failover: a call to one SERVER does not load it.
  const { ServiceClient } = await import("../core/client/failover.ts");
  const service: ServiceClient = new ServiceClient(settings.cluster, options.service, {
    ...connectOptions(settings),
    // A provider that does not even accept the connection soon is taken to be down.
    connectTimeoutMs: Math.min(PROVIDER_CONNECT_TIMEOUT_MS, settings.timeoutMs),
    ...(options.balance ? { balance: options.balance } : {}),
    onFailover: (provider, error) =>
      printError(
        `note: ${provider} is unavailable (${oneLine(error.message)}); trying the next provider`,
      ),
  });
  try {
    const { values, chosen } = await typedArguments(options, settings.cluster, service, {
      timeoutMs: settings.timeoutMs,
    });
    const results = await service.call(options.rpc, values, {
      timeoutMs: settings.timeoutMs,
      ...declaredTypes(chosen),
      onPart: (part) => printPart(part, options.json),
    });
    for (const line of formatResults(results, options.json)) print(line);
    return 0;
  } finally {
    service.close();
  }
}

/**
 * `rpc call --service` through a broker: the session opens on the
 * service's subject, in its providers' queue group, so the broker picks the
 * provider. With init.yaml, a server that answers but is not one of the
 * service's providers there is refused (see `Broker.open`).
 */
async function runBrokerServiceCall(
  options: CallCommandOptions,
  settings: ClientSettings,
  brokerSettings: BrokerSettings,
): Promise<number> {
  const broker = await sharedBroker(brokerSettings);
  const providers = settings.cluster?.services.get(options.service)?.providers;
  const session = await broker.open({ service: options.service }, {
    timeoutMs: settings.timeoutMs,
    ...(providers ? { providers } : {}),
  });
  const client = await connectOver(session, connectOptions(settings));
  try {
    return await callOn(client, options, settings);
  } finally {
    client.close();
  }
}

/** Calls `options.rpc` on a connected client, printing each part and the results. */
async function callOn(
  client: RpcClient,
  options: CallCommandOptions,
  settings: ClientSettings,
): Promise<number> {
  const { values, chosen } = await typedArguments(options, settings.cluster, client, {
    timeoutMs: settings.timeoutMs,
  });
  // Streaming RPCs print each partial result as it arrives, then the final values.
  const stream = client.stream(options.service, options.rpc, values, {
    timeoutMs: settings.timeoutMs,
    ...declaredTypes(chosen),
  });
  for await (const part of stream) printPart(part, options.json);
  for (const line of formatResults(await stream.result, options.json)) print(line);
  return 0;
}

/**
 * `rpc call --wire course`: one request in the course's own form. Such a
 * server cannot be asked for signatures, so the types come from --types or
 * init.yaml.
 */
async function runCourseCall(
  options: CallCommandOptions & { server: string },
  settings: ClientSettings,
): Promise<number> {
  const noServer = {
    list: (): never => {
      throw new UsageError(
        `--wire course needs the argument types of ${options.service}.${options.rpc}: pass --types, or --config with an init.yaml that declares it (a course server cannot be asked)`,
      );
    },
  };
  const { values, chosen } = await typedArguments(options, settings.cluster, noServer, {});
  const declared = declaredTypes(chosen);
  const localAddress = localSource(settings.cluster, settings.client);
  const { callCourse } = await import("../core/client/course_client.ts");
  const results = await callCourse(resolveServer(options.server, settings.cluster), {
    service: options.service,
    rpc: options.rpc,
    arguments: values,
    ...(declared.argumentTypes ? { "argument-types": declared.argumentTypes } : {}),
    ...(declared.returnTypes ? { "return-types": declared.returnTypes } : {}),
    // Not in the course's form; rpc's servers read it, others ignore it. A secret cannot be
    // proven in this form (it needs HELLO and AUTH), so none is sent.
    ...(settings.client ? { client: settings.client } : {}),
  }, {
    timeoutMs: settings.timeoutMs,
    ...(settings.tls ? { tls: settings.tls } : {}),
    ...(localAddress ? { localAddress } : {}),
  });
  for (const line of formatResults(results, options.json)) print(line);
  return 0;
}

/** Runs `rpc call`; returns the exit code. */
export async function runCall(options: CallCommandOptions): Promise<number> {
  const settings = await clientSettings(options);
  if (options.wire === "course") {
    if (options.server === undefined) {
      throw new UsageError("--wire course calls one SERVER; --service needs rpc's own protocol");
    }
    if (settings.broker) {
      throw new UsageError(
        "--wire course speaks to a socket; through a broker only rpc's own protocol travels",
      );
    }
    return await runCourseCall({ ...options, server: options.server }, settings);
  }
  const fanOut = { ...options, all: options.all ?? false };
  checkFanOutFlags(fanOut);
  if (fanOut.all && options.balance !== undefined) {
    throw new UsageError("--balance picks one provider; --all calls them all: give one of them");
  }
  if (fanOut.all) {
    // Only --all needs the fan-out, which brings deploy and hashing with it.
    const { runCallAll } = await import("./fanout.ts");
    return await runCallAll(fanOut, settings);
  }
  if (options.server === undefined) return await runServiceCall(options, settings);
  const endpoint = resolveServer(options.server, settings.cluster, settings.broker !== undefined);
  const client = await connect(endpoint, connectOptions(settings));
  try {
    return await callOn(client, options, settings);
  } finally {
    client.close();
  }
}
