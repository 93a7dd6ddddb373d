"""The demo page in headless Chromium (Debian's, driven by Playwright): shared by the page tests."""

import base64
import os

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def sync_playwright():
  """Playwright's entry point, or a skip saying what to install."""
  if not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} is absent: apt-get install -y chromium")
  return pytest.importorskip(
      "playwright.sync_api",
      reason="playwright is absent: pip install 'playwright>=1.45,<2'").sync_playwright


def download_bytes(page) -> bytes:
  """The bytes behind the page's download link: the colorized PNG as a user saves it."""
  data_url = page.evaluate("""async () => {
      const blob = await (await fetch(document.getElementById('download').href)).blob();
      return await new Promise(r => { const f = new FileReader();
                                       f.onload = () => r(f.result); f.readAsDataURL(blob); });
    }""")
  return base64.b64decode(data_url.split(",", 1)[1])
