#!/usr/bin/python3
"""The bench's original-format publisher: Debian's python3-zmq, one XPUB (wire-identical to the
original SDK's PUB for the MPC, and it can see the MPC's subscription, so "ready" means messages will
be taken). Bodies are the original SDK's shape, `{"topic": "T", "data": {...}}`, with the data laid
out as the tormq SDK's JSON.stringify does (`{"t":STAMP,"p":"PAD"}`), so the fleet reads the stamp the
same way. Stamp: CLOCK_MONOTONIC in microseconds, the clock of bench/load/clock.ts.

usage: python-publisher.py PORT KIND CONNECTIONS PAD
stdin: one command per line, `N FIRST COUNT RATE`: publish messages FIRST .. FIRST+COUNT-1 at RATE
per second (paced per millisecond), then print `done N SENT`. EOF on stdin ends it.
"""
import sys
import time

import zmq

port, kind, connections, pad = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
ctx = zmq.Context()
sock = ctx.socket(zmq.XPUB)
sock.setsockopt(zmq.SNDHWM, 1_000_000)
sock.setsockopt(zmq.LINGER, 1000)
sock.connect(f"tcp://127.0.0.1:{port}")
if not sock.poll(15_000, zmq.POLLIN):
    print("no subscription from the MPC within 15 s", file=sys.stderr)
    sys.exit(1)
sock.recv()
print("ready", flush=True)


def topic_of(n):
    if kind == "broadcast":
        return "bench:all"
    return f"bench:u:{n % connections}"


ROOT = b"bench"
for line in sys.stdin:
    parts = line.split()
    if len(parts) != 4:
        continue
    tag, first, count, rate = parts[0], int(parts[1]), int(parts[2]), float(parts[3])
    start = time.monotonic()
    sent = 0
    while sent < count and time.monotonic() - start < count / rate + 5:
        due = min(count, int((time.monotonic() - start) * rate) + 1)
        while sent < due:
            topic = topic_of(first + sent)
            stamp = time.monotonic_ns() // 1000
            body = f'{{"topic": "{topic}", "data": {{"t":{stamp},"p":"{pad}"}}}}'
            sock.send_multipart([ROOT, body.encode()])
            sent += 1
        time.sleep(0.001)
    print(f"done {tag} {sent}", flush=True)
sock.close()
ctx.term()
