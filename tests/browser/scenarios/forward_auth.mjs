// Browser sign-in through nginx auth_request and jwtgate's forward-auth listener, in headless
// Chromium (tests/it/admin/forward_auth_nginx.rs starts the provider, the gate and nginx).
// nginx routes /.jwtgate/ to the gate's proxy listener and everything else through
// auth_request to the echo upstream. Environment:
//   SITE_URL         nginx (= login.external_url)
//   ISSUER           the provider (provider.mjs, consent "auto")
//   LOGIN_USER, LOGIN_PASSWORD
//   PROTECTED_PATH   a protected page with a query
//
//   node tests/browser/browser.mjs tests/browser/scenarios/forward_auth.mjs
const SESSION_COOKIE = '__Host-jwtgate';

export async function run({ page, env, assert, log }) {
  const site = env.SITE_URL;
  const protectedUrl = site + env.PROTECTED_PATH;
  const wanted = new URL(protectedUrl);
  const echo = async () => JSON.parse(await page.evaluate(() => (document.querySelector('pre') ?? document.body).innerText));
  const header = (e, name) => (e.headers.find(([n]) => n.toLowerCase() === name) ?? [])[1];
  const inPage = (path) => page.evaluate(async (p) => {
    const r = await fetch(p, { redirect: 'manual' });
    return { status: r.status, type: r.type, body: await r.text() };
  }, path);

  // 1. A protected page through nginx: nginx's 302 (from the gate's X-Jwtgate-Signin) to the
  //    gate's sign-in, which sends the browser to the provider.
  const hops = [];
  page.on('response', (r) => { if (r.url().startsWith(site)) hops.push(`${r.status()} ${r.url()}`); });
  await page.goto(protectedUrl);
  await page.waitForSelector('#login');
  log('hops:', hops.join(' | '));
  assert.ok(page.url().startsWith(`${env.ISSUER}/`), `expected the provider's sign-in page, at ${page.url()}`);
  assert.ok(hops[0]?.startsWith(`302 ${protectedUrl}`), `nginx did not redirect first: ${hops.join(' | ')}`);
  assert.ok(hops.some((h) => h.startsWith(`302 ${site}/.jwtgate/login?rd=`)), `no sign-in hop: ${hops.join(' | ')}`);
  await page.type('#login', env.LOGIN_USER);
  await page.type('#password', env.LOGIN_PASSWORD);
  await Promise.all([page.waitForNavigation(), page.click('#submit')]);
  log('after sign-in:', page.url());

  // 2. Back on the page, through nginx and the forward-auth listener, as the user.
  assert.equal(page.url(), protectedUrl, 'back on the original path with its query');
  const e1 = await echo();
  assert.equal(e1.path, wanted.pathname);
  assert.equal(e1.query, wanted.search.slice(1));
  assert.equal(header(e1, 'x-auth-user'), env.LOGIN_USER);
  const cookies = await page.cookies(site);
  const session = cookies.find((c) => c.name === SESSION_COOKIE);
  assert.ok(session, `no ${SESSION_COOKIE} cookie: ${JSON.stringify(cookies.map((c) => c.name))}`);
  assert.equal(session.httpOnly, true, 'HttpOnly');

  // 3. Page scripts: the API through auth_request, and the session endpoint through the
  //    proxy listener, both with the cookie Chromium keeps.
  const api = await inPage('/app/api?from=script');
  assert.equal(api.status, 200, api.body);
  assert.equal(header(JSON.parse(api.body), 'x-auth-user'), env.LOGIN_USER);
  const s = await inPage('/.jwtgate/session');
  assert.equal(s.status, 200, s.body);
  assert.equal(JSON.parse(s.body).user, env.LOGIN_USER);

  // 4. Without the cookie a script's request is a plain 401 (no redirect).
  await page.deleteCookie({ name: SESSION_COOKIE, url: site });
  const anon = await inPage('/app/api');
  assert.equal(anon.status, 401, `${anon.type} ${anon.status}: ${anon.body.slice(0, 200)}`);
  return { landed: protectedUrl, hops };
}
