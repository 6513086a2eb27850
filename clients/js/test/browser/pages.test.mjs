// The demo page and the React example in real headless Chromium, served by
// a real `firegate dev`.
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { startDev, waitFor } from '../helpers/dev.mjs';
import { withBrowser } from '../helpers/browser.mjs';

let dev;
before(async () => {
  dev = await startDev();
});
after(async () => {
  await dev?.stop();
});

const uniq = () => Math.random().toString(36).slice(2, 8);

/** The tasks the React example shows: [{id, org, pending, title}]. */
function rows(page) {
  return page.$$eval('[data-testid=tasks] li', (lis) =>
    lis.map((li) => ({ id: li.dataset.id, org: li.dataset.org, pending: li.dataset.pending === 'true', title: li.querySelector('.title')?.textContent })));
}

async function text(page, testid) {
  return (await page.textContent(`[data-testid=${testid}]`)) ?? '';
}

test('React example: sign in as a member, see the org\'s tasks, create one (pending, then confirmed) and see it in a second tab', async () => {
  await withBrowser('react-create', async (ctx) => {
    const tab1 = await ctx.newPage();
    await tab1.goto(`${dev.base}/react/`);
    await tab1.waitForSelector('[data-testid=sign-in] option[value=user_bob]', { state: 'attached' });
    await tab1.selectOption('[data-testid=sign-in]', 'user_bob');
    await waitFor(async () => (await text(tab1, 'status')) === 'ready' && (await rows(tab1)).length > 0, 'bob\'s tasks');
    const seen = await rows(tab1);
    assert.ok(seen.every((r) => r.org === 'org_acme'), 'only acme tasks');
    // The second tab of the same user (same session, as with Clerk).
    const tab2 = await ctx.newPage();
    await tab2.goto(`${dev.base}/react/?user=user_bob&org=org_acme`);
    await waitFor(async () => (await rows(tab2)).length === seen.length, 'the second tab\'s tasks');

    // Record every pending state tab 1 shows for the new task.
    await tab1.evaluate(() => {
      window.__pending = [];
      new MutationObserver(() => {
        for (const li of document.querySelectorAll('[data-testid=tasks] li')) {
          window.__pending.push([li.querySelector('.title')?.textContent, li.dataset.pending]);
        }
      }).observe(document.body, { subtree: true, childList: true, attributes: true });
    });
    const title = `browser-${uniq()}`;
    await tab1.fill('[data-testid=new-title]', title);
    await tab1.click('[data-testid=add]');
    await waitFor(async () => (await rows(tab1)).some((r) => r.title === title && !r.pending), 'confirmed in tab 1');
    const states = (await tab1.evaluate(() => window.__pending)).filter(([t]) => t === title).map(([, p]) => p);
    assert.equal(states[0], 'true', 'shown pending first');
    assert.equal(states.at(-1), 'false', 'then confirmed');
    await waitFor(async () => (await rows(tab2)).some((r) => r.title === title && !r.pending && r.org === 'org_acme'), 'the task in tab 2');
  });
});

test('React example: an org switch shows the other org\'s data only', async () => {
  await withBrowser('react-org-switch', async (ctx) => {
    const page = await ctx.newPage();
    await page.goto(`${dev.base}/react/?user=user_dave&org=org_acme`);
    await waitFor(async () => (await text(page, 'status')) === 'ready' && (await rows(page)).length > 0, 'acme tasks');
    assert.ok((await rows(page)).every((r) => r.org === 'org_acme'));
    await page.evaluate(() => {
      window.__orgs = new Set();
      new MutationObserver(() => {
        for (const li of document.querySelectorAll('[data-testid=tasks] li')) window.__orgs.add(li.dataset.org);
      }).observe(document.body, { subtree: true, childList: true, attributes: true });
    });
    await page.selectOption('[data-testid=org]', 'org_globex');
    await waitFor(async () => {
      const r = await rows(page);
      return (await text(page, 'status')) === 'ready' && r.length > 0 && r.every((x) => x.org === 'org_globex');
    }, 'globex tasks only');
    const orgs = await page.evaluate(() => [...window.__orgs]);
    assert.deepEqual(orgs, ['org_globex'], 'no acme task was rendered after the switch');
  });
});

