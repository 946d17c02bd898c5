"""OpenAPI component names of plugin trigger types: a type name is a Python identifier
(``café`` is one) and a component name may only have ``[A-Za-z0-9_]``. Sanitised alone,
``café`` and ``cafè`` were both ``PluginTrigger_caf_``: the second overwrote the first,
and the discriminator sent both types to one schema (a generated client refused one of
them). Now each gets its own component, and keeps it whichever other plugins load."""

import re

import pytest

from scheduler_app import plugins
from scheduler_app.api import schemas

pytestmark = pytest.mark.django_db


@pytest.fixture
def load(settings):
    def load_plugins(*references):
        plugins.registry.reset()
        settings.SCHEDULER_APP = {**settings.SCHEDULER_APP, "PLUGINS": list(references)}

    yield load_plugins
    plugins.registry.reset()


def openapi(client):
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    return response.json()["components"]["schemas"]


def test_names_that_sanitise_alike_get_their_own_components(client, load):
    load("tests.plugin_fixtures:accents", "tests.plugin_fixtures:lax")
    components = openapi(client)
    mapping = components["Trigger"]["discriminator"]["mapping"]
    for name, unit in (
        ("café", "minutes"),
        ("cafè", "hours"),
        ("caf_", "seconds"),
        ("every_minutes", "minutes"),
    ):
        component = mapping[name].removeprefix("#/components/schemas/")
        assert re.fullmatch(r"[A-Za-z0-9_]+", component), component
        schema = components[component]
        assert schema["properties"]["type"] == {"type": "string", "enum": [name]}
        assert schema["required"] == ["type", unit]
    assert len({mapping[n] for n in ("café", "cafè", "caf_")}) == 3
    assert mapping["caf_"] == "#/components/schemas/PluginTrigger_caf_"  # plain names stay plain
    assert mapping["every_minutes"] == "#/components/schemas/PluginTrigger_every_minutes"
    refs = [choice["$ref"] for choice in components["Trigger"]["oneOf"]]
    assert len(refs) == len(set(refs)) and set(mapping.values()) <= set(refs)


def test_a_components_name_does_not_depend_on_the_other_plugins(client, load):
    load("tests.plugin_fixtures:accents")
    with_others = openapi(client)["Trigger"]["discriminator"]["mapping"]
    assert with_others["café"] == "#/components/schemas/" + schemas.plugin_trigger_component("café")
    assert schemas.plugin_trigger_component("café") == "PluginTrigger_caf__" + _sha("café")[:8]
    assert schemas.plugin_trigger_component("caf_") == "PluginTrigger_caf_"


def test_a_clash_gets_a_longer_digest():
    first = schemas.plugin_trigger_component("café")
    assert schemas.plugin_trigger_component("café", {first}) == "PluginTrigger_caf__" + _sha("café")[:16]
    assert schemas.plugin_trigger_component("x", {"PluginTrigger_x"}).startswith("PluginTrigger_x_")


def _sha(text):
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()
