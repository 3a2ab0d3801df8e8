// Node.js (undici) through the egress proxy. One JSON line per URL given.
//
//   node client.js env URL...     EnvHttpProxyAgent: HTTP_PROXY / HTTPS_PROXY / NO_PROXY, Basic
//                                 credentials from the proxy URL
//   node client.js bearer URL...  ProxyAgent with `token: "Bearer <plugin token>"` (PROXY_URL
//                                 without credentials, PLUGIN_TOKEN)
//
// The egress CA comes from CA_FILE (requestTls.ca). Plain http:// goes to the proxy as an
// absolute-form request (proxyTunnel: false), so a refusal arrives as a normal 403 response.
// undici's ProxyAgent reports a refused CONNECT only as "Proxy response (403) !== 200 when HTTP
// Tunneling"; `explainingClient` (a clientFactory) keeps the proxy's reason code instead.
'use strict'

const fs = require('node:fs')
const { fetch, Pool, ProxyAgent, EnvHttpProxyAgent } = require('undici')

const EGRESS_ERROR = 'x-vivified-egress-error'

function explainingClient (origin, opts) {
  const pool = new Pool(origin, opts)
  const connect = pool.connect.bind(pool)
  pool.connect = async (params) => {
    const res = await connect(params)
    if (res.statusCode !== 200) {
      res.socket.destroy()
      const reason = res.headers[EGRESS_ERROR] || 'unknown'
      throw new Error(`egress proxy refused CONNECT ${params.path}: ${res.statusCode} ${reason}`)
    }
    return res
  }
  return pool
}

function dispatcher (mode) {
  const common = {
    requestTls: { ca: fs.readFileSync(process.env.CA_FILE) },
    proxyTunnel: false,
    clientFactory: explainingClient
  }
  if (mode === 'bearer') {
    return new ProxyAgent({
      ...common,
      uri: process.env.PROXY_URL,
      token: `Bearer ${process.env.PLUGIN_TOKEN}`
    })
  }
  return new EnvHttpProxyAgent(common)
}

function describe (err) {
  const parts = []
  for (let e = err; e; e = e.cause) parts.push(`${e.name}: ${e.message}`)
  return parts.join(' <- ')
}

async function main () {
  const [mode, ...urls] = process.argv.slice(2)
  const agent = dispatcher(mode)
  for (const url of urls) {
    let out
    try {
      const r = await fetch(url, { dispatcher: agent, signal: AbortSignal.timeout(10000) })
      const text = (await r.text()).slice(0, 800)
      out = { url, status: r.status, reason: r.statusText, egress_error: r.headers.get(EGRESS_ERROR), text }
    } catch (err) {
      out = { url, status: null, error: describe(err) }
    }
    console.log(JSON.stringify(out))
  }
  await agent.close()
}

main().catch((err) => { console.error(err); process.exit(2) })