test('React example: a reload renders from the cache before the socket is up', async () => {
  await withBrowser('react-reload', async (ctx) => {
    const page = await ctx.newPage();
    await page.addInitScript(() => {
      const Native = window.WebSocket;
      window.__events = [];
      window.WebSocket = class extends Native {
        constructor(...a) {
          super(...a);
          window.__events.push(['socket', performance.now()]);
        }
      };
      new MutationObserver(() => {
        if (!window.__firstRow && document.querySelector('[data-testid=tasks] li')) {
          window.__firstRow = true;
          window.__events.push(['row', performance.now(), document.querySelector('[data-testid=status]')?.textContent]);
        }
      }).observe(document, { subtree: true, childList: true });
    });
    await page.goto(`${dev.base}/react/?user=user_bob&org=org_acme`);
    await waitFor(async () => (await text(page, 'status')) === 'ready' && (await rows(page)).length > 0, 'live tasks');
    const before = await rows(page);
    // Let IndexedDB settle: the stored row count matches what is shown.
    await waitFor(() => page.evaluate(() => new Promise((res) => {
      const r = indexedDB.open('firegate');
      r.onsuccess = () => {
        const q = r.result.transaction('targets').objectStore('targets').getAll();
        q.onsuccess = () => res(q.result.map((x) => x.v.docs.length));
      };
    })).then((lens) => lens.includes(before.length)), 'the persisted snapshot');
    await page.reload();
    await waitFor(async () => (await text(page, 'status')) === 'ready', 'live again');
    const events = await page.evaluate(() => window.__events);
    const row = events.find((e) => e[0] === 'row');
    const socket = events.find((e) => e[0] === 'socket');
    assert.ok(row, 'rows rendered');
    assert.ok(socket, 'a socket was opened');
    assert.ok(row[1] < socket[1], `rows rendered before the socket was made: ${JSON.stringify(events)}`);
    assert.equal(row[2], 'loading (cache)', 'from the cache');
  });
});

test('ten tabs hold one connection (firegate_connections_active on the admin address)', async () => {
  await waitFor(async () => (await dev.metric('firegate_connections_active')) === 0, 'no connections left from earlier tests');
  await withBrowser('ten-tabs', async (ctx) => {
    const pages = [];
    for (let i = 0; i < 10; i++) {
      const p = await ctx.newPage();
      await p.goto(`${dev.base}/react/?user=user_bob&org=org_acme`);
      pages.push(p);
    }
    for (const [i, p] of pages.entries()) {
      await waitFor(async () => (await text(p, 'status')) === 'ready' && (await rows(p)).length > 0, `tab ${i} ready`);
    }
    assert.equal(await dev.metric('firegate_connections_active'), 1, 'one connection for ten tabs');
    // The leader tab goes away: another takes over, still one connection, tabs stay live.
    await pages[0].close();
    const title = `after-failover-${uniq()}`;
    await dev.docs.create('tasks', { org_id: 'org_acme', title, status: 'open', visibility: 'public', created_at: { $time: 'now' } });
    for (const [i, p] of pages.slice(1).entries()) {
      await waitFor(async () => (await rows(p)).some((r) => r.title === title), `tab ${i + 1} live after the leader left`);
    }
    await waitFor(async () => (await dev.metric('firegate_connections_active')) === 1, 'one connection after the failover');
  });
});

test('demo page: connect as a member, subscribe, add a task through the write path', async () => {
  await withBrowser('demo', async (ctx) => {
    const page = await ctx.newPage();
    await page.goto(`${dev.base}/`);
    await page.waitForSelector('#user option[value=user_bob]', { state: 'attached' });
    await page.selectOption('#user', 'user_bob');
    await page.click('#connect');
    await waitFor(async () => (await page.textContent('#conn-state')) === 'ready', 'connected');
    await page.selectOption('#collection', 'tasks');
    await page.click('#subscribe');
    await waitFor(async () => (await page.$$('#table tbody tr')).length > 0, 'rows');
    const orgs = await page.$$eval('#table tbody tr', (trs) => trs.map((tr) => tr.textContent));
    assert.ok(orgs.every((t) => t.includes('org_acme') && !t.includes('org_globex')));
    const title = `demo-${uniq()}`;
    await page.fill('#new-title', title);
    await page.click('#add');
    await waitFor(async () => {
      const trs = await page.$$eval('#table tbody tr', (x) => x.map((tr) => [tr.textContent, tr.dataset.pending]));
      return trs.some(([t, p]) => t.includes(title) && p === 'false');
    }, 'the new task, confirmed');
    assert.equal(await page.isVisible('#notice'), false, 'no error shown');
  });
});
