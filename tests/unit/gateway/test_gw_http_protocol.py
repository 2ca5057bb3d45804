"""hookgate's HTTP protocol writes each response in one `write`: the head waits for its body
in the same step of the event loop, and a head whose body comes later still leaves at the
end of that step. `scope["hookgate.respond"]` writes a whole response at once."""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.config import Config
from uvicorn.server import ServerState

from gateway.http.protocol import RESPOND, HookgateHttpProtocol, OneWrite


class Recorder(asyncio.Transport):
    """A transport that keeps every write as it was made."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def fixed(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send(
        {"type": "http.response.start", "status": 202, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"{}"})


async def streamed(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await asyncio.sleep(0.05)
    await send({"type": "http.response.body", "body": b"late", "more_body": False})


async def whole(scope: Any, receive: Any, send: Any) -> None:
    body = (await receive())["body"]
    await scope[RESPOND](202, [(b"content-type", b"application/json")], b'{"got":' + body + b"}")


REQUEST = b"POST /x HTTP/1.1\r\nhost: t\r\ncontent-length: 2\r\n\r\n{}"


async def serve(app: Any, data: bytes, settle: float = 0.1) -> Recorder:
    config = Config(app=app, lifespan="off", log_level="warning", server_header=False)
    state = ServerState()
    state.default_headers = [(b"date", b"Fri, 04 Dec 2026 19:00:00 GMT")]  # uvicorn's tick sets it
    protocol = HookgateHttpProtocol(config=config, server_state=state, app_state={})
    transport = Recorder()
    protocol.connection_made(transport)
    protocol.data_received(data)
    await asyncio.sleep(settle)
    return transport


async def test_a_response_with_a_length_leaves_in_one_write() -> None:
    transport = await serve(fixed, REQUEST)
    assert len(transport.writes) == 1
    (response,) = transport.writes
    assert response.startswith(b"HTTP/1.1 202 ")
    assert response.endswith(b"\r\n\r\n{}")


async def test_pipelined_requests_get_one_write_each_in_order() -> None:
    transport = await serve(fixed, REQUEST * 3)
    assert len(transport.writes) == 3
    assert all(w.startswith(b"HTTP/1.1 202 ") and w.endswith(b"{}") for w in transport.writes)


async def test_a_head_whose_body_comes_later_is_not_held_back() -> None:
    config = Config(app=streamed, lifespan="off", log_level="warning", server_header=False)
    protocol = HookgateHttpProtocol(config=config, server_state=ServerState(), app_state={})
    transport = Recorder()
    protocol.connection_made(transport)
    protocol.data_received(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
    await asyncio.sleep(0.01)  # the app is sleeping between its head and its body
    assert len(transport.writes) == 1
    assert transport.writes[0].startswith(b"HTTP/1.1 200 ")
    assert transport.writes[0].endswith(b"\r\n\r\n")
    await asyncio.sleep(0.1)
    assert b"late" in b"".join(transport.writes[1:])


async def test_close_and_other_transport_calls_send_a_held_head_first() -> None:
    transport = Recorder()
    writer = OneWrite(transport, asyncio.get_running_loop())
    writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
    assert transport.writes == []
    assert writer.is_closing() is False  # forwarded, after the head went out
    assert transport.writes == [b"HTTP/1.1 204 No Content\r\n\r\n"]
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
    writer.close()
    assert transport.writes[-1] == b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
    assert transport.closed


async def test_respond_writes_the_whole_response_once_with_its_length() -> None:
    transport = await serve(whole, REQUEST * 2)
    assert len(transport.writes) == 2  # one per request, the second after the first
    head, body = transport.writes[0].split(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 202 Accepted"
    assert b"content-type: application/json" in lines
    assert b"content-length: 10" in lines
    assert b"date: Fri, 04 Dec 2026 19:00:00 GMT" in lines  # the server's default headers
    assert body == b'{"got":{}}'
    assert transport.writes[1] == transport.writes[0]
    assert not transport.closed


async def test_respond_closes_when_the_request_asked_and_sends_no_body_to_head() -> None:
    closing = await serve(whole, REQUEST.replace(b"host: t", b"host: t\r\nconnection: close"))
    (response,) = closing.writes
    assert b"\r\nconnection: close\r\n" in response
    assert closing.closed

    head = await serve(whole, REQUEST.replace(b"POST", b"HEAD", 1))
    (response,) = head.writes
    assert response.endswith(b"content-length: 10\r\n\r\n")  # the length, not the body


async def test_respond_twice_is_refused() -> None:
    errors: list[Exception] = []

    async def twice(scope: Any, receive: Any, send: Any) -> None:
        await scope[RESPOND](202, [], b"{}")
        try:
            await scope[RESPOND](202, [], b"{}")
        except RuntimeError as exc:
            errors.append(exc)

    transport = await serve(twice, REQUEST)
    assert len(transport.writes) == 1
    assert len(errors) == 1
