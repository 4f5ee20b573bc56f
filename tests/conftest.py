"""Test-session settings."""
import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Single-threaded torch: the networks in the tests are tiny, and on a small shared machine
    two intra-op threads stall each other. (Subprocesses get OMP_NUM_THREADS=1 themselves.)"""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
