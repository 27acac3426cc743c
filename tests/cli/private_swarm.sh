#!/usr/bin/env bash
# A private swarm (--swarm-key) on 127.0.0.1 with stories260K: a DHT node, one
# server and a client, all holding the key, give the same greedy text as a
# local run. Without the key, or with another one, commands fail with a clear
# error, and at the socket a real open-swarm hello sent to the DHT or to the
# server is answered with nothing but a closed connection.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/swarm_lib.bash"
need_shared
MODEL=$SHARED/models/stories260K.gguf
gen() { timeout 60 "$ENGINE" generate -m "$MODEL" --temp 0 --ids -t 1 -n 30 "$@"; }
KEY=$TMP/swarm.key
OTHER=$TMP/other.key

"$ENGINE" swarm-key -o "$KEY" >/dev/null
check "swarm-key writes a 0600 file" [ "$(stat -c %a "$KEY")" = 600 ]
expect_fail "swarm-key refuses to overwrite" "--force" "$ENGINE" swarm-key -o "$KEY"
"$ENGINE" swarm-key -o "$OTHER" --force >/dev/null
echo "engine-swarm-key-v1" >"$TMP/bad.key" && chmod 600 "$TMP/bad.key"
expect_fail "a malformed key file is refused" "not an engine swarm key file" \
  "$ENGINE" dht peers --initial-peers 127.0.0.1:1 --swarm-key "$TMP/bad.key"

LOCAL=$(gen 2>/dev/null)
[ -n "$LOCAL" ] || die "local generation failed"

start_dht --swarm-key "$KEY" --identity "$TMP/dht.id"
check "identity file created 0600" [ "$(stat -c %a "$TMP/dht.id")" = 600 ]
ID1=$(sed -n 's/^dht: node \([0-9a-f]*\) .*/\1/p' "$TMP/dht.out")
ID2=$(timeout 2 "$ENGINE" dht --listen 127.0.0.1:0 --identity "$TMP/dht.id" 2>/dev/null | sed -n 's/^dht: node \([0-9a-f]*\) .*/\1/p')
check "the same identity file gives the same peer id" [ -n "$ID1" ] && [ "$ID1" = "$ID2" ]
start_server a --blocks 0:5 --swarm-key "$KEY"

OUT=$(gen --swarm --initial-peers "$DHT_ADDR" --swarm-key "$KEY" 2>"$TMP/gen.err")
check "private swarm greedy == local greedy" [ "$OUT" = "$LOCAL" ]

expect_fail "generate without the key: clear error" "--swarm-key" \
  gen --swarm --initial-peers "$DHT_ADDR" --give-up 5
expect_fail "generate with another key: clear error" "--swarm-key" \
  gen --swarm --initial-peers "$DHT_ADDR" --swarm-key "$OTHER" --give-up 5
expect_fail "dht get without the key fails" "--swarm-key" \
  timeout 30 "$ENGINE" dht get stories260K --initial-peers "$DHT_ADDR"
expect_fail "dht put with another key fails" "--swarm-key" \
  timeout 30 "$ENGINE" dht put x y --initial-peers "$DHT_ADDR" --swarm-key "$OTHER"

# At the socket: record a real open-swarm hello (an engine client dialing a
# plain listener), replay it to the DHT and to the server, expect EOF with 0 bytes.
RAW=$(timeout 60 python3 - "$ENGINE" "$DHT_ADDR" "${SRV_ADDR[a]}" <<'PY'
import socket, subprocess, sys
engine, targets = sys.argv[1], sys.argv[2:]
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(1)
ls.settimeout(20)
port = ls.getsockname()[1]
p = subprocess.Popen([engine, "dht", "peers", "--initial-peers", "127.0.0.1:%d" % port],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    c, _ = ls.accept()
    c.settimeout(10)
    hello = b""
    while len(hello) < 20 or len(hello) < 20 + int.from_bytes(hello[8:12], "big"):
        d = c.recv(65536)
        if not d:
            break
        hello += d
    c.close()
finally:
    p.kill()
    p.wait()
if hello[:4] != b"ENGN":
    print("no open-swarm hello captured")
    sys.exit(1)
for t in targets:
    host, port = t.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=10)
    s.sendall(hello)
    got = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            got += d
    except socket.timeout:
        print("%s: connection left open" % t)
        sys.exit(1)
    if got:
        print("%s: answered %d bytes" % (t, len(got)))
        sys.exit(1)
print("closed silently")
PY
)
check "an open-swarm hello gets a closed connection and 0 bytes ($RAW)" [ "$RAW" = "closed silently" ]
finish
