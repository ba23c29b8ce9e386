#!/usr/bin/env python3
"""idle_conns.py PORT TOKEN_FILE N PID [SECS] — RSS of PID with N idle keep-alive connections.

Opens N connections to 127.0.0.1:PORT, sends one GET with the bearer token on each (so that each has
made its upstream connection), reads the answers, then holds them all open, idle, and prints the RSS of
PID (kB) before, with the N connections idle for 2 s and for 2 + SECS s (default 16: past the gate's
hand-back of idle upstream connections and the idle list's purge), and the differences per connection.
Stops by itself.
"""
import asyncio, sys

port, token_file, n, pid = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
token = open(token_file).read().strip()
req = (f"GET / HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n\r\n").encode()

def rss_kb():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

async def one(held):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(req)
    await w.drain()
    head = await r.readuntil(b"\r\n\r\n")
    length = next((int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")), 0)
    await r.readexactly(length)
    held.append((r, w))

async def main():
    before = rss_kb()
    held = []
    for i in range(0, n, 200):
        await asyncio.gather(*(one(held) for _ in range(min(200, n - i))))
    await asyncio.sleep(2)
    idle = rss_kb()
    await asyncio.sleep(int(sys.argv[5]) if len(sys.argv) > 5 else 16)
    later = rss_kb()
    print(f"connections {len(held)}: RSS before {before} kB; idle 2 s: {idle} kB, "
          f"{(idle - before) / len(held):.1f} kB per connection; idle 18 s: {later} kB, "
          f"{(later - before) / len(held):.1f} kB per connection")
    for _, w in held:
        w.close()

asyncio.run(main())
