/**
 * Small path helpers that work the same compiled and from source.
 *
 * @module
 */

import { isAbsolute, resolve } from "node:path";
import { pathToFileURL } from "node:url";

/** The file URL of a path, made absolute against the working directory. */
export function toFileUrl(path: string): URL {
  return pathToFileURL(isAbsolute(path) ? path : resolve(path));
}
