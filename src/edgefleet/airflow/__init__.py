"""Run an Airflow 3 deployment's tasks on an edgefleet fleet (``pip install 'edgefleet[airflow]'``).

Airflow loads the executor by name
(``AIRFLOW__CORE__EXECUTOR=edgefleet.airflow.EdgefleetExecutor``); it is imported on first
use, so ``edgefleet.airflow.jobs`` stays usable without Airflow.
"""

from __future__ import annotations

from typing import Any

__all__ = ["EdgefleetExecutor"]


def __getattr__(name: str) -> Any:
    if name == "EdgefleetExecutor":
        from edgefleet.airflow.executor import EdgefleetExecutor

        return EdgefleetExecutor
    raise AttributeError(name)
