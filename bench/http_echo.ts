/**
 * The baseline of the HTTP row in `bench/compare.ts`: a raw `Deno.serve`
 * JSON echo. `POST` a JSON array and it answers `{"return-values": array}`,
 * as rpc's gateway answers `POST /v1/bench/echo` — with none of its work
 * (sessions, identity, types, logging).
 *
 *     deno run --allow-net bench/http_echo.ts PORT
 *
 * @module
 */

const port = Number(Deno.args[0] ?? 0);
Deno.serve({
  hostname: "127.0.0.1",
  port,
  onListen({ hostname, port }) {
    console.error(`raw Deno.serve echo listening on ${hostname}:${port}`);
  },
}, async (request) => {
  const values = await request.json();
  return new Response(JSON.stringify({ "return-values": values }), {
    headers: { "content-type": "application/json" },
  });
});
