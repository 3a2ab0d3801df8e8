"""Python requests through the egress proxy: HTTPS_PROXY / HTTP_PROXY / NO_PROXY and
REQUESTS_CA_BUNDLE from the environment. One JSON line per URL given."""

import json
import sys

import requests

for url in sys.argv[1:]:
    try:
        r = requests.get(url, timeout=10)
        out = {"url": url, "status": r.status_code, "reason": r.reason, "text": r.text[:800]}
    except requests.RequestException as exc:  # a refused CONNECT: ProxyError
        out = {"url": url, "status": None, "error": str(exc)}
    print(json.dumps(out), flush=True)
