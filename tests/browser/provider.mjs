#!/usr/bin/env node
// A real OpenID Provider (panva's oidc-provider) for jwtgate's browser sign-in tests.
//
//   node tests/browser/provider.mjs [CONFIG.json]      (or PROVIDER_CONFIG=CONFIG.json)
//
// It listens on 127.0.0.1 on an ephemeral port, prints ONE line of JSON to stdout
// ({"issuer":"http://127.0.0.1:PORT","port":PORT}) once it accepts connections, and runs
// until its stdin ends or it gets SIGTERM/SIGINT. Exiting on stdin EOF is what keeps a
// crashed or killed test from leaking the process: the parent's end of the pipe closes
// with it. Everything is in memory and every run makes a new RS256 key, so two runs are
// two unrelated issuers (what a mix-up test needs). README.md describes the config file.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import Provider, { errors } from 'oidc-provider';

const configPath = process.argv[2] || process.env.PROVIDER_CONFIG;
const cfg = configPath ? JSON.parse(fs.readFileSync(configPath, 'utf8')) : {};

// Defaults make `node provider.mjs` useful by hand; tests should pass their own config.
const clients = cfg.clients ?? [{
  client_id: 'jwtgate',
  client_secret: 'jwtgate-secret',
  redirect_uris: ['http://127.0.0.1:8080/oauth2/callback'],
  post_logout_redirect_uris: ['http://127.0.0.1:8080/'],
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  token_endpoint_auth_method: 'client_secret_basic',
}];
const users = cfg.users ?? {
  alice: { password: 'alice-password', email: 'alice@example.test', email_verified: true, name: 'Alice', groups: ['admins', 'users'] },
};
const accessTokenTTL = cfg.accessTokenTTL ?? 300;
const idTokenTTL = cfg.idTokenTTL ?? 300;
const refreshTokenTTL = cfg.refreshTokenTTL ?? 3600;
const sessionTTL = cfg.sessionTTL ?? 3600;
// The API that jwtgate protects. Its access tokens are JWTs with this audience, signed
// with the provider's key, so the gate can check them against jwks_uri.
const resource = cfg.resource ?? 'urn:jwtgate:api';
const audience = cfg.audience ?? resource;
const resourceScope = cfg.resourceScope ?? 'api';
// User claims copied into access tokens (null: all of the user's claims).
const accessTokenClaims = cfg.accessTokenClaims ?? null;
// "auto": consent is granted without a page; "form": a page with a button id="consent".
const consentMode = cfg.consent ?? 'auto';
const claims = cfg.claims ?? {
  openid: ['sub'],
  email: ['email', 'email_verified'],
  profile: ['name', 'given_name', 'family_name', 'preferred_username'],
  groups: ['groups'],
};

// ---- stderr log (one JSON object per line) and the counters behind /test/stats ----
const log = (event, fields = {}) => process.stderr.write(`${JSON.stringify({ event, t: Date.now() / 1000, ...fields })}\n`);
const stats = { token: {}, token_errors: {}, refresh_failures: 0, backchannel: { ok: 0, error: 0 }, end_session: 0 };
const bump = (map, key) => { map[key] = (map[key] ?? 0) + 1; };

// ---- storage: a plain in-memory adapter. Own code rather than the built-in one because
// the /test/logout hook needs to list a user's sessions, which that one cannot do. ----
const store = new Map(); // model name -> Map(id -> { payload, expiresAt })
class MemoryAdapter {
  constructor(name) {
    this.name = name;
    if (!store.has(name)) store.set(name, new Map());
    this.items = store.get(name);
  }

  async upsert(id, payload, expiresIn) {
    // Kept clockTolerance (15 s) past expiry, as oidc-provider's own adapter does, so an
    // expired token is answered "expired" rather than "not found".
    const expiresAt = expiresIn ? Date.now() + (expiresIn + 15) * 1000 : Infinity;
    this.items.set(id, { payload, expiresAt });
  }

  async find(id) {
    const item = this.items.get(id);
    if (!item) return undefined;
    if (item.expiresAt <= Date.now()) { this.items.delete(id); return undefined; }
    return item.payload;
  }

