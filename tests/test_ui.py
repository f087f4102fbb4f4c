"""``wukong ui``: the page driven in a real headless browser (Debian's chromium and chromedriver,
through Selenium), and its API checked with real requests on 127.0.0.1.

Screenshots of every step go to ``$WUKONG_SCREENSHOTS`` (default: the test's temporary folder).
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import signal
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import CAT_DOG, DATA
from wukong.serve import BackgroundServer
from wukong.ui.server import create_ui_app

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
needs_browser = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="Debian's chromium and chromium-driver are not installed ('make install' installs them as root)",
)
WAIT = 300  # seconds a training may take in the page


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root in a container
        "--disable-dev-shm-usage",
        "--window-size=1280,1800",
        "--use-fake-ui-for-media-stream",  # the webcam: allowed, and a generated test picture
        "--use-fake-device-for-media-stream",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture()
def shots(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    folder = Path(os.environ.get("WUKONG_SCREENSHOTS", tmp_path / "screenshots")) / request.node.name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def find(driver, css: str):  # noqa: ANN001, ANN201 - selenium's types
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css)


def wait_for(driver, condition, timeout: float = 30):  # noqa: ANN001, ANN201
    """``condition(driver)`` once it is true; an element the page redrew while it was read is read again."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    redrawn = (NoSuchElementException, StaleElementReferenceException)
    return WebDriverWait(driver, timeout, poll_frequency=0.2, ignored_exceptions=redrawn).until(condition)


def make_project(driver, url: str, name: str, modality: str, classes: list[str]) -> None:  # noqa: ANN001
    driver.get(url)
    find(driver, "#new-name").send_keys(name)
    find(driver, f"#new-modality-{modality}").click()
    find(driver, "#create").click()
    wait_for(driver, lambda d: name in find(d, "#project-title").text)
    for cls in classes:
        find(driver, "#class-name").send_keys(cls)
        find(driver, "#add-class").click()
        wait_for(driver, lambda d, c=cls: d.find_elements("css selector", f'.class-card[data-class="{c}"]'))


def count_of(driver, cls: str) -> str:  # noqa: ANN001
    return find(driver, f'.class-card[data-class="{cls}"] .count').text


def train_in_page(driver, shots: Path) -> float:  # noqa: ANN001
    """Press Train, watch the progress, and return the accuracy the page shows."""
    find(driver, "#train").click()
    wait_for(driver, lambda d: find(d, "#progress-text").text.startswith("Training"))
    driver.save_screenshot(str(shots / "3-training.png"))
    wait_for(driver, lambda d: find(d, "#accuracy").is_displayed() and find(d, "#accuracy").text, WAIT)
    driver.save_screenshot(str(shots / "4-trained.png"))
    assert "Training finished" in find(driver, "#progress-text").text
    return float(find(driver, "#accuracy").text.rstrip("%")) / 100


def messages(driver) -> str:  # noqa: ANN001
    return find(driver, "#messages").text


