"""The console's pages in headless Chromium (issue 24, item 8): each page's weight (bytes and
requests) and the time to its first render, with 500 published tools and a 1,000-task job.

    python3 -m bench.console_pages [--tools 500] [--tasks 1000] [--loads 10] [--json out/pages.json]

Against the test cluster's ``levrt-console``, in Debian's Chromium through chromedriver. The tools
and the job are written straight into the store as in ``bench/console.py`` (and removed at the end).
Each page is loaded ``--loads`` times in a fresh tab; the figures are the browser's own: the
Navigation Timing of the document, the first contentful paint (``PerformanceObserver``), and the
Resource Timing entries (requests, transferred bytes). A raw side for comparison: the same page's
HTML fetched by this machine (``httpx``), which is what the server itself costs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from bench.common import cluster_env, percentile, write_figures
from bench.console import JOB, seeded

PAGES = {"catalogue": "/tools", "tool": "/tools/bench/tool0000", "jobs": "/jobs?owner=", "job": f"/jobs/{JOB}"}
FIGURES_JS = """
const done = arguments[arguments.length - 1];
const report = (fcp) => {
  const nav = performance.getEntriesByType('navigation')[0];
  const resources = performance.getEntriesByType('resource');
  done({fcp: fcp, dom: nav.domContentLoadedEventEnd, load: nav.loadEventEnd, html: nav.encodedBodySize,
        requests: 1 + resources.length, assets: resources.reduce((n, r) => n + r.encodedBodySize, 0)});
};
new PerformanceObserver((list) => {
  const paint = list.getEntries().find(p => p.name === 'first-contentful-paint');
  if (paint) report(paint.startTime);
}).observe({type: 'paint', buffered: true});
setTimeout(() => report(null), 5000);
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tools", type=int, default=500)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--loads", type=int, default=10)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    cluster_env()
    import httpx
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,800"):
        options.add_argument(arg)
    results: dict[str, dict[str, list[float]]] = {}
    with seeded(args.tools, args.tasks) as bench:
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        try:
            driver.get(f"{bench.url}/sign-in")
            driver.add_cookie({"name": "levrt_session", "value": bench.token, "path": "/", "httpOnly": True})
            http = httpx.Client(base_url=bench.url, cookies={"levrt_session": bench.token}, timeout=120)
            for name, path in PAGES.items():
                print(f"progress: {name}", file=sys.stderr)
                figures: dict[str, list[float]] = {}
                for _ in range(args.loads):
                    driver.switch_to.new_window("tab")
                    driver.get(bench.url + path)
                    seen = driver.execute_async_script(FIGURES_JS)
                    driver.close()
                    driver.switch_to.window(driver.window_handles[0])
                    start = time.perf_counter()
                    http.get(path).raise_for_status()
                    seen["server"] = (time.perf_counter() - start) * 1000
                    for key, value in seen.items():
                        figures.setdefault(key, []).append(float(value or 0))
                results[name] = figures
        finally:
            driver.quit()
    summary = {name: {"html_bytes": int(f["html"][0]), "requests": int(f["requests"][0]),
                      "bytes": int(f["html"][0] + max(f["assets"])), "fcp_p50_ms": round(percentile(f["fcp"], 0.5)),
                      "fcp_p95_ms": round(percentile(f["fcp"], 0.95)),
                      "server_p50_ms": round(percentile(f["server"], 0.5))} for name, f in results.items()}
    print(f"\n{args.loads} loads of each page in headless Chromium; {args.tools} tools, a {args.tasks}-task job\n")
    print(f"{'page':12}{'HTML bytes':>12}{'requests':>10}{'page weight':>12}{'FCP p50':>10}{'FCP p95':>10}"
          f"{'HTML only p50':>15}")
    for name, row in summary.items():
        print(f"{name:12}{row['html_bytes']:>12}{row['requests']:>10}{row['bytes']:>12}{row['fcp_p50_ms']:>8} ms"
              f"{row['fcp_p95_ms']:>7} ms{row['server_p50_ms']:>12} ms")
    print("\n(page weight: the HTML with the stylesheet and the script, uncompressed; FCP: first contentful paint "
          "from the start of navigation; HTML only: the same page fetched by httpx, the server's share)")
    if args.json:
        write_figures(args.json, {"tools": args.tools, "tasks": args.tasks, "loads": args.loads, "pages": summary})
    print(json.dumps(summary), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
