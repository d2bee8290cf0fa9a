#!/usr/bin/python3
"""A municipality backoffice talking to the Knooppunt gateway, in Python.

What a supplier's backoffice does on its first day, one step at a time:

  1. connect with mutual TLS (its certificate, the federation CA) and check that the server
     really is the gateway (the OIN in its certificate);
  2. a bevraging: ask the BRP person service for a citizen (gemeente.brp.v1.PersoonVraag);
  3. a bevraging no agreement allows: see PERMISSION_DENIED and what to do about it;
  4. a melding (gemeente.zaken.v1.ZaakAanmaken) with a message id it chose, retried with the
     SAME id on UNAVAILABLE / DEADLINE_EXCEEDED / RESOURCE_EXHAUSTED, then sent once more to
     show the gateway stores it once (Receipt.duplicate);
  5. the melding's delivery status (GetStatus);
  6. its inbox: pull the meldingen addressed to it (Receive) and acknowledge each (Ack).

Runs with Debian's python3-grpcio and python3-protobuf; the API modules come from
generate_stubs.sh. Configuration from the environment (see examples/README.md):

  KNOOPPUNT_GATEWAY       gateway host:port               (default 127.0.0.1:18443, the demo)
  KNOOPPUNT_GATEWAY_OIN   OIN of the gateway's certificate (default the dev PKI's)
  KNOOPPUNT_OIN           this party's OIN, as in its certificate (default Groningen's)
  KNOOPPUNT_CERT / _KEY   this party's certificate and key (default certs/dev/groningen.*)
  KNOOPPUNT_CA            the federation CA                (default certs/dev/ca.crt)
  KNOOPPUNT_PY_GEN        where generate_stubs.sh put the modules (default examples/python/gen)
  BRP_OIN, BSN            whom to ask, about whom
  MELDING_RECIPIENT       recipient of the melding          (default gemeente:0479)
  INBOX_EXPECT, INBOX_WAIT_SECONDS   inbox: wait this long, acknowledging what arrives; stop
                          after INBOX_EXPECT meldingen (0: take all), fail with fewer

Exit status 0 when every step behaved as expected.
"""

import os
import socket
import ssl
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.environ.get("KNOOPPUNT_PY_GEN", os.path.join(HERE, "gen")))

import grpc  # noqa: E402  (python3-grpcio)
from google.protobuf import timestamp_pb2  # noqa: E402

from gemeente.brp.v1 import brp_pb2  # noqa: E402
from gemeente.verhuizen.v1 import verhuizen_pb2  # noqa: E402
from gemeente.zaken.v1 import zaken_pb2  # noqa: E402
from knooppunt.exchange.v1 import envelope_pb2, error_details_pb2, melding_pb2  # noqa: E402
from knooppunt.exchange.v1 import exchange_pb2_grpc  # noqa: E402


def env(name, default):
    return os.environ.get(name) or default


GATEWAY = env("KNOOPPUNT_GATEWAY", "127.0.0.1:18443")
GATEWAY_OIN = env("KNOOPPUNT_GATEWAY_OIN", "00000099000000000001")
# The envelope sender must be the OIN in our own certificate (else PERMISSION_DENIED).
MY_OIN = env("KNOOPPUNT_OIN", "00000099300000000014")
CERT = env("KNOOPPUNT_CERT", os.path.join(REPO, "certs/dev/groningen.crt"))
KEY = env("KNOOPPUNT_KEY", os.path.join(REPO, "certs/dev/groningen.key"))
CA = env("KNOOPPUNT_CA", os.path.join(REPO, "certs/dev/ca.crt"))
BRP_OIN = env("BRP_OIN", "00000099200000000001")
BSN = env("BSN", "999993653")
MELDING_RECIPIENT = env("MELDING_RECIPIENT", "gemeente:0479")
INBOX_EXPECT = int(env("INBOX_EXPECT", "0"))
INBOX_WAIT_SECONDS = float(env("INBOX_WAIT_SECONDS", "2"))

# What a client does about each status code (docs/onboarding.md has the full table).
ADVICE = {
    grpc.StatusCode.UNAUTHENTICATED: "fix the certificate: it must carry your OIN",
    grpc.StatusCode.PERMISSION_DENIED: "no agreement allows this: check sender, purpose, type",
    grpc.StatusCode.INVALID_ARGUMENT: "malformed envelope or payload: fix the message",
    grpc.StatusCode.NOT_FOUND: "unknown recipient (or message): check the OIN/gemeentecode",
    grpc.StatusCode.ALREADY_EXISTS: "message id reused for other content: use a new id",
    grpc.StatusCode.FAILED_PRECONDITION: "recipient cannot take this now: contact beheer",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "rate limit or full store: retry after RetryInfo",
    grpc.StatusCode.UNAVAILABLE: "gateway or endpoint unreachable: retry with the same id",
    grpc.StatusCode.DEADLINE_EXCEEDED: "no answer in time: retry with the same id",
}
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
             grpc.StatusCode.RESOURCE_EXHAUSTED}


def log(step, text):
    print(f"[python] {step}: {text}", flush=True)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def oin_of_certificate(peer_cert):
    """The subject serialNumber (OID 2.5.4.5) of a certificate as ssl.getpeercert() gives it."""
    for rdn in peer_cert.get("subject", ()):
        for key, value in rdn:
            if key == "serialNumber":
                return value
    return None


def check_gateway_oin():
    """gRPC Python does not show the server certificate, so one TLS handshake with the same
    files checks that the server is the gateway (its OIN), not just any holder of a
    certificate from the federation CA."""
    host, port = GATEWAY.rsplit(":", 1)
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=CA)
    context.load_cert_chain(CERT, KEY)
    context.set_alpn_protocols(["h2"])
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=host) as tls:
            oin = oin_of_certificate(tls.getpeercert())
    if oin != GATEWAY_OIN:
        raise SystemExit(f"the server at {GATEWAY} has OIN {oin}, not the gateway's {GATEWAY_OIN}")
    return oin