@needs_browser
def test_image_project_from_the_cat_dog_photos(browser, shots: Path, tmp_path: Path) -> None:  # noqa: ANN001
    work = tmp_path / "work"
    with BackgroundServer(create_ui_app(work)) as server:
        make_project(browser, server.url, "pets", "image", ["cat", "dog"])
        for cls in ("cat", "dog"):
            files = sorted(str(p) for p in (CAT_DOG / "train" / cls).iterdir())
            find(browser, f'.class-card[data-class="{cls}"] input[type=file]').send_keys("\n".join(files))
            wait_for(browser, lambda d, c=cls, n=len(files): count_of(d, c) == f"{n} examples", 60)
        browser.save_screenshot(str(shots / "1-examples.png"))
        # a webcam snapshot (chromium's generated test picture) joins the class like any image
        find(browser, '.class-card[data-class="cat"] button').click()
        wait_for(browser, lambda d: d.execute_script("return document.getElementById('camera').videoWidth > 0"))
        browser.save_screenshot(str(shots / "2-webcam.png"))
        find(browser, "#snap").click()
        wait_for(browser, lambda d: count_of(d, "cat") == "21 examples")
        find(browser, "#camera-close").click()
        assert len(list((work / "pets" / "data" / "cat").glob("webcam-*.jpg"))) == 1
        browser.execute_script(DROP_A_PICTURE, "dog")  # a file dragged onto a class and dropped
        wait_for(browser, lambda d: count_of(d, "dog") == "21 examples")
        assert (work / "pets" / "data" / "dog" / "dropped.png").is_file()

        accuracy = train_in_page(browser, shots)
        assert accuracy >= 0.8  # EfficientNet-Lite0 features on 42 images: 1.0 when written
        assert "because" in find(browser, "#strategy-reason").text  # auto's explanation is shown
        assert "efficientnet_lite0" in find(browser, "#backbone").text

        find(browser, "#try-file").send_keys(str(next((CAT_DOG / "test" / "dog").iterdir())))
        label = wait_for(browser, lambda d: d.find_elements("css selector", "#predicted-label"))[0]
        assert label.text == "dog"
        assert "%" in find(browser, "#prediction table").text
        browser.save_screenshot(str(shots / "5-prediction.png"))
        # the camera for a try: chromium's test picture (one snapshot of it is a cat example) gets an answer
        photo = find(browser, "#prediction img").get_attribute("src")  # the dog photo's preview
        find(browser, "#try-camera").click()
        wait_for(browser, lambda d: d.execute_script("return document.getElementById('camera').videoWidth > 0"))
        find(browser, "#snap").click()
        wait_for(browser, lambda d: find(d, "#prediction img").get_attribute("src") not in (photo, None))
        row = find(browser, "#prediction table").text
        assert "cat" in row and "dog" in row and find(browser, "#predicted-label").text
        browser.execute_script("document.getElementById('try').scrollIntoView()")
        browser.save_screenshot(str(shots / "5b-camera-prediction.png"))
        find(browser, "#camera-close").click()

        # photos without a class: the model picks what to label, shown as thumbnails; a click files one
        pool = sorted((CAT_DOG / "test" / "cat").iterdir())[:2] + sorted((CAT_DOG / "test" / "dog").iterdir())[:2]
        find(browser, "#pool-files").send_keys("\n".join(str(p) for p in pool))
        wait_for(browser, lambda d: find(d, "#pool-count").text.startswith("4 example(s)"), 60)
        find(browser, "#suggest").click()
        cards = wait_for(browser, lambda d: d.find_elements("css selector", ".suggestion"), 60)
        shown = "return [...document.querySelectorAll('.suggestion img')].every(i => i.complete && i.naturalWidth > 0)"
        wait_for(browser, lambda d: d.execute_script(shown))
        assert len(cards) == 4 and {c.get_attribute("data-item") for c in cards} == {p.name for p in pool}
        browser.execute_script("document.getElementById('label-next').scrollIntoView()")
        browser.save_screenshot(str(shots / "5c-label-next.png"))
        item = cards[0].get_attribute("data-item")
        cards[0].find_element("css selector", f'.label-as[data-class="{item[:3]}"]').click()
        wait_for(browser, lambda d, c=item[:3]: count_of(d, c) == "22 examples")
        assert (work / "pets" / "data" / item[:3] / item).is_file() and not (work / "pets" / "pool" / item).exists()

        # the report, the downloads and the command that serves it
        report = httpx.get(find(browser, "#report").get_attribute("src"), timeout=30)
        assert report.status_code == 200 and "confusion" in report.text.lower()
        archive = httpx.get(find(browser, "#download-model").get_attribute("href"), timeout=60)
        names = zipfile.ZipFile(io.BytesIO(archive.content)).namelist()
        assert "model/config.json" in names and "model/model.safetensors" in names
        assert find(browser, "#serve-command").text == f"wukong serve {work.resolve() / 'pets' / 'model'} --port 8000"
        find(browser, "#export-onnx").click()
        link = wait_for(browser, lambda d: find(d, "#download-onnx").is_displayed() and find(d, "#download-onnx"), 120)
        browser.save_screenshot(str(shots / "6-exported.png"))
        onnx = httpx.get(link.get_attribute("href"), timeout=60)
        assert onnx.status_code == 200 and len(onnx.content) > 1_000_000

    # what the page made is an ordinary Wukong model folder
    import wukong

    model = wukong.load(work / "pets" / "model")
    assert model.predict([str(next((CAT_DOG / "test" / "cat").iterdir()))])[0] == "cat"


