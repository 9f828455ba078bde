"""The procedural town and everything that knows it: the generator, the exact renderer (RGB,
depth, sky), weathers, vehicles, collisions, the top-down map, routes along its roads and the
six two-agent scenarios. The data source and ground truth; imports :mod:`shareverse_env.core`
only.

Example:
    >>> from shareverse_env.world import Renderer, generate_town, make_scenario
    >>> town = generate_town(0)
    >>> scenario = make_scenario(town, "head_on", rng=0)
    >>> len(scenario.agents)
    2
"""

from shareverse_env.world.collision import Collision, first_collisions, resolve_collisions
from shareverse_env.world.generator import generate_town
from shareverse_env.world.renderer import Renderer, RenderResult
from shareverse_env.world.routes import Route
from shareverse_env.world.scenarios import SCENARIOS, AgentPlan, Scenario, make_scenario
from shareverse_env.world.topdown import topdown_image
from shareverse_env.world.town import RoadNetwork, Town
from shareverse_env.world.vehicles import agent_colour
from shareverse_env.world.weather import WEATHERS, Weather, get_weather

__all__ = [
    "SCENARIOS",
    "WEATHERS",
    "AgentPlan",
    "Collision",
    "RenderResult",
    "Renderer",
    "RoadNetwork",
    "Route",
    "Scenario",
    "Town",
    "Weather",
    "agent_colour",
    "first_collisions",
    "generate_town",
    "get_weather",
    "make_scenario",
    "resolve_collisions",
    "topdown_image",
]
