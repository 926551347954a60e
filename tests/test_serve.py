"""`rear serve`: the app through Starlette's test client, then the page in headless Chromium."""
import io
import json
import os
import shutil
import socket
import threading
import time
import urllib.request

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("starlette", reason="rear serve needs its extra: pip install -e '.[serve,test]'")
pytest.importorskip("httpx2", reason="Starlette's test client needs httpx2: pip install -e '.[serve,test]'")
from starlette.testclient import TestClient  # noqa: E402

from conftest import random_generator, tiny_conv_vq  # noqa: E402
from rear.checkpoint import save_generator  # noqa: E402
from rear.cli import main  # noqa: E402
from rear.config import SampleConfig  # noqa: E402
from rear.serve import ServeConfig, build_app, load_studio  # noqa: E402
from rear.serve.studio import parse_request  # noqa: E402

NAMES = ["alpha", "beta", "gamma", "delta", "epsilon"]
SAMPLE = SampleConfig(cfg_scale=3.0, cfg_power=1.5, temperature=0.9, top_k=8, top_p=None)
GRID_PX = 2 * (8 + 2) + 2  # 4 images of 8x8 px in 2 columns, 2 px padding


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A tiny tokenizer (8x8 px, 2x2 tokens of 16 codes) and generators that fit it, with and without names."""
    root = tmp_path_factory.mktemp("serve")
    tiny_conv_vq().save_pretrained(root / "tokenizer")
    model = random_generator(codebook_size=16, num_tokens=4)  # 5 classes
    save_generator(model, root / "named", sample=SAMPLE, class_names=NAMES)
    save_generator(model, root / "plain")  # a checkpoint from before generation_config.json
    save_generator(random_generator(codebook_size=32, num_tokens=4), root / "misfit")
    return root


@pytest.fixture
def studio(folders):
    return load_studio(folders / "named", folders / "tokenizer")


@pytest.fixture
def client(studio):
    return TestClient(build_app(studio))


def read_events(client, job: str) -> list[dict]:
    with client.stream("GET", f"/api/jobs/{job}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        return [json.loads(line[len("data: "):]) for line in response.iter_lines() if line.startswith("data: ")]


def run(client, **fields) -> tuple[str, list[dict]]:
    reply = client.post("/api/generate", json=fields)
    assert reply.status_code == 200, reply.text
    return reply.json()["job"], read_events(client, reply.json()["job"])


def png_of(data_url: str) -> Image.Image:
    import base64

    return Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1])))


# ---------------------------------------------------------------- the app, without a browser
def test_page_and_defaults_come_from_the_checkpoint(client):
    assert 'id="generate"' in client.get("/").text
    info = client.get("/api/info").json()
    assert info["classes"] == NAMES
    d = info["defaults"]
    assert (d["cfg_scale"], d["cfg_power"], d["temperature"], d["top_k"], d["top_p"]) == (3.0, 1.5, 0.9, 8, None)
    assert d["classes"] == ["alpha"] and d["count"] == 8 and d["seed"] == 0
    assert info["grid"] == [2, 2] and info["spatial"] and info["limits"]["max_images"] == 64


def test_a_checkpoint_without_generation_config_gets_indices_and_library_defaults(folders):
    info = TestClient(build_app(load_studio(folders / "plain", folders / "tokenizer"))).get("/api/info").json()
    assert info["classes"] == [f"class {i}" for i in range(5)]
    d, s = info["defaults"], SampleConfig()
    assert (d["cfg_scale"], d["cfg_power"], d["temperature"], d["top_k"], d["top_p"]) == (
        s.cfg_scale, s.cfg_power, s.temperature, s.top_k, s.top_p)


def test_the_raster_fills_row_by_row_then_the_grid_downloads(client):
    job, events = run(client, classes=["beta"], count=4, seed=1)
    assert [e["tokens"] for e in events] == [1, 2, 3, 4] and events[-1]["done"]
    partial = [e for e in events if "image" in e]
    assert [e["tokens"] for e in partial] == [2, 4]  # after the first of the 2 token rows, then the whole
    first_row = torch.from_numpy(np.array(png_of(partial[0]["image"])))  # [H, W] grayscale
    for top in (2, 12):  # each image's lower 4 px rows (the undrawn token row) are mid-grey
        assert (first_row[top + 4 : top + 8, 2:10] == 128).all()
    assert not (first_row[2:6, 2:10] == 128).all()
    download = client.get(f"/api/jobs/{job}/grid.png")
    assert download.headers["content-type"] == "image/png" and "attachment" in download.headers["content-disposition"]
    assert Image.open(io.BytesIO(download.content)).size == (GRID_PX, GRID_PX)
    assert png_of(events[-1]["image"]).tobytes() == Image.open(io.BytesIO(download.content)).tobytes()


def test_the_seed_fixes_the_grid(client):
    grids = [run(client, classes=["gamma"], count=4, seed=seed)[1][-1]["image"] for seed in (7, 7, 8)]
    assert grids[0] == grids[1] != grids[2]


def test_earlier_jobs_keep_their_grid_but_not_their_partial_grids(studio, client):
    first = run(client, classes=["delta"], count=4)[0]
    run(client, classes=["delta"], count=4)
    assert ["image" in e for e in studio.jobs[first].events] == [False, False, False, True]
    assert client.get(f"/api/jobs/{first}/grid.png").status_code == 200


BAD = [
    ({"cfg_scale": 100}, "cfg_scale must lie in [1, 50]"),
    ({"cfg_scale": "lots"}, "cfg_scale must be a number"),
    ({"cfg_power": 0}, "cfg_power must lie in (0, 10]"),
    ({"classes": ["zebra"]}, "no class 'zebra' in this checkpoint"),
    ({"classes": []}, "choose at least one class"),
    ({"count": 10_000}, "count must lie in [1, 64]"),
    ({"count": 2.5}, "count must be a whole number"),
    ({"temperature": 0}, "temperature must lie in (0, 10]"),
    ({"top_k": 0}, "top_k must lie in [1, 16]"),
    ({"top_p": 1.5}, "top_p must lie in (0, 1]"),
    ({"seed": "x"}, "seed must be a whole number"),
    ({"colour": "red"}, "unknown field(s) 'colour'"),
]


def test_bad_input_gets_a_message_and_the_server_keeps_serving(client):
    for fields, message in BAD:
        reply = client.post("/api/generate", json={"classes": ["alpha"], "count": 4, **fields})
        assert reply.status_code == 400 and message in reply.json()["error"], (fields, reply.text)
    assert run(client, classes=["alpha"], count=4)[1][-1]["done"]


def test_a_body_that_is_not_json_or_a_job_that_does_not_exist(client):
    reply = client.post("/api/generate", content=b"count=4")
    assert reply.status_code == 400 and "JSON" in reply.json()["error"]
    assert client.get("/api/jobs/nope/grid.png").status_code == 404


def test_classes_by_name_any_case_or_index_take_blocks_of_images():
    defaults = {"classes": ["alpha"], "count": 4, "cfg_scale": 2.0, "cfg_power": 1.0, "temperature": 1.0,
                "top_k": "", "top_p": None, "seed": "3"}
    request = parse_request({"classes": ["BETA", "3"]}, defaults, NAMES, 16, ServeConfig())
    assert request.labels == [1, 1, 3, 3] and request.seed == 3 and request.sample.top_k is None
    with pytest.raises(ValueError, match="2 classes for 1 images"):
        parse_request({"classes": ["beta", "gamma"], "count": 1}, defaults, NAMES, 16, ServeConfig())


def test_one_generation_at_a_time(studio, client, monkeypatch):
    release, decoding = threading.Event(), threading.Event()
    decode = studio.tokenizer.decode

    def held_decode(ids):
        decoding.set()
        release.wait(10)
        return decode(ids)

    monkeypatch.setattr(studio.tokenizer, "decode", held_decode)
    first = client.post("/api/generate", json={"classes": ["alpha"], "count": 4}).json()["job"]
    assert decoding.wait(10)
    refused = client.post("/api/generate", json={"classes": ["beta"], "count": 4})
    assert refused.status_code == 429 and "one at a time" in refused.json()["error"]
    release.set()
    assert read_events(client, first)[-1]["done"]
    assert run(client, classes=["beta"], count=4)[1][-1]["done"]


def test_a_failed_generation_is_reported_and_frees_the_server(studio, client, monkeypatch):
    decode = studio.tokenizer.decode
    monkeypatch.setattr(studio.tokenizer, "decode", lambda ids: (_ for _ in ()).throw(RuntimeError("out of memory")))
    job, events = run(client, classes=["alpha"], count=4)
    assert events == [{"tokens": 1, "of": 4}, {"error": "generation failed: out of memory"}]
    assert client.get(f"/api/jobs/{job}/grid.png").status_code == 409
    monkeypatch.setattr(studio.tokenizer, "decode", decode)
    assert run(client, classes=["alpha"], count=4)[1][-1]["done"]


def test_a_1d_tokenizer_shows_counts_and_the_image_only_when_done(studio, client):
    studio.tokenizer.grid = (1, 4)  # a 1D sequence: a partial one is no picture
    events = run(client, classes=["alpha"], count=1)[1]
    assert [("image" in e) for e in events] == [False, False, False, True]
    assert not client.get("/api/info").json()["spatial"]


def test_a_tokenizer_that_does_not_fit_fails_before_serving(folders, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", str(folders / "misfit"), "--tokenizer", str(folders / "tokenizer")])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1
    assert "4 tokens of 32 codes" in err and "rear serve: error:" in err


def test_the_reply_labels_the_grid_and_the_png_carries_the_settings(client):
    reply = client.post("/api/generate", json={"classes": ["beta", "Delta"], "count": 4, "seed": 5, "top_k": ""}).json()
    assert reply["labels"] == ["beta", "beta", "delta", "delta"] and reply["columns"] == 2
    assert reply["caption"] == ("4 images of beta, delta; seed 5, CFG 3 (power 1.5), temperature 0.9, top-k off, "
                                "top-p off")
    assert reply["filename"] == "rear-seed5-cfg3-pow1.5-t0.9.png"
    read_events(client, reply["job"])
    download = client.get(f"/api/jobs/{reply['job']}/grid.png")
    assert f'filename="{reply["filename"]}"' in download.headers["content-disposition"]
    text = Image.open(io.BytesIO(download.content)).text
    settings = json.loads(text["rear:settings"])
    assert settings["seed"] == 5 and settings["cfg_scale"] == 3.0 and settings["top_k"] is None
    assert settings["classes"] == reply["labels"] and text["Description"] == reply["caption"]


def test_malformed_or_huge_bodies_get_a_short_400_and_nothing_echoed(client):
    for raw in (b"\xff\xfe not utf-8", b"[" * 100_000 + b"]" * 100_000, b"{not json"):
        reply = client.post("/api/generate", content=raw, headers={"Content-Type": "application/json"})
        assert reply.status_code in (400, 413) and len(reply.text) < 200, reply.text[:200]
    reply = client.post("/api/generate", content=b" " * 100_000, headers={"Content-Type": "application/json"})
    assert reply.status_code == 413 and "larger than 65,536 bytes" in reply.json()["error"]
    reply = client.post("/api/generate", json={"classes": ["x" * 20_000]})
    assert reply.status_code == 400 and len(reply.json()["error"]) < 300 and "xxx..." in reply.json()["error"]
    reply = client.post("/api/generate", json={"cfg_scale": "y" * 20_000})
    assert reply.status_code == 400 and len(reply.json()["error"]) < 100
    assert client.get("/api/info").status_code == 200  # still serving


def test_closing_the_studio_cancels_the_generation_in_flight(studio, client, monkeypatch):
    """What Ctrl-C does (the app's shutdown closes the studio): the running job ends at its next token."""
    decode = studio.tokenizer.decode
    started = threading.Event()

    def slow_decode(ids):  # partial rasters: give the test time to close mid-generation
        started.set()
        time.sleep(0.2)
        return decode(ids)

    monkeypatch.setattr(studio.tokenizer, "decode", slow_decode)
    reply = client.post("/api/generate", json={"classes": ["alpha"], "count": 4}).json()
    assert started.wait(10)
    studio.close()
    began = time.monotonic()
    events = read_events(client, reply["job"])
    assert events[-1] == {"error": "cancelled: the server is stopping"} and time.monotonic() - began < 5
    assert client.post("/api/generate", json={"classes": ["alpha"]}).status_code == 429  # no new ones


def test_serve_prints_the_settings_it_loaded(folders, monkeypatch, capsys):
    import rear.serve.app

    monkeypatch.setattr("uvicorn.run", lambda app, **kw: None)
    rear.serve.app.serve(load_studio(folders / "named", folders / "tokenizer"))
    out = capsys.readouterr().out
    assert "5 classes; sampling defaults cfg_scale 3, cfg_power 1.5, temperature 0.9, top_k 8, top_p None" in out


# ---------------------------------------------------------------- the page, in a real browser
@pytest.fixture
def live_url(studio):
    """The app on a free loopback port, in a thread."""
    uvicorn = pytest.importorskip("uvicorn", reason="rear serve needs its extra: pip install -e '.[serve]'")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(build_app(studio), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def browser(tmp_path):
    """Headless Chromium through Selenium; skips where either is missing."""
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or chromedriver is None:
        pytest.skip("no Chromium here: apt-get install chromium chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver",
                                    reason="the browser test needs selenium: pip install -e '.[test]'")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--no-first-run",
                 f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1000,720"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=chromedriver))
    yield driver
    driver.quit()


def test_the_page_in_chromium_chooses_a_class_generates_and_shows_the_grid(live_url, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    def field(id_: str, text: str) -> None:
        element = browser.find_element(By.ID, id_)
        element.clear()
        element.send_keys(text)

    def text(id_: str) -> str:
        return browser.find_element(By.ID, id_).text

    def chips() -> list[str]:
        return [chip.get_attribute("data-name") for chip in browser.find_elements(By.CSS_SELECTOR, "#chosen span")]

    wait = WebDriverWait(browser, 15)
    browser.get(live_url)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#chosen span"))  # the defaults are in
    assert browser.find_element(By.ID, "cfg-scale").get_attribute("value") == "3"
    browser.find_element(By.CSS_SELECTOR, "#chosen span button").click()  # drop the default class
    # an unknown name is flagged while it is typed, and the flag goes when the text names a class
    field("class-input", "gam")
    wait.until(lambda d: 'no class "gam"' in text("class-hint"))
    assert browser.find_element(By.ID, "add-class").get_attribute("disabled") == "true"
    browser.find_element(By.ID, "class-input").send_keys("ma")
    wait.until(lambda d: text("class-hint") == "")
    browser.find_element(By.ID, "add-class").click()
    field("class-input", "3")  # an index is shown by its name
    browser.find_element(By.ID, "add-class").click()
    assert chips() == ["gamma", "delta"]
    # the class list: every class by index and name, and all of them at once
    options = [o.text for o in Select(browser.find_element(By.ID, "class-list")).options]
    assert options[1:] == [f"{i}: {name}" for i, name in enumerate(NAMES)]
    browser.find_element(By.ID, "all-classes").click()
    assert chips() == NAMES
    for _ in range(3):
        browser.find_element(By.CSS_SELECTOR, "#chosen span button").click()
    Select(browser.find_element(By.ID, "class-list")).select_by_visible_text("0: alpha")
    assert chips() == ["delta", "epsilon", "alpha"]
    for _ in range(2):
        browser.find_element(By.CSS_SELECTOR, "#chosen span button").click()
    Select(browser.find_element(By.ID, "class-list")).select_by_visible_text("2: gamma")
    # a bad value is answered on the page, and the message goes once the input is fixed
    field("cfg-scale", "100")
    browser.find_element(By.ID, "generate").click()
    wait.until(lambda d: "cfg_scale must lie in [1, 50]" in text("message"))
    field("cfg-scale", "2")
    assert text("message") == ""
    field("count", "4")
    field("seed", "3")
    browser.find_element(By.ID, "generate").click()
    wait.until(lambda d: d.find_element(By.ID, "grid").get_attribute("data-done") == "1")
    size = browser.execute_script("const g = document.getElementById('grid'); return [g.naturalWidth, g.naturalHeight]")
    assert size == [GRID_PX, GRID_PX]
    shown = browser.execute_script("return document.getElementById('grid').clientWidth")
    assert shown >= 10 * GRID_PX and shown % GRID_PX == 0  # scaled to the window by a whole factor
    labels = browser.find_elements(By.CSS_SELECTOR, "#grid-box .cell-label")
    assert [label.text for label in labels] == ["alpha", "alpha", "gamma", "gamma"]
    assert labels[1].location["x"] > labels[0].location["x"] and labels[2].location["y"] > labels[0].location["y"]
    assert text("message") == "" and text("status") == "done: 4 tokens per image"
    assert text("caption") == ("4 images of alpha, gamma; seed 3, CFG 2 (power 1.5), temperature 0.9, top-k 8, "
                               "top-p off")
    link = browser.find_element(By.ID, "download")
    assert link.is_displayed() and link.get_attribute("download") == "rear-seed3-cfg2-pow1.5-t0.9-k8.png"
    with urllib.request.urlopen(link.get_attribute("href")) as download:
        image = Image.open(io.BytesIO(download.read()))
        assert image.size == (GRID_PX, GRID_PX) and json.loads(image.text["rear:settings"])["seed"] == 3
    if os.environ.get("REAR_SCREENSHOT"):
        browser.save_screenshot(os.environ["REAR_SCREENSHOT"])


def test_a_serve_config_out_of_range_is_refused(folders):
    with pytest.raises(ValueError, match=r"max_images must lie in \[1, inf\), got 0"):
        load_studio(folders / "named", folders / "tokenizer", config=ServeConfig(max_images=0))
