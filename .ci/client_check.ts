// A TypeScript client generated from openapi/hookline.json (openapi-typescript
// types, openapi-fetch calls), compiled with `tsc --strict`, drives a live
// hookline: an endpoint with a transformation, rendered against a sample,
// changed and cleared. A schema the types get wrong fails the compile; an
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
