// Drives `lab serve seed-cluster` in headless Chromium through the blog's three steps by
// clicking (run by crates/lab/tests/serve.rs; see there).
// usage: node walk.cjs <playwright-core dir> <url> <screenshot dir> <user-data dir> [steps]
// [real]: steps (default 3) walks only the first ones; with "real" the screenshots are
// named real-step… and the countdown of the hanging request is recorded.
"use strict";
const [pwDir, url, shots, userData, stepsArg, realArg] = process.argv.slice(2);
const steps = parseInt(stepsArg || "3", 10);
const real = realArg === "real";
const shot = (name) => shots + "/" + (real ? "real-" : "") + name;
const fs = require("fs");
const { chromium } = require(pwDir);

async function main() {
  const ctx = await chromium.launchPersistentContext(userData, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1400, height: 1000 },
    acceptDownloads: true,
    // The driver's own waitForFunction predicates are evaluated as strings; the page's CSP
    // (no eval) is for the page, not for the test harness.
    bypassCSP: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const out = { console_errors: [], external_requests: [], steps: [] };
  try {
    const page = ctx.pages()[0] || (await ctx.newPage());
    page.on("console", (m) => { if (m.type() === "error") out.console_errors.push(m.text()); });
    page.on("pageerror", (e) => out.console_errors.push(String(e)));
    page.on("request", (r) => { if (!r.url().startsWith(url)) out.external_requests.push(r.url()); });
    page.setDefaultTimeout(20000);
    await page.goto(url);
    await page.waitForSelector("#client-browser");
    await page.fill("#timeout", "2");
    const send = async (n) => {
      await page.click("#client-browser");
      // The countdown of a request that hangs (seen only when it takes > 0.3 s).
      const countdown = real
        ? page.waitForFunction(() => document.querySelector("#countdown").textContent, null, { polling: 50, timeout: 8000 })
          .then((h) => h.jsonValue()).catch(() => "")
        : Promise.resolve("");
      await page.click("#node-ydzs-master text");
      await page.waitForFunction((k) => document.querySelectorAll("#requests tr").length >= k, n);
      await page.waitForFunction(() => document.querySelector("#status").textContent === "done");
      const row = await page.$$eval("#requests tr", (rs) => Array.from(rs[rs.length - 1].children).map((td) => td.textContent));
      return {
        row,
        log: await page.textContent("#log"),
        explanation: await page.textContent("#explanation"),
        hops: await page.$$eval("#hops .badge", (bs) => bs.map((b) => b.textContent)),
        // Drawn on the topology: one trail per hop along the links, and the badges.
        trails: await page.$$eval("#anim polyline", (ps) => ps.map((p) => p.getAttribute("points").split(" ").length)),
        topo_badges: await page.$$eval("#anim .tbadge text", (ts) => ts.map((t) => t.textContent)),
        countdown: await countdown,
      };
    };
    // The pcap button of a link: the download is a pcap file.
    const pcap = async (link) => {
      const [dl] = await Promise.all([page.waitForEvent("download"), page.click("#pcap-" + link)]);
      const path = await dl.path();
      const head = fs.readFileSync(path).subarray(0, 4).toString("hex");
      return { link, name: dl.suggestedFilename(), magic: head };
    };
    const apply = async () => {
      await page.click("#apply");
      await page.waitForFunction(() => document.querySelector("#status").textContent.startsWith("applied"));
    };
    // 1. seed-cluster: the browser asks the master; nginx logs the master's address.
    out.steps.push(await send(1));
    await page.screenshot({ path: shot("step1-cluster.png"), fullPage: true });
    out.pcap = await pcap("ydzs-master-eth0");
    // 2. externalTrafficPolicy: Local: no endpoint on the master, the request times out.
    await page.selectOption("#policy", "Local");
    await apply();
    out.steps.push(await send(2));
    await page.screenshot({ path: shot("step2-local.png"), fullPage: true });
    if (steps >= 3) {
      // 3. Pods pinned to the master: the browser's own address is logged.
      await page.selectOption("#pin", "ydzs-master");
      await apply();
      out.steps.push(await send(3));
      await page.screenshot({ path: shot("step3-pinned.png"), fullPage: true });
    }
    await page.close();
  } finally {
    await ctx.close();
  }
  process.stdout.write(JSON.stringify(out) + "\n");
}
main().catch((e) => { process.stderr.write(String(e && e.stack || e) + "\n"); process.exit(1); });
