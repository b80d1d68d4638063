import assert from "node:assert/strict";
import { Validator } from "@seriousme/openapi-schema-validator";
import { openApiDocument, typeSchema } from "./openapi.ts";
import { parseType } from "../types/types.ts";

const services = [
  {
    name: "geo metry",
    rpcs: [
      { name: "area", args: ["float", "float"], returns: ["float"], doc: "Width times height." },
      { name: "area", args: ["List[List[int]]"], returns: ["int"] },
      { name: "ticks", args: ["int"], returns: ["str"], yields: ["int", "bool"] },
      { name: "none", args: [], returns: [] },
    ],
  },
];

Deno.test("the OpenAPI document is valid 3.1, with or without mutual TLS", async () => {
  for (const mutualTls of [false, true]) {
    const document = openApiDocument(services, "s1", mutualTls);
    const result = await new Validator().validate(document);
    assert.equal(result.valid, true, JSON.stringify(result.errors, null, 2));
  }
});

Deno.test("paths are percent-encoded; overloads are alternatives; streams are event streams", () => {
  const document = openApiDocument(services, "s1", false) as {
    paths: Record<string, { post: Record<string, unknown> }>;
  };
  assert.deepEqual(Object.keys(document.paths), [
    "/v1",
    "/v1/geo%20metry/area",
    "/v1/geo%20metry/ticks",
    "/v1/geo%20metry/none",
  ]);
  const area = document.paths["/v1/geo%20metry/area"].post as {
    operationId: string;
    summary: string;
    responses: Record<string, { content: Record<string, { schema: unknown }> }>;
  };
  assert.equal(area.operationId, "geo metry.area");
  assert.equal(area.summary, "Width times height.");
  assert.deepEqual(area.responses["200"].content["application/json"].schema, {
    type: "object",
    properties: {
      "return-values": {
        anyOf: [
          {
            type: "array",
            prefixItems: [{ type: "number" }],
            minItems: 1,
            maxItems: 1,
            items: false,
          },
          {
            type: "array",
            prefixItems: [{ type: "integer" }],
            minItems: 1,
            maxItems: 1,
            items: false,
          },
        ],
      },
    },
    required: ["return-values"],
  });
  const ticks = document.paths["/v1/geo%20metry/ticks"].post as {
    responses: Record<string, { content: Record<string, unknown> }>;
  };
  assert.ok(ticks.responses["200"].content["text/event-stream"]);
});

Deno.test("types map to JSON Schema", () => {
  assert.deepEqual(typeSchema(parseType("List[List[bool]]")), {
    type: "array",
    items: { type: "array", items: { type: "boolean" } },
  });
  assert.deepEqual(typeSchema(parseType("str")), { type: "string" });
});
