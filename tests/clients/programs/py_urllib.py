"""Python urllib through the egress proxy: https_proxy / http_proxy / no_proxy from the
environment, the egress CA in an SSL context. One JSON line per URL given."""

import json
import os
import ssl
import sys
import urllib.error
import urllib.request

context = ssl.create_default_context(cafile=os.environ["CA_FILE"])
for url in sys.argv[1:]:
    try:
        with urllib.request.urlopen(url, timeout=10, context=context) as r:  # noqa: S310
            out = {"url": url, "status": r.status, "reason": r.reason, "text": r.read(800).decode()}
    except urllib.error.HTTPError as exc:  # a refused plain request: status, reason, body
        body = exc.read(800).decode()
        out = {"url": url, "status": exc.code, "reason": exc.reason, "text": body}
    except urllib.error.URLError as exc:  # a refused CONNECT: "Tunnel connection failed: ..."
        out = {"url": url, "status": None, "error": str(exc.reason)}
    print(json.dumps(out), flush=True)
