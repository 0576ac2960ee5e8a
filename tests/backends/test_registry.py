"""The backend registry and the space model name the same algorithms: a space's `algorithm:`
is validated against search_spaces.model.ALGORITHMS, the CLI's --algorithm choices come from the
registry, and the two lists must not drift apart."""

from __future__ import annotations

from backends import registry
from search_spaces.model import ALGORITHMS


def test_every_algorithm_a_space_may_name_is_served_by_some_backend_and_back():
    assert set(registry.algorithms()) == set(ALGORITHMS)
