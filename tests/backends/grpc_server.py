"""A gRPC test service without protobuf: methods of `test.Echo` take and
return raw bytes. Also serves the standard health service
(grpc.health.v1.Health) from grpcio-health-checking.

Usage: python3 grpc_server.py PORT [--tls CERT KEY]
Prints "ready" on stdout once serving.
"""

import hashlib
import json
import sys
import time
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

BIG = 32 * 1024 * 1024
OPTIONS = [
    ("grpc.max_receive_message_length", BIG),
    ("grpc.max_send_message_length", BIG),
]


def unary(request, context):
    # Initial metadata and a trailer the client can see unchanged.
    context.send_initial_metadata((("x-initial", "i1"),))
    context.set_trailing_metadata((("x-trailer", "t1"), ("x-sha256", hashlib.sha256(request).hexdigest())))
    return request


def whoami(request, context):
    seen = {}
    for k, v in context.invocation_metadata():
        seen.setdefault(k, []).append(v if isinstance(v, str) else v.decode("latin-1"))
    return json.dumps(seen).encode()


def fail(request, context):
    # A status and trailers made by the server, to reach the client unchanged.
    context.set_trailing_metadata((("x-trailer", "from-server"), ("x-bin-bin", b"\x00\x01\xff")))
    context.abort(grpc.StatusCode.NOT_FOUND, "no such thing: caf\u00e9 100%")


def sleep(request, context):
    time.sleep(float(request.decode() or "3"))
    return b"woke"


def server_stream(request, context):
    n = int(request.decode() or "5")
    for i in range(n):
        yield f"msg-{i}".encode()
        time.sleep(0.05)


def client_stream(request_iterator, context):
    total = 0
    h = hashlib.sha256()
    for chunk in request_iterator:
        total += len(chunk)
        h.update(chunk)
    return json.dumps({"bytes": total, "sha256": h.hexdigest()}).encode()


def bidi(request_iterator, context):
    for chunk in request_iterator:
        yield b"echo:" + chunk


def main():
    port = int(sys.argv[1])
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=OPTIONS)
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Admin": grpc.unary_unary_rpc_method_handler(unary),
        "Whoami": grpc.unary_unary_rpc_method_handler(whoami),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
        "Sleep": grpc.unary_unary_rpc_method_handler(sleep),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", handlers),))
    health_servicer = health.HealthServicer()
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    addr = f"127.0.0.1:{port}"
    if len(sys.argv) >= 5 and sys.argv[2] == "--tls":
        with open(sys.argv[3], "rb") as f:
            cert = f.read()
        with open(sys.argv[4], "rb") as f:
            key = f.read()
        server.add_secure_port(addr, grpc.ssl_server_credentials(((key, cert),)))
    else:
        server.add_insecure_port(addr)
    server.start()
    print("ready", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
