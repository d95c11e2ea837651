"""The PromQL in the repository's Grafana dashboard and Prometheus adapter rule, ready to run."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import yaml
from prometheus_client.metrics_core import Metric

from app.service.metrics import Metrics
from tests.deploy.tools import ROOT

DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "tagger.json"
ADAPTER_VALUES = ROOT / "deploy" / "k8s" / "prometheus-adapter-values.yaml"
# Grafana's variables, replaced as Grafana would for "all instances, 1 minute".
_GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$instance": ".*"}
# Series Prometheus itself adds to every scrape, and the standard process collector's.
_PROMETHEUS_SERIES = {"up"}
_NAME = re.compile(r"\b((?:tagger|process)_[a-z_]+)\b")


@dataclass(frozen=True)
class Query:
    panel: str
    expr: str


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_queries() -> list[Query]:
    """Every panel query, Grafana variables substituted."""
    queries = []
    for panel in dashboard()["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in _GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
            queries.append(Query(panel["title"], expr))
    return queries


def adapter_rule() -> dict[str, Any]:
    values = yaml.safe_load(ADAPTER_VALUES.read_text())
    rules: list[dict[str, Any]] = values["rules"]["custom"]
    assert len(rules) == 1
    return rules[0]


def adapter_query(label_matchers: str, group_by: str) -> str:
    """The adapter's metricsQuery as the adapter renders it for one HPA lookup."""
    rule = adapter_rule()
    series = re.match(r"^([a-z_:]+)", rule["seriesQuery"])
    assert series is not None
    template: str = rule["metricsQuery"]
    return (
        template.replace("<<.Series>>", series.group(1))
        .replace("<<.LabelMatchers>>", label_matchers)
        .replace("<<.GroupBy>>", group_by)
    )


def series_names(expr: str) -> set[str]:
    """The tagger_* and process_* series an expression reads."""
    return set(_NAME.findall(expr))


def _samples_of(metric: Metric) -> set[str]:
    suffixes = {
        "counter": ["_total"],
        "gauge": [""],
        "histogram": ["_bucket", "_sum", "_count"],
        "info": ["_info"],
    }
    return {metric.name + suffix for suffix in suffixes.get(metric.type, [""])}


def exported_series() -> set[str]:
    """Every series name the service's registry can expose (labelled ones included)."""
    names = set(_PROMETHEUS_SERIES)
    for metric in Metrics().registry.collect():
        names |= _samples_of(metric)
    return names
