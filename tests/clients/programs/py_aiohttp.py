"""aiohttp through the egress proxy: HTTPS_PROXY / HTTP_PROXY / NO_PROXY from the environment
(trust_env), the egress CA in an SSL context. One JSON line per URL given."""

import asyncio
import json
import os
import ssl
import sys

import aiohttp


async def main() -> None:
    context = ssl.create_default_context(cafile=os.environ["CA_FILE"])
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(trust_env=True, timeout=timeout) as session:
        for url in sys.argv[1:]:
            try:
                async with session.get(url, ssl=context) as r:
                    text = (await r.text())[:800]
                    out = {"url": url, "status": r.status, "reason": r.reason, "text": text}
            except aiohttp.ClientResponseError as exc:  # a refused CONNECT: ClientHttpProxyError
                out = {"url": url, "status": None, "error": f"{exc.status} {exc.message}"}
            except aiohttp.ClientError as exc:
                out = {"url": url, "status": None, "error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(out), flush=True)


asyncio.run(main())
