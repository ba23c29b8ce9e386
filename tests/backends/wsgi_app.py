"""WSGI app for the gunicorn tests (tests/real_backends.rs): answers with
the HTTP_* variables of its environ as JSON, which is where CGI-style
servers put request headers (with `-` and `_` both mapped to `_`)."""
import json


def app(environ, start_response):
    body = json.dumps(
        {k: v for k, v in environ.items() if k.startswith("HTTP_")}
    ).encode()
    start_response(
        "200 OK",
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [body]
