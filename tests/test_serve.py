"""The web demo: JSON API over HTTP, and the page end to end in headless Chromium."""

import io
import json
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
import skimage.color
import skimage.data
from PIL import Image

from colorjax import inference
from colorjax import serve
from tests.helpers import chromium

pytestmark = pytest.mark.slow  # A trained model behind the server; a browser.

MAX_UPLOAD_MB = 1.0


@pytest.fixture(scope="module")
def server_url(trained_tiny):
  colorizer = inference.Colorizer.from_workdir(trained_tiny("lsgan"))
  server = serve.make_server(colorizer, "127.0.0.1", 0, max_upload_mb=MAX_UPLOAD_MB)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  host, port = server.server_address[:2]
  yield f"http://{host}:{port}"
  server.shutdown()
  server.server_close()


@pytest.fixture
def photo_file(tmp_path):
  path = tmp_path / "astronaut.jpg"
  Image.fromarray(skimage.data.astronaut()[:200, :300]).save(path, quality=92)
  return path


def post(url: str, body: bytes) -> tuple[int, str, bytes]:
  request = urllib.request.Request(url, data=body, method="POST")
  try:
    with urllib.request.urlopen(request, timeout=120) as response:
      return response.status, response.headers["Content-Type"], response.read()
  except urllib.error.HTTPError as e:
    return e.code, e.headers["Content-Type"], e.read()


def mean_chroma(rgb: np.ndarray) -> float:
  ab = skimage.color.rgb2lab(rgb[..., :3])[..., 1:]
  return float(np.mean(np.hypot(ab[..., 0], ab[..., 1])))


def test_api_colorizes_and_reports_errors(server_url, photo_file):
  status, kind, body = post(server_url + "/api/colorize", photo_file.read_bytes())
  assert status == 200 and kind == "image/png"
  result = np.asarray(Image.open(io.BytesIO(body)))
  assert result.shape == (200, 300, 3) and mean_chroma(result) > 1.0

  status, _, body = post(server_url + "/api/grayscale", photo_file.read_bytes())
  assert status == 200 and np.asarray(Image.open(io.BytesIO(body))).shape == (200, 300)

  status, kind, body = post(server_url + "/api/colorize", b"hello, not a photo")
  assert status == 400 and kind == "application/json"
  assert "not an image" in json.loads(body)["error"]
  status, _, body = post(server_url + "/api/colorize", b"\0" * int(1.5 * 2 ** 20))
  assert status == 413 and "too large" in json.loads(body)["error"]
  # Still serving after the errors.
  assert post(server_url + "/api/colorize", photo_file.read_bytes())[0] == 200


def test_page_in_headless_chromium(server_url, photo_file, tmp_path):
  sync_playwright = chromium.sync_playwright()
  text_file = tmp_path / "notes.txt"
  text_file.write_text("a text file, not a photo\n")
  with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=chromium.CHROMIUM,
                                args=chromium.CHROMIUM_FLAGS, headless=True)
    try:
      page = browser.new_page()
      page.goto(server_url + "/")
      page.set_input_files("#file", str(photo_file))
      page.wait_for_function(
          "document.getElementById('result').complete && "
          "document.getElementById('result').naturalWidth > 0", timeout=120_000)
      assert page.is_visible("#download")
      assert page.eval_on_selector("#gray", "img => img.naturalWidth") == 300
      png = chromium.download_bytes(page)  # The result image, as downloaded.
      result = np.asarray(Image.open(io.BytesIO(png)))
      assert result.shape == (200, 300, 3) and mean_chroma(result) > 1.0

      page.set_input_files("#file", str(text_file))
      page.wait_for_function("document.getElementById('error').textContent.length > 0",
                             timeout=60_000)
      assert "not an image" in page.text_content("#error")
      assert not page.is_visible("#download")
    finally:
      browser.close()

