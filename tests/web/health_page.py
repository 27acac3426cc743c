#!/usr/bin/python3
"""Drives the swarm health page in headless Chromium (run by tests/cli/health_page.sh).

usage: health_page.py URL VICTIM_ID OUT_DIR [DOC_PNG]

Reads the servers and blocks the page rendered, prints "kill the victim now" (the
calling script then SIGKILLs server VICTIM_ID, and reaps it), and waits until the
page shows the victim's blocks as a gap. Saves
screenshots in OUT_DIR (and DOC_PNG when given). Exit 0 on success, 1 on a failed
check, 77 when selenium, chromium or chromedriver is missing.
"""
import os
import sys

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:
    print("SKIP: python3-selenium is not installed")
    sys.exit(77)

CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM = "/usr/bin/chromium"


# Read in one script call: the page re-renders every two seconds, so elements found
# by one WebDriver call may be gone by the next.
def blocks(d):
    return [tuple(x) for x in d.execute_script(
        "return [...document.querySelectorAll('section.model .block')].map(b =>"
        " [b.dataset.block, b.dataset.servers, b.dataset.gap, getComputedStyle(b).backgroundColor]);")]


def servers(d):
    return d.execute_script(
        "const o = {}; for (const r of document.querySelectorAll('section.model tr.server'))"
        " o[r.dataset.serverId] = r.dataset.state; return o;")


def model_attr(d, name):
    return d.execute_script("const m = document.querySelector('section.model'); return m && m.getAttribute(arguments[0]);",
                            name)


def main():
    url, victim_id, out_dir = sys.argv[1], sys.argv[2], sys.argv[3]
    doc_png = sys.argv[4] if len(sys.argv) > 4 else None
    if not (os.access(CHROMEDRIVER, os.X_OK) and os.access(CHROMIUM, os.X_OK)):
        print("SKIP: chromium or chromedriver is not installed")
        return 77
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1100,760"):
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    failed = 0

    def check(name, ok):
        nonlocal failed
        print(("ok - " if ok else "FAIL - ") + name)
        failed += 0 if ok else 1

    try:
        d.set_page_load_timeout(20)
        d.get(url)
        wait = WebDriverWait(d, 20, poll_frequency=0.2)
        # Both servers online and every block covered.
        wait.until(lambda d: len(blocks(d)) == 5 and all(b[2] == "false" for b in blocks(d))
                   and list(servers(d).values()).count("online") == 2)
        check("page renders 5 blocks, all covered, 2 online servers", True)
        check("the victim is listed", victim_id in servers(d))
        check("the page lists the model by name",
              model_attr(d, "data-model") == "stories260K")
        d.save_screenshot(os.path.join(out_dir, "health_before.png"))

        print("kill the victim now", flush=True)
        # Its records expire (3x its announce interval), the watcher re-crawls, the page re-polls.
        WebDriverWait(d, 30, poll_frequency=0.2).until(
            lambda d: any(b[2] == "true" for b in blocks(d)) and victim_id not in servers(d))
        seen = blocks(d)
        gaps = [int(b[0]) for b in seen if b[2] == "true"]
        check("the killed server's blocks 3-4 show as a gap (%s)" % gaps, gaps == [3, 4])
        color = [b[3] for b in seen if b[2] == "true"][0]
        check("gap blocks are red (%s)" % color, color.startswith("rgba(217, 45, 32") or color.startswith("rgb(217, 45, 32"))
        check("the model is marked incomplete", model_attr(d, "data-complete") == "false")
        shot = os.path.join(out_dir, "health_gap.png")
        d.save_screenshot(shot)
        print("screenshot: " + shot)
        if doc_png:
            d.save_screenshot(doc_png)
            print("screenshot: " + doc_png)
    except Exception as e:  # a timeout or a missing element: show what the page had
        check("page flow (%s: %s)" % (type(e).__name__, str(e).splitlines()[0] if str(e) else ""), False)
        print("blocks:", blocks(d), "servers:", servers(d))
        d.save_screenshot(os.path.join(out_dir, "health_failed.png"))
    finally:
        d.quit()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