# A drag-and-drop as the browser delivers it: a 'drop' event whose dataTransfer holds a file (a
# picture drawn on a canvas, as PNG).
DROP_A_PICTURE = """
const cls = arguments[0];
const canvas = document.createElement("canvas");
canvas.width = canvas.height = 96;
const pen = canvas.getContext("2d");
pen.fillStyle = "#7a5230";
pen.fillRect(10, 20, 70, 50);
canvas.toBlob((blob) => {
  const data = new DataTransfer();
  data.items.add(new File([blob], "dropped.png", { type: "image/png" }));
  const card = document.querySelector(`.class-card[data-class="${cls}"]`);
  card.dispatchEvent(new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }));
}, "image/png");
"""


def sst2_lines(label: str, n: int) -> list[str]:
    with (DATA / "sst2" / "dev.tsv").open(encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t") if r["label"] == label]
    return [r["sentence"].strip() for r in rows[:n]]


@needs_browser
def test_text_project_from_pasted_lines(browser, shots: Path, tmp_path: Path) -> None:  # noqa: ANN001
    work = tmp_path / "work"
    with BackgroundServer(create_ui_app(work)) as server:
        make_project(browser, server.url, "reviews", "text", ["negative", "positive"])
        for cls, label in (("negative", "0"), ("positive", "1")):
            card = f'.class-card[data-class="{cls}"]'
            find(browser, f"{card} textarea").send_keys("\n".join(sst2_lines(label, 40)))
            find(browser, f"{card} .add-lines").click()
            wait_for(browser, lambda d, c=cls: count_of(d, c) == "40 examples")
        browser.save_screenshot(str(shots / "1-examples.png"))
        from selenium.webdriver.support.ui import Select

        Select(find(browser, "#strategy")).select_by_value("features")  # a plain choice, not the default
        find(browser, "#train").click()
        find(browser, "#cancel").click()
        wait_for(browser, lambda d: find(d, "#progress-text").text == "Training cancelled")
        assert not find(browser, "#cancel").is_displayed() and find(browser, "#train").is_enabled()
        accuracy = train_in_page(browser, shots)
        assert accuracy >= 0.6
        assert find(browser, "#strategy-reason").text.startswith("How: features")
        find(browser, "#try-text").send_keys("a warm, funny and beautifully acted film that I loved")
        find(browser, "#predict-text").click()
        label = wait_for(browser, lambda d: d.find_elements("css selector", "#predicted-label"))[0]
        assert label.text == "positive"
        browser.save_screenshot(str(shots / "5-prediction.png"))
        find(browser, "#audit").click()  # the data audit, shown in the page
        wait_for(browser, lambda d: find(d, "#audit-box").is_displayed(), 120)
        find(browser, "#audit-box summary").click()
        browser.execute_script("document.getElementById('audit-box').scrollIntoView()")
        browser.save_screenshot(str(shots / "6-audit.png"))
        audit = httpx.get(find(browser, "#audit-page").get_attribute("src"), timeout=30)
        assert audit.status_code == 200 and "label errors" in audit.text.lower()
        # texts without a class: the model picks what to label, and one click gives it its class
        unlabelled = sst2_lines("0", 50)[40:] + sst2_lines("1", 50)[40:]
        find(browser, "#pool-text").send_keys("\n".join(unlabelled))
        find(browser, "#pool-add-text").click()
        wait_for(browser, lambda d: find(d, "#pool-count").text.startswith("20 example(s)"))
        find(browser, "#suggest").click()
        cards = wait_for(browser, lambda d: d.find_elements("css selector", ".suggestion"), 60)
        assert len(cards) == 8 and all(c.text.split("\n")[0] in unlabelled for c in cards)
        picked = cards[0].text.split("\n")[0]
        browser.execute_script("document.getElementById('label-next').scrollIntoView()")
        browser.save_screenshot(str(shots / "7-label-next.png"))
        truth = "negative" if picked in unlabelled[:10] else "positive"
        cards[0].find_element("css selector", f'.label-as[data-class="{truth}"]').click()
        wait_for(browser, lambda d, t=truth: count_of(d, t) == "41 examples")
        assert find(browser, "#pool-count").text.startswith("19 example(s)")
    rows = list(csv.DictReader((work / "reviews" / "data" / "train.csv").open(encoding="utf-8")))
    assert len(rows) == 81 and {r["label"] for r in rows} == {"negative", "positive"}
    assert rows[-1] == {"text": picked, "label": truth}
    assert picked not in (work / "reviews" / "pool.txt").read_text(encoding="utf-8").splitlines()


def files_outside(root: Path, work: Path) -> set[Path]:
    return {p for p in root.rglob("*") if work not in p.parents and p != work}


@needs_browser
def test_bad_input_gets_a_message_in_the_page_and_nothing_outside_the_work_dir(
    browser,  # noqa: ANN001
    shots: Path,
    tmp_path: Path,
) -> None:
    root = tmp_path / "case"  # the inputs and the work dir; screenshots go beside it
    inputs = root / "inputs" / "deep" / "er"
    inputs.mkdir(parents=True)
    (inputs / "notes.txt").write_text("not a picture")
    (inputs / "fake.jpg").write_text("not a picture either")
    with open(inputs / "huge.jpg", "wb") as f:
        f.truncate(200 * 1024 * 1024)  # sparse: 200 MB to the browser, no disk used
    with zipfile.ZipFile(inputs / "evil.zip", "w") as z:
        z.writestr("../../x", "escape")
        z.write(next((CAT_DOG / "train" / "cat").iterdir()), "cat.jpg")
    work = root / "work"
    before = files_outside(root, work)
    with BackgroundServer(create_ui_app(work)) as server:
        make_project(browser, server.url, "bad", "image", ["cat", "dog"])
        upload = find(browser, '.class-card[data-class="cat"] input[type=file]')
        upload.send_keys("\n".join(str(inputs / n) for n in ("notes.txt", "fake.jpg", "huge.jpg", "evil.zip")))
        wait_for(browser, lambda d: "evil.zip" in messages(d), 60)
        text = messages(browser)
        assert "notes.txt: not an image file name" in text
        assert "fake.jpg: not an image Pillow can read" in text
        assert "huge.jpg: 210 MB, over the 50 MB limit of one file" in text
        assert "evil.zip: entry '../../x' points outside the zip's folder; nothing was extracted" in text
        find(browser, "#train").click()
        wait_for(browser, lambda d: "has no examples" in messages(d))
        assert "class 'cat' has no examples: add some, or remove the class" in messages(browser)
        find(browser, "#class-name").send_keys("../../up")
        find(browser, "#add-class").click()
        wait_for(browser, lambda d: "class '../../up'" in messages(d))
        browser.save_screenshot(str(shots / "bad-input.png"))
        assert count_of(browser, "cat") == "0 examples"
    assert files_outside(root, work) == before
    assert not (root.parent / "x").exists() and not (work.parent / "x").exists()
    assert not list((work / "bad" / "data").rglob("*.*"))  # no file reached a class folder


def test_the_server_refuses_what_the_page_would_not_send(tmp_path: Path) -> None:
    """The limits hold for any client: a body over the limit (413), names that would leave the work dir."""
    work = tmp_path / "work"
    with BackgroundServer(create_ui_app(work)) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        assert client.post("/api/projects", json={"name": "p", "modality": "image"}).status_code == 200
        client.post("/api/projects/p/classes", json={"name": "cat"})
        big = client.put("/api/projects/p/upload?filename=big.jpg&cls=cat", content=b"\xff" * (51 * 1024 * 1024))
        assert big.status_code == 413 and big.json()["error"] == "big.jpg: over the 50 MB limit of one file"
        escaped = client.put("/api/projects/p/upload?filename=../../a.jpg&cls=cat", content=_jpeg())
        assert escaped.status_code == 200 and escaped.json()["stored"] == "a.jpg"
        for bad in ("../p2", ".hidden", "a/b"):
            answer = client.post("/api/projects", json={"name": bad, "modality": "image"})
            assert answer.status_code in (400, 404) and "error" in answer.json()
        assert client.post("/api/projects/p/classes", json={"name": ".."}).status_code == 400
        assert client.put("/api/projects/p/upload?filename=x.jpg&cls=../../cat", content=_jpeg()).status_code == 400
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]
    assert [p.name for p in (work / "p" / "data" / "cat").iterdir()] == ["a.jpg"]


