// Browser sign-in through jwtgate, in headless Chromium (tests/it/login/browser.rs starts the
// provider and the gate). Environment:
//   GATE_URL         the gate (login.external_url)
//   ISSUER           the provider (provider.mjs, consent "auto")
//   LOGIN_USER, LOGIN_PASSWORD
//   PROTECTED_PATH   a protected page with a query, e.g. /app/page?x=1&y=2 (the upstream is
//                    the echo upstream: it answers JSON of what it received)
//   SIGNED_OUT_PATH  login.post_logout_redirect, on a route with auth = "none"
//
//   node tests/browser/browser.mjs tests/browser/scenarios/signin.mjs
const SESSION_COOKIE = '__Host-jwtgate';

export async function run({ browser, page, env, assert, log }) {
  const gate = env.GATE_URL;
  const protectedUrl = gate + env.PROTECTED_PATH;
  const wanted = new URL(protectedUrl);
  const bodyText = () => page.evaluate(() => document.body?.innerText ?? '');
  const echo = async () => JSON.parse(await page.evaluate(() => (document.querySelector('pre') ?? document.body).innerText));
  const header = (e, name) => (e.headers.find(([n]) => n.toLowerCase() === name) ?? [])[1];
  // The gate's own pages forbid scripts to connect (CSP): ask from another tab.
  const sessionStatus = async () => {
    const probe = await browser.newPage();
    try {
      return (await probe.goto(`${gate}/.jwtgate/session`)).status();
    } finally {
      await probe.close();
    }
  };
  const inPage = (path, init) => page.evaluate(async (p, i) => {
    const r = await fetch(p, i);
    return { status: r.status, type: r.type, body: await r.text() };
  }, path, init ?? {});

  // 1. A protected page: the gate sends the browser to the provider's sign-in page.
  await page.goto(protectedUrl);
  await page.waitForSelector('#login');
  assert.ok(page.url().startsWith(`${env.ISSUER}/`), `expected the provider's sign-in page, at ${page.url()}`);
  await page.type('#login', env.LOGIN_USER);
  await page.type('#password', env.LOGIN_PASSWORD);
  await Promise.all([page.waitForNavigation(), page.click('#submit')]);
  log('after sign-in:', page.url());

  // 2. Back on the original page, query and all; the upstream served it to the user.
  assert.equal(page.url(), protectedUrl, 'back on the original path with its query');
  const e1 = await echo();
  assert.equal(e1.path, wanted.pathname);
  assert.equal(e1.query, wanted.search.slice(1));
  assert.equal(header(e1, 'x-auth-user'), env.LOGIN_USER);
  const upstreamCookies = header(e1, 'cookie') ?? '';
  assert.ok(!upstreamCookies.includes('__Host-'), `the upstream got the gate's cookies: ${upstreamCookies}`);

  // The session cookie as Chromium keeps it.
  const cookies = await page.cookies(gate);
  const session = cookies.find((c) => c.name === SESSION_COOKIE);
  assert.ok(session, `no ${SESSION_COOKIE} cookie: ${JSON.stringify(cookies.map((c) => c.name))}`);
  assert.equal(session.httpOnly, true, 'HttpOnly');
  assert.equal(session.secure, true, 'Secure');
  assert.equal(session.sameSite, 'Lax', 'SameSite=Lax');
  assert.equal(session.path, '/', 'Path=/');
  assert.equal(await page.evaluate(() => document.cookie.includes('__Host-jwtgate')), false, 'script can read the session cookie');

  // 3. Page scripts: /.jwtgate/session and the API, with the session.
  const s = await inPage('/.jwtgate/session');
  assert.equal(s.status, 200, s.body);
  const sj = JSON.parse(s.body);
  assert.equal(sj.user, env.LOGIN_USER);
  assert.equal(typeof sj.expires_at, 'number');
  assert.equal(sj.claims.sub, env.LOGIN_USER);
  const api = await inPage('/app/api?from=script');
  assert.equal(api.status, 200, api.body);
  assert.equal(header(JSON.parse(api.body), 'x-auth-user'), env.LOGIN_USER);

  // 4. GET /.jwtgate/logout only shows a form: still signed in a while later.
  const form = await page.goto(`${gate}/.jwtgate/logout`);
  assert.equal(form.status(), 200);
  await new Promise((r) => { setTimeout(r, 700); });
  assert.equal(page.url(), `${gate}/.jwtgate/logout`, 'the logout page went somewhere by itself');
  assert.equal(await sessionStatus(), 200, 'GET /.jwtgate/logout signed out by itself');

  // 5. Sign out with the form: the gate, the provider's confirmation, back to SIGNED_OUT_PATH.
  const submit = await page.$('form[method="post" i] button, form[method="post" i] [type="submit"]');
  const [posted] = await Promise.all([
    page.waitForNavigation(),
    submit ? submit.click() : page.$eval('form[method="post" i]', (f) => f.submit()),
  ]);
  log('after the logout form:', posted?.status(), page.url());
  assert.ok(
    page.url().startsWith(`${env.ISSUER}/`),
    `the logout form did not lead to the provider: ${posted?.status()} at ${page.url()}: ${(await bodyText()).slice(0, 300)}`,
  );
  await page.waitForSelector('#logout');
  assert.ok(page.url().startsWith(`${env.ISSUER}/session/end`), `expected the provider's logout page, at ${page.url()}`);
  await Promise.all([page.waitForNavigation(), page.click('#logout')]);
  const out = new URL(page.url());
  assert.equal(out.origin + out.pathname, gate + env.SIGNED_OUT_PATH, `signed out to ${page.url()}`);
  assert.ok(out.searchParams.get('state'), 'the provider returned a state');
  const e2 = await echo();
  assert.equal(header(e2, 'x-auth-user'), undefined, 'a user after sign-out');
  assert.equal((await inPage('/.jwtgate/session')).status, 401, '/.jwtgate/session after sign-out');
  const api2 = await inPage('/app/api', { redirect: 'manual' });
  assert.equal(api2.status, 401, `a fetch after sign-out: ${api2.type} ${api2.status} (401 expected, not a redirect)`);
  assert.equal((await page.cookies(gate)).some((c) => c.name === SESSION_COOKIE), false, 'the session cookie is still there');

  // 6. The history: going back to the protected page must not show it (no cache, no
  //    back/forward cache with the user's data; a new request goes to sign in).
  const cdp = await page.createCDPSession();
  const { entries } = await cdp.send('Page.getNavigationHistory');
  const entry = entries.find((en) => en.url === protectedUrl);
  assert.ok(entry, `no history entry for ${protectedUrl}: ${entries.map((en) => en.url).join(' ')}`);
  const moved = page.waitForNavigation({ timeout: 10_000 }).catch(() => null);
  await cdp.send('Page.navigateToHistoryEntry', { entryId: entry.id });
  await moved;
  await page.waitForNetworkIdle({ idleTime: 300, timeout: 5_000 }).catch(() => null);
  const back = await bodyText();
  log('after history navigation:', page.url());
  assert.ok(
    !back.toLowerCase().includes('x-auth-user'),
    `the history showed the protected page after sign-out, at ${page.url()}: ${back.slice(0, 300)}`,
  );
  return { landed: protectedUrl, signed_out: out.href, back: page.url() };
}
