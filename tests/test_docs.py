"""The documentation site against the code: the API reference covers every
public name, the guides and pages that `mkdocs.yml` lists exist, and the
figures come from the benchmark scripts' files. (`make test` builds the site
strictly; the Python blocks of its pages run in tests/test_readme.py.)"""

import re
from pathlib import Path

import yaml

import converters
import tflstm
import tflstm.tflite

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _documented(page: str) -> set[str]:
    """The names a reference page renders: `::: module.name` lines and the
    `members:` lists under a `::: module` line."""
    text = (DOCS / "reference" / page).read_text()
    names = {m.rsplit(".", 1)[-1] for m in re.findall(r"^::: (\S+)$", text, re.M)}
    names |= set(re.findall(r"^\s+- (\w+)$", text, re.M))
    return names


def test_the_api_reference_covers_every_public_name():
    public = {
        "layers.md": set(tflstm.__all__) - {"__version__"},
        "tflite.md": set(tflstm.tflite.__all__),
        "converters.md": set(converters.__all__),
        "export.md": {"export_saved_model", "serving_specs"},
    }
    for page, names in public.items():
        missing = names - _documented(page)
        assert not missing, (page, sorted(missing))


def _nav_pages(items) -> list[str]:
    pages = []
    for item in items:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        pages += _nav_pages(value) if isinstance(value, list) else [value]
    return pages


def test_every_page_in_the_navigation_exists_or_is_generated():
    config = yaml.safe_load(
        re.sub(r"!!python\S*", "", (ROOT / "mkdocs.yml").read_text())
    )
    generated = {f"benchmarks/{p.name}" for p in (ROOT / "benchmarks").glob("*.md")}
    for page in _nav_pages(config["nav"]):
        assert (DOCS / page).exists() or page in generated, page
    # every benchmark page the scripts wrote is in the navigation
    assert generated <= set(_nav_pages(config["nav"]))


def test_benchmark_pages_state_their_machine_and_date():
    """The figures' provenance: each file a benchmark script wrote names the
    machine (or platform) and the date of its run in its first lines."""
    for path in (ROOT / "benchmarks").glob("*.md"):
        head = "\n".join(path.read_text().splitlines()[:4])
        assert re.search(r"20\d\d-\d\d-\d\d", head), path.name
        assert re.search(r"Machine:|x86_64|AMD|Intel|cores", head), path.name


def test_the_readme_is_a_front_page():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 160, len(lines)
    text = "\n".join(lines)
    for guide in (
        "docs/guides/port.md",
        "docs/guides/export.md",
        "docs/guides/troubleshooting.md",
    ):
        assert f"]({guide})" in text, guide