def test_the_model_picks_what_to_label_next_and_a_label_moves_it_into_its_class(tmp_path: Path) -> None:
    from tests.conftest import FAST_BACKBONE
    from wukong import ImageClassifier

    work = tmp_path / "work"
    with BackgroundServer(create_ui_app(work)) as server, httpx.Client(base_url=server.url, timeout=120) as client:
        client.post("/api/projects", json={"name": "p", "modality": "image"})
        for cls in ("cat", "dog"):
            client.post("/api/projects/p/classes", json={"name": cls})
            for photo in sorted((CAT_DOG / "train" / cls).iterdir())[:6]:
                client.put(f"/api/projects/p/upload?filename={photo.name}&cls={cls}", content=photo.read_bytes())
        assert client.get("/api/projects/p/suggest").json()["error"] == "p: train a model first"
        model = ImageClassifier(FAST_BACKBONE, strategy="features", progress=False).fit(work / "p" / "data")
        model.save(work / "p" / "model")  # what the page's Train writes
        assert "no examples waiting for a label" in client.get("/api/projects/p/suggest").json()["error"]
        photos = sorted((CAT_DOG / "test" / "cat").iterdir())[:3] + sorted((CAT_DOG / "test" / "dog").iterdir())[:3]
        for photo in photos:
            added = client.put(f"/api/projects/p/pool?filename={photo.name}", content=photo.read_bytes()).json()
        assert added["pool"] == 6 and client.get("/api/projects/p").json()["pool"] == 6
        answer = client.get("/api/projects/p/suggest?n=4").json()
        rows = answer["suggestions"]
        assert answer["pool"] == 6 and len(rows) == 4 and {r["item"] for r in rows} <= {p.name for p in photos}
        assert [r["uncertainty"] for r in rows] == sorted((r["uncertainty"] for r in rows), reverse=True)
        first = rows[0]["item"]
        assert (
            client.get(f"/api/projects/p/pool/{first}").content == (CAT_DOG / "test" / first[:3] / first).read_bytes()
        )
        view = client.post("/api/projects/p/label", json={"item": first, "cls": first[:3]}).json()
        assert view["pool"] == 5 and view["classes"][first[:3]] == 7
        assert (work / "p" / "data" / first[:3] / first).read_bytes() == (
            CAT_DOG / "test" / first[:3] / first
        ).read_bytes()
        again = client.post("/api/projects/p/label", json={"item": first, "cls": "cat"})
        assert again.status_code == 400 and "not among the examples waiting" in again.json()["error"]
        for bad in ("../project.json", "../data/cat/" + photos[0].name):
            assert client.post("/api/projects/p/label", json={"item": bad, "cls": "cat"}).status_code == 400
            assert client.get(f"/api/projects/p/pool/{bad}").status_code in (400, 404)
        refused = client.put("/api/projects/p/pool?filename=notes.txt", content=b"hello")
        assert refused.status_code == 400 and "not an image file name" in refused.json()["error"]
    assert sorted(p.name for p in (work / "p" / "pool").iterdir()) == sorted({p.name for p in photos} - {first})


