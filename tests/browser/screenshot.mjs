// A screenshot of a page (the README's pictures of the report and of the MLflow UI):
//   node screenshot.mjs URL OUT.png [--wait MS] [--width W] [--height H] [--full]
// Debian's Chromium through playwright-core, as check_report.mjs starts it.
import { chromium } from "playwright-core";

const [url, out, ...rest] = process.argv.slice(2);
const opt = (k, d) => (rest.includes(k) ? Number(rest[rest.indexOf(k) + 1]) : d);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"],
});
const page = await browser.newPage({ viewport: { width: opt("--width", 1400), height: opt("--height", 900) } });
await page.goto(url, { waitUntil: "networkidle" });
await page.waitForTimeout(opt("--wait", 1000));
await page.screenshot({ path: out, fullPage: rest.includes("--full") });
await browser.close();
