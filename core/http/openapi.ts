/**
 * The OpenAPI 3.1 document of what one caller may call: one operation per
 * RPC (`POST /v1/{service}/{rpc}`), its overloads as alternative argument
 * tuples, built from the services `LIST` gives that caller — so it is
 * filtered by tenant exactly as `rpc list` is.
 *
 * @module
 */

import type { RpcDescription, ServiceDescription } from "../wire/message.ts";
import { parseType, type RpcType } from "../types/types.ts";
import { VERSION } from "../version.ts";
import { HTTP_STATUS } from "./status.ts";

type Schema = Record<string, unknown>;

/** The JSON Schema of a value of `type`. */
export function typeSchema(type: RpcType): Schema {
  switch (type.kind) {
    case "int":
      return { type: "integer" };
    case "float":
      return { type: "number" };
    case "str":
      return { type: "string" };
    case "bool":
      return { type: "boolean" };
    case "list":
      return { type: "array", items: typeSchema(type.of) };
  }
}

/** The schema of a list of exactly these types, in order. */
function tupleSchema(types: readonly string[]): Schema {
  return {
    type: "array",
    prefixItems: types.map((name) => typeSchema(parseType(name))),
    minItems: types.length,
    maxItems: types.length,
    items: false,
  };
}

/** One schema, or any of several distinct ones. */
function anyOf(schemas: Schema[]): Schema {
  const distinct = [...new Map(schemas.map((s) => [JSON.stringify(s), s])).values()];
  return distinct.length === 1 ? distinct[0] : { anyOf: distinct };
}

function signature(rpc: RpcDescription): string {
  const returns = rpc.returns.length === 1 ? rpc.returns[0] : `(${rpc.returns.join(", ")})`;
  const yields = rpc.yields ? ` yields (${rpc.yields.join(", ")})` : "";
  return `${rpc.name}(${rpc.args.join(", ")}) -> ${returns}${yields}`;
}

// A call never gets 405 (the path takes POST), 499 (its caller is gone) or 409 (only an
// install, which the gateway does not offer, can conflict).
const ERROR_STATUSES = [...new Set(Object.values(HTTP_STATUS))]
  .filter((status) => status !== 405 && status !== 409 && status !== 499)
  .sort();

function operation(service: string, overloads: RpcDescription[]): Schema {
  const args = overloads.map((rpc) => tupleSchema(rpc.args));
  const streams = overloads.some((rpc) => rpc.yields);
  const result = {
    type: "object",
    properties: { "return-values": anyOf(overloads.map((rpc) => tupleSchema(rpc.returns))) },
    required: ["return-values"],
  };
  const docs = overloads.map((rpc) => `- \`${signature(rpc)}\`${rpc.doc ? `: ${rpc.doc}` : ""}`);
  const ok = streams
    ? {
      description: "Server-Sent Events: one `part` event per partial result " +
        '(`{"values": [...]}`), then one `result` event (`{"return-values": [...]}`) ' +
        'or one `error` event (`{"kind", "message"}`).',
      content: { "text/event-stream": { schema: { type: "string" } } },
    }
    : { description: "The return values.", content: { "application/json": { schema: result } } };
  const responses: Schema = { "200": ok };
  for (const status of ERROR_STATUSES) {
    responses[String(status)] = { $ref: "#/components/responses/Error" };
  }
  return {
    operationId: `${service}.${overloads[0].name}`,
    summary: overloads.find((rpc) => rpc.doc)?.doc ?? signature(overloads[0]),
    description: `Overloads:\n\n${docs.join("\n")}`,
    tags: [service],
    requestBody: {
      required: false,
      description: "The arguments as a JSON array, or an object with `arguments` (or " +
        "`text-arguments`, strings converted as `rpc call` converts its command line) and " +
        "optional `argument-types` and `return-types`. Integers of any size are exact.",
      content: {
        "application/json": {
          schema: {
            anyOf: [
              anyOf(args),
              {
                type: "object",
                properties: {
                  arguments: anyOf(args),
                  "text-arguments": { type: "array", items: { type: "string" } },
                  "argument-types": { type: "array", items: { type: "string" } },
                  "return-types": { type: "array", items: { type: "string" } },
                },
                additionalProperties: false,
              },
            ],
          },
        },
      },
    },
    responses,
  };
}

/**
 * Builds the document for `services`, as `LIST` gave them to the caller.
 * `mutualTls`: the server identifies callers by client certificate.
 */
export function openApiDocument(
  services: readonly ServiceDescription[],
  serverName: string,
  mutualTls: boolean,
): Schema {
  const paths: Schema = {
    "/v1": {
      get: {
        operationId: "list",
        summary: "The services and RPCs the caller may call.",
        responses: {
          "200": {
            description: "As `rpc list --json` prints them.",
            content: {
              "application/json": {
                schema: {
                  type: "object",
                  properties: { services: { type: "array", items: { type: "object" } } },
                  required: ["services"],
                },
              },
            },
          },
          "401": { $ref: "#/components/responses/Error" },
          "403": { $ref: "#/components/responses/Error" },
        },
      },
    },
  };
  for (const service of services) {
    const byName = new Map<string, RpcDescription[]>();
    for (const rpc of service.rpcs) byName.set(rpc.name, [...(byName.get(rpc.name) ?? []), rpc]);
    for (const [name, overloads] of byName) {
      paths[`/v1/${encodeURIComponent(service.name)}/${encodeURIComponent(name)}`] = {
        post: operation(service.name, overloads),
      };
    }
  }
  const securitySchemes: Schema = {
    bearer: {
      type: "http",
      scheme: "bearer",
      bearerFormat: "NAME:SECRET",
      description: "The client name and its secret from init.yaml, as `NAME:SECRET` " +
        "(`NAME` alone for a client without a secret).",
    },
  };
  if (mutualTls) {
    securitySchemes.clientCertificate = {
      type: "mutualTLS",
      description:
        "A client certificate signed by the server's client CA; its CN names the client.",
    };
  }
  return {
    openapi: "3.1.0",
    info: {
      title: `rpc server ${serverName}`,
      version: VERSION,
      description: "The RPCs this caller may call. Errors are `{kind, message}` with the " +
        "status of the kind (see docs/http.md).",
    },
    servers: [{ url: "/" }],
    tags: services.map((service) => ({ name: service.name })),
    security: mutualTls ? [{ clientCertificate: [] }] : [{ bearer: [] }, {}],
    paths,
    components: {
      securitySchemes,
      schemas: {
        Error: {
          type: "object",
          properties: {
            kind: { type: "string", description: "The error kind, e.g. `Invalid Arguments`." },
            message: { type: "string" },
          },
          required: ["kind", "message"],
        },
      },
      responses: {
        Error: {
          description: "The call failed; the status follows from `kind`.",
          content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } },
        },
      },
    },
  };
}
