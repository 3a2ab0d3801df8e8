// A real OpenID Provider (panva/oidc-provider, pinned in package.json) for the OIDC tests.
//
// Listens on 127.0.0.1, port 0, and prints one JSON line {"issuer": ...} once it serves.
// Users sign in at a plain login form (a custom interaction: the test, or Playwright, types
// the user name); consent is granted automatically. Test controls, loopback only:
//   POST /test/users    {"<login>": {"email", "email_verified", "groups"}}   (merged)
//   POST /test/clients  [client metadata, ...]                            (replaces)
//   POST /test/rotate   {"jwk"?: private JWK, "keep_old"?: bool, "append"?: bool} -> {"kid"}
//                       (a new signing key; with "append" only published, not used)
//   POST /test/automation {"<client_id>": {"groups": [...]}}  claims of client-credentials tokens
import crypto from 'node:crypto';
import http from 'node:http';

import Provider from 'oidc-provider';

const state = { users: {}, clients: [], keys: [], automation: {} };
let issuer = '';
let provider = null;

function newKey() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: crypto.randomBytes(8).toString('hex'), alg: 'RS256', use: 'sig' };
}

const page = (title, body) => `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>${title}</title></head><body><main><h1>${title}</h1>${body}</main></body></html>`;

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function build() {
  const p = new Provider(issuer, {
    clients: state.clients,
    jwks: { keys: state.keys },
    cookies: { keys: ['vivified-test-oidc-cookies'] },
    conformIdTokenClaims: false, // scope claims (email, groups) in the ID token too
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
      groups: ['groups'],
    },
    scopes: ['openid', 'email', 'profile', 'groups', 'admin'],
    pkce: { required: () => true },
    async findAccount(_ctx, sub) {
      const user = state.users[sub];
      if (!user) return undefined;
      return { accountId: sub, async claims() { return { sub, name: sub, ...user }; } };
    },
    async extraTokenClaims(_ctx, token) {
      const who = token.accountId ? state.users[token.accountId] : state.automation[token.clientId];
      if (!who) return undefined;
      return { groups: who.groups ?? [], ...(who.email ? { email: who.email } : {}) };
    },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        async logoutSource(ctx, form) {
          ctx.body = page('Sign out', `${form}<button type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button>`);
        },
        async postLogoutSuccessSource(ctx) {
          ctx.body = page('Signed out', '<p>You are signed out.</p>');
        },
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: (_ctx, _client, oneOf) => oneOf,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, resource) => ({
          scope: 'admin',
          audience: resource,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        }),
      },
    },
    async renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = page('Error', `<pre>${escape(JSON.stringify(out))}</pre>`);
    },
  });
  return p;
}

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

function json(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

async function interaction(req, res, uid, action) {
  const p = provider;
  const details = await p.interactionDetails(req, res);
  if (details.uid !== uid) throw new Error('interaction mismatch');
  if (req.method === 'POST' && action === 'login') {
    const form = new URLSearchParams(await readBody(req));
    const login = form.get('login') ?? '';
    if (!state.users[login]) {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(page('Sign in', `<p role="alert">Unknown user ${escape(login)}.</p>`));
      return;
    }
    await p.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
    return;
  }
  const { prompt, params, session } = details;
  if (prompt.name === 'login') {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(page('Sign in to the test provider', `
<form method="post" action="/interaction/${escape(uid)}/login">
<label for="login">Username</label> <input id="login" name="login" autofocus>
<button type="submit">Continue</button></form>`));
    return;
  }
  // consent: grant what was asked
  const grant = details.grantId
    ? await p.Grant.find(details.grantId)
    : new p.Grant({ accountId: session.accountId, clientId: params.client_id });
  const missing = prompt.details;
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();
  await p.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

async function control(req, res, path) {
  const body = req.method === 'POST' ? JSON.parse((await readBody(req)) || '{}') : {};
  if (path === '/test/users') {
    Object.assign(state.users, body);
    return json(res, 200, { users: Object.keys(state.users) });
  }
  if (path === '/test/clients') {
    state.clients = body;
    provider = build();
    return json(res, 200, { clients: body.map((c) => c.client_id) });
  }
  if (path === '/test/automation') {
    Object.assign(state.automation, body);
    return json(res, 200, {});
  }
  if (path === '/test/rotate') {
    const key = body.jwk ? { alg: 'RS256', use: 'sig', ...body.jwk } : newKey();
    if (body.append) state.keys = [...state.keys, key]; // published, not used to sign
    else state.keys = body.keep_old === false ? [key] : [key, ...state.keys];
    provider = build();
    return json(res, 200, { kid: key.kid });
  }
  return json(res, 404, { error: 'no such control' });
}

const server = http.createServer(async (req, res) => {
  try {
    const path = new URL(req.url, issuer).pathname;
    const m = path.match(/^\/interaction\/([^/]+)(?:\/(login))?$/);
    if (m) return await interaction(req, res, m[1], m[2]);
    if (path.startsWith('/test/')) return await control(req, res, path);
    return provider.callback()(req, res);
  } catch (err) {
    if (!res.headersSent) json(res, 500, { error: String(err?.message ?? err) });
    else res.end();
  }
});

server.listen(0, '127.0.0.1', () => {
  // The issuer's host may be `localhost`: another *site* than the gateway's 127.0.0.1, as in
  // production (SameSite cookies then really see a cross-site redirect).
  issuer = `http://${process.argv[2] || '127.0.0.1'}:${server.address().port}`;
  state.keys = [newKey()];
  provider = build();
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});

process.on('SIGTERM', () => server.close(() => process.exit(0)));
