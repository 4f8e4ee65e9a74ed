"""Grid carbon intensity by region: the small sourced table in regions.toml beside this file."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from gptcore.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REGIONS_PATH = Path(__file__).with_name("regions.toml")


@dataclass(frozen=True)
class GridIntensity:
    region: str
    kg_per_kwh: float
    source: str


@cache
def _table() -> dict:
    return tomllib.loads(REGIONS_PATH.read_text())


def grid_intensity(region: str | None = None) -> GridIntensity:
    """The carbon intensity of a named region (case-insensitive), or of the table's default (world)."""
    table = _table()
    key = (region or table["default"]).lower()
    if key not in table["kg_per_kwh"]:
        names = ", ".join(table["kg_per_kwh"])
        raise UserError(f"--region: unknown region {region!r}; choose one of: {names}")
    return GridIntensity(key, float(table["kg_per_kwh"][key]), f"{table['source']}, {key}")
