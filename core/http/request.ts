/**
 * What an HTTP request to the gateway asks for, read before the server sees
 * it: which path is a call (`/v1/{service}/{rpc}`) and which methods a path
 * takes, and a call's JSON body as arguments and declared types. A request
 * that cannot be read is refused with an {@linkcode HttpError}.
 *
 * @module
 */

import { ErrorKind } from "../errors.ts";
import { coerceArgument } from "../types/coerce.ts";
import { parseJson, parseType } from "../types/types.ts";
import { HttpErrorKind } from "./status.ts";
import type { HttpRequest } from "./wire.ts";

/** The body of `POST /v1/{service}/{rpc}`, once read. */
export interface CallBody {
  arguments: unknown[];
  argumentTypes?: string[];
  returnTypes?: string[];
}

/** `[service, rpc]` of `/v1/{service}/{rpc}`, percent-decoded; undefined for other paths. */
export function callPath(path: string): [string, string] | undefined {
  const match = /^\/v1\/([^/]+)\/([^/]+)$/.exec(path);
  if (!match) return undefined;
  try {
    return [decodeURIComponent(match[1]), decodeURIComponent(match[2])];
  } catch {
    return undefined;
  }
}

/** The methods a path accepts; undefined for a path the gateway does not serve. */
export function allowedMethods(path: string): string[] | undefined {
  if (path === "/v1" || path === "/openapi.json" || path === "/metrics") return ["GET"];
  if (callPath(path)) return ["POST"];
  return undefined;
}

/** A request the gateway refuses itself, before the server sees it; `kind` is in the status table. */
export class HttpError extends Error {
  override name = "HttpError";
  constructor(readonly kind: string, message: string) {
    super(message);
  }
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Reads the body of a call: a JSON array of arguments, or an object with
 * `arguments` and optional `argument-types` and `return-types`, or with
 * `text-arguments` (strings converted to `argument-types` as `rpc call`
 * converts its command line). An empty body is no arguments.
 *
 * @throws {HttpError} `Unsupported Media Type`, `Malformed Frame` or `Invalid Arguments`.
 */
export function readCallBody(request: Pick<HttpRequest, "headers" | "body">): CallBody {
  if (request.body.length === 0) return { arguments: [] };
  const type = request.headers.get("content-type");
  const mediaType = type?.split(";", 1)[0].trim().toLowerCase();
  if (mediaType !== "application/json") {
    throw new HttpError(
      HttpErrorKind.UnsupportedMediaType,
      `Cannot read request body: Content-Type is ${
        type === undefined ? "missing" : JSON.stringify(type)
      }, expected application/json`,
    );
  }
  let value: unknown;
  try {
    value = parseJson(strictUtf8.decode(request.body));
  } catch (error) {
    throw new HttpError(
      ErrorKind.MalformedFrame,
      `Cannot parse request body: ${(error as Error).message}`,
    );
  }
  if (Array.isArray(value)) return { arguments: value };
  const malformed = (message: string) =>
    new HttpError(ErrorKind.MalformedFrame, `Cannot read request body: ${message}`);
  if (typeof value !== "object" || value === null) {
    throw malformed("expected a JSON array of arguments or an object with arguments");
  }
  const record = value as Record<string, unknown>;
  const known = new Set(["arguments", "argument-types", "return-types", "text-arguments"]);
  const unknown = Object.keys(record).filter((key) => !known.has(key));
  if (unknown.length > 0) {
    throw malformed(
      `unknown field ${
        JSON.stringify(unknown[0])
      } (expected arguments, text-arguments, argument-types, return-types)`,
    );
  }
  const stringList = (key: string): string[] | undefined => {
    const list = record[key];
    if (list === undefined) return undefined;
    if (!Array.isArray(list) || !list.every((item) => typeof item === "string")) {
      throw malformed(`${key} must be a list of strings`);
    }
    return list;
  };
  const argumentTypes = stringList("argument-types");
  const returnTypes = stringList("return-types");
  const texts = stringList("text-arguments");
  let args: unknown[];
  if (texts !== undefined) {
    if (record.arguments !== undefined) {
      throw malformed("give arguments or text-arguments, not both");
    }
    if (argumentTypes === undefined || argumentTypes.length !== texts.length) {
      throw malformed("text-arguments needs argument-types, one per argument");
    }
    args = texts.map((text, i) => {
      try {
        return coerceArgument(parseType(argumentTypes[i]), text);
      } catch (error) {
        throw new HttpError(
          ErrorKind.InvalidArguments,
          `Argument ${i + 1}: ${(error as Error).message}`,
        );
      }
    });
  } else {
    const list = record.arguments ?? [];
    if (!Array.isArray(list)) throw malformed("arguments must be a list");
    args = list;
  }
  return {
    arguments: args,
    ...(argumentTypes ? { argumentTypes } : {}),
    ...(returnTypes ? { returnTypes } : {}),
  };
}
