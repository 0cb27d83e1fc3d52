"""Example Python tools for the demo and the CLI (`codemode exec --tools examples/example_tools.py:TOOLS`)."""

from __future__ import annotations

import asyncio
from typing import Literal

from pydantic import BaseModel

_FORECASTS = {
    "Paris": (14.0, "light rain"),
    "Lisbon": (21.5, "sunny"),
    "Oslo": (3.0, "snow showers"),
    "Tokyo": (17.0, "cloudy"),
}


class Forecast(BaseModel):
    city: str
    temperature_c: float
    conditions: str


async def get_forecast(city: str, unit: Literal["c", "f"] = "c") -> Forecast:
    """Look up today's forecast for a city.

    Args:
        city: City name, e.g. "Paris".
        unit: Temperature unit of the answer.
    """
    await asyncio.sleep(0.05)  # a network call, in real life
    if city not in _FORECASTS:
        raise ValueError(f"no forecast for {city!r}; known cities: {', '.join(sorted(_FORECASTS))}")
    temperature, conditions = _FORECASTS[city]
    if unit == "f":
        temperature = temperature * 9 / 5 + 32
    return Forecast(city=city, temperature_c=temperature, conditions=conditions)


def list_cities() -> list[str]:
    """All cities with a forecast."""
    return sorted(_FORECASTS)


async def build_report(title: str, seconds: float = 1.5) -> str:
    """Render a long report (slow: takes `seconds`).

    Args:
        title: Report title.
        seconds: How long rendering takes.
    """
    await asyncio.sleep(seconds)
    return f"# {title}\n(rendered in {seconds:.1f} s)"


TOOLS = [get_forecast, list_cities, build_report]
