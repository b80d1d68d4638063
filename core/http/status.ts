/**
 * The one table from error kind to HTTP status that the gateway answers
 * with (docs/http.md prints it), and the JSON error body `{kind, message}`.
 *
 * The kinds are those of the TCP protocol (see `errors.ts`), plus a few
 * that only HTTP has: a path or method the gateway does not serve, a body
 * that is not JSON, headers over the limit, a request that arrives too
 * slowly, or one the HTTP parser cannot read.
 *
 * @module
 */

import { ErrorKind } from "../errors.ts";
import { stringifyJson } from "../types/types.ts";
import type { HttpResponse } from "./wire.ts";

/** Kinds only the HTTP gateway reports. */
export const HttpErrorKind = {
  BadRequest: "Bad Request",
  NotFound: "Not Found",
  MethodNotAllowed: "Method Not Allowed",
  RequestTimeout: "Request Timeout",
  UnsupportedMediaType: "Unsupported Media Type",
  HeadersTooLarge: "Headers Too Large",
} as const;

/** Every kind the gateway answers with, and its status: every {@linkcode ErrorKind} has one. */
export const HTTP_STATUS: Readonly<Record<string, number>> = {
  [ErrorKind.InvalidArguments]: 400,
  [ErrorKind.MalformedFrame]: 400,
  [HttpErrorKind.BadRequest]: 400,
  [ErrorKind.Unauthorized]: 401,
  [ErrorKind.ClientNotRegistered]: 403,
  [ErrorKind.ServiceNotFound]: 404,
  [ErrorKind.RpcNotFound]: 404,
  [HttpErrorKind.NotFound]: 404,
  [HttpErrorKind.MethodNotAllowed]: 405,
  [HttpErrorKind.RequestTimeout]: 408,
  [ErrorKind.Conflict]: 409,
  [ErrorKind.FrameTooLarge]: 413,
  [HttpErrorKind.UnsupportedMediaType]: 415,
  [ErrorKind.RateLimited]: 429,
  [HttpErrorKind.HeadersTooLarge]: 431,
  [ErrorKind.Cancelled]: 499,
  [ErrorKind.ExecutionException]: 500,
  [ErrorKind.UnsupportedVersion]: 500,
  [ErrorKind.Internal]: 500,
  // The server's own files are wrong or unreadable: its fault, not the caller's, and not
  // transient as 503 would say (only Unavailable is retried elsewhere).
  [ErrorKind.Config]: 500,
  [ErrorKind.Store]: 500,
  [ErrorKind.Unavailable]: 503,
  [ErrorKind.Timeout]: 504,
};

/** The status of an error kind; 500 for one outside the table. */
export function statusOf(kind: string): number {
  return HTTP_STATUS[kind] ?? 500;
}

/** Headers every JSON answer carries. */
export const JSON_HEADERS: Readonly<Record<string, string>> = {
  "content-type": "application/json",
  "cache-control": "no-store",
  "x-content-type-options": "nosniff",
};

/** A JSON response. Integers beyond 2^53 are written exactly. */
export function jsonResponse(
  status: number,
  value: unknown,
  headers: Record<string, string> = {},
): HttpResponse {
  return { status, headers: { ...JSON_HEADERS, ...headers }, body: stringifyJson(value) };
}

/** The JSON error response of `kind`, with its status from {@linkcode HTTP_STATUS}. */
export function errorResponse(
  kind: string,
  message: string,
  headers: Record<string, string> = {},
): HttpResponse {
  const extra = kind === ErrorKind.Unauthorized
    ? { "www-authenticate": 'Bearer realm="rpc"', ...headers }
    : headers;
  return jsonResponse(statusOf(kind), { kind, message }, extra);
}
