import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Training tests run single-threaded: on a busy shared CPU, 2 OpenMP threads can be 10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
