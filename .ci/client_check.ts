// A TypeScript client generated from openapi/hookline.json (openapi-typescript
// types, openapi-fetch calls), compiled with `tsc --strict`, drives a live
// hookline: an endpoint with a transformation, rendered against a sample,
// changed and cleared; an event type whose schema refuses a payload. A schema the types get wrong fails the compile; an
// answer the API gets wrong fails here.
import createClient from "openapi-fetch";
import type { paths } from "./schema";

const [baseUrl, token] = process.argv.slice(2);
const api = createClient<paths>({ baseUrl, headers: { Authorization: `Bearer ${token}` } });

function check(ok: boolean, what: string): asserts ok {
  if (!ok) throw new Error(`TypeScript client: ${what}`);
}

const template = '{% set headers = {"x-kind": type} %}{"text": {{ "Order " ~ data.order ~ " paid" }}}';
const created = await api.POST("/v1/endpoints", {
  body: { url: "https://example.com/hooks", description: "ts client", transformation: template },
});
check(created.response.status === 201 && created.data !== undefined, `create: ${JSON.stringify(created.error)}`);
const id: string = created.data.id;
check(created.data.transformation === template, "the transformation is stored as given");

const rendered = await api.POST("/v1/endpoints/{endpoint_id}/transformation/test", {
  params: { path: { endpoint_id: id } },
  body: { event_type: "order.paid", payload: { order: 42 } },
});
check(rendered.data !== undefined, `render: ${JSON.stringify(rendered.error)}`);
check(JSON.parse(rendered.data.body).text === "Order 42 paid", `body: ${rendered.data.body}`);
check(rendered.data.method === "POST" && rendered.data.headers["x-kind"] === "order.paid", "method and headers");

const broken = await api.POST("/v1/endpoints/{endpoint_id}/transformation/test", {
  params: { path: { endpoint_id: id } },
  body: { template: "{{ data.order " },
});
check(broken.response.status === 400 && broken.error?.field === "template", "a broken template is a 400");

const cleared = await api.PATCH("/v1/endpoints/{endpoint_id}", {
  params: { path: { endpoint_id: id } },
  body: { transformation: null },
});
check(cleared.data !== undefined && cleared.data.transformation === null, "null clears the transformation");

const removed = await api.DELETE("/v1/endpoints/{endpoint_id}", { params: { path: { endpoint_id: id } } });
check(removed.response.status === 204, `delete: ${removed.response.status}`);
console.log("TypeScript client: endpoint with a transformation created, rendered, cleared, deleted");

const schema = { type: "object", required: ["order"], properties: { order: { type: "integer" } } };
const eventType = await api.POST("/v1/event-types", {
  body: { name: "order.paid", description: "ts client", schema, example: { order: 1 }, validation: "enforce" },
});
check(eventType.response.status === 201 && eventType.data !== undefined, `type: ${JSON.stringify(eventType.error)}`);
check(eventType.data.validation === "enforce" && eventType.data.tenant === null, "a shared, enforcing type");

const stored = await api.GET("/v1/event-types/{name}/schema", { params: { path: { name: "order.paid" } } });
// PostgreSQL keeps JSON objects with their keys sorted.
const sorted = (v: unknown): unknown =>
  Array.isArray(v) ? v.map(sorted)
  : v !== null && typeof v === "object" ? Object.fromEntries(Object.entries(v).sort().map(([k, x]) => [k, sorted(x)]))
  : v;
check(JSON.stringify(sorted(stored.data)) === JSON.stringify(sorted(schema)), `schema: ${JSON.stringify(stored.data)}`);

const refused = await api.POST("/v1/events", { body: { event_type: "order.paid", payload: { order: "42" } } });
check(refused.response.status === 422 && refused.error?.pointer === "/order", `refused: ${refused.response.status}`);

const warned = await api.PATCH("/v1/event-types/{name}", {
  params: { path: { name: "order.paid" } },
  body: { validation: "warn" },
});
check(warned.data?.validation === "warn", "validation changed to warn");
const accepted = await api.POST("/v1/events", { body: { event_type: "order.paid", payload: { order: "42" } } });
check(accepted.response.status === 202 && accepted.data?.schema_warning?.pointer === "/order", "accepted, warned");

const listed = await api.GET("/v1/event-types", { params: { query: { deprecated: false } } });
check(listed.data?.data.some((t) => t.name === "order.paid" && t.warnings_24h === 1) === true, "listed, counted");
const deleted = await api.DELETE("/v1/event-types/{name}", { params: { path: { name: "order.paid" } } });
check(deleted.response.status === 204, `delete type: ${deleted.response.status}`);
console.log("TypeScript client: event type enforced, warned, listed, deleted");