  async findBy(field, value) {
    for (const [id, item] of this.items) if (item.payload[field] === value) return this.find(id);
    return undefined;
  }

  findByUid(uid) { return this.findBy('uid', uid); }

  findByUserCode(userCode) { return this.findBy('userCode', userCode); }

  async consume(id) {
    const item = this.items.get(id);
    if (item) item.payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) { this.items.delete(id); }

  async revokeByGrantId(grantId) {
    for (const [id, item] of this.items) if (item.payload.grantId === grantId) this.items.delete(id);
  }
}
const revokeGrant = (grantId) => Promise.all([...store.keys()].map((name) => {
  const adapter = new MemoryAdapter(name);
  return name === 'Grant' ? adapter.destroy(grantId) : adapter.revokeByGrantId(grantId);
}));

// ---- keys: a fresh RS256 key per run unless the config brings a JWKS ----
function freshJwks() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { keys: [{ ...jwk, kid: crypto.randomBytes(8).toString('hex'), use: 'sig', alg: 'RS256' }] };
}

// ---- pages: no external resources (the default pages @import web fonts, and the test
// machine has no network), stable element ids for the headless browser ----
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const page = (title, body) => `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${esc(title)}</title></head><body><h1>${esc(title)}</h1>${body}</body></html>`;

function loginPage(uid, clientId, error) {
  return page('Sign in', `
    <p>to continue to <span id="client">${esc(clientId)}</span></p>
    ${error ? `<p id="error">${esc(error)}</p>` : ''}
    <form method="post" action="/interaction/${esc(uid)}/login" autocomplete="off">
      <label>Username <input id="login" name="login" required autofocus></label>
      <label>Password <input id="password" name="password" type="password" required></label>
      <button id="submit" type="submit">Sign in</button>
    </form>`);
}

function consentPage(uid, clientId, scopes) {
  return page('Authorize', `
    <p><span id="client">${esc(clientId)}</span> asks for: <span id="scopes">${esc(scopes.join(' '))}</span></p>
    <form method="post" action="/interaction/${esc(uid)}/consent">
      <button id="consent" type="submit">Allow</button>
    </form>
    <form method="post" action="/interaction/${esc(uid)}/abort">
      <button id="deny" type="submit">Deny</button>
    </form>`);
}

async function readForm(req) {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > 1e5) throw new Error('form too large');
  }
  return new URLSearchParams(body);
}

