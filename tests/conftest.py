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
