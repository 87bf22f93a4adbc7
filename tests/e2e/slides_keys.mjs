// Opens a slide deck in Debian's Chromium through playwright-core (installed
// by `make deps` into build/node) and presses real keys, as a person would.
//
//   node tests/e2e/slides_keys.mjs DECK.html [--hash N] KEY...
//
// KEY is a Playwright key name: ArrowRight, PageDown, Space, Shift+Space,
// Home, End, Alt+ArrowLeft... Prints one JSON line for the page as loaded and
// one after each key: the key, the ids of the slides a person can see, the
// slide marked active, the counter text and the URL fragment.
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, '../../build/node/package.json'));
const { chromium } = require('playwright-core');

const args = process.argv.slice(2);
const deck = args.shift();
let hash = '';
if (args[0] === '--hash') { args.shift(); hash = '#' + args.shift(); }
if (!deck) {
  console.error('usage: slides_keys.mjs DECK.html [--hash N] KEY...');
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  // the tests have no wall-clock limits: wait as long as the machine needs
  timeout: 0,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
  page.setDefaultTimeout(0);
  await page.goto(pathToFileURL(path.resolve(deck)).href + hash, { waitUntil: 'load' });
  const state = () => page.evaluate(() => {
    const visible = [...document.querySelectorAll('section')]
      .filter((s) => s.getBoundingClientRect().height > 0 && getComputedStyle(s).display !== 'none')
      .map((s) => s.id);
    const active = [...document.querySelectorAll('section.slide.active')].map((s) => s.id);
    return { visible, active, counter: document.getElementById('counter').textContent, hash: location.hash };
  });
  console.log(JSON.stringify({ key: null, ...(await state()) }));
  for (const key of args) {
    await page.keyboard.press(key);
    console.log(JSON.stringify({ key, ...(await state()) }));
  }
} finally {
  await browser.close();
}
