"""Every YAML file under deploy/ parses, has no duplicate key, and holds mappings."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.tools import DEPLOY, load_yaml_documents, yaml_files


def test_the_expected_yaml_files_are_there() -> None:
    names = {str(p.relative_to(DEPLOY)) for p in yaml_files()}
    expected = {
        "compose.yaml",
        "k8s/kustomization.yaml",
        "k8s/web-deployment.yaml",
        "k8s/worker-deployment.yaml",
        "k8s/sweeper-deployment.yaml",
        "prometheus/alerts.yml",
        "prometheus/alerts_test.yml",
    }
    assert expected <= names, f"missing: {sorted(expected - names)}"


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yaml_parses_into_mappings(path: Path) -> None:
    documents = load_yaml_documents(path)
    assert documents, f"{path.name} holds no YAML document"
    for document in documents:
        assert isinstance(document, dict), f"{path.name}: a document is {type(document).__name__}"
