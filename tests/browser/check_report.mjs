// Loads a fool HTML report from disk in Debian's Chromium (headless, via playwright-core) and
// prints, as one JSON object, what rendered: per chart the marks drawn (by mark type), the
// gallery and browse blocks, the images, console errors and every network request. With
// --interact it also changes the first bench chart's attack filter and the first gallery's
// "only the fooled" box and reports the counts before and after. Usage:
//   node check_report.mjs REPORT.html [--screenshot OUT.png] [--sections DIR] [--interact]
// Chromium: $CHROMIUM or /usr/bin/chromium, started with no background networking and a fresh
// profile (playwright makes a new empty user-data-dir for every launch and removes it). Exit code 0 when the page loaded (the caller judges the numbers), 2 on failure.
import { chromium } from "playwright-core";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";

const args = process.argv.slice(2);
const file = resolve(args[0]);
const shot = args.includes("--screenshot") ? args[args.indexOf("--screenshot") + 1] : null;
const interact = args.includes("--interact");
const sections = args.includes("--sections") ? args[args.indexOf("--sections") + 1] : null;
const url = pathToFileURL(file).href;

const marks = () =>
  Array.from(document.querySelectorAll("[data-chart]")).map((el) => {
    const count = {};
    el.querySelectorAll("g.role-mark").forEach((g) => {
      const type = Array.from(g.classList).find((c) => c.startsWith("mark-")).slice(5);
      const n = g.querySelectorAll(":scope > path, :scope > line, :scope > text, :scope > g").length;
      count[type] = (count[type] || 0) + n;
    });
    return {
      id: el.getAttribute("data-chart"),
      section: el.closest("section") ? el.closest("section").id : null,
      rendered: el.getAttribute("data-rendered") === "1",
      svg: el.querySelectorAll("svg").length,
      marks: count,
    };
  });

const browse = () =>
  Array.from(document.querySelectorAll(".browse")).map((b) => ({
    section: b.closest("section").id,
    cards: b.querySelectorAll(".card").length,
    shown: b.querySelectorAll(".card:not([hidden])").length,
  }));

let browser;
try {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic",
    ],
  });
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const requests = [];
  const errors = [];
  page.on("request", (r) => { if (r.url() !== url) requests.push(r.url().slice(0, 120)); });
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push(String(e)));
  const t0 = Date.now();
  await page.goto(url, { waitUntil: "load" });
  await page.waitForSelector("body[data-charts-ready='1']", { timeout: 30000 });
  const firstRender = Date.now() - t0;
  const out = { url, first_render_ms: firstRender };
  out.charts = await page.evaluate(marks);
  out.browse = await page.evaluate(browse);
  out.images = await page.evaluate(() => {
    const imgs = Array.from(document.querySelectorAll("img[data-img]"));
    return { total: imgs.length, loaded: imgs.filter((i) => i.complete && i.naturalWidth > 0).length };
  });
  out.sections = await page.evaluate(() =>
    Array.from(document.querySelectorAll("section")).map((s) => ({ id: s.id, kind: s.dataset.kind })));
  out.tables = await page.evaluate(() =>
    Array.from(document.querySelectorAll("table")).map((t) => ({ class: t.className, rows: t.tBodies[0].rows.length })));
  if (interact) {
    const chart = out.charts.find((c) => c.section && c.section.startsWith("bench-"));
    if (chart) {
      const sel = page.locator(`[data-chart='${chart.id}'] select[name='f_attack']`);
      const options = await sel.locator("option").allTextContents();
      await sel.selectOption(options[1]);
      await page.waitForTimeout(300);
      const after = (await page.evaluate(marks)).find((c) => c.id === chart.id);
      out.filter = { chart: chart.id, attack: options[1], options, before: chart.marks, after: after.marks };
      // Hover: the first point's tooltip (vega-tooltip's element) shows its values.
      await page.locator(`[data-chart='${chart.id}'] g.mark-symbol path`).first().hover({ force: true });
      await page.waitForTimeout(300);
      out.tooltip = await page.evaluate(() => {
        const t = document.getElementById("vg-tooltip-element");
        return t && t.classList.contains("visible") ? t.textContent : null;
      });
    }
    const box = page.locator(".browse input[data-filter='success']").first();
    if ((await box.count()) > 0) {
      await box.check();
      out.fooled_only = (await page.evaluate(browse))[0];
    }
    // Sorting: click the summary's "success" heading, read the column.
    const th = page.locator("table.summary th", { hasText: "success" }).first();
    if ((await th.count()) > 0) {
      await th.click();
      out.sorted_success = await page.evaluate(() => {
        const t = document.querySelector("table.summary");
        const col = Array.from(t.tHead.rows[0].cells).findIndex((c) => c.textContent.startsWith("success"));
        return Array.from(t.tBodies[0].rows).map((r) => parseFloat(r.cells[col].dataset.v));
      });
    }
  }
  if (shot) await page.screenshot({ path: shot, fullPage: true });
  if (sections) {
    await page.evaluate(() => { document.querySelector("nav").style.position = "static"; });
    for (const s of out.sections) {
      // Galleries of photographs as JPEG (quality 85), the rest as PNG.
      const jpeg = s.kind === "bench";
      await page.locator(`section#${s.id}`).screenshot(
        jpeg ? { path: `${sections}/${s.id}.jpg`, quality: 85 } : { path: `${sections}/${s.id}.png` });
    }
  }
  out.requests = requests;
  out.errors = errors;
  console.log(JSON.stringify(out));
  await browser.close();
} catch (e) {
  console.error(`check_report: ${e && e.stack ? e.stack : e}`);
  if (browser) await browser.close();
  process.exit(2);
}
