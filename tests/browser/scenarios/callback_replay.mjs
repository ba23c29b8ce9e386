// A callback URL replayed, in headless Chromium (tests/it/login/browser.rs starts the provider
// and the gate). The browser signs in and its callback URL (code, state, iss) is noted; a
// fresh browser (another browser context: no cookies) that opens it gets a 400, no session
// cookie, and is still sent to sign in; the first browser opening it again gets a 400 too.
// Environment: GATE_URL, ISSUER, LOGIN_USER, LOGIN_PASSWORD.
//
//   node tests/browser/browser.mjs tests/browser/scenarios/callback_replay.mjs
const SESSION_COOKIE = '__Host-jwtgate';

export async function run({ browser, page, env, assert, onCleanup }) {
  const gate = env.GATE_URL;
  const target = `${gate}/app/inbox?folder=1`;
  let callback;
  page.on('request', (req) => {
    if (req.url().startsWith(`${gate}/.jwtgate/callback`)) callback = req.url();
  });

  // Sign in, noting the callback URL on the way.
  await page.goto(target);
  await page.waitForSelector('#login');
  await page.type('#login', env.LOGIN_USER);
  await page.type('#password', env.LOGIN_PASSWORD);
  await Promise.all([page.waitForNavigation(), page.click('#submit')]);
  assert.equal(page.url(), target, 'signed in and back');
  assert.ok(callback, 'no request to /.jwtgate/callback was seen');
  const cb = new URL(callback);
  for (const k of ['code', 'state', 'iss']) assert.ok(cb.searchParams.get(k), `no ${k} in ${callback}`);

  // A fresh browser opens the callback URL: refused, no session, still sent to sign in.
  const fresh = await browser.createBrowserContext();
  onCleanup(() => fresh.close());
  const other = await fresh.newPage();
  const replay = await other.goto(callback);
  assert.equal(replay.status(), 400, `a fresh browser replaying the callback got ${replay.status()}`);
  const text = await other.evaluate(() => document.body?.innerText ?? '');
  assert.ok(!text.toLowerCase().includes('x-auth-user'), `protected content: ${text.slice(0, 300)}`);
  assert.equal((await other.cookies(gate)).some((c) => c.name === SESSION_COOKIE), false, 'the replay set a session cookie');
  await other.goto(target);
  await other.waitForSelector('#login');
  assert.ok(other.url().startsWith(`${env.ISSUER}/`), `the fresh browser is not sent to sign in: ${other.url()}`);
  const session = await other.goto(`${gate}/.jwtgate/session`);
  assert.equal(session.status(), 401, 'the fresh browser has a session');

  // The browser that used it opens it again: refused as well.
  const again = await page.goto(callback);
  assert.equal(again.status(), 400, `the same browser replaying its callback got ${again.status()}`);
  return { callback: `${cb.origin}${cb.pathname}` };
}
