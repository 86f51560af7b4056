"""Drive a running hookline with the Python client generated from
openapi/hookline.json: create an endpoint (pointing at a receiver in this
script), send an event, and read the delivery back once it succeeded. The
deliveries, one alone and a batch, are verified with the Standard Webhooks
library (`standardwebhooks`, the latest release, 1.3.0), as a receiver would. It checks `v1`
(HMAC) only (ed25519 `v1a` is an open pull request there, #304), so a `v1a`
delivery is checked as its spec says, with `cryptography`'s ed25519."""

import base64
import http.server
import json
import sys
import threading
import time

from hookline_client import AuthenticatedClient
from hookline_client.api.deliveries import list_delivery_attempts
from hookline_client.api.endpoints import create_endpoint, get_endpoint
from hookline_client.api.events import create_event, get_event
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hookline_client.models import BatchSettings, EndpointCreate, EventCreate, Problem, SignatureScheme
from standardwebhooks import Webhook

base_url, token = sys.argv[1], sys.argv[2]
received = []


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"]))
        received.append((self.path, dict(self.headers.items()), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
threading.Thread(target=server.serve_forever, daemon=True).start()
client = AuthenticatedClient(base_url=base_url, token=token, raise_on_unexpected_status=True)

receiver_url = f"http://127.0.0.1:{server.server_port}"
endpoint = create_endpoint.sync(client=client, body=EndpointCreate(url=f"{receiver_url}/hook", event_types=["order.*"]))
assert not isinstance(endpoint, Problem), endpoint
assert endpoint.secret.startswith("whsec_")
assert get_endpoint.sync(client=client, endpoint_id=endpoint.id).url.endswith("/hook")

payload = {"order_id": 42}
event = create_event.sync(client=client, body=EventCreate(event_type="order.created", payload=payload))
assert not isinstance(event, Problem), event

deadline = time.time() + 20
while True:
    detail = get_event.sync(client=client, event_id=event.id)
    states = [d.state.value for d in detail.deliveries]
    if states == ["succeeded"]:
        break
    assert time.time() < deadline, f"delivery did not succeed: {states}"
    time.sleep(0.1)

attempts = list_delivery_attempts.sync(client=client, delivery_id=detail.deliveries[0].id)
assert attempts.data[0].status_code == 204, attempts
assert len(received) == 1 and b'"order_id": 42' in received[0][2], received
Webhook(endpoint.secret).verify(received[0][2], received[0][1])

# A batch: one request, signed as one message with its own webhook-id.
batching = create_endpoint.sync(
    client=client,
    body=EndpointCreate(url=f"{receiver_url}/batch", event_types=["batch.*"], batch=BatchSettings(max_wait_ms=500)),
)
assert not isinstance(batching, Problem), batching
for n in range(3):
    sent = create_event.sync(client=client, body=EventCreate(event_type="batch.item", payload={"n": n}))
    assert not isinstance(sent, Problem), sent
deadline = time.time() + 20
while sum(len(Webhook(batching.secret).verify(b, h)) for p, h, b in received if p == "/batch") < 3:
    assert time.time() < deadline, f"the batch did not arrive: {received}"
    time.sleep(0.1)


def verify_v1a(public_key, body, headers):
    """Standard Webhooks v1a: an ed25519 signature of `id.timestamp.body`
    under the `whpk_` public key, one of the signature header's entries."""
    assert public_key.startswith("whpk_"), public_key
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key.removeprefix("whpk_")))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    entries = [e.split(",", 1) for e in headers["webhook-signature"].split(" ")]
    signatures = [base64.b64decode(sig) for version, sig in entries if version == "v1a"]
    assert signatures, headers["webhook-signature"]
    errors = []
    for signature in signatures:
        try:
            return key.verify(signature, signed)
        except Exception as error:  # InvalidSignature: try the next entry (rotation)
            errors.append(error)
    raise AssertionError(f"no v1a signature verifies: {errors}")


# ed25519: hookline holds the private key and shows only the public one.
ed25519 = create_endpoint.sync(
    client=client, body=EndpointCreate(url=f"{receiver_url}/v1a", event_types=["keyed.*"], signature=SignatureScheme.V1A)
)
assert not isinstance(ed25519, Problem), ed25519
sent = create_event.sync(client=client, body=EventCreate(event_type="keyed.created", payload={"k": 1}))
assert not isinstance(sent, Problem), sent
deadline = time.time() + 20
while not any(p == "/v1a" for p, h, b in received):
    assert time.time() < deadline, f"the v1a delivery did not arrive: {received}"
    time.sleep(0.1)
for p, h, b in received:
    if p == "/v1a":
        verify_v1a(ed25519.secret, b, {k.lower(): v for k, v in h.items()})
        tampered = b.replace(b'"k": 1', b'"k": 2')
        assert tampered != b, b
        try:
            verify_v1a(ed25519.secret, tampered, {k.lower(): v for k, v in h.items()})
        except AssertionError:
            pass
        else:
            raise AssertionError("a changed body verified")

missing = get_endpoint.sync_detailed(client=client, endpoint_id=event.id)
assert missing.status_code == 404 and isinstance(missing.parsed, Problem), missing
# For the JavaScript library's turn (.ci/verify_js.mjs): what was received, with the secrets.
if len(sys.argv) > 3:
    with open(sys.argv[3], "w") as out:
        secrets = {"/hook": endpoint.secret, "/batch": batching.secret, "/v1a": ed25519.secret}
        json.dump(
            [{"secret": secrets[p], "headers": h, "body": b.decode()} for p, h, b in received if p in secrets], out
        )
print(
    "generated Python client: endpoint created, event delivered and verified, a batch verified, "
    "a v1a (ed25519) delivery verified, delivery read back"
)
