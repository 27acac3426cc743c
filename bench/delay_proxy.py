#!/usr/bin/env python3
"""A user-space TCP proxy that adds a fixed one-way delay and a rate limit in
each direction: a stand-in for a wide-area link where the netem qdisc is not
available (see DESIGN.md). Loopback only. Usage:
    delay_proxy.py LISTEN_PORT TARGET_PORT DELAY_MS RATE_MBIT
Each chunk read leaves the "wire" once the link has serialised it at RATE and
arrives DELAY later, in order."""
import asyncio
import sys


async def pipe(reader, writer, delay, rate):
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def deliver():
        while True:
            when, data = await queue.get()
            wait = when - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if data is None:
                writer.close()
                return
            writer.write(data)
            await writer.drain()

    task = asyncio.create_task(deliver())
    link_free = 0.0
    while True:
        data = await reader.read(1 << 16)
        now = loop.time()
        if not data:
            queue.put_nowait((max(now, link_free) + delay, None))
            break
        link_free = max(now, link_free) + len(data) / rate
        queue.put_nowait((link_free + delay, data))
    await task


async def main():
    listen_port, target_port = int(sys.argv[1]), int(sys.argv[2])
    delay, rate = float(sys.argv[3]) / 1000.0, float(sys.argv[4]) * 1e6 / 8

    async def handle(client_r, client_w):
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(pipe(client_r, server_w, delay, rate), pipe(server_r, client_w, delay, rate),
                             return_exceptions=True)

    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
