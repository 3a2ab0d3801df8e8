"""A local stand-in for an external exchange-rate API (`rates.example.org` in the demo).

`python -m vivified.devkit.rates_standin --port-file FILE` serves `GET /v1/latest` on
127.0.0.1 (port 0 picks a free one, written to FILE once listening) until SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from vivified.config.children import write_port

RATES = {"USD": 1.0, "EUR": 0.92, "GBP": 0.79, "JPY": 151.3, "CHF": 0.88}


class RatesHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "rates-standin/1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, doc: dict[str, Any]) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path != "/v1/latest":
            self._send(404, {"error": "not found"})
            return
        base = parse_qs(url.query).get("base", ["USD"])[0].upper()
        if base not in RATES:
            self._send(400, {"error": f"unknown base {base}"})
            return
        rates = {k: round(v / RATES[base], 6) for k, v in RATES.items()}
        self._send(200, {"base": base, "rates": rates, "provider": "rates stand-in"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rates_standin")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", required=True)
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), RatesHandler)

    def stop(_sig: int, _frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    write_port(args.port_file, int(server.server_address[1]))
    try:
        server.serve_forever()
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
