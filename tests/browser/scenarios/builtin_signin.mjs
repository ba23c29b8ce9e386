// The gate's own sign-in page (login.provider = "builtin") in headless Chromium, with
// JavaScript off for the whole sign-in (the page is a plain form): a protected page sends
// the browser to the form, a wrong password shows the form again with a message (401), the
// right one lands on the protected page, served by the upstream to the user.
// tests/it/login/builtin.rs starts the gate. Environment:
//   GATE_URL         the gate (login.external_url)
//   LOGIN_USER, LOGIN_PASSWORD
//   PROTECTED_PATH   a protected page with a query (the echo upstream answers JSON)
//   PAGE_TITLE       login.page_title
//
//   node tests/browser/browser.mjs tests/browser/scenarios/builtin_signin.mjs
const SESSION_COOKIE = '__Host-jwtgate';

export async function run({ page, env, assert, log }) {
  const gate = env.GATE_URL;
  const target = gate + env.PROTECTED_PATH;
  await page.setJavaScriptEnabled(false);

  // 1. The protected page: sent to the gate's own form, with the return path.
  const first = await page.goto(target);
  const at = new URL(page.url());
  assert.equal(at.origin + at.pathname, `${gate}/.jwtgate/login`, `at ${page.url()}`);
  assert.equal(at.searchParams.get('rd'), env.PROTECTED_PATH);
  assert.equal(first.status(), 200);
  assert.equal(await page.title(), env.PAGE_TITLE);
  assert.ok(first.headers()['content-security-policy'].startsWith("default-src 'none'"));
  assert.equal(await page.$('#error'), null, 'an error before any attempt');

  // 2. A wrong password: the form again, 401, one message, no session.
  await page.type('#username', env.LOGIN_USER);
  await page.type('#password', 'not-the-password');
  const [wrong] = await Promise.all([page.waitForNavigation(), page.click('#submit')]);
  assert.equal(wrong.status(), 401);
  assert.equal(page.url(), `${gate}/.jwtgate/login`);
  const message = await page.$eval('#error', (e) => e.textContent);
  assert.match(message, /user name or password is incorrect/);
  assert.equal((await page.cookies(gate)).some((c) => c.name === SESSION_COOKIE), false, 'a session after a wrong password');
  assert.equal(await page.$eval('#username', (e) => e.value), '', 'the form echoes the user name');

  // 3. The right password: back on the protected page, served to the user.
  await page.type('#username', env.LOGIN_USER);
  await page.type('#password', env.LOGIN_PASSWORD);
  const [landed] = await Promise.all([page.waitForNavigation(), page.click('#submit')]);
  log('after sign-in:', page.url());
  assert.equal(page.url(), target, 'back on the protected page');
  assert.equal(landed.status(), 200);
  const echo = JSON.parse(await landed.text());
  assert.equal(echo.path, new URL(target).pathname);
  const user = (echo.headers.find(([n]) => n.toLowerCase() === 'x-auth-user') ?? [])[1];
  assert.equal(user, env.LOGIN_USER);
  const session = (await page.cookies(gate)).find((c) => c.name === SESSION_COOKIE);
  assert.ok(session && session.httpOnly && session.secure, 'the session cookie');
  return { landed: page.url() };
}
