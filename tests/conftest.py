import pathlib
import sys

import pytest
import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))  # the tests' own factories (generation_factory, ...)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Every test runs torch on one thread: two OpenMP threads on two shared, oversubscribed cores run up to
    ten times slower than one. A test that sets its own count gets the previous one back afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def env(tmp_path_factory):
    """The generation tests' assets (generation_factory): a tiny model, a small benchmark, its store and index."""
    from generation_factory import assets

    return assets(tmp_path_factory.mktemp("generation"))


@pytest.fixture(scope="session")
def a2s(env):
    """The tiny model with its retrieval index, loaded once for the session."""
    from action2sound import Action2Sound

    return Action2Sound.from_pretrained(env.model, device="cpu", index=env.index)
