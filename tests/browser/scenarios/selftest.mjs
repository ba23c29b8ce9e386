// Self-test of provider.mjs and browser.mjs without jwtgate: this scenario plays the
// relying party itself. It runs the authorization code flow with PKCE in headless
// Chromium, exchanges the code, shows refresh token rotation and reuse detection,
// revocation, and the two logouts (the test hook with back-channel logout, then
// RP-initiated logout). Each step asserts, so a provider that drifts fails it.
//
//   node tests/browser/browser.mjs tests/browser/scenarios/selftest.mjs
import crypto from 'node:crypto';
import http from 'node:http';

const b64url = (buf) => Buffer.from(buf).toString('base64url');
const decodeJwt = (jwt) => {
  const [h, p] = jwt.split('.');
  return { header: JSON.parse(Buffer.from(h, 'base64url')), payload: JSON.parse(Buffer.from(p, 'base64url')) };
};

// The relying party's HTTP side: the redirect target, the back-channel logout endpoint and
// the post-logout page. Tests wait on `next(path)` for the next request to a path.
async function startRelyingParty(onCleanup) {
  const waiters = new Map();
  const seen = new Map();
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    let body = '';
    for await (const chunk of req) body += chunk;
    const hit = { url, body: new URLSearchParams(body), method: req.method };
    if (waiters.has(url.pathname)) waiters.get(url.pathname).shift()?.(hit);
    else seen.set(url.pathname, [...(seen.get(url.pathname) ?? []), hit]);
    if (url.pathname === '/backchannel') { res.writeHead(200).end(); return; }
    res.writeHead(200, { 'content-type': 'text/html' }).end(`<p id="rp">${url.pathname}</p>`);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  onCleanup(() => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }));
  const base = `http://127.0.0.1:${server.address().port}`;
  const next = (pathname, timeoutMs = 15_000) => {
    const queued = seen.get(pathname);
    if (queued?.length) return Promise.resolve(queued.shift());
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no request to ${base}${pathname}`)), timeoutMs);
      if (!waiters.has(pathname)) waiters.set(pathname, []);
      waiters.get(pathname).push((hit) => { clearTimeout(timer); resolve(hit); });
    });
  };
  return { base, next };
}

export async function run({ page, assert, startProvider, onCleanup }) {
  const rp = await startRelyingParty(onCleanup);
  const client = {
    client_id: 'selftest',
    client_secret: 'selftest-secret',
    redirect_uris: [`${rp.base}/callback`],
    post_logout_redirect_uris: [`${rp.base}/signed-out`],
    backchannel_logout_uri: `${rp.base}/backchannel`,
    backchannel_logout_session_required: true,
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  };
  const op = await startProvider({
    clients: [client],
    users: { alice: { password: 'wonderland', email: 'alice@example.test', name: 'Alice', groups: ['admins'] } },
    accessTokenTTL: 5,
    idTokenTTL: 5,
    refreshTokenTTL: 30,
    consent: 'form',
  });
  const disco = await op.discovery();
  assert.equal(disco.issuer, op.issuer);
  assert.equal(disco.authorization_response_iss_parameter_supported, true);
  assert.deepEqual(disco.code_challenge_methods_supported, ['S256']);
  assert.equal(disco.backchannel_logout_supported, true);
  assert.ok(disco.end_session_endpoint, 'end_session_endpoint');
  assert.ok(disco.revocation_endpoint, 'revocation_endpoint');

  const basic = `Basic ${Buffer.from(`${client.client_id}:${client.client_secret}`).toString('base64')}`;
  const token = async (params) => {
    const res = await fetch(disco.token_endpoint, {
      method: 'POST',
      headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(params),
    });
    return { status: res.status, body: await res.json() };
  };
  const authorize = (extra) => {
    const verifier = b64url(crypto.randomBytes(32));
    const req = {
      verifier,
      state: b64url(crypto.randomBytes(16)),
      nonce: b64url(crypto.randomBytes(16)),
    };
    req.url = `${disco.authorization_endpoint}?${new URLSearchParams({
      response_type: 'code',
      client_id: client.client_id,
      redirect_uri: client.redirect_uris[0],
      scope: 'openid email profile groups offline_access',
      state: req.state,
      nonce: req.nonce,
      code_challenge: b64url(crypto.createHash('sha256').update(verifier).digest()),
      code_challenge_method: 'S256',
      ...extra,
    })}`;
    return req;
  };
  const signIn = async (password) => {
    await page.waitForSelector('#login');
    await page.type('#login', 'alice');
    await page.type('#password', password);
    await Promise.all([page.waitForNavigation(), page.click('#submit')]);
  };

  // 1. Without PKCE the provider refuses (it must be required, not only offered).
  const noPkce = new URL(authorize({ prompt: 'consent' }).url);
  noPkce.searchParams.delete('code_challenge');
  noPkce.searchParams.delete('code_challenge_method');
  const refused = rp.next('/callback');
  await page.goto(noPkce.href);
  const refusal = (await refused).url.searchParams;
  assert.equal(refusal.get('error'), 'invalid_request');
  assert.match(refusal.get('error_description'), /PKCE/);

  // 2. Sign in through the form: a wrong password first, then the right one, then consent.
  const auth = authorize({ prompt: 'consent' });
  await page.goto(auth.url);
  await signIn('not-the-password');
  await page.waitForSelector('#error');
  await signIn('wonderland');
  await page.waitForSelector('#consent');
  const callback = rp.next('/callback');
  await Promise.all([page.waitForNavigation(), page.click('#consent')]);
  const cb = (await callback).url.searchParams;
  assert.equal(page.url().split('?')[0], client.redirect_uris[0]);
  assert.ok(cb.get('code'), 'code in the redirect');
  assert.equal(cb.get('state'), auth.state);
  assert.equal(cb.get('iss'), op.issuer, 'RFC 9207 iss in the authorization response');

  // 3. The code for tokens; a wrong verifier fails, and that burns nothing (the code stays valid).
  const bad = await token({ grant_type: 'authorization_code', code: cb.get('code'), redirect_uri: client.redirect_uris[0], code_verifier: b64url(crypto.randomBytes(32)) });
  assert.equal(bad.status, 400);
  assert.equal(bad.body.error, 'invalid_grant');
  const t1 = await token({ grant_type: 'authorization_code', code: cb.get('code'), redirect_uri: client.redirect_uris[0], code_verifier: auth.verifier });
  assert.equal(t1.status, 200, JSON.stringify(t1.body));
  for (const k of ['id_token', 'access_token', 'refresh_token']) assert.equal(typeof t1.body[k], 'string', k);
  assert.equal(t1.body.access_token.split('.').length, 3, 'access token is a JWT');
  const id = decodeJwt(t1.body.id_token).payload;
  assert.equal(id.iss, op.issuer);
  assert.equal(id.aud, client.client_id);
  assert.equal(id.sub, 'alice');
  assert.equal(id.nonce, auth.nonce);
  assert.equal(id.email, 'alice@example.test');
  assert.deepEqual(id.groups, ['admins']);
  assert.ok(id.sid, 'sid in the ID token (backchannel_logout_session_required)');
  assert.ok(id.exp - id.iat <= 5, 'idTokenTTL applies');

  // The access token: RS256, signed by a key from jwks_uri, for the configured audience.
  const at = decodeJwt(t1.body.access_token);
  assert.equal(at.header.alg, 'RS256');
  assert.equal(at.header.typ, 'at+jwt');
  assert.equal(at.payload.iss, op.issuer);
  assert.equal(at.payload.aud, 'urn:jwtgate:api');
  assert.equal(at.payload.sub, 'alice');
  assert.equal(at.payload.client_id, client.client_id);
  assert.equal(at.payload.email, 'alice@example.test');
  assert.equal(at.payload.exp - at.payload.iat, 5, 'accessTokenTTL applies');
  const { keys } = await (await fetch(disco.jwks_uri)).json();
  const jwk = keys.find((k) => k.kid === at.header.kid);
  assert.ok(jwk, 'the access token kid is in the JWKS');
  const [h, p, s] = t1.body.access_token.split('.');
  assert.ok(crypto.verify('RSA-SHA256', Buffer.from(`${h}.${p}`), crypto.createPublicKey({ key: jwk, format: 'jwk' }), Buffer.from(s, 'base64url')), 'access token signature verifies against the JWKS');

  // 4. Rotation: rt1 gives rt2; rt1 again is refused, and that revokes the grant, so rt2 is dead too.
  const r1 = await token({ grant_type: 'refresh_token', refresh_token: t1.body.refresh_token });
  assert.equal(r1.status, 200, JSON.stringify(r1.body));
  assert.notEqual(r1.body.refresh_token, t1.body.refresh_token, 'refresh token rotated');
  assert.equal(r1.body.access_token.split('.').length, 3);
  const reuse = await token({ grant_type: 'refresh_token', refresh_token: t1.body.refresh_token });
  assert.equal(reuse.status, 400);
  assert.equal(reuse.body.error, 'invalid_grant');
  const after = await token({ grant_type: 'refresh_token', refresh_token: r1.body.refresh_token });
  assert.equal(after.status, 400, 'the rotated token died with the grant');
  assert.equal(after.body.error, 'invalid_grant');

  const stats = await op.stats();
  assert.deepEqual(stats.token, { authorization_code: 2, refresh_token: 3 });
  assert.deepEqual(stats.token_errors, { authorization_code: 1, refresh_token: 2 });
  assert.equal(stats.refresh_failures, 2);
  // ...and the stderr log says why each refresh failed.
  const refreshLog = op.log.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l))
    .filter((e) => e.event === 'token' && e.grant_type === 'refresh_token');
  assert.deepEqual(refreshLog.map((e) => e.error_detail ?? 'ok'), ['ok', 'refresh token already used', 'refresh token not found']);

  // 5. The test hook ends alice's session and sends a logout token to the client.
  const bcl = rp.next('/backchannel');
  const out = await op.logout('alice');
  assert.equal(out.sessions, 1);
  assert.deepEqual(out.backchannel.map((b) => b.ok), [true], JSON.stringify(out));
  const logoutToken = decodeJwt((await bcl).body.get('logout_token')).payload;
  assert.equal(logoutToken.iss, op.issuer);
  assert.equal(logoutToken.aud, client.client_id);
  assert.equal(logoutToken.sub, 'alice');
  assert.equal(logoutToken.sid, id.sid);
  assert.ok(logoutToken.events['http://schemas.openid.net/event/backchannel-logout']);
  assert.equal(logoutToken.nonce, undefined);

  // 6. The session is gone: a new request asks for the password again. Then RP-initiated
  //    logout through the end_session_endpoint, which also sends a logout token.
  const auth2 = authorize({});
  const callback2 = rp.next('/callback');
  await page.goto(auth2.url);
  await signIn('wonderland');
  await Promise.all([page.waitForNavigation(), page.click('#consent')]); // a new grant
  const cb2 = (await callback2).url.searchParams;
  assert.equal(cb2.get('iss'), op.issuer);
  const t2 = await token({ grant_type: 'authorization_code', code: cb2.get('code'), redirect_uri: client.redirect_uris[0], code_verifier: auth2.verifier });
  assert.equal(t2.status, 200, JSON.stringify(t2.body));
  assert.equal(t2.body.refresh_token, undefined, 'no refresh token without offline_access consent');

  // Revocation, in the same provider session (so only the consent page): a revoked refresh
  // token is refused; a JWT access token cannot be revoked at all (it is self-contained).
  const auth3 = authorize({ prompt: 'consent' });
  const callback3 = rp.next('/callback');
  await page.goto(auth3.url);
  await Promise.all([page.waitForNavigation(), page.click('#consent')]);
  const t3 = await token({ grant_type: 'authorization_code', code: (await callback3).url.searchParams.get('code'), redirect_uri: client.redirect_uris[0], code_verifier: auth3.verifier });
  assert.ok(t3.body.refresh_token, JSON.stringify(t3.body));
  const revoke = (tok) => fetch(disco.revocation_endpoint, {
    method: 'POST',
    headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token: tok }),
  });
  assert.equal((await revoke(t3.body.refresh_token)).status, 200);
  assert.equal((await token({ grant_type: 'refresh_token', refresh_token: t3.body.refresh_token })).body.error, 'invalid_grant');
  assert.equal((await (await revoke(t3.body.access_token)).json()).error, 'unsupported_token_type');
  const bcl2 = rp.next('/backchannel');
  const signedOut = rp.next('/signed-out');
  await page.goto(`${disco.end_session_endpoint}?${new URLSearchParams({
    id_token_hint: t2.body.id_token,
    post_logout_redirect_uri: client.post_logout_redirect_uris[0],
    state: 'bye',
  })}`);
  await Promise.all([page.waitForNavigation(), page.click('#logout')]);
  assert.equal((await signedOut).url.searchParams.get('state'), 'bye');
  assert.equal(decodeJwt((await bcl2).body.get('logout_token')).payload.sub, 'alice');
  assert.equal((await op.stats()).end_session, 1);

  // 7. A second run of provider.mjs (what a mix-up test uses as the other, hostile,
  //    provider) is another issuer with another key: its JWKS must not verify our tokens.
  const other = await startProvider({ clients: [client], users: {} });
  const otherDisco = await other.discovery();
  assert.notEqual(otherDisco.issuer, op.issuer);
  const otherKeys = (await (await fetch(otherDisco.jwks_uri)).json()).keys;
  assert.ok(!otherKeys.some((k) => k.kid === jwk.kid || k.n === jwk.n), 'fresh key per run');

  return { issuer: op.issuer, other_issuer: other.issuer, token_calls: (await op.stats()).token };
}
