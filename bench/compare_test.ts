import assert from "node:assert/strict";
import { sandboxHeaps } from "./compare.ts";

// Lines as V8 2.9's --trace-gc prints them (Deno 2.9.6), from two sandboxes: a main thread and a worker each.
const TRACE =
  `[21827:0x56135d242000]      772 ms: Scavenge 3.7 (4.8) -> 3.2 (5.2) MB, pooled: 0.0 MB, 2.12 / 0.00 ms (average mu = 1.000)
[21827:0x7f3bb4060000]       53 ms: Scavenge 4.4 (5.5) -> 3.8 (6.0) MB, pooled: 0.0 MB, 3.89 / 0.00 ms
[21861:0x7fdf7c060000]    45036 ms: Incremental Mark-Compact 11.0 (15.8) -> 4.5 (11.8) MB, pooled: 4.8 MB, 3.84 / 0.00 ms
[21861:0x5621ae408000]    44914 ms: Incremental Mark-Compact 9.1 (13.5) -> 3.3 (10.2) MB, pooled: 0.0 MB
`;

Deno.test("sandboxHeaps: the heap each isolate holds, and its live heap once every one had a full collection", () => {
  // The first sandbox has had no full collection yet: no live figure.
  assert.deepEqual(sandboxHeaps(TRACE), {
    committedKiB: Math.round((5.2 + 6.0 + 11.8 + 10.2) * 1024),
  });
  const later = TRACE +
    "[21827:0x56135d242000]    44157 ms: Incremental Mark-Compact 9.1 (13.2) -> 3.3 (10.0) MB, pooled: 3.2 MB\n" +
    "[21827:0x7f3bb4060000]    45000 ms: Mark-Compact 12.7 (17.2) -> 4.5 (12.2) MB, pooled: 5.0 MB\n" +
    "[21827:0x7f3bb4060000]    45100 ms: Scavenge 6.0 (12.2) -> 4.9 (12.4) MB, pooled: 0.0 MB\n";
  assert.deepEqual(sandboxHeaps(later), {
    committedKiB: Math.round((10.0 + 12.4 + 11.8 + 10.2) * 1024),
    liveKiB: Math.round((3.3 + 4.5 + 4.5 + 3.3) * 1024),
  });
  assert.deepEqual(sandboxHeaps(""), { committedKiB: 0 });
});
