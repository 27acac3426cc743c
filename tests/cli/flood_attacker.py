#!/usr/bin/env python3
"""A hostile peer for tests/cli/flood.sh (stdlib only). It never completes a
handshake, so it does not depend on what a valid hello looks like; each
source address 127.0.0.N plays another host.

  flood_attacker.py attack HOST:PORT HOLD_S FRAME_BYTES
      (a) many connections held open, (b) an oversized frame, (c) slow-loris
      (a trickled header), (d) garbage bytes, and buffers filled with nearly
      whole frames of FRAME_BYTES; holds for HOLD_S seconds, prints a summary.
  flood_attacker.py probe HOST:PORT SRC_IP
      connects from SRC_IP and prints what the server said before closing
      (a bye frame's text), or "open" if it kept the connection 10 s.
"""
import os
import socket
import struct
import sys
import time

MAGIC = b"ENGN"


def header(length):
    # magic, version 1, flags 0, body length, checksum (wrong, but never reached)
    return MAGIC + struct.pack(">HHIQ", 1, 0, length, 0)


def connect(addr, src):
    host, port = addr.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(5)
    s.bind((src, 0))
    s.connect((host, int(port)))
    return s


def try_send(s, data):
    try:
        s.sendall(data)
        return True
    except OSError:
        return False


def attack(addr, hold_s, frame_bytes):
    held, refused = [], 0
    # (a) many connections from two addresses, each far above the per-IP cap.
    for ip in ("127.0.0.10", "127.0.0.11"):
        for _ in range(60):
            try:
                held.append(connect(addr, ip))
            except OSError:
                refused += 1
    # (b) a header announcing a 1 GiB body, then 64 MiB of it if we are let.
    big = connect(addr, "127.0.0.3")
    sent = 0
    if try_send(big, header(1 << 30)):
        chunk = b"\0" * (1 << 20)
        while sent < 64 and try_send(big, chunk):
            sent += 1
    # (c) slow-loris: headers trickled a byte at a time (continued below).
    loris = []
    for _ in range(10):
        try:
            loris.append([connect(addr, "127.0.0.4"), header(frame_bytes // 2), 0])
        except OSError:
            refused += 1
    # (d) garbage.
    for _ in range(20):
        try:
            g = connect(addr, "127.0.0.5")
            try_send(g, os.urandom(4096))
            held.append(g)
        except OSError:
            refused += 1
    # Buffers filled with frames that never complete, from four addresses.
    filled = 0
    for n in range(20, 24):
        for _ in range(40):
            try:
                s = connect(addr, "127.0.0.%d" % n)
            except OSError:
                refused += 1
                continue
            if try_send(s, header(frame_bytes) + b"\0" * (frame_bytes - 1)):
                filled += 1
            held.append(s)
    end = time.time() + hold_s
    while time.time() < end:
        for l in loris:
            if l[2] < len(l[1]) and try_send(l[0], l[1][l[2]:l[2] + 1]):
                l[2] += 1
        time.sleep(0.5)
    print("attack: %d connections held or tried, %d refused at connect, %d MiB of the oversized frame "
          "sent, %d buffers filled" % (len(held) + len(loris), refused, sent, filled))
    for s in held + [l[0] for l in loris] + [big]:
        s.close()


def probe(addr, src):
    try:
        s = connect(addr, src)
    except OSError as e:
        print("refused at connect: %s" % e)
        return
    s.settimeout(10)
    data = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
    except socket.timeout:
        print("open")
        return
    except OSError:
        pass
    text = data[20:].decode("utf-8", "replace")  # the bye frame's msgpack body, past the header
    print("closed: %s" % "".join(ch for ch in text if ch.isprintable()))


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "attack":
        attack(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]))
    elif len(sys.argv) == 4 and sys.argv[1] == "probe":
        probe(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
