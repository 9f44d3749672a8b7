"""The codec server: Temporal's remote codec protocol over HTTP, so that the Web UI and the
`temporal` CLI (`--codec-endpoint`) show decrypted payloads to those who hold the keys.

    python -m mpr.infra.codec_server        # or `mpr codec-server`

POST /encode and /decode (also under a /{namespace}/ prefix) take and return
`{"payloads": [...]}` in protobuf JSON form. Whoever can reach it reads every payload it is
shown: it listens on 127.0.0.1 by default (MPR_CODEC_SERVER_ADDRESS), answers browsers only
from MPR_CODEC_CORS_ORIGINS, and with MPR_CODEC_SERVER_TOKEN set only requests carrying
`Authorization: Bearer <token>`. Payload contents are never logged.
"""

import argparse
import hmac
import re
from collections.abc import Callable, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.protobuf.json_format import MessageToJson, Parse, ParseError
from temporalio.api.common.v1 import Payload, Payloads

from mpr.infra.codec import EncryptionCodec, PayloadKeyError
from mpr.infra.entrypoint import EntryPointError, run_and_exit
from mpr.infra.exit_codes import FAILURE
from mpr.infra.logging import configure_logging, get_logger
from mpr.infra.settings import Settings
from mpr.infra.temporal import payload_codec

# Temporal payloads are at most 2 MiB each; a history page of them fits in this.
MAX_BODY_BYTES = 16 * 1024 * 1024
ROUTE = re.compile(r"^(?:/[^/]+)?/(encode|decode)/?$")
ALLOWED_HEADERS = "content-type, x-namespace, authorization"
log = get_logger(__name__)


class CodecServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], codec: EncryptionCodec,
                 cors_origins: Sequence[str] = (), token: str | None = None) -> None:
        super().__init__(address, CodecRequestHandler)
        self.codec = codec
        self.cors_origins = frozenset(cors_origins)
        self.token = token

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class HttpError(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


class CodecRequestHandler(BaseHTTPRequestHandler):
    # HTTP/1.0 (the default): one request per connection, so a refused request whose body
    # was never read cannot spill into the next one.
    server: CodecServer
    timeout = 30  # seconds a client may take to send its request: no thread is held forever

    def do_OPTIONS(self) -> None:
        """CORS preflight: browsers send it without credentials, so no token is asked."""
        origin = self.headers.get("Origin")
        if origin is not None and origin not in self.server.cors_origins:
            self._reply(HTTPStatus.FORBIDDEN, f"origin {origin} is not allowed")
            return
        self._reply(HTTPStatus.NO_CONTENT, "")

    def do_POST(self) -> None:
        try:
            transform = self._route()
            self._check_origin()
            self._check_token()
            payloads = self._read_payloads()
            try:
                result = transform(payloads)
            except PayloadKeyError as error:
                raise HttpError(HTTPStatus.UNPROCESSABLE_ENTITY, str(error)) from None
        except HttpError as error:
            self._reply(error.status, str(error))
            return
        body = MessageToJson(Payloads(payloads=result), indent=None)
        self._reply(HTTPStatus.OK, body, content_type="application/json")

    def _route(self) -> Callable[[list[Payload]], list[Payload]]:
        found = ROUTE.match(self.path.partition("?")[0])
        if not found:
            raise HttpError(HTTPStatus.NOT_FOUND, "POST /encode or /decode")
        codec = self.server.codec
        return codec.encrypt_all if found.group(1) == "encode" else codec.decrypt_all

    def _check_origin(self) -> None:
        """Browsers on other sites may still send simple POSTs: refuse them outright."""
        origin = self.headers.get("Origin")
        if origin is not None and origin not in self.server.cors_origins:
            raise HttpError(HTTPStatus.FORBIDDEN, f"origin {origin} is not allowed")

    def _check_token(self) -> None:
        expected = self.server.token
        if expected is None:
            return
        given = self.headers.get("Authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), expected.encode()
        ):
            raise HttpError(HTTPStatus.UNAUTHORIZED, "a valid Authorization: Bearer token is "
                            "required (temporal --codec-auth 'Bearer TOKEN')")

    def _read_payloads(self) -> list[Payload]:
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise HttpError(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required") from None
        if length < 0:
            raise HttpError(HTTPStatus.BAD_REQUEST, "Content-Length is negative")
        if length > MAX_BODY_BYTES:
            raise HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                            f"the body is over {MAX_BODY_BYTES} bytes")
        body = self.rfile.read(length)
        try:
            return list(Parse(body, Payloads()).payloads)
        except (ParseError, UnicodeDecodeError) as error:
            raise HttpError(
                HTTPStatus.BAD_REQUEST,
                f'malformed body: expected {{"payloads": [{{"metadata": {{...}}, "data": '
                f'"<base64>"}}]}} in protobuf JSON ({error})',
            ) from None

    def _reply(self, status: HTTPStatus, body: str, content_type: str = "text/plain") -> None:
        data = body.encode()
        self.send_response(status)
        origin = self.headers.get("Origin")
        if origin is not None and origin in self.server.cors_origins:
            self.send_header("Access-Control-Allow-Origin", origin)
            self.send_header("Access-Control-Allow-Methods", "POST, OPTIONS")
            self.send_header("Access-Control-Allow-Headers", ALLOWED_HEADERS)
            self.send_header("Access-Control-Allow-Credentials", "true")
            self.send_header("Access-Control-Max-Age", "600")
        self.send_header("Vary", "Origin")
        if status == HTTPStatus.UNAUTHORIZED:
            self.send_header("WWW-Authenticate", "Bearer")
        self.send_header("Cache-Control", "no-store")  # decrypted data stays out of caches
        self.send_header("Content-Type", f"{content_type}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.info("codec request", method=self.command, path=self.path.partition("?")[0],
                 status=int(code) if isinstance(code, int) else code,
                 namespace=self.headers.get("X-Namespace"))

    def log_message(self, format: str, *args: Any) -> None:
        log.warning("codec server", message=format % args)


def parse_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{address!r} is not host:port")
    return host.strip("[]") or "127.0.0.1", int(port)


def build_server(settings: Settings, address: str | None = None) -> CodecServer:
    """The server as `settings` say (PayloadKeyError or ValueError when they cannot work)."""
    codec = payload_codec(settings)
    if not codec.keys:
        raise PayloadKeyError("the codec server needs MPR_PAYLOAD_KEYS: it has nothing to "
                              "decrypt with (export the payload keys; `make up` keeps its own "
                              "in .data/payload-keys)")
    # The server answers /encode whatever MPR_PAYLOAD_ENCRYPTION says for this process.
    codec = EncryptionCodec(codec.keys, encrypt=True)
    token = settings.codec_server_token.get_secret_value() if settings.codec_server_token else None
    return CodecServer(parse_address(address or settings.codec_server_address), codec,
                       settings.codec_cors_origins, token)


def start(settings: Settings, address: str | None = None) -> CodecServer:
    """A server listening (not yet serving), its logging configured and its start logged."""
    configure_logging(settings.log_level, settings.log_format)
    server = build_server(settings, address)
    log.info("codec server started", url=server.url, key_ids=server.codec.keys.key_ids,
             cors_origins=sorted(server.cors_origins), token=server.token is not None)
    return server


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m mpr.infra.codec_server", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--address", help="host:port (default: MPR_CODEC_SERVER_ADDRESS, "
                                          "else 127.0.0.1:8234)")
    args = parser.parse_args()
    settings = Settings.from_env()
    address = args.address or settings.codec_server_address
    try:
        server = start(settings, address)
    except PayloadKeyError as error:
        raise EntryPointError(f"the codec server cannot start: {error}", FAILURE) from None
    except ValueError as error:  # a malformed address
        raise EntryPointError(f"the codec server cannot start: {error} (MPR_CODEC_SERVER_ADDRESS "
                              "or --address: host:port)", FAILURE) from None
    except OSError as error:  # e.g. the port is taken
        raise EntryPointError(f"the codec server cannot listen on {address}: {error.strerror} "
                              "(MPR_CODEC_SERVER_ADDRESS or --address chooses another)",
                              FAILURE) from None
    with server:
        server.serve_forever()


if __name__ == "__main__":
    run_and_exit(main)
