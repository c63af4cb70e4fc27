from __future__ import annotations

from pathlib import Path

from vidbatch.core.schema import schema_markdown

README = Path(__file__).parents[1] / "README.md"


def test_readme_schema_section_is_generated_from_the_code():
    text = README.read_text()
    section = text.split("<!-- schema:start -->\n", 1)[1].split("<!-- schema:end -->", 1)[0]
    assert section.strip() == schema_markdown().strip()


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