def _jpeg() -> bytes:
    return next((CAT_DOG / "train" / "cat").iterdir()).read_bytes()


def test_a_token_guards_the_api(tmp_path: Path) -> None:
    with BackgroundServer(create_ui_app(tmp_path, token="s3cret")) as server:
        assert httpx.get(server.url + "/").status_code == 200  # the page loads; it sends the token from ?token=
        assert httpx.get(server.url + "/api/projects").status_code == 401
        assert httpx.get(server.url + "/api/projects?token=wrong").status_code == 401
        assert httpx.get(server.url + "/api/projects?token=s3cret").json() == []
        assert httpx.get(server.url + "/api/projects", headers={"Authorization": "Bearer s3cret"}).status_code == 200


@pytest.mark.slow  # the default suite stays near 10 minutes; make test-all runs it
def test_cancel_and_a_training_lost_with_the_server_is_resumed(tmp_path: Path) -> None:
    """Cancel stops the training process; a training whose server and process die is started again
    with --resume by the next server on the same work dir, and finishes."""
    work = tmp_path / "work"
    pets = work / "pets" / "data"
    for cls in ("cat", "dog"):
        shutil.copytree(CAT_DOG / "train" / cls, pets / cls)
    (work / "pets" / "project.json").write_text('{"modality": "image", "classes": []}')
    job = {"kind": "train", "preset": "fast", "strategy": "finetune"}
    with BackgroundServer(create_ui_app(work)) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        assert client.post("/api/projects/pets/jobs", json=job).json()["job"]["state"] == "running"
        assert client.post("/api/projects/pets/jobs", json=job).json()["error"].endswith("cancel it")
        pid = _request(work)["pid"]
        cancelled = client.post("/api/projects/pets/cancel").json()["job"]
        assert cancelled["state"] == "cancelled" and not _running(pid)

        client.post("/api/projects/pets/jobs", json=job)
        pid = _request(work)["pid"]
        _wait(lambda: "Training: epoch" in str(client.get("/api/projects/pets").json()["job"].get("progress")))
    os.killpg(pid, signal.SIGKILL)  # the machine lost the training with the server
    _wait(lambda: not _running(pid))
    with BackgroundServer(create_ui_app(work)) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        job_state = client.get("/api/projects/pets").json()["job"]
        assert job_state["state"] == "running" and job_state["relaunched"] == 1
        assert "--resume" in job_state["command"]
        _wait(lambda: client.get("/api/projects/pets").json()["job"]["state"] != "running", WAIT)
        project = client.get("/api/projects/pets").json()
    assert project["job"]["state"] == "done", project["job"]
    assert project["model"]["strategy"] == "finetune" and project["model"]["val_accuracy"] > 0.5


