// Verifies, with the Standard Webhooks JavaScript library, the deliveries
// .ci/client_check.py received (a request alone and a batch): hookline's
// signatures as a Node receiver would check them.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { join } from "node:path";

const require = createRequire(import.meta.url);
const { Webhook } = require(join(process.env.NODE_PATH, "standardwebhooks"));
const received = JSON.parse(readFileSync(process.argv[2], "utf8"));
if (received.length < 2) throw new Error(`expected a delivery and a batch, got ${received.length} requests`);
for (const { secret, headers, body } of received) {
  new Webhook(secret).verify(body, headers); // throws when it does not verify
}
console.log(`standardwebhooks (JavaScript): ${received.length} requests verified`);
