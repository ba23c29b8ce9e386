// Back-channel logout through two gates sharing Redis, in headless Chromium
// (tests/it/login/backchannel_replicas.rs starts Redis, the provider and the gates; the
// provider's client has backchannel_logout_uri = GATE_A/.jwtgate/backchannel-logout).
// The browser signs in through gate A, uses gate B with the same cookie (cookies are per
// host, not per port), then signs out at the provider (its end_session page, "sign out of
// everything"): the provider posts a logout token to gate A, and gate B must refuse the
// cookie within LIMIT_MS. Environment:
//   GATE_A, GATE_B     the two gates (login.external_url of each)
//   ISSUER             the provider (provider.mjs, consent "auto")
//   LOGIN_USER, LOGIN_PASSWORD
//   LIMIT_MS           how long B may take to refuse the cookie
//
//   node tests/browser/browser.mjs tests/browser/scenarios/backchannel.mjs
const SESSION_COOKIE = '__Host-jwtgate';

export async function run({ browser, page, env, assert, log }) {
  const a = env.GATE_A;
  const b = env.GATE_B;
  const limit = Number(env.LIMIT_MS ?? 3000);
  const echo = async (p) => JSON.parse(await p.evaluate(() => (document.querySelector('pre') ?? document.body).innerText));
  const header = (e, name) => (e.headers.find(([n]) => n.toLowerCase() === name) ?? [])[1];
  const status = (p, path) => p.evaluate(async (u) => (await fetch(u, { redirect: 'manual' })).status, path);

  // 1. Sign in through A.
  await page.goto(`${a}/app/page?from=a`);
  await page.waitForSelector('#login');
  await page.type('#login', env.LOGIN_USER);
  await page.type('#password', env.LOGIN_PASSWORD);
  await Promise.all([page.waitForNavigation(), page.click('#submit')]);
  assert.equal(page.url(), `${a}/app/page?from=a`, 'back on A');
  assert.equal(header(await echo(page), 'x-auth-user'), env.LOGIN_USER, 'A served the user');

  // 2. The same browser on B: the same cookie, signed in there too.
  const probe = await browser.newPage();
  await probe.goto(`${b}/app/on-b`);
  assert.equal(header(await echo(probe), 'x-auth-user'), env.LOGIN_USER, 'B served the user');
  assert.equal(await status(probe, '/app/poll'), 200, 'a script on B');
  const cookies = (await page.cookies(a)).filter((c) => c.name.startsWith(SESSION_COOKIE));
  assert.ok(cookies.length > 0, 'no session cookie');
  const cookieHeader = cookies.map((c) => `${c.name}=${c.value}`).join('; ');

  // 3. Sign out at the provider: its confirmation page, "sign out of everything".
  // (The first tab again: a click in a background tab is not delivered.)
  await page.bringToFront();
  await page.goto(`${env.ISSUER}/session/end`);
  await page.waitForSelector('#logout');
  const clicked = Date.now();
  await Promise.all([page.waitForNavigation(), page.click('#logout')]);
  // The provider answers once gate A has answered its logout token.
  const answered = Date.now();
  log('signed out at the provider:', page.url());

  // 4. B refuses the cookie: a script's request there gets 401.
  let polls = 0;
  let refusedAt;
  for (;;) {
    polls += 1;
    const s = await status(probe, '/app/poll');
    if (s !== 200) {
      refusedAt = Date.now();
      assert.equal(s, 401, `B answered ${s}`);
      break;
    }
    assert.ok(Date.now() - answered < limit, `B still accepts the session ${limit} ms after the provider's logout (${polls} polls)`);
    await new Promise((r) => { setTimeout(r, 10); });
  }
  // A too, and a navigation on B is sent to sign in again (at the provider: asks for the password).
  const onA = await browser.newPage();
  await onA.goto(`${a}/public/probe`);
  assert.equal(await status(onA, '/app/poll'), 401, 'A after the logout');
  await probe.goto(`${b}/app/again`);
  await probe.waitForSelector('#login');
  assert.ok(probe.url().startsWith(`${env.ISSUER}/`), `B sent the browser to ${probe.url()}`);
  return {
    cookie: cookieHeader,
    after_provider_ms: refusedAt - answered,
    after_click_ms: refusedAt - clicked,
    polls,
  };
}
