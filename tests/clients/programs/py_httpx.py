"""httpx through the egress proxy: HTTPS_PROXY / HTTP_PROXY / NO_PROXY from the environment
(trust_env), the egress CA in an SSL context. One JSON line per URL given."""

import json
import os
import ssl
import sys

import httpx

context = ssl.create_default_context(cafile=os.environ["CA_FILE"])
with httpx.Client(verify=context, timeout=10, trust_env=True) as client:
    for url in sys.argv[1:]:
        try:
            r = client.get(url)
            out = {"url": url, "status": r.status_code, "reason": r.reason_phrase, "text": r.text}
        except httpx.HTTPError as exc:  # a refused CONNECT: ProxyError("403 Forbidden (...)")
            out = {"url": url, "status": None, "error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(out), flush=True)
