"""A TCP proxy on loopback that delays everything by half a round trip in each direction:
a relay far away, made of a relay nearby. Runs its own event loop in a thread.

Bytes keep their order and are never merged differently than they were read, so what the
client pipelines reaches the relay pipelined, one half round trip later."""

import asyncio
import socket
import threading
import time


class LatencyProxy:
    def __init__(self, target_port: int, round_trip_seconds: float, host: str = "127.0.0.1"):
        self.target = (host, target_port)
        self.delay = round_trip_seconds / 2
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def start(self) -> "LatencyProxy":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=10)
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._proxy, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _proxy(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            relay_r, relay_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.close()
            return
        for writer in (client_w, relay_w):
            writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.gather(
            self._pipe(client_r, relay_w), self._pipe(relay_r, client_w), return_exceptions=True
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copies ``reader`` to ``writer``, each chunk ``delay`` after it was read."""
        chunks: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, chunk = await chunks.get()
                if (wait := due - time.monotonic()) > 0:
                    await asyncio.sleep(wait)
                if not chunk:
                    writer.close()
                    return
                writer.write(chunk)
                await writer.drain()

        delivering = asyncio.ensure_future(deliver())
        try:
            while chunk := await reader.read(65536):
                chunks.put_nowait((time.monotonic() + self.delay, chunk))
            chunks.put_nowait((time.monotonic() + self.delay, b""))
            await delivering
        except (OSError, asyncio.CancelledError):
            delivering.cancel()
            writer.close()
