"""ASGI app for the Hypercorn tests (tests/real_backends.rs).

HTTP: records (method, path, x-auth-user values) of every request and
answers with them as JSON; GET /__seen (asked directly, never through the
gate) returns everything recorded. WebSocket: echoes text messages.
"""
import json

SEEN = []


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while True:
            msg = await receive()
            if msg["type"] == "websocket.disconnect":
                return
            if msg.get("text") is not None:
                await send({"type": "websocket.send", "text": msg["text"]})
            else:
                await send({"type": "websocket.send", "bytes": msg.get("bytes")})
    if scope["type"] != "http":
        return
    # Read the whole body.
    more = True
    while more:
        msg = await receive()
        more = msg.get("more_body", False)
    if scope["path"] == "/__seen":
        body = json.dumps(SEEN).encode()
    else:
        users = [v.decode("latin-1") for k, v in scope["headers"] if k == b"x-auth-user"]
        entry = {
            "method": scope["method"],
            "path": scope["path"],
            "http_version": scope["http_version"],
            "x_auth_user": users,
        }
        SEEN.append(entry)
        body = json.dumps(entry).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})