// ---- bind first: the issuer has to name the port, and the port is only known after
// listen(0). Requests are handed to the provider once it exists. ----
const server = http.createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(0, '127.0.0.1', resolve);
});
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  adapter: MemoryAdapter,
  clients,
  jwks: cfg.jwks ?? freshJwks(),
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  claims,
  scopes: ['openid', 'offline_access', resourceScope, ...Object.keys(claims)],
  // Only the authorization code flow: what jwtgate implements.
  responseTypes: ['code'],
  // Every client must send PKCE (S256 is the only method oidc-provider offers).
  pkce: { required: () => true },
  // The ID token carries the scope's claims (email, groups...) even though an access token
  // is issued with it; the default keeps them for the userinfo endpoint only.
  conformIdTokenClaims: false,
  // Reuse of a rotated refresh token revokes the whole grant (refresh_token.js).
  rotateRefreshToken: cfg.rotateRefreshToken ?? true,
  findAccount(ctx, sub) {
    const user = users[sub];
    if (!user) return undefined;
    return {
      accountId: sub,
      claims() {
        const { password, ...rest } = user;
        return { sub, ...rest };
      },
    };
  },
  extraTokenClaims(ctx, token) {
    if (token.kind !== 'AccessToken' || !users[token.accountId]) return undefined;
    const { password, ...all } = users[token.accountId];
    if (!accessTokenClaims) return all;
    return Object.fromEntries(accessTokenClaims.filter((k) => k in all).map((k) => [k, all[k]]));
  },
  ttl: {
    AccessToken: accessTokenTTL,
    IdToken: idTokenTTL,
    RefreshToken: refreshTokenTTL,
    AuthorizationCode: 60,
    Interaction: 600,
    Session: sessionTTL,
    // A grant has to outlive its refresh tokens.
    Grant: Math.max(refreshTokenTTL, sessionTTL) * 2,
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  // The provider's own outgoing requests (back-channel logout tokens). Its SSRF guard, a
  // custom undici dispatcher, refuses loopback addresses, and loopback is the only place a
  // test's relying party can be. Drop the guard, but allow nothing but loopback.
  fetch(url, { dispatcher, ...options }) {
    const { hostname } = new URL(url);
    if (!['127.0.0.1', 'localhost', '[::1]'].includes(hostname)) {
      return Promise.reject(new Error(`test provider: refusing to call a non-loopback host (${hostname})`));
    }
    return globalThis.fetch(url, options);
  },
  // Nothing calls the provider from a browser script: allow no CORS origin.
  clientBasedCORS: () => false,
  renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = page('Error', `<pre id="error">${esc(JSON.stringify(out, null, 2))}</pre>`);
  },
  features: {
    devInteractions: { enabled: false }, // our own pages below
    revocation: { enabled: true },
    backchannelLogout: { enabled: true },
    rpInitiatedLogout: {
      enabled: true,
      logoutSource(ctx, form) {
        ctx.body = page('Sign out', `${form}
          <button id="logout" type="submit" form="op.logoutForm" name="logout" value="yes">Sign out</button>
          <button id="stay" type="submit" form="op.logoutForm">Stay signed in</button>`);
      },
      postLogoutSuccessSource(ctx) {
        ctx.body = page('Signed out', '<p id="signed-out">You are signed out.</p>');
      },
    },
    // oidc-provider 9 issues JWT access tokens only for a resource server. Every request
    // without a `resource` parameter is given `resource`, and the token endpoint issues
    // the access token for it (useGrantedResource) even when openid was asked for,
    // which would otherwise mean an opaque token for the userinfo endpoint.
    resourceIndicators: {
      enabled: true,
      defaultResource: (ctx, client, oneOf) => (oneOf ? oneOf[0] : resource),
      useGrantedResource: () => true,
      getResourceServerInfo(ctx, indicator) {
        if (indicator !== resource) throw new errors.InvalidTarget();
        return {
          audience,
          scope: resourceScope,
          accessTokenTTL,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
});

provider.on('server_error', (ctx, err) => log('server_error', { path: ctx?.path, error: String(err?.stack ?? err) }));
provider.on('backchannel.success', (ctx, client, accountId, sid) => {
  stats.backchannel.ok += 1;
  log('backchannel', { ok: true, client_id: client.clientId, sub: accountId, sid });
});
provider.on('backchannel.error', (ctx, err, client, accountId, sid) => {
  stats.backchannel.error += 1;
  log('backchannel', { ok: false, client_id: client.clientId, sub: accountId, sid, error: String(err.message) });
});
provider.on('end_session.success', () => { stats.end_session += 1; });
// The token endpoint answers every invalid_grant with "grant request is invalid"; the
// reason ("refresh token already used"...) is only on the error object. Keep it for the log.
provider.on('grant.error', (ctx, err) => { ctx.state.grantError = err; });

// ---- token endpoint accounting: after the provider answered, so the status is known ----
provider.use(async (ctx, next) => {
  await next();
  if (ctx.oidc?.route !== 'token') return;
  const grantType = ctx.oidc.params?.grant_type ?? 'unknown';
  const ok = ctx.status === 200;
  bump(stats.token, grantType);
  if (!ok) {
    bump(stats.token_errors, grantType);
    if (grantType === 'refresh_token') stats.refresh_failures += 1;
  }
  log('token', {
    grant_type: grantType,
    client_id: ctx.oidc.client?.clientId,
    status: ctx.status,
    ok,
    error: ok ? undefined : ctx.body?.error,
    error_description: ok ? undefined : ctx.body?.error_description,
    error_detail: ok ? undefined : ctx.state.grantError?.error_detail,
  });
});

// ---- sign-in pages (the interaction) ----
provider.use(async (ctx, next) => {
  const m = ctx.path.match(/^\/interaction\/([^/]+)(?:\/(login|consent|abort))?$/);
  if (!m) return next();
  const [, uid, action] = m;
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  if (details.uid !== uid) throw new errors.SessionNotFound('interaction mismatch');
  const { prompt, params } = details;
  ctx.set('cache-control', 'no-store');

  if (!action && ctx.method === 'GET') {
    ctx.type = 'html';
    if (prompt.name === 'login') {
      ctx.body = loginPage(uid, params.client_id);
      return undefined;
    }
    if (consentMode === 'auto') return finishConsent(ctx, details);
    ctx.body = consentPage(uid, params.client_id, String(params.scope ?? '').split(' '));
    return undefined;
  }
  if (ctx.method !== 'POST') return next();

  if (action === 'login') {
    const form = await readForm(ctx.req);
    const login = form.get('login') ?? '';
    const user = Object.hasOwn(users, login) ? users[login] : undefined;
    if (!user || user.password !== form.get('password')) {
      log('login', { ok: false, login });
      ctx.type = 'html';
      ctx.body = loginPage(uid, params.client_id, 'Invalid username or password.');
      return undefined;
    }
    log('login', { ok: true, login });
    return finish(ctx, { login: { accountId: login } });
  }
  if (action === 'consent') return finishConsent(ctx, details);
  if (action === 'abort') return finish(ctx, { error: 'access_denied', error_description: 'End-User denied the request' });
  return next();
});

async function finishConsent(ctx, details) {
  const { prompt: { details: missing }, params, session, grantId } = details;
  const grant = grantId
    ? await provider.Grant.find(grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  return finish(ctx, { consent: { grantId: await grant.save() } });
}

async function finish(ctx, result) {
  const to = await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: true });
  ctx.status = 303;
  ctx.redirect(to);
}

// ---- test-only hooks ----
provider.use(async (ctx, next) => {
  if (!ctx.path.startsWith('/test/')) return next();
  ctx.set('cache-control', 'no-store');
  if (ctx.path === '/test/stats' && ctx.method === 'GET') {
    ctx.body = stats;
    return undefined;
  }
  if (ctx.path === '/test/logout' && ctx.method === 'POST') {
    ctx.body = await logoutUser(ctx.query.sub, ctx.query.revoke === 'all');
    return undefined;
  }
  ctx.status = 404;
  ctx.body = { error: 'no such test hook' };
  return undefined;
});

// What the end_session confirm step does with "sign out of everything" (end_session.js),
// for every session of `sub`, without a browser: a logout token to each client with a
// backchannel_logout_uri, its grants revoked unless they are offline_access ones (as the
// provider does; revokeAll=true revokes those too), the session deleted.
async function logoutUser(sub, revokeAll) {
  const sessions = new MemoryAdapter('Session');
  const out = { sub, sessions: 0, backchannel: [], revoked_grants: [] };
  for (const [id, { payload }] of [...sessions.items]) {
    if (payload.accountId !== sub) continue;
    out.sessions += 1;
    for (const [clientId, auth] of Object.entries(payload.authorizations ?? {})) {
      const client = await provider.Client.find(clientId);
      if (client?.backchannelLogoutUri) {
        try {
          await client.backchannelLogout(sub, auth.sid);
          provider.emit('backchannel.success', undefined, client, sub, auth.sid);
          out.backchannel.push({ client_id: clientId, sid: auth.sid, ok: true });
        } catch (err) {
          provider.emit('backchannel.error', undefined, err, client, sub, auth.sid);
          out.backchannel.push({ client_id: clientId, sid: auth.sid, ok: false, error: String(err.message) });
        }
      }
      if (auth.grantId && (revokeAll || !auth.persistsLogout)) {
        await revokeGrant(auth.grantId);
        out.revoked_grants.push(auth.grantId);
      }
    }
    await sessions.destroy(id);
  }
  log('test_logout', out);
  return out;
}

server.on('request', provider.callback());
process.stdout.write(`${JSON.stringify({ issuer, port })}\n`);
log('listening', { issuer, port, clients: clients.map((c) => c.client_id) });

// ---- lifetime: stdin EOF (the parent went away) or a signal ends the process ----
const stop = (why) => {
  log('exit', { why });
  process.exit(0);
};
process.stdin.on('end', () => stop('stdin closed'));
process.stdin.on('error', () => stop('stdin error'));
process.stdin.resume();
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
