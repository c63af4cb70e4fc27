from __future__ import annotations

import re
from pathlib import Path

from vidbatch.core.schema import schema_markdown

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
SCHEMA_DOC = ROOT / "docs" / "schema.md"


def test_schema_doc_is_generated_from_the_code():
    text = SCHEMA_DOC.read_text()
    section = text.split("<!-- schema:start -->\n", 1)[1].split("<!-- schema:end -->", 1)[0]
    assert section.strip() == schema_markdown().strip()
    headings = re.findall(r"^### (.*)$", text, re.M)
    assert "`head_predictions/` (`vidbatch apply-head`)" in headings  # no backticks nested inside backticks
    assert all(h.startswith("`") and h.count("`") % 2 == 0 for h in headings)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_readme_contents_link_to_its_sections_and_the_schema_lives_in_docs():
    text = README.read_text()
    anchors = {_slug(h) for h in re.findall(r"^#{2,3} (.*)$", text, re.M)}
    contents = text.split("**Contents**", 1)[1].split("\n\n", 1)[0]
    links = re.findall(r"\]\(#([^)]+)\)", contents)
    assert len(links) >= 10 and not set(links) - anchors, set(links) - anchors
    for link in re.findall(r"\]\(#([^)]+)\)", text):  # every in-page link in the README
        assert link in anchors, link
    assert "<!-- schema:start -->" not in text and "](docs/schema.md)" in text


def test_manifest_config_never_holds_secrets():
    from vidbatch.job import load_config
    from vidbatch.store.manifest import recorded_config

    cfg = load_config(overrides={"storage_options": {
        "key": "AKIA123", "endpoint_url": "http://127.0.0.1:9000",
        "client_kwargs": {"aws_secret_access_key": "s3cr3t", "region_name": "eu-west-1"},
    }})
    recorded = recorded_config(cfg)["storage_options"]
    assert "AKIA123" not in str(recorded) and "s3cr3t" not in str(recorded)
    assert recorded["endpoint_url"] == "http://127.0.0.1:9000" and recorded["client_kwargs"]["region_name"] == "eu-west-1"