def _request(work: Path) -> dict:
    import json

    return json.loads((work / "pets" / "job" / "request.json").read_text())


def _running(pid: int) -> bool:
    try:
        return b"wukong.ui.runner" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _wait(condition, timeout: float = 120) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)


def test_a_zip_of_class_folders_and_data_on_disk_become_classes(tmp_path: Path) -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        for cls in ("cat", "dog"):
            for photo in sorted((CAT_DOG / "train" / cls).iterdir())[:3]:
                z.write(photo, f"pets/{cls}/{photo.name}")
        z.writestr("pets/dog/readme.txt", "not an image")
    with BackgroundServer(create_ui_app(tmp_path / "work")) as server, httpx.Client(base_url=server.url) as client:
        client.post("/api/projects", json={"name": "zipped", "modality": "image"})
        added = client.put("/api/projects/zipped/upload?filename=pets.zip", content=archive.getvalue()).json()
        assert added["added"] == 6 and added["skipped"][0]["path"] == "pets.zip:pets/dog/readme.txt"
        assert client.get("/api/projects/zipped").json()["classes"] == {"cat": 3, "dog": 3}

        client.post("/api/projects", json={"name": "folder", "modality": "image"})
        imported = client.post("/api/projects/folder/import", json={"path": str(CAT_DOG / "test")}, timeout=60).json()
        assert imported["added"] == sum(1 for _ in (CAT_DOG / "test").rglob("*.jpg"))
        assert set(client.get("/api/projects/folder").json()["classes"]) == {"cat", "dog"}

        client.post("/api/projects", json={"name": "table", "modality": "text"})
        imported = client.post("/api/projects/table/import", json={"path": str(DATA / "sst2" / "dev.tsv")}).json()
        with (DATA / "sst2" / "dev.tsv").open(encoding="utf-8") as f:
            labels = [row["label"] for row in csv.DictReader(f, delimiter="\t")]
        assert imported["added"] == len(labels)
        assert client.get("/api/projects/table").json()["classes"] == {"0": labels.count("0"), "1": labels.count("1")}
        missing = client.post("/api/projects/table/import", json={"path": str(tmp_path / "nothing.csv")})
        assert missing.status_code == 400 and missing.json()["error"].endswith("nothing.csv: no such file or folder")


def test_the_page_listens_on_127_0_0_1_by_default() -> None:
    import inspect

    from wukong.cli.use import ui
    from wukong.ui import run_ui

    assert inspect.signature(run_ui).parameters["host"].default == "127.0.0.1"
    assert inspect.signature(ui).parameters["host"].default == "127.0.0.1"
