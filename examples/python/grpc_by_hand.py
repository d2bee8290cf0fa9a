#!/usr/bin/python3
"""grpcurl-style calls to the Knooppunt gateway with Debian's python3-grpcio.

grpcurl is not a Debian package; this does the three things a new party does by hand with it
(docs/onboarding.md, "By hand"), with the same mTLS files:

  grpc_by_hand.py health [SERVICE]   grpc.health.v1.Health/Check   (prints SERVING, ...)
  grpc_by_hand.py list               server reflection: the services the gateway offers
  grpc_by_hand.py request            Exchange/Request with a JSON envelope on standard input,
                                     the payload as {"@type": "type.googleapis.com/<type>", ...};
                                     prints the reply envelope as JSON

Configuration from the environment, as backoffice.py: KNOOPPUNT_GATEWAY, KNOOPPUNT_CERT,
KNOOPPUNT_KEY, KNOOPPUNT_CA, KNOOPPUNT_PY_GEN (generate_stubs.sh's output).
"""

import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
GEN = os.environ.get("KNOOPPUNT_PY_GEN", os.path.join(HERE, "gen"))
sys.path.insert(0, GEN)

import grpc  # noqa: E402
from google.protobuf import json_format  # noqa: E402

# Importing the domain modules registers their types, so JSON "@type" payloads resolve.
from gemeente.brp.v1 import brp_pb2  # noqa: E402,F401
from gemeente.verhuizen.v1 import verhuizen_pb2  # noqa: E402,F401
from gemeente.zaken.v1 import zaken_pb2  # noqa: E402,F401
from knooppunt.exchange.v1 import envelope_pb2, exchange_pb2_grpc  # noqa: E402


def env(name, default):
    return os.environ.get(name) or default


GATEWAY = env("KNOOPPUNT_GATEWAY", "127.0.0.1:18443")
CERT = env("KNOOPPUNT_CERT", os.path.join(REPO, "certs/dev/groningen.crt"))
KEY = env("KNOOPPUNT_KEY", os.path.join(REPO, "certs/dev/groningen.key"))
CA = env("KNOOPPUNT_CA", os.path.join(REPO, "certs/dev/ca.crt"))


def load_standard(relative):
    """A module generate_stubs.sh wrote under gen/standard, loaded by path (see there)."""
    path = os.path.join(GEN, "standard", relative)
    spec = importlib.util.spec_from_file_location(os.path.basename(relative)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def channel():
    def read(path):
        with open(path, "rb") as f:
            return f.read()
    credentials = grpc.ssl_channel_credentials(read(CA), read(KEY), read(CERT))
    return grpc.secure_channel(GATEWAY, credentials)


def health(service=""):
    health_pb2 = load_standard("grpc/health/v1/health_pb2.py")
    with channel() as ch:
        check = ch.unary_unary("/grpc.health.v1.Health/Check",
                               request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                               response_deserializer=health_pb2.HealthCheckResponse.FromString)
        reply = check(health_pb2.HealthCheckRequest(service=service), timeout=10)
    print(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def list_services():
    reflection_pb2 = load_standard("grpc/reflection/v1alpha/reflection_pb2.py")
    with channel() as ch:
        info = ch.stream_stream(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
        for reply in info(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                          timeout=10):
            for service in reply.list_services_response.service:
                print(service.name)


def request():
    question = json_format.Parse(sys.stdin.read(), envelope_pb2.Envelope())
    with channel() as ch:
        reply = exchange_pb2_grpc.ExchangeStub(ch).Request(question, timeout=10)
    print(json_format.MessageToJson(reply))


def main(argv):
    commands = {"health": lambda: health(*argv[2:3]), "list": list_services, "request": request}
    if len(argv) < 2 or argv[1] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        commands[argv[1]]()
    except grpc.RpcError as error:
        print(f"{error.code().name}: {error.details()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
