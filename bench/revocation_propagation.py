#!/usr/bin/env python3
"""How long a revocation made on one gate takes to be enforced by another.

Starts redis-server, a `jwtgate whoami` upstream and two gates sharing the
Redis (all on loopback), then, TRIES times: sends POST /revocations for a new
jti to gate A and polls gate B with that jti's token over one keep-alive
connection until B answers 401. The time runs from just before the POST is
sent to B's first 401. Prints the median and the maximum.

Usage: bench/revocation_propagation.py [JWTGATE_BINARY] [TRIES]
(default binary: $CARGO_TARGET_DIR or target, release if built, else debug).
Needs redis-server on PATH.
"""

import base64, hashlib, hmac, http.client, json, os, re, socket, statistics
import subprocess, sys, tempfile, time

SECRET = "propagation-bench-secret-0123456789abcdef"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def token(jti):
    now = int(time.time())
    h = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    p = b64(json.dumps({"sub": "bench", "iat": now, "exp": now + 3600, "jti": jti}).encode())
    sig = hmac.new(SECRET.encode(), f"{h}.{p}".encode(), hashlib.sha256).digest()
    return f"{h}.{p}.{b64(sig)}"


def binary():
    if len(sys.argv) > 1:
        return sys.argv[1]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target"))
    for kind in ("release", "debug"):
        p = os.path.join(target, kind, "jwtgate")
        if os.path.exists(p):
            return p
    sys.exit("no jwtgate binary: cargo build first, or pass its path")


def wait_port(port):
    for _ in range(500):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    sys.exit(f"nothing listens on {port}")


def main():
    bin_ = binary()
    tries = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    procs = []
    tmp = tempfile.mkdtemp()
    try:
        rport = free_port()
        procs.append(subprocess.Popen(
            ["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(rport)
        uport = free_port()
        procs.append(subprocess.Popen([bin_, "whoami", "--listen", f"127.0.0.1:{uport}"],
                                      stderr=subprocess.DEVNULL))
        wait_port(uport)
        gates = []
        for name in ("a", "b"):
            port, admin = free_port(), free_port()
            cfg = os.path.join(tmp, f"{name}.toml")
            with open(cfg, "w") as f:
                f.write(f'listen = "127.0.0.1:{port}"\nadmin_listen = "127.0.0.1:{admin}"\n'
                        f'[upstream]\nurl = "http://127.0.0.1:{uport}"\n'
                        f'[auth.secret]\nvalue = "{SECRET}"\n'
                        f'[store]\nurl = "redis://127.0.0.1:{rport}/0"\n')
            env = dict(os.environ, RUST_LOG="warn")
            procs.append(subprocess.Popen([bin_, "serve", "--config", cfg], env=env,
                                          stderr=subprocess.DEVNULL))
            wait_port(port)
            wait_port(admin)
            gates.append((port, admin))
        (_, admin_a), (port_b, _) = gates
        # Wait for both stores to be in sync.
        for _, admin in gates:
            for _ in range(500):
                c = http.client.HTTPConnection("127.0.0.1", admin)
                c.request("GET", "/readyz")
                body = json.loads(c.getresponse().read())
                if body.get("store", {}).get("in_sync"):
                    break
                time.sleep(0.02)
        a = http.client.HTTPConnection("127.0.0.1", admin_a)
        b = http.client.HTTPConnection("127.0.0.1", port_b)
        times = []
        for i in range(tries):
            jti = f"propagation-{i}-{time.time_ns()}"
            tok = token(jti)
            b.request("GET", "/x", headers={"Authorization": f"Bearer {tok}"})
            assert b.getresponse().read() is not None
            start = time.perf_counter()
            a.request("POST", "/revocations", body=json.dumps({"jti": jti}),
                      headers={"Content-Type": "application/json"})
            r = a.getresponse()
            r.read()
            assert r.status == 201, r.status
            while True:
                b.request("GET", "/x", headers={"Authorization": f"Bearer {tok}"})
                r = b.getresponse()
                r.read()
                if r.status == 401:
                    break
                if time.perf_counter() - start > 5:
                    sys.exit(f"try {i}: B did not refuse within 5 s")
            times.append((time.perf_counter() - start) * 1000)
        print(f"binary: {bin_}")
        print(f"tries: {tries}; revocation on A -> first 401 on B: "
              f"median {statistics.median(times):.2f} ms, max {max(times):.2f} ms, "
              f"min {min(times):.2f} ms")
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
