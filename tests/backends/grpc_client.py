"""Runs one gRPC scenario against TARGET and prints one JSON object:
{"code": "OK"|StatusCode name, "details": ..., "initial": {...},
 "trailing": {...}, "result": ...}.

Usage: python3 grpc_client.py TARGET SCENARIO [--token T] [--method M]
       [--meta KEY=VALUE]... [--timeout SECONDS] [--tls CA_FILE]
Scenarios: unary, whoami, fail, sleep, server_stream, client_stream, bidi,
big, health, call (an empty unary request to --method).
"""

import argparse
import hashlib
import json
import os
import queue

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

BIG = 32 * 1024 * 1024
OPTIONS = [
    ("grpc.max_receive_message_length", BIG),
    ("grpc.max_send_message_length", BIG),
]


def md_dict(md):
    out = {}
    for k, v in md or ():
        out.setdefault(k, []).append(v if isinstance(v, str) else v.hex())
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("target")
    p.add_argument("scenario")
    p.add_argument("--token")
    p.add_argument("--method")
    p.add_argument("--meta", action="append", default=[])
    p.add_argument("--timeout", type=float)
    p.add_argument("--tls")
    a = p.parse_args()

    if a.tls:
        with open(a.tls, "rb") as f:
            channel = grpc.secure_channel(a.target, grpc.ssl_channel_credentials(f.read()), options=OPTIONS)
    else:
        channel = grpc.insecure_channel(a.target, options=OPTIONS)
    md = []
    if a.token:
        md.append(("authorization", "Bearer " + a.token))
    for kv in a.meta:
        k, v = kv.split("=", 1)
        md.append((k, v))
    kw = {"metadata": md, "timeout": a.timeout}
    out = {"code": "OK", "details": None, "initial": {}, "trailing": {}, "result": None}

    def finish(call):
        out["initial"] = md_dict(call.initial_metadata())
        out["trailing"] = md_dict(call.trailing_metadata())

    try:
        s = a.scenario
        if s in ("unary", "whoami", "fail", "sleep", "call", "big"):
            method = a.method or {
                "unary": "/test.Echo/Unary",
                "whoami": "/test.Echo/Whoami",
                "fail": "/test.Echo/Fail",
                "sleep": "/test.Echo/Sleep",
                "big": "/test.Echo/Unary",
            }[s]
            req = {"unary": b"hello", "sleep": b"3"}.get(s, b"")
            if s == "big":
                req = os.urandom(10 * 1024 * 1024)
            try:
                resp, call = channel.unary_unary(method).with_call(req, **kw)
                finish(call)
            except grpc.RpcError as e:
                finish(e)
                raise
            if s == "big":
                out["result"] = {
                    "intact": resp == req,
                    "bytes": len(resp),
                    "sha256_sent": hashlib.sha256(req).hexdigest(),
                }
            elif s == "whoami":
                out["result"] = json.loads(resp)
            else:
                out["result"] = resp.decode("latin-1")
        elif s == "server_stream":
            call = channel.unary_stream("/test.Echo/ServerStream")(b"5", **kw)
            out["result"] = [m.decode() for m in call]
            finish(call)
        elif s == "client_stream":
            chunks = [os.urandom(1024 * 1024) for _ in range(10)]
            h = hashlib.sha256(b"".join(chunks)).hexdigest()
            resp, call = channel.stream_unary("/test.Echo/ClientStream").with_call(iter(chunks), **kw)
            finish(call)
            got = json.loads(resp)
            out["result"] = {"intact": got["sha256"] == h, "bytes": got["bytes"]}
        elif s == "bidi":
            # Ping-pong: each message is sent only after the echo of the
            # previous one came back, so a proxy that buffered either
            # direction would stall this call until its timeout.
            q = queue.Queue()
            q.put(b"m0")

            def requests():
                while True:
                    m = q.get()
                    if m is None:
                        return
                    yield m

            call = channel.stream_stream("/test.Echo/Bidi")(requests(), **kw)
            got = []
            for reply in call:
                got.append(reply.decode())
                if len(got) == 5:
                    q.put(None)
                else:
                    q.put(f"m{len(got)}".encode())
            finish(call)
            out["result"] = got
        elif s == "health":
            stub = health_pb2_grpc.HealthStub(channel)
            resp, call = stub.Check.with_call(health_pb2.HealthCheckRequest(service=""), **kw)
            finish(call)
            out["result"] = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
        else:
            raise SystemExit(f"unknown scenario {s}")
    except grpc.RpcError as e:
        out["code"] = e.code().name
        out["details"] = e.details()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