def retry_delay(error):
    """The gateway's RetryInfo (google.rpc.RetryInfo in grpc-status-details-bin), seconds."""
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = error_details_pb2.RpcStatus.FromString(value)
            for detail in status.details:
                if detail.type_url.endswith("/google.rpc.RetryInfo"):
                    info = error_details_pb2.RetryInfo.FromString(detail.value)
                    return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    return 0.0


def from_endpoint(error):
    return ("knooppunt-error-source", "endpoint") in tuple(error.trailing_metadata() or ())


def envelope(sender, recipient, purpose, payload, message_id=None):
    e = envelope_pb2.Envelope(message_id=message_id or str(uuid.uuid4()), sender=sender,
                              recipient=recipient, purpose=purpose)
    e.payload.Pack(payload)
    now = timestamp_pb2.Timestamp()
    now.GetCurrentTime()
    e.created_at.CopyFrom(now)
    return e


def send_with_retries(stub, melding, attempts=5):
    """Send a melding; on a transient error send the SAME envelope again (same message id),
    so the gateway stores it once however often it arrives."""
    backoff = 0.2
    for attempt in range(1, attempts + 1):
        try:
            return stub.Send(melding, timeout=10)
        except grpc.RpcError as error:
            if error.code() not in RETRYABLE or attempt == attempts:
                raise
            wait = max(backoff, retry_delay(error))
            log("melding", f"{error.code().name}, retrying {melding.message_id} in {wait:.1f}s")
            time.sleep(wait)
            backoff = min(backoff * 2, 10)


def main():
    log("connect", f"gateway {GATEWAY} has OIN {check_gateway_oin()}")
    me = MY_OIN
    credentials = grpc.ssl_channel_credentials(root_certificates=read(CA),
                                               private_key=read(KEY),
                                               certificate_chain=read(CERT))
    with grpc.secure_channel(GATEWAY, credentials) as channel:
        stub = exchange_pb2_grpc.ExchangeStub(channel)

        # 2. Bevraging.
        question = envelope(me, BRP_OIN, "BRP-bevraging", brp_pb2.PersoonVraag(bsn=BSN))
        reply = stub.Request(question, timeout=10)
        persoon = brp_pb2.Persoon()
        if not reply.payload.Unpack(persoon):
            raise SystemExit(f"unexpected reply type {reply.payload.type_url}")
        log("bevraging", f"BSN {BSN[-3:].rjust(9, '*')} is {persoon.naam.geslachtsnaam} "
            f"(agreement {reply.agreement_id}, correlation {reply.correlation_id})")

        # 3. A bevraging for a purpose no agreement names.
        try:
            stub.Request(envelope(me, BRP_OIN, "Marketing", brp_pb2.PersoonVraag(bsn=BSN)),
                         timeout=10)
            raise SystemExit("a bevraging without agreement was allowed")
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.PERMISSION_DENIED:
                raise
            log("denied", f"{error.code().name} (from the "
                f"{'endpoint' if from_endpoint(error) else 'gateway'}): {error.details()} "
                f"-> {ADVICE[error.code()]}")

        # 4. Melding, with retries that keep the message id; then the same envelope again.
        zaak = zaken_pb2.ZaakAanmaken(zaakidentificatie="PY-" + uuid.uuid4().hex[:8],
                                      zaaktype="bezwaar", omschrijving="Bezwaarschrift")
        melding = envelope(me, MELDING_RECIPIENT, "Zaakoverdracht", zaak)
        receipt = send_with_retries(stub, melding)
        again = send_with_retries(stub, melding)
        if again.message_id != melding.message_id or not again.duplicate:
            raise SystemExit(f"a resend was not recognised as the same melding: {again}")
        log("melding", f"{receipt.message_id} accepted under {receipt.agreement_id}; "
            f"resent: duplicate={again.duplicate}")

        # 5. Its delivery status.
        status = stub.GetStatus(melding_pb2.StatusRequest(message_id=melding.message_id),
                                timeout=10)
        log("status", f"{status.message_id} is {melding_pb2.DeliveryState.Name(status.state)}")

        # 6. The inbox: receive, process, acknowledge (each at once: a melding not acknowledged
        # within the gateway's visibility timeout is handed out again).
        received = 0
        stream = stub.Receive(melding_pb2.ReceiveRequest(max_unacknowledged=INBOX_EXPECT),
                              timeout=INBOX_WAIT_SECONDS)
        try:
            for incoming in stream:
                verhuis = verhuizen_pb2.Verhuismelding()
                what = "Verhuismelding" if incoming.payload.Unpack(verhuis) else incoming.payload.type_url
                stub.Ack(melding_pb2.AckRequest(sender=incoming.sender,
                                                message_id=incoming.message_id), timeout=10)
                received += 1
                log("inbox", f"received and acknowledged {what} {incoming.message_id} "
                    f"from {incoming.sender} (agreement {incoming.agreement_id})")
                if INBOX_EXPECT and received >= INBOX_EXPECT:
                    stream.cancel()
                    break
        except grpc.RpcError as error:
            if error.code() not in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
                raise
        if received < INBOX_EXPECT:
            raise SystemExit(f"expected {INBOX_EXPECT} inbox meldingen, got {received}")
    log("done", "every step behaved as expected")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except grpc.RpcError as error:
        print(f"[python] failed: {error.code().name}: {error.details()} -> "
              f"{ADVICE.get(error.code(), 'see docs/onboarding.md')}", file=sys.stderr)
        sys.exit(1)
