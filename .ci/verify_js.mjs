// Verifies, with the Standard Webhooks JavaScript library, the deliveries
// .ci/client_check.py received (a request alone and a batch): hookline's
// signatures as a Node receiver would check them. The library checks `v1`
// (HMAC) only (ed25519 `v1a` is an open pull request there, #308): a `v1a`
// delivery (its key a `whpk_` public key) is checked as the spec says, with
// node:crypto's ed25519.
import { createRequire } from "node:module";
import { createPublicKey, verify } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";

const require = createRequire(import.meta.url);
const { Webhook } = require(join(process.env.NODE_PATH, "standardwebhooks"));
const received = JSON.parse(readFileSync(process.argv[2], "utf8"));

function verifyV1a(publicKey, body, headers) {
  const h = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  const key = createPublicKey({
    key: { kty: "OKP", crv: "Ed25519", x: Buffer.from(publicKey.slice("whpk_".length), "base64").toString("base64url") },
    format: "jwk",
  });
  const signed = Buffer.from(`${h["webhook-id"]}.${h["webhook-timestamp"]}.${body}`);
  const signatures = h["webhook-signature"]
    .split(" ")
    .map((entry) => entry.split(","))
    .filter(([version]) => version === "v1a");
  if (!signatures.some(([, sig]) => verify(null, signed, key, Buffer.from(sig, "base64")))) {
    throw new Error(`no v1a signature verifies: ${h["webhook-signature"]}`);
  }
}

let ed25519 = 0;
for (const { secret, headers, body } of received) {
  if (secret.startsWith("whpk_")) {
    verifyV1a(secret, body, headers);
    ed25519 += 1;
  } else {
    new Webhook(secret).verify(body, headers); // throws when it does not verify
  }
}
if (received.length < 3 || ed25519 < 1) {
  throw new Error(`expected a delivery, a batch and a v1a delivery, got ${received.length} requests`);
}
console.log(`standardwebhooks (JavaScript): ${received.length - ed25519} requests verified; node:crypto: ${ed25519} v1a`);
