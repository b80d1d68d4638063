/**
 * The browser console's files, compiled into the binary (text imports are
 * part of the module graph, so `deno compile` embeds them): no CDN, no build
 * step, and no inline script or style, so a strict Content-Security-Policy
 * allows it.
 *
 * @module
 */

import page from "./console/index.html" with { type: "text" };
import script from "./console/console.js" with { type: "text" };
import style from "./console/console.css" with { type: "text" };
import icon from "./console/favicon.svg" with { type: "text" };

/** A file the gateway serves as is. */
export interface Asset {
  type: string;
  body: string;
}

/** The console's files by path. */
export const CONSOLE_ASSETS: ReadonlyMap<string, Asset> = new Map([
  ["/", { type: "text/html; charset=utf-8", body: page }],
  ["/console.js", { type: "text/javascript; charset=utf-8", body: script }],
  ["/console.css", { type: "text/css; charset=utf-8", body: style }],
  ["/favicon.svg", { type: "image/svg+xml", body: icon }],
]);
